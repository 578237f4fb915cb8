//! A local executor: futures that run on the reactor thread, polled by the loop.
//!
//! Futures need not be `Send`. Their wakers are (as `std::task::Waker` requires): waking from
//! another thread queues the task through the reactor's cross-thread queue and wakes the loop.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use super::handle::Shared;
use super::{Inner, panic_message};

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

pub(crate) struct Executor {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    /// Tasks woken on the reactor thread itself; no lock needed.
    ready: RefCell<VecDeque<u64>>,
    shared: Arc<Shared>,
    live: Cell<usize>,
}

struct Slot {
    generation: u32,
    state: SlotState,
    waker: Option<Arc<TaskWaker>>,
}

enum SlotState {
    Free,
    Idle(LocalFuture),
    /// Being polled right now (the future is on the stack).
    Running,
    /// Aborted while being polled: drop the future when the poll returns.
    AbortedWhileRunning,
}

struct TaskWaker {
    id: u64,
    shared: Arc<Shared>,
    scheduled: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.shared.post_task(self.id);
        }
    }
}

/// A task spawned on the reactor with [`Reactor::spawn_task`](super::Reactor::spawn_task).
#[derive(Clone)]
pub struct TaskHandle {
    id: u64,
    inner: Weak<Inner>,
}

impl TaskHandle {
    /// Drops the task's future now (or as soon as its current poll returns), so it never
    /// completes. Aborting a finished task does nothing.
    pub fn abort(&self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.executor.abort(self.id);
        }
    }

    /// Whether the task has completed or been aborted.
    pub fn is_finished(&self) -> bool {
        match self.inner.upgrade() {
            Some(inner) => !inner.executor.is_live(self.id),
            None => true,
        }
    }
}

fn split(id: u64) -> (usize, u32) {
    ((id & 0xffff_ffff) as usize, (id >> 32) as u32)
}

impl Executor {
    pub(crate) fn new(shared: Arc<Shared>) -> Executor {
        Executor {
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            ready: RefCell::new(VecDeque::new()),
            shared,
            live: Cell::new(0),
        }
    }

    pub(crate) fn spawn(&self, inner: &Rc<Inner>, future: LocalFuture) -> TaskHandle {
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => i as usize,
            None => {
                slots.push(Slot {
                    generation: 0,
                    state: SlotState::Free,
                    waker: None,
                });
                slots.len() - 1
            }
        };
        let slot = &mut slots[index];
        let id = ((slot.generation as u64) << 32) | index as u64;
        slot.state = SlotState::Idle(future);
        slot.waker = Some(Arc::new(TaskWaker {
            id,
            shared: self.shared.clone(),
            scheduled: AtomicBool::new(true),
        }));
        self.live.set(self.live.get() + 1);
        self.ready.borrow_mut().push_back(id);
        TaskHandle {
            id,
            inner: Rc::downgrade(inner),
        }
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.borrow().is_empty()
    }

    pub(crate) fn live(&self) -> usize {
        self.live.get()
    }

    fn is_live(&self, id: u64) -> bool {
        let (index, generation) = split(id);
        let slots = self.slots.borrow();
        match slots.get(index) {
            Some(slot) => {
                slot.generation == generation
                    && matches!(slot.state, SlotState::Idle(_) | SlotState::Running)
            }
            None => false,
        }
    }

    /// Queues tasks woken from other threads.
    pub(crate) fn enqueue(&self, ids: impl IntoIterator<Item = u64>) {
        self.ready.borrow_mut().extend(ids);
    }

    fn abort(&self, id: u64) {
        let (index, generation) = split(id);
        let dropped = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(index) else {
                return;
            };
            if slot.generation != generation {
                return;
            }
            match std::mem::replace(&mut slot.state, SlotState::Free) {
                SlotState::Idle(future) => {
                    self.release(slot, index);
                    Some(future)
                }
                SlotState::Running => {
                    slot.state = SlotState::AbortedWhileRunning;
                    None
                }
                other => {
                    slot.state = other;
                    None
                }
            }
        };
        // Dropped outside the borrow: the future's destructor may spawn or abort tasks.
        drop(dropped);
    }

    fn release(&self, slot: &mut Slot, index: usize) {
        slot.generation = slot.generation.wrapping_add(1);
        slot.waker = None;
        self.free.borrow_mut().push(index as u32);
        self.live.set(self.live.get() - 1);
    }

    /// Polls every task that is ready now; tasks woken while polling wait for the next turn.
    pub(crate) fn run_ready(&self) {
        let count = self.ready.borrow().len();
        for _ in 0..count {
            let Some(id) = self.ready.borrow_mut().pop_front() else {
                break;
            };
            self.poll_task(id);
        }
    }

    fn poll_task(&self, id: u64) {
        let (index, generation) = split(id);
        let (mut future, waker) = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(index) else {
                return;
            };
            if slot.generation != generation {
                return;
            }
            let future = match std::mem::replace(&mut slot.state, SlotState::Running) {
                SlotState::Idle(f) => f,
                other => {
                    slot.state = other;
                    return;
                }
            };
            let waker = slot.waker.clone().expect("live task has a waker");
            (future, waker)
        };
        waker.scheduled.store(false, Ordering::Release);
        let std_waker = Waker::from(waker);
        let mut cx = Context::from_waker(&std_waker);
        let outcome = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        let done = match outcome {
            Ok(Poll::Ready(())) => true,
            Ok(Poll::Pending) => false,
            Err(panic) => {
                super::report_panic(format_args!("a task"), &panic_message(&*panic));
                true
            }
        };
        let finished_future = {
            let mut slots = self.slots.borrow_mut();
            let slot = &mut slots[index];
            let aborted = matches!(slot.state, SlotState::AbortedWhileRunning);
            if done || aborted {
                slot.state = SlotState::Free;
                self.release(slot, index);
                Some(future)
            } else {
                slot.state = SlotState::Idle(future);
                None
            }
        };
        drop(finished_future);
    }

    /// Drops every task (the reactor is going away).
    pub(crate) fn clear(&self) {
        let futures: Vec<LocalFuture> = {
            let mut slots = self.slots.borrow_mut();
            let mut out = Vec::new();
            for index in 0..slots.len() {
                let slot = &mut slots[index];
                if let SlotState::Idle(f) = std::mem::replace(&mut slot.state, SlotState::Free) {
                    self.release(slot, index);
                    out.push(f);
                }
            }
            out
        };
        drop(futures);
    }
}
