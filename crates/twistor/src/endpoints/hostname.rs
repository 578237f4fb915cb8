//! `HostnameEndpoint`: look a name up, then race connection attempts the RFC 8305 ("Happy
//! Eyeballs v2") way.
//!
//! Twisted's `HostnameEndpoint` tries addresses in the resolver's order. This one
//! interleaves the families (the resolver's first family first, then alternating), starts
//! the next attempt when the previous one fails or after a stagger delay (250 ms by
//! default), keeps the first connection that succeeds, and cancels the rest. If all fail,
//! the Deferred fails with the last error.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::address::Address;
use crate::connector::Connector;
use crate::defer::{Deferred, Failure};
use crate::error::Error;
use crate::protocol::{ClientFactory, Factory, Protocol};
use crate::reactor::{DelayedCall, Reactor, ReactorTime};
use crate::tcp::{ConnectOptions, DEFAULT_CONNECT_TIMEOUT, ReactorTcp};
use crate::transport::Transport;

use super::ClientEndpoint;
use super::client::announce;

/// RFC 8305's recommended "Connection Attempt Delay".
pub const DEFAULT_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Turns host names into addresses (Twisted's `IHostnameResolver`).
pub trait Resolver {
    /// The addresses of `host` with `port`, in preference order.
    fn resolve(&self, host: &str, port: u16) -> Deferred<Vec<SocketAddr>>;
}

/// The system's resolver (`getaddrinfo` on a thread, so the loop never blocks).
#[derive(Debug, Clone)]
pub struct SystemResolver {
    reactor: Reactor,
}

impl SystemResolver {
    /// A resolver whose answers come back on `reactor`.
    pub fn new(reactor: &Reactor) -> SystemResolver {
        SystemResolver {
            reactor: reactor.clone(),
        }
    }
}

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Deferred<Vec<SocketAddr>> {
        let d = Deferred::new();
        let fire = d.clone();
        crate::resolve::resolve_on_thread(&self.reactor, host, port, move |result| {
            if !fire.called() {
                let _ = fire.resolve(result.map_err(Failure::new));
            }
        });
        d
    }
}

/// A TCP client endpoint for a host name (or address), racing its addresses.
#[derive(Clone)]
pub struct HostnameEndpoint {
    tcp: Rc<dyn ReactorTcp>,
    clock: Rc<dyn ReactorTime>,
    resolver: Rc<dyn Resolver>,
    host: String,
    port: u16,
    attempt_delay: Duration,
    timeout: Option<Duration>,
    bind_address: Option<SocketAddr>,
}

impl HostnameEndpoint {
    /// Connects to `host:port` through `reactor`, with the reactor's installed resolver
    /// ([`Reactor::install_resolver`]) or else the system's.
    pub fn new(reactor: &Reactor, host: &str, port: u16) -> HostnameEndpoint {
        let resolver = reactor
            .installed_resolver()
            .unwrap_or_else(|| Rc::new(SystemResolver::new(reactor)));
        HostnameEndpoint::with_parts(
            Rc::new(reactor.clone()),
            Rc::new(reactor.clone()),
            resolver,
            host,
            port,
        )
    }

    /// Connects with the given TCP reactor, clock and resolver (tests pass the test kit's
    /// `MemoryReactor` and a fake resolver).
    pub fn with_parts(
        tcp: Rc<dyn ReactorTcp>,
        clock: impl ReactorTime + 'static,
        resolver: Rc<dyn Resolver>,
        host: &str,
        port: u16,
    ) -> HostnameEndpoint {
        HostnameEndpoint {
            tcp,
            clock: Rc::new(clock),
            resolver,
            host: host.to_string(),
            port,
            attempt_delay: DEFAULT_ATTEMPT_DELAY,
            timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            bind_address: None,
        }
    }

    /// How long to wait for an attempt before starting the next one in parallel.
    pub fn attempt_delay(mut self, delay: Duration) -> Self {
        self.attempt_delay = delay;
        self
    }

    /// Each attempt gives up after `timeout` (`None`: when the OS does).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Binds the local end of each attempt to `addr`.
    pub fn bind_address(mut self, addr: SocketAddr) -> Self {
        self.bind_address = Some(addr);
        self
    }
}

impl ClientEndpoint for HostnameEndpoint {
    fn connect(&self, factory: Rc<dyn Factory>) -> Deferred<Transport> {
        let race = Rc::new(Race {
            endpoint: self.clone(),
            factory,
            deferred: Deferred::new(),
            remaining: RefCell::new(VecDeque::new()),
            pending: RefCell::new(Vec::new()),
            timer: RefCell::new(None),
            lookup: RefCell::new(None),
            done: Cell::new(false),
            last_error: RefCell::new(None),
            next_id: Cell::new(0),
        });
        let r = race.clone();
        let d = Deferred::with_canceller(move |_| r.cancel());
        // The race reports on its own Deferred, chained into the cancellable one.
        race.deferred.chain_deferred(&d);
        let lookup = self.resolver.resolve(&self.host, self.port);
        *race.lookup.borrow_mut() = Some(lookup.clone());
        let r = race.clone();
        lookup.consume(move |result| match result {
            Ok(addrs) if addrs.is_empty() => r.finish(Err(Failure::new(Error::DnsLookup {
                host: r.endpoint.host.clone(),
                reason: "no addresses".into(),
            }))),
            Ok(addrs) => {
                *r.remaining.borrow_mut() = interleave(addrs);
                r.start_next();
            }
            Err(failure) => r.finish(Err(failure)),
        });
        d
    }

    fn describe(&self) -> String {
        format!("tcp:{}:{}", self.host, self.port)
    }
}

/// RFC 8305 §4: the first address's family first, then alternating between families,
/// keeping the resolver's order within each.
fn interleave(addrs: Vec<SocketAddr>) -> VecDeque<SocketAddr> {
    let first_v6 = addrs[0].is_ipv6();
    let (mut preferred, mut other): (VecDeque<_>, VecDeque<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = VecDeque::new();
    loop {
        match (preferred.pop_front(), other.pop_front()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// One `connect` call's attempts.
struct Race {
    endpoint: HostnameEndpoint,
    factory: Rc<dyn Factory>,
    deferred: Deferred<Transport>,
    remaining: RefCell<VecDeque<SocketAddr>>,
    pending: RefCell<Vec<(u64, Connector)>>,
    timer: RefCell<Option<DelayedCall>>,
    lookup: RefCell<Option<Deferred<Vec<SocketAddr>>>>,
    done: Cell<bool>,
    last_error: RefCell<Option<Failure>>,
    next_id: Cell<u64>,
}

impl Race {
    fn start_next(self: &Rc<Self>) {
        if self.done.get() {
            return;
        }
        self.cancel_timer();
        let Some(addr) = self.remaining.borrow_mut().pop_front() else {
            if self.pending.borrow().is_empty() {
                let failure = self.last_error.borrow_mut().take().unwrap_or_else(|| {
                    Failure::new(Error::ConnectFailed {
                        addr: format!("{}:{}", self.endpoint.host, self.endpoint.port),
                        source: std::sync::Arc::new(std::io::Error::other("no attempt made")),
                    })
                });
                self.finish(Err(failure));
            }
            return;
        };
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let mut options = ConnectOptions::default().timeout(self.endpoint.timeout);
        if let Some(bind) = self.endpoint.bind_address {
            options = options.bind_address(bind);
        }
        let attempt = Rc::new(Attempt {
            race: self.clone(),
            id,
        });
        let connector = self.endpoint.tcp.connect_tcp_with(
            &addr.ip().to_string(),
            addr.port(),
            attempt,
            options,
        );
        if self.done.get() {
            let _ = connector.stop_connecting();
            return;
        }
        self.pending.borrow_mut().push((id, connector));
        if !self.remaining.borrow().is_empty() {
            let me = Rc::downgrade(self);
            let call = self.endpoint.clock.call_later_boxed(
                self.endpoint.attempt_delay,
                Box::new(move || {
                    if let Some(race) = me.upgrade() {
                        race.start_next();
                    }
                }),
            );
            *self.timer.borrow_mut() = Some(call);
        }
    }

    /// Attempt `id` connected: it wins; the others are cancelled.
    fn won(&self, id: u64) {
        self.done.set(true);
        self.cancel_timer();
        let others: Vec<Connector> = self
            .pending
            .borrow_mut()
            .drain(..)
            .filter(|(i, _)| *i != id)
            .map(|(_, c)| c)
            .collect();
        for connector in others {
            let _ = connector.stop_connecting();
        }
    }

    fn failed(self: &Rc<Self>, id: u64, reason: &Error) {
        self.pending.borrow_mut().retain(|(i, _)| *i != id);
        *self.last_error.borrow_mut() = Some(Failure::new(reason.clone()));
        // Do not wait for the stagger delay: try the next address now.
        self.start_next();
    }

    fn finish(&self, result: Result<Transport, Failure>) {
        if self.done.replace(true) && result.is_err() {
            return;
        }
        self.cancel_timer();
        if !self.deferred.called() {
            let _ = self.deferred.resolve(result);
        }
    }

    fn cancel(&self) {
        self.done.set(true);
        self.cancel_timer();
        if let Some(lookup) = self.lookup.borrow_mut().take() {
            lookup.cancel();
        }
        let pending: Vec<Connector> = self
            .pending
            .borrow_mut()
            .drain(..)
            .map(|(_, c)| c)
            .collect();
        for connector in pending {
            let _ = connector.stop_connecting();
        }
    }

    fn cancel_timer(&self) {
        if let Some(call) = self.timer.borrow_mut().take() {
            let _ = call.cancel();
        }
    }
}

/// The client factory of one attempt.
struct Attempt {
    race: Rc<Race>,
    id: u64,
}

impl Factory for Attempt {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let race = &self.race;
        if race.done.get() {
            // Another attempt won (or the race was cancelled): drop this connection.
            return None;
        }
        race.won(self.id);
        match race.factory.build_protocol(addr) {
            Some(inner) => Some(Box::new(announce(inner, race.deferred.clone()))),
            None => {
                race.finish(Err(Failure::new(Error::FactoryRefused)));
                None
            }
        }
    }

    fn noisy(&self) -> bool {
        false
    }
}

impl ClientFactory for Attempt {
    fn client_connection_failed(&self, _connector: &Connector, reason: &Error) {
        if !self.race.done.get() {
            self.race.failed(self.id, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_families_starting_with_the_first() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let got: Vec<_> = interleave(vec![
            a("[::1]:1"),
            a("[::2]:1"),
            a("[::3]:1"),
            a("10.0.0.1:1"),
        ])
        .into_iter()
        .collect();
        assert_eq!(
            got,
            [a("[::1]:1"), a("10.0.0.1:1"), a("[::2]:1"), a("[::3]:1")]
        );
        let got: Vec<_> = interleave(vec![a("10.0.0.1:1"), a("[::1]:1"), a("10.0.0.2:1")])
            .into_iter()
            .collect();
        assert_eq!(got, [a("10.0.0.1:1"), a("[::1]:1"), a("10.0.0.2:1")]);
    }
}
