//! The client's query state machine: one [`Exchange`] per question, sans IO.
//!
//! An exchange asks each configured server in turn, for `attempts` rounds, waiting `timeout`
//! for each attempt. Every attempt has a fresh random 16-bit id and, with 0x20 on, a fresh
//! random mixing of the question name's case. A reply is accepted only if it comes from the
//! server asked, carries the attempt's id, and echoes the question (byte for byte in case
//! when 0x20 was used); anything else is ignored and the exchange keeps waiting, so a
//! spoofer has to guess the id, the source port (the adapter uses a fresh socket per
//! attempt) and the case of the name.
//!
//! What the replies decide:
//!
//! - NOERROR, NXDOMAIN (and any other final code): done, with the response.
//! - TC over UDP: the same server again over TCP.
//! - SERVFAIL, REFUSED, NOTIMP: the next server.
//! - FORMERR to a query with EDNS, without an OPT in the reply: the same server again
//!   without EDNS (RFC 6891 §7); otherwise the next server.
//! - The echoed question matches except in case (the server does not preserve case, as
//!   some middleboxes do not): the reply is not accepted, but the same server is asked
//!   again at once without 0x20 (Unbound's "caps fallback", simplified), and
//!   [`Exchange::case_fallbacks`] names it so the caller can skip 0x20 for it from then on.
//!
//! # Driving it
//!
//! ```text
//! let mut exchange = Exchange::new(question, &config, now);
//! loop {
//!     while let Some(output) = exchange.poll_output() {
//!         match output {
//!             Output::Udp { server, data } => { /* new socket, send data to server */ }
//!             Output::Tcp { server, data } => { /* connect, write data (already framed) */ }
//!             Output::Timer(deadline) => { /* call handle_timeout at deadline */ }
//!             Output::Done(result) => return result,
//!         }
//!     }
//!     // wait for a datagram (handle_udp), a TCP message (handle_tcp), a TCP failure
//!     // (handle_tcp_closed), an ICMP refusal (handle_unreachable) or the timer
//!     // (handle_timeout), then poll again.
//! }
//! ```
//!
//! Time is a [`Duration`] since any fixed origin; on the reactor,
//! `Duration::from_secs_f64(clock.seconds())`. Each `Udp`/`Tcp` output starts a new
//! attempt: the adapter drops the previous attempt's socket or connection then, and after
//! `Done` all of them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::error::Error;

/// The EDNS0 buffer size advertised by default (the DNS Flag Day 2020 value).
pub const DEFAULT_EDNS_PAYLOAD: u16 = 1232;

/// How an [`Exchange`] asks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangeConfig {
    /// The servers, asked in this order.
    pub servers: Vec<SocketAddr>,
    /// How long each attempt waits for its reply (default 5 s, glibc's).
    pub timeout: Duration,
    /// Rounds over the server list (default 2, glibc's).
    pub attempts: u32,
    /// The EDNS0 UDP buffer size to advertise; `None` sends no OPT record.
    pub edns_payload: Option<u16>,
    /// Mixes the question name's case randomly (draft-vixie-dnsext-dns0x20).
    pub use_0x20: bool,
    /// Servers known not to preserve case: asked without 0x20.
    pub no_0x20: Vec<SocketAddr>,
    /// Sets the RD bit (default on: a stub asks recursive servers).
    pub recursion_desired: bool,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            servers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            edns_payload: Some(DEFAULT_EDNS_PAYLOAD),
            use_0x20: false,
            no_0x20: Vec::new(),
            recursion_desired: true,
        }
    }
}

impl ExchangeConfig {
    /// The defaults, asking `servers`.
    pub fn new(servers: Vec<SocketAddr>) -> ExchangeConfig {
        ExchangeConfig {
            servers,
            ..ExchangeConfig::default()
        }
    }
}

/// What the exchange wants done next.
#[derive(Debug)]
pub enum Output {
    /// Send `data` as one datagram to `server`, from a new socket on a random port (the
    /// previous attempt's socket can be closed).
    Udp {
        /// The server to ask.
        server: SocketAddr,
        /// The query message.
        data: Vec<u8>,
    },
    /// Open a TCP connection to `server` and write `data` (the query with its two-byte
    /// length prefix).
    Tcp {
        /// The server to ask.
        server: SocketAddr,
        /// The framed query message.
        data: Vec<u8>,
    },
    /// Call [`Exchange::handle_timeout`] at this time (it replaces any earlier timer).
    Timer(Duration),
    /// The exchange is over: the accepted response (its question as asked, before any 0x20
    /// mixing), or why there is none. Nothing follows.
    Done(Result<Message, Error>),
}

/// One question's exchange with the servers.
#[derive(Debug)]
pub struct Exchange {
    /// The question as the caller asked it.
    question: Query,
    /// Header bits and EDNS flags copied from a forwarded request.
    template: Template,
    config: ExchangeConfig,
    /// Attempts started so far, counting only those that consume the plan (not the
    /// immediate retries: TCP after TC, without EDNS, without 0x20).
    planned: usize,
    current: Option<Attempt>,
    outputs: VecDeque<Output>,
    finished: bool,
    /// Why the last server failed, for the final error.
    last_failure: Option<Error>,
    no_edns: Vec<SocketAddr>,
    case_fallbacks: Vec<SocketAddr>,
}

/// What a forwarded request asks for beyond its question.
#[derive(Debug, Clone, Default)]
struct Template {
    checking_disabled: bool,
    dnssec_ok: bool,
    /// Sends a NOTIFY (RFC 1996: opcode NOTIFY, AA set) instead of a query.
    notify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// The attempt in flight.
#[derive(Debug)]
struct Attempt {
    server: SocketAddr,
    id: u16,
    /// The question as sent (case mixed or not).
    sent: Query,
    transport: Transport,
    edns: bool,
    mixed_case: bool,
    deadline: Duration,
}

/// How a reply relates to the attempt in flight.
enum Verdict {
    /// Not ours (or garbage): keep waiting.
    Ignore,
    /// Ours, but the server changed the name's case.
    CaseMismatch,
    /// Ours.
    Accept(Box<Message>),
}

impl Exchange {
    /// Starts asking `question` (class IN unless set otherwise) of `config.servers`.
    pub fn new(question: Query, config: &ExchangeConfig, now: Duration) -> Exchange {
        Exchange::with_template(question, Template::default(), config, now)
    }

    /// Starts forwarding `request`'s (first) question upstream, keeping its CD bit and
    /// EDNS DO bit. The response comes back with this exchange's id: the forwarder puts
    /// its client's id back. Fails if the request has no question.
    pub fn forward(
        request: &Message,
        config: &ExchangeConfig,
        now: Duration,
    ) -> Result<Exchange, Error> {
        let question = request
            .queries
            .first()
            .cloned()
            .ok_or_else(|| Error::Invalid("a request without a question".into()))?;
        let template = Template {
            checking_disabled: request.metadata.checking_disabled,
            dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            notify: false,
        };
        Ok(Exchange::with_template(question, template, config, now))
    }

    /// Starts telling `config.servers` (secondaries) that `zone` changed (RFC 1996): a
    /// NOTIFY for its SOA, retried like a query until each answers. Done with the first
    /// acknowledgement; ask each secondary with its own exchange.
    pub fn notify(zone: Name, config: &ExchangeConfig, now: Duration) -> Exchange {
        let template = Template {
            notify: true,
            ..Template::default()
        };
        Exchange::with_template(Query::query(zone, RecordType::SOA), template, config, now)
    }

    fn with_template(
        question: Query,
        template: Template,
        config: &ExchangeConfig,
        now: Duration,
    ) -> Exchange {
        let mut exchange = Exchange {
            question,
            template,
            config: config.clone(),
            planned: 0,
            current: None,
            outputs: VecDeque::new(),
            finished: false,
            last_failure: None,
            no_edns: Vec::new(),
            case_fallbacks: Vec::new(),
        };
        exchange.next_server(now);
        exchange
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due, if an attempt is in flight.
    pub fn deadline(&self) -> Option<Duration> {
        self.current.as_ref().map(|a| a.deadline)
    }

    /// Whether the exchange is over (`Done` has been queued).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The question as asked.
    pub fn question(&self) -> &Query {
        &self.question
    }

    /// The server of the attempt in flight.
    pub fn server(&self) -> Option<SocketAddr> {
        self.current.as_ref().map(|a| a.server)
    }

    /// Servers that were found not to preserve the question's case during this exchange.
    pub fn case_fallbacks(&self) -> &[SocketAddr] {
        &self.case_fallbacks
    }

    /// Time passes: an attempt whose deadline is reached gives way to the next one.
    pub fn handle_timeout(&mut self, now: Duration) {
        let Some(attempt) = &self.current else { return };
        if now < attempt.deadline {
            self.outputs.push_back(Output::Timer(attempt.deadline));
            return;
        }
        tracing::debug!(
            "no reply from {} over {:?} for {}",
            attempt.server,
            attempt.transport,
            self.question.name()
        );
        self.last_failure.get_or_insert(Error::Timeout {
            name: self.name_text(),
        });
        self.next_server(now);
    }

    /// A datagram arrived from `from` on the current attempt's socket.
    pub fn handle_udp(&mut self, from: SocketAddr, data: &[u8], now: Duration) {
        self.handle_reply(Transport::Udp, from, data, now)
    }

    /// A whole message (without its length prefix) arrived over the current attempt's TCP
    /// connection to `from`.
    pub fn handle_tcp(&mut self, from: SocketAddr, data: &[u8], now: Duration) {
        self.handle_reply(Transport::Tcp, from, data, now)
    }

    /// The current attempt's TCP connection failed or closed before a reply: the next
    /// server.
    pub fn handle_tcp_closed(&mut self, now: Duration) {
        if matches!(&self.current, Some(a) if a.transport == Transport::Tcp) {
            self.last_failure = Some(Error::Timeout {
                name: self.name_text(),
            });
            self.next_server(now);
        }
    }

    /// The current server is unreachable (ICMP port unreachable on the UDP socket, or the
    /// datagram could not be sent): the next server, without waiting for the timeout.
    pub fn handle_unreachable(&mut self, now: Duration) {
        if self.current.is_some() {
            self.last_failure.get_or_insert(Error::Timeout {
                name: self.name_text(),
            });
            self.next_server(now);
        }
    }

    fn handle_reply(&mut self, transport: Transport, from: SocketAddr, data: &[u8], now: Duration) {
        let verdict = match &self.current {
            Some(attempt) if attempt.transport == transport => judge(attempt, from, data),
            _ => Verdict::Ignore,
        };
        let Some(attempt) = self.current.take() else {
            return;
        };
        let mut response = match verdict {
            Verdict::Ignore => {
                self.current = Some(attempt);
                return;
            }
            Verdict::CaseMismatch => {
                tracing::debug!("{} does not preserve case: asking without 0x20", from);
                self.case_fallbacks.push(attempt.server);
                self.send(attempt.server, Transport::Udp, now);
                return;
            }
            Verdict::Accept(response) => *response,
        };
        let code = response.metadata.response_code;
        if response.metadata.truncation && transport == Transport::Udp {
            tracing::debug!("truncated reply from {from}: retrying over TCP");
            self.send(attempt.server, Transport::Tcp, now);
            return;
        }
        match code {
            ResponseCode::FormErr if attempt.edns && response.edns.is_none() => {
                tracing::debug!("FORMERR from {from} to EDNS: asking without");
                self.no_edns.push(attempt.server);
                self.send(attempt.server, transport, now);
            }
            ResponseCode::ServFail
            | ResponseCode::Refused
            | ResponseCode::NotImp
            | ResponseCode::FormErr => {
                tracing::debug!("{from} answered {code}: next server");
                self.last_failure = Some(Error::Server {
                    name: self.name_text(),
                    code: code.to_string(),
                });
                self.next_server(now);
            }
            _ => {
                // Give the question back as asked: the mixed case was ours.
                if attempt.mixed_case {
                    unmix(&mut response, attempt.sent.name(), self.question.name());
                }
                response.queries = vec![self.question.clone()];
                self.finish(Ok(response));
            }
        }
    }

    /// Starts the next planned attempt, or finishes if there is none.
    fn next_server(&mut self, now: Duration) {
        self.current = None;
        let servers = self.config.servers.len();
        let total = servers.saturating_mul(self.config.attempts.max(1) as usize);
        if servers == 0 {
            self.finish(Err(Error::Invalid("no DNS servers configured".into())));
            return;
        }
        if self.planned >= total {
            let failure = self.last_failure.take().unwrap_or(Error::Timeout {
                name: self.name_text(),
            });
            self.finish(Err(failure));
            return;
        }
        let server = self.config.servers[self.planned % servers];
        self.planned += 1;
        self.send(server, Transport::Udp, now);
    }

    /// Sends a new attempt to `server`.
    fn send(&mut self, server: SocketAddr, transport: Transport, now: Duration) {
        let id: u16 = rand::random();
        let mixed_case = self.config.use_0x20
            && !self.config.no_0x20.contains(&server)
            && !self.case_fallbacks.contains(&server);
        let edns = self.config.edns_payload.is_some() && !self.no_edns.contains(&server);
        let mut sent = self.question.clone();
        if mixed_case {
            let mut name = sent.name().clone();
            name.randomize_label_case();
            sent.set_name(name);
        }
        let op_code = if self.template.notify {
            OpCode::Notify
        } else {
            OpCode::Query
        };
        let mut message = Message::new(id, MessageType::Query, op_code);
        message.metadata.authoritative = self.template.notify;
        message.metadata.recursion_desired = self.config.recursion_desired && !self.template.notify;
        message.metadata.checking_disabled = self.template.checking_disabled;
        message.add_query(sent.clone());
        if edns {
            let mut opt = Edns::new();
            opt.set_max_payload(self.config.edns_payload.unwrap_or(DEFAULT_EDNS_PAYLOAD));
            opt.set_dnssec_ok(self.template.dnssec_ok);
            message.set_edns(opt);
        }
        let bytes = match message.to_vec() {
            Ok(bytes) => bytes,
            Err(err) => {
                self.finish(Err(Error::Message(err.to_string())));
                return;
            }
        };
        let deadline = now.saturating_add(self.config.timeout);
        self.current = Some(Attempt {
            server,
            id,
            sent,
            transport,
            edns,
            mixed_case,
            deadline,
        });
        let output = match transport {
            Transport::Udp => Output::Udp {
                server,
                data: bytes,
            },
            Transport::Tcp => {
                // A question-only message is far below 64 KiB.
                let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
                let mut framed = Vec::with_capacity(bytes.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&bytes);
                Output::Tcp {
                    server,
                    data: framed,
                }
            }
        };
        self.outputs.push_back(output);
        self.outputs.push_back(Output::Timer(deadline));
    }

    fn finish(&mut self, result: Result<Message, Error>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.current = None;
        self.outputs.clear();
        self.outputs.push_back(Output::Done(result));
    }

    fn name_text(&self) -> String {
        self.question.name().to_string()
    }
}

/// Puts the case of the question back wherever the server copied our mixed case into the
/// response: owner names and the names in common record data whose last labels are, byte
/// for byte, the last labels of the name we sent (name compression points there).
fn unmix(response: &mut Message, sent: &Name, original: &Name) {
    let fix = |name: &mut Name| {
        if let Some(fixed) = unmixed(name, sent, original) {
            *name = fixed;
        }
    };
    for record in response
        .answers
        .iter_mut()
        .chain(response.authorities.iter_mut())
        .chain(response.additionals.iter_mut())
    {
        fix(&mut record.name);
        match &mut record.data {
            RData::CNAME(name) => fix(&mut name.0),
            RData::NS(name) => fix(&mut name.0),
            RData::PTR(name) => fix(&mut name.0),
            RData::MX(mx) => fix(&mut mx.exchange),
            RData::SRV(srv) => fix(&mut srv.target),
            RData::SOA(soa) => {
                fix(&mut soa.mname);
                fix(&mut soa.rname);
            }
            _ => {}
        }
    }
}

/// `name` with its trailing labels that equal `sent`'s exactly replaced by `original`'s;
/// `None` if none do.
fn unmixed(name: &Name, sent: &Name, original: &Name) -> Option<Name> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let common = labels
        .iter()
        .rev()
        .zip(sent.iter().rev())
        .take_while(|(a, b)| a == &b)
        .count();
    if common == 0 {
        return None;
    }
    let keep = labels.len() - common;
    let tail: Vec<&[u8]> = original.iter().collect();
    let tail = tail.get(tail.len().checked_sub(common)?..)?;
    let mut fixed = Name::from_labels(labels[..keep].iter().chain(tail).copied()).ok()?;
    fixed.set_fqdn(name.is_fqdn());
    Some(fixed)
}

/// Whether `data` from `from` answers `attempt`.
fn judge(attempt: &Attempt, from: SocketAddr, data: &[u8]) -> Verdict {
    if from != attempt.server {
        tracing::debug!("reply from {from}, not {}: ignored", attempt.server);
        return Verdict::Ignore;
    }
    let Ok(message) = Message::from_vec(data) else {
        tracing::debug!("undecodable reply from {from}: ignored");
        return Verdict::Ignore;
    };
    let meta = &message.metadata;
    if meta.id != attempt.id || meta.message_type != MessageType::Response {
        tracing::debug!("reply from {from} with a wrong id or not a response: ignored");
        return Verdict::Ignore;
    }
    let code = meta.response_code;
    match message.queries.as_slice() {
        // Some servers drop the question from their error replies. Accepting those can at
        // worst make us skip a server or drop EDNS, never accept an answer.
        [] if matches!(
            code,
            ResponseCode::FormErr | ResponseCode::NotImp | ResponseCode::Refused
        ) && !meta.truncation =>
        {
            Verdict::Accept(Box::new(message))
        }
        [q] if q.query_type() == attempt.sent.query_type()
            && q.query_class() == attempt.sent.query_class()
            && q.name() == attempt.sent.name() =>
        {
            if attempt.mixed_case && !q.name().eq_case(attempt.sent.name()) {
                Verdict::CaseMismatch
            } else {
                Verdict::Accept(Box::new(message))
            }
        }
        _ => {
            tracing::debug!("reply from {from} to another question: ignored");
            Verdict::Ignore
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{A, CNAME, SOA};
    use hickory_proto::rr::{Record, RecordType};

    use super::*;

    const S1: &str = "192.0.2.1:53";
    const S2: &str = "192.0.2.2:53";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn question(name: &str) -> Query {
        Query::query(Name::from_str(name).unwrap(), RecordType::A)
    }

    fn config(servers: &[&str]) -> ExchangeConfig {
        ExchangeConfig::new(servers.iter().map(|s| addr(s)).collect())
    }

    /// Drains the outputs: the sends (transport, server, request) and the last timer/done.
    struct Drained {
        sends: Vec<(bool, SocketAddr, Message)>,
        timer: Option<Duration>,
        done: Option<Result<Message, Error>>,
    }

    fn drain(ex: &mut Exchange) -> Drained {
        let mut d = Drained {
            sends: Vec::new(),
            timer: None,
            done: None,
        };
        while let Some(out) = ex.poll_output() {
            match out {
                Output::Udp { server, data } => {
                    d.sends
                        .push((false, server, Message::from_vec(&data).unwrap()))
                }
                Output::Tcp { server, data } => {
                    let len = u16::from_be_bytes([data[0], data[1]]) as usize;
                    assert_eq!(len, data.len() - 2);
                    d.sends
                        .push((true, server, Message::from_vec(&data[2..]).unwrap()))
                }
                Output::Timer(t) => d.timer = Some(t),
                Output::Done(r) => d.done = Some(r),
            }
        }
        d
    }

    /// A reply to `request` with `code` and one A record.
    fn reply(request: &Message, code: ResponseCode) -> Message {
        let mut m = Message::response(request.metadata.id, OpCode::Query);
        m.metadata.response_code = code;
        m.add_queries(request.queries.iter().cloned());
        if code == ResponseCode::NoError {
            let name = request.queries[0].name().clone();
            m.add_answer(Record::from_rdata(
                name,
                300,
                RData::A(A::new(192, 0, 2, 80)),
            ));
        }
        m
    }

    fn bytes(m: &Message) -> Vec<u8> {
        m.to_vec().unwrap()
    }

    #[test]
    fn asks_the_first_server_and_accepts_a_matching_reply() {
        let mut ex = Exchange::new(question("www.example.com."), &config(&[S1, S2]), secs(10));
        let d = drain(&mut ex);
        assert_eq!(d.sends.len(), 1);
        let (tcp, server, request) = &d.sends[0];
        assert!(!tcp);
        assert_eq!(*server, addr(S1));
        assert!(request.metadata.recursion_desired);
        assert_eq!(request.edns.as_ref().unwrap().max_payload(), 1232);
        assert_eq!(d.timer, Some(secs(15)));
        ex.handle_udp(
            addr(S1),
            &bytes(&reply(request, ResponseCode::NoError)),
            secs(11),
        );
        let d = drain(&mut ex);
        let response = d.done.unwrap().unwrap();
        assert_eq!(response.answers.len(), 1);
        assert!(ex.is_finished());
    }

    #[test]
    fn a_notify_is_an_authoritative_notify_for_the_soa_retried_until_acknowledged() {
        let zone = Name::from_str("example.test.").unwrap();
        let mut cfg = config(&[S1]);
        cfg.timeout = secs(2);
        cfg.attempts = 3;
        let mut ex = Exchange::notify(zone.clone(), &cfg, secs(0));
        let first = drain(&mut ex);
        let (_, _, request) = &first.sends[0];
        assert_eq!(request.metadata.op_code, OpCode::Notify);
        assert!(request.metadata.authoritative && !request.metadata.recursion_desired);
        assert_eq!(request.queries[0].query_type(), RecordType::SOA);
        assert_eq!(request.queries[0].name(), &zone);
        // Unacknowledged: sent again.
        ex.handle_timeout(secs(2));
        let second = drain(&mut ex);
        let (_, _, request) = &second.sends[0];
        assert_eq!(request.metadata.op_code, OpCode::Notify);
        let mut ack = Message::response(request.metadata.id, OpCode::Notify);
        ack.metadata.authoritative = true;
        ack.add_queries(request.queries.iter().cloned());
        ex.handle_udp(addr(S1), &bytes(&ack), secs(3));
        assert!(drain(&mut ex).done.unwrap().is_ok());
    }

    #[test]
    fn each_attempt_has_a_fresh_id_and_servers_rotate_for_each_round() {
        let mut cfg = config(&[S1, S2]);
        cfg.attempts = 2;
        cfg.timeout = secs(2);
        let mut ex = Exchange::new(question("a.example."), &cfg, secs(0));
        let mut ids = Vec::new();
        let mut servers = Vec::new();
        let mut now = secs(0);
        for _ in 0..4 {
            let d = drain(&mut ex);
            let (_, server, request) = &d.sends[0];
            servers.push(*server);
            ids.push(request.metadata.id);
            assert_eq!(d.timer, Some(now + secs(2)));
            // Early: nothing happens but the timer is re-armed.
            ex.handle_timeout(now + secs(1));
            assert!(drain(&mut ex).sends.is_empty());
            now += secs(2);
            ex.handle_timeout(now);
        }
        assert_eq!(servers, [S1, S2, S1, S2].map(addr));
        let d = drain(&mut ex);
        assert!(matches!(d.done, Some(Err(Error::Timeout { .. }))));
        // Four random 16-bit ids: a collision among them is a 1-in-10,000 event.
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert!(unique.len() >= 3, "{ids:?}");
    }

    #[test]
    fn wrong_id_source_or_question_is_ignored() {
        let mut ex = Exchange::new(question("www.example.com."), &config(&[S1]), secs(0));
        let request = drain(&mut ex).sends.remove(0).2;
        let good = reply(&request, ResponseCode::NoError);

        let mut wrong_id = good.clone();
        wrong_id.metadata.id = request.metadata.id.wrapping_add(1);
        ex.handle_udp(addr(S1), &bytes(&wrong_id), secs(1));

        ex.handle_udp(addr(S2), &bytes(&good), secs(1));
        ex.handle_udp(addr("192.0.2.1:5353"), &bytes(&good), secs(1));

        let mut wrong_question = good.clone();
        wrong_question.queries = vec![question("evil.example.com.")];
        ex.handle_udp(addr(S1), &bytes(&wrong_question), secs(1));

        let mut wrong_type = good.clone();
        wrong_type.queries[0].set_query_type(RecordType::AAAA);
        ex.handle_udp(addr(S1), &bytes(&wrong_type), secs(1));

        let mut no_question = good.clone();
        no_question.queries.clear();
        ex.handle_udp(addr(S1), &bytes(&no_question), secs(1));

        let mut a_query = good.clone();
        a_query.metadata.message_type = MessageType::Query;
        ex.handle_udp(addr(S1), &bytes(&a_query), secs(1));

        ex.handle_udp(addr(S1), b"\x00garbage", secs(1));
        ex.handle_udp(addr(S1), &[], secs(1));
        // Over TCP while the attempt is UDP.
        ex.handle_tcp(addr(S1), &bytes(&good), secs(1));

        let d = drain(&mut ex);
        assert!(d.sends.is_empty() && d.done.is_none());
        assert!(!ex.is_finished());
        ex.handle_udp(addr(S1), &bytes(&good), secs(2));
        assert!(drain(&mut ex).done.unwrap().is_ok());
    }

    #[test]
    fn truncated_udp_reply_is_retried_over_tcp_to_the_same_server() {
        let mut ex = Exchange::new(question("big.example."), &config(&[S1, S2]), secs(0));
        let request = drain(&mut ex).sends.remove(0).2;
        let mut tc = reply(&request, ResponseCode::NoError);
        tc.answers.clear();
        tc.metadata.truncation = true;
        ex.handle_udp(addr(S1), &bytes(&tc), secs(1));
        let d = drain(&mut ex);
        let (tcp, server, tcp_request) = &d.sends[0];
        assert!(*tcp);
        assert_eq!(*server, addr(S1));
        assert_eq!(d.timer, Some(secs(6)));
        // A late UDP reply to the old attempt is no longer accepted.
        ex.handle_udp(
            addr(S1),
            &bytes(&reply(&request, ResponseCode::NoError)),
            secs(2),
        );
        assert!(drain(&mut ex).done.is_none());
        ex.handle_tcp(
            addr(S1),
            &bytes(&reply(tcp_request, ResponseCode::NoError)),
            secs(2),
        );
        assert_eq!(drain(&mut ex).done.unwrap().unwrap().answers.len(), 1);
    }

    #[test]
    fn tcp_failure_moves_to_the_next_server() {
        let mut ex = Exchange::new(question("big.example."), &config(&[S1, S2]), secs(0));
        let request = drain(&mut ex).sends.remove(0).2;
        let mut tc = reply(&request, ResponseCode::NoError);
        tc.metadata.truncation = true;
        ex.handle_udp(addr(S1), &bytes(&tc), secs(1));
        assert!(drain(&mut ex).sends[0].0);
        ex.handle_tcp_closed(secs(1));
        let d = drain(&mut ex);
        assert_eq!(d.sends[0].1, addr(S2));
        assert!(!d.sends[0].0);
    }

    #[test]
    fn servfail_refused_notimp_try_the_next_server_then_fail() {
        let mut cfg = config(&[S1, S2]);
        cfg.attempts = 1;
        for code in [
            ResponseCode::ServFail,
            ResponseCode::Refused,
            ResponseCode::NotImp,
        ] {
            let mut ex = Exchange::new(question("x.example."), &cfg, secs(0));
            let request = drain(&mut ex).sends.remove(0).2;
            ex.handle_udp(addr(S1), &bytes(&reply(&request, code)), secs(0));
            let d = drain(&mut ex);
            let (_, server, request) = &d.sends[0];
            assert_eq!(*server, addr(S2));
            ex.handle_udp(addr(S2), &bytes(&reply(request, code)), secs(0));
            match drain(&mut ex).done.unwrap() {
                Err(Error::Server { code: c, .. }) => assert_eq!(c, code.to_string()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn nxdomain_is_a_final_answer() {
        let mut ex = Exchange::new(question("nope.example."), &config(&[S1, S2]), secs(0));
        let request = drain(&mut ex).sends.remove(0).2;
        let mut nx = reply(&request, ResponseCode::NXDomain);
        nx.add_authority(Record::from_rdata(
            Name::from_str("example.").unwrap(),
            60,
            RData::SOA(SOA::new(
                Name::from_str("ns.example.").unwrap(),
                Name::from_str("host.example.").unwrap(),
                1,
                2,
                3,
                4,
                30,
            )),
        ));
        ex.handle_udp(addr(S1), &bytes(&nx), secs(0));
        let response = drain(&mut ex).done.unwrap().unwrap();
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(response.authorities.len(), 1);
    }

    #[test]
    fn formerr_to_edns_retries_without_it() {
        let mut ex = Exchange::new(question("old.example."), &config(&[S1, S2]), secs(0));
        let request = drain(&mut ex).sends.remove(0).2;
        assert!(request.edns.is_some());
        let mut formerr = reply(&request, ResponseCode::FormErr);
        formerr.queries.clear();
        ex.handle_udp(addr(S1), &bytes(&formerr), secs(0));
        let d = drain(&mut ex);
        let (_, server, plain) = &d.sends[0];
        assert_eq!(*server, addr(S1));
        assert!(plain.edns.is_none());
        // FORMERR again, now without EDNS: next server.
        ex.handle_udp(
            addr(S1),
            &bytes(&reply(plain, ResponseCode::FormErr)),
            secs(0),
        );
        assert_eq!(drain(&mut ex).sends[0].1, addr(S2));
    }

    #[test]
    fn edns_can_be_turned_off_and_sized() {
        let mut cfg = config(&[S1]);
        cfg.edns_payload = None;
        let mut ex = Exchange::new(question("a.example."), &cfg, secs(0));
        assert!(drain(&mut ex).sends[0].2.edns.is_none());
        cfg.edns_payload = Some(4096);
        let mut ex = Exchange::new(question("a.example."), &cfg, secs(0));
        assert_eq!(
            drain(&mut ex).sends.remove(0).2.edns.unwrap().max_payload(),
            4096
        );
    }

    #[test]
    fn mixed_case_must_be_echoed_exactly() {
        let mut cfg = config(&[S1]);
        cfg.use_0x20 = true;
        // A long name, so that the random case is very unlikely to be all lower case.
        let name = "abcdefghijklmnopqrstuvwxyz.abcdefghijklmnopqrstuvwxyz.example.";
        let mut ex = Exchange::new(question(name), &cfg, secs(0));
        let request = drain(&mut ex).sends.remove(0).2;
        let sent = request.queries[0].name().clone();
        assert_ne!(sent.to_ascii(), name, "the case was not mixed");
        assert_eq!(sent, Name::from_str(name).unwrap());
        // An all-lower-case echo is not accepted; the server is asked again without 0x20.
        let mut lowered = reply(&request, ResponseCode::NoError);
        lowered.queries[0].set_name(sent.to_lowercase());
        ex.handle_udp(addr(S1), &bytes(&lowered), secs(1));
        let d = drain(&mut ex);
        assert!(d.done.is_none());
        let (_, server, again) = &d.sends[0];
        assert_eq!(*server, addr(S1));
        assert_eq!(again.queries[0].name().to_ascii(), name);
        assert_eq!(ex.case_fallbacks(), &[addr(S1)]);
        let mut answer = reply(again, ResponseCode::NoError);
        answer.queries[0].set_name(Name::from_ascii(name.to_uppercase()).unwrap());
        // Without 0x20, case does not matter.
        ex.handle_udp(addr(S1), &bytes(&answer), secs(1));
        let response = drain(&mut ex).done.unwrap().unwrap();
        // The question comes back as asked.
        assert_eq!(response.queries[0].name().to_ascii(), name);
    }

    #[test]
    fn mixed_case_echoed_exactly_is_accepted() {
        let mut cfg = config(&[S1]);
        cfg.use_0x20 = true;
        let mut ex = Exchange::new(question("www.example.com."), &cfg, secs(0));
        let request = drain(&mut ex).sends.remove(0).2;
        ex.handle_udp(
            addr(S1),
            &bytes(&reply(&request, ResponseCode::NoError)),
            secs(0),
        );
        let response = drain(&mut ex).done.unwrap().unwrap();
        assert_eq!(response.queries[0].name().to_ascii(), "www.example.com.");
    }

    #[test]
    fn case_copied_from_the_mixed_question_is_put_back() {
        let mut cfg = config(&[S1]);
        cfg.use_0x20 = true;
        let asked = "outside.example.test.";
        let mut ex = Exchange::new(question(asked), &cfg, secs(0));
        let request = drain(&mut ex).sends.remove(0).2;
        let sent = request.queries[0].name().clone();
        let mut answer = reply(&request, ResponseCode::NoError);
        answer.answers.clear();
        // As a server compressing against the question would write them.
        let test_label = sent.iter().next_back().unwrap().to_vec();
        let host = Name::from_labels(vec![&b"host"[..], b"other", &test_label]).unwrap();
        answer.add_answer(Record::from_rdata(
            sent.clone(),
            60,
            RData::CNAME(CNAME(host.clone())),
        ));
        answer.add_answer(Record::from_rdata(
            host,
            60,
            RData::A(A::new(192, 0, 2, 88)),
        ));
        ex.handle_udp(addr(S1), &bytes(&answer), secs(0));
        let response = drain(&mut ex).done.unwrap().unwrap();
        assert_eq!(response.answers[0].name.to_ascii(), asked);
        assert!(
            matches!(&response.answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "host.other.test.")
        );
        assert_eq!(response.answers[1].name.to_ascii(), "host.other.test.");
        // Names sharing nothing with the question are left alone.
        let other = Name::from_ascii("Mail.Example.ORG.").unwrap();
        assert!(unmixed(&other, &sent, &question(asked).name().clone()).is_none());
    }

    #[test]
    fn garbage_and_mangled_replies_never_panic_nor_pass_unchecked() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        for round in 0..2000 {
            let mut ex = Exchange::new(question("www.example.com."), &config(&[S1]), secs(0));
            let request = drain(&mut ex).sends.remove(0).2;
            let mut data = bytes(&reply(&request, ResponseCode::NoError));
            if round % 2 == 0 {
                // Flip a few bytes of a good reply.
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..data.len());
                    data[i] = rng.random();
                }
            } else {
                // Or random bytes of random length.
                let len = rng.random_range(0..600);
                data = (0..len).map(|_| rng.random()).collect();
            }
            ex.handle_udp(addr(S1), &data, secs(1));
            ex.handle_tcp(addr(S1), &data, secs(1));
            if let Some(Ok(response)) = drain(&mut ex).done {
                // Whatever was accepted answered our question with our id.
                let decoded = Message::from_vec(&data).unwrap();
                assert_eq!(decoded.metadata.id, request.metadata.id);
                assert_eq!(decoded.queries[0], request.queries[0]);
                assert_eq!(response.queries[0], request.queries[0]);
            }
        }
    }

    #[test]
    fn unreachable_server_is_skipped_at_once() {
        let mut ex = Exchange::new(question("a.example."), &config(&[S1, S2]), secs(0));
        drain(&mut ex);
        ex.handle_unreachable(secs(0));
        assert_eq!(drain(&mut ex).sends[0].1, addr(S2));
    }

    #[test]
    fn no_servers_fails_at_once() {
        let mut ex = Exchange::new(question("a.example."), &config(&[]), secs(0));
        assert!(matches!(drain(&mut ex).done, Some(Err(Error::Invalid(_)))));
    }

    #[test]
    fn forward_keeps_the_cd_and_do_bits() {
        let mut request = Message::new(77, MessageType::Query, OpCode::Query);
        request.metadata.checking_disabled = true;
        request.add_query(question("signed.example."));
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true);
        request.set_edns(edns);
        let mut ex = Exchange::forward(&request, &config(&[S1]), secs(0)).unwrap();
        let sent = drain(&mut ex).sends.remove(0).2;
        assert!(sent.metadata.checking_disabled);
        assert!(sent.edns.unwrap().flags().dnssec_ok);
        assert!(Exchange::forward(&Message::query(), &config(&[S1]), secs(0)).is_err());
    }
}
