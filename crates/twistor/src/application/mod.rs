//! Services: a program assembled from parts that start and stop together (Twisted's
//! `twisted.application`).
//!
//! A [`Service`] starts and stops; a [`MultiService`] starts its children in order and stops
//! them in reverse, each stop waiting for the one before. The services for network programs:
//!
//! - [`StreamServerEndpointService`]: listens on an endpoint while it runs;
//! - [`ClientService`]: keeps one connection up through an endpoint, retrying with backoff;
//! - [`TimerService`]: calls a function periodically;
//! - [`DrainService`]: at stop, waits for open connections to finish (up to a grace period).
//!
//! [`run`] starts a service and runs the reactor until it stops; stopping the reactor (a
//! SIGTERM, say) stops the service first and waits for it — a second signal stops at once.
//!
//! ```no_run
//! use std::rc::Rc;
//! use std::time::Duration;
//! use twistor::application::{self, DrainService, MultiService, StreamServerEndpointService};
//! use twistor::endpoints::server_from_string;
//! use twistor::protocol::{factory, Protocol};
//! use twistor::{Reactor, Transport};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, t: &Transport, data: &[u8]) {
//!         t.write(data);
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! reactor.install_signal_handlers()?;
//! let root = MultiService::new();
//! // Started first, so stopped last: after the ports have stopped listening.
//! let weak = reactor.downgrade();
//! let open = move || weak.upgrade().map_or(0, |r| r.source_count());
//! root.add(Rc::new(DrainService::new(reactor.clone(), Duration::from_secs(10), open)))?;
//! for description in ["tcp:8000", "tcp6:8000"] {
//!     let endpoint = server_from_string(&reactor, description)?;
//!     root.add(Rc::new(StreamServerEndpointService::new(endpoint, factory(|_| Echo))))?;
//! }
//! application::run(&reactor, Rc::new(root))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod drain;
mod server;
mod service;
mod timer;

pub use client::ClientService;
pub use drain::DrainService;
pub use server::StreamServerEndpointService;
pub use service::{DuplicateName, MultiService, Service};
pub use timer::TimerService;

use std::cell::RefCell;
use std::rc::Rc;

use crate::defer::Failure;
use crate::reactor::{Phase, Reactor, SystemEvent};

/// Starts `service` now, and stops it when `reactor` shuts down: the shutdown waits for
/// the service's stop to fire (a second SIGINT/SIGTERM, or `Reactor::stop_now`, does not
/// wait). An error starting it is returned, and nothing is left registered.
///
/// The reactor holds the service until it has stopped it (the first shutdown); a service
/// that holds the reactor (most do, as their clock) keeps it alive until then.
pub fn attach(reactor: &Reactor, service: Rc<dyn Service>) -> Result<(), Failure> {
    service.start_service()?;
    // Taken at the first shutdown, so the reactor and the service do not keep each other
    // alive after it.
    let service = RefCell::new(Some(service));
    reactor.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
        let service = service.borrow_mut().take()?;
        if !service.running() {
            return None;
        }
        let stopped = service.stop_service();
        Some(Box::pin(async move {
            // Alive until stopped: what it stops may report back to it.
            let _service = service;
            if let Err(failure) = stopped.await {
                tracing::error!("stopping the service failed: {failure}");
            }
        }))
    });
    Ok(())
}

/// Starts `service`, runs `reactor` until it is stopped (by `Reactor::stop`, or SIGINT or
/// SIGTERM once [`Reactor::install_signal_handlers`] has run), stopping the service first
/// (Twisted's `twist` running an application).
pub fn run(reactor: &Reactor, service: Rc<dyn Service>) -> Result<(), Failure> {
    attach(reactor, service)?;
    reactor.run().map_err(Failure::new)
}
