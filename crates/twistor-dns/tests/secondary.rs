//! A secondary zone on the SOA timers (a fake clock) against our own primary on loopback:
//! the first transfer, a refresh after `refresh` seconds that finds a newer serial, retries
//! every `retry` seconds once the primary is gone, expiry after `expire`, and a NOTIFY that
//! starts a refresh at once.

mod common;

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use common::{name, zone};
use twistor::application::Service;
use twistor::defer::Deferred;
use twistor_dns::proto::authority::Catalog;
use twistor_dns::secondary::Secondary;
use twistor_dns::server::{DnsServer, ServerOptions};
use twistor_dns::wire::op::{Message, MessageType, OpCode, Query};
use twistor_dns::wire::rr::{RData, RecordType};
use twistor_testing::Clock;

/// The primary's zone at `serial`, www at 192.0.2.`serial`.
fn primary_zone(serial: u32) -> String {
    format!(
        "$ORIGIN example.test.\n$TTL 300\n\
         @ IN SOA ns1 hostmaster {serial} 3600 600 86400 60\n  IN NS ns1\n\
         ns1 IN A 192.0.2.1\nwww IN A 192.0.2.{serial}\n"
    )
}

fn options() -> ServerOptions {
    ServerOptions {
        rate_limit: 0,
        ..ServerOptions::default()
    }
}

/// www's address in `catalog`'s example.test, if it holds the zone.
fn www(catalog: &RefCell<Catalog>) -> Option<String> {
    let catalog = catalog.borrow();
    let zone = catalog.zone(&name("example.test."))?;
    let rrset = zone.rrset(&name("www.example.test."), RecordType::A)?;
    match &rrset.records.first()?.data {
        RData::A(a) => Some(a.to_string()),
        _ => None,
    }
}

#[test]
fn transfers_refreshes_retries_expires_and_heeds_notify() {
    let reactor = twistor_testing::reactor();
    let clock = Clock::new();
    // Our primary, allowing transfers to loopback.
    let mut primary_catalog = Catalog::new();
    primary_catalog.insert(zone(&primary_zone(7)));
    primary_catalog.allow_axfr("127.0.0.1/32".parse().unwrap());
    let primary_catalog = Rc::new(RefCell::new(primary_catalog));
    let primary = DnsServer::new(&reactor, primary_catalog.clone(), options());
    let listening = primary.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let primary_addr = SocketAddr::from(([127, 0, 0, 1], listening.port()));

    let catalog = Rc::new(RefCell::new(Catalog::new()));
    let secondary = Secondary::with_clock(
        &reactor,
        clock.as_time(),
        catalog.clone(),
        name("example.test"),
        primary_addr,
    );
    // The secondary's own server, whose NOTIFYs start a refresh.
    let server = DnsServer::new(&reactor, catalog.clone(), options());
    let notified: Deferred<bool> = Deferred::new();
    {
        let secondary = secondary.clone();
        let notified = notified.clone();
        server.on_notify(move |_zone, source| {
            // Only the primary is heeded.
            assert!(!secondary.notified("192.0.2.9".parse().unwrap()));
            assert_eq!(source, secondary.primary().ip());
            let notified = notified.clone();
            secondary.refresh().consume(move |r| {
                let _ = notified.resolve(r);
            });
        });
    }
    let secondary_port = server
        .listen("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .port();

    let scenario = async move {
        // The first transfer when the service starts.
        secondary.start_service().unwrap();
        assert!(secondary.refresh().await.unwrap(), "transferred");
        assert_eq!(www(&catalog).as_deref(), Some("192.0.2.7"));
        assert_eq!(secondary.serial(), Some(7));
        let timers: Vec<f64> = clock.delayed_calls().iter().map(|c| c.time()).collect();
        assert_eq!(
            timers,
            [3600.0],
            "the next refresh is `refresh` seconds away"
        );

        // The primary moves to serial 8; nothing happens before the timer…
        primary_catalog.borrow_mut().insert(zone(&primary_zone(8)));
        clock.advance(Duration::from_secs(3599));
        assert_eq!(www(&catalog).as_deref(), Some("192.0.2.7"));
        // …which finds the newer serial and transfers.
        clock.advance(Duration::from_secs(1));
        assert!(secondary.refresh().await.unwrap());
        assert_eq!(www(&catalog).as_deref(), Some("192.0.2.8"));
        assert_eq!(secondary.serial(), Some(8));

        // A NOTIFY starts a refresh at once.
        primary_catalog.borrow_mut().insert(zone(&primary_zone(9)));
        let mut notify = Message::new(4242, MessageType::Query, OpCode::Notify);
        notify.metadata.authoritative = true;
        notify.add_query(Query::query(name("example.test."), RecordType::SOA));
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket
            .send_to(&notify.to_vec().unwrap(), ("127.0.0.1", secondary_port))
            .unwrap();
        assert!(notified.await.unwrap(), "a transfer happened");
        assert_eq!(www(&catalog).as_deref(), Some("192.0.2.9"));
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(reply.metadata.id, 4242);
        assert_eq!(reply.metadata.op_code, OpCode::Notify);
        assert_eq!(reply.metadata.message_type, MessageType::Response);

        // The primary goes away: the next refresh fails and is retried `retry` seconds
        // later, the zone still served…
        listening.stop().await.unwrap();
        let due = clock
            .delayed_calls()
            .iter()
            .map(|c| c.time())
            .fold(f64::INFINITY, f64::min);
        clock.advance(Duration::from_secs_f64(due - clock.seconds()));
        assert!(secondary.refresh().await.is_err());
        let next: Vec<f64> = clock
            .delayed_calls()
            .iter()
            .map(|c| c.time() - clock.seconds())
            .collect();
        assert_eq!(next, [600.0], "retry after `retry` seconds");
        assert!(www(&catalog).is_some());
        // …until `expire` seconds after the last good refresh, when it is withdrawn.
        clock.advance(Duration::from_secs(86_400));
        assert!(secondary.refresh().await.is_err());
        assert_eq!(www(&catalog), None, "expired");
        secondary.stop_service();
        assert!(clock.delayed_calls().is_empty());
    };
    reactor.run_until(scenario).unwrap();
}
