//! A client factory that reconnects with exponential backoff (Twisted's
//! `ReconnectingClientFactory`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::address::Address;
use crate::connector::Connector;
use crate::error::Error;
use crate::log::report_warn;
use crate::protocol::{ClientFactory, CloseReason, Factory, Protocol};
use crate::reactor::{DelayedCall, ReactorTime};

/// How the delay between attempts grows. The defaults are Twisted's.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The delay before the first retry is `initial_delay * factor` (seconds).
    pub initial_delay: f64,
    /// Each retry multiplies the delay by this (default e).
    pub factor: f64,
    /// The delay never exceeds this (seconds; default one hour).
    pub max_delay: f64,
    /// Each delay is drawn from a normal distribution around the computed delay with this
    /// relative standard deviation (default 0.1196...), so a crowd of clients does not
    /// reconnect in lockstep. 0 turns jitter off.
    pub jitter: f64,
    /// Give up after this many retries (`None`: never).
    pub max_retries: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_delay: 1.0,
            factor: std::f64::consts::E,
            max_delay: 3600.0,
            jitter: 0.119_626_564_72,
            max_retries: None,
        }
    }
}

impl Backoff {
    /// Sets the initial delay, in seconds.
    pub fn initial_delay(mut self, seconds: f64) -> Self {
        self.initial_delay = seconds;
        self
    }

    /// Sets the growth factor.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets the largest delay, in seconds.
    pub fn max_delay(mut self, seconds: f64) -> Self {
        self.max_delay = seconds;
        self
    }

    /// Sets the relative jitter (0 for none).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Gives up after `retries` retries.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }
}

/// Wraps a client factory so that a failed or lost connection is retried after a growing
/// delay.
///
/// The delay is reset each time a connection succeeds (when the wrapped factory builds a
/// protocol); Twisted leaves that to the application, which must call `resetDelay` itself —
/// turn [`reset_on_connect`](ReconnectingClientFactory::reset_on_connect) off for that
/// behaviour.
///
/// The protocols it builds reach it through a [`ReconnectControl`] (Twisted's
/// `self.factory.stopTrying()` inside a protocol): build the wrapped factory with
/// [`with_control`](ReconnectingClientFactory::with_control).
///
/// ```
/// use twistor::protocol::{factory, Protocol};
/// use twistor::reconnect::{Backoff, ReconnectControl, ReconnectingClientFactory};
/// use twistor::{Reactor, Transport};
///
/// struct Client {
///     retry: ReconnectControl,
/// }
///
/// impl Protocol for Client {
///     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
///         if data == b"bye\n" {
///             self.retry.stop_trying(); // do not come back
///             transport.lose_connection();
///         }
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let retrying = ReconnectingClientFactory::with_control(reactor.clone(), Backoff::default(), |retry| {
///     factory(move |_addr| Client { retry: retry.clone() })
/// });
/// reactor.connect_tcp("localhost", 8000, retrying);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ReconnectingClientFactory<F> {
    inner: F,
    retry: Rc<Retry>,
}

/// A handle on a [`ReconnectingClientFactory`]'s retrying, for the protocols it builds and
/// anyone else: stop it, reset it, look at it. Cheap to clone; it does not keep the factory
/// alive (once the factory is gone, its methods do nothing and report a factory that
/// stopped trying).
#[derive(Clone)]
pub struct ReconnectControl {
    retry: Weak<Retry>,
}

/// The retry state, shared by the factory and its controls.
struct Retry {
    clock: Rc<dyn ReactorTime>,
    backoff: Backoff,
    delay: Cell<f64>,
    retries: Cell<u32>,
    continue_trying: Cell<bool>,
    reset_on_connect: Cell<bool>,
    call: RefCell<Option<DelayedCall>>,
    connector: RefCell<Option<Connector>>,
    rng: Jitter,
}

impl<F: ClientFactory> ReconnectingClientFactory<F> {
    /// Wraps `inner`, scheduling retries on `clock` (the reactor, or a test `Clock`).
    pub fn new(inner: F, clock: impl ReactorTime + 'static, backoff: Backoff) -> Rc<Self> {
        ReconnectingClientFactory::with_control(clock, backoff, |_| inner)
    }

    /// Builds the wrapped factory with `build`, which gets a [`ReconnectControl`] on the
    /// new factory to hand to the protocols it makes.
    pub fn with_control(
        clock: impl ReactorTime + 'static,
        backoff: Backoff,
        build: impl FnOnce(ReconnectControl) -> F,
    ) -> Rc<Self> {
        let retry = Rc::new(Retry {
            clock: Rc::new(clock),
            delay: Cell::new(backoff.initial_delay),
            backoff,
            retries: Cell::new(0),
            continue_trying: Cell::new(true),
            reset_on_connect: Cell::new(true),
            call: RefCell::new(None),
            connector: RefCell::new(None),
            rng: Jitter::new(),
        });
        let control = ReconnectControl {
            retry: Rc::downgrade(&retry),
        };
        Rc::new(ReconnectingClientFactory {
            inner: build(control),
            retry,
        })
    }

    /// The wrapped factory.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// A handle on this factory's retrying.
    pub fn control(&self) -> ReconnectControl {
        ReconnectControl {
            retry: Rc::downgrade(&self.retry),
        }
    }

    /// Whether a successful connection resets the delay (default true).
    pub fn reset_on_connect(&self, enabled: bool) {
        self.retry.reset_on_connect.set(enabled);
    }

    /// Seeds the jitter's random numbers, for reproducible tests.
    pub fn seed(&self, seed: u64) {
        self.retry.rng.seed(seed);
    }

    /// The delay the last retry was scheduled with (or the initial delay), in seconds.
    pub fn delay(&self) -> f64 {
        self.retry.delay.get()
    }

    /// How many retries have been made since the last reset.
    pub fn retries(&self) -> u32 {
        self.retry.retries.get()
    }

    /// Whether the factory will retry after the next failure or loss.
    pub fn continue_trying(&self) -> bool {
        self.retry.continue_trying.get()
    }

    /// Schedules the next attempt on `connector` after the next delay (Twisted's `retry`).
    pub fn retry(&self, connector: &Connector) {
        self.retry.retry(connector, self.inner.log_prefix());
    }

    /// Stops retrying: cancels a scheduled retry and any attempt under way.
    pub fn stop_trying(&self) {
        self.retry.stop_trying();
    }

    /// Back to the initial delay and zero retries, and trying again (Twisted's
    /// `resetDelay`).
    pub fn reset_delay(&self) {
        self.retry.reset_delay();
    }
}

impl ReconnectControl {
    /// Stops retrying: cancels a scheduled retry and any attempt under way (Twisted's
    /// `stopTrying`). A connection that is up stays up; when it ends, no retry follows.
    pub fn stop_trying(&self) {
        if let Some(retry) = self.retry.upgrade() {
            retry.stop_trying();
        }
    }

    /// Back to the initial delay and zero retries, and trying again (Twisted's
    /// `resetDelay`).
    pub fn reset_delay(&self) {
        if let Some(retry) = self.retry.upgrade() {
            retry.reset_delay();
        }
    }

    /// Whether the factory will retry after the next failure or loss.
    pub fn continue_trying(&self) -> bool {
        self.retry
            .upgrade()
            .is_some_and(|retry| retry.continue_trying.get())
    }

    /// How many retries have been made since the last reset.
    pub fn retries(&self) -> u32 {
        self.retry.upgrade().map_or(0, |retry| retry.retries.get())
    }
}

impl fmt::Debug for ReconnectControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectControl")
            .field("continue_trying", &self.continue_trying())
            .field("retries", &self.retries())
            .finish()
    }
}

impl Retry {
    fn retry(&self, connector: &Connector, log_prefix: &str) {
        if !self.continue_trying.get() {
            return;
        }
        let retries = self.retries.get() + 1;
        self.retries.set(retries);
        if self.backoff.max_retries.is_some_and(|max| retries > max) {
            report_warn!(
                "Abandoning {} after {} retries.",
                connector.destination(),
                retries - 1
            );
            return;
        }
        let delay = self.backoff.jittered(
            (self.delay.get() * self.backoff.factor).min(self.backoff.max_delay),
            &self.rng,
        );
        self.delay.set(delay);
        tracing::info!("{log_prefix} will retry in {} seconds", Seconds(delay));
        let target = connector.clone();
        let call = self.clock.call_later(delay_duration(delay), move || {
            target.connect();
        });
        *self.call.borrow_mut() = Some(call);
    }

    fn stop_trying(&self) {
        if let Some(call) = self.call.borrow_mut().take() {
            let _ = call.cancel();
        }
        self.continue_trying.set(false);
        let connector = self.connector.borrow().clone();
        if let Some(connector) = connector {
            // Not connecting is fine: there is nothing to stop.
            let _ = connector.stop_connecting();
        }
    }

    fn reset_delay(&self) {
        self.delay.set(self.backoff.initial_delay);
        self.retries.set(0);
        self.call.borrow_mut().take();
        self.continue_trying.set(true);
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first): `initial_delay *
    /// factor^attempt`, at most `max_delay`, with jitter drawn from `rng`.
    pub(crate) fn delay_for(&self, attempt: u32, rng: &Jitter) -> f64 {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let delay = (self.initial_delay * self.factor.powi(exponent)).min(self.max_delay);
        self.jittered(delay, rng)
    }

    /// `delay` moved by this policy's relative jitter (never below zero).
    fn jittered(&self, delay: f64, rng: &Jitter) -> f64 {
        if self.jitter > 0.0 {
            (delay + rng.next_normal() * delay * self.jitter).max(0.0)
        } else {
            delay
        }
    }
}

/// A policy's delay as a `Duration`: at most a year, so that an unbounded policy (an
/// infinite `max_delay`, a NaN from odd settings) cannot overflow the timer or panic.
pub(crate) fn delay_duration(seconds: f64) -> Duration {
    const YEAR: f64 = 365.0 * 86400.0;
    let seconds = if seconds.is_nan() {
        YEAR
    } else {
        seconds.clamp(0.0, YEAR)
    };
    Duration::from_secs_f64(seconds)
}

/// The random numbers behind backoff jitter: xorshift64*, seeded from the time of day
/// (this spreads clients out; it is no secret).
pub(crate) struct Jitter(Cell<u64>);

impl Jitter {
    pub(crate) fn new() -> Jitter {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        Jitter(Cell::new(seed | 1))
    }

    /// Restarts the sequence from `seed`, for reproducible tests.
    pub(crate) fn seed(&self, seed: u64) {
        self.0.set(seed | 1);
    }

    /// A standard normal variate (Box–Muller).
    fn next_normal(&self) -> f64 {
        let u1 = self.next_unit().max(f64::MIN_POSITIVE);
        let u2 = self.next_unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn next_unit(&self) -> f64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A delay in seconds as a person reads it: `0.35`, `2.72`, `3600` (not `0` for a
/// sub-second delay).
struct Seconds(f64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = match self.0 {
            s if s >= 100.0 => 0,
            s if s >= 1.0 => 2,
            _ => 3,
        };
        let text = format!("{:.*}", digits, self.0);
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.')
        } else {
            &text
        };
        f.write_str(text)
    }
}

impl<F: ClientFactory> Factory for ReconnectingClientFactory<F> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        if self.retry.reset_on_connect.get() {
            self.reset_delay();
        }
        self.inner.build_protocol(addr)
    }

    fn start_factory(&self) {
        self.inner.start_factory()
    }

    fn stop_factory(&self) {
        self.inner.stop_factory()
    }

    fn log_prefix(&self) -> &str {
        self.inner.log_prefix()
    }
}

impl<F: ClientFactory> ClientFactory for ReconnectingClientFactory<F> {
    fn started_connecting(&self, connector: &Connector) {
        *self.retry.connector.borrow_mut() = Some(connector.clone());
        self.inner.started_connecting(connector)
    }

    fn client_connection_failed(&self, connector: &Connector, reason: &Error) {
        self.inner.client_connection_failed(connector, reason);
        if self.continue_trying() {
            *self.retry.connector.borrow_mut() = Some(connector.clone());
            self.retry(connector);
        }
    }

    fn client_connection_lost(&self, connector: &Connector, reason: &CloseReason) {
        self.inner.client_connection_lost(connector, reason);
        if self.continue_trying() {
            *self.retry.connector.borrow_mut() = Some(connector.clone());
            self.retry(connector);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Seconds;

    #[test]
    fn delays_read_as_seconds() {
        let shown = |s: f64| Seconds(s).to_string();
        assert_eq!(shown(0.35), "0.35");
        assert_eq!(shown(0.1), "0.1");
        assert_eq!(shown(0.0042), "0.004");
        assert_eq!(shown(1.0), "1");
        assert_eq!(shown(std::f64::consts::E), "2.72");
        assert_eq!(shown(3600.0), "3600");
    }
}
