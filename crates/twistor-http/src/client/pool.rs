//! The connection pool: keep-alive connections per server, reused; new ones up to a bound;
//! requests beyond it wait in line (where Twisted's Agent would open more, issue #7614).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

use twistor::Reactor;
use twistor::defer::{Deferred, Failure};
use twistor::endpoints::{ClientEndpoint, HostnameEndpoint, connect_protocol};

use twistor::protocol::{ClientFactory, Factory, Protocol};
use twistor::tls::{ClientTlsConfig, TlsClientFactory};
use twistor::{Address, Connector};

use super::AgentOptions;
use super::connection::{ClientProtocol, Conn};
use crate::Error;

/// Which server a connection goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub secure: bool,
    pub host: String,
    pub port: u16,
}

#[derive(Default)]
struct Host {
    idle: Vec<Rc<Conn>>,
    /// Connections open or being opened for this host.
    open: usize,
    waiters: VecDeque<Deferred<Rc<Conn>>>,
}

pub(crate) struct Pool {
    reactor: Reactor,
    options: AgentOptions,
    hosts: RefCell<HashMap<PoolKey, Host>>,
    me: Weak<Pool>,
}

impl Pool {
    pub(crate) fn new(reactor: Reactor, options: AgentOptions) -> Rc<Pool> {
        Rc::new_cyclic(|me| Pool {
            reactor,
            options,
            hosts: RefCell::default(),
            me: me.clone(),
        })
    }

    pub(crate) fn options(&self) -> &AgentOptions {
        &self.options
    }

    /// A connection for `key`: an idle one, a new one, or the next one freed.
    pub(crate) fn acquire(&self, key: &PoolKey) -> Deferred<Rc<Conn>> {
        let mut hosts = self.hosts.borrow_mut();
        let host = hosts.entry(key.clone()).or_default();
        while let Some(conn) = host.idle.pop() {
            if conn.is_usable() {
                return Deferred::succeeded(conn);
            }
            conn.close();
        }
        if host.open < self.options.max_connections_per_host.max(1) {
            host.open += 1;
            drop(hosts);
            return self.connect(key);
        }
        let d = Deferred::new();
        host.waiters.push_back(d.clone());
        d
    }

    /// How many requests wait for a connection to `key`.
    pub(crate) fn waiting(&self, key: &PoolKey) -> usize {
        self.hosts
            .borrow()
            .get(key)
            .map_or(0, |h| h.waiters.iter().filter(|w| !w.called()).count())
    }

    /// Idle connections kept for `key`.
    pub(crate) fn idle(&self, key: &PoolKey) -> usize {
        self.hosts.borrow().get(key).map_or(0, |h| h.idle.len())
    }

    fn connect(&self, key: &PoolKey) -> Deferred<Rc<Conn>> {
        let conn = Conn::new(
            key.clone(),
            self.options.limits.clone(),
            Rc::new(self.reactor.clone()),
            self.options.timeout,
            self.me.clone(),
        );
        let endpoint = HostnameEndpoint::new(&self.reactor, &key.host, key.port)
            .timeout(self.options.connect_timeout);
        let protocol = ClientProtocol { conn: conn.clone() };
        let connected = if key.secure {
            match self.tls_factory(key, protocol) {
                Ok(factory) => endpoint.connect(factory),
                Err(e) => Deferred::failed(Failure::new(e)),
            }
        } else {
            connect_protocol(&endpoint as &dyn ClientEndpoint, protocol)
        };
        let me = self.me.clone();
        let k = key.clone();
        connected.then(move |result| match result {
            Ok(_transport) => Ok(conn),
            Err(failure) => {
                if let Some(pool) = me.upgrade() {
                    pool.opened_failed(&k);
                }
                // Keep the engine's error as it is, so a caller can match it.
                let cause = failure
                    .find::<twistor::Error>()
                    .cloned()
                    .unwrap_or_else(|| twistor::Error::ConnectFailed {
                        addr: format!("{}:{}", k.host, k.port),
                        source: std::sync::Arc::new(std::io::Error::other(failure.to_string())),
                    });
                Err(Failure::new(Error::ConnectFailed(cause)))
            }
        })
    }

    /// A factory that runs `protocol` over TLS to `key`'s host, verifying its certificate
    /// (unless told not to), offering ALPN `http/1.1`.
    fn tls_factory(
        &self,
        key: &PoolKey,
        protocol: ClientProtocol,
    ) -> Result<Rc<dyn Factory>, twistor::Error> {
        let mut config = ClientTlsConfig::new(&key.host)?.with_alpn(["http/1.1"]);
        if let Some(roots) = &self.options.tls_roots {
            config = config.with_roots(roots.clone());
        }
        if self.options.dangerous_accept_any_certificate {
            config = config.dangerous_accept_any_certificate();
        }
        let inner: Rc<dyn ClientFactory> = Rc::new(OneConnection(RefCell::new(Some(protocol))));
        Ok(TlsClientFactory::new(&config, inner)?)
    }

    fn opened_failed(&self, key: &PoolKey) {
        if let Some(host) = self.hosts.borrow_mut().get_mut(key) {
            host.open = host.open.saturating_sub(1);
        }
    }

    /// An exchange finished and the connection can carry another: hand it to the next
    /// waiting request, or keep it idle.
    pub(crate) fn release(&self, conn: Rc<Conn>) {
        loop {
            let waiter = {
                let mut hosts = self.hosts.borrow_mut();
                let Some(host) = hosts.get_mut(&conn.key) else {
                    conn.close();
                    return;
                };
                match host.waiters.pop_front() {
                    Some(w) if w.called() => continue,
                    Some(w) => Some(w),
                    None => {
                        if host.idle.len() < self.options.max_idle_per_host {
                            conn.start_idle_timer(self.options.idle_timeout);
                            host.idle.push(conn.clone());
                        } else {
                            drop(hosts);
                            conn.close();
                        }
                        None
                    }
                }
            };
            if let Some(w) = waiter {
                let _ = w.callback(conn);
            }
            return;
        }
    }

    /// A connection closed: its slot is free, and a waiting request may open a new one.
    pub(crate) fn forget(&self, conn: &Rc<Conn>) {
        let start_for_waiter = {
            let mut hosts = self.hosts.borrow_mut();
            let Some(host) = hosts.get_mut(&conn.key) else {
                return;
            };
            host.idle.retain(|c| !Rc::ptr_eq(c, conn));
            host.open = host.open.saturating_sub(1);
            host.waiters.retain(|w| !w.called());
            if !host.waiters.is_empty() && host.open < self.options.max_connections_per_host {
                host.open += 1;
                true
            } else {
                false
            }
        };
        if !start_for_waiter {
            return;
        }
        let me = self.me.clone();
        let key = conn.key.clone();
        self.connect(&key).consume(move |result| {
            let Some(pool) = me.upgrade() else { return };
            match result {
                Ok(conn) => pool.release(conn),
                Err(failure) => {
                    let waiter = pool
                        .hosts
                        .borrow_mut()
                        .get_mut(&key)
                        .and_then(|h| h.waiters.pop_front());
                    if let Some(w) = waiter {
                        let _ = w.errback(failure);
                    }
                }
            }
        });
    }

    /// Closes every idle connection.
    pub(crate) fn close_idle(&self) {
        let idle: Vec<Rc<Conn>> = self
            .hosts
            .borrow_mut()
            .values_mut()
            .flat_map(|h| h.idle.drain(..))
            .collect();
        for conn in idle {
            conn.close();
        }
    }
}

/// A client factory for the one connection the pool is opening.
struct OneConnection(RefCell<Option<ClientProtocol>>);

impl Factory for OneConnection {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        self.0
            .borrow_mut()
            .take()
            .map(|p| Box::new(p) as Box<dyn Protocol>)
    }

    fn noisy(&self) -> bool {
        false
    }
}

impl ClientFactory for OneConnection {
    fn client_connection_failed(&self, _connector: &Connector, _reason: &twistor::Error) {}
}
