//! Client endpoints: TCP to an address, Unix sockets, and the factory wrapper that turns a
//! connection attempt into a `Deferred<Transport>`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::address::{Address, UnixAddress};
use crate::connector::Connector;
use crate::defer::{Deferred, Failure};
use crate::error::Error;
use crate::protocol::{ClientFactory, Factory, Protocol, Watched};
use crate::reactor::Reactor;
use crate::transport::Transport;

use super::ClientEndpoint;

/// A Unix socket client endpoint (`unix:PATH[:timeout=SECONDS]`).
#[derive(Debug, Clone)]
pub struct UnixClientEndpoint {
    reactor: Reactor,
    address: UnixAddress,
    timeout: Option<Duration>,
}

impl UnixClientEndpoint {
    /// Connects to `address`, giving up after `timeout`.
    pub fn new(
        reactor: &Reactor,
        address: impl Into<UnixAddress>,
        timeout: Option<Duration>,
    ) -> UnixClientEndpoint {
        UnixClientEndpoint {
            reactor: reactor.clone(),
            address: address.into(),
            timeout,
        }
    }
}

impl ClientEndpoint for UnixClientEndpoint {
    fn connect(&self, factory: Rc<dyn Factory>) -> Deferred<Transport> {
        let (reactor, address, timeout) =
            (self.reactor.clone(), self.address.clone(), self.timeout);
        connect_once(factory, move |f| {
            reactor.connect_unix_with(address, f, timeout)
        })
    }

    fn describe(&self) -> String {
        format!("unix:{}", self.address)
    }
}

/// Starts one connection attempt with `start` and returns a Deferred that fires with the
/// transport once connected, or fails with the reason it could not connect. Cancelling it
/// stops the attempt.
pub(crate) fn connect_once(
    factory: Rc<dyn Factory>,
    start: impl FnOnce(Rc<dyn ClientFactory>) -> Connector,
) -> Deferred<Transport> {
    let connector: Rc<RefCell<Option<Connector>>> = Rc::default();
    let c = connector.clone();
    let d = Deferred::with_canceller(move |_| {
        if let Some(connector) = c.borrow_mut().take() {
            let _ = connector.stop_connecting();
        }
    });
    let started = start(Rc::new(EndpointFactory {
        factory,
        deferred: d.clone(),
    }));
    if !d.called() {
        *connector.borrow_mut() = Some(started);
    }
    d
}

/// A client factory for one endpoint connection: builds the application's protocol and
/// reports the outcome on a Deferred.
pub(crate) struct EndpointFactory {
    pub(crate) factory: Rc<dyn Factory>,
    pub(crate) deferred: Deferred<Transport>,
}

impl Factory for EndpointFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        match self.factory.build_protocol(addr) {
            Some(inner) => Some(Box::new(announce(inner, self.deferred.clone()))),
            None => {
                let _ = self.deferred.errback(Failure::new(Error::FactoryRefused));
                None
            }
        }
    }

    fn start_factory(&self) {
        self.factory.start_factory()
    }

    fn stop_factory(&self) {
        self.factory.stop_factory()
    }

    fn log_prefix(&self) -> &str {
        self.factory.log_prefix()
    }

    fn noisy(&self) -> bool {
        false
    }
}

impl ClientFactory for EndpointFactory {
    fn client_connection_failed(&self, _connector: &Connector, reason: &Error) {
        if !self.deferred.called() {
            let _ = self.deferred.errback(Failure::new(reason.clone()));
        }
    }
}

/// Wraps the application's protocol to fire the endpoint's Deferred once connected.
pub(crate) fn announce(inner: Box<dyn Protocol>, deferred: Deferred<Transport>) -> Watched {
    Watched::on_made(inner, move |transport| {
        if !deferred.called() {
            let _ = deferred.callback(transport.clone());
        }
    })
}
