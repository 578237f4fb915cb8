//! Port forwarding: a TCP proxy (Twisted's `twisted.protocols.portforward`).
//!
//! [`ProxyFactory`] serves each incoming connection by connecting to a fixed destination
//! and copying bytes both ways. It reads nothing from the incoming side until the outgoing
//! connection is up, then makes each transport the other's producer: when one side's
//! peer reads slowly and its outgoing buffer fills, reading from the other side pauses, so
//! the proxy's memory stays bounded whatever the speeds. A half-close on one side is passed
//! on to the other.
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

use std::cell::RefCell;
use std::rc::Rc;

use twistor::tcp::{ConnectOptions, ReactorTcp};
use twistor::{
    Address, ClientFactory, CloseReason, Connector, Error, Factory, Protocol, Transport,
};

/// A factory whose connections are forwarded to `host:port` (Twisted's `ProxyFactory`).
pub struct ProxyFactory {
    tcp: Rc<dyn ReactorTcp>,
    host: String,
    port: u16,
    options: ConnectOptions,
}

impl ProxyFactory {
    /// Forwards each connection to `host:port` (a name or address), connecting with
    /// `reactor` (a `Reactor`, or the test kit's `MemoryReactor`).
    pub fn new(reactor: impl ReactorTcp + 'static, host: &str, port: u16) -> Rc<ProxyFactory> {
        ProxyFactory::with_options(reactor, host, port, ConnectOptions::default())
    }

    /// Like [`new`](ProxyFactory::new), with a connect timeout and bind address.
    pub fn with_options(
        reactor: impl ReactorTcp + 'static,
        host: &str,
        port: u16,
        options: ConnectOptions,
    ) -> Rc<ProxyFactory> {
        Rc::new(ProxyFactory {
            tcp: Rc::new(reactor),
            host: host.to_string(),
            port,
            options,
        })
    }

    /// Where connections are forwarded.
    pub fn destination(&self) -> (&str, u16) {
        (&self.host, self.port)
    }
}

impl Factory for ProxyFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(ProxyServer {
            link: Rc::new(Link::default()),
            tcp: self.tcp.clone(),
            host: self.host.clone(),
            port: self.port,
            options: self.options.clone(),
        }))
    }
}

/// The two ends of one forwarded connection.
#[derive(Default)]
struct Link {
    server: RefCell<Option<Transport>>,
    client: RefCell<Option<Transport>>,
    connector: RefCell<Option<Connector>>,
}

impl Link {
    fn server(&self) -> Option<Transport> {
        self.server.borrow().clone()
    }

    fn client(&self) -> Option<Transport> {
        self.client.borrow().clone()
    }
}

/// The incoming side (Twisted's `ProxyServer`).
struct ProxyServer {
    link: Rc<Link>,
    tcp: Rc<dyn ReactorTcp>,
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
        let connector =
            self.tcp
                .connect_tcp_with(&self.host, self.port, client_factory, self.options.clone());
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
        match self.link.client() {
            Some(client) => {
                client.unregister_producer();
                client.lose_connection();
            }
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
        if let Some(server) = self.link.server() {
            server.unregister_producer();
            server.lose_connection();
        }
    }
}
