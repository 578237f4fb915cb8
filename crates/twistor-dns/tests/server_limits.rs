//! The server's limits over real sockets, on a fake clock: response rate limiting (answers
//! beyond the rate dropped, every second one sent truncated), the TCP idle timeout, and a
//! TCP client that sends a length prefix and stops.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{EXAMPLE_ZONE, name, zone};
use twistor::defer::Deferred;
use twistor::protocol::{DatagramProtocol, Protocol};
use twistor::{Address, DatagramTransport, Transport};
use twistor_dns::proto::authority::Catalog;
use twistor_dns::server::{DnsServer, ServerOptions};
use twistor_dns::wire::op::{Message, Query};
use twistor_dns::wire::rr::RecordType;
use twistor_testing::Clock;

fn query(id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(name("www.example.test."), RecordType::A));
    m.to_vec().unwrap()
}

fn catalog() -> Rc<RefCell<Catalog>> {
    let mut catalog = Catalog::new();
    catalog.insert(zone(EXAMPLE_ZONE));
    Rc::new(RefCell::new(catalog))
}

/// Sends `count` queries at once and gathers replies until `expect` came.
struct Burst {
    to: Address,
    count: u16,
    expect: usize,
    replies: Rc<RefCell<Vec<Message>>>,
    done: Deferred<()>,
}

impl DatagramProtocol for Burst {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        for id in 0..self.count {
            transport.write_to(&query(id), &self.to).unwrap();
        }
    }

    fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], _: &Address) {
        self.replies
            .borrow_mut()
            .push(Message::from_vec(data).unwrap());
        if self.replies.borrow().len() == self.expect {
            let _ = self.done.resolve(Ok(()));
        }
    }
}

#[test]
fn beyond_the_rate_answers_are_dropped_or_slip_truncated_and_the_next_second_is_fresh() {
    let reactor = twistor_testing::reactor();
    let clock = Clock::new();
    let options = ServerOptions {
        rate_limit: 5,
        slip: 2,
        ..ServerOptions::default()
    };
    let server = DnsServer::with_clock(&reactor, clock.as_time(), catalog(), options);
    let udp = server.listen_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let to = Address::Udp(([127, 0, 0, 1], udp.port()).into());
    let r = reactor.clone();
    let burst = move |count: u16, expect: usize| {
        let replies = Rc::new(RefCell::new(Vec::new()));
        let done = Deferred::new();
        let client = Burst {
            to: to.clone(),
            count,
            expect,
            replies: replies.clone(),
            done: done.clone(),
        };
        let local = twistor::udp::UdpOptions::default().interface([127, 0, 0, 1].into());
        let port = r.listen_udp_with(0, client, local).unwrap();
        async move {
            done.await.unwrap();
            port.stop_listening();
            replies.take()
        }
    };
    let scenario = async move {
        // 20 queries in one second: 5 answered, of the 15 beyond, every second one (7)
        // slips out truncated and empty, 8 are dropped: 12 replies.
        let replies = burst(20, 12).await;
        let full = replies.iter().filter(|m| !m.metadata.truncation).count();
        let slipped: Vec<&Message> = replies.iter().filter(|m| m.metadata.truncation).collect();
        assert_eq!((full, slipped.len()), (5, 7));
        assert!(
            slipped
                .iter()
                .all(|m| m.answers.is_empty() && m.queries.len() == 1)
        );
        // Three seconds later the count has halved thrice (20 >> 3 = 2): room for 3 more
        // answers, then the limit again (slip, drop, slip).
        clock.advance(Duration::from_secs(3));
        let replies = burst(6, 5).await;
        let full = replies.iter().filter(|m| !m.metadata.truncation).count();
        assert_eq!(full, 3, "{replies:?}");
    };
    reactor.run_until(scenario).unwrap();
}

/// Connects, optionally writes `send`, and reports when the server closes.
struct Idle {
    send: Vec<u8>,
    closed: Deferred<()>,
}

impl Protocol for Idle {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(&self.send);
    }

    fn data_received(&mut self, _: &Transport, _: &[u8]) {}

    fn connection_lost(&mut self, _: &twistor::CloseReason) {
        let _ = self.closed.resolve(Ok(()));
    }
}

#[test]
fn idle_and_half_sent_tcp_connections_are_closed_after_the_idle_timeout() {
    let reactor = twistor_testing::reactor();
    let clock = Clock::new();
    let server = DnsServer::with_clock(
        &reactor,
        clock.as_time(),
        catalog(),
        ServerOptions::default(),
    );
    let port = reactor
        .listen_tcp_local(0, server.tcp_factory())
        .unwrap()
        .port();
    let r = reactor.clone();
    let scenario = async move {
        for send in [Vec::new(), vec![0x01, 0x00, 0xab]] {
            let closed = Deferred::new();
            let endpoint = twistor::endpoints::HostnameEndpoint::new(&r, "127.0.0.1", port);
            let idle = Idle {
                send,
                closed: closed.clone(),
            };
            twistor::endpoints::connect_protocol(&endpoint, idle)
                .await
                .unwrap();
            clock.advance(Duration::from_secs(9));
            assert!(!closed.called(), "open before the timeout");
            clock.advance(Duration::from_secs(1));
            closed.await.unwrap();
        }
    };
    reactor.run_until(scenario).unwrap();
}

/// `count` framed queries for `name` (type TXT), ids 0, 1, 2…
fn framed_queries(name_text: &str, count: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for id in 0..count {
        let mut m = Message::query();
        m.metadata.id = id;
        m.add_query(Query::query(name(name_text), RecordType::TXT));
        let bytes = m.to_vec().unwrap();
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// The ids of the whole framed messages in `stream`.
fn framed_ids(stream: &[u8]) -> Vec<u16> {
    let mut ids = Vec::new();
    let mut at = 0;
    while at + 2 <= stream.len() {
        let len = u16::from_be_bytes([stream[at], stream[at + 1]]) as usize;
        let Some(bytes) = stream.get(at + 2..at + 2 + len) else {
            break;
        };
        let message = Message::from_vec(bytes).unwrap();
        ids.push(message.metadata.id);
        at += 2 + len;
    }
    ids
}

#[test]
fn tcp_messages_split_anywhere_are_answered_in_order() {
    let reactor = twistor_testing::reactor();
    let server = DnsServer::new(&reactor, catalog(), ServerOptions::default());
    let factory = server.tcp_factory();
    let peer = Address::Tcp(([127, 0, 0, 1], 5353).into());
    let stream = framed_queries("text.example.test.", 3);
    let feeds: Vec<Vec<&[u8]>> = (0..=stream.len())
        .map(|split| vec![&stream[..split], &stream[split..]])
        .chain(std::iter::once(stream.chunks(1).collect()))
        .collect();
    for feed in feeds {
        let st = twistor_testing::StringTransport::with_addresses(peer.clone(), peer.clone());
        let transport = st.transport();
        let mut session = factory.build_protocol(&peer).unwrap();
        session.make_connection(&transport);
        for piece in &feed {
            session.data_received(&transport, piece);
        }
        assert_eq!(
            framed_ids(&st.value()),
            [0, 1, 2],
            "fed as {} pieces",
            feed.len()
        );
    }
}

/// Sends `count` queries for big answers without reading, then reads them all.
struct Flood {
    queries: Vec<u8>,
    expect: usize,
    received: Vec<u8>,
    /// Where the next frame starts in `received`, and how many came whole.
    at: usize,
    frames: usize,
    done: Deferred<Vec<u8>>,
}

impl Protocol for Flood {
    fn connection_made(&mut self, transport: &Transport) {
        transport.pause_producing();
        transport.write(&self.queries);
        let t = transport.clone();
        // Read again once the server has had time to fill every buffer on the way.
        if let Some(reactor) = transport.reactor() {
            reactor.call_later(Duration::from_millis(300), move || t.resume_producing());
        }
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.received.extend_from_slice(data);
        // Count whole frames by their prefixes alone (decoding is for the end).
        while let Some(prefix) = self.received.get(self.at..self.at + 2) {
            let next = self.at + 2 + usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
            if next > self.received.len() {
                break;
            }
            self.at = next;
            self.frames += 1;
        }
        if self.frames == self.expect {
            let _ = self.done.resolve(Ok(std::mem::take(&mut self.received)));
            transport.lose_connection();
        }
    }
}

#[test]
fn a_client_that_does_not_read_pauses_the_server_and_gets_every_answer_in_order_later() {
    let reactor = twistor_testing::reactor();
    let mut big = Catalog::new();
    let mut text = EXAMPLE_ZONE.to_string();
    for i in 0..40 {
        text.push_str(&format!("big IN TXT \"{i:03}{}\"\n", "x".repeat(97)));
    }
    big.insert(zone(&text));
    let server = DnsServer::new(
        &reactor,
        Rc::new(RefCell::new(big)),
        ServerOptions::default(),
    );
    let port = reactor
        .listen_tcp_local(0, server.tcp_factory())
        .unwrap()
        .port();
    // 1,500 answers of about 4.4 KB: 6.6 MB, far beyond the socket buffers.
    let count = 1500;
    let done = Deferred::new();
    let flood = Flood {
        queries: framed_queries("big.example.test.", count),
        expect: usize::from(count),
        received: Vec::new(),
        at: 0,
        frames: 0,
        done: done.clone(),
    };
    let endpoint = twistor::endpoints::HostnameEndpoint::new(&reactor, "127.0.0.1", port);
    twistor::endpoints::connect_protocol(&endpoint, flood);
    let received = reactor.run_until(done).unwrap().unwrap();
    let ids = framed_ids(&received);
    assert_eq!(ids, (0..count).collect::<Vec<u16>>());
}

#[test]
fn tcp_connections_are_limited_in_all_and_per_client() {
    let reactor = twistor_testing::reactor();
    let options = ServerOptions {
        max_tcp_connections: 3,
        max_tcp_per_client: 2,
        ..ServerOptions::default()
    };
    let server = DnsServer::new(&reactor, catalog(), options);
    let factory = server.tcp_factory();
    let from = |ip: [u8; 4]| Address::Tcp((ip, 40000).into());
    let a1 = factory.build_protocol(&from([192, 0, 2, 1]));
    let a2 = factory.build_protocol(&from([192, 0, 2, 1]));
    assert!(a1.is_some() && a2.is_some());
    assert!(
        factory.build_protocol(&from([192, 0, 2, 1])).is_none(),
        "per client"
    );
    let b = factory.build_protocol(&from([192, 0, 2, 2]));
    assert!(b.is_some());
    assert!(
        factory.build_protocol(&from([192, 0, 2, 3])).is_none(),
        "in all"
    );
    drop(a1);
    assert!(
        factory.build_protocol(&from([192, 0, 2, 1])).is_some(),
        "room again"
    );
}
