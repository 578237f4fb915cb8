//! [`Deferred`]: a result that arrives later, with a chain of callbacks to process it.
//!
//! See the [module documentation](super) for the design.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::reactor::{ReactorTime, panic_message};

use super::failure::{DeferredError, Failure};
use super::links::LinkQueue;

/// A result that is not there yet, and the chain of callbacks that will process it
/// (Twisted's `Deferred`).
///
/// A `Deferred<T>` is fired once, with a value (`callback`) or a [`Failure`] (`errback`).
/// The result then runs down the chain of callbacks and errbacks added with
/// [`add_callback`](Deferred::add_callback), [`add_errback`](Deferred::add_errback),
/// [`add_both`](Deferred::add_both) and friends, each one's output feeding the next; links
/// added after firing run at once. It is also a `Future<Output = Result<T, Failure>>`.
///
/// The handle is cheap to clone (an `Rc` inside): every clone names the same Deferred.
/// It is `!Send`: Deferreds live on the reactor thread.
///
/// ```
/// use twistor::defer::{Deferred, Failure};
///
/// let d = Deferred::new();
/// d.add_callback(|n: u32| Ok(n + 1))
///     .add_callback(|n| if n > 10 { Err(Failure::msg("too big")) } else { Ok(n) })
///     .add_errback(|_failure| Ok(0));
/// let doubled = d.map(|n| n * 2);
/// d.callback(41).unwrap();
/// assert_eq!(doubled.try_result().unwrap().unwrap(), 0);
/// ```
pub struct Deferred<T: 'static> {
    core: Rc<Core<T>>,
    /// This handle's own `await`, once it has been polled and had to wait.
    wait: Option<Rc<AwaitSlot<T>>>,
}

/// What a link hands back to the chain.
pub(crate) enum Outcome<T: 'static> {
    /// The result goes on down this chain.
    Done(Result<T, Failure>),
    /// Wait for this Deferred; its result then goes on down this chain.
    Wait(Deferred<T>),
    /// The result was taken out of this chain.
    Consumed,
    /// The result was taken and delivered to another Deferred, which should run next.
    Run(Rc<dyn Node>),
}

/// One link of a chain. Every kind (callback, errback, both, hand-off, await) is a closure
/// of the whole result, so a link is one fat pointer (no allocation for closures that
/// capture nothing) and running it is one indirect call.
type Link<T> = Box<dyn FnOnce(Result<T, Failure>) -> Outcome<T>>;
type Canceller<T> = Box<dyn FnOnce(&Deferred<T>)>;

enum Slot<T> {
    /// Not fired yet.
    Empty,
    Ready(Result<T, Failure>),
    /// Held by the runner, or by the Deferred this one waits on.
    Elsewhere,
    /// Handed on for good.
    Handed,
}

pub(crate) struct Core<T: 'static> {
    st: RefCell<State<T>>,
    /// Explicit pauses plus one while waiting on another Deferred. Outside the `RefCell`
    /// because the runner checks it after every link.
    paused: Cell<u32>,
}

struct State<T: 'static> {
    result: Slot<T>,
    fired: bool,
    /// A runner owns the chain right now (the links may be out of `links`, in its hands).
    running: bool,
    /// Set by `cancel` without a canceller: the source's later firing is silently ignored.
    suppress_already_called: bool,
    links: LinkQueue<Link<T>>,
    canceller: Option<Canceller<T>>,
    /// The Deferred this one waits on, for forwarding `cancel`.
    waiting_on: Option<Weak<dyn Node>>,
}

impl<T: 'static> State<T> {
    /// Whether the chain could run now: fired, and nobody running it.
    fn idle_fired(&self) -> bool {
        self.fired && !self.running
    }
}

/// A Deferred with its type erased, as the chain runner and cancel forwarding see it.
pub(crate) trait Node {
    /// Runs links until the chain is done or paused, or a result is handed to another
    /// Deferred that should run next.
    fn run(self: Rc<Self>) -> Next;
    /// `cancel()` on the Deferred.
    fn cancel_node(self: Rc<Self>);
}

pub(crate) enum Next {
    Finished,
    /// Run this one, then come back to the current one.
    Push(Rc<dyn Node>),
    /// Run this one; the current one has nothing left to do.
    Replace(Rc<dyn Node>),
}

/// Runs chains without recursion: a Deferred that hands its result to the one waiting on it
/// returns that one here instead of calling into it, so arbitrarily long chains of nested
/// Deferreds use a heap stack, not the thread's stack (Twisted's `_runCallbacks` `chain`).
fn run_chain(start: Rc<dyn Node>) {
    let next = start.clone().run();
    drive(start, next);
}

fn drive(mut current: Rc<dyn Node>, mut next: Next) {
    let mut stack: Vec<Rc<dyn Node>> = Vec::new();
    loop {
        match next {
            Next::Finished => match stack.pop() {
                Some(node) => current = node,
                None => return,
            },
            Next::Push(node) => stack.push(mem::replace(&mut current, node)),
            Next::Replace(node) => current = node,
        }
        next = current.clone().run();
    }
}

impl<T: 'static> Deferred<T> {
    /// A new Deferred, not yet fired.
    pub fn new() -> Deferred<T> {
        Deferred::from_core(Rc::new(Core {
            st: RefCell::new(State {
                result: Slot::Empty,
                fired: false,
                running: false,
                suppress_already_called: false,
                links: LinkQueue::new(),
                canceller: None,
                waiting_on: None,
            }),
            paused: Cell::new(0),
        }))
    }

    /// A new Deferred whose [`cancel`](Deferred::cancel) runs `canceller` first (to stop
    /// the work that would fire it). If the canceller does not fire the Deferred, `cancel`
    /// then fails it with [`DeferredError::Cancelled`].
    pub fn with_canceller(canceller: impl FnOnce(&Deferred<T>) + 'static) -> Deferred<T> {
        let d = Deferred::new();
        d.core.st.borrow_mut().canceller = Some(Box::new(canceller));
        d
    }

    /// A Deferred already fired with `value` (Twisted's `succeed`).
    pub fn succeeded(value: T) -> Deferred<T> {
        Deferred::resolved(Ok(value))
    }

    /// A Deferred already failed with `failure` (Twisted's `fail`).
    #[track_caller]
    pub fn failed(failure: impl Into<Failure>) -> Deferred<T> {
        Deferred::resolved(Err(failure.into()))
    }

    /// A Deferred already fired with `result`.
    pub fn resolved(result: Result<T, Failure>) -> Deferred<T> {
        let d = Deferred::new();
        {
            let mut st = d.core.st.borrow_mut();
            st.fired = true;
            st.result = Slot::Ready(result);
        }
        d
    }

    fn from_core(core: Rc<Core<T>>) -> Deferred<T> {
        Deferred { core, wait: None }
    }

    // ---- firing -------------------------------------------------------------------------

    /// Fires the Deferred with a value. Fails with [`DeferredError::AlreadyCalled`] if it
    /// has already fired (the value is dropped), except once after a `cancel` without a
    /// canceller, which is ignored (the source did not know it was cancelled).
    pub fn callback(&self, value: T) -> Result<(), DeferredError> {
        self.resolve(Ok(value))
    }

    /// Fires the Deferred with a failure. Same rules as [`callback`](Deferred::callback).
    #[track_caller]
    pub fn errback(&self, failure: impl Into<Failure>) -> Result<(), DeferredError> {
        self.resolve(Err(failure.into()))
    }

    /// Fires the Deferred with `result`: `callback` or `errback`.
    pub fn resolve(&self, result: Result<T, Failure>) -> Result<(), DeferredError> {
        let (canceller, run) = {
            let mut st = self.core.st.borrow_mut();
            if st.fired {
                if mem::replace(&mut st.suppress_already_called, false) {
                    return Ok(());
                }
                return Err(DeferredError::AlreadyCalled);
            }
            st.fired = true;
            st.result = Slot::Ready(result);
            let run = self.core.paused.get() == 0 && !st.running && !st.links.is_empty();
            (st.canceller.take(), run)
        };
        drop(canceller);
        if run {
            run_chain(self.core.clone());
        }
        Ok(())
    }

    // ---- the chain ----------------------------------------------------------------------

    /// Adds a callback: it gets the value and returns the next one, or a failure (which
    /// switches the chain to the errback path). A failure passes it by.
    pub fn add_callback(&self, f: impl FnOnce(T) -> Result<T, Failure> + 'static) -> &Self {
        self.push(Box::new(move |r| Outcome::Done(r.and_then(f))))
    }

    /// Adds an errback: it gets the failure and either recovers with a value (switching the
    /// chain back to the callback path) or returns a failure. A value passes it by.
    pub fn add_errback(&self, f: impl FnOnce(Failure) -> Result<T, Failure> + 'static) -> &Self {
        self.push(Box::new(move |r| Outcome::Done(r.or_else(f))))
    }

    /// Adds a callback and an errback at the same level: exactly one of them runs, and the
    /// errback does not see a failure returned by the callback (Twisted's `addCallbacks`).
    pub fn add_callbacks(
        &self,
        callback: impl FnOnce(T) -> Result<T, Failure> + 'static,
        errback: impl FnOnce(Failure) -> Result<T, Failure> + 'static,
    ) -> &Self {
        self.push(Box::new(move |r| {
            Outcome::Done(match r {
                Ok(v) => callback(v),
                Err(e) => errback(e),
            })
        }))
    }

    /// Adds a function that gets the result whichever path it is on (Twisted's `addBoth`).
    pub fn add_both(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> Result<T, Failure> + 'static,
    ) -> &Self {
        self.push(Box::new(move |r| Outcome::Done(f(r))))
    }

    /// Adds a callback that returns another Deferred: the chain pauses until that one fires,
    /// then goes on with its result (Twisted's callback-returns-a-Deferred chaining).
    /// Cancelling this Deferred meanwhile cancels the inner one.
    pub fn add_callback_deferred(&self, f: impl FnOnce(T) -> Deferred<T> + 'static) -> &Self {
        self.push(Box::new(move |r| match r {
            Ok(v) => Outcome::Wait(f(v)),
            Err(e) => Outcome::Done(Err(e)),
        }))
    }

    /// Adds an errback that returns another Deferred to wait for.
    pub fn add_errback_deferred(&self, f: impl FnOnce(Failure) -> Deferred<T> + 'static) -> &Self {
        self.push(Box::new(move |r| match r {
            Ok(v) => Outcome::Done(Ok(v)),
            Err(e) => Outcome::Wait(f(e)),
        }))
    }

    /// Adds a function of either result that returns another Deferred to wait for.
    pub fn add_both_deferred(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> Deferred<T> + 'static,
    ) -> &Self {
        self.push(Box::new(move |r| Outcome::Wait(f(r))))
    }

    /// Takes the result where the chain stands and hands it to `f`. This ends the chain:
    /// the result is consumed, so a failure is handled and never logged as unhandled.
    pub fn consume(&self, f: impl FnOnce(Result<T, Failure>) + 'static) -> &Self {
        self.push(Box::new(move |r| {
            f(r);
            Outcome::Consumed
        }))
    }

    /// Makes `other` fire with this Deferred's result, where the chain stands (Twisted's
    /// `chainDeferred`). The result moves to `other`.
    pub fn chain_deferred(&self, other: &Deferred<T>) -> &Self {
        let target = other.core.clone();
        self.push(Box::new(move |r| Core::deliver(&target, Outcome::Done(r))))
    }

    /// A new Deferred fired with `f` applied to this one's result, whichever path it is
    /// on. The result moves to the new Deferred; cancelling the new one cancels this one.
    #[must_use = "the result moves to the returned Deferred"]
    pub fn then<U: 'static>(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> Result<U, Failure> + 'static,
    ) -> Deferred<U> {
        self.then_outcome(move |r| Outcome::Done(f(r)))
    }

    /// A new Deferred fired with `f` applied to this one's value; a failure passes through.
    #[must_use = "the result moves to the returned Deferred"]
    pub fn map<U: 'static>(&self, f: impl FnOnce(T) -> U + 'static) -> Deferred<U> {
        self.then_outcome(move |r| Outcome::Done(r.map(f)))
    }

    /// A new Deferred fired with the outcome of `f` applied to this one's value; a
    /// failure passes through.
    #[must_use = "the result moves to the returned Deferred"]
    pub fn and_then<U: 'static>(
        &self,
        f: impl FnOnce(T) -> Result<U, Failure> + 'static,
    ) -> Deferred<U> {
        self.then_outcome(move |r| Outcome::Done(r.and_then(f)))
    }

    /// A new Deferred that waits for the Deferred `f` returns for this one's value; a
    /// failure passes through.
    #[must_use = "the result moves to the returned Deferred"]
    pub fn and_then_deferred<U: 'static>(
        &self,
        f: impl FnOnce(T) -> Deferred<U> + 'static,
    ) -> Deferred<U> {
        self.then_outcome(move |r| match r {
            Ok(v) => Outcome::Wait(f(v)),
            Err(e) => Outcome::Done(Err(e)),
        })
    }

    /// `f` must return `Done` or `Wait`.
    fn then_outcome<U: 'static>(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> Outcome<U> + 'static,
    ) -> Deferred<U> {
        let source = self.downgrade();
        let out = Deferred::<U>::with_canceller(move |out| {
            // The source may still deliver after this (if it ignores the cancel); drop that
            // quietly, as a source that was told to cancel would.
            out.core.st.borrow_mut().suppress_already_called = true;
            if let Some(source) = source.upgrade() {
                source.cancel();
            }
        });
        let target = out.core.clone();
        self.push(Box::new(move |r| {
            let outcome = catch_unwind(AssertUnwindSafe(|| f(r)))
                .unwrap_or_else(|panic| Outcome::Done(Err(panicked(&*panic))));
            Core::deliver(&target, outcome)
        }));
        out
    }

    /// Adds a link that may take the result out of this chain (combinators use it to
    /// collect results without leaving a value behind).
    pub(crate) fn add_handoff(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> Outcome<T> + 'static,
    ) -> &Self {
        self.push(Box::new(f))
    }

    fn push(&self, link: Link<T>) -> &Self {
        let core = &self.core;
        let mut st = core.st.borrow_mut();
        if !(st.idle_fired() && core.paused.get() == 0) {
            st.links.push_back(link);
            return self;
        }
        if !st.links.is_empty() {
            st.links.push_back(link);
            drop(st);
            run_chain(core.clone());
            return self;
        }
        drop(st);
        self.run_now(link);
        self
    }

    /// Runs a link added to a fired, idle Deferred with nothing queued straight away,
    /// without queueing it (Twisted runs such callbacks at once, too).
    #[inline(never)]
    fn run_now(&self, link: Link<T>) {
        let core = &self.core;
        let mut st = core.st.borrow_mut();
        let current = match mem::replace(&mut st.result, Slot::Elsewhere) {
            Slot::Ready(r) => r,
            Slot::Handed => Err(Failure::new(DeferredError::ResultConsumed)),
            other => {
                st.result = other;
                st.links.push_back(link);
                return;
            }
        };
        st.running = true;
        drop(st);
        let outcome = catch_unwind(AssertUnwindSafe(move || link(current)))
            .unwrap_or_else(|panic| Outcome::Done(Err(panicked(&*panic))));
        if let Outcome::Done(r) = outcome {
            let mut st = core.st.borrow_mut();
            st.result = Slot::Ready(r);
            st.running = false;
            let more = !st.links.is_empty() && core.paused.get() == 0;
            drop(st);
            if more {
                // The callback added links of its own.
                run_chain(core.clone());
            }
        } else {
            core.settle(outcome);
        }
    }

    // ---- cancelling, pausing, timeouts --------------------------------------------------

    /// Cancels the Deferred (Twisted's `cancel`).
    ///
    /// If it has not fired: its canceller runs, and if that did not fire it, it fails with
    /// [`DeferredError::Cancelled`]. If it has fired and is waiting on another Deferred
    /// returned by a callback, that one is cancelled. Otherwise it does nothing.
    pub fn cancel(&self) {
        enum Action<T: 'static> {
            Canceller(Canceller<T>),
            Fail,
            Forward(Rc<dyn Node>),
            Nothing,
        }
        let action = {
            let mut st = self.core.st.borrow_mut();
            if !st.fired {
                match st.canceller.take() {
                    Some(c) => Action::Canceller(c),
                    None => {
                        st.suppress_already_called = true;
                        Action::Fail
                    }
                }
            } else {
                match st.waiting_on.as_ref().and_then(Weak::upgrade) {
                    Some(inner) => Action::Forward(inner),
                    None => Action::Nothing,
                }
            }
        };
        match action {
            Action::Canceller(canceller) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| canceller(self))) {
                    crate::log::report_error!(
                        "Deferred canceller panicked: {}",
                        panic_message(&*panic)
                    );
                }
                if !self.called() {
                    let _ = self.errback(DeferredError::Cancelled);
                }
            }
            Action::Fail => {
                let _ = self.errback(DeferredError::Cancelled);
            }
            Action::Forward(inner) => inner.cancel_node(),
            Action::Nothing => {}
        }
    }

    /// Fails the Deferred with [`DeferredError::TimedOut`] if it has not fired within
    /// `timeout` on `clock` (Twisted's `addTimeout`): it is cancelled then, and the
    /// resulting `Cancelled` failure is turned into `TimedOut` by a link added here (so
    /// links added before this one see `Cancelled`). Firing in time cancels the timer.
    pub fn add_timeout(&self, timeout: Duration, clock: &dyn ReactorTime) -> &Self {
        let timed_out = Rc::new(Cell::new(false));
        let (flag, d) = (timed_out.clone(), self.clone());
        let call = clock.call_later_boxed(
            timeout,
            Box::new(move || {
                flag.set(true);
                d.cancel();
            }),
        );
        self.add_both(move |r| {
            if call.active() {
                let _ = call.cancel();
            }
            match r {
                Err(f) if timed_out.get() && f.is_cancelled() => {
                    Err(Failure::new(DeferredError::TimedOut(timeout)))
                }
                other => other,
            }
        })
    }

    /// Stops the chain from running until [`unpause`](Deferred::unpause) (pauses nest).
    pub fn pause(&self) {
        self.core.paused.set(self.core.paused.get() + 1);
    }

    /// Undoes one [`pause`](Deferred::pause), running the chain if that was the last.
    pub fn unpause(&self) {
        let paused = self.core.paused.get().saturating_sub(1);
        self.core.paused.set(paused);
        let run = {
            let st = self.core.st.borrow();
            paused == 0 && st.idle_fired() && !st.links.is_empty()
        };
        if run {
            run_chain(self.core.clone());
        }
    }

    // ---- looking at it ------------------------------------------------------------------

    /// Whether it has fired (Twisted's `called`).
    pub fn called(&self) -> bool {
        self.core.st.borrow().fired
    }

    /// Whether it has fired and its chain has run to the end, so its result (if not
    /// handed on) is available.
    pub fn is_finished(&self) -> bool {
        self.core.finished(&self.core.st.borrow())
    }

    /// Whether it is paused, explicitly or waiting on another Deferred.
    pub fn paused(&self) -> bool {
        self.core.paused.get() > 0
    }

    /// Takes the result if the chain has run to the end: `None` if it is not there (not
    /// fired, still running, waiting) or was already taken. Like awaiting it, but now.
    pub fn try_result(&self) -> Option<Result<T, Failure>> {
        let mut st = self.core.st.borrow_mut();
        if !self.core.finished(&st) {
            return None;
        }
        match mem::replace(&mut st.result, Slot::Handed) {
            Slot::Ready(r) => Some(r),
            other => {
                st.result = other;
                None
            }
        }
    }

    /// A weak handle, which does not keep the Deferred alive.
    pub fn downgrade(&self) -> WeakDeferred<T> {
        WeakDeferred {
            core: Rc::downgrade(&self.core),
        }
    }

    /// Whether two handles name the same Deferred.
    pub fn ptr_eq(&self, other: &Deferred<T>) -> bool {
        Rc::ptr_eq(&self.core, &other.core)
    }
}

impl<T: 'static> Core<T> {
    /// Fired, and its chain has run to the end.
    fn finished(&self, st: &State<T>) -> bool {
        st.idle_fired() && self.paused.get() == 0 && st.links.is_empty()
    }

    /// Puts `outcome` (`Done` or `Wait`) into this not yet fired Deferred from a link of
    /// another chain, and says what to run next. Firing an already fired Deferred this way
    /// is an `AlreadyCalled` failure on the sender's chain, unless that Deferred was
    /// cancelled (then it is dropped).
    fn deliver<S: 'static>(core: &Rc<Core<T>>, outcome: Outcome<T>) -> Outcome<S> {
        let canceller = {
            let mut st = core.st.borrow_mut();
            if st.fired {
                if mem::replace(&mut st.suppress_already_called, false) {
                    return Outcome::Consumed;
                }
                return Outcome::Done(Err(Failure::new(DeferredError::AlreadyCalled)));
            }
            st.fired = true;
            st.result = Slot::Elsewhere;
            st.canceller.take()
        };
        drop(canceller);
        let result = match outcome {
            Outcome::Done(r) => r,
            Outcome::Wait(inner) => match Core::absorb(core, inner) {
                Absorbed::Value(r) => r,
                Absorbed::Paused => return Outcome::Consumed,
                Absorbed::RunInner(node) => return Outcome::Run(node),
            },
            Outcome::Consumed | Outcome::Run(_) => Err(Failure::new(DeferredError::ResultConsumed)),
        };
        let mut st = core.st.borrow_mut();
        st.result = Slot::Ready(result);
        if st.links.is_empty() || core.paused.get() > 0 {
            Outcome::Consumed
        } else {
            drop(st);
            Outcome::Run(core.clone())
        }
    }

    /// This Deferred's result is `inner`: take its result now if it has one, else pause
    /// and wait for it (this Deferred's result is then `Elsewhere`).
    fn absorb(core: &Rc<Core<T>>, inner: Deferred<T>) -> Absorbed<T> {
        if Rc::ptr_eq(core, &inner.core) {
            return Absorbed::Value(Err(Failure::new(DeferredError::ChainedToItself)));
        }
        let mut ist = inner.core.st.borrow_mut();
        let idle = ist.idle_fired() && inner.core.paused.get() == 0;
        if idle && ist.links.is_empty() {
            return Absorbed::Value(match mem::replace(&mut ist.result, Slot::Handed) {
                Slot::Ready(r) => r,
                _ => Err(Failure::new(DeferredError::ResultConsumed)),
            });
        }
        let outer = core.clone();
        ist.links
            .push_back(Box::new(move |r| Core::resume(outer, r)));
        drop(ist);
        core.paused.set(core.paused.get() + 1);
        let mut st = core.st.borrow_mut();
        st.result = Slot::Elsewhere;
        let inner_node: Rc<dyn Node> = inner.core.clone();
        st.waiting_on = Some(Rc::downgrade(&inner_node));
        if idle {
            Absorbed::RunInner(inner_node)
        } else {
            Absorbed::Paused
        }
    }

    /// The Deferred this one waited on has fired with `r`.
    fn resume<S: 'static>(core: Rc<Core<T>>, r: Result<T, Failure>) -> Outcome<S> {
        let paused = core.paused.get().saturating_sub(1);
        core.paused.set(paused);
        let run = {
            let mut st = core.st.borrow_mut();
            st.result = Slot::Ready(r);
            st.waiting_on = None;
            paused == 0 && !st.running
        };
        if run {
            Outcome::Run(core)
        } else {
            Outcome::Consumed
        }
    }

    /// Runs the chain until the links run out, the chain pauses, or the result goes to
    /// another Deferred that should run next.
    fn run_links(self: &Rc<Self>) -> Next {
        // While running, the result stays in `result` (`None`: handed on) and the links in
        // `batch`; links added meanwhile queue up in the state behind them.
        let (mut result, mut batch) = {
            let mut st = self.st.borrow_mut();
            if self.paused.get() > 0 || !st.fired || st.links.is_empty() {
                return Next::Finished;
            }
            let result = match mem::replace(&mut st.result, Slot::Elsewhere) {
                Slot::Ready(r) => Some(r),
                Slot::Handed => None,
                other => {
                    // A runner further down the stack holds the result; it will get to
                    // these links.
                    st.result = other;
                    return Next::Finished;
                }
            };
            st.running = true;
            (result, mem::take(&mut st.links))
        };
        // One unwind guard for the whole run, not one per link: no borrow is held while a
        // link runs, so after a panic the loop goes on with the panic as the result.
        loop {
            match catch_unwind(AssertUnwindSafe(|| self.run_batch(&mut result, &mut batch))) {
                Ok(next) => return next,
                Err(panic) => result = Some(Err(panicked(&*panic))),
            }
        }
    }

    fn run_batch(
        self: &Rc<Self>,
        result: &mut Option<Result<T, Failure>>,
        batch: &mut LinkQueue<Link<T>>,
    ) -> Next {
        loop {
            if self.paused.get() > 0 {
                self.stop(result.take(), mem::take(batch));
                return Next::Finished;
            }
            let link = match batch.pop_front() {
                Some(link) => link,
                None => {
                    let mut st = self.st.borrow_mut();
                    if st.links.is_empty() {
                        st.result = match result.take() {
                            Some(r) => Slot::Ready(r),
                            None => Slot::Handed,
                        };
                        st.running = false;
                        return Next::Finished;
                    }
                    mem::swap(batch, &mut st.links);
                    continue;
                }
            };
            let current = result
                .take()
                .unwrap_or_else(|| Err(Failure::new(DeferredError::ResultConsumed)));
            match link(current) {
                Outcome::Done(r) => *result = Some(r),
                Outcome::Consumed => {}
                Outcome::Wait(inner) => match Core::absorb(self, inner) {
                    Absorbed::Value(r) => *result = Some(r),
                    Absorbed::Paused => {
                        self.stop_waiting(mem::take(batch));
                        return Next::Finished;
                    }
                    Absorbed::RunInner(node) => {
                        self.stop_waiting(mem::take(batch));
                        return Next::Replace(node);
                    }
                },
                Outcome::Run(next) => {
                    let mut st = self.st.borrow_mut();
                    st.result = Slot::Handed;
                    if batch.is_empty() && st.links.is_empty() {
                        st.running = false;
                        return Next::Replace(next);
                    }
                    // Stay `running`: this runner comes back to the rest once `next` is done.
                    st.links.prepend(mem::take(batch));
                    return Next::Push(next);
                }
            }
        }
    }

    /// Applies the outcome of a link run outside the runner loop (by `push`), then runs
    /// whatever that made ready.
    fn settle(self: &Rc<Self>, outcome: Outcome<T>) {
        let then_run = {
            let slot = |result| self.st.borrow_mut().result = result;
            match outcome {
                Outcome::Done(r) => {
                    slot(Slot::Ready(r));
                    None
                }
                Outcome::Consumed => {
                    slot(Slot::Handed);
                    None
                }
                Outcome::Run(next) => {
                    slot(Slot::Handed);
                    Some(next)
                }
                Outcome::Wait(inner) => match Core::absorb(self, inner) {
                    Absorbed::Value(r) => {
                        slot(Slot::Ready(r));
                        None
                    }
                    Absorbed::Paused => None,
                    Absorbed::RunInner(node) => Some(node),
                },
            }
        };
        self.st.borrow_mut().running = false;
        if let Some(node) = then_run {
            run_chain(node);
        }
        let more = {
            let st = self.st.borrow();
            st.idle_fired() && self.paused.get() == 0 && !st.links.is_empty()
        };
        if more {
            run_chain(self.clone());
        }
    }

    /// Leaves the loop: the result and the links not run go back to the state.
    fn stop(&self, result: Option<Result<T, Failure>>, batch: LinkQueue<Link<T>>) {
        let mut st = self.st.borrow_mut();
        st.result = match result {
            Some(r) => Slot::Ready(r),
            None => Slot::Handed,
        };
        Core::unbatch(&mut st, batch);
        st.running = false;
    }

    /// Leaves the loop to wait on another Deferred (`absorb` has set the result).
    fn stop_waiting(&self, batch: LinkQueue<Link<T>>) {
        let mut st = self.st.borrow_mut();
        Core::unbatch(&mut st, batch);
        st.running = false;
    }

    /// Puts links taken out for running back in front of those queued since.
    fn unbatch(st: &mut State<T>, batch: LinkQueue<Link<T>>) {
        st.links.prepend(batch);
    }
}

enum Absorbed<T> {
    Value(Result<T, Failure>),
    Paused,
    RunInner(Rc<dyn Node>),
}

impl<T: 'static> Node for Core<T> {
    fn run(self: Rc<Self>) -> Next {
        self.run_links()
    }

    fn cancel_node(self: Rc<Self>) {
        Deferred::from_core(self).cancel()
    }
}

/// The failure a panic in a link turns into.
fn panicked(panic: &(dyn Any + Send)) -> Failure {
    Failure::new(DeferredError::Panicked(panic_message(panic)))
}

impl<T: 'static> Drop for Core<T> {
    fn drop(&mut self) {
        let st = self.st.get_mut();
        if let Slot::Ready(Err(failure)) = &st.result {
            log_unhandled(failure);
        }
        if !st.links.is_empty() {
            // Links may own other Deferreds (a chain waiting on a chain...): drop them from a
            // loop rather than recursively.
            drop_iteratively(Box::new(mem::take(&mut st.links)));
        }
    }
}

fn log_unhandled(failure: &Failure) {
    if crate::log::unobserved() {
        crate::log::print(
            "error",
            format_args!(
                "Unhandled error in Deferred: {failure}\n  at {}",
                failure.location()
            ),
        );
    } else {
        tracing::error!(
            at = %failure.location(),
            "Unhandled error in Deferred: {failure}"
        );
    }
}

thread_local! {
    /// Values queued for dropping by an outer `drop_iteratively` on this thread.
    static DROP_QUEUE: RefCell<Option<Vec<Box<dyn Any>>>> = const { RefCell::new(None) };
}

fn drop_iteratively(item: Box<dyn Any>) {
    let mut item = Some(item);
    let is_outermost = DROP_QUEUE
        .try_with(|queue| {
            let mut queue = queue.borrow_mut();
            match queue.as_mut() {
                Some(pending) => {
                    pending.extend(item.take());
                    false
                }
                None => {
                    *queue = Some(Vec::new());
                    true
                }
            }
        })
        .unwrap_or(false);
    // Either queued (item is None), or the thread-local is gone (dropped right here), or we
    // are the outermost drop and drain the queue below.
    drop(item);
    if !is_outermost {
        return;
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            // On a panic, leak what is left rather than risk a second panic.
            let _ = DROP_QUEUE.try_with(|q| mem::forget(q.borrow_mut().take()));
        }
    }
    let reset = Reset;
    while let Some(next) = DROP_QUEUE.with(|q| q.borrow_mut().as_mut().and_then(Vec::pop)) {
        drop(next);
    }
    drop(reset);
}

impl<T: 'static> Default for Deferred<T> {
    fn default() -> Self {
        Deferred::new()
    }
}

impl<T: 'static> Clone for Deferred<T> {
    /// Another handle on the same Deferred (a pending `await` stays with the original).
    fn clone(&self) -> Self {
        Deferred::from_core(self.core.clone())
    }
}

impl<T: 'static> fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.core.st.borrow();
        let state = match (&st.result, self.core.paused.get()) {
            (Slot::Empty, _) => "pending",
            (_, p) if p > 0 => "paused",
            (Slot::Ready(Ok(_)), _) => "succeeded",
            (Slot::Ready(Err(_)), _) => "failed",
            (Slot::Elsewhere, _) => "running",
            (Slot::Handed, _) => "handed on",
        };
        f.debug_struct("Deferred")
            .field("state", &state)
            .field("links", &st.links.len())
            .finish()
    }
}

/// A weak handle on a [`Deferred`] (from [`Deferred::downgrade`]).
pub struct WeakDeferred<T: 'static> {
    core: Weak<Core<T>>,
}

impl<T: 'static> WeakDeferred<T> {
    /// The Deferred, if it still exists.
    pub fn upgrade(&self) -> Option<Deferred<T>> {
        self.core.upgrade().map(Deferred::from_core)
    }
}

impl<T: 'static> Clone for WeakDeferred<T> {
    fn clone(&self) -> Self {
        WeakDeferred {
            core: self.core.clone(),
        }
    }
}

impl<T: 'static> fmt::Debug for WeakDeferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakDeferred")
    }
}

// ---- Future -----------------------------------------------------------------------------

/// Where an `await` receives the result: the chain's `Await` link fills it and wakes.
struct AwaitSlot<T> {
    result: RefCell<Option<Result<T, Failure>>>,
    waker: RefCell<Option<Waker>>,
}

impl<T> AwaitSlot<T> {
    fn put(&self, result: Result<T, Failure>) {
        *self.result.borrow_mut() = Some(result);
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for AwaitSlot<T> {
    fn drop(&mut self) {
        // The awaiting future went away before taking a failure meant for it.
        if let Some(Err(failure)) = self.result.get_mut() {
            log_unhandled(failure);
        }
    }
}

/// Awaiting a Deferred waits for the chain to reach this point and takes the result there
/// (links added later see [`DeferredError::ResultConsumed`]). Dropping the future does not
/// cancel the Deferred: other handles may still want it; call `cancel` for that.
impl<T: 'static> Future for Deferred<T> {
    type Output = Result<T, Failure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(slot) = &this.wait {
            let taken = slot.result.borrow_mut().take();
            if let Some(result) = taken {
                this.wait = None;
                return Poll::Ready(result);
            }
            let mut waker = slot.waker.borrow_mut();
            match waker.as_mut() {
                Some(w) => w.clone_from(cx.waker()),
                None => *waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        {
            let mut st = this.core.st.borrow_mut();
            if this.core.finished(&st) {
                return Poll::Ready(match mem::replace(&mut st.result, Slot::Handed) {
                    Slot::Ready(r) => r,
                    _ => Err(Failure::new(DeferredError::ResultConsumed)),
                });
            }
        }
        let slot = Rc::new(AwaitSlot {
            result: RefCell::new(None),
            waker: RefCell::new(Some(cx.waker().clone())),
        });
        this.wait = Some(slot.clone());
        let sink = slot.clone();
        this.push(Box::new(move |r| {
            sink.put(r);
            Outcome::Consumed
        }));
        let taken = slot.result.borrow_mut().take();
        if let Some(result) = taken {
            this.wait = None;
            return Poll::Ready(result);
        }
        Poll::Pending
    }
}

/// A Deferred already fired with `value` (Twisted's `succeed`).
pub fn succeed<T: 'static>(value: T) -> Deferred<T> {
    Deferred::succeeded(value)
}

/// A Deferred already failed with `failure` (Twisted's `fail`).
#[track_caller]
pub fn fail<T: 'static>(failure: impl Into<Failure>) -> Deferred<T> {
    Deferred::resolved(Err(failure.into()))
}
