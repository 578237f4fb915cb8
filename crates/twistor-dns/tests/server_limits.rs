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
