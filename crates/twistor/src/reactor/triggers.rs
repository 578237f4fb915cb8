//! System event triggers: code run before, during and after the reactor starts and stops.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;

/// Work a `Before` trigger hands back: the event's later phases wait until it completes.
/// Any future will do, a `Deferred` included.
pub type PendingWork = Pin<Box<dyn Future<Output = ()>>>;

/// The two system events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemEvent {
    /// The reactor is starting to run.
    Startup,
    /// The reactor is stopping.
    Shutdown,
}

/// The three phases of each system event, run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// First; triggers may return [`PendingWork`] that the later phases wait for.
    Before,
    /// The event itself: for `Shutdown`, listening ports close and connections are dropped
    /// here.
    During,
    /// Last.
    After,
}

/// Names a trigger, for [`Reactor::remove_system_event_trigger`](super::Reactor::remove_system_event_trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TriggerId(u64);

type TriggerFn = Box<dyn FnMut() -> Option<PendingWork>>;

struct Trigger {
    id: TriggerId,
    event: SystemEvent,
    phase: Phase,
    once: bool,
    /// `None` while the trigger is running.
    f: Option<TriggerFn>,
}

#[derive(Default)]
pub(crate) struct Triggers {
    list: RefCell<Vec<Trigger>>,
    next_id: Cell<u64>,
}

impl Triggers {
    pub(crate) fn add(
        &self,
        phase: Phase,
        event: SystemEvent,
        once: bool,
        f: TriggerFn,
    ) -> TriggerId {
        let id = TriggerId(self.next_id.get());
        self.next_id.set(id.0 + 1);
        self.list.borrow_mut().push(Trigger {
            id,
            event,
            phase,
            once,
            f: Some(f),
        });
        id
    }

    pub(crate) fn remove(&self, id: TriggerId) -> bool {
        let mut list = self.list.borrow_mut();
        let before = list.len();
        list.retain(|t| t.id != id);
        list.len() != before
    }

    /// Runs the triggers of one phase, in the order they were added, and collects the work
    /// they hand back. Triggers added while running wait for the next firing.
    pub(crate) fn fire(&self, event: SystemEvent, phase: Phase) -> Vec<PendingWork> {
        let ids: Vec<TriggerId> = self
            .list
            .borrow()
            .iter()
            .filter(|t| t.event == event && t.phase == phase)
            .map(|t| t.id)
            .collect();
        let mut pending = Vec::new();
        for id in ids {
            let taken = {
                let mut list = self.list.borrow_mut();
                list.iter_mut()
                    .find(|t| t.id == id)
                    .and_then(|t| t.f.take())
            };
            let Some(mut f) = taken else { continue };
            if let Some(work) = f() {
                pending.push(work);
            }
            let mut list = self.list.borrow_mut();
            if let Some(pos) = list.iter().position(|t| t.id == id) {
                if list[pos].once {
                    list.remove(pos);
                } else {
                    list[pos].f = Some(f);
                }
            }
        }
        pending
    }
}
