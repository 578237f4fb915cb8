//! The DNS server on the reactor: a UDP protocol and a TCP factory answering from one shared
//! [`Catalog`], through the sans-IO [`authority`](crate::proto::authority) logic.
//!
//! - UDP: each datagram is answered at once; responses pass the
//!   [rate limiter](crate::proto::rrl) first (dropped, or sent truncated so that the client
//!   retries over TCP, beyond the limit).
//! - TCP (RFC 7766): length-prefixed messages, several per connection and pipelined, each
//!   answered in turn; a connection idle for [`ServerOptions::tcp_idle_timeout`] is closed;
//!   reading pauses while the client does not read its answers, so a client that never reads
//!   costs at most one transport buffer. Zone transfers go out here.
//! - Names in none of the zones go to the [`Recursor`], if one is set (forwarding or
//!   recursion), else the catalog answers REFUSED.
//!
//! ```no_run
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use twistor::Reactor;
//! use twistor_dns::proto::authority::Catalog;
//! use twistor_dns::server::{DnsServer, ServerOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reactor = Reactor::new()?;
//! let catalog = Rc::new(RefCell::new(Catalog::new()));
//! let server = DnsServer::new(&reactor, catalog, ServerOptions::default());
//! let udp = server.listen_udp("127.0.0.1:10053".parse()?)?;
//! reactor.listen_tcp(10053, server.tcp_factory())?;
//! reactor.run()?;
//! # Ok(()) }
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use hickory_proto::op::{Message, Metadata, Query};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use twistor::application::Service;
use twistor::defer::{Deferred, Failure};
use twistor::port::ListeningPort;
use twistor::protocol::{DatagramProtocol, Factory, Protocol};
use twistor::tcp::ListenOptions;
use twistor::udp::UdpOptions;
use twistor::{Address, DatagramTransport, Producer, Reactor, ReactorTime, Transport};
use twistor_protocols::policies::TimeoutMixin;

use crate::proto::answers::{self, AnswerCache};
use crate::proto::authority::{Catalog, Outcome, Request, Via};
use crate::proto::header::{self, HEADER_LEN};
use crate::proto::rrl::{self, RateLimiter, ResponseKind, Verdict};

/// How long a TCP connection may sit idle between queries (RFC 7766 recommends seconds,
/// not minutes; NSD's `tcp-timeout` default is 120 s, Knot's `tcp-idle-timeout` 10 s).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP connections open at once by default.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 1000;

/// TCP connections open at once from one address by default (a resolver behind NAT may
/// need several; one client cannot take them all).
pub const DEFAULT_MAX_TCP_PER_CLIENT: usize = 100;

/// The largest query read over UDP: queries are small (a name, an OPT, perhaps a TSIG);
/// a bigger datagram arrives cut short and is answered FORMERR. Small buffers let the
/// engine read 32 datagrams per system call.
const MAX_UDP_QUERY: usize = 4096;

/// Answers the queries for names in none of the server's zones: a forwarder or a
/// recursive resolver. The answer is a whole response message (wire format) for the query,
/// with the query's id.
pub trait Recursor {
    /// Answers `query` (a decoded query message; its one question is the name to resolve).
    /// `via` says how the response travels: a UDP response must fit the client's buffer.
    fn answer(&self, query: Message, via: Via) -> Deferred<Vec<u8>>;
}

/// The server's settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Close TCP connections idle this long.
    pub tcp_idle_timeout: Duration,
    /// UDP responses allowed per second per client network and kind of answer (0: no
    /// limit); see [`rrl`].
    pub rate_limit: u32,
    /// Every `slip`-th rate-limited response goes out truncated (0: drop them all).
    pub slip: u32,
    /// Encoded answers kept for repeated questions (0: none); see
    /// [`answers`].
    pub answer_cache: usize,
    /// TCP connections open at once, at most; more are refused (Knot's
    /// `tcp-max-clients`). Each costs one socket and at most one transport buffer.
    pub max_tcp_connections: usize,
    /// TCP connections open at once from one address, at most.
    pub max_tcp_per_client: usize,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            rate_limit: rrl::DEFAULT_RATE,
            slip: rrl::DEFAULT_SLIP,
            answer_cache: answers::DEFAULT_CAPACITY,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            max_tcp_per_client: DEFAULT_MAX_TCP_PER_CLIENT,
        }
    }
}

/// Called with a zone's name when a NOTIFY for it arrives.
type NotifyHook = Rc<dyn Fn(Name, IpAddr)>;

/// What the UDP protocol and the TCP connections share.
struct Shared {
    catalog: Rc<RefCell<Catalog>>,
    clock: Rc<dyn ReactorTime>,
    options: ServerOptions,
    rrl: RefCell<RateLimiter>,
    answers: RefCell<AnswerCache>,
    /// The catalog's generation the cached answers were made from.
    generation: Cell<u64>,
    recursor: RefCell<Option<Rc<dyn Recursor>>>,
    on_notify: RefCell<Option<NotifyHook>>,
    /// Answers being worked out by the recursor, for the bound below.
    recursing: Rc<Cell<usize>>,
}

/// At most this many queries wait on the recursor at once; beyond, they are answered
/// SERVFAIL (memory stays bounded whatever a flood of queries for outside names does).
const MAX_RECURSING: usize = 10_000;

/// A DNS server: build it over a catalog, then listen with [`listen_udp`](Self::listen_udp)
/// and [`tcp_factory`](Self::tcp_factory) on the same port.
#[derive(Clone)]
pub struct DnsServer {
    shared: Rc<Shared>,
    reactor: Reactor,
    /// Open TCP connections, across all of this server's listeners.
    tcp_open: Rc<OpenConnections>,
}

impl DnsServer {
    /// A server answering from `catalog` (shared: zones can be replaced while it runs).
    pub fn new(
        reactor: &Reactor,
        catalog: Rc<RefCell<Catalog>>,
        options: ServerOptions,
    ) -> DnsServer {
        DnsServer::with_clock(reactor, Rc::new(reactor.clone()), catalog, options)
    }

    /// [`new`](Self::new) with another clock for the timeouts and the rate limiter (tests
    /// pass the fake `Clock`).
    pub fn with_clock(
        reactor: &Reactor,
        clock: Rc<dyn ReactorTime>,
        catalog: Rc<RefCell<Catalog>>,
        options: ServerOptions,
    ) -> DnsServer {
        let rrl = RateLimiter::new(options.rate_limit, options.slip, rrl::DEFAULT_TABLE_SIZE);
        let generation = catalog.borrow().generation();
        let answers = AnswerCache::new(options.answer_cache);
        DnsServer {
            shared: Rc::new(Shared {
                catalog,
                clock,
                options,
                rrl: RefCell::new(rrl),
                answers: RefCell::new(answers),
                generation: Cell::new(generation),
                recursor: RefCell::new(None),
                on_notify: RefCell::new(None),
                recursing: Rc::new(Cell::new(0)),
            }),
            reactor: reactor.clone(),
            tcp_open: Rc::default(),
        }
    }

    /// The catalog the server answers from.
    pub fn catalog(&self) -> &Rc<RefCell<Catalog>> {
        &self.shared.catalog
    }

    /// Sends the queries for names in none of the zones to `recursor` (the catalog must
    /// have recursion on, or it answers them REFUSED itself).
    pub fn set_recursor(&self, recursor: Rc<dyn Recursor>) {
        *self.shared.recursor.borrow_mut() = Some(recursor);
    }

    /// Calls `f` with the zone's name when a NOTIFY for a zone in the catalog arrives (a
    /// secondary refreshes that zone).
    pub fn on_notify(&self, f: impl Fn(Name, IpAddr) + 'static) {
        *self.shared.on_notify.borrow_mut() = Some(Rc::new(f));
    }

    /// Listens for queries over UDP on `addr`.
    pub fn listen_udp(&self, addr: SocketAddr) -> Result<DatagramTransport, twistor::Error> {
        let udp = UdpServer {
            shared: self.shared.clone(),
        };
        let options = UdpOptions::default()
            .interface(addr.ip())
            .max_packet_size(MAX_UDP_QUERY);
        self.reactor.listen_udp_with(addr.port(), udp, options)
    }

    /// Listens on `addr` over UDP and TCP, one port for both as DNS wants. Port 0 picks a
    /// port free for both (the UDP one the system picks, then TCP on its number; tried a
    /// few times if TCP finds it taken).
    pub fn listen(&self, addr: SocketAddr) -> Result<Listening, twistor::Error> {
        let attempts = if addr.port() == 0 { 16 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let udp = self.listen_udp(addr)?;
            let port = udp.port();
            let options = ListenOptions::default().interface(addr.ip()).backlog(1024);
            match self
                .reactor
                .listen_tcp_with(port, self.tcp_factory(), options)
            {
                Ok(tcp) => return Ok(Listening { udp, tcp }),
                Err(err) => {
                    udp.stop_listening();
                    last = Some(err);
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// A factory of TCP connections answering queries (for `listen_tcp` or an endpoint).
    pub fn tcp_factory(&self) -> Rc<dyn Factory> {
        Rc::new(TcpFactory {
            shared: self.shared.clone(),
            open: self.tcp_open.clone(),
        })
    }
}

/// A server's UDP socket and TCP listener on one port.
pub struct Listening {
    udp: DatagramTransport,
    tcp: ListeningPort,
}

impl Listening {
    /// The port both listen on.
    pub fn port(&self) -> u16 {
        self.udp.port()
    }

    /// The UDP socket.
    pub fn udp(&self) -> &DatagramTransport {
        &self.udp
    }

    /// The TCP listener.
    pub fn tcp(&self) -> &ListeningPort {
        &self.tcp
    }

    /// Closes both (connections already open stay until they end or time out).
    pub fn stop(&self) -> Deferred<()> {
        self.udp.stop_listening();
        self.tcp.stop_listening()
    }
}

/// The server as a service (for a `MultiService` tree, as `twist dns` runs it): listens on
/// its address when started, closes both sockets when stopped.
pub struct DnsService {
    server: DnsServer,
    addr: SocketAddr,
    listening: RefCell<Option<Listening>>,
}

impl DnsService {
    /// A service for `server` on `addr` (UDP and TCP).
    pub fn new(server: DnsServer, addr: SocketAddr) -> DnsService {
        DnsService {
            server,
            addr,
            listening: RefCell::new(None),
        }
    }

    /// The port listened on, once started.
    pub fn port(&self) -> Option<u16> {
        self.listening.borrow().as_ref().map(Listening::port)
    }

    /// The server.
    pub fn server(&self) -> &DnsServer {
        &self.server
    }
}

impl Service for DnsService {
    fn start_service(&self) -> Result<(), Failure> {
        if self.listening.borrow().is_some() {
            return Ok(());
        }
        let listening = self.server.listen(self.addr).map_err(Failure::new)?;
        tracing::info!(
            "DNS over UDP and TCP on {} port {}",
            self.addr.ip(),
            listening.port()
        );
        *self.listening.borrow_mut() = Some(listening);
        Ok(())
    }

    fn stop_service(&self) -> Deferred<()> {
        match self.listening.borrow_mut().take() {
            Some(listening) => listening.stop(),
            None => Deferred::succeeded(()),
        }
    }

    fn running(&self) -> bool {
        self.listening.borrow().is_some()
    }
}

impl Shared {
    fn respond(&self, message: &[u8], source: IpAddr, via: Via) -> Outcome {
        let catalog = self.catalog.borrow();
        let mut answers = self.answers.borrow_mut();
        let generation = catalog.generation();
        if self.generation.replace(generation) != generation {
            answers.clear();
        }
        let udp = matches!(via, Via::Udp);
        if let Some(reply) = answers.lookup(message, udp) {
            return Outcome::Reply(reply);
        }
        let outcome = catalog.respond(&Request {
            message,
            source,
            via,
        });
        if let Outcome::Reply(reply) = &outcome {
            answers.insert(message, reply);
        }
        outcome
    }

    fn notified(&self, zone: Name, source: IpAddr) {
        tracing::info!("NOTIFY for {zone} from {source}");
        let hook = self.on_notify.borrow().clone();
        if let Some(hook) = hook {
            hook(zone, source);
        }
    }

    /// Hands `query` to the recursor; `send` gets the answer (or SERVFAIL).
    fn recurse(&self, query: Message, via: Via, send: impl FnOnce(Vec<u8>) + 'static) {
        let recursor = self.recursor.borrow().clone();
        let Some(recursor) = recursor.filter(|_| self.recursing.get() < MAX_RECURSING) else {
            send(servfail_for(query.metadata, &query.queries));
            return;
        };
        // What a SERVFAIL needs, kept in case (it is built only if recursion fails).
        let (metadata, queries) = (query.metadata, query.queries.clone());
        let guard = Recursing::new(&self.recursing);
        recursor.answer(query, via).add_both(move |result| {
            drop(guard);
            match result {
                Ok(reply) => send(reply),
                Err(failure) => {
                    tracing::debug!("recursion failed: {failure}");
                    send(servfail_for(metadata, &queries));
                }
            }
            Ok(Vec::new())
        });
    }

    /// The wire form of the closest zone of ours enclosing the wire-form `name` (`None`
    /// if none does).
    fn zone_of(&self, name: &[u8]) -> Option<Vec<u8>> {
        let catalog = self.catalog.borrow();
        let mut at = 0;
        while let Some(&len) = name.get(at) {
            let suffix = name.get(at..)?;
            let mut decoder = BinDecoder::new(suffix);
            if let Ok(candidate) = Name::read(&mut decoder)
                && catalog.zone(&candidate).is_some()
            {
                return Some(suffix.to_vec());
            }
            if len == 0 {
                return None;
            }
            at += 1 + usize::from(len);
        }
        None
    }

    /// Rate limiting for one UDP reply: what to send, if anything.
    fn limit(&self, client: IpAddr, query: &[u8], reply: Vec<u8>) -> Option<Vec<u8>> {
        let mut rrl = self.rrl.borrow_mut();
        if !rrl.enabled() {
            return Some(reply);
        }
        let kind = match header::rcode(&reply) {
            Some(0) if header::count(&reply, 1).unwrap_or(0) > 0 => ResponseKind::Answer,
            Some(0) if reply.get(2).is_some_and(|b| b & 0x04 != 0) => ResponseKind::Answer,
            Some(0) => ResponseKind::Referral,
            Some(3) => ResponseKind::NxDomain,
            _ => ResponseKind::Error,
        };
        let question = header::question_end(query).and_then(|end| query.get(HEADER_LEN..end - 2));
        let name = header::question_name(query).unwrap_or(b"");
        // Answers count per name and type; NXDOMAINs and referrals per zone (a flood of
        // random names in one zone is one key), as NSD and BIND count them.
        let zone;
        let key: &[u8] = match kind {
            ResponseKind::Answer => question.unwrap_or(b""),
            ResponseKind::NxDomain | ResponseKind::Referral => {
                zone = self.zone_of(name);
                zone.as_deref().unwrap_or(name)
            }
            ResponseKind::Error => b"",
        };
        let now = self.clock.seconds().max(0.0) as u64;
        match rrl.check(client, kind, key, now) {
            Verdict::Send => Some(reply),
            Verdict::Slip => header::truncated_empty(&reply),
            Verdict::Drop => None,
        }
    }
}

/// Counts one query at the recursor while it lives.
struct Recursing(Rc<Cell<usize>>);

impl Recursing {
    fn new(counter: &Rc<Cell<usize>>) -> Recursing {
        counter.set(counter.get() + 1);
        Recursing(counter.clone())
    }
}

impl Drop for Recursing {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// A SERVFAIL response to a query with this header and these questions.
fn servfail_for(query: Metadata, questions: &[Query]) -> Vec<u8> {
    let mut reply = Message::error_msg(
        query.id,
        query.op_code,
        hickory_proto::op::ResponseCode::ServFail,
    );
    reply.add_queries(questions.iter().cloned());
    reply.metadata.recursion_desired = query.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.to_vec().unwrap_or_default()
}

/// The UDP side.
struct UdpServer {
    shared: Rc<Shared>,
}

impl DatagramProtocol for UdpServer {
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], addr: &Address) {
        let Some(peer) = addr.socket_addr() else {
            return;
        };
        // An IPv4 client of a dual-stack socket is itself, not an IPv6 address (for the
        // rate limiter's networks and the transfer ACL).
        let client = peer.ip().to_canonical();
        let reply = match self.shared.respond(data, client, Via::Udp) {
            Outcome::Reply(reply) => reply,
            Outcome::Notified { zone, reply } => {
                self.shared.notified(zone, client);
                reply
            }
            Outcome::Recurse(query) => {
                let transport = transport.clone();
                let addr = addr.clone();
                let shared = Rc::downgrade(&self.shared);
                let query_bytes = data.to_vec();
                self.shared.recurse(query, Via::Udp, move |reply| {
                    // Recursion's answers are rate-limited too (open-resolver reflection).
                    let Some(reply) = shared
                        .upgrade()
                        .and_then(|shared| shared.limit(client, &query_bytes, reply))
                    else {
                        return;
                    };
                    if let Err(err) = transport.write_to(&reply, &addr) {
                        tracing::debug!("reply to {addr} not sent: {err}");
                    }
                });
                return;
            }
            // A transfer never goes over UDP; the catalog refuses it there.
            Outcome::Stream(_) | Outcome::Drop => return,
        };
        if let Some(reply) = self.shared.limit(client, data, reply)
            && let Err(err) = transport.write_to(&reply, addr)
        {
            tracing::debug!("reply to {addr} not sent: {err}");
        }
    }
}

/// Builds a [`TcpSession`] per connection, up to
/// [`ServerOptions::max_tcp_connections`] at once.
struct TcpFactory {
    shared: Rc<Shared>,
    open: Rc<OpenConnections>,
}

/// The open TCP connections: in all and per address.
#[derive(Default)]
struct OpenConnections {
    total: Cell<usize>,
    by_client: RefCell<HashMap<IpAddr, usize>>,
}

impl Factory for TcpFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let peer = addr.socket_addr()?.ip().to_canonical();
        let options = &self.shared.options;
        let total = self.open.total.get();
        let mut by_client = self.open.by_client.borrow_mut();
        let theirs = by_client.get(&peer).copied().unwrap_or(0);
        if total >= options.max_tcp_connections || theirs >= options.max_tcp_per_client {
            tracing::warn!(
                "TCP connection from {peer} refused: {total} open already, {theirs} of them its"
            );
            return None;
        }
        self.open.total.set(total + 1);
        by_client.insert(peer, theirs + 1);
        Some(Box::new(TcpSession {
            shared: self.shared.clone(),
            peer,
            buffer: Vec::new(),
            backlog: Vec::new(),
            paused: Rc::new(Cell::new(false)),
            timeout: None,
            open: self.open.clone(),
        }))
    }

    fn noisy(&self) -> bool {
        false
    }
}

/// Input kept while answers wait unsent, at most (reading is paused meanwhile; a client
/// that sends this much regardless is cut off).
const MAX_BACKLOG: usize = 256 << 10;

/// After the idle timeout has asked a connection to close, how long its unsent answers get
/// before it is aborted (a client that stopped reading would hold it open for ever).
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// One TCP connection: length-prefixed queries in, answers out in the same framing.
struct TcpSession {
    shared: Rc<Shared>,
    peer: IpAddr,
    /// Bytes of a message not yet whole (at most one message's worth).
    buffer: Vec<u8>,
    /// Input not yet looked at, because answers are waiting unsent.
    backlog: Vec<u8>,
    /// The transport's output is above its high-water mark: answer nothing more until it
    /// drains.
    paused: Rc<Cell<bool>>,
    timeout: Option<TimeoutMixin>,
    /// The factory's count of open connections.
    open: Rc<OpenConnections>,
}

impl Drop for TcpSession {
    fn drop(&mut self) {
        self.open.total.set(self.open.total.get().saturating_sub(1));
        let mut by_client = self.open.by_client.borrow_mut();
        if let Some(n) = by_client.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                by_client.remove(&self.peer);
            }
        }
    }
}

impl TcpSession {
    fn answer(&mut self, transport: &Transport, query: &[u8]) {
        match self.shared.respond(query, self.peer, Via::Tcp) {
            Outcome::Reply(reply) => send_framed(transport, &reply),
            Outcome::Notified { zone, reply } => {
                self.shared.notified(zone, self.peer);
                send_framed(transport, &reply);
            }
            Outcome::Stream(messages) => {
                let bytes: usize = messages.iter().map(Vec::len).sum();
                tracing::info!(
                    "zone transfer to {}: {} messages, {bytes} bytes",
                    self.peer,
                    messages.len()
                );
                for message in &messages {
                    send_framed(transport, message);
                }
            }
            Outcome::Recurse(query) => {
                let transport = transport.clone();
                self.shared.recurse(query, Via::Tcp, move |reply| {
                    send_framed(&transport, &reply)
                });
            }
            Outcome::Drop => {}
        }
    }

    /// Answers every whole message in `data` (after the partial one buffered), until the
    /// output backs up: the rest is kept in the backlog for when it drains.
    fn consume(&mut self, transport: &Transport, mut data: &[u8]) {
        loop {
            if self.paused.get() {
                self.backlog.extend_from_slice(data);
                if self.backlog.len() > MAX_BACKLOG {
                    tracing::info!(
                        "{} sends queries without reading answers: cut off",
                        self.peer
                    );
                    transport.abort_connection();
                }
                return;
            }
            if !self.buffer.is_empty() {
                // The length prefix first (it may have come one byte at a time)…
                if self.buffer.len() < 2 {
                    let take = (2 - self.buffer.len()).min(data.len());
                    self.buffer.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buffer.len() < 2 {
                        return;
                    }
                }
                // …then the message.
                let len = u16::from_be_bytes([self.buffer[0], self.buffer[1]]) as usize;
                let take = (2 + len - self.buffer.len()).min(data.len());
                self.buffer.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.buffer.len() < 2 + len {
                    return; // all of `data` is taken
                }
                let message = std::mem::take(&mut self.buffer);
                self.answer(transport, &message[2..]);
                continue;
            }
            // Whole messages straight from `data` when nothing is buffered (the usual case).
            match data {
                [] => return,
                [hi, lo, rest @ ..] => {
                    let len = u16::from_be_bytes([*hi, *lo]) as usize;
                    if rest.len() >= len {
                        let (message, tail) = rest.split_at(len);
                        self.answer(transport, message);
                        data = tail;
                        continue;
                    }
                    self.buffer.reserve_exact(2 + len);
                    self.buffer.extend_from_slice(data);
                    return;
                }
                [_] => {
                    self.buffer.extend_from_slice(data);
                    return;
                }
            }
        }
    }

    /// The output drained: answer what came meanwhile.
    fn drain_backlog(&mut self, transport: &Transport) {
        let backlog = std::mem::take(&mut self.backlog);
        self.consume(transport, &backlog);
    }
}

fn send_framed(transport: &Transport, message: &[u8]) {
    let Ok(len) = u16::try_from(message.len()) else {
        tracing::warn!(
            "a {}-byte answer is too long for TCP: not sent",
            message.len()
        );
        return;
    };
    transport.write_sequence(&[&len.to_be_bytes(), message]);
}

/// Stops reading while a connection's answers back up, and has the waiting queries
/// answered once they drain.
struct Backpressure {
    transport: Transport,
    paused: Rc<Cell<bool>>,
}

impl Producer for Backpressure {
    fn pause_producing(&self) {
        self.paused.set(true);
        self.transport.pause_producing();
    }

    fn resume_producing(&self) {
        self.paused.set(false);
        self.transport.resume_producing();
        let _ = self
            .transport
            .call_later(Duration::ZERO, |session: &mut TcpSession, t| {
                session.drain_backlog(t)
            });
    }

    fn stop_producing(&self) {}
}

impl Protocol for TcpSession {
    fn connection_made(&mut self, transport: &Transport) {
        tracing::debug!("TCP connection from {}", self.peer);
        let _ = transport.register_producer(
            Backpressure {
                transport: transport.clone(),
                paused: self.paused.clone(),
            },
            true,
        );
        // Idle: close; still not gone after the grace (a client that reads nothing): abort.
        let t = transport.clone();
        let clock = self.shared.clock.clone();
        let peer = self.peer;
        let timeout = TimeoutMixin::new(self.shared.clock.clone(), move || {
            tracing::debug!("TCP connection from {peer} idle: closed");
            t.lose_connection();
            let t = t.clone();
            clock.call_later(CLOSE_GRACE, move || t.abort_connection());
        });
        timeout.set_timeout(Some(self.shared.options.tcp_idle_timeout));
        self.timeout = Some(timeout);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if let Some(timeout) = &self.timeout {
            timeout.reset_timeout();
        }
        if !self.backlog.is_empty() {
            // Keep the order: what came first is answered first.
            let mut backlog = std::mem::take(&mut self.backlog);
            backlog.extend_from_slice(data);
            self.consume(transport, &backlog);
        } else {
            self.consume(transport, data);
        }
    }

    fn connection_lost(&mut self, _reason: &twistor::CloseReason) {
        if let Some(timeout) = self.timeout.take() {
            timeout.cancel_timeout();
        }
        self.backlog = Vec::new();
    }
}
