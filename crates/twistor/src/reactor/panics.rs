//! What a reactor does with the panics it catches (tokio's `unhandled_panic` is the
//! model): by default it logs them and goes on serving everyone else; in tests it can stop
//! and make `run` fail with the panic's message instead.

use std::cell::RefCell;
use std::fmt;
use std::rc::{Rc, Weak};

use super::{Inner, Reactor};
use crate::error::Error;

/// What a reactor does after it catches a panic in a protocol callback, a factory's
/// `build_protocol`, a delayed or soon call, a task, a call from another thread or a
/// signal handler. Set it with [`Reactor::set_unhandled_panic`].
///
/// Whatever the mode, the panic is caught and logged, and only what panicked pays for it:
/// the connection is aborted (the protocol hears `connection_lost` with
/// [`Error::ProtocolPanicked`]), the datagram port, process pipes, standard I/O or inotify
/// watch is closed, the task ends. Panics inside a [`Deferred`](crate::defer::Deferred)'s
/// callbacks are not caught by the reactor: they become the Deferred's
/// [`Failure`](crate::defer::Failure), an error value its next errback sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnhandledPanic {
    /// Log it and go on (the default: one bad connection costs only itself).
    #[default]
    Ignore,
    /// Also stop the reactor at once (as [`Reactor::stop_now`] does) and make
    /// [`Reactor::run`] (and [`Reactor::run_until`]) return
    /// [`Error::UnhandledPanic`] with the first panic's message. For tests: a panicking
    /// callback fails the test instead of hanging it. A reactor driven by
    /// [`Reactor::iterate`] is not stopped; its next `run` returns the error at once.
    StopReactor,
}

thread_local! {
    /// The reactor whose loop runs on this thread (the innermost, if loops nest): panics
    /// caught by transports, which keep no handle on it, are reported there.
    static CURRENT: RefCell<Weak<Inner>> = const { RefCell::new(Weak::new()) };
}

/// Makes `reactor` this thread's current one until dropped (then the previous one is).
pub(super) struct Current {
    previous: Weak<Inner>,
}

impl Current {
    pub(super) fn enter(reactor: &Rc<Inner>) -> Current {
        let previous = CURRENT.with(|c| c.replace(Rc::downgrade(reactor)));
        Current { previous }
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.previous);
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Reports a panic the engine caught: logs it with `report_error!` as "panic in {what}:
/// {message}", and tells the reactor running on this thread (if any), whose
/// [`UnhandledPanic`] mode decides whether it stops.
pub(crate) fn report_panic(what: fmt::Arguments<'_>, message: &str) {
    crate::log::report_error!("panic in {what}: {message}");
    let reactor = CURRENT.with(|c| c.borrow().upgrade());
    if let Some(inner) = reactor {
        Reactor { inner }.caught_panic(what, message);
    }
}

impl Reactor {
    /// Chooses what this reactor does with the panics it catches; see [`UnhandledPanic`].
    ///
    /// ```
    /// use twistor::Reactor;
    /// use twistor::reactor::UnhandledPanic;
    ///
    /// let reactor = Reactor::new()?;
    /// reactor.set_unhandled_panic(UnhandledPanic::StopReactor);
    /// reactor.call_soon(|| panic!("a bug"));
    /// let err = reactor.run().unwrap_err();
    /// assert!(err.to_string().contains("a bug"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_unhandled_panic(&self, mode: UnhandledPanic) {
        self.inner.panic_mode.set(mode);
    }

    /// What this reactor does with the panics it catches.
    pub fn unhandled_panic(&self) -> UnhandledPanic {
        self.inner.panic_mode.get()
    }

    /// A panic was caught (and logged) on this reactor's thread.
    pub(super) fn caught_panic(&self, what: fmt::Arguments<'_>, message: &str) {
        if self.inner.panic_mode.get() != UnhandledPanic::StopReactor {
            return;
        }
        {
            let mut first = self.inner.panicked.borrow_mut();
            if first.is_none() {
                *first = Some(Error::UnhandledPanic {
                    what: what.to_string(),
                    message: message.to_string(),
                });
            }
        }
        self.stop_now();
    }

    /// The panic that stopped the reactor, if one did (taken: `run` returns it once).
    pub(super) fn take_panic(&self) -> Option<Error> {
        self.inner.panicked.borrow_mut().take()
    }
}
