//! How every `twist` service runs: as a tree of services (`twistor::application`). First a
//! [`DrainService`] that counts the service's open connections, then one
//! [`StreamServerEndpointService`] per `--listen`, then anything else the service needs.
//! The tree is stopped in reverse order when the reactor shuts down (SIGTERM or SIGINT), so
//! the listeners close at once and the connections still open get a grace period
//! (`--shutdown-timeout`) to finish before they are cut. A second signal cuts them at once.

use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use twistor::application::{
    self, DrainService, MultiService, Service, StreamServerEndpointService,
};
use twistor::endpoints::ServerEndpoint;
use twistor::{Factory, Reactor};

use crate::Failure;

/// The grace period when `--shutdown-timeout` is not given.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

static GRACE: OnceLock<Duration> = OnceLock::new();

/// Sets the grace period for the whole process (from `--shutdown-timeout`).
pub fn set_grace(grace: Duration) {
    let _ = GRACE.set(grace);
}

/// The grace period connections get at shutdown.
pub fn grace() -> Duration {
    GRACE.get().copied().unwrap_or(DEFAULT_GRACE)
}

/// Counts what `reactor` still watches: once its ports are closed, every source left is a
/// connection (or one being made, or an outgoing one).
pub fn sources(reactor: &Reactor) -> impl Fn() -> usize + 'static {
    let weak = reactor.downgrade();
    move || weak.upgrade().map_or(0, |r| r.source_count())
}

/// A `twist` server's services, built before anything listens.
pub struct Server {
    reactor: Reactor,
    root: Rc<MultiService>,
}

impl Server {
    /// A server whose shutdown waits (up to the grace period) until `open()` counts no
    /// connection left, after running `begin` (where a service that can tell idle
    /// connections from busy ones closes the idle ones).
    pub fn new(
        reactor: &Reactor,
        open: impl Fn() -> usize + 'static,
        begin: impl Fn() + 'static,
    ) -> Server {
        let root = Rc::new(MultiService::new());
        let drain = DrainService::new(reactor.clone(), grace(), open).on_begin(begin);
        // Cannot fail: the tree is empty and stopped.
        let _ = root.add_named("drain", Rc::new(drain));
        Server {
            reactor: reactor.clone(),
            root,
        }
    }

    /// Listens on `endpoint` with `factory` once the server starts.
    pub fn listen(
        &self,
        endpoint: Box<dyn ServerEndpoint>,
        factory: Rc<dyn Factory>,
    ) -> Rc<StreamServerEndpointService> {
        let name = format!("listen {}", endpoint.describe());
        let service = Rc::new(StreamServerEndpointService::new(endpoint, factory));
        // A description given twice is still listened on twice (and fails as in use).
        if self.root.add_named(&name, service.clone()).is_err() {
            let _ = self.root.add(service.clone());
        }
        service
    }

    /// Adds another service, started after the listeners and stopped before them.
    pub fn add<S: Service>(&self, service: Rc<S>) {
        // Cannot fail: the tree is not running yet, and the child is unnamed.
        let _ = self.root.add(service);
    }

    /// Starts every service (a port in use fails here, naming the address) and hooks
    /// their stop to the reactor's shutdown.
    pub fn start(&self) -> Result<(), Failure> {
        application::attach(&self.reactor, self.root.clone())
            .map_err(|failure| Failure::Runtime(failure.to_string()))
    }

    /// Starts the services and runs the reactor until it stops.
    pub fn run(&self) -> Result<(), Failure> {
        self.start()?;
        self.reactor
            .run()
            .map_err(|e| Failure::Runtime(e.to_string()))
    }
}
