//! Timed calls: the [`ReactorTime`] interface, [`DelayedCall`] handles, and the
//! [`TimerQueue`] that both the real reactor and the test kit's `Clock` drive.
//!
//! The queue is a binary heap ordered by deadline, then by scheduling order, so inserting
//! costs O(log n). The calls' records live in a slab that reuses its slots, so scheduling
//! allocates nothing but the closure's box (and nothing for a closure that captures nothing).
//! Cancelling marks the call dead and drops its closure at once (O(1)); dead heap entries are
//! skipped when they reach the top, and the heap is compacted when they outnumber the live
//! ones, so a million schedule-then-cancel pairs stay cheap.

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
///
/// # Passing a clock
///
/// One convention throughout the crates:
///
/// - what **keeps** the clock (a `LoopingCall`, a reconnecting factory, a timeout policy,
///   an HTTP `Site`) takes `clock: impl ReactorTime + 'static`: pass `reactor.clone()` or
///   `clock.clone()` (an `Rc<dyn ReactorTime>` you hold works too);
/// - what only **reads** it or schedules once during the call (`sleep`, `defer_later`,
///   `Deferred::add_timeout`) takes `clock: &dyn ReactorTime`: pass `&reactor` or `&clock`.
///
/// Both handles are cheap to clone (an `Rc` inside), so keeping one costs no more than a
/// reference, and the caller never wraps anything in an `Rc` first.
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

/// One delayed call's record in the queue's slab.
struct Slot {
    deadline: u64,
    state: State,
    /// Bumped by `reset`/`delay`, so the heap items pushed before are recognised as stale.
    generation: u32,
    /// Live [`DelayedCall`] handles naming this slot.
    handles: u32,
    /// Heap items naming this slot: the live one, and stale ones `reset`/`delay` left.
    in_heap: u32,
    func: Option<Box<dyn FnOnce()>>,
}

/// The calls' records. A slot is reused once neither a handle nor a heap item names it, so
/// scheduling allocates nothing once the slab has grown to the number of calls in flight.
#[derive(Default)]
struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, slot: Slot) -> u32 {
        match self.free.pop() {
            Some(index) => {
                // A free slot's call has run or was cancelled: its closure is gone already.
                self.slots[index as usize] = slot;
                index
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("under 2^32 delayed calls");
                self.slots.push(slot);
                index
            }
        }
    }

    fn slot(&mut self, index: u32) -> &mut Slot {
        &mut self.slots[index as usize]
    }

    /// Whether `item` stands for a call still pending at that item's deadline.
    fn is_live(&self, item: &HeapItem) -> bool {
        let slot = &self.slots[item.index as usize];
        slot.state == State::Pending && slot.generation == item.generation
    }

    /// A heap item naming `index` is gone.
    fn unref_heap(&mut self, index: u32) {
        let slot = self.slot(index);
        slot.in_heap -= 1;
        if slot.in_heap == 0 && slot.handles == 0 {
            self.free.push(index);
        }
    }

    /// A handle naming `index` is gone.
    fn unref_handle(&mut self, index: u32) {
        let slot = self.slot(index);
        slot.handles -= 1;
        if slot.in_heap == 0 && slot.handles == 0 {
            self.free.push(index);
        }
    }
}

struct HeapItem {
    deadline: u64,
    seq: u64,
    generation: u32,
    index: u32,
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

/// The queue's state. No borrow of `heap` or `slab` is held while user code runs or a
/// closure is dropped (a closure may own handles, whose drop borrows the slab).
struct QueueInner {
    heap: RefCell<BinaryHeap<HeapItem>>,
    slab: RefCell<Slab>,
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
                slab: RefCell::new(Slab::default()),
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
        let index = self.inner.slab.borrow_mut().insert(Slot {
            deadline,
            state: State::Pending,
            generation: 0,
            handles: 1,
            in_heap: 1,
            func: Some(f),
        });
        self.inner.push(deadline, 0, index);
        DelayedCall {
            queue: Rc::downgrade(&self.inner),
            index,
        }
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
        let mut slab = self.inner.slab.borrow_mut();
        loop {
            let top = heap.peek()?;
            if !slab.is_live(top) {
                let index = top.index;
                heap.pop();
                self.inner.dead.set(self.inner.dead.get() - 1);
                slab.unref_heap(index);
                continue;
            }
            if top.deadline > now || before_seq.is_some_and(|limit| top.seq >= limit) {
                return None;
            }
            let index = heap.pop().expect("peeked").index;
            let slot = slab.slot(index);
            slot.state = State::Called;
            let func = slot.func.take();
            slab.unref_heap(index);
            return func;
        }
    }

    /// The deadline of the earliest pending call, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut heap = self.inner.heap.borrow_mut();
        let mut slab = self.inner.slab.borrow_mut();
        loop {
            let top = heap.peek()?;
            if slab.is_live(top) {
                return Some(top.deadline);
            }
            let index = top.index;
            heap.pop();
            self.inner.dead.set(self.inner.dead.get() - 1);
            slab.unref_heap(index);
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
        let mut slab = self.inner.slab.borrow_mut();
        let mut items: Vec<&HeapItem> = heap.iter().filter(|item| slab.is_live(item)).collect();
        items.sort_by(|a, b| b.cmp(a));
        items
            .into_iter()
            .map(|item| {
                slab.slot(item.index).handles += 1;
                DelayedCall {
                    queue: Rc::downgrade(&self.inner),
                    index: item.index,
                }
            })
            .collect()
    }
}

impl QueueInner {
    /// Pushes a heap item for slot `index` (whose `in_heap` already counts it).
    fn push(&self, deadline: u64, generation: u32, index: u32) {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.heap.borrow_mut().push(HeapItem {
            deadline,
            seq,
            generation,
            index,
        });
    }

    /// One more heap item no longer counts; rebuild the heap once they dominate it.
    fn mark_dead(&self) {
        let dead = self.dead.get() + 1;
        self.dead.set(dead);
        let (Ok(mut heap), Ok(mut slab)) = (self.heap.try_borrow_mut(), self.slab.try_borrow_mut())
        else {
            return;
        };
        if dead >= COMPACT_MIN_DEAD && dead * 2 > heap.len() {
            heap.retain(|item| {
                let live = slab.is_live(item);
                if !live {
                    slab.unref_heap(item.index);
                }
                live
            });
            self.dead.set(0);
        }
    }
}

/// A handle on a call scheduled with `call_later` (Twisted's `IDelayedCall`).
///
/// Handles are cheap to clone; every clone names the same call. A handle does not keep its
/// clock alive: once the reactor or `Clock` that owns the call is dropped, the call will never
/// run, the handle reports it as neither active, called nor cancelled, and `cancel`, `reset`
/// and `delay` return [`Error::ReactorNotRunning`].
pub struct DelayedCall {
    queue: Weak<QueueInner>,
    index: u32,
}

impl DelayedCall {
    /// Cancels the call. Cancelling a call that already ran or was already cancelled is an
    /// error ([`Error::AlreadyCalled`], [`Error::AlreadyCancelled`]).
    pub fn cancel(&self) -> Result<(), Error> {
        let queue = self.queue()?;
        let func = {
            let mut slab = queue.slab.borrow_mut();
            let slot = slab.slot(self.index);
            check_pending(slot.state)?;
            slot.state = State::Cancelled;
            slot.func.take()
        };
        drop(func);
        queue.mark_dead();
        Ok(())
    }

    /// Reschedules the call to run `delay` from now.
    pub fn reset(&self, delay: Duration) -> Result<(), Error> {
        let queue = self.queue()?;
        let now = (queue.now)();
        self.move_to(&queue, |_| now.saturating_add(duration_to_nanos(delay)))
    }

    /// Postpones the call by `by`.
    pub fn delay(&self, by: Duration) -> Result<(), Error> {
        let queue = self.queue()?;
        self.move_to(&queue, |deadline| {
            deadline.saturating_add(duration_to_nanos(by))
        })
    }

    /// Whether the call is still waiting to run.
    pub fn active(&self) -> bool {
        self.state() == Some(State::Pending)
    }

    /// Whether the call has run.
    pub fn called(&self) -> bool {
        self.state() == Some(State::Called)
    }

    /// Whether the call was cancelled.
    pub fn cancelled(&self) -> bool {
        self.state() == Some(State::Cancelled)
    }

    /// When the call runs (or ran), in the owning clock's seconds (0 once the clock is
    /// dropped).
    pub fn time(&self) -> f64 {
        self.queue.upgrade().map_or(0.0, |queue| {
            nanos_to_seconds(queue.slab.borrow_mut().slot(self.index).deadline)
        })
    }

    fn queue(&self) -> Result<Rc<QueueInner>, Error> {
        self.queue.upgrade().ok_or(Error::ReactorNotRunning)
    }

    fn state(&self) -> Option<State> {
        let queue = self.queue.upgrade()?;
        let state = queue.slab.borrow_mut().slot(self.index).state;
        Some(state)
    }

    /// Moves a pending call to the deadline `to` computes from its current one; the heap
    /// item it had goes stale.
    fn move_to(&self, queue: &QueueInner, to: impl FnOnce(u64) -> u64) -> Result<(), Error> {
        let (deadline, generation) = {
            let mut slab = queue.slab.borrow_mut();
            let slot = slab.slot(self.index);
            check_pending(slot.state)?;
            slot.deadline = to(slot.deadline);
            slot.generation = slot.generation.wrapping_add(1);
            slot.in_heap += 1;
            (slot.deadline, slot.generation)
        };
        queue.push(deadline, generation, self.index);
        queue.mark_dead();
        Ok(())
    }
}

fn check_pending(state: State) -> Result<(), Error> {
    match state {
        State::Pending => Ok(()),
        State::Called => Err(Error::AlreadyCalled),
        State::Cancelled => Err(Error::AlreadyCancelled),
    }
}

impl Clone for DelayedCall {
    fn clone(&self) -> DelayedCall {
        if let Some(queue) = self.queue.upgrade() {
            queue.slab.borrow_mut().slot(self.index).handles += 1;
        }
        DelayedCall {
            queue: self.queue.clone(),
            index: self.index,
        }
    }
}

impl Drop for DelayedCall {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.upgrade() {
            queue.slab.borrow_mut().unref_handle(self.index);
        }
    }
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state() {
            Some(state) => f
                .debug_struct("DelayedCall")
                .field("time", &self.time())
                .field("state", &state)
                .finish(),
            None => f.write_str("DelayedCall(clock dropped)"),
        }
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

    #[test]
    fn slots_are_reused_once_nothing_names_them() {
        let (q, _) = queue();
        for round in 0..100u64 {
            let calls: Vec<_> = (0..50)
                .map(|i| q.schedule_at(round * 100 + i, Box::new(|| {})))
                .collect();
            for c in &calls[..25] {
                c.cancel().unwrap();
            }
            drop(calls);
            run_due(&q, round * 100 + 99);
        }
        assert!(q.is_empty());
        let slab = q.inner.slab.borrow();
        assert!(slab.slots.len() <= 50, "{} slots", slab.slots.len());
        assert_eq!(slab.free.len(), slab.slots.len(), "every slot free again");
    }

    #[test]
    fn a_handle_keeps_its_record_after_the_call_runs() {
        let (q, _) = queue();
        let hit = Rc::new(Cell::new(0));
        let h = hit.clone();
        let call = q.schedule_at(7, Box::new(move || h.set(h.get() + 1)));
        let other = call.clone();
        drop(call);
        run_due(&q, 7);
        // A new call must not take the slot `other` still names.
        let next = q.schedule_at(9, Box::new(|| {}));
        assert_eq!(hit.get(), 1);
        assert!(other.called() && !other.active() && !other.cancelled());
        assert_eq!(other.time(), nanos_to_seconds(7));
        assert!(matches!(other.cancel(), Err(Error::AlreadyCalled)));
        assert!(next.active());
    }

    #[test]
    fn a_closure_that_owns_its_own_handle_is_dropped_with_the_queue() {
        struct Flag(Rc<Cell<bool>>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let (q, _) = queue();
        let dropped = Rc::new(Cell::new(false));
        let slot: Rc<RefCell<Option<DelayedCall>>> = Rc::new(RefCell::new(None));
        let (own, flag) = (slot.clone(), Flag(dropped.clone()));
        let call = q.schedule_at(
            5,
            Box::new(move || {
                let _ = (&own, &flag);
            }),
        );
        *slot.borrow_mut() = Some(call.clone());
        drop(slot);
        drop(q);
        assert!(dropped.get(), "the pending closure went with its queue");
        assert!(!call.active() && !call.called() && !call.cancelled());
        assert!(matches!(call.cancel(), Err(Error::ReactorNotRunning)));
        assert_eq!(format!("{call:?}"), "DelayedCall(clock dropped)");
    }
}
