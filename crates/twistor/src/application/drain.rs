//! `DrainService`: on stop, give open connections time to finish.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::defer::{Deferred, Failure};
use crate::reactor::ReactorTime;

use super::Service;

/// How often a draining service counts what is still open.
const POLL: Duration = Duration::from_millis(50);

/// Lets a server's connections finish at shutdown: stopping it runs `begin` (where a
/// service that can tell idle connections from busy ones closes the idle ones), then waits
/// until `open()` counts none left, or the grace period has passed, before it reports
/// itself stopped.
///
/// Put it in a [`MultiService`](super::MultiService) *before* the
/// [`StreamServerEndpointService`](super::StreamServerEndpointService)s whose connections
/// it counts: children stop in reverse order, so the ports stop listening first and the
/// drain waits after. This is how `twist` services drain on SIGTERM.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use twistor::application::{DrainService, Service};
/// use twistor_testing::Clock;
///
/// let clock = Clock::new();
/// let open = Rc::new(Cell::new(2));
/// let counted = open.clone();
/// let drain = DrainService::new(clock.clone(), Duration::from_secs(10), move || counted.get());
/// drain.start_service().unwrap();
/// let stopped = drain.stop_service();
/// clock.advance(Duration::from_secs(1));
/// assert!(!stopped.called());
/// open.set(0);
/// clock.advance(Duration::from_secs(1));
/// assert!(stopped.called());
/// ```
pub struct DrainService {
    clock: Rc<dyn ReactorTime>,
    grace: Duration,
    open: Rc<dyn Fn() -> usize>,
    begin: RefCell<Option<Box<dyn Fn()>>>,
    running: Cell<bool>,
}

impl DrainService {
    /// Waits up to `grace` on `clock` for `open()` to reach zero when stopped.
    pub fn new(
        clock: impl ReactorTime + 'static,
        grace: Duration,
        open: impl Fn() -> usize + 'static,
    ) -> DrainService {
        DrainService {
            clock: Rc::new(clock),
            grace,
            open: Rc::new(open),
            begin: RefCell::new(None),
            running: Cell::new(false),
        }
    }

    /// Runs `begin` first when stopped (e.g. to close idle keep-alive connections).
    pub fn on_begin(self, begin: impl Fn() + 'static) -> Self {
        *self.begin.borrow_mut() = Some(Box::new(begin));
        self
    }
}

impl Service for DrainService {
    fn start_service(&self) -> Result<(), Failure> {
        self.running.set(true);
        Ok(())
    }

    fn stop_service(&self) -> Deferred<()> {
        if !self.running.replace(false) {
            return Deferred::succeeded(());
        }
        if let Some(begin) = self.begin.borrow().as_ref() {
            begin();
        }
        let left = (self.open)();
        if left == 0 || self.grace.is_zero() {
            return Deferred::succeeded(());
        }
        tracing::info!(
            "waiting up to {} s for {left} connection(s) to finish \
             (signal again to close them now)",
            self.grace.as_secs_f64()
        );
        let done = Deferred::new();
        let deadline = self.clock.seconds() + self.grace.as_secs_f64();
        poll(
            self.clock.clone(),
            self.open.clone(),
            deadline,
            done.clone(),
        );
        done
    }

    fn running(&self) -> bool {
        self.running.get()
    }
}

/// Checks again after [`POLL`]; fires `done` once nothing is open or the deadline passed.
fn poll(
    clock: Rc<dyn ReactorTime>,
    open: Rc<dyn Fn() -> usize>,
    deadline: f64,
    done: Deferred<()>,
) {
    let again = clock.clone();
    clock.call_later(POLL, move || {
        let left = open();
        if left == 0 {
            let _ = done.callback(());
        } else if again.seconds() >= deadline {
            tracing::warn!(
                "closing {left} connection(s) still open at the end of the grace period"
            );
            let _ = done.callback(());
        } else {
            poll(again, open, deadline, done);
        }
    });
}
