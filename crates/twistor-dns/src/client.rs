//! Resolvers on the reactor: a stub [`Resolver`] that asks recursive servers (or
//! authoritative ones) over UDP and TCP, with an optional cache, answering as
//! [`Deferred`]s (which are futures).
//!
//! ```no_run
//! use twistor::Reactor;
//! use twistor_dns::client::Resolver;
//!
//! let reactor = Reactor::new()?;
//! // /etc/resolv.conf and /etc/hosts, with a cache of 1,000 answers.
//! let resolver = Resolver::from_system(&reactor)?.with_cache(1000);
//! let addresses = reactor.run_until(resolver.lookup_ip("example.com"))??;
//! println!("{addresses:?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each question is an [`Exchange`] (the sans-IO state machine in [`proto::query`]) driven
//! here: every UDP attempt goes out from a new socket on a port the OS picks at random
//! (bound to `0.0.0.0:0` or `[::]:0` and connected to the server, closed after the
//! attempt), TCP attempts through `connect_tcp` with the two-byte length framing, timers on
//! the reactor's clock. Identical questions asked while one is in flight share its
//! exchange.
//!
//! Failures are [`Failure`]s holding a [`crate::Error`]: [`Error::NoSuchName`] for
//! NXDOMAIN and [`Error::NoRecords`] for NODATA (from the `lookup*` methods; [`query`]
//! and [`forward`] hand back the response whatever its code), [`Error::Timeout`] when no
//! server answered, [`Error::Server`] when all answered SERVFAIL, REFUSED or NOTIMP. If
//! the reactor shuts down under a query, it fails with
//! [`twistor::Error::ShuttingDown`].
//!
//! [`proto::query`]: crate::proto::query
//! [`query`]: Resolver::query
//! [`forward`]: Resolver::forward

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::{MX, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use twistor::address::Address;
use twistor::defer::{Deferred, Failure};
use twistor::protocol::{ClientFactory, Factory, Protocol};
use twistor::reactor::WeakReactor;
use twistor::tcp::ConnectOptions;
use twistor::udp::UdpOptions;
use twistor::{CloseReason, Connector, DatagramProtocol, DatagramTransport, DelayedCall};
use twistor::{Reactor, ReactorTime, Transport};

use crate::error::Error;
use crate::flight::{Flights, Joined};
use crate::proto::cache::{Cache, CacheKey};
use crate::proto::query::{DEFAULT_EDNS_PAYLOAD, Exchange, ExchangeConfig, Output};
use crate::system::{self, Hosts, ResolvConf};

/// Pulls one record kind's data out of a record.
macro_rules! rdata {
    ($record:expr, $kind:ident) => {
        match $record.data {
            RData::$kind(data) => Some(data),
            _ => None,
        }
    };
}

/// How many CNAMEs a lookup follows by asking again (when the server did not follow them
/// itself, as an authoritative server for the alias's zone only does not).
const MAX_CNAME_CHASES: usize = 8;

/// The resolver's settings: resolv.conf's, with servers as socket addresses (so tests and
/// forwarders can use other ports than 53), plus the host table and the wire options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResolverConfig {
    /// The servers, asked in order (default `127.0.0.1:53`).
    pub nameservers: Vec<SocketAddr>,
    /// Domains appended to names with fewer than `ndots` dots (glibc's search list).
    pub search: Vec<String>,
    /// See [`ResolvConf::ndots`] (default 1).
    pub ndots: u32,
    /// How long each attempt waits (default 5 s).
    pub timeout: Duration,
    /// Rounds over the servers (default 2).
    pub attempts: u32,
    /// Start each query with the next server in turn.
    pub rotate: bool,
    /// The EDNS0 UDP buffer size to advertise (default 1232); `None` sends no EDNS.
    pub edns_payload: Option<u16>,
    /// Mix the case of query names randomly (0x20), accepting only replies that echo it
    /// (default off; servers that do not preserve case are then asked without it).
    pub use_0x20: bool,
    /// Names answered before any server is asked (by [`Resolver::lookup_ip`] and
    /// [`Resolver::lookup_ptr`]).
    pub hosts: Hosts,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig::from_resolv_conf(&ResolvConf::default(), Hosts::new())
    }
}

impl ResolverConfig {
    /// The defaults, asking `nameservers`, with an empty host table.
    pub fn new(nameservers: Vec<SocketAddr>) -> ResolverConfig {
        ResolverConfig {
            nameservers,
            ..ResolverConfig::default()
        }
    }

    /// The settings of a parsed resolv.conf (servers on port 53) and host table.
    pub fn from_resolv_conf(conf: &ResolvConf, hosts: Hosts) -> ResolverConfig {
        ResolverConfig {
            nameservers: conf
                .nameservers
                .iter()
                .map(|ip| SocketAddr::new(*ip, 53))
                .collect(),
            search: conf.search.clone(),
            ndots: conf.ndots,
            timeout: conf.timeout,
            attempts: conf.attempts,
            rotate: conf.rotate,
            edns_payload: Some(DEFAULT_EDNS_PAYLOAD),
            use_0x20: false,
            hosts,
        }
    }

    /// `/etc/resolv.conf` and `/etc/hosts`; a missing file counts as an empty one (glibc's
    /// defaults), a malformed one is an [`Error::File`].
    pub fn from_system() -> Result<ResolverConfig, Error> {
        ResolverConfig::from_files(system::RESOLV_CONF, system::HOSTS)
    }

    /// The given resolv.conf and hosts files; missing ones count as empty.
    pub fn from_files(resolv_conf: &str, hosts: &str) -> Result<ResolverConfig, Error> {
        let conf = match ResolvConf::load(resolv_conf) {
            Err(Error::Io { .. }) if !std::path::Path::new(resolv_conf).exists() => {
                ResolvConf::default()
            }
            other => other?,
        };
        let hosts = match Hosts::load(hosts) {
            Err(Error::Io { .. }) if !std::path::Path::new(hosts).exists() => Hosts::new(),
            other => other?,
        };
        Ok(ResolverConfig::from_resolv_conf(&conf, hosts))
    }
}

/// A stub resolver on a reactor. Cloning it is cheap (the clones share the cache and the
/// queries in flight).
///
/// Without [`with_cache`](Resolver::with_cache) every lookup asks a server.
#[derive(Clone)]
pub struct Resolver {
    inner: Rc<Inner>,
}

struct Inner {
    reactor: WeakReactor,
    config: ResolverConfig,
    cache: RefCell<Option<Cache>>,
    /// Servers found not to preserve the case of questions: asked without 0x20.
    no_0x20: RefCell<Vec<SocketAddr>>,
    /// Where `rotate` starts the next query.
    next_server: Cell<usize>,
    /// Questions in flight (plain queries, not forwarded ones) and who waits for them.
    in_flight: Flights<CacheKey, Message>,
}

impl Resolver {
    /// A resolver with `config`, running its queries on `reactor` (it keeps only a weak
    /// handle, so the reactor may own the resolver).
    pub fn new(reactor: &Reactor, config: ResolverConfig) -> Resolver {
        Resolver {
            inner: Rc::new(Inner {
                reactor: reactor.downgrade(),
                config,
                cache: RefCell::new(None),
                no_0x20: RefCell::new(Vec::new()),
                next_server: Cell::new(0),
                in_flight: Flights::new(),
            }),
        }
    }

    /// A resolver configured from `/etc/resolv.conf` and `/etc/hosts`.
    pub fn from_system(reactor: &Reactor) -> Result<Resolver, Error> {
        Ok(Resolver::new(reactor, ResolverConfig::from_system()?))
    }

    /// Adds a cache of up to `capacity` responses, with the default limits (see
    /// [`Cache`]): positive answers for their TTL (at most a day), negative ones per RFC
    /// 2308 (at most 3 h), failures not at all.
    pub fn with_cache(self, capacity: usize) -> Resolver {
        self.with_cache_policy(Cache::new(capacity))
    }

    /// Adds `cache` (built with its own limits), replacing any cache this resolver had.
    pub fn with_cache_policy(self, cache: Cache) -> Resolver {
        *self.inner.cache.borrow_mut() = Some(cache);
        self
    }

    /// The settings.
    pub fn config(&self) -> &ResolverConfig {
        &self.inner.config
    }

    /// How many responses the cache holds (0 without a cache).
    pub fn cache_len(&self) -> usize {
        self.inner.cache.borrow().as_ref().map_or(0, Cache::len)
    }

    /// Empties the cache.
    pub fn clear_cache(&self) {
        if let Some(cache) = self.inner.cache.borrow_mut().as_mut() {
            cache.clear();
        }
    }

    /// Asks for `name`'s records of `record_type` (class IN), `name` taken as absolute (no
    /// search list), and gives the whole response, NXDOMAIN included. Fails only when no
    /// usable response came (timeout, every server failed).
    pub fn query(&self, name: &str, record_type: RecordType) -> Deferred<Message> {
        match absolute(name) {
            Ok(name) => self.ask(Query::query(name, record_type)),
            Err(e) => Deferred::failed(e),
        }
    }

    /// Asks `question` as it is (any class); see [`query`](Resolver::query).
    pub fn query_question(&self, question: Query) -> Deferred<Message> {
        self.ask(question)
    }

    /// Forwards a client's `request` upstream (for a forwarding server): its first
    /// question, with its CD and DO bits, through the cache (unless CD or DO is set). The
    /// response comes back with the request's id and question, without upstream's EDNS OPT
    /// (the forwarder adds its own, sized for its client) and with the header bits (AA, RA,
    /// rcode) as upstream set them. Fails (with the [`Error`] of
    /// [`query`](Resolver::query)) when no usable response came: answer SERVFAIL then.
    pub fn forward(&self, request: &Message) -> Deferred<Message> {
        let Some(question) = request.queries.first().cloned() else {
            return Deferred::failed(Error::Invalid("a request without a question".into()));
        };
        let id = request.metadata.id;
        let dnssec = request.metadata.checking_disabled
            || request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let answer = if dnssec {
            let inner = self.inner.clone();
            let Some(reactor) = inner.reactor.upgrade() else {
                return Deferred::failed(twistor::Error::ShuttingDown);
            };
            let config = inner.exchange_config();
            match Exchange::forward(request, &config, now(&reactor)) {
                Ok(exchange) => {
                    let weak = Rc::downgrade(&inner);
                    drive(&reactor, exchange, move |fallbacks| {
                        if let Some(inner) = weak.upgrade() {
                            inner.note_fallbacks(fallbacks);
                        }
                    })
                }
                Err(e) => Deferred::failed(e),
            }
        } else {
            self.ask(question.clone())
        };
        answer.map(move |mut response| {
            response.metadata.id = id;
            response.queries = vec![question];
            response.edns = None;
            response.signature = None;
            response
        })
    }

    /// `name`'s records of `record_type`, trying the search list the glibc way: a name
    /// with a trailing dot as it is only; one with at least `ndots` dots as it is first,
    /// then with each search domain; others with each search domain first, then as they
    /// are. NXDOMAIN, NODATA and SERVFAIL move on to the next candidate; a timeout stops.
    /// CNAMEs in the answer are followed (asking again if the server did not). Fails with
    /// [`Error::NoRecords`] if some candidate exists without such records, else
    /// [`Error::NoSuchName`] (or the last server error).
    pub fn lookup(&self, name: &str, record_type: RecordType) -> Deferred<Vec<Record>> {
        let candidates = match self.candidates(name) {
            Ok(c) => c,
            Err(e) => return Deferred::failed(e),
        };
        let this = self.clone();
        let asked = name.to_string();
        self.spawn(async move { this.search(asked, candidates, record_type).await })
    }

    /// The addresses of `host`: an address literal is itself; then the host table
    /// (`/etc/hosts`); then A and AAAA lookups (at once), IPv4 addresses first. `localhost`
    /// and names under it are the loopback addresses if the host table says nothing
    /// (RFC 6761).
    pub fn lookup_ip(&self, host: &str) -> Deferred<Vec<IpAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Deferred::succeeded(vec![ip]);
        }
        if let Some(addresses) = self.inner.config.hosts.lookup(host) {
            return Deferred::succeeded(addresses.to_vec());
        }
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return Deferred::succeeded(vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]);
        }
        let a = self.lookup(host, RecordType::A);
        let aaaa = self.lookup(host, RecordType::AAAA);
        let name = host.to_string();
        self.spawn(async move {
            let (a, aaaa) = (a.await, aaaa.await);
            let mut addresses = Vec::new();
            for records in [&a, &aaaa].into_iter().flatten() {
                addresses.extend(records.iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
            }
            match (a, aaaa) {
                (Ok(_), _) | (_, Ok(_)) => Ok(addresses),
                (Err(fa), Err(faaaa)) => Err(merge_failures(&name, fa, faaaa)),
            }
        })
    }

    /// `name`'s mail exchangers, by preference (lowest first).
    pub fn lookup_mx(&self, name: &str) -> Deferred<Vec<MX>> {
        self.lookup_data(name, RecordType::MX, |r| rdata!(r, MX))
            .map(|mut mx| {
                mx.sort_by_key(|m| m.preference);
                mx
            })
    }

    /// `name`'s TXT records.
    pub fn lookup_txt(&self, name: &str) -> Deferred<Vec<TXT>> {
        self.lookup_data(name, RecordType::TXT, |r| rdata!(r, TXT))
    }

    /// `name`'s SRV records (`_service._proto.domain`), by priority (lowest first), then
    /// weight (highest first).
    pub fn lookup_srv(&self, name: &str) -> Deferred<Vec<SRV>> {
        self.lookup_data(name, RecordType::SRV, |r| rdata!(r, SRV))
            .map(|mut srv| {
                srv.sort_by_key(|s| (s.priority, std::cmp::Reverse(s.weight)));
                srv
            })
    }

    /// `name`'s name servers.
    pub fn lookup_ns(&self, name: &str) -> Deferred<Vec<Name>> {
        self.lookup_data(name, RecordType::NS, |r| rdata!(r, NS).map(|ns| ns.0))
    }

    /// `name`'s SOA record (the first, if a server sent several).
    pub fn lookup_soa(&self, name: &str) -> Deferred<SOA> {
        self.lookup_first(name, RecordType::SOA, |r| rdata!(r, SOA))
    }

    /// The names of `address`: the host table's, else the PTR records of its
    /// `in-addr.arpa`/`ip6.arpa` name.
    pub fn lookup_ptr(&self, address: IpAddr) -> Deferred<Vec<Name>> {
        if let Some(names) = self.inner.config.hosts.reverse(address) {
            let names: Vec<Name> = names.iter().filter_map(|n| absolute(n).ok()).collect();
            if !names.is_empty() {
                return Deferred::succeeded(names);
            }
        }
        let reverse = Name::from(address);
        self.lookup_data(&reverse.to_ascii(), RecordType::PTR, |r| {
            rdata!(r, PTR).map(|p| p.0)
        })
    }

    /// The canonical name `name` is an alias of (its CNAME record's target).
    pub fn lookup_cname(&self, name: &str) -> Deferred<Name> {
        self.lookup_first(name, RecordType::CNAME, |r| rdata!(r, CNAME).map(|c| c.0))
    }

    // ---- internals ----------------------------------------------------------------------

    /// [`lookup`](Resolver::lookup), keeping what `pick` takes from each record.
    fn lookup_data<T: 'static>(
        &self,
        name: &str,
        record_type: RecordType,
        pick: impl Fn(Record) -> Option<T> + 'static,
    ) -> Deferred<Vec<T>> {
        self.lookup(name, record_type)
            .map(move |records| records.into_iter().filter_map(&pick).collect())
    }

    /// The first of [`lookup_data`](Resolver::lookup_data); [`Error::NoRecords`] if
    /// `pick` takes nothing.
    fn lookup_first<T: 'static>(
        &self,
        name: &str,
        record_type: RecordType,
        pick: impl Fn(Record) -> Option<T> + 'static,
    ) -> Deferred<T> {
        let asked = name.to_string();
        self.lookup_data(name, record_type, pick)
            .and_then(move |data| {
                data.into_iter().next().ok_or_else(|| {
                    Failure::new(Error::NoRecords {
                        name: asked,
                        record_type: record_type.to_string(),
                    })
                })
            })
    }

    /// Runs `future` on the reactor (failing at once if the reactor is gone).
    fn spawn<T: 'static>(
        &self,
        future: impl std::future::Future<Output = Result<T, Failure>> + 'static,
    ) -> Deferred<T> {
        match self.inner.reactor.upgrade() {
            Some(reactor) => reactor.spawn(future),
            None => Deferred::failed(twistor::Error::ShuttingDown),
        }
    }

    /// The names to try for `name`, in order (glibc's `res_nsearch`).
    fn candidates(&self, name: &str) -> Result<Vec<Name>, Error> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::Invalid("an empty name".into()));
        }
        if name.ends_with('.') {
            return Ok(vec![absolute(name)?]);
        }
        let config = &self.inner.config;
        let dots = name.matches('.').count();
        let as_is = absolute(name)?;
        let mut out = Vec::new();
        if dots >= config.ndots as usize {
            out.push(as_is.clone());
        }
        for domain in &config.search {
            if let Ok(full) = absolute(&format!("{name}.{}", domain.trim_end_matches('.')))
                && !out.contains(&full)
            {
                out.push(full);
            }
        }
        if !out.contains(&as_is) {
            out.push(as_is);
        }
        Ok(out)
    }

    /// Tries each candidate name in turn.
    async fn search(
        self,
        asked: String,
        candidates: Vec<Name>,
        record_type: RecordType,
    ) -> Result<Vec<Record>, Failure> {
        let mut nodata = false;
        let mut server_error: Option<Failure> = None;
        for candidate in candidates {
            match self.resolve_name(candidate, record_type).await {
                Ok(records) => return Ok(records),
                Err(failure) => match failure.downcast_ref::<Error>() {
                    Some(Error::NoSuchName { .. }) => {}
                    Some(Error::NoRecords { .. }) => nodata = true,
                    Some(Error::Server { .. }) => server_error = Some(failure),
                    _ => return Err(failure),
                },
            }
        }
        Err(if nodata {
            Failure::new(Error::NoRecords {
                name: asked,
                record_type: record_type.to_string(),
            })
        } else if let Some(failure) = server_error {
            failure
        } else {
            Failure::new(Error::NoSuchName { name: asked })
        })
    }

    /// One absolute name's records of `record_type`, following CNAMEs.
    async fn resolve_name(
        &self,
        name: Name,
        record_type: RecordType,
    ) -> Result<Vec<Record>, Failure> {
        let mut target = name.clone();
        for _ in 0..=MAX_CNAME_CHASES {
            let response = self.ask(Query::query(target.clone(), record_type)).await?;
            match extract(&response, &target, record_type) {
                Extracted::Records(records) => return Ok(records),
                Extracted::Chase(next) => target = next,
                Extracted::NoSuchName => {
                    return Err(Failure::new(Error::NoSuchName {
                        name: name.to_string(),
                    }));
                }
                Extracted::NoRecords => break,
            }
        }
        Err(Failure::new(Error::NoRecords {
            name: name.to_string(),
            record_type: record_type.to_string(),
        }))
    }

    /// Asks `question`: from the cache, by joining the same question in flight, or with a
    /// new exchange.
    fn ask(&self, question: Query) -> Deferred<Message> {
        let inner = &self.inner;
        let Some(reactor) = inner.reactor.upgrade() else {
            return Deferred::failed(twistor::Error::ShuttingDown);
        };
        let now = now(&reactor);
        let hit = match inner.cache.borrow_mut().as_mut() {
            Some(cache) => cache.get(&question, now),
            None => None,
        };
        if let Some(mut hit) = hit {
            hit.metadata.id = rand::random();
            return Deferred::succeeded(hit);
        }
        let key = CacheKey::new(&question);
        let waiter = match inner.in_flight.join(&key) {
            Joined::First(waiter) => waiter,
            Joined::Waiting(waiter) => {
                // The question as this caller asked it (the case may differ).
                return waiter.map(move |mut response| {
                    response.queries = vec![question];
                    response
                });
            }
        };
        let exchange = Exchange::new(question, &inner.exchange_config(), now);
        let weak = Rc::downgrade(inner);
        let done_key = key.clone();
        let driver = Driver::start(
            &reactor,
            exchange,
            Box::new(move |result, fallbacks| {
                if let Some(inner) = weak.upgrade() {
                    inner.land(&done_key, result, fallbacks);
                }
            }),
        );
        let driver = Rc::downgrade(&driver);
        inner.in_flight.started(&key, move || {
            if let Some(driver) = driver.upgrade() {
                driver.abort();
            }
        });
        waiter
    }
}

impl Inner {
    fn exchange_config(&self) -> ExchangeConfig {
        let config = &self.config;
        let mut servers = config.nameservers.clone();
        if config.rotate && !servers.is_empty() {
            let start = self.next_server.get() % servers.len();
            self.next_server.set(start + 1);
            servers.rotate_left(start);
        }
        let mut exchange = ExchangeConfig::new(servers);
        exchange.timeout = config.timeout;
        exchange.attempts = config.attempts.max(1);
        exchange.edns_payload = config.edns_payload;
        exchange.use_0x20 = config.use_0x20;
        exchange.no_0x20 = self.no_0x20.borrow().clone();
        exchange
    }

    fn note_fallbacks(&self, fallbacks: Vec<SocketAddr>) {
        let mut known = self.no_0x20.borrow_mut();
        for server in fallbacks {
            if !known.contains(&server) {
                known.push(server);
            }
        }
    }

    /// An exchange ended: cache its response and hand it to everyone waiting.
    fn land(&self, key: &CacheKey, result: Result<Message, Failure>, fallbacks: Vec<SocketAddr>) {
        self.note_fallbacks(fallbacks);
        if let (Ok(response), Some(reactor)) = (&result, self.reactor.upgrade())
            && let Some(cache) = self.cache.borrow_mut().as_mut()
        {
            cache.insert(response, now(&reactor));
        }
        self.in_flight.land(key, result);
    }
}

/// The engine's resolver trait: `connect_tcp` and the endpoints can look names up here.
impl twistor::endpoints::Resolver for Resolver {
    fn resolve(&self, host: &str, port: u16) -> Deferred<Vec<SocketAddr>> {
        self.lookup_ip(host).map(move |addresses| {
            addresses
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        })
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("nameservers", &self.inner.config.nameservers)
            .field("cache", &self.cache_len())
            .finish()
    }
}

/// What a response says about one name and type.
enum Extracted {
    Records(Vec<Record>),
    /// An alias whose target the response does not cover: ask for it.
    Chase(Name),
    NoSuchName,
    NoRecords,
}

/// The records of `record_type` for `name` in `response`, following the CNAME chain in
/// its answer section.
fn extract(response: &Message, name: &Name, record_type: RecordType) -> Extracted {
    let mut current = name.clone();
    // A chain longer than the answer section is a loop.
    for _ in 0..=response.answers.len() {
        let records: Vec<Record> = response
            .answers
            .iter()
            .filter(|r| {
                r.name == current
                    && (r.record_type() == record_type || record_type == RecordType::ANY)
            })
            .cloned()
            .collect();
        if !records.is_empty() {
            return Extracted::Records(records);
        }
        let alias = response.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == current => Some(target.0.clone()),
            _ => None,
        });
        match alias {
            Some(target) => current = target,
            None => break,
        }
    }
    match response.metadata.response_code {
        ResponseCode::NXDomain => Extracted::NoSuchName,
        // A recursive server follows the chain itself; an authoritative one stops at its
        // zone's edge without saying anything of the target.
        ResponseCode::NoError if current != *name && !response.metadata.recursion_available => {
            let negative = response
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA && r.name.zone_of(&current));
            if negative {
                Extracted::NoRecords
            } else {
                Extracted::Chase(current)
            }
        }
        ResponseCode::NoError => Extracted::NoRecords,
        // Any other final code: nothing to use.
        _ => Extracted::NoRecords,
    }
}

/// Both families failed: the more telling failure.
fn merge_failures(name: &str, a: Failure, aaaa: Failure) -> Failure {
    match (a.downcast_ref::<Error>(), aaaa.downcast_ref::<Error>()) {
        (Some(Error::NoRecords { .. }), Some(Error::NoRecords { .. })) => {
            Failure::new(Error::NoRecords {
                name: name.to_string(),
                record_type: "A or AAAA".into(),
            })
        }
        (Some(Error::NoRecords { .. }), Some(_)) => aaaa,
        _ => a,
    }
}

/// `name` as an absolute DNS name.
fn absolute(name: &str) -> Result<Name, Error> {
    let mut parsed = Name::from_utf8(name).map_err(|e| Error::Invalid(format!("{name:?}: {e}")))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The reactor's time as the sans-IO core takes it.
pub(crate) fn now(clock: &dyn ReactorTime) -> Duration {
    Duration::from_secs_f64(clock.seconds().max(0.0))
}

/// Drives one `exchange` on `reactor` (its sockets, connection and timer) and fires with
/// its result; cancelling the Deferred stops it and closes its socket. For the recursive
/// resolver, which asks one server at a time and judges each reply itself.
pub(crate) fn run_exchange(reactor: &Reactor, exchange: Exchange) -> Deferred<Message> {
    drive(reactor, exchange, |_| {})
}

/// Drives one `exchange` on `reactor` and fires with its result, after handing
/// `on_fallbacks` the servers found not to preserve case; cancelling the Deferred stops it
/// (the driver is known once started).
fn drive(
    reactor: &Reactor,
    exchange: Exchange,
    on_fallbacks: impl FnOnce(Vec<SocketAddr>) + 'static,
) -> Deferred<Message> {
    let running: Rc<RefCell<Weak<Driver>>> = Rc::default();
    let stop = running.clone();
    let d = Deferred::with_canceller(move |_| {
        let driver = stop.borrow().upgrade();
        if let Some(driver) = driver {
            driver.abort();
        }
    });
    let fire = d.clone();
    let driver = Driver::start(
        reactor,
        exchange,
        Box::new(move |result, fallbacks| {
            on_fallbacks(fallbacks);
            let _ = fire.resolve(result);
        }),
    );
    *running.borrow_mut() = Rc::downgrade(&driver);
    d
}

// ---- the exchange driver ---------------------------------------------------------------

/// Called once when an exchange ends, with its result and the servers found not to
/// preserve case.
type OnDone = Box<dyn FnOnce(Result<Message, Failure>, Vec<SocketAddr>)>;

/// Drives one [`Exchange`] on the reactor: its sockets, connection and timer.
struct Driver {
    exchange: RefCell<Exchange>,
    reactor: WeakReactor,
    on_done: RefCell<Option<OnDone>>,
    /// Bumped for each attempt; events from older sockets are ignored.
    generation: Cell<u64>,
    udp: RefCell<Option<DatagramTransport>>,
    tcp: RefCell<Option<Connector>>,
    timer: RefCell<Option<DelayedCall>>,
    pumping: Cell<bool>,
}

impl Driver {
    fn start(reactor: &Reactor, exchange: Exchange, on_done: OnDone) -> Rc<Driver> {
        let driver = Rc::new(Driver {
            exchange: RefCell::new(exchange),
            reactor: reactor.downgrade(),
            on_done: RefCell::new(Some(on_done)),
            generation: Cell::new(0),
            udp: RefCell::new(None),
            tcp: RefCell::new(None),
            timer: RefCell::new(None),
            pumping: Cell::new(false),
        });
        driver.pump();
        driver
    }

    fn link(self: &Rc<Self>, generation: u64) -> Link {
        Link {
            driver: Rc::downgrade(self),
            generation,
        }
    }

    fn finished(&self) -> bool {
        self.on_done.borrow().is_none()
    }

    /// Feeds the exchange one event (if `generation` is still the current attempt's), then
    /// carries out what it asks.
    fn handle(self: &Rc<Self>, generation: u64, f: impl FnOnce(&mut Exchange, Duration)) {
        if generation != self.generation.get() || self.finished() {
            return;
        }
        let Some(reactor) = self.reactor.upgrade() else {
            return;
        };
        f(&mut self.exchange.borrow_mut(), now(&reactor));
        self.pump();
    }

    fn pump(self: &Rc<Self>) {
        if self.pumping.replace(true) {
            return;
        }
        loop {
            let output = self.exchange.borrow_mut().poll_output();
            let Some(output) = output else { break };
            match output {
                Output::Udp { server, data } => self.send_udp(server, &data),
                Output::Tcp { server, data } => self.send_tcp(server, data),
                Output::Timer(deadline) => self.set_timer(deadline),
                Output::Done(result) => {
                    let fallbacks = self.exchange.borrow().case_fallbacks().to_vec();
                    self.finish(result.map_err(Failure::new), fallbacks);
                    break;
                }
            }
        }
        self.pumping.set(false);
    }

    /// Closes the previous attempt's socket or connection; returns the new generation.
    fn new_attempt(&self) -> u64 {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        self.close_transports();
        generation
    }

    fn send_udp(self: &Rc<Self>, server: SocketAddr, data: &[u8]) {
        let generation = self.new_attempt();
        let Some(reactor) = self.reactor.upgrade() else {
            return;
        };
        let interface = match server {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let protocol = UdpAttempt {
            link: self.link(generation),
        };
        let options = UdpOptions::default()
            .interface(interface)
            .max_packet_size(usize::from(u16::MAX));
        let sent = reactor
            .listen_udp_with(0, protocol, options)
            .and_then(|udp| {
                *self.udp.borrow_mut() = Some(udp.clone());
                udp.connect(&Address::Udp(server))?;
                udp.write(data)
            });
        if let Err(err) = sent {
            tracing::debug!("cannot send to {server}: {err}");
            self.exchange.borrow_mut().handle_unreachable(now(&reactor));
        }
    }

    fn send_tcp(self: &Rc<Self>, server: SocketAddr, data: Vec<u8>) {
        let generation = self.new_attempt();
        let Some(reactor) = self.reactor.upgrade() else {
            return;
        };
        let timeout = self
            .exchange
            .borrow()
            .deadline()
            .map(|d| d.saturating_sub(now(&reactor)));
        let factory = Rc::new(TcpAttempt {
            link: self.link(generation),
            server,
            query: RefCell::new(Some(data)),
        });
        let connector = reactor.connect_tcp_with(
            &server.ip().to_string(),
            server.port(),
            factory,
            ConnectOptions::default().timeout(timeout),
        );
        if generation == self.generation.get() && !self.finished() {
            *self.tcp.borrow_mut() = Some(connector);
        } else {
            connector.disconnect();
        }
    }

    fn set_timer(self: &Rc<Self>, deadline: Duration) {
        if let Some(old) = self.timer.borrow_mut().take() {
            let _ = old.cancel();
        }
        let Some(reactor) = self.reactor.upgrade() else {
            return;
        };
        let delay = deadline.saturating_sub(now(&reactor));
        let me = self.clone();
        let call = reactor.call_later(delay, move || {
            let generation = me.generation.get();
            me.handle(generation, |exchange, now| exchange.handle_timeout(now));
        });
        *self.timer.borrow_mut() = Some(call);
    }

    fn close_transports(&self) {
        if let Some(udp) = self.udp.borrow_mut().take() {
            udp.stop_listening();
        }
        if let Some(tcp) = self.tcp.borrow_mut().take() {
            tcp.disconnect();
        }
    }

    /// Ends the exchange: everything closed, the result handed over.
    fn finish(&self, result: Result<Message, Failure>, fallbacks: Vec<SocketAddr>) {
        let Some(on_done) = self.on_done.borrow_mut().take() else {
            return;
        };
        self.generation.set(self.generation.get() + 1);
        self.close_transports();
        if let Some(timer) = self.timer.borrow_mut().take() {
            let _ = timer.cancel();
        }
        on_done(result, fallbacks);
    }

    /// No one waits any more.
    fn abort(&self) {
        self.finish(
            Err(Failure::new(twistor::defer::DeferredError::Cancelled)),
            Vec::new(),
        );
    }

    /// The reactor closed the attempt's socket or connection under us.
    fn shut_down(&self, generation: u64) {
        if generation == self.generation.get() {
            self.finish(Err(Failure::new(twistor::Error::ShuttingDown)), Vec::new());
        }
    }
}

/// What an attempt's socket or connection knows of its driver: a weak handle (the timer
/// keeps the driver alive; a reactor dropped with the attempt pending frees it) and which
/// attempt it serves.
#[derive(Clone)]
struct Link {
    driver: Weak<Driver>,
    generation: u64,
}

impl Link {
    fn handle(&self, f: impl FnOnce(&mut Exchange, Duration)) {
        if let Some(driver) = self.driver.upgrade() {
            driver.handle(self.generation, f);
        }
    }

    fn shut_down(&self) {
        if let Some(driver) = self.driver.upgrade() {
            driver.shut_down(self.generation);
        }
    }
}

/// One UDP attempt's socket.
struct UdpAttempt {
    link: Link,
}

impl DatagramProtocol for UdpAttempt {
    fn datagram_received(&mut self, _transport: &DatagramTransport, data: &[u8], addr: &Address) {
        let Some(from) = addr.socket_addr() else {
            return;
        };
        self.link
            .handle(|exchange, now| exchange.handle_udp(from, data, now));
    }

    fn connection_refused(&mut self, _transport: &DatagramTransport) {
        self.link
            .handle(|exchange, now| exchange.handle_unreachable(now));
    }

    fn stop_protocol(&mut self) {
        self.link.shut_down();
    }
}

/// One TCP attempt: the factory, and the query it writes once connected.
struct TcpAttempt {
    link: Link,
    server: SocketAddr,
    query: RefCell<Option<Vec<u8>>>,
}

impl Factory for TcpAttempt {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(TcpReply {
            link: self.link.clone(),
            server: self.server,
            query: self.query.borrow_mut().take(),
            buffer: Vec::new(),
        }))
    }

    fn noisy(&self) -> bool {
        false
    }
}

impl ClientFactory for TcpAttempt {
    fn client_connection_failed(&self, _connector: &Connector, reason: &twistor::Error) {
        if matches!(reason, twistor::Error::ShuttingDown) {
            self.link.shut_down();
            return;
        }
        tracing::debug!("TCP to {} failed: {reason}", self.server);
        self.link
            .handle(|exchange, now| exchange.handle_tcp_closed(now));
    }
}

/// One TCP attempt's connection: writes the query, reads length-prefixed replies.
struct TcpReply {
    link: Link,
    server: SocketAddr,
    query: Option<Vec<u8>>,
    /// At most one partial message (two length bytes and up to 65,535 more).
    buffer: Vec<u8>,
}

impl Protocol for TcpReply {
    fn connection_made(&mut self, transport: &Transport) {
        if let Some(query) = self.query.take() {
            transport.write(&query);
        }
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        loop {
            let Some(&[hi, lo]) = self.buffer.get(..2) else {
                return;
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let Some(message) = self.buffer.get(2..2 + len) else {
                return;
            };
            let message = message.to_vec();
            self.buffer.drain(..2 + len);
            let server = self.server;
            self.link
                .handle(|exchange, now| exchange.handle_tcp(server, &message, now));
        }
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        if matches!(reason, CloseReason::Lost(twistor::Error::ShuttingDown)) {
            self.link.shut_down();
            return;
        }
        self.link
            .handle(|exchange, now| exchange.handle_tcp_closed(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(search: &[&str], ndots: u32) -> Resolver {
        let reactor = Reactor::new().unwrap();
        let mut config = ResolverConfig::new(vec!["127.0.0.1:53".parse().unwrap()]);
        config.search = search.iter().map(|s| s.to_string()).collect();
        config.ndots = ndots;
        Resolver::new(&reactor, config)
    }

    fn names(r: &Resolver, name: &str) -> Vec<String> {
        r.candidates(name)
            .unwrap()
            .iter()
            .map(|n| n.to_ascii())
            .collect()
    }

    #[test]
    fn rotate_starts_each_query_with_the_next_server() {
        let reactor = Reactor::new().unwrap();
        let servers: Vec<SocketAddr> = ["192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut config = ResolverConfig::new(servers.clone());
        let plain = Resolver::new(&reactor, config.clone());
        assert_eq!(plain.inner.exchange_config().servers, servers);
        assert_eq!(plain.inner.exchange_config().servers, servers);
        config.rotate = true;
        let rotating = Resolver::new(&reactor, config);
        let firsts: Vec<SocketAddr> = (0..4)
            .map(|_| rotating.inner.exchange_config().servers[0])
            .collect();
        assert_eq!(firsts, [servers[0], servers[1], servers[2], servers[0]]);
    }

    #[test]
    fn search_list_order_follows_glibc() {
        let r = resolver(&["a.example", "b.example."], 1);
        assert_eq!(
            names(&r, "www"),
            ["www.a.example.", "www.b.example.", "www."]
        );
        assert_eq!(
            names(&r, "www.corp"),
            ["www.corp.", "www.corp.a.example.", "www.corp.b.example."]
        );
        assert_eq!(names(&r, "www.corp."), ["www.corp."]);
        let r = resolver(&["a.example"], 3);
        assert_eq!(names(&r, "x.y.z"), ["x.y.z.a.example.", "x.y.z."]);
        assert_eq!(names(&r, "w.x.y.z"), ["w.x.y.z.", "w.x.y.z.a.example."]);
        assert!(r.candidates("").is_err());
        assert!(r.candidates("a..b").is_err());
    }

    #[test]
    fn literals_hosts_and_localhost_need_no_server() {
        let reactor = Reactor::new().unwrap();
        let mut config = ResolverConfig::new(vec![]);
        config.hosts = Hosts::parse("192.0.2.7 printer printer.lan\n", "hosts").unwrap();
        let r = Resolver::new(&reactor, config);
        let got = |d: Deferred<Vec<IpAddr>>| d.try_result().unwrap().unwrap();
        assert_eq!(
            got(r.lookup_ip("192.0.2.1")),
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            got(r.lookup_ip("[::1]")),
            ["::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            got(r.lookup_ip("PRINTER.lan.")),
            ["192.0.2.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(got(r.lookup_ip("localhost")).len(), 2);
        let names = r
            .lookup_ptr("192.0.2.7".parse().unwrap())
            .try_result()
            .unwrap()
            .unwrap();
        assert_eq!(names[0].to_ascii(), "printer.");
        let resolved = twistor::endpoints::Resolver::resolve(&r, "printer", 631)
            .try_result()
            .unwrap()
            .unwrap();
        assert_eq!(resolved, ["192.0.2.7:631".parse::<SocketAddr>().unwrap()]);
    }

    fn record(name: &str, data: RData) -> Record {
        Record::from_rdata(Name::from_ascii(name).unwrap(), 60, data)
    }

    fn cname(name: &str, target: &str) -> Record {
        record(
            name,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(
                Name::from_ascii(target).unwrap(),
            )),
        )
    }

    fn a(name: &str) -> Record {
        record(
            name,
            RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        )
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn extract_follows_cname_chains() {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.add_answer(cname("www.example.", "web.example."));
        m.add_answer(cname("web.example.", "host.example."));
        m.add_answer(a("host.example."));
        m.add_answer(a("unrelated.example."));
        match extract(&m, &name("www.example."), RecordType::A) {
            Extracted::Records(r) => {
                assert_eq!(r.len(), 1);
                assert_eq!(r[0].name, name("host.example."));
            }
            _ => panic!("no records"),
        }
        // Asking for the CNAME itself stops at the first link.
        match extract(&m, &name("www.example."), RecordType::CNAME) {
            Extracted::Records(r) => assert_eq!(r.len(), 1),
            _ => panic!("no records"),
        }
        // A chain leaving the server's zone, from a non-recursive server: chase it.
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.add_answer(cname("www.example.", "elsewhere.test."));
        assert!(matches!(
            extract(&m, &name("www.example."), RecordType::A),
            Extracted::Chase(n) if n == name("elsewhere.test.")
        ));
        // From a recursive one: it would have followed, so there is nothing.
        m.metadata.recursion_available = true;
        assert!(matches!(
            extract(&m, &name("www.example."), RecordType::A),
            Extracted::NoRecords
        ));
        // A loop ends.
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.metadata.recursion_available = true;
        m.add_answer(cname("a.example.", "b.example."));
        m.add_answer(cname("b.example.", "a.example."));
        assert!(matches!(
            extract(&m, &name("a.example."), RecordType::A),
            Extracted::NoRecords
        ));
        m.metadata.response_code = ResponseCode::NXDomain;
        assert!(matches!(
            extract(&m, &name("a.example."), RecordType::A),
            Extracted::NoSuchName
        ));
    }
}
