//! Idle timeouts: Twisted's `TimeoutMixin`, and `TimeoutFactory` as a policy.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use twistor::reactor::{DelayedCall, ReactorTime};
use twistor::{CloseReason, Transport};

use super::wrapper::{Connection, Policy};

/// An idle timer for a protocol (Twisted's `TimeoutMixin`): set a period, reset it on
/// activity, and when it runs out the hook (Twisted's `timeoutConnection`) runs.
///
/// Runs on any [`ReactorTime`], so tests drive it with the test kit's `Clock`. Dropping
/// it cancels the timer.
///
/// ```
/// use std::time::Duration;
/// use twistor_protocols::policies::TimeoutMixin;
/// use twistor_testing::{Clock, StringTransport};
///
/// let clock = Clock::new();
/// let st = StringTransport::new();
/// let timeout = TimeoutMixin::closing(clock.clone(), &st.transport());
/// timeout.set_timeout(Some(Duration::from_secs(10)));
/// clock.advance(Duration::from_secs(9));
/// timeout.reset_timeout(); // activity
/// clock.advance(Duration::from_secs(9));
/// assert!(!st.disconnecting());
/// clock.advance(Duration::from_secs(1));
/// assert!(st.disconnecting());
/// ```
pub struct TimeoutMixin {
    state: Rc<TimeoutState>,
}

struct TimeoutState {
    clock: Rc<dyn ReactorTime>,
    period: Cell<Option<Duration>>,
    call: RefCell<Option<DelayedCall>>,
    hook: Rc<dyn Fn()>,
}

impl TimeoutMixin {
    /// A timer (not yet set) that runs `on_timeout` when it runs out.
    pub fn new(clock: impl ReactorTime + 'static, on_timeout: impl Fn() + 'static) -> TimeoutMixin {
        TimeoutMixin::on_shared_clock(Rc::new(clock), on_timeout)
    }

    /// `new` on a clock already shared (no second `Rc` around it).
    fn on_shared_clock(
        clock: Rc<dyn ReactorTime>,
        on_timeout: impl Fn() + 'static,
    ) -> TimeoutMixin {
        TimeoutMixin {
            state: Rc::new(TimeoutState {
                clock,
                period: Cell::new(None),
                call: RefCell::new(None),
                hook: Rc::new(on_timeout),
            }),
        }
    }

    /// A timer whose hook closes `transport` (Twisted's default `timeoutConnection`).
    pub fn closing(clock: impl ReactorTime + 'static, transport: &Transport) -> TimeoutMixin {
        TimeoutMixin::closing_on_shared_clock(Rc::new(clock), transport)
    }

    fn closing_on_shared_clock(clock: Rc<dyn ReactorTime>, transport: &Transport) -> TimeoutMixin {
        let transport = transport.clone();
        TimeoutMixin::on_shared_clock(clock, move || {
            tracing::info!("connection from {} timed out", transport.peer());
            transport.lose_connection();
        })
    }

    /// Sets the period (`None` cancels), starting or restarting the timer; returns the
    /// previous period.
    pub fn set_timeout(&self, period: Option<Duration>) -> Option<Duration> {
        let previous = self.state.period.replace(period);
        let pending = self
            .state
            .call
            .borrow()
            .as_ref()
            .filter(|c| c.active())
            .cloned();
        match (pending, period) {
            (Some(call), None) => {
                let _ = call.cancel();
                self.state.call.borrow_mut().take();
            }
            (Some(call), Some(period)) => {
                let _ = call.reset(period);
            }
            (None, Some(period)) => self.schedule(period),
            (None, None) => {}
        }
        previous
    }

    /// Restarts the timer from now, if one is running (call it on activity).
    pub fn reset_timeout(&self) {
        let (Some(period), Some(call)) =
            (self.state.period.get(), self.state.call.borrow().clone())
        else {
            return;
        };
        if call.active() {
            let _ = call.reset(period);
        }
    }

    /// Cancels the timer (same as `set_timeout(None)`).
    pub fn cancel_timeout(&self) {
        self.set_timeout(None);
    }

    /// The current period.
    pub fn timeout(&self) -> Option<Duration> {
        self.state.period.get()
    }

    /// Whether the timer is running.
    pub fn active(&self) -> bool {
        self.state
            .call
            .borrow()
            .as_ref()
            .is_some_and(|c| c.active())
    }

    fn schedule(&self, period: Duration) {
        let weak: Weak<TimeoutState> = Rc::downgrade(&self.state);
        let call = self.state.clock.call_later_boxed(
            period,
            Box::new(move || {
                if let Some(state) = weak.upgrade() {
                    state.call.borrow_mut().take();
                    let hook = state.hook.clone();
                    hook();
                }
            }),
        );
        *self.state.call.borrow_mut() = Some(call);
    }
}

impl Drop for TimeoutMixin {
    fn drop(&mut self) {
        if let Some(call) = self.state.call.borrow_mut().take() {
            let _ = call.cancel();
        }
    }
}

/// A policy that closes connections idle (nothing read or written) for a period
/// (Twisted's `TimeoutFactory`): `WrappingFactory::new(factory, IdleTimeout::new(clock,
/// period))`.
pub struct IdleTimeout {
    clock: Rc<dyn ReactorTime>,
    period: Duration,
    timers: RefCell<HashMap<u64, TimeoutMixin>>,
}

impl IdleTimeout {
    /// Closes a connection after `period` without traffic, on `clock`.
    pub fn new(clock: impl ReactorTime + 'static, period: Duration) -> IdleTimeout {
        IdleTimeout {
            clock: Rc::new(clock),
            period,
            timers: RefCell::new(HashMap::new()),
        }
    }

    fn reset(&self, conn: &Connection) {
        if let Some(timer) = self.timers.borrow().get(&conn.id()) {
            timer.reset_timeout();
        }
    }
}

impl Policy for IdleTimeout {
    fn connection_made(&self, conn: &Connection) {
        let Some(real) = conn.real_transport() else {
            return;
        };
        let timer = TimeoutMixin::closing_on_shared_clock(self.clock.clone(), &real);
        timer.set_timeout(Some(self.period));
        self.timers.borrow_mut().insert(conn.id(), timer);
    }

    fn data_received(&self, conn: &Connection, _data: &[u8]) {
        self.reset(conn);
    }

    fn data_written(&self, conn: &Connection, _data: &[u8]) {
        self.reset(conn);
    }

    fn connection_lost(&self, conn: &Connection, _reason: &CloseReason) {
        let timer = self.timers.borrow_mut().remove(&conn.id());
        drop(timer);
    }
}
