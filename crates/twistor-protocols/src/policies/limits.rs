//! Connection limits, in total and per peer: Twisted's `LimitTotalConnectionsFactory` and
//! `LimitConnectionsByPeer`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;

use twistor::{Address, CloseReason, Protocol};

use super::wrapper::{Admission, Connection, Policy};

/// Builds the protocol that serves connections over a limit.
pub type OverflowBuilder = Box<dyn Fn() -> Box<dyn Protocol>>;

/// A policy that serves at most `limit` connections at once; the others are refused, or
/// served by an overflow protocol (which count too, as in Twisted).
pub struct LimitTotalConnections {
    limit: usize,
    overflow: Option<OverflowBuilder>,
}

impl LimitTotalConnections {
    /// At most `limit` connections; more are closed at once.
    pub fn new(limit: usize) -> LimitTotalConnections {
        LimitTotalConnections {
            limit,
            overflow: None,
        }
    }

    /// Serves connections over the limit with the protocol `overflow` builds.
    pub fn overflow<P: Protocol>(mut self, overflow: impl Fn() -> P + 'static) -> Self {
        self.overflow = Some(Box::new(move || Box::new(overflow())));
        self
    }
}

impl Policy for LimitTotalConnections {
    fn admit(&self, addr: &Address, live: usize) -> Admission {
        if live < self.limit {
            return Admission::Accept;
        }
        over_limit(&self.overflow, addr, "total", self.limit)
    }
}

fn over_limit(
    overflow: &Option<OverflowBuilder>,
    addr: &Address,
    what: &str,
    limit: usize,
) -> Admission {
    match overflow {
        Some(build) => {
            tracing::info!("{addr}: over the {what} limit of {limit}; serving overflow");
            Admission::Overflow(build())
        }
        None => {
            tracing::info!("{addr}: over the {what} limit of {limit}; refusing");
            Admission::Refuse
        }
    }
}

/// A policy that serves at most `max` connections at once from each peer host (the IP
/// address; the whole address for other kinds); more are refused or served by an
/// overflow protocol (which do not count against the peer).
pub struct LimitConnectionsByPeer {
    max: usize,
    overflow: Option<OverflowBuilder>,
    counts: RefCell<HashMap<PeerKey, usize>>,
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum PeerKey {
    Ip(IpAddr),
    Other(Address),
}

fn key(addr: &Address) -> PeerKey {
    match addr.socket_addr() {
        Some(sa) => PeerKey::Ip(sa.ip()),
        None => PeerKey::Other(addr.clone()),
    }
}

impl LimitConnectionsByPeer {
    /// At most `max` connections per peer host (Twisted's default is 5).
    pub fn new(max: usize) -> LimitConnectionsByPeer {
        LimitConnectionsByPeer {
            max,
            overflow: None,
            counts: RefCell::new(HashMap::new()),
        }
    }

    /// Serves connections over the limit with the protocol `overflow` builds.
    pub fn overflow<P: Protocol>(mut self, overflow: impl Fn() -> P + 'static) -> Self {
        self.overflow = Some(Box::new(move || Box::new(overflow())));
        self
    }

    /// How many connections `addr`'s host has open.
    pub fn connections_from(&self, addr: &Address) -> usize {
        self.counts.borrow().get(&key(addr)).copied().unwrap_or(0)
    }
}

impl Policy for LimitConnectionsByPeer {
    fn admit(&self, addr: &Address, _live: usize) -> Admission {
        if self.connections_from(addr) < self.max {
            return Admission::Accept;
        }
        over_limit(&self.overflow, addr, "per-peer", self.max)
    }

    fn connection_made(&self, conn: &Connection) {
        if !conn.is_overflow() {
            *self
                .counts
                .borrow_mut()
                .entry(key(conn.addr()))
                .or_insert(0) += 1;
        }
    }

    fn connection_lost(&self, conn: &Connection, _reason: &CloseReason) {
        if conn.is_overflow() {
            return;
        }
        let mut counts = self.counts.borrow_mut();
        let k = key(conn.addr());
        if let Some(n) = counts.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&k);
            }
        }
    }
}
