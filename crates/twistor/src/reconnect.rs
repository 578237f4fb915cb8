//! A client factory that reconnects with exponential backoff (Twisted's
//! `ReconnectingClientFactory`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::address::Address;
use crate::connector::Connector;
use crate::error::Error;
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
pub struct ReconnectingClientFactory<F> {
    inner: F,
    clock: Rc<dyn ReactorTime>,
    backoff: Backoff,
    delay: Cell<f64>,
    retries: Cell<u32>,
    continue_trying: Cell<bool>,
    reset_on_connect: Cell<bool>,
    call: RefCell<Option<DelayedCall>>,
    connector: RefCell<Option<Connector>>,
    rng: Cell<u64>,
}

impl<F: ClientFactory> ReconnectingClientFactory<F> {
    /// Wraps `inner`, scheduling retries on `clock` (the reactor, or a test `Clock`).
    pub fn new(inner: F, clock: Rc<dyn ReactorTime>, backoff: Backoff) -> Rc<Self> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            | 1;
        Rc::new(ReconnectingClientFactory {
            inner,
            clock,
            delay: Cell::new(backoff.initial_delay),
            backoff,
            retries: Cell::new(0),
            continue_trying: Cell::new(true),
            reset_on_connect: Cell::new(true),
            call: RefCell::new(None),
            connector: RefCell::new(None),
            rng: Cell::new(seed),
        })
    }

    /// The wrapped factory.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// Whether a successful connection resets the delay (default true).
    pub fn reset_on_connect(&self, enabled: bool) {
        self.reset_on_connect.set(enabled);
    }

    /// Seeds the jitter's random numbers, for reproducible tests.
    pub fn seed(&self, seed: u64) {
        self.rng.set(seed | 1);
    }

    /// The delay the last retry was scheduled with (or the initial delay), in seconds.
    pub fn delay(&self) -> f64 {
        self.delay.get()
    }

    /// How many retries have been made since the last reset.
    pub fn retries(&self) -> u32 {
        self.retries.get()
    }

    /// Whether the factory will retry after the next failure or loss.
    pub fn continue_trying(&self) -> bool {
        self.continue_trying.get()
    }

    /// Schedules the next attempt on `connector` after the next delay (Twisted's `retry`).
    pub fn retry(&self, connector: &Connector) {
        if !self.continue_trying.get() {
            return;
        }
        let retries = self.retries.get() + 1;
        self.retries.set(retries);
        if self.backoff.max_retries.is_some_and(|max| retries > max) {
            tracing::info!(
                "Abandoning {:?} after {} retries.",
                connector.destination(),
                retries - 1
            );
            return;
        }
        let mut delay = (self.delay.get() * self.backoff.factor).min(self.backoff.max_delay);
        if self.backoff.jitter > 0.0 {
            delay = (delay + self.next_normal() * delay * self.backoff.jitter).max(0.0);
        }
        self.delay.set(delay);
        tracing::info!(
            "{} will retry in {} seconds",
            self.inner.log_prefix(),
            delay as u64
        );
        let target = connector.clone();
        let call = self
            .clock
            .call_later(Duration::from_secs_f64(delay), move || {
                target.connect();
            });
        *self.call.borrow_mut() = Some(call);
    }

    /// Stops retrying: cancels a scheduled retry and any attempt under way.
    pub fn stop_trying(&self) {
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

    /// Back to the initial delay and zero retries, and trying again (Twisted's
    /// `resetDelay`).
    pub fn reset_delay(&self) {
        self.delay.set(self.backoff.initial_delay);
        self.retries.set(0);
        self.call.borrow_mut().take();
        self.continue_trying.set(true);
    }

    /// A standard normal variate (Box–Muller over xorshift64*).
    fn next_normal(&self) -> f64 {
        let u1 = self.next_unit().max(f64::MIN_POSITIVE);
        let u2 = self.next_unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn next_unit(&self) -> f64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl<F: ClientFactory> Factory for ReconnectingClientFactory<F> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        if self.reset_on_connect.get() {
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
        *self.connector.borrow_mut() = Some(connector.clone());
        self.inner.started_connecting(connector)
    }

    fn client_connection_failed(&self, connector: &Connector, reason: &Error) {
        self.inner.client_connection_failed(connector, reason);
        if self.continue_trying.get() {
            *self.connector.borrow_mut() = Some(connector.clone());
            self.retry(connector);
        }
    }

    fn client_connection_lost(&self, connector: &Connector, reason: &CloseReason) {
        self.inner.client_connection_lost(connector, reason);
        if self.continue_trying.get() {
            *self.connector.borrow_mut() = Some(connector.clone());
            self.retry(connector);
        }
    }
}
