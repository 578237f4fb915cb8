//! Port forwarding: a TCP proxy (Twisted's `twisted.protocols.portforward`).
//!
//! [`ProxyFactory`] serves each incoming connection by connecting to a fixed destination
//! and copying bytes both ways. It reads nothing from the incoming side until the outgoing
//! connection is up, then makes each transport the other's producer: when one side's
//! peer reads slowly and its outgoing buffer fills, reading from the other side pauses, so
//! the proxy's memory stays bounded whatever the speeds. A half-close on one side is passed
//! on to the other.
//!
//! When one side is lost, the other is closed after sending what is queued for it, but it
//! is given only [`DEFAULT_DRAIN_TIMEOUT`] (or the time set with
//! [`ProxyFactory::set_drain_timeout`]) to do so, and is read from (and what it sends thrown
//! away) meanwhile. A peer that neither reads nor stops writing — a client that wrote
//! without reading and died, leaving the destination blocked writing to us while we wait to
//! write to it — would otherwise hold both the connection and its queued bytes for ever.
//!
//! ```no_run
//! use twistor::Reactor;
//! use twistor_protocols::portforward::ProxyFactory;
//!
//! let reactor = Reactor::new()?;
//! reactor.listen_tcp(8080, ProxyFactory::new(reactor.clone(), "127.0.0.1", 80))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use twistor::tcp::{ConnectOptions, ReactorTcp};
use twistor::{
    Address, ClientFactory, CloseReason, Connector, DelayedCall, Error, Factory, Protocol,
    ReactorTime, Transport,
};

/// How long the surviving side of a forwarded connection may take to send what is queued
/// for it once the other side is gone, before it is aborted.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy needs of a reactor: connecting, and timers (for the drain timeout).
/// Implemented for every type that has both, such as `Reactor` and the test kit's
/// `MemoryReactor`.
pub trait ProxyReactor: ReactorTcp + ReactorTime {}

impl<T: ReactorTcp + ReactorTime> ProxyReactor for T {}

/// A factory whose connections are forwarded to `host:port` (Twisted's `ProxyFactory`).
pub struct ProxyFactory {
    reactor: Rc<dyn ProxyReactor>,
    host: String,
    port: u16,
    options: ConnectOptions,
    drain_timeout: Cell<Duration>,
}

impl ProxyFactory {
    /// Forwards each connection to `host:port` (a name or address), connecting with
    /// `reactor` (a `Reactor`, or the test kit's `MemoryReactor`).
    pub fn new(reactor: impl ProxyReactor + 'static, host: &str, port: u16) -> Rc<ProxyFactory> {
        ProxyFactory::with_options(reactor, host, port, ConnectOptions::default())
    }

    /// Like [`new`](ProxyFactory::new), with a connect timeout and bind address.
    pub fn with_options(
        reactor: impl ProxyReactor + 'static,
        host: &str,
        port: u16,
        options: ConnectOptions,
    ) -> Rc<ProxyFactory> {
        Rc::new(ProxyFactory {
            reactor: Rc::new(reactor),
            host: host.to_string(),
            port,
            options,
            drain_timeout: Cell::new(DEFAULT_DRAIN_TIMEOUT),
        })
    }

    /// Sets how long the surviving side of a connection may take to send what is queued
    /// for it once the other side is gone (default [`DEFAULT_DRAIN_TIMEOUT`]); after that it
    /// is aborted. Applies to connections made from then on.
    pub fn set_drain_timeout(&self, timeout: Duration) {
        self.drain_timeout.set(timeout);
    }

    /// Where connections are forwarded.
    pub fn destination(&self) -> (&str, u16) {
        (&self.host, self.port)
    }
}

impl Factory for ProxyFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(ProxyServer {
            link: Rc::new(Link {
                reactor: self.reactor.clone(),
                drain_timeout: self.drain_timeout.get(),
                server: RefCell::default(),
                client: RefCell::default(),
                connector: RefCell::default(),
                drain_timer: RefCell::default(),
            }),
            host: self.host.clone(),
            port: self.port,
            options: self.options.clone(),
        }))
    }
}

/// The two ends of one forwarded connection.
struct Link {
    reactor: Rc<dyn ProxyReactor>,
    drain_timeout: Duration,
    server: RefCell<Option<Transport>>,
    client: RefCell<Option<Transport>>,
    connector: RefCell<Option<Connector>>,
    /// Aborts the surviving side if it has not closed in time.
    drain_timer: RefCell<Option<DelayedCall>>,
}

impl Link {
    fn server(&self) -> Option<Transport> {
        self.server.borrow().clone()
    }

    fn client(&self) -> Option<Transport> {
        self.client.borrow().clone()
    }

    /// One side is gone: close `survivor` once it has sent what is queued for it, or abort
    /// it when the drain timeout passes first. It is read from meanwhile (what it sends has
    /// nowhere to go and is dropped), so a peer blocked writing to us can read again.
    fn close_survivor(self: &Rc<Self>, survivor: &Transport, survivor_is_server: bool) {
        survivor.unregister_producer();
        survivor.resume_producing();
        survivor.lose_connection();
        let link = Rc::downgrade(self);
        let timer = self.reactor.call_later_boxed(
            self.drain_timeout,
            Box::new(move || {
                let Some(link) = link.upgrade() else {
                    return;
                };
                let still_open = if survivor_is_server {
                    link.server()
                } else {
                    link.client()
                };
                if let Some(transport) = still_open {
                    tracing::debug!(
                        "port forward: {} did not take its last {} bytes in time; aborting",
                        transport.peer(),
                        transport.buffered()
                    );
                    transport.abort_connection();
                }
            }),
        );
        *self.drain_timer.borrow_mut() = Some(timer);
    }

    /// The survivor is gone too: its drain timer has nothing left to do.
    fn cancel_drain_timer(&self) {
        if let Some(timer) = self.drain_timer.borrow_mut().take()
            && timer.active()
        {
            let _ = timer.cancel();
        }
    }
}

/// The incoming side (Twisted's `ProxyServer`).
struct ProxyServer {
    link: Rc<Link>,
    host: String,
    port: u16,
    options: ConnectOptions,
}

impl Protocol for ProxyServer {
    fn connection_made(&mut self, transport: &Transport) {
        // Nothing is read from the client until there is somewhere to send it.
        transport.pause_producing();
        *self.link.server.borrow_mut() = Some(transport.clone());
        let client_factory = Rc::new(ProxyClientFactory {
            link: self.link.clone(),
        });
        let connector = self.link.reactor.connect_tcp_with(
            &self.host,
            self.port,
            client_factory,
            self.options.clone(),
        );
        *self.link.connector.borrow_mut() = Some(connector);
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        if let Some(client) = self.link.client() {
            client.write(data);
        }
    }

    fn read_connection_lost(&mut self, _transport: &Transport) {
        if let Some(client) = self.link.client() {
            client.lose_write_connection();
        }
    }

    fn connection_lost(&mut self, _reason: &CloseReason) {
        self.link.server.borrow_mut().take();
        self.link.cancel_drain_timer();
        match self.link.client() {
            Some(client) => self.link.close_survivor(&client, false),
            None => {
                if let Some(connector) = self.link.connector.borrow_mut().take() {
                    connector.disconnect();
                }
            }
        }
    }
}

struct ProxyClientFactory {
    link: Rc<Link>,
}

impl Factory for ProxyClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(ProxyClient {
            link: self.link.clone(),
        }))
    }

    fn noisy(&self) -> bool {
        false
    }
}

impl ClientFactory for ProxyClientFactory {
    fn client_connection_failed(&self, connector: &Connector, reason: &Error) {
        tracing::info!(
            "port forward to {} failed: {reason}; closing the incoming connection",
            connector.destination()
        );
        self.link.connector.borrow_mut().take();
        if let Some(server) = self.link.server() {
            server.lose_connection();
        }
    }
}

/// The outgoing side (Twisted's `ProxyClient`).
struct ProxyClient {
    link: Rc<Link>,
}

impl Protocol for ProxyClient {
    fn connection_made(&mut self, transport: &Transport) {
        let Some(server) = self.link.server() else {
            // The incoming side went away while we connected.
            transport.lose_connection();
            return;
        };
        *self.link.client.borrow_mut() = Some(transport.clone());
        // Each side throttles the other: a full outgoing buffer pauses reading there.
        let wired = transport
            .register_producer(server.clone(), true)
            .and_then(|()| server.register_producer(transport.clone(), true));
        if let Err(err) = wired {
            tracing::warn!("port forward: cannot wire flow control: {err}");
        }
        server.resume_producing();
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        if let Some(server) = self.link.server() {
            server.write(data);
        }
    }

    fn read_connection_lost(&mut self, _transport: &Transport) {
        if let Some(server) = self.link.server() {
            server.lose_write_connection();
        }
    }

    fn connection_lost(&mut self, _reason: &CloseReason) {
        self.link.client.borrow_mut().take();
        self.link.connector.borrow_mut().take();
        self.link.cancel_drain_timer();
        if let Some(server) = self.link.server() {
            self.link.close_survivor(&server, true);
        }
    }
}
