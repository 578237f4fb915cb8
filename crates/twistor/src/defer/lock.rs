//! [`DeferredLock`] and [`DeferredSemaphore`]: mutual exclusion for code that waits on
//! Deferreds (Twisted's `DeferredLock` and `DeferredSemaphore`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use super::deferred::Deferred;
use super::failure::{DeferredError, Failure};

/// A semaphore whose waiters are Deferreds: at most `limit` holders at a time, the others
/// wait in line (first come, first served).
///
/// [`acquire`](DeferredSemaphore::acquire) returns a Deferred that fires when a token is
/// the caller's; cancelling it while it waits takes it out of the line.
/// [`run`](DeferredSemaphore::run) acquires, runs a function, and releases when the
/// Deferred it returns fires.
///
/// ```
/// use twistor::defer::{Deferred, DeferredSemaphore};
///
/// let sem = DeferredSemaphore::new(1);
/// let first = sem.acquire();
/// let second = sem.acquire();
/// assert!(first.called() && !second.called());
/// sem.release().unwrap();
/// assert!(second.called());
/// ```
#[derive(Clone)]
pub struct DeferredSemaphore {
    inner: Rc<SemInner>,
}

struct SemInner {
    limit: usize,
    tokens: Cell<usize>,
    waiting: RefCell<VecDeque<Deferred<()>>>,
}

impl DeferredSemaphore {
    /// A semaphore with `tokens` tokens (at least one: 0 is taken as 1).
    pub fn new(tokens: usize) -> DeferredSemaphore {
        let limit = tokens.max(1);
        DeferredSemaphore {
            inner: Rc::new(SemInner {
                limit,
                tokens: Cell::new(limit),
                waiting: RefCell::new(VecDeque::new()),
            }),
        }
    }

    /// A Deferred that fires once a token is the caller's: at once if one is free.
    pub fn acquire(&self) -> Deferred<()> {
        let inner = &self.inner;
        if inner.tokens.get() > 0 {
            inner.tokens.set(inner.tokens.get() - 1);
            return Deferred::succeeded(());
        }
        let weak: Weak<SemInner> = Rc::downgrade(inner);
        let d = Deferred::with_canceller(move |d| {
            if let Some(inner) = weak.upgrade() {
                inner.waiting.borrow_mut().retain(|w| !w.ptr_eq(d));
            }
        });
        inner.waiting.borrow_mut().push_back(d.clone());
        d
    }

    /// Gives a token back, handing it to the first waiter if any. Releasing more than was
    /// acquired fails with [`DeferredError::NotAcquired`].
    pub fn release(&self) -> Result<(), DeferredError> {
        let inner = &self.inner;
        if inner.tokens.get() >= inner.limit {
            return Err(DeferredError::NotAcquired);
        }
        let next = inner.waiting.borrow_mut().pop_front();
        match next {
            // The token goes straight to the waiter.
            Some(waiter) => {
                let _ = waiter.callback(());
            }
            None => inner.tokens.set(inner.tokens.get() + 1),
        }
        Ok(())
    }

    /// Acquires, calls `f`, and releases once the Deferred `f` returns has fired; the result
    /// is that Deferred's. A panic in `f` releases and fails the result.
    pub fn run<T: 'static>(&self, f: impl FnOnce() -> Deferred<T> + 'static) -> Deferred<T> {
        let this = self.clone();
        self.acquire().and_then_deferred(move |()| {
            let d = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(d) => d,
                Err(panic) => Deferred::failed(DeferredError::Panicked(
                    crate::reactor::panic_message(&*panic),
                )),
            };
            d.add_both(move |r: Result<T, Failure>| {
                let _ = this.release();
                r
            });
            d
        })
    }

    /// Tokens free right now.
    pub fn tokens(&self) -> usize {
        self.inner.tokens.get()
    }

    /// The number of tokens it was made with.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// How many acquirers are waiting.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.borrow().len()
    }
}

/// A lock whose waiters are Deferreds (a [`DeferredSemaphore`] with one token).
///
/// ```
/// use twistor::defer::{DeferredLock, succeed};
///
/// let lock = DeferredLock::new();
/// let result = lock.run(|| succeed("done"));
/// assert!(!lock.locked());
/// assert_eq!(result.try_result().unwrap().unwrap(), "done");
/// ```
#[derive(Clone)]
pub struct DeferredLock {
    sem: DeferredSemaphore,
}

impl Default for DeferredLock {
    fn default() -> Self {
        DeferredLock::new()
    }
}

impl DeferredLock {
    /// An unlocked lock.
    pub fn new() -> DeferredLock {
        DeferredLock {
            sem: DeferredSemaphore::new(1),
        }
    }

    /// A Deferred that fires once the lock is the caller's. Cancel it to stop waiting.
    pub fn acquire(&self) -> Deferred<()> {
        self.sem.acquire()
    }

    /// Unlocks, handing the lock to the first waiter if any; [`DeferredError::NotAcquired`]
    /// if it is not locked.
    pub fn release(&self) -> Result<(), DeferredError> {
        self.sem.release()
    }

    /// Runs `f` under the lock; see [`DeferredSemaphore::run`].
    pub fn run<T: 'static>(&self, f: impl FnOnce() -> Deferred<T> + 'static) -> Deferred<T> {
        self.sem.run(f)
    }

    /// Whether someone holds the lock.
    pub fn locked(&self) -> bool {
        self.sem.tokens() == 0
    }

    /// How many acquirers are waiting.
    pub fn waiting(&self) -> usize {
        self.sem.waiting()
    }
}
