//! The engine's insides, for code that extends the engine itself: new kinds of event
//! source, transports of other crates that share the reactor's buffers, clocks for tests,
//! factory wrappers.
//!
//! **No stability promise**: these items change whenever the engine does. The workspace's
//! own crates use them (the test kit's `Clock` is a [`TimerQueue`], protocol wrappers
//! forward [`do_start`]/[`do_stop`]); an application should not need any of them. What is
//! here, and why it is public at all:
//!
//! - [`Source`], [`Readiness`] and [`ReactorInternals`] (`register`, `deregister`,
//!   `replace_source`, `mark_dirty`): a new kind of descriptor watched by the reactor,
//!   Twisted's `addReader`/`addWriter`;
//! - [`TimerQueue`], [`duration_to_nanos`], [`nanos_to_seconds`]: the timer structure, for
//!   another clock driving it (the test kit's fake `Clock`);
//! - [`do_start`], [`do_stop`]: a factory that wraps another forwards Twisted's
//!   start/stop counting to it;
//! - [`panic_message`]: the text of a caught panic, for code that catches panics in user
//!   callbacks the way the engine does.

use std::io;
use std::os::fd::BorrowedFd;
use std::rc::Rc;

use crate::protocol::Factory;
pub use crate::reactor::source::{Readiness, Source};
pub use crate::reactor::timer::{TimerQueue, duration_to_nanos, nanos_to_seconds};

/// Counts one more user of `factory`, calling `start_factory` for the first (Twisted's
/// `doStart`): a factory that wraps another calls it from its own `start_factory`.
pub fn do_start<F: Factory + ?Sized>(factory: &Rc<F>) {
    crate::protocol::do_start(factory)
}

/// Counts one user of `factory` fewer, calling `stop_factory` after the last (Twisted's
/// `doStop`): a factory that wraps another calls it from its own `stop_factory`. Extra
/// calls are ignored.
pub fn do_stop<F: Factory + ?Sized>(factory: &Rc<F>) {
    crate::protocol::do_stop(factory)
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    crate::reactor::panic_message(payload)
}

/// A reactor's registration of event sources (implemented by
/// [`Reactor`](crate::Reactor); import this trait to call these methods).
pub trait ReactorInternals {
    /// Registers `fd` with the loop, edge-triggered, and returns its token. The reactor
    /// calls `source.ready` on each readiness change until the token is deregistered.
    /// `source` owns the descriptor: it closes it when it closes, or when the reactor is
    /// dropped ([`Source::reactor_dropped`]).
    fn register(
        &self,
        fd: BorrowedFd<'_>,
        interest: mio::Interest,
        source: Rc<dyn Source>,
    ) -> io::Result<usize>;

    /// Forgets a token. If the descriptor stays open (or has duplicates elsewhere), pass
    /// it so epoll forgets it too: closing the last descriptor of an open file removes it
    /// from epoll by itself, so a source that closes its own descriptor right after need
    /// not.
    fn deregister(&self, token: usize, fd: Option<BorrowedFd<'_>>);

    /// Makes `token`'s events go to `source` from now on (a connecting socket becoming a
    /// connection). False if the token is not registered.
    fn replace_source(&self, token: usize, source: Rc<dyn Source>) -> bool;

    /// Asks for `source.flush` at the end of this turn.
    fn mark_dirty(&self, source: Rc<dyn Source>);
}
