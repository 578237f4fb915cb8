//! Awaitable connections: [`connect_protocol`] returns a Deferred for the transport.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::address::Address;
use crate::connector::Connector;
use crate::error::Error;
use crate::protocol::{ClientFactory, CloseReason, Factory, Protocol};
use crate::reactor::Reactor;
use crate::transport::Transport;

use super::deferred::Deferred;
use super::failure::Failure;

/// Connects to `host:port` over TCP, runs `protocol` on the connection, and returns a
/// Deferred that fires with the connection's transport once it is up (after the
/// protocol's `connection_made`), or fails with the reason the attempt failed (Twisted's
/// `ClientCreator` / `connectProtocol`). Cancelling it while connecting abandons the
/// attempt.
///
/// The protocol is owned by the connection; keep what you want to reach later (a queue of
/// received messages, say) behind an `Rc` inside it.
///
/// ```no_run
/// use twistor::defer::connect_protocol;
/// use twistor::protocol::Protocol;
/// use twistor::{Reactor, Transport};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
///         println!("{}", String::from_utf8_lossy(data));
///     }
/// }
///
/// let reactor = Reactor::new().unwrap();
/// let d = reactor.spawn(async move {
///     let transport = connect_protocol(&reactor, "localhost", 8000, Hello).await?;
///     transport.write(b"hello\n");
///     Ok(())
/// });
/// ```
pub fn connect_protocol<P: Protocol>(
    reactor: &Reactor,
    host: &str,
    port: u16,
    protocol: P,
) -> Deferred<Transport> {
    let connector: Rc<RefCell<Option<Connector>>> = Rc::new(RefCell::new(None));
    let cancelled = Rc::new(Cell::new(false));
    let (c, flag) = (connector.clone(), cancelled.clone());
    let d = Deferred::with_canceller(move |_| {
        flag.set(true);
        if let Some(connector) = c.borrow_mut().take() {
            let _ = connector.stop_connecting();
        }
    });
    let factory = Rc::new(OneShot {
        protocol: RefCell::new(Some(protocol)),
        deferred: d.clone(),
        cancelled,
    });
    let started = reactor.connect_tcp(host, port, factory);
    if !d.called() {
        *connector.borrow_mut() = Some(started);
    }
    d
}

/// A client factory for exactly one connection, reporting it on a Deferred.
struct OneShot<P> {
    protocol: RefCell<Option<P>>,
    deferred: Deferred<Transport>,
    cancelled: Rc<Cell<bool>>,
}

impl<P: Protocol> Factory for OneShot<P> {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        let inner = self.protocol.borrow_mut().take()?;
        Some(Box::new(Announce {
            inner,
            deferred: Some(self.deferred.clone()),
        }))
    }

    fn noisy(&self) -> bool {
        false
    }
}

impl<P: Protocol> ClientFactory for OneShot<P> {
    fn client_connection_failed(&self, _connector: &Connector, reason: &Error) {
        if !self.cancelled.get() {
            let _ = self.deferred.errback(Failure::new(reason.clone()));
        }
    }
}

/// Wraps the user's protocol to fire the Deferred once the connection is made.
struct Announce<P> {
    inner: P,
    deferred: Option<Deferred<Transport>>,
}

impl<P: Protocol> Protocol for Announce<P> {
    fn make_connection(&mut self, transport: &Transport) {
        self.inner.make_connection(transport);
        if let Some(d) = self.deferred.take() {
            let _ = d.callback(transport.clone());
        }
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.inner.data_received(transport, data)
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.inner.connection_lost(reason)
    }

    fn read_connection_lost(&mut self, transport: &Transport) {
        self.inner.read_connection_lost(transport)
    }

    fn write_connection_lost(&mut self, transport: &Transport) {
        self.inner.write_connection_lost(transport)
    }
}
