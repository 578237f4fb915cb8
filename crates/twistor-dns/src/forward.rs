//! Answering names outside the server's zones: a hosts file, then upstream servers through
//! the [`Resolver`] (with its cache when `twist dns --cache` asks for one). This is the
//! server's [`Recursor`] for `--forward` and `--hosts` (Twisted's `names` chain of hosts,
//! cache and client resolvers).

use std::net::IpAddr;
use std::rc::Rc;

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use twistor::defer::Deferred;

use crate::client::Resolver;
use crate::proto::authority::Via;
use crate::server::Recursor;
use crate::system::Hosts;

/// The TTL of answers from the hosts file (Twisted's `hosts.Resolver` uses 3600 too).
pub const HOSTS_TTL: u32 = 3600;

/// Our EDNS buffer size in answers we forward (the DNS Flag Day 2020 value).
const OUR_PAYLOAD: u16 = 1232;

/// Where a [`Forwarder`] sends the questions its hosts file does not answer: upstream
/// servers ([`Resolver::forward`]) or recursion from the root.
pub trait Upstream {
    /// The response to `request`'s first question, with the request's id and question and
    /// no OPT record; fails when there is none (the client gets SERVFAIL).
    fn forward(&self, request: &Message) -> Deferred<Message>;
}

impl Upstream for Resolver {
    fn forward(&self, request: &Message) -> Deferred<Message> {
        Resolver::forward(self, request)
    }
}

/// Answers from a hosts file, then from upstream; see the [module docs](self).
pub struct Forwarder {
    hosts: Hosts,
    upstream: Option<Rc<dyn Upstream>>,
}

impl Forwarder {
    /// Answers from `hosts` first, then from `upstream` (without one, other names are
    /// REFUSED).
    pub fn new(hosts: Hosts, upstream: Option<Rc<dyn Upstream>>) -> Forwarder {
        Forwarder { hosts, upstream }
    }

    /// The answer from the hosts file, if it names the question's name.
    fn answer_from_hosts(&self, query: &Message) -> Option<Message> {
        let question = query.queries.first()?;
        let mut text = question.name().to_ascii();
        if text.len() > 1 {
            text.pop();
        }
        let addresses = self.hosts.lookup(&text)?;
        let mut reply = reply_to(query, ResponseCode::NoError);
        reply.metadata.authoritative = true;
        for ip in addresses {
            let data = match (ip, question.query_type()) {
                (IpAddr::V4(a), RecordType::A | RecordType::ANY) => RData::A((*a).into()),
                (IpAddr::V6(a), RecordType::AAAA | RecordType::ANY) => RData::AAAA((*a).into()),
                _ => continue,
            };
            reply.add_answer(Record::from_rdata(question.name().clone(), HOSTS_TTL, data));
        }
        Some(reply)
    }
}

impl Recursor for Forwarder {
    fn answer(&self, query: Message, via: Via) -> Deferred<Vec<u8>> {
        if let Some(reply) = self.answer_from_hosts(&query) {
            return Deferred::succeeded(encode(&query, reply, via));
        }
        let Some(upstream) = &self.upstream else {
            return Deferred::succeeded(encode(
                &query,
                reply_to(&query, ResponseCode::Refused),
                via,
            ));
        };
        upstream.forward(&query).map(move |mut response| {
            response.metadata.message_type = MessageType::Response;
            response.metadata.authoritative = false;
            response.metadata.recursion_available = true;
            response.metadata.recursion_desired = query.metadata.recursion_desired;
            response.metadata.checking_disabled = query.metadata.checking_disabled;
            response.signature = None;
            response.edns = None;
            encode(&query, response, via)
        })
    }
}

/// An empty response to `query` with `code`.
fn reply_to(query: &Message, code: ResponseCode) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.response_code = code;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries.iter().cloned());
    reply
}

/// Encodes `reply` to `query`: our OPT when the query had one, and over UDP no more than
/// the client's buffer (else truncated, TC set, for the client to ask over TCP).
fn encode(query: &Message, mut reply: Message, via: Via) -> Vec<u8> {
    if let Some(theirs) = &query.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(OUR_PAYLOAD);
        edns.set_dnssec_ok(theirs.flags().dnssec_ok);
        reply.set_edns(edns);
    }
    let limit = match via {
        Via::Udp => usize::from(query.max_payload().max(512)),
        Via::Tcp => usize::from(u16::MAX),
    };
    match reply.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        Ok(_) => reply.truncate().to_vec().unwrap_or_default(),
        Err(err) => {
            tracing::debug!("cannot encode a forwarded answer: {err}");
            reply_to(query, ResponseCode::ServFail)
                .to_vec()
                .unwrap_or_default()
        }
    }
}
