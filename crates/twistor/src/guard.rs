//! The one guard every protocol callback runs under: connections, TLS, datagram sockets,
//! child processes, standard I/O and inotify watches.
//!
//! A [`Guard`] holds the protocol in a slot that is borrowed while one of its callbacks
//! runs, and follows two rules:
//!
//! - **Re-entrant events are queued, never dropped.** An event that arrives while the
//!   protocol is running (from a transport that delivers synchronously, such as TLS over an
//!   in-memory loopback, or a connection timer on a fake clock advanced from a callback) is
//!   kept, owning its data, and delivered in order right after the running callback
//!   returns. Only that rare
//!   path allocates: the common one hands the protocol borrowed bytes (a [`Delivery`] is
//!   either called at once or turned into an owned event).
//! - **A panic is caught and handed back** ([`Panicked`]) so the caller ends that one
//!   connection (or port, process, watch) the way its close path does; the queued events go
//!   with it, except the last one (`connection_lost`), which every protocol hears once.
//!   [`Panicked::report`] logs it with `report_error!` and tells the reactor, whose
//!   [`UnhandledPanic`](crate::reactor::UnhandledPanic) mode may stop it.
//!
//! The guard also swaps the protocol for a wrapper ([`Guard::replace`], how `start_tls`
//! works) between two callbacks, never under one.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::reactor::panic_message;

/// A kind of protocol the guard delivers to, and its events.
pub(crate) trait Kind: 'static {
    /// The protocol trait object (`dyn Protocol`, `dyn DatagramProtocol`...).
    type Protocol: ?Sized + 'static;
    /// What each callback is given beside the protocol (its transport).
    type Transport;
    /// One callback and its arguments, owned (as the queue keeps them).
    type Event: 'static;

    /// Calls the protocol's callback for `event`.
    fn deliver(protocol: &mut Self::Protocol, transport: &Self::Transport, event: Self::Event);
}

/// One callback to make: at once, or, if the protocol is running, kept as an event. Owned
/// events deliver themselves; a small borrowing type per kind (the bytes just read) keeps
/// the common path free of copies and of the event enum's drop glue.
pub(crate) trait Delivery<K: Kind> {
    /// Makes the callback.
    fn call(self, protocol: &mut K::Protocol, transport: &K::Transport);

    /// The callback as an event, owning what it borrowed (the rare, re-entrant path).
    fn keep(self) -> K::Event;
}

/// Turns the protocol into another that wraps it.
pub(crate) type Replace<K> =
    Box<dyn FnOnce(Box<<K as Kind>::Protocol>) -> Box<<K as Kind>::Protocol>>;

/// A protocol callback panicked: the caller ends what the protocol served and reports it.
#[must_use = "a panicked protocol's connection must be ended and the panic reported"]
pub(crate) struct Panicked {
    /// Boxed: `Result<(), Panicked>` is then one pointer, which the hot path gets back in
    /// a register.
    message: Box<Message>,
}

/// A panic's message.
struct Message(String);

impl Panicked {
    fn new(payload: &(dyn std::any::Any + Send)) -> Panicked {
        Panicked {
            message: Box::new(Message(panic_message(payload))),
        }
    }

    /// Logs the panic with `report_error!` (`what` says whose callback it was and what
    /// is done about it) and tells the running reactor; returns the panic's message.
    pub(crate) fn report(self, what: fmt::Arguments<'_>) -> String {
        crate::reactor::report_panic(what, &self.message.0);
        self.message.0
    }
}

/// A protocol's slot, and what waits for the running callback to return.
pub(crate) struct Guard<K: Kind> {
    /// Borrowed while a callback runs; `None` once the protocol has had its last event.
    slot: RefCell<Option<Box<K::Protocol>>>,
    /// Allocated only while something waits (taken and put back, so checking it costs a
    /// load and a store).
    later: Cell<Option<Box<Later<K>>>>,
}

/// What arrived while a callback ran.
struct Later<K: Kind> {
    /// Events in arrival order; `true` marks the last one, after which the protocol is
    /// dropped.
    queue: VecDeque<(K::Event, bool)>,
    /// A wrapper to swap in when the running callback returns.
    replace: Option<Replace<K>>,
}

impl<K: Kind> Guard<K> {
    /// A guard holding `protocol`.
    pub(crate) fn new(protocol: Box<K::Protocol>) -> Guard<K> {
        Guard {
            slot: RefCell::new(Some(protocol)),
            later: Cell::new(None),
        }
    }

    /// A guard with no protocol yet (see [`set`](Self::set)).
    pub(crate) fn empty() -> Guard<K> {
        Guard {
            slot: RefCell::new(None),
            later: Cell::new(None),
        }
    }

    /// Installs the protocol (a TLS layer gets its application's once `start_tls` hands
    /// it over).
    pub(crate) fn set(&self, protocol: Box<K::Protocol>) {
        match self.slot.try_borrow_mut() {
            Ok(mut slot) => *slot = Some(protocol),
            Err(_) => unreachable!("a protocol installed under its own callback"),
        }
    }

    /// Whether one of the protocol's callbacks is running.
    pub(crate) fn running(&self) -> bool {
        self.slot.try_borrow_mut().is_err()
    }

    /// Delivers `event` now, or, if a callback is running, queues it to follow that
    /// callback. A protocol that is gone gets nothing.
    #[inline]
    pub(crate) fn deliver(
        &self,
        transport: &K::Transport,
        delivery: impl Delivery<K>,
    ) -> Result<(), Panicked> {
        let Ok(mut slot) = self.slot.try_borrow_mut() else {
            self.queue(delivery.keep(), false);
            return Ok(());
        };
        let Some(protocol) = slot.as_mut() else {
            return Ok(());
        };
        let result = catch_unwind(AssertUnwindSafe(|| delivery.call(protocol, transport)));
        let later = self.later.take();
        if result.is_ok() && later.is_none() {
            return Ok(());
        }
        self.after(
            slot,
            transport,
            result.map_err(|p| Panicked::new(&*p)),
            later,
        )
    }

    /// Delivers `event` as the protocol's last (`connection_lost`, `process_ended`...),
    /// then drops the protocol. If a callback is running, it follows that callback and
    /// what was queued before it.
    pub(crate) fn finish(&self, transport: &K::Transport, event: K::Event) -> Result<(), Panicked> {
        let protocol = match self.slot.try_borrow_mut() {
            Ok(mut slot) => slot.take(),
            Err(_) => {
                self.queue(event, true);
                return Ok(());
            }
        };
        // Nothing can be queued while no callback runs; a pending wrapper has no one to
        // wrap now.
        drop(self.later.take());
        let Some(mut protocol) = protocol else {
            return Ok(());
        };
        catch_unwind(AssertUnwindSafe(|| {
            K::deliver(&mut *protocol, transport, event)
        }))
        .map_err(|p| Panicked::new(&*p))
    }

    /// Replaces the protocol with `replace(protocol)`: now if no callback is running, else
    /// as soon as the running one returns. Fails if a replacement is already waiting.
    pub(crate) fn replace(&self, replace: Replace<K>) -> Result<(), Replace<K>> {
        match self.slot.try_borrow_mut() {
            Ok(mut slot) => {
                if let Some(protocol) = slot.take() {
                    *slot = Some(replace(protocol));
                }
                Ok(())
            }
            Err(_) => {
                let mut later = self.later.take().unwrap_or_else(Later::new);
                let result = match later.replace {
                    Some(_) => Err(replace),
                    None => {
                        later.replace = Some(replace);
                        Ok(())
                    }
                };
                self.later.set(Some(later));
                result
            }
        }
    }

    /// Takes the protocol without telling it (the reactor is gone, or it never started).
    pub(crate) fn take(&self) -> Option<Box<K::Protocol>> {
        drop(self.later.take());
        self.slot
            .try_borrow_mut()
            .ok()
            .and_then(|mut slot| slot.take())
    }

    fn queue(&self, event: K::Event, last: bool) {
        let mut later = self.later.take().unwrap_or_else(Later::new);
        later.queue.push_back((event, last));
        self.later.set(Some(later));
    }

    /// The callback returned (or panicked) and something waits: apply the wrapper, deliver
    /// the queue in order; on a panic, drop the queue but its last event.
    #[cold]
    #[inline(never)]
    fn after(
        &self,
        mut slot: RefMut<'_, Option<Box<K::Protocol>>>,
        transport: &K::Transport,
        mut result: Result<(), Panicked>,
        mut later: Option<Box<Later<K>>>,
    ) -> Result<(), Panicked> {
        loop {
            let Some(mut waiting) = later.take() else {
                return result;
            };
            let next = if result.is_err() {
                // Only the last event survives a panic: the protocol hears it once.
                let last = waiting.queue.drain(..).find(|(_, last)| *last);
                waiting.replace = None;
                last
            } else {
                if let Some(replace) = waiting.replace.take()
                    && let Some(protocol) = slot.take()
                {
                    // The wrapper is built by engine code (or the application's closure);
                    // a panic there loses the protocol, as a panic in a callback would.
                    match catch_unwind(AssertUnwindSafe(|| replace(protocol))) {
                        Ok(wrapped) => *slot = Some(wrapped),
                        Err(p) => result = Err(Panicked::new(&*p)),
                    }
                }
                waiting.queue.pop_front()
            };
            if !waiting.queue.is_empty() || waiting.replace.is_some() {
                // Events queued by the next callback go behind these.
                self.later.set(Some(waiting));
            }
            let Some((event, last)) = next else {
                later = self.later.take();
                continue;
            };
            let outcome = match slot.as_mut() {
                Some(protocol) => {
                    catch_unwind(AssertUnwindSafe(|| K::deliver(protocol, transport, event)))
                }
                None => Ok(()),
            };
            if last {
                slot.take();
                drop(self.later.take());
            }
            if let Err(p) = outcome
                && result.is_ok()
            {
                result = Err(Panicked::new(&*p));
            }
            later = self.later.take();
        }
    }
}

impl<K: Kind> Later<K> {
    fn new() -> Box<Later<K>> {
        Box::new(Later {
            queue: VecDeque::new(),
            replace: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    /// A protocol that records events and, on some, delivers more to itself.
    struct Rec {
        seen: Vec<String>,
    }

    struct Test;

    impl Kind for Test {
        type Protocol = Rec;
        type Transport = Rc<Guard<Test>>;
        type Event = String;

        fn deliver(p: &mut Rec, guard: &Self::Transport, event: String) {
            (&*event).call(p, guard)
        }
    }

    impl Delivery<Test> for &str {
        fn call(self, p: &mut Rec, guard: &Rc<Guard<Test>>) {
            p.seen.push(self.to_string());
            match self {
                "nest" => {
                    guard.deliver(guard, "inner").ok().unwrap();
                    p.seen.push("after inner".into());
                }
                "boom" => panic!("boom"),
                "wrap" => {
                    let wrap = |mut p: Box<Rec>| {
                        p.seen.push("wrapped".into());
                        p
                    };
                    assert!(guard.replace(Box::new(wrap)).is_ok());
                    assert!(guard.replace(Box::new(wrap)).is_err(), "one at a time");
                    p.seen.push("asked".into());
                }
                "nest then boom" => {
                    guard.deliver(guard, "queued").ok().unwrap();
                    guard.finish(guard, "last".into()).ok().unwrap();
                    panic!("boom");
                }
                _ => {}
            }
        }

        fn keep(self) -> String {
            self.to_string()
        }
    }

    fn guard() -> Rc<Guard<Test>> {
        Rc::new(Guard::new(Box::new(Rec { seen: vec![] })))
    }

    fn seen(guard: &Guard<Test>) -> Vec<String> {
        guard
            .slot
            .borrow()
            .as_ref()
            .map_or(vec![], |p| p.seen.clone())
    }

    #[test]
    fn a_re_entrant_event_follows_the_running_callback() {
        let guard = guard();
        guard.deliver(&guard, "nest").ok().unwrap();
        assert_eq!(seen(&guard), ["nest", "after inner", "inner"]);
        assert!(guard.later.take().is_none(), "nothing left queued");
    }

    #[test]
    fn a_panic_is_handed_back_and_only_the_last_event_survives_it() {
        let guard = guard();
        let panicked = guard.deliver(&guard, "boom").unwrap_err();
        assert_eq!(panicked.message.0, "boom");
        assert!(
            guard.slot.borrow().is_some(),
            "the caller decides what a panic ends"
        );
        let panicked = guard.deliver(&guard, "nest then boom").unwrap_err();
        assert_eq!(panicked.message.0, "boom");
        assert!(
            guard.slot.borrow().is_none(),
            "the last event was delivered and the protocol dropped"
        );
    }

    #[test]
    fn a_replacement_waits_for_the_running_callback() {
        let guard = guard();
        guard.deliver(&guard, "wrap").ok().unwrap();
        assert_eq!(seen(&guard), ["wrap", "asked", "wrapped"]);
        // Not running: at once.
        guard
            .replace(Box::new(|mut p| {
                p.seen.push("again".into());
                p
            }))
            .ok()
            .unwrap();
        assert_eq!(seen(&guard), ["wrap", "asked", "wrapped", "again"]);
        guard.finish(&guard, "lost".into()).ok().unwrap();
        assert!(guard.slot.borrow().is_none());
        guard.deliver(&guard, "after").ok().unwrap();
        assert_eq!(seen(&guard), Vec::<String>::new());
    }
}
