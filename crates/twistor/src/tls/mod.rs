//! TLS over any transport, on rustls (with the ring crypto provider).
//!
//! TLS is a layer, as in Twisted's `TLSMemoryBIOProtocol`: a [`TlsProtocol`] runs on a lower
//! transport (TCP, Unix, an in-memory pair, even another TLS connection) and presents the
//! protocol it wraps with a [`TlsTransport`], which encrypts what is written to it. So:
//!
//! - [`Reactor::listen_ssl`] and [`Reactor::connect_ssl`] are `listen_tcp` and
//!   `connect_tcp` with the factory wrapped in a [`TlsServerFactory`] or
//!   [`TlsClientFactory`];
//! - [`start_tls`] upgrades a live connection (SMTP's, IMAP's and FTP's STARTTLS), and works
//!   on a TLS transport too (TLS over TLS).
//!
//! Configuration is in [`ServerTlsConfig`] (certificates, chosen per SNI name; ALPN; client
//! certificates) and [`ClientTlsConfig`] (the expected server name, trust roots, client
//! certificate, ALPN). Certificates are always verified, against the system's roots unless
//! others are given, host name included, unless a configuration says
//! [`dangerous_accept_any_certificate`](ClientTlsConfig::dangerous_accept_any_certificate).
//!
//! A protocol learns that the handshake completed through
//! [`Protocol::handshake_completed`], and reads the negotiated details (ALPN protocol, peer
//! certificates, SNI name, version) by downcasting its transport to [`TlsTransport`]. A TLS
//! failure (a certificate refused, a bad record, an alert) ends the connection with
//! [`CloseReason::Lost`] carrying [`Error::Tls`], given to `connection_lost` and, for
//! clients, to the factory's `client_connection_lost`.
//!
//! ```no_run
//! use twistor::protocol::{factory, Protocol};
//! use twistor::tls::{ServerTlsConfig, TlsTransport};
//! use twistor::{Reactor, Transport};
//!
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     fn handshake_completed(&mut self, transport: &Transport) {
//!         let tls = transport.downcast_ref::<TlsTransport>().unwrap();
//!         println!("TLS up with {}: ALPN {:?}", transport.peer(), tls.negotiated_protocol());
//!     }
//!     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
//!         transport.write(data);
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! let config = ServerTlsConfig::from_pem_files("key.pem", Some("cert.pem"), None)?;
//! reactor.listen_ssl(8443, factory(|_addr| Echo), config)?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod layer;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use config::{
    ClientTlsConfig, DEFAULT_HANDSHAKE_TIMEOUT, Identity, ServerTlsConfig, TlsVersion, TrustRoots,
};
pub use error::{AlertDescription, CertificateError, TlsError};
pub use layer::{TlsProtocol, TlsTransport};
/// The rustls version twistor is built with, for its types (configurations, certificates).
pub use rustls;
pub use rustls::pki_types::CertificateDer;

use crate::address::Address;
use crate::connector::Connector;
use crate::error::Error;
use crate::port::ListeningPort;
use crate::protocol::{self, ClientFactory, CloseReason, Factory, Protocol};
use crate::reactor::Reactor;
use crate::tcp::{ConnectOptions, ListenOptions};
use crate::transport::Transport;

/// Which side of TLS to start, and how: for [`start_tls`].
#[derive(Clone, Debug)]
pub enum TlsConfig {
    /// Be the TLS client.
    Client(ClientTlsConfig),
    /// Be the TLS server.
    Server(ServerTlsConfig),
}

impl From<ClientTlsConfig> for TlsConfig {
    fn from(config: ClientTlsConfig) -> TlsConfig {
        TlsConfig::Client(config)
    }
}

impl From<&ClientTlsConfig> for TlsConfig {
    fn from(config: &ClientTlsConfig) -> TlsConfig {
        TlsConfig::Client(config.clone())
    }
}

impl From<ServerTlsConfig> for TlsConfig {
    fn from(config: ServerTlsConfig) -> TlsConfig {
        TlsConfig::Server(config)
    }
}

impl From<&ServerTlsConfig> for TlsConfig {
    fn from(config: &ServerTlsConfig) -> TlsConfig {
        TlsConfig::Server(config.clone())
    }
}

/// Starts TLS on a live connection (Twisted's `transport.startTLS`), as client or server
/// according to `config`, and returns the TLS transport to write to from now on.
///
/// Call it from the connection's own protocol. What was written to `transport` before goes
/// out in the clear, first; from the moment the current callback returns, the protocol
/// receives decrypted data and is given the TLS transport in its callbacks (it gets no new
/// `make_connection`; `handshake_completed` tells it when the handshake is done). Write to
/// the returned transport, not to a clone of the old one kept from before: that one still
/// writes in the clear. Works on any transport that supports
/// [`wrap_protocol`](Transport::wrap_protocol): TCP, Unix, and TLS itself (TLS over TLS).
///
/// ```no_run
/// # use twistor::{Protocol, Transport};
/// # use twistor::tls::{start_tls, ServerTlsConfig};
/// struct Smtpish {
///     tls: ServerTlsConfig,
/// }
///
/// impl Protocol for Smtpish {
///     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
///         if data == b"STARTTLS\r\n" {
///             transport.write(b"220 Ready to start TLS\r\n");
///             start_tls(transport, &self.tls).expect("TLS started");
///         }
///     }
/// }
/// ```
pub fn start_tls(transport: &Transport, config: impl Into<TlsConfig>) -> Result<Transport, Error> {
    let config = config.into();
    let conn = new_connection(&config)?;
    let (requested_name, handshake_timeout) = match &config {
        TlsConfig::Client(client) => (Some(client.server_name()), client.handshake_timeout()),
        TlsConfig::Server(server) => (None, server.handshake_timeout()),
    };
    let tls = TlsTransport::new(conn, None, requested_name, None, handshake_timeout);
    tls.attach(transport);
    let layer = tls.clone();
    transport.wrap_protocol(move |app| {
        layer.set_app(app);
        Box::new(TlsProtocol::from_transport(layer))
    })?;
    // The client's hello follows whatever was written in the clear.
    tls.flush_tls();
    Ok(Transport::new(tls))
}

/// A new rustls connection for `config`.
pub(crate) fn new_connection(config: &TlsConfig) -> Result<rustls::Connection, Error> {
    match config {
        TlsConfig::Client(client) => {
            let conn =
                rustls::ClientConnection::new(client.rustls_config()?, client.rustls_server_name())
                    .map_err(|e| Error::TlsConfig(format!("cannot start a TLS client: {e}")))?;
            Ok(rustls::Connection::Client(conn))
        }
        TlsConfig::Server(server) => {
            let conn = rustls::ServerConnection::new(server.rustls_config()?)
                .map_err(|e| Error::TlsConfig(format!("cannot start a TLS server: {e}")))?;
            Ok(rustls::Connection::Server(conn))
        }
    }
}

/// A factory that puts TLS (server side) under each protocol another factory builds
/// (Twisted's `TLSMemoryBIOFactory` for servers).
pub struct TlsServerFactory {
    inner: Rc<dyn Factory>,
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: Option<Duration>,
}

impl TlsServerFactory {
    /// Wraps `inner`, serving TLS as `config` says. Fails if the configuration cannot be
    /// built.
    pub fn new(config: &ServerTlsConfig, inner: Rc<dyn Factory>) -> Result<Rc<Self>, Error> {
        Ok(Rc::new(TlsServerFactory {
            inner,
            config: config.rustls_config()?,
            handshake_timeout: config.handshake_timeout(),
        }))
    }
}

impl Factory for TlsServerFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let app = self.inner.build_protocol(addr)?;
        match rustls::ServerConnection::new(self.config.clone()) {
            Ok(conn) => Some(Box::new(TlsProtocol::new(
                rustls::Connection::Server(conn),
                Some(app),
                None,
                None,
                self.handshake_timeout,
            ))),
            Err(err) => {
                tracing::error!("cannot start TLS for {addr}: {err}");
                None
            }
        }
    }

    fn start_factory(&self) {
        protocol::do_start(&self.inner);
    }

    fn stop_factory(&self) {
        protocol::do_stop(&self.inner);
    }

    fn log_prefix(&self) -> &str {
        self.inner.log_prefix()
    }

    // The wrapped factory's own start and stop are logged (if it is noisy).
    fn noisy(&self) -> bool {
        false
    }
}

/// A client factory that puts TLS (client side) under each protocol another factory builds,
/// and reports TLS failures to its `client_connection_lost`.
pub struct TlsClientFactory {
    inner: Rc<dyn ClientFactory>,
    config: Arc<rustls::ClientConfig>,
    server_name: rustls::pki_types::ServerName<'static>,
    handshake_timeout: Option<Duration>,
    /// The close reason of the connection that is ending, as the TLS layer saw it.
    last_close: Rc<RefCell<Option<CloseReason>>>,
}

impl TlsClientFactory {
    /// Wraps `inner`, connecting with TLS as `config` says. Fails if the configuration
    /// cannot be built (the system's roots cannot be loaded, say).
    pub fn new(config: &ClientTlsConfig, inner: Rc<dyn ClientFactory>) -> Result<Rc<Self>, Error> {
        Ok(Rc::new(TlsClientFactory {
            inner,
            config: config.rustls_config()?,
            server_name: config.rustls_server_name(),
            handshake_timeout: config.handshake_timeout(),
            last_close: Rc::new(RefCell::new(None)),
        }))
    }
}

impl Factory for TlsClientFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let app = self.inner.build_protocol(addr)?;
        match rustls::ClientConnection::new(self.config.clone(), self.server_name.clone()) {
            Ok(conn) => Some(Box::new(TlsProtocol::new(
                rustls::Connection::Client(conn),
                Some(app),
                Some(self.server_name.to_str().into_owned()),
                Some(self.last_close.clone()),
                self.handshake_timeout,
            ))),
            Err(err) => {
                tracing::error!("cannot start TLS to {addr}: {err}");
                None
            }
        }
    }

    fn start_factory(&self) {
        protocol::do_start(&self.inner);
    }

    fn stop_factory(&self) {
        protocol::do_stop(&self.inner);
    }

    fn log_prefix(&self) -> &str {
        self.inner.log_prefix()
    }

    fn noisy(&self) -> bool {
        false
    }
}

impl ClientFactory for TlsClientFactory {
    fn started_connecting(&self, connector: &Connector) {
        self.inner.started_connecting(connector)
    }

    fn client_connection_failed(&self, connector: &Connector, reason: &Error) {
        self.inner.client_connection_failed(connector, reason)
    }

    fn client_connection_lost(&self, connector: &Connector, reason: &CloseReason) {
        // The TCP connection may have closed cleanly after a TLS failure: report the failure.
        let tls_reason = self.last_close.borrow_mut().take();
        let reason = tls_reason.as_ref().unwrap_or(reason);
        self.inner.client_connection_lost(connector, reason)
    }
}

impl Reactor {
    /// Listens for TLS connections on `port` (0 lets the OS choose) on all IPv4 interfaces
    /// (Twisted's `listenSSL`): TCP, with TLS under each protocol `factory` builds.
    pub fn listen_ssl(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        config: ServerTlsConfig,
    ) -> Result<ListeningPort, Error> {
        self.listen_ssl_with(port, factory, config, ListenOptions::default())
    }

    /// Listens for TLS connections with the given interface, backlog and options.
    pub fn listen_ssl_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        config: ServerTlsConfig,
        options: ListenOptions,
    ) -> Result<ListeningPort, Error> {
        let factory = TlsServerFactory::new(&config, factory)?;
        self.listen_tcp_with(port, factory, options)
    }

    /// Connects to `host:port` over TLS (Twisted's `connectSSL`), checking the server's
    /// certificate against `config` (its server name, not `host`, is the name verified and
    /// sent with SNI). Fails at once only if the configuration cannot be built; connection
    /// and TLS failures go to the factory as with `connect_tcp`.
    pub fn connect_ssl(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        config: ClientTlsConfig,
    ) -> Result<Connector, Error> {
        self.connect_ssl_with(host, port, factory, config, ConnectOptions::default())
    }

    /// Connects over TLS with a timeout and bind address.
    pub fn connect_ssl_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        config: ClientTlsConfig,
        options: ConnectOptions,
    ) -> Result<Connector, Error> {
        let factory = TlsClientFactory::new(&config, factory)?;
        Ok(self.connect_tcp_with(host, port, factory, options))
    }
}
