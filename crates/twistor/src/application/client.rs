//! `ClientService`: keep one connection up through an endpoint.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::address::Address;
use crate::defer::{Deferred, DeferredError, Failure};
use crate::endpoints::ClientEndpoint;
use crate::protocol::{CloseReason, Factory, Protocol, Watched};
use crate::reactor::{DelayedCall, ReactorTime};
use crate::reconnect::{Backoff, Jitter, delay_duration};
use crate::transport::Transport;

use super::Service;

/// Keeps one connection up through a client endpoint while it runs (Twisted's
/// `ClientService`, what Twisted tells users of `ReconnectingClientFactory` to use):
/// connects when started; when an attempt fails or the connection is lost, waits as the
/// [`Backoff`] policy says and connects again; a connection that is made resets the count
/// of failures. Stopping cancels an attempt or a wait under way, or closes the connection
/// and fires once it is closed.
///
/// [`when_connected`](Self::when_connected) gives the connection's transport, now or once
/// it is up. The protocol the factory built is the application's own: `Transport::call_later`
/// reaches it through the watcher this service puts around it.
///
/// ```no_run
/// use std::rc::Rc;
/// use twistor::application::{ClientService, Service};
/// use twistor::endpoints::client_from_string;
/// use twistor::protocol::{factory, Protocol};
/// use twistor::{Reactor, Transport};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, t: &Transport) {
///         t.write(b"hello\n");
///     }
///     fn data_received(&mut self, _: &Transport, data: &[u8]) {
///         println!("{}", String::from_utf8_lossy(data));
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let endpoint = client_from_string(&reactor, "tcp:localhost:8000")?;
/// let service = Rc::new(ClientService::new(reactor.clone(), endpoint, factory(|_| Hello)));
/// service.start_service()?;
/// service.when_connected().add_callback(|transport| {
///     println!("connected to {}", transport.peer());
///     Ok(transport)
/// });
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClientService {
    inner: Rc<Inner>,
}

struct Inner {
    endpoint: Box<dyn ClientEndpoint>,
    factory: Rc<dyn Factory>,
    clock: Rc<dyn ReactorTime>,
    backoff: RefCell<Backoff>,
    prepare: Option<Prepare>,
    rng: Jitter,
    st: RefCell<State>,
}

/// Readies a new connection before it counts as connected (a login, say).
type Prepare = Box<dyn Fn(&Transport) -> Deferred<()>>;

/// What the service is doing.
enum Phase {
    Stopped,
    /// An attempt is under way.
    Connecting(Deferred<Transport>),
    /// Waiting to try again.
    Waiting(DelayedCall),
    /// Connected, and the prepare function's Deferred (kept to cancel it) has not fired.
    Preparing(Transport, Deferred<()>),
    Connected(Transport),
    /// Stopping: closing the connection; the Deferreds fire once it is closed.
    Closing(Vec<Deferred<()>>),
    /// The policy's `max_retries` ran out; nothing more happens until a restart.
    GaveUp,
}

struct State {
    phase: Phase,
    /// Which attempt is current: events from older ones are ignored.
    attempt: u64,
    /// Failed attempts (and losses) since the last connection was made.
    failures: u32,
    /// Waiting for a connection: each fails once this many attempts failed (if `Some`).
    waiting: Vec<(Deferred<Transport>, Option<u32>)>,
    /// The last attempt's failure.
    last_failure: Option<Failure>,
    /// Started again while closing: connect once the old connection is gone.
    restart: bool,
}

impl ClientService {
    /// A service that connects `factory`'s protocols through `endpoint`, scheduling retries
    /// on `clock` (the reactor, or a test `Clock`) with [`default_backoff`](Self::default_backoff).
    pub fn new(
        clock: impl ReactorTime + 'static,
        endpoint: Box<dyn ClientEndpoint>,
        factory: Rc<dyn Factory>,
    ) -> ClientService {
        ClientService {
            inner: Rc::new(Inner {
                endpoint,
                factory,
                clock: Rc::new(clock),
                backoff: RefCell::new(ClientService::default_backoff()),
                prepare: None,
                rng: Jitter::new(),
                st: RefCell::new(State {
                    phase: Phase::Stopped,
                    attempt: 0,
                    failures: 0,
                    waiting: Vec::new(),
                    last_failure: None,
                    restart: false,
                }),
            }),
        }
    }

    /// Twisted's `backoffPolicy()` defaults: 1.5 s after the first failure, times 1.5
    /// after each further one, at most 60 s, with jitter; never gives up.
    pub fn default_backoff() -> Backoff {
        Backoff::default()
            .initial_delay(1.0)
            .factor(1.5)
            .max_delay(60.0)
    }

    /// Sets the retry policy: after the `n`th failure in a row the wait is
    /// `initial_delay * factor^n` (at most `max_delay`, with jitter); once `max_retries`
    /// retries have failed too (`max_retries + 1` failures in a row) it gives up
    /// (`when_connected` waiters fail) until restarted.
    pub fn with_backoff(self, backoff: Backoff) -> Self {
        *self.inner.backoff.borrow_mut() = backoff;
        self
    }

    /// Readies each new connection with `prepare` before it counts as connected (Twisted's
    /// `prepareConnection`): `when_connected` fires once its Deferred has succeeded. If it
    /// fails, the failure is logged and the connection closed (and retried).
    ///
    /// Panics if called after the service was shared (it is a builder method).
    pub fn with_prepare(mut self, prepare: impl Fn(&Transport) -> Deferred<()> + 'static) -> Self {
        Rc::get_mut(&mut self.inner)
            .expect("with_prepare is called while building the service")
            .prepare = Some(Box::new(prepare));
        self
    }

    /// Seeds the jitter's random numbers, for reproducible tests.
    pub fn seed(&self, seed: u64) {
        self.inner.rng.seed(seed);
    }

    /// The connection's transport: at once if connected, else once a connection is made.
    /// Fails with [`DeferredError::Cancelled`] if the service stops first (or is stopped).
    pub fn when_connected(&self) -> Deferred<Transport> {
        self.when_connected_within(None)
    }

    /// Like [`when_connected`](Self::when_connected), but fails with the attempt's error
    /// once `failures` attempts in a row have failed (counting those already failed).
    pub fn when_connected_or_fail_after(&self, failures: u32) -> Deferred<Transport> {
        self.when_connected_within(Some(failures.max(1)))
    }

    fn when_connected_within(&self, limit: Option<u32>) -> Deferred<Transport> {
        let mut st = self.inner.st.borrow_mut();
        match &st.phase {
            Phase::Connected(transport) => return Deferred::succeeded(transport.clone()),
            Phase::Stopped => return Deferred::failed(DeferredError::Cancelled),
            Phase::Closing(_) if !st.restart => return Deferred::failed(DeferredError::Cancelled),
            Phase::GaveUp => return Deferred::failed(st.give_up_failure()),
            Phase::Closing(_) | Phase::Connecting(_) | Phase::Waiting(_) | Phase::Preparing(..) => {
            }
        }
        if let Some(limit) = limit
            && st.failures >= limit
        {
            return Deferred::failed(st.give_up_failure());
        }
        let d = Deferred::new();
        st.waiting.push((d.clone(), limit));
        d
    }

    /// How many attempts in a row have failed (or connections been lost) since the last
    /// connection was made.
    pub fn failures(&self) -> u32 {
        self.inner.st.borrow().failures
    }

    /// The transport of the connection that is up, if one is.
    pub fn transport(&self) -> Option<Transport> {
        match &self.inner.st.borrow().phase {
            Phase::Connected(transport) => Some(transport.clone()),
            _ => None,
        }
    }
}

impl State {
    fn give_up_failure(&self) -> Failure {
        self.last_failure
            .clone()
            .unwrap_or_else(|| Failure::msg("no connection could be made"))
    }
}

impl Inner {
    /// Starts an attempt.
    fn connect(self: &Rc<Self>) {
        let attempt = {
            let mut st = self.st.borrow_mut();
            st.attempt += 1;
            st.attempt
        };
        let watcher: Rc<dyn Factory> = Rc::new(WatchFactory {
            inner: self.factory.clone(),
            service: Rc::downgrade(self),
            attempt,
        });
        // Connecting before the endpoint is called (it may make and lose a connection at
        // once); then the attempt's own Deferred, unless that attempt is already over.
        self.st.borrow_mut().phase = Phase::Connecting(Deferred::new());
        let d = self.endpoint.connect(watcher);
        {
            let mut st = self.st.borrow_mut();
            if st.attempt == attempt && matches!(st.phase, Phase::Connecting(_)) {
                st.phase = Phase::Connecting(d.clone());
            }
        }
        let weak = Rc::downgrade(self);
        d.consume(move |result| {
            if let Some(inner) = weak.upgrade() {
                inner.attempt_done(attempt, result);
            }
        });
    }

    fn attempt_done(self: &Rc<Self>, attempt: u64, result: Result<Transport, Failure>) {
        let mut st = self.st.borrow_mut();
        if st.attempt != attempt || !matches!(st.phase, Phase::Connecting(_)) {
            return; // stopped, or the connection was lost before this fired
        }
        match result {
            Ok(transport) => {
                let Some(prepare) = &self.prepare else {
                    drop(st);
                    self.connected(attempt, transport);
                    return;
                };
                st.phase = Phase::Preparing(transport.clone(), Deferred::new());
                drop(st);
                let preparing = prepare(&transport);
                if let Phase::Preparing(_, slot) = &mut self.st.borrow_mut().phase {
                    *slot = preparing.clone();
                }
                let weak = Rc::downgrade(self);
                let t = transport.clone();
                preparing.consume(move |result| {
                    let Some(inner) = weak.upgrade() else { return };
                    let current = {
                        let st = inner.st.borrow();
                        st.attempt == attempt && matches!(st.phase, Phase::Preparing(..))
                    };
                    match result {
                        Ok(()) if current => inner.connected(attempt, t),
                        Ok(()) => {}
                        Err(failure) if failure.is_cancelled() && !current => {}
                        Err(failure) => {
                            tracing::warn!(
                                "preparing the connection to {} failed: {failure}",
                                inner.endpoint.describe()
                            );
                            if current {
                                inner.st.borrow_mut().last_failure = Some(failure);
                                t.abort_connection();
                            }
                        }
                    }
                });
            }
            Err(failure) => {
                tracing::info!(
                    "could not connect to {}: {failure}",
                    self.endpoint.describe()
                );
                st.last_failure = Some(failure);
                drop(st);
                self.failed();
            }
        }
    }

    /// The connection of attempt `attempt` is up (and ready).
    fn connected(self: &Rc<Self>, attempt: u64, transport: Transport) {
        let mut st = self.st.borrow_mut();
        if st.attempt != attempt {
            return;
        }
        st.failures = 0;
        st.last_failure = None;
        st.phase = Phase::Connected(transport.clone());
        let waiting = std::mem::take(&mut st.waiting);
        drop(st);
        tracing::info!("connected to {}", self.endpoint.describe());
        for (d, _) in waiting {
            let _ = d.callback(transport.clone());
        }
    }

    /// The connection of attempt `attempt` is gone.
    fn lost(self: &Rc<Self>, attempt: u64, reason: &CloseReason) {
        let mut st = self.st.borrow_mut();
        if st.attempt != attempt {
            return;
        }
        match std::mem::replace(&mut st.phase, Phase::Stopped) {
            Phase::Closing(stops) => {
                let restart = std::mem::take(&mut st.restart);
                if restart {
                    st.failures = 0;
                    st.last_failure = None;
                }
                drop(st);
                for d in stops {
                    let _ = d.callback(());
                }
                if restart {
                    self.connect();
                }
            }
            Phase::Connected(_) | Phase::Connecting(_) | Phase::Preparing(..) => {
                tracing::info!("connection to {} lost: {reason}", self.endpoint.describe());
                // An attempt whose connection went before its Deferred fired: make the
                // Deferred's outcome stale.
                st.attempt += 1;
                if st.last_failure.is_none() {
                    st.last_failure = Some(Failure::msg(format!("connection lost: {reason}")));
                }
                drop(st);
                self.failed();
            }
            other => st.phase = other,
        }
    }

    /// Counts a failure, fails the waiters whose limit it reaches, and schedules the next
    /// attempt (or gives up).
    fn failed(self: &Rc<Self>) {
        let mut st = self.st.borrow_mut();
        st.failures = st.failures.saturating_add(1);
        let failures = st.failures;
        let backoff = self.backoff.borrow().clone();
        let give_up = backoff.max_retries.is_some_and(|max| failures > max);
        let failure = st.give_up_failure();
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.waiting)
            .into_iter()
            .partition(|(_, limit)| give_up || limit.is_some_and(|l| failures >= l));
        st.waiting = keep;
        if give_up {
            tracing::warn!(
                "giving up on {} after {} failed attempts",
                self.endpoint.describe(),
                failures
            );
            st.phase = Phase::GaveUp;
        } else {
            let delay = backoff.delay_for(failures, &self.rng);
            tracing::info!(
                "will connect to {} again in {delay:.2} s",
                self.endpoint.describe()
            );
            let weak = Rc::downgrade(self);
            let call = self.clock.call_later(delay_duration(delay), move || {
                if let Some(inner) = weak.upgrade() {
                    inner.connect();
                }
            });
            st.phase = Phase::Waiting(call);
        }
        drop(st);
        for (d, _) in due {
            let _ = d.errback(failure.clone());
        }
    }
}

impl Service for ClientService {
    fn start_service(&self) -> Result<(), Failure> {
        {
            let mut st = self.inner.st.borrow_mut();
            match st.phase {
                Phase::Stopped | Phase::GaveUp => {}
                // The old connection is still closing: connect again once it is gone.
                Phase::Closing(_) => {
                    st.restart = true;
                    return Ok(());
                }
                _ => return Ok(()),
            }
            st.failures = 0;
            st.last_failure = None;
        }
        self.inner.connect();
        Ok(())
    }

    fn stop_service(&self) -> Deferred<()> {
        let mut st = self.inner.st.borrow_mut();
        st.restart = false;
        let waiting = std::mem::take(&mut st.waiting);
        let done = match std::mem::replace(&mut st.phase, Phase::Stopped) {
            Phase::Connected(transport) => {
                let d = Deferred::new();
                st.phase = Phase::Closing(vec![d.clone()]);
                drop(st);
                transport.lose_connection();
                d
            }
            Phase::Preparing(transport, preparing) => {
                let d = Deferred::new();
                st.phase = Phase::Closing(vec![d.clone()]);
                drop(st);
                preparing.cancel();
                transport.lose_connection();
                d
            }
            Phase::Closing(mut stops) => {
                let d = Deferred::new();
                stops.push(d.clone());
                st.phase = Phase::Closing(stops);
                drop(st);
                d
            }
            Phase::Connecting(attempt) => {
                st.attempt += 1;
                drop(st);
                attempt.cancel();
                Deferred::succeeded(())
            }
            Phase::Waiting(call) => {
                drop(st);
                let _ = call.cancel();
                Deferred::succeeded(())
            }
            Phase::Stopped | Phase::GaveUp => {
                drop(st);
                Deferred::succeeded(())
            }
        };
        for (d, _) in waiting {
            let _ = d.errback(DeferredError::Cancelled);
        }
        done
    }

    fn running(&self) -> bool {
        let st = self.inner.st.borrow();
        match st.phase {
            Phase::Stopped => false,
            Phase::Closing(_) => st.restart,
            _ => true,
        }
    }
}

/// Builds the application's protocols, each wrapped to report its loss to the service.
struct WatchFactory {
    inner: Rc<dyn Factory>,
    service: Weak<Inner>,
    attempt: u64,
}

impl Factory for WatchFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let inner = self.inner.build_protocol(addr)?;
        let (service, attempt) = (self.service.clone(), self.attempt);
        Some(Box::new(Watched::on_lost(inner, move |reason| {
            if let Some(service) = service.upgrade() {
                service.lost(attempt, reason);
            }
        })))
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

    fn noisy(&self) -> bool {
        self.inner.noisy()
    }
}
