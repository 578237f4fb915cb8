//! TLS endpoints: `ssl:` servers, and `ssl:`/`tls:` clients (TLS over any client endpoint,
//! Twisted's `wrapClientTLS`).

use std::cell::RefCell;
use std::rc::Rc;

use crate::address::Address;
use crate::defer::{Deferred, Failure};
use crate::error::Error;
use crate::port::ListeningPort;
use crate::protocol::{Factory, Protocol};
use crate::reactor::Reactor;
use crate::tcp::ListenOptions;
use crate::tls::{ClientTlsConfig, ServerTlsConfig, TlsProtocol};
use crate::transport::Transport;

use super::client::announce;
use super::server::done;
use super::{ClientEndpoint, ServerEndpoint};

/// A TLS listening endpoint (`ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem]...`).
#[derive(Clone)]
pub struct SslServerEndpoint {
    reactor: Reactor,
    port: u16,
    options: ListenOptions,
    config: ServerTlsConfig,
}

impl SslServerEndpoint {
    /// Listens on `port` with `options`, serving TLS as `config` says.
    pub fn new(
        reactor: &Reactor,
        port: u16,
        options: ListenOptions,
        config: ServerTlsConfig,
    ) -> SslServerEndpoint {
        SslServerEndpoint {
            reactor: reactor.clone(),
            port,
            options,
            config,
        }
    }
}

impl ServerEndpoint for SslServerEndpoint {
    fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<ListeningPort> {
        done(self.reactor.listen_ssl_with(
            self.port,
            factory,
            self.config.clone(),
            self.options.clone(),
        ))
    }

    fn describe(&self) -> String {
        format!("ssl:{}:interface={}", self.port, self.options.interface)
    }
}

/// TLS over another client endpoint (Twisted's `wrapClientTLS`): the Deferred fires with
/// the TLS transport the application's protocol writes to.
pub struct TlsClientEndpoint {
    inner: Box<dyn ClientEndpoint>,
    config: ClientTlsConfig,
}

/// Puts TLS, as `config` says, over connections made through `endpoint`.
pub fn wrap_client_tls(
    config: ClientTlsConfig,
    endpoint: Box<dyn ClientEndpoint>,
) -> TlsClientEndpoint {
    TlsClientEndpoint {
        inner: endpoint,
        config,
    }
}

impl ClientEndpoint for TlsClientEndpoint {
    fn connect(&self, factory: Rc<dyn Factory>) -> Deferred<Transport> {
        let lower: Rc<RefCell<Option<Deferred<Transport>>>> = Rc::default();
        let l = lower.clone();
        let d = Deferred::with_canceller(move |_| {
            if let Some(lower) = l.borrow_mut().take() {
                lower.cancel();
            }
        });
        let over = Rc::new(TlsOver {
            factory,
            config: self.config.clone(),
            announce: d.clone(),
        });
        let connected = self.inner.connect(over);
        // The lower connection's own result only matters if it failed.
        let fail = d.clone();
        connected.consume(move |result| {
            if let Err(failure) = result
                && !fail.called()
            {
                let _ = fail.errback(failure);
            }
        });
        if !d.called() {
            *lower.borrow_mut() = Some(connected);
        }
        d
    }

    fn describe(&self) -> String {
        format!("tls:{}", self.inner.describe())
    }
}

/// Builds the application's protocol under a TLS client layer.
struct TlsOver {
    factory: Rc<dyn Factory>,
    config: ClientTlsConfig,
    announce: Deferred<Transport>,
}

impl Factory for TlsOver {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let Some(app) = self.factory.build_protocol(addr) else {
            let _ = self.announce.errback(Failure::new(Error::FactoryRefused));
            return None;
        };
        let announced = Box::new(announce(app, self.announce.clone()));
        match TlsProtocol::client(&self.config, announced) {
            Ok(tls) => Some(Box::new(tls)),
            Err(err) => {
                let _ = self.announce.errback(Failure::new(err));
                None
            }
        }
    }

    fn noisy(&self) -> bool {
        false
    }
}
