//! Port forwarding: a TCP proxy (Twisted's `twisted.protocols.portforward`).
//!
//! [`ProxyFactory`] serves each incoming connection by connecting to a fixed destination
//! and copying bytes both ways. It reads nothing from the incoming side until the outgoing
//! connection is up, then makes each transport the other's producer: when one side's
//! peer reads slowly and its outgoing buffer fills, reading from the other side pauses, so
//! the proxy's memory stays bounded whatever the speeds. A half-close on one side is passed
//! on to the other.
//!
//! When one side is lost, the other sends what is queued for it, then its sending side is
//! shut and it is closed; it is read from meanwhile (what it sends is thrown away), so a
//! peer blocked writing to us reads again. If what is queued makes no progress for
//! [`DEFAULT_DRAIN_TIMEOUT`] (or the time set with [`ProxyFactory::set_drain_timeout`]),
//! the survivor is aborted: a peer that neither reads nor stops writing — a client that
//! wrote without reading and died, leaving the destination blocked writing to us while we
//! wait to write to it — would otherwise hold both connections and their queued bytes for
//! ever.
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
    Address, ClientFactory, CloseReason, Connector, DelayedCall, Error, Factory, Producer,
    Protocol, ReactorTime, Transport,
};

/// How long the surviving side of a forwarded connection may go without taking any of
/// what is queued for it, once the other side is gone, before it is aborted.
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

    /// Sets how long the surviving side of a connection may go without taking any of what
    /// is queued for it once the other side is gone (default [`DEFAULT_DRAIN_TIMEOUT`]);
    /// after that it is aborted. Applies to connections made from then on.
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

    /// One side is gone: `survivor` sends what is queued for it, then its sending side is
    /// shut and it is closed. It is read from meanwhile (what it sends has nowhere to go
    /// and is dropped), so a peer blocked writing to us reads again. If the queue makes no
    /// progress for the drain timeout, the survivor is aborted.
    fn close_survivor(self: &Rc<Self>, survivor: &Transport, survivor_is_server: bool) {
        survivor.unregister_producer();
        survivor.resume_producing();
        // Not `lose_connection`: a closing stream stops reading, and a peer that only reads
        // again once it may write would never take the rest.
        survivor.lose_write_connection();
        self.arm_drain_timer(survivor_is_server, survivor.buffered());
    }

    /// Checks on the survivor after the drain timeout: still draining (fewer bytes queued
    /// than `queued`) gives it another period; no progress aborts it.
    fn arm_drain_timer(self: &Rc<Self>, survivor_is_server: bool, queued: usize) {
        let link = Rc::downgrade(self);
        let timer = self.reactor.call_later_boxed(
            self.drain_timeout,
            Box::new(move || {
                let Some(link) = link.upgrade() else {
                    return;
                };
                link.drain_timer.borrow_mut().take();
                let still_open = if survivor_is_server {
                    link.server()
                } else {
                    link.client()
                };
                let Some(transport) = still_open else {
                    return;
                };
                let now = transport.buffered();
                if now > 0 && now < queued {
                    link.arm_drain_timer(survivor_is_server, now);
                    return;
                }
                tracing::debug!(
                    "port forward: {} took none of its last {now} bytes in time; aborting",
                    transport.peer(),
                );
                transport.abort_connection();
            }),
        );
        *self.drain_timer.borrow_mut() = Some(timer);
    }

    /// Whether the other side of the connection is gone (the one calling is the survivor).
    fn other_gone(&self, caller_is_server: bool) -> bool {
        if caller_is_server {
            self.client.borrow().is_none() && self.connector.borrow().is_none()
        } else {
            self.server.borrow().is_none()
        }
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

    fn read_connection_lost(&mut self, transport: &Transport) {
        if let Some(client) = self.link.client() {
            client.lose_write_connection();
        } else if self.link.other_gone(true) {
            transport.lose_connection();
        }
    }

    fn write_connection_lost(&mut self, transport: &Transport) {
        // Draining after the destination went: all sent, so close (the kernel still
        // delivers what it holds).
        if self.link.other_gone(true) {
            transport.lose_connection();
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

/// One side's reading, as the producer of the other side's output: a full buffer on one
/// side pauses reading on the other. Unlike a transport registered as a producer, it does
/// not close the reading side when the writing side goes (`stop_producing`): the link
/// drains the survivor instead.
struct PeerReading(Transport);

impl Producer for PeerReading {
    fn pause_producing(&self) {
        self.0.pause_producing();
    }

    fn resume_producing(&self) {
        self.0.resume_producing();
    }

    fn stop_producing(&self) {}
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
            .register_producer(PeerReading(server.clone()), true)
            .and_then(|()| server.register_producer(PeerReading(transport.clone()), true));
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

    fn read_connection_lost(&mut self, transport: &Transport) {
        match self.link.server() {
            Some(server) => server.lose_write_connection(),
            None => transport.lose_connection(),
        }
    }

    fn write_connection_lost(&mut self, transport: &Transport) {
        // Draining after the client went: all sent, so close (the kernel still delivers
        // what it holds).
        if self.link.other_gone(false) {
            transport.lose_connection();
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
