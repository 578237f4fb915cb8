//! A recursive resolver on the reactor: answers questions by asking the authoritative
//! servers themselves, from the root down (RFC 1034 §5.3.3), as `twist dns --recursive`
//! does.
//!
//! ```no_run
//! use twistor::Reactor;
//! use twistor_dns::recursive::Recursive;
//! use twistor_dns::wire::op::{Message, Query};
//! use twistor_dns::wire::rr::{Name, RecordType};
//!
//! let reactor = Reactor::new()?;
//! let resolver = Recursive::from_root_hints(&reactor).with_cache(10_000);
//! let mut request = Message::query();
//! request.add_query(Query::query(Name::from_ascii("www.example.com.")?, RecordType::A));
//! let response = reactor.run_until(resolver.resolve(&request))??;
//! println!("{:?}", response.answers);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it resolves
//!
//! 1. The answer cache (a [`Cache`]) is looked at first.
//! 2. Else it starts from the closest enclosing zone whose servers it knows (the
//!    [`DelegationCache`] of referrals seen before), else from the root hints.
//! 3. It asks that zone's servers one at a time, non-recursively (RD=0), each through an
//!    [`Exchange`] of its own (fresh id and port, TCP on truncation), and judges every reply
//!    with [`iterate::classify`]: an authoritative answer ends the walk; a referral strictly
//!    down towards the name moves to the child zone; anything else — REFUSED, SERVFAIL, a
//!    non-authoritative answer, a referral up or sideways, silence — makes the server lame
//!    for this question and the next one is asked. Glue is used only when it lies inside
//!    the delegated zone; name servers without usable glue are resolved themselves (a
//!    sub-resolution, at most [`Limits::max_depth`] deep, never of a name already being
//!    resolved further up).
//! 4. CNAMEs are followed across zones, at most [`Limits::max_cnames`] links, a loop being a
//!    failure.
//!
//! Identical questions asked while one is being resolved wait for its answer. A resolution
//! (its sub-resolutions included) sends at most [`Limits::max_queries`]
//! queries and ends by [`Limits::deadline`]: a zone that delegates in circles, or to
//! hundreds of unreachable servers, costs a bounded amount and then fails.
//!
//! Each zone is asked only about the next label of the name (QNAME minimisation, RFC 9156,
//! in its relaxed form; [`Recursive::with_qname_minimisation`] turns it off).
//!
//! A question whose resolution failed fails at once for [`Limits::failure_ttl`] (RFC 9520),
//! so that clients retrying it do not cost a full resolution each.
//!
//! Servers that failed or were lame for a zone are asked after the others for
//! [`FAILED_SERVER_MEMORY`]. When every server of a remembered delegation fails, it is
//! forgotten and its parent asked again (once per lookup): the zone may have moved.
//!
//! Not done: DNSSEC validation, priming the root NS set (the hints are used as they are),
//! measuring servers' round-trip times to choose among them (they are asked in the order
//! the referral lists them).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use twistor::Reactor;
use twistor::defer::{Deferred, Failure};
use twistor::reactor::WeakReactor;

use crate::client::{now, run_exchange};
use crate::error::Error;
use crate::flight::{Flights, Joined};
use crate::proto::cache::{Cache, CacheKey};
use crate::proto::expiring::ExpiringMap;
use crate::proto::iterate::{self, Delegation, DelegationCache, Step};
use crate::proto::query::{DEFAULT_EDNS_PAYLOAD, Exchange, ExchangeConfig};

/// The root servers' addresses, IPv4 then IPv6, from IANA's root hints file
/// <https://www.internic.net/domain/named.root> (last update April 18, 2024; root zone
/// version 2024041801), a..m.root-servers.net in order.
pub const ROOT_HINTS: [IpAddr; 26] = [
    IpAddr::V4(Ipv4Addr::new(198, 41, 0, 4)),
    IpAddr::V4(Ipv4Addr::new(170, 247, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(192, 33, 4, 12)),
    IpAddr::V4(Ipv4Addr::new(199, 7, 91, 13)),
    IpAddr::V4(Ipv4Addr::new(192, 203, 230, 10)),
    IpAddr::V4(Ipv4Addr::new(192, 5, 5, 241)),
    IpAddr::V4(Ipv4Addr::new(192, 112, 36, 4)),
    IpAddr::V4(Ipv4Addr::new(198, 97, 190, 53)),
    IpAddr::V4(Ipv4Addr::new(192, 36, 148, 17)),
    IpAddr::V4(Ipv4Addr::new(192, 58, 128, 30)),
    IpAddr::V4(Ipv4Addr::new(193, 0, 14, 129)),
    IpAddr::V4(Ipv4Addr::new(199, 7, 83, 42)),
    IpAddr::V4(Ipv4Addr::new(202, 12, 27, 33)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x503, 0xba3e, 0, 0, 0, 0x2, 0x30)),
    IpAddr::V6(Ipv6Addr::new(0x2801, 0x1b8, 0x10, 0, 0, 0, 0, 0xb)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2, 0, 0, 0, 0, 0xc)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2d, 0, 0, 0, 0, 0xd)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0xa8, 0, 0, 0, 0, 0xe)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2f, 0, 0, 0, 0, 0xf)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x12, 0, 0, 0, 0, 0xd0d)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x1, 0, 0, 0, 0, 0x53)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x7fe, 0, 0, 0, 0, 0, 0x53)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x503, 0xc27, 0, 0, 0, 0x2, 0x30)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x7fd, 0, 0, 0, 0, 0, 0x1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x9f, 0, 0, 0, 0, 0x42)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdc3, 0, 0, 0, 0, 0, 0x35)),
];

/// How long a server that failed or was lame for a zone is asked only after the others.
pub const FAILED_SERVER_MEMORY: Duration = Duration::from_secs(15 * 60);

/// How many shortened questions one lookup may ask before it asks the whole name (as
/// Unbound's MAX_MINIMISE_COUNT).
const MAX_MINIMISED_QUERIES: usize = 10;

/// How many failed questions are remembered.
const MAX_REMEMBERED_FAILURES: usize = 1024;

/// How many (server, zone) failures are remembered.
const MAX_FAILED_SERVERS: usize = 1024;

/// How many delegations (and name-server addresses) are remembered by default.
pub const DEFAULT_DELEGATIONS: usize = 1024;

/// What one resolution may cost before it gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Queries sent per resolution, sub-resolutions of name servers included (default 30).
    pub max_queries: usize,
    /// How deep name-server sub-resolutions nest (default 5).
    pub max_depth: usize,
    /// CNAME links followed (default 8).
    pub max_cnames: usize,
    /// How long one server is waited for (default 1.5 s).
    pub query_timeout: Duration,
    /// How long a whole resolution may take (default 10 s).
    pub deadline: Duration,
    /// How long a question whose resolution failed fails at once, without asking anyone
    /// (RFC 9520 asks for at least 1 s, at most 5 min; default 5 s; 0 turns it off).
    pub failure_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_queries: 30,
            max_depth: 5,
            max_cnames: 8,
            query_timeout: Duration::from_millis(1500),
            deadline: Duration::from_secs(10),
            failure_ttl: Duration::from_secs(5),
        }
    }
}

/// A recursive resolver on a reactor. Cloning it is cheap (the clones share the caches and
/// the query counter); it holds the reactor weakly, so the reactor may own it.
#[derive(Clone)]
pub struct Recursive {
    inner: Rc<Inner>,
}

struct Inner {
    reactor: WeakReactor,
    hints: Vec<SocketAddr>,
    /// Every server is asked on this port instead of 53 (and the hints' own).
    port: Cell<Option<u16>>,
    minimise: Cell<bool>,
    limits: RefCell<Limits>,
    answers: RefCell<Option<Cache>>,
    delegations: RefCell<DelegationCache>,
    queries_sent: Cell<u64>,
    /// Questions whose resolution failed lately, until when they fail at once.
    failures: RefCell<ExpiringMap<CacheKey, Failure>>,
    /// Questions being resolved and who waits for their answers.
    in_flight: Flights<CacheKey, Message>,
    /// (server, zone) → until when it is tried last.
    failed: RefCell<ExpiringMap<(IpAddr, Name), ()>>,
}

/// One resolution's allowance, shared by its sub-resolutions.
struct Budget {
    queries_left: Cell<usize>,
    deadline: Duration,
    /// Name servers whose addresses are being resolved, outermost first.
    resolving: RefCell<Vec<Name>>,
    /// A limit was reached: everything stops.
    spent: Cell<bool>,
}

type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, Failure>>>>;

impl Recursive {
    /// A resolver starting from the root servers at `hints` (each asked on its own port,
    /// unless [`with_port`](Recursive::with_port) says otherwise).
    pub fn new(reactor: &Reactor, hints: Vec<SocketAddr>) -> Recursive {
        Recursive {
            inner: Rc::new(Inner {
                reactor: reactor.downgrade(),
                hints,
                port: Cell::new(None),
                minimise: Cell::new(true),
                limits: RefCell::new(Limits::default()),
                answers: RefCell::new(None),
                delegations: RefCell::new(DelegationCache::new(DEFAULT_DELEGATIONS)),
                queries_sent: Cell::new(0),
                failed: RefCell::new(ExpiringMap::new(MAX_FAILED_SERVERS)),
                in_flight: Flights::new(),
                failures: RefCell::new(ExpiringMap::new(MAX_REMEMBERED_FAILURES)),
            }),
        }
    }

    /// A resolver starting from the IANA root servers ([`ROOT_HINTS`], port 53), asked
    /// from a random one on (so that every resolver does not start with a.root-servers.net).
    pub fn from_root_hints(reactor: &Reactor) -> Recursive {
        let mut hints: Vec<SocketAddr> = ROOT_HINTS
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect();
        let ipv4 = ROOT_HINTS.iter().filter(|ip| ip.is_ipv4()).count();
        hints[..ipv4].rotate_left(rand::random_range(0..ipv4));
        Recursive::new(reactor, hints)
    }

    /// Asks every server — the hints and those learned from referrals — on `port` instead
    /// of 53 (for tests: a hierarchy of servers on loopback addresses sharing one port).
    pub fn with_port(self, port: u16) -> Recursive {
        self.inner.port.set(Some(port));
        self
    }

    /// Keeps up to `capacity` answers (positive for their TTL, negative per RFC 2308; see
    /// [`Cache`]) and up to `capacity` delegations (else [`DEFAULT_DELEGATIONS`]).
    pub fn with_cache(self, capacity: usize) -> Recursive {
        *self.inner.answers.borrow_mut() = Some(Cache::new(capacity));
        *self.inner.delegations.borrow_mut() = DelegationCache::new(capacity);
        self
    }

    /// Turns QNAME minimisation (RFC 9156, relaxed; on by default) on or off: with it,
    /// each server learns only the next label of the name, not the whole question.
    pub fn with_qname_minimisation(self, on: bool) -> Recursive {
        self.inner.minimise.set(on);
        self
    }

    /// Replaces the per-resolution limits.
    pub fn with_limits(self, limits: Limits) -> Recursive {
        *self.inner.limits.borrow_mut() = limits;
        self
    }

    /// How many queries it has sent to servers so far, all resolutions together.
    pub fn queries_sent(&self) -> u64 {
        self.inner.queries_sent.get()
    }

    /// How many answers the cache holds (0 without a cache).
    pub fn cache_len(&self) -> usize {
        self.inner.answers.borrow().as_ref().map_or(0, Cache::len)
    }

    /// How many delegations it remembers.
    pub fn delegations_len(&self) -> usize {
        self.inner.delegations.borrow().len()
    }

    /// Forgets every cached answer and delegation, which servers failed and which
    /// questions could not be resolved.
    pub fn clear_cache(&self) {
        if let Some(cache) = self.inner.answers.borrow_mut().as_mut() {
            cache.clear();
        }
        self.inner.delegations.borrow_mut().clear();
        self.inner.failed.borrow_mut().clear();
        self.inner.failures.borrow_mut().clear();
    }

    /// Resolves `request`'s first question (class IN). The response has the request's id
    /// and question, RA set, RD and CD as the request's, no OPT (the server adds its own),
    /// and the answer (the CNAME chain included), or NXDOMAIN/NODATA with the zone's SOA.
    /// Fails when no answer could be found — every server of a zone lame or silent, a
    /// limit reached, a CNAME loop: the server answers SERVFAIL then. The same question
    /// asked again while it is being resolved waits for that resolution; cancelling the
    /// Deferred stops the resolution (its queries in flight too) once no one waits.
    pub fn resolve(&self, request: &Message) -> Deferred<Message> {
        let Some(question) = request.queries.first().cloned() else {
            return Deferred::failed(Error::Invalid("a request without a question".into()));
        };
        if question.query_class() != DNSClass::IN {
            return Deferred::failed(Error::Invalid(format!(
                "class {} is not resolved recursively",
                question.query_class()
            )));
        }
        if matches!(
            question.query_type(),
            RecordType::AXFR | RecordType::IXFR | RecordType::OPT
        ) {
            return Deferred::failed(Error::Invalid(format!(
                "{} is not resolved recursively",
                question.query_type()
            )));
        }
        let Some(reactor) = self.inner.reactor.upgrade() else {
            return Deferred::failed(twistor::Error::ShuttingDown);
        };
        let meta = request.metadata;
        let key = CacheKey::new(&question);
        if let Some(failure) = self.inner.failed_recently(&key, now(&reactor)) {
            return Deferred::failed(failure);
        }
        let waiter = match self.inner.in_flight.join(&key) {
            Joined::Waiting(waiter) => waiter,
            Joined::First(waiter) => {
                self.inner.start(&reactor, key, question.clone());
                waiter
            }
        };
        waiter.map(move |resolved| {
            let mut response = Message::response(meta.id, OpCode::Query);
            response.metadata.recursion_desired = meta.recursion_desired;
            response.metadata.recursion_available = true;
            response.metadata.checking_disabled = meta.checking_disabled;
            response.metadata.response_code = resolved.metadata.response_code;
            response.queries = vec![question];
            response.answers = resolved.answers;
            response.authorities = resolved.authorities;
            response
        })
    }
}

/// The server's [`Forwarder`](crate::forward::Forwarder) sends the questions its hosts file
/// does not answer here for `twist dns --recursive`.
impl crate::forward::Upstream for Recursive {
    fn forward(&self, request: &Message) -> Deferred<Message> {
        self.resolve(request)
    }
}

impl std::fmt::Debug for Recursive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recursive")
            .field("hints", &self.inner.hints)
            .field("port", &self.inner.port.get())
            .field("cache", &self.cache_len())
            .field("delegations", &self.delegations_len())
            .finish()
    }
}

impl Inner {
    /// Starts resolving `question` for its waiters in [`Inner::in_flight`].
    fn start(self: &Rc<Self>, reactor: &Reactor, key: CacheKey, question: Query) {
        let limits = self.limits.borrow().clone();
        let budget = Rc::new(Budget {
            queries_left: Cell::new(limits.max_queries),
            deadline: now(reactor).saturating_add(limits.deadline),
            resolving: RefCell::new(Vec::new()),
            spent: Cell::new(false),
        });
        let inner = self.clone();
        let task = reactor.spawn(async move { inner.resolve_chain(question, budget, 0).await });
        let stop = task.clone();
        self.in_flight.started(&key, move || stop.cancel());
        let weak = Rc::downgrade(self);
        task.consume(move |result| {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            if let Err(failure) = &result {
                inner.note_resolution_failure(&key, failure);
            }
            inner.in_flight.land(&key, result);
        });
    }

    /// The failure of `key`'s last resolution, if it ended less than
    /// [`Limits::failure_ttl`] ago (RFC 9520).
    fn failed_recently(&self, key: &CacheKey, now: Duration) -> Option<Failure> {
        self.failures.borrow_mut().get(key, now).cloned()
    }

    /// Remembers that resolving `key` failed (not when it was cancelled or the reactor
    /// stopped).
    fn note_resolution_failure(&self, key: &CacheKey, failure: &Failure) {
        let ttl = self.limits.borrow().failure_ttl;
        if ttl.is_zero() || failure.is_cancelled() || failure.find::<twistor::Error>().is_some() {
            return;
        }
        let Ok(now) = self.now() else { return };
        self.failures.borrow_mut().insert(
            key.clone(),
            failure.clone(),
            now.saturating_add(ttl),
            now,
        );
    }

    /// `question`'s answer, following CNAMEs across zones: a message with the chain and
    /// the records (or the negative answer's code and SOA), its question `question`.
    fn resolve_chain(
        self: Rc<Self>,
        question: Query,
        budget: Rc<Budget>,
        depth: usize,
    ) -> Boxed<Message> {
        Box::pin(async move {
            let mut question = question;
            let mut name = question.name().clone();
            name.set_fqdn(true);
            question.set_name(name);
            if let Some(hit) = self.cached(&question) {
                return Ok(hit);
            }
            let qtype = question.query_type();
            let max_cnames = self.limits.borrow().max_cnames;
            let mut answers: Vec<Record> = Vec::new();
            let mut visited: Vec<Name> = Vec::new();
            let mut current = question.name().clone();
            current.set_fqdn(true);
            loop {
                let asked = Query::query(current.clone(), qtype);
                let response = match self.cached(&asked) {
                    Some(hit) => hit,
                    None => {
                        self.clone()
                            .iterate(&current, qtype, &budget, depth)
                            .await?
                    }
                };
                let walk = iterate::walk(&response.answers, &current, qtype, &mut visited);
                if walk.looped {
                    return Err(give_up(question.name(), "a CNAME loop"));
                }
                answers.extend(walk.aliases);
                if answers.len() > max_cnames {
                    return Err(give_up(question.name(), "too long a CNAME chain"));
                }
                let code = response.metadata.response_code;
                let done = if !walk.records.is_empty() {
                    answers.extend(walk.records);
                    Some((ResponseCode::NoError, Vec::new()))
                } else {
                    // A negative answer counts for the chain's end only if it comes with
                    // the SOA of a zone holding that name (the server may not own it).
                    let covers_end = response
                        .authorities
                        .iter()
                        .any(|r| r.record_type() == RecordType::SOA && r.name.zone_of(&walk.end));
                    (walk.end == current || covers_end)
                        .then(|| (code, response.authorities.clone()))
                };
                if let Some((code, authorities)) = done {
                    // The last step answered its own question completely: worth keeping
                    // for the next chain through it.
                    if current != *question.name() {
                        self.cache(&response);
                    }
                    let mut resolved = Message::response(0, OpCode::Query);
                    resolved.metadata.response_code = code;
                    resolved.metadata.authoritative = false;
                    resolved.queries = vec![question.clone()];
                    resolved.answers = answers;
                    resolved.authorities = authorities;
                    self.cache(&resolved);
                    return Ok(resolved);
                }
                current = walk.end;
            }
        })
    }

    /// The authoritative (scrubbed) response to (`qname`, `qtype`), from the closest known
    /// zone down.
    async fn iterate(
        self: Rc<Self>,
        qname: &Name,
        qtype: RecordType,
        budget: &Rc<Budget>,
        depth: usize,
    ) -> Result<Message, Failure> {
        // DS records live on the parent's side of the cut (RFC 4035 §3.1.4.1): start
        // above the name's own zone.
        let start = match qtype {
            RecordType::DS if !qname.is_root() => qname.base_name(),
            _ => qname.clone(),
        };
        let mut delegation = self.closest(&start)?;
        // QNAME minimisation (RFC 9156): each zone is asked about the name one label
        // below it (type A), and the whole question goes only to the zone that holds it.
        // Relaxed, as Unbound's default: an NXDOMAIN or a failure for a shortened name
        // sends the whole name instead, as servers that mishandle empty non-terminals
        // need.
        let mut minimise = self.minimise.get();
        let mut extra = 1;
        let mut minimised = 0;
        // A delegation from the cache may be stale (the zone moved to other servers within
        // the NS TTL): if all its servers fail, it is forgotten and the parent asked again,
        // once.
        let mut cached = !delegation.zone.is_root();
        let mut fell_back = false;
        loop {
            let shortened = if minimise && minimised < MAX_MINIMISED_QUERIES {
                iterate::minimised(qname, &delegation.zone, extra)
            } else {
                None
            };
            let (name, record_type) = match &shortened {
                Some(name) => {
                    minimised += 1;
                    (name, RecordType::A)
                }
                None => (qname, qtype),
            };
            let step = match self
                .clone()
                .ask_zone(&delegation, name, record_type, budget, depth)
                .await
            {
                Ok(step) => step,
                Err(failure) if budget.spent.get() => return Err(failure),
                Err(failure) => {
                    if cached && !fell_back {
                        tracing::debug!("{}'s servers failed: asking its parent", delegation.zone);
                        fell_back = true;
                        self.delegations.borrow_mut().remove(&delegation.zone);
                        delegation = self.closest(&delegation.zone.base_name())?;
                        cached = !delegation.zone.is_root();
                        extra = 1;
                    } else if shortened.is_some() {
                        minimise = false;
                    } else {
                        return Err(failure);
                    }
                    continue;
                }
            };
            match step {
                Step::Referral(child, ttl) => {
                    delegation = self.descend(&delegation, child, ttl, qname)?;
                    cached = false;
                    extra = 1;
                }
                Step::Answer(response) if shortened.is_none() => return Ok(*response),
                // No zone cut at the shortened name: one label more.
                Step::Answer(response)
                    if response.metadata.response_code != ResponseCode::NXDomain =>
                {
                    extra += 1;
                }
                Step::Answer(_) => minimise = false,
                Step::Lame(why) => return Err(give_up(qname, &why)),
            }
        }
    }

    /// Follows a referral from `parent` to `child`: remembers it, returns it.
    fn descend(
        &self,
        parent: &Delegation,
        child: Delegation,
        ttl: Duration,
        qname: &Name,
    ) -> Result<Delegation, Failure> {
        tracing::debug!("{} refers {qname} to {}", parent.zone, child.zone);
        self.delegations
            .borrow_mut()
            .insert(child.clone(), ttl, self.now()?);
        Ok(child)
    }

    /// Asks `delegation`'s servers in turn until one gives an answer or a referral: first
    /// the addresses known, then those of the servers without any, resolved on the way.
    async fn ask_zone(
        self: Rc<Self>,
        delegation: &Delegation,
        qname: &Name,
        qtype: RecordType,
        budget: &Rc<Budget>,
        depth: usize,
    ) -> Result<Step, Failure> {
        let zone = &delegation.zone;
        let mut asked: Vec<IpAddr> = Vec::new();
        let mut known: Vec<IpAddr> = Vec::new();
        for ip in delegation.servers.iter().flat_map(|s| &s.addresses) {
            if !known.contains(ip) {
                known.push(*ip);
            }
        }
        // Servers that failed lately go last (a stable sort keeps the referral's order).
        let now = self.now()?;
        known.sort_by_key(|ip| self.failed_lately(*ip, zone, now));
        for ip in known {
            asked.push(ip);
            if let Some(step) = self.ask(ip, zone, qname, qtype, budget).await? {
                return Ok(step);
            }
        }
        let max_depth = self.limits.borrow().max_depth;
        for server in delegation.servers.iter().filter(|s| s.addresses.is_empty()) {
            // A name inside the zone itself needs this very zone's servers: without glue
            // it cannot be reached. (The hints' nameless root server has no name to
            // resolve.)
            if server.name.is_root() || (zone.zone_of(&server.name) && !zone.is_root()) {
                tracing::debug!("{} has no glue for {}", zone, server.name);
                continue;
            }
            if depth >= max_depth || budget.resolving.borrow().contains(&server.name) {
                tracing::debug!("not resolving {} for {zone} (depth {depth})", server.name);
                continue;
            }
            let addresses = match self
                .clone()
                .ns_addresses(&server.name, budget, depth + 1)
                .await
            {
                Ok(addresses) => addresses,
                Err(failure) if budget.spent.get() => return Err(failure),
                Err(failure) => {
                    tracing::debug!("no address for {}: {failure}", server.name);
                    continue;
                }
            };
            for ip in addresses {
                if asked.contains(&ip) {
                    continue;
                }
                asked.push(ip);
                if let Some(step) = self.ask(ip, zone, qname, qtype, budget).await? {
                    return Ok(step);
                }
            }
        }
        Err(give_up(qname, &format!("no server of {zone} answered")))
    }

    /// Asks one server of `zone`; `None` if it failed or is lame. Fails only when the
    /// budget or the deadline is spent.
    async fn ask(
        &self,
        ip: IpAddr,
        zone: &Name,
        qname: &Name,
        qtype: RecordType,
        budget: &Budget,
    ) -> Result<Option<Step>, Failure> {
        let left = budget.queries_left.get();
        if left == 0 {
            budget.spent.set(true);
            return Err(give_up(qname, "the query budget is spent"));
        }
        let Some(reactor) = self.reactor.upgrade() else {
            return Err(Failure::new(twistor::Error::ShuttingDown));
        };
        let now = now(&reactor);
        if now >= budget.deadline {
            budget.spent.set(true);
            return Err(give_up(qname, "the deadline passed"));
        }
        budget.queries_left.set(left - 1);
        self.queries_sent.set(self.queries_sent.get() + 1);
        let server = self.socket(ip);
        let mut config = ExchangeConfig::new(vec![server]);
        config.recursion_desired = false;
        config.attempts = 1;
        config.edns_payload = Some(DEFAULT_EDNS_PAYLOAD);
        config.timeout = self
            .limits
            .borrow()
            .query_timeout
            .min(budget.deadline.saturating_sub(now));
        let exchange = Exchange::new(Query::query(qname.clone(), qtype), &config, now);
        tracing::debug!("asking {server} ({zone}) for {qname} {qtype}");
        let reply = CancelOnDrop(run_exchange(&reactor, exchange)).await;
        match reply {
            Ok(response) => match iterate::classify(response, qname, qtype, zone) {
                Step::Lame(why) => {
                    tracing::debug!("{server} is lame for {qname} in {zone}: {why}");
                    self.note_failure(ip, zone, now);
                    Ok(None)
                }
                step => {
                    self.failed.borrow_mut().remove(&(ip, zone.to_lowercase()));
                    Ok(Some(step))
                }
            },
            Err(failure) => {
                if failure
                    .find::<twistor::Error>()
                    .is_some_and(|e| matches!(e, twistor::Error::ShuttingDown))
                {
                    return Err(failure);
                }
                tracing::debug!("{server} ({zone}) failed for {qname}: {failure}");
                self.note_failure(ip, zone, now);
                Ok(None)
            }
        }
    }

    /// The addresses of the name server `name` (A records, else AAAA).
    async fn ns_addresses(
        self: Rc<Self>,
        name: &Name,
        budget: &Rc<Budget>,
        depth: usize,
    ) -> Result<Vec<IpAddr>, Failure> {
        let now = self.now()?;
        if let Some(known) = self.delegations.borrow_mut().addresses(name, now) {
            return Ok(known);
        }
        budget.resolving.borrow_mut().push(name.clone());
        let mut result = Err(give_up(name, "no address"));
        for qtype in [RecordType::A, RecordType::AAAA] {
            let found = self
                .clone()
                .resolve_chain(Query::query(name.clone(), qtype), budget.clone(), depth)
                .await;
            match found {
                Ok(response) => {
                    let records: Vec<&Record> = response
                        .answers
                        .iter()
                        .filter(|r| r.record_type() == qtype)
                        .collect();
                    let addresses: Vec<IpAddr> = records
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                            _ => None,
                        })
                        .collect();
                    if !addresses.is_empty() {
                        let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
                        self.delegations.borrow_mut().insert_addresses(
                            name,
                            &addresses,
                            Duration::from_secs(u64::from(ttl)),
                            now,
                        );
                        result = Ok(addresses);
                        break;
                    }
                }
                Err(failure) if budget.spent.get() => {
                    result = Err(failure);
                    break;
                }
                Err(failure) => result = Err(failure),
            }
        }
        budget.resolving.borrow_mut().retain(|n| n != name);
        result
    }

    /// The closest zone whose servers are known: from the cache, else the root hints.
    fn closest(&self, qname: &Name) -> Result<Delegation, Failure> {
        let now = self.now()?;
        if let Some(delegation) = self.delegations.borrow_mut().closest(qname, now) {
            return Ok(delegation);
        }
        let addresses: Vec<IpAddr> = self.hints.iter().map(SocketAddr::ip).collect();
        Ok(Delegation::hints(&addresses))
    }

    /// Whether the server at `ip` failed or was lame for `zone` in the last
    /// [`FAILED_SERVER_MEMORY`].
    fn failed_lately(&self, ip: IpAddr, zone: &Name, now: Duration) -> bool {
        self.failed
            .borrow()
            .peek(&(ip, zone.to_lowercase()), now)
            .is_some()
    }

    fn note_failure(&self, ip: IpAddr, zone: &Name, now: Duration) {
        self.failed.borrow_mut().insert(
            (ip, zone.to_lowercase()),
            (),
            now.saturating_add(FAILED_SERVER_MEMORY),
            now,
        );
    }

    /// Where to ask the server at `ip`.
    fn socket(&self, ip: IpAddr) -> SocketAddr {
        match self.port.get() {
            Some(port) => SocketAddr::new(ip, port),
            None => self
                .hints
                .iter()
                .find(|h| h.ip() == ip)
                .copied()
                .unwrap_or(SocketAddr::new(ip, 53)),
        }
    }

    fn cached(&self, question: &Query) -> Option<Message> {
        let now = self.now().ok()?;
        self.answers.borrow_mut().as_mut()?.get(question, now)
    }

    fn cache(&self, response: &Message) {
        if let (Ok(now), Some(cache)) = (self.now(), self.answers.borrow_mut().as_mut()) {
            cache.insert(response, now);
        }
    }

    fn now(&self) -> Result<Duration, Failure> {
        match self.reactor.upgrade() {
            Some(reactor) => Ok(now(&reactor)),
            None => Err(Failure::new(twistor::Error::ShuttingDown)),
        }
    }
}

/// Waits for an exchange; dropped early (the resolution was cancelled), it stops the
/// exchange and closes its socket.
struct CancelOnDrop(Deferred<Message>);

impl Future for CancelOnDrop {
    type Output = Result<Message, Failure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.0.called() {
            self.0.cancel();
        }
    }
}

/// A resolution gave up on `name`.
fn give_up(name: &Name, reason: &str) -> Failure {
    Failure::new(Error::Recursion {
        name: name.to_string(),
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, record_type: RecordType) -> Message {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        m
    }

    fn invalid(d: Deferred<Message>) -> bool {
        let failure = d.try_result().unwrap().unwrap_err();
        matches!(failure.downcast_ref::<Error>(), Some(Error::Invalid(_)))
    }

    #[test]
    fn root_hints_are_the_thirteen_servers_in_both_families() {
        let v4 = ROOT_HINTS.iter().filter(|ip| ip.is_ipv4()).count();
        assert_eq!((v4, ROOT_HINTS.len() - v4), (13, 13));
        let mut unique = ROOT_HINTS.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 26);
        let reactor = Reactor::new().unwrap();
        let r = Recursive::from_root_hints(&reactor);
        assert_eq!(r.inner.hints.len(), 26);
        assert!(r.inner.hints.iter().all(|h| h.port() == 53));
        assert!(r.inner.hints[..13].iter().all(SocketAddr::is_ipv4));
        assert!(
            ROOT_HINTS
                .iter()
                .all(|ip| r.inner.hints.contains(&SocketAddr::new(*ip, 53)))
        );
    }

    #[test]
    fn servers_are_asked_on_the_port_given() {
        let reactor = Reactor::new().unwrap();
        let hint: SocketAddr = "192.0.2.1:5353".parse().unwrap();
        let r = Recursive::new(&reactor, vec![hint]);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(r.inner.socket(hint.ip()), hint);
        assert_eq!(r.inner.socket(other), SocketAddr::new(other, 53));
        let r = r.with_port(1053);
        assert_eq!(r.inner.socket(hint.ip()), SocketAddr::new(hint.ip(), 1053));
        assert_eq!(r.inner.socket(other), SocketAddr::new(other, 1053));
        // Without hints, nothing to ask and nothing to resolve.
        let none = Recursive::new(&reactor, Vec::new());
        let d = none.resolve(&request("www.example.", RecordType::A));
        let failure = reactor.run_until(d).unwrap().unwrap_err();
        assert!(matches!(
            failure.downcast_ref::<Error>(),
            Some(Error::Recursion { .. })
        ));
        assert_eq!(none.queries_sent(), 0);
        // With nothing cached, resolutions start at the hints.
        let start = r
            .inner
            .closest(&Name::from_ascii("www.example.").unwrap())
            .unwrap();
        assert!(start.zone.is_root());
        assert_eq!(start.servers[0].addresses, [hint.ip()]);
    }

    #[test]
    fn what_cannot_be_resolved_fails_at_once() {
        let reactor = Reactor::new().unwrap();
        let r = Recursive::new(&reactor, vec!["192.0.2.1:53".parse().unwrap()]);
        assert!(invalid(r.resolve(&Message::query())));
        let mut chaos = request("version.bind.", RecordType::TXT);
        chaos.queries[0].set_query_class(DNSClass::CH);
        assert!(invalid(r.resolve(&chaos)));
        assert!(invalid(r.resolve(&request("example.", RecordType::AXFR))));
        assert_eq!(r.queries_sent(), 0);
        drop(reactor);
        let failure = r
            .resolve(&request("example.", RecordType::A))
            .try_result()
            .unwrap()
            .unwrap_err();
        assert!(failure.find::<twistor::Error>().is_some());
    }

    #[test]
    fn failure_memories_stay_bounded() {
        let reactor = Reactor::new().unwrap();
        let r = Recursive::new(&reactor, vec!["192.0.2.1:53".parse().unwrap()]);
        let inner = &r.inner;
        let zone = Name::from_ascii("example.").unwrap();
        for i in 0..3000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            inner.note_failure(ip, &zone, Duration::from_secs(u64::from(i)));
            assert!(inner.failed.borrow().len() <= MAX_FAILED_SERVERS);
            let name = Name::from_ascii(format!("n{i}.example.")).unwrap();
            let key = CacheKey::new(&Query::query(name, RecordType::A));
            inner.note_resolution_failure(&key, &give_up(&zone, "test"));
            assert!(inner.failures.borrow().len() <= MAX_REMEMBERED_FAILURES);
        }
        // The latest are remembered.
        let now = Duration::from_secs(3000);
        assert!(inner.failed_lately(IpAddr::from(2999u32.to_be_bytes()), &zone, now));
        assert!(!inner.failed_lately(IpAddr::from(0u32.to_be_bytes()), &zone, now));
        // Cancellations are not failures to remember.
        let key = CacheKey::new(&Query::query(zone.clone(), RecordType::A));
        let cancelled = Failure::new(twistor::defer::DeferredError::Cancelled);
        inner.note_resolution_failure(&key, &cancelled);
        assert!(inner.failed_recently(&key, Duration::ZERO).is_none());
    }

    #[test]
    fn a_spent_deadline_sends_nothing() {
        let reactor = Reactor::new().unwrap();
        let r =
            Recursive::new(&reactor, vec!["192.0.2.1:53".parse().unwrap()]).with_limits(Limits {
                deadline: Duration::ZERO,
                ..Limits::default()
            });
        let d = r.resolve(&request("www.example.", RecordType::A));
        let failure = reactor.run_until(d).unwrap().unwrap_err();
        assert!(
            matches!(failure.downcast_ref::<Error>(), Some(Error::Recursion { reason, .. }) if reason.contains("deadline")),
            "{failure}"
        );
        assert_eq!(r.queries_sent(), 0);
    }
}
