//! The one door into a reactor from other threads.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use crate::error::Error;

use super::Reactor;

/// A closure posted from another thread, run on the reactor thread.
pub(crate) type RemoteCall = Box<dyn FnOnce(&Reactor) + Send>;

/// What other threads may touch: a queue of closures and woken task ids, and the waker that
/// interrupts `epoll_wait`.
pub(crate) struct Shared {
    queue: Mutex<Queued>,
    /// Set when something is queued, so the reactor can skip the lock when nothing is.
    pending: AtomicBool,
    /// Cleared when the reactor is dropped: posting then fails.
    alive: AtomicBool,
    waker: mio::Waker,
    owner: ThreadId,
}

#[derive(Default)]
pub(crate) struct Queued {
    pub(crate) calls: Vec<RemoteCall>,
    pub(crate) tasks: Vec<u64>,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> Shared {
        Shared {
            queue: Mutex::new(Queued::default()),
            pending: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            waker,
            owner: thread::current().id(),
        }
    }

    fn post(&self, f: impl FnOnce(&mut Queued)) -> Result<(), Error> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(Error::ReactorNotRunning);
        }
        f(&mut self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        self.pending.store(true, Ordering::Release);
        // On the reactor thread the loop looks at the queue before it next sleeps.
        if thread::current().id() != self.owner {
            let _ = self.waker.wake();
        }
        Ok(())
    }

    pub(crate) fn post_call(&self, call: RemoteCall) -> Result<(), Error> {
        self.post(|q| q.calls.push(call))
    }

    pub(crate) fn post_task(&self, id: u64) {
        let _ = self.post(|q| q.tasks.push(id));
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Swaps the queue's contents into `into` (whose vectors must be empty).
    pub(crate) fn take(&self, into: &mut Queued) {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut q.calls, &mut into.calls);
        std::mem::swap(&mut q.tasks, &mut into.tasks);
    }

    pub(crate) fn close(&self) {
        self.alive.store(false, Ordering::Release);
    }
}

/// A `Send + Sync` handle on a reactor, for other threads (Twisted's `callFromThread`).
///
/// ```
/// let reactor = twistor::Reactor::new().unwrap();
/// let handle = reactor.handle();
/// std::thread::spawn(move || {
///     handle.call_from_thread(|reactor| reactor.stop()).unwrap();
/// });
/// reactor.run().unwrap();
/// ```
#[derive(Clone)]
pub struct ReactorHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ReactorHandle {
    /// Runs `f` on the reactor thread, soon, waking the reactor if it is waiting. Calls run
    /// in the order they were posted. Fails if the reactor has been dropped.
    pub fn call_from_thread(&self, f: impl FnOnce(&Reactor) + Send + 'static) -> Result<(), Error> {
        self.shared.post_call(Box::new(f))
    }

    /// Whether the calling thread is the reactor's own.
    pub fn is_reactor_thread(&self) -> bool {
        thread::current().id() == self.shared.owner
    }
}

impl fmt::Debug for ReactorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorHandle")
            .field("owner", &self.shared.owner)
            .finish()
    }
}
