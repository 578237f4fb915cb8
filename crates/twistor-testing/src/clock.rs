//! A deterministic clock: time moves only when the test says so (Twisted's `task.Clock`).

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use twistor::reactor::{DelayedCall, ReactorTime};
use twistor::unstable::{TimerQueue, duration_to_nanos, nanos_to_seconds};

/// A clock for tests. It starts at 0 seconds; [`advance`](Clock::advance) moves it forward
/// and runs, in order, every call that has come due (including calls those calls schedule,
/// if they are due too). Cloning gives another handle on the same clock.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use twistor_testing::Clock;
///
/// let clock = Clock::new();
/// let fired = Rc::new(Cell::new(false));
/// let f = fired.clone();
/// clock.call_later(Duration::from_secs(5), move || f.set(true));
/// clock.advance(Duration::from_secs(4));
/// assert!(!fired.get());
/// clock.advance(Duration::from_secs(1));
/// assert!(fired.get());
/// ```
#[derive(Clone)]
pub struct Clock {
    inner: Rc<ClockInner>,
}

struct ClockInner {
    now: Rc<Cell<u64>>,
    queue: TimerQueue,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock at 0 seconds with nothing scheduled.
    pub fn new() -> Clock {
        let now = Rc::new(Cell::new(0u64));
        let reader = now.clone();
        Clock {
            inner: Rc::new(ClockInner {
                now,
                queue: TimerQueue::new(move || reader.get()),
            }),
        }
    }

    /// Runs `f` once, `delay` from now (in this clock's time).
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
        self.inner.queue.schedule(delay, Box::new(f))
    }

    /// The current time in seconds.
    pub fn seconds(&self) -> f64 {
        nanos_to_seconds(self.inner.now.get())
    }

    /// Moves time forward by `by`, running every call that comes due, in order.
    pub fn advance(&self, by: Duration) {
        let now = self.inner.now.get().saturating_add(duration_to_nanos(by));
        self.inner.now.set(now);
        while let Some(f) = self.inner.queue.pop_due(now, None) {
            f();
        }
    }

    /// Advances by each step in turn (Twisted's `Clock.pump`).
    pub fn pump(&self, steps: &[Duration]) {
        for step in steps {
            self.advance(*step);
        }
    }

    /// The calls not yet run, earliest first (Twisted's `getDelayedCalls`).
    pub fn delayed_calls(&self) -> Vec<DelayedCall> {
        self.inner.queue.pending()
    }

    /// This clock as a shared trait object. Rarely needed: APIs that keep a clock take
    /// `impl ReactorTime + 'static` (pass `clock.clone()`), and those that only read it take
    /// `&dyn ReactorTime` (pass `&clock`).
    pub fn as_time(&self) -> Rc<dyn ReactorTime> {
        Rc::new(self.clone())
    }
}

impl ReactorTime for Clock {
    fn seconds(&self) -> f64 {
        Clock::seconds(self)
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.inner.queue.schedule(delay, f)
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("seconds", &self.seconds())
            .field("pending", &self.inner.queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn advance_runs_due_calls_in_order() {
        let clock = Clock::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (c, l) = (clock.clone(), log.clone());
        clock.call_later(Duration::from_secs(2), move || {
            l.borrow_mut().push("b");
            let l = l.clone();
            c.call_later(Duration::from_secs(1), move || l.borrow_mut().push("c"));
        });
        let l = log.clone();
        clock.call_later(Duration::from_secs(1), move || l.borrow_mut().push("a"));
        clock.advance(Duration::from_secs(3));
        // As in Twisted, time moves first: "c" was scheduled at 3 + 1.
        assert_eq!(*log.borrow(), ["a", "b"]);
        assert_eq!(clock.seconds(), 3.0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(*log.borrow(), ["a", "b", "c"]);
    }

    #[test]
    fn works_through_the_trait_object() {
        let clock = Clock::new();
        let time = clock.as_time();
        let hit = Rc::new(Cell::new(0));
        let h = hit.clone();
        let call = time.call_later(Duration::from_millis(10), move || h.set(1));
        assert_eq!(call.time(), 0.01);
        clock.advance(Duration::from_millis(10));
        assert_eq!(hit.get(), 1);
        assert!(clock.delayed_calls().is_empty());
    }
}
