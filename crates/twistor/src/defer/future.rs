//! Futures on the reactor: running an `async` block as a [`Deferred`].

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use crate::reactor::{Reactor, TaskHandle};

use super::deferred::Deferred;
use super::failure::Failure;

impl Reactor {
    /// Runs `future` on this reactor's local executor and returns a Deferred that fires
    /// with its output (Twisted's `ensureDeferred` / `Deferred.fromCoroutine`).
    ///
    /// The future is first polled on the next turn of the loop, not here. Cancelling the
    /// Deferred drops the future at once (it never completes) and fails the Deferred with
    /// `Cancelled`.
    ///
    /// ```
    /// use twistor::Reactor;
    /// use twistor::defer::succeed;
    ///
    /// let reactor = Reactor::new().unwrap();
    /// let d = reactor.spawn(async { Ok(succeed(20).await? + 1) });
    /// let r = reactor.clone();
    /// d.add_both(move |result| { r.stop(); result });
    /// reactor.run().unwrap();
    /// assert_eq!(d.try_result().unwrap().unwrap(), 21);
    /// ```
    pub fn spawn<T, F>(&self, future: F) -> Deferred<T>
    where
        T: 'static,
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        let task: Rc<RefCell<Option<TaskHandle>>> = Rc::new(RefCell::new(None));
        let abort = task.clone();
        let d = Deferred::with_canceller(move |_| {
            if let Some(handle) = abort.borrow_mut().take() {
                handle.abort();
            }
        });
        // The task holds the Deferred, so a spawned future whose Deferred nobody kept still
        // reports a failure ("Unhandled error in Deferred") when it ends.
        let fire = d.clone();
        let handle = self.spawn_task(async move {
            let result = future.await;
            let _ = fire.resolve(result);
        });
        *task.borrow_mut() = Some(handle);
        d
    }
}

/// Runs `future` on `reactor` and returns a Deferred for its output; see
/// [`Reactor::spawn`].
pub fn ensure_deferred<T, F>(reactor: &Reactor, future: F) -> Deferred<T>
where
    T: 'static,
    F: Future<Output = Result<T, Failure>> + 'static,
{
    reactor.spawn(future)
}
