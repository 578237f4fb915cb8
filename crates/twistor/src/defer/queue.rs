//! [`DeferredQueue`]: a queue whose `get` returns a Deferred (Twisted's `DeferredQueue`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use super::deferred::Deferred;
use super::failure::DeferredError;

/// A FIFO queue for the reactor thread: `put` never waits, `get` returns a Deferred that
/// fires with the next item, now or when one is put.
///
/// `size` bounds the items held (a `put` beyond it fails with
/// [`DeferredError::QueueOverflow`]); `backlog` bounds the getters waiting (a `get` beyond
/// it fails with [`DeferredError::QueueUnderflow`]). Cancelling a waiting `get` takes the
/// getter out of the line.
///
/// ```
/// use twistor::defer::DeferredQueue;
///
/// let queue = DeferredQueue::new();
/// let next = queue.get().unwrap();
/// queue.put("hello").unwrap();
/// assert_eq!(next.try_result().unwrap().unwrap(), "hello");
/// ```
pub struct DeferredQueue<T: 'static> {
    inner: Rc<QueueInner<T>>,
}

struct QueueInner<T: 'static> {
    size: Option<usize>,
    backlog: Option<usize>,
    pending: RefCell<VecDeque<T>>,
    waiting: RefCell<VecDeque<Deferred<T>>>,
}

impl<T: 'static> DeferredQueue<T> {
    /// A queue with no limits.
    pub fn new() -> DeferredQueue<T> {
        DeferredQueue::with_limits(None, None)
    }

    /// A queue holding at most `size` items and `backlog` waiting getters (`None`: no
    /// limit).
    pub fn with_limits(size: Option<usize>, backlog: Option<usize>) -> DeferredQueue<T> {
        DeferredQueue {
            inner: Rc::new(QueueInner {
                size,
                backlog,
                pending: RefCell::new(VecDeque::new()),
                waiting: RefCell::new(VecDeque::new()),
            }),
        }
    }

    /// Hands `item` to the first waiting getter, or keeps it. Fails with
    /// [`DeferredError::QueueOverflow`] (dropping the item) if the queue is full; check
    /// [`is_full`](DeferredQueue::is_full) first to keep it.
    pub fn put(&self, item: T) -> Result<(), DeferredError> {
        let waiter = self.inner.waiting.borrow_mut().pop_front();
        if let Some(waiter) = waiter {
            let _ = waiter.callback(item);
            return Ok(());
        }
        if self.is_full() {
            return Err(DeferredError::QueueOverflow);
        }
        self.inner.pending.borrow_mut().push_back(item);
        Ok(())
    }

    /// A Deferred for the next item: fired already if one is held. Fails with
    /// [`DeferredError::QueueUnderflow`] if `backlog` getters are already waiting.
    pub fn get(&self) -> Result<Deferred<T>, DeferredError> {
        let item = self.inner.pending.borrow_mut().pop_front();
        if let Some(item) = item {
            return Ok(Deferred::succeeded(item));
        }
        if let Some(backlog) = self.inner.backlog
            && self.inner.waiting.borrow().len() >= backlog
        {
            return Err(DeferredError::QueueUnderflow);
        }
        let weak: Weak<QueueInner<T>> = Rc::downgrade(&self.inner);
        let d = Deferred::with_canceller(move |d| {
            if let Some(inner) = weak.upgrade() {
                inner.waiting.borrow_mut().retain(|w| !w.ptr_eq(d));
            }
        });
        self.inner.waiting.borrow_mut().push_back(d.clone());
        Ok(d)
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.inner.pending.borrow().len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a `put` now (with nobody waiting) would overflow.
    pub fn is_full(&self) -> bool {
        self.inner.size.is_some_and(|size| self.len() >= size)
    }

    /// Getters waiting for an item.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.borrow().len()
    }
}

impl<T: 'static> Default for DeferredQueue<T> {
    fn default() -> Self {
        DeferredQueue::new()
    }
}

impl<T: 'static> Clone for DeferredQueue<T> {
    /// Another handle on the same queue.
    fn clone(&self) -> Self {
        DeferredQueue {
            inner: self.inner.clone(),
        }
    }
}
