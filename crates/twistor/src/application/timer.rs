//! `TimerService`: a `LoopingCall` that runs while the service runs.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::defer::{Deferred, Failure};
use crate::reactor::ReactorTime;
use crate::task::{LoopingCall, TaskResult};

use super::Service;

/// Calls a function every `interval` while it runs, the first time when started (Twisted's
/// `TimerService`). A function that returns a Deferred is not called again before it
/// fires, and stopping waits for it. A run that fails is logged and ends the loop (the
/// service stays "running" until stopped, as in Twisted).
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use twistor::application::{Service, TimerService};
/// use twistor_testing::Clock;
///
/// let clock = Clock::new();
/// let runs = Rc::new(Cell::new(0));
/// let r = runs.clone();
/// let service = TimerService::new(clock.clone(), Duration::from_secs(10), move || r.set(r.get() + 1));
/// service.start_service().unwrap();
/// clock.pump(&[Duration::from_secs(10); 3]);
/// assert_eq!(runs.get(), 4); // at 0, 10, 20 and 30 s
/// service.stop_service();
/// ```
pub struct TimerService {
    call: LoopingCall,
    interval: Duration,
    /// Fires when the loop ends (stopped, or a run failed).
    done: RefCell<Option<Deferred<()>>>,
    running: Cell<bool>,
}

impl TimerService {
    /// A service calling `f` every `interval` on `clock`.
    pub fn new<R: TaskResult>(
        clock: impl ReactorTime + 'static,
        interval: Duration,
        f: impl FnMut() -> R + 'static,
    ) -> TimerService {
        TimerService {
            call: LoopingCall::new(clock, f),
            interval,
            done: RefCell::new(None),
            running: Cell::new(false),
        }
    }

    /// The loop inside (to reset it, say).
    pub fn looping_call(&self) -> &LoopingCall {
        &self.call
    }
}

impl Service for TimerService {
    fn start_service(&self) -> Result<(), Failure> {
        if self.running.replace(true) {
            return Ok(());
        }
        let ended = self
            .call
            .start(self.interval, true)
            .inspect_err(|_| self.running.set(false))?;
        // The result is kept for `stop_service`; a failed run is reported as it happens.
        let done = Deferred::new();
        let fire = done.clone();
        ended.consume(move |result| {
            if let Err(failure) = &result {
                tracing::error!("timer service stopped: {failure}");
            }
            let _ = fire.callback(());
        });
        *self.done.borrow_mut() = Some(done);
        Ok(())
    }

    /// Stops the loop; fires once a run under way (a Deferred it returned) has finished.
    fn stop_service(&self) -> Deferred<()> {
        if !self.running.replace(false) {
            return Deferred::succeeded(());
        }
        if self.call.running() {
            let _ = self.call.stop();
        }
        self.done
            .borrow_mut()
            .take()
            .unwrap_or_else(|| Deferred::succeeded(()))
    }

    fn running(&self) -> bool {
        self.running.get()
    }
}
