//! Timed calls: the [`ReactorTime`] interface, [`DelayedCall`] handles, and the
//! [`TimerQueue`] that both the real reactor and the test kit's `Clock` drive.
//!
//! The queue is a binary heap ordered by deadline, then by scheduling order, so inserting
//! costs O(log n). Cancelling marks the call dead and drops its closure at once (O(1)); dead
//! heap entries are skipped when they reach the top, and the heap is compacted when they
//! outnumber the live ones, so a million schedule-then-cancel pairs stay cheap.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::error::Error;

/// Anything that can tell the time and run a function later: the reactor, or the test kit's
/// deterministic `Clock`. Code that schedules work takes one of these, so tests can drive it
/// without sleeping (Twisted's `IReactorTime`).
pub trait ReactorTime {
    /// Seconds since this clock's origin. For the reactor the origin is unspecified and the
    /// clock is monotonic; the test `Clock` starts at 0.
    fn seconds(&self) -> f64;

    /// Runs `f` after `delay`; see [`call_later`](ReactorTime::call_later).
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall;

    /// Runs `f` once, `delay` from now, on this clock's thread.
    fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> DelayedCall
    where
        Self: Sized,
    {
        self.call_later_boxed(delay, Box::new(f))
    }
}

impl dyn ReactorTime {
    /// Runs `f` once, `delay` from now, on this clock's thread.
    pub fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> DelayedCall {
        self.call_later_boxed(delay, Box::new(f))
    }
}

impl<T: ReactorTime + ?Sized> ReactorTime for Rc<T> {
    fn seconds(&self) -> f64 {
        (**self).seconds()
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        (**self).call_later_boxed(delay, f)
    }
}

/// Converts a time in nanoseconds since a clock's origin to seconds.
pub fn nanos_to_seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Converts a delay to whole nanoseconds, saturating.
pub fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    Called,
    Cancelled,
}

struct Entry {
    deadline: Cell<u64>,
    state: Cell<State>,
    /// Bumped by `reset`/`delay`, so the heap items pushed before are recognised as stale.
    generation: Cell<u32>,
    func: Cell<Option<Box<dyn FnOnce()>>>,
    queue: Weak<QueueInner>,
}

struct HeapItem {
    deadline: u64,
    seq: u64,
    generation: u32,
    entry: Rc<Entry>,
}

impl HeapItem {
    fn is_live(&self) -> bool {
        self.entry.state.get() == State::Pending && self.entry.generation.get() == self.generation
    }
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for HeapItem {}

impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeapItem {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline first, and of
    /// equal deadlines the one scheduled first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

struct QueueInner {
    heap: RefCell<BinaryHeap<HeapItem>>,
    next_seq: Cell<u64>,
    /// Heap items that no longer stand for a pending call.
    dead: Cell<usize>,
    now: Box<dyn Fn() -> u64>,
}

/// A queue of delayed calls ordered by deadline, driven by a clock that owns it.
///
/// Times are nanoseconds since the clock's origin; `now` tells the queue the current time
/// (it is needed by [`DelayedCall::reset`]).
pub struct TimerQueue {
    inner: Rc<QueueInner>,
}

/// Compacting is worth it only once this many dead items have piled up.
const COMPACT_MIN_DEAD: usize = 256;

impl TimerQueue {
    /// A new queue whose clock reads `now` (nanoseconds since its origin).
    pub fn new(now: impl Fn() -> u64 + 'static) -> TimerQueue {
        TimerQueue {
            inner: Rc::new(QueueInner {
                heap: RefCell::new(BinaryHeap::new()),
                next_seq: Cell::new(0),
                dead: Cell::new(0),
                now: Box::new(now),
            }),
        }
    }

    /// The current time of the owning clock, in nanoseconds.
    pub fn now(&self) -> u64 {
        (self.inner.now)()
    }

    /// Schedules `f` to run at `deadline` (nanoseconds since the origin).
    pub fn schedule_at(&self, deadline: u64, f: Box<dyn FnOnce()>) -> DelayedCall {
        let entry = Rc::new(Entry {
            deadline: Cell::new(deadline),
            state: Cell::new(State::Pending),
            generation: Cell::new(0),
            func: Cell::new(Some(f)),
            queue: Rc::downgrade(&self.inner),
        });
        self.inner.push(&entry);
        DelayedCall { entry }
    }

    /// Schedules `f` to run `delay` from now.
    pub fn schedule(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        let deadline = self.now().saturating_add(duration_to_nanos(delay));
        self.schedule_at(deadline, f)
    }

    /// The sequence number the next scheduled call will get. Pass it to
    /// [`pop_due`](TimerQueue::pop_due) to leave calls scheduled from now on for a later turn.
    pub fn next_seq(&self) -> u64 {
        self.inner.next_seq.get()
    }

    /// Removes and returns the next call due at or before `now`, marking it as called.
    /// With `before_seq`, calls scheduled at or after that sequence number are not returned.
    pub fn pop_due(&self, now: u64, before_seq: Option<u64>) -> Option<Box<dyn FnOnce()>> {
        let mut heap = self.inner.heap.borrow_mut();
        loop {
            let top = heap.peek()?;
            if !top.is_live() {
                heap.pop();
                self.inner.dead.set(self.inner.dead.get() - 1);
                continue;
            }
            if top.deadline > now || before_seq.is_some_and(|limit| top.seq >= limit) {
                return None;
            }
            let item = heap.pop().expect("peeked");
            item.entry.state.set(State::Called);
            return item.entry.func.take();
        }
    }

    /// The deadline of the earliest pending call, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut heap = self.inner.heap.borrow_mut();
        loop {
            let top = heap.peek()?;
            if top.is_live() {
                return Some(top.deadline);
            }
            heap.pop();
            self.inner.dead.set(self.inner.dead.get() - 1);
        }
    }

    /// How many calls are pending.
    pub fn len(&self) -> usize {
        self.inner.heap.borrow().len() - self.inner.dead.get()
    }

    /// Whether no call is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pending calls, earliest first (Twisted's `getDelayedCalls`).
    pub fn pending(&self) -> Vec<DelayedCall> {
        let heap = self.inner.heap.borrow();
        let mut items: Vec<&HeapItem> = heap.iter().filter(|item| item.is_live()).collect();
        items.sort_by(|a, b| b.cmp(a));
        items
            .into_iter()
            .map(|item| DelayedCall {
                entry: item.entry.clone(),
            })
            .collect()
    }
}

impl QueueInner {
    fn push(&self, entry: &Rc<Entry>) {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.heap.borrow_mut().push(HeapItem {
            deadline: entry.deadline.get(),
            seq,
            generation: entry.generation.get(),
            entry: entry.clone(),
        });
    }

    /// One more heap item no longer counts; rebuild the heap once they dominate it.
    fn mark_dead(&self) {
        let dead = self.dead.get() + 1;
        self.dead.set(dead);
        let Ok(mut heap) = self.heap.try_borrow_mut() else {
            return;
        };
        if dead >= COMPACT_MIN_DEAD && dead * 2 > heap.len() {
            heap.retain(HeapItem::is_live);
            self.dead.set(0);
        }
    }
}

/// A handle on a call scheduled with `call_later` (Twisted's `IDelayedCall`).
#[derive(Clone)]
pub struct DelayedCall {
    entry: Rc<Entry>,
}

impl DelayedCall {
    /// Cancels the call. Cancelling a call that already ran or was already cancelled is an
    /// error ([`Error::AlreadyCalled`], [`Error::AlreadyCancelled`]).
    pub fn cancel(&self) -> Result<(), Error> {
        self.check_pending()?;
        self.entry.state.set(State::Cancelled);
        drop(self.entry.func.take());
        if let Some(queue) = self.entry.queue.upgrade() {
            queue.mark_dead();
        }
        Ok(())
    }

    /// Reschedules the call to run `delay` from now.
    pub fn reset(&self, delay: Duration) -> Result<(), Error> {
        self.check_pending()?;
        let Some(queue) = self.entry.queue.upgrade() else {
            return Err(Error::ReactorNotRunning);
        };
        let deadline = (queue.now)().saturating_add(duration_to_nanos(delay));
        self.move_to(&queue, deadline);
        Ok(())
    }

    /// Postpones the call by `by`.
    pub fn delay(&self, by: Duration) -> Result<(), Error> {
        self.check_pending()?;
        let Some(queue) = self.entry.queue.upgrade() else {
            return Err(Error::ReactorNotRunning);
        };
        let deadline = self
            .entry
            .deadline
            .get()
            .saturating_add(duration_to_nanos(by));
        self.move_to(&queue, deadline);
        Ok(())
    }

    /// Whether the call is still waiting to run.
    pub fn active(&self) -> bool {
        self.entry.state.get() == State::Pending
    }

    /// Whether the call has run.
    pub fn called(&self) -> bool {
        self.entry.state.get() == State::Called
    }

    /// Whether the call was cancelled.
    pub fn cancelled(&self) -> bool {
        self.entry.state.get() == State::Cancelled
    }

    /// When the call runs (or ran), in the owning clock's seconds.
    pub fn time(&self) -> f64 {
        nanos_to_seconds(self.entry.deadline.get())
    }

    fn check_pending(&self) -> Result<(), Error> {
        match self.entry.state.get() {
            State::Pending => Ok(()),
            State::Called => Err(Error::AlreadyCalled),
            State::Cancelled => Err(Error::AlreadyCancelled),
        }
    }

    fn move_to(&self, queue: &Rc<QueueInner>, deadline: u64) {
        let entry = &self.entry;
        entry.deadline.set(deadline);
        entry.generation.set(entry.generation.get().wrapping_add(1));
        queue.push(entry);
        queue.mark_dead();
    }
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayedCall")
            .field("time", &self.time())
            .field("state", &self.entry.state.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> (TimerQueue, Rc<Cell<u64>>) {
        let now = Rc::new(Cell::new(0u64));
        let n = now.clone();
        (TimerQueue::new(move || n.get()), now)
    }

    fn run_due(q: &TimerQueue, now: u64) {
        while let Some(f) = q.pop_due(now, None) {
            f();
        }
    }

    #[test]
    fn runs_in_deadline_then_schedule_order() {
        let (q, _) = queue();
        let log = Rc::new(RefCell::new(Vec::new()));
        for (name, at) in [("c", 30), ("a", 10), ("b1", 20), ("b2", 20)] {
            let log = log.clone();
            q.schedule_at(at, Box::new(move || log.borrow_mut().push(name)));
        }
        run_due(&q, 20);
        assert_eq!(*log.borrow(), ["a", "b1", "b2"]);
        assert_eq!(q.next_deadline(), Some(30));
        run_due(&q, 30);
        assert_eq!(*log.borrow(), ["a", "b1", "b2", "c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn cancel_twice_and_after_call_are_errors() {
        let (q, _) = queue();
        let a = q.schedule_at(5, Box::new(|| {}));
        let b = q.schedule_at(5, Box::new(|| {}));
        a.cancel().unwrap();
        assert!(matches!(a.cancel(), Err(Error::AlreadyCancelled)));
        assert!(matches!(
            a.reset(Duration::ZERO),
            Err(Error::AlreadyCancelled)
        ));
        run_due(&q, 5);
        assert!(b.called());
        assert!(matches!(b.cancel(), Err(Error::AlreadyCalled)));
        assert!(!a.active() && !b.active());
    }

    #[test]
    fn reset_and_delay_move_the_call() {
        let (q, now) = queue();
        let hit = Rc::new(Cell::new(0));
        let h = hit.clone();
        let call = q.schedule(
            Duration::from_nanos(10),
            Box::new(move || h.set(h.get() + 1)),
        );
        now.set(8);
        call.reset(Duration::from_nanos(10)).unwrap();
        assert_eq!(call.time(), nanos_to_seconds(18));
        call.delay(Duration::from_nanos(2)).unwrap();
        run_due(&q, 19);
        assert_eq!(hit.get(), 0);
        assert_eq!(q.len(), 1);
        run_due(&q, 20);
        assert_eq!(hit.get(), 1, "runs once, not once per heap item");
        run_due(&q, 100);
        assert_eq!(hit.get(), 1);
    }

    #[test]
    fn later_scheduled_calls_wait_for_the_next_turn_when_asked() {
        let (q, _) = queue();
        let q = Rc::new(q);
        let hit = Rc::new(Cell::new(false));
        let (q2, h) = (q.clone(), hit.clone());
        q.schedule_at(
            0,
            Box::new(move || {
                let h = h.clone();
                q2.schedule_at(0, Box::new(move || h.set(true)));
            }),
        );
        let limit = q.next_seq();
        while let Some(f) = q.pop_due(0, Some(limit)) {
            f();
        }
        assert!(!hit.get());
        run_due(&q, 0);
        assert!(hit.get());
    }

    #[test]
    fn mass_cancel_compacts_the_heap() {
        let (q, _) = queue();
        let calls: Vec<_> = (0..10_000)
            .map(|i| q.schedule_at(i, Box::new(|| {})))
            .collect();
        for c in &calls[..9_990] {
            c.cancel().unwrap();
        }
        assert_eq!(q.len(), 10);
        assert!(q.inner.heap.borrow().len() < 5_000);
        assert_eq!(q.pending().len(), 10);
        assert_eq!(q.next_deadline(), Some(9_990));
    }
}
