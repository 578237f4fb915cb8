//! The reconnecting client factory's backoff, on the deterministic clock.

use std::rc::Rc;
use std::time::Duration;

use twistor::protocol::{ClientFactory, CloseReason, Factory, Protocol, factory};
use twistor::reconnect::{Backoff, ReconnectingClientFactory};
use twistor::tcp::{ConnectOptions, ReactorTcp};
use twistor::{Error, Transport};
use twistor_testing::{FakeConnector, MemoryReactor};

struct Idle;
impl Protocol for Idle {
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

fn setup(
    backoff: Backoff,
) -> (
    MemoryReactor,
    Rc<ReconnectingClientFactory<impl ClientFactory>>,
    twistor::Connector,
) {
    let reactor = MemoryReactor::new();
    let f = ReconnectingClientFactory::new(factory(|_| Idle), reactor.clock().clone(), backoff);
    let connector =
        reactor.connect_tcp_with("example.com", 80, f.clone(), ConnectOptions::default());
    f.started_connecting(&connector);
    (reactor, f, connector)
}

fn connects(c: &twistor::Connector) -> u32 {
    c.downcast_ref::<FakeConnector>().unwrap().connects()
}

fn refused() -> Error {
    Error::ConnectionRefused {
        addr: "example.com:80".into(),
    }
}

#[test]
fn delays_grow_by_the_factor_up_to_the_maximum() {
    let (reactor, f, connector) = setup(Backoff::default().jitter(0.0).max_delay(60.0));
    let mut expected = 1.0f64;
    for attempt in 1..=8 {
        f.client_connection_failed(&connector, &refused());
        expected = (expected * std::f64::consts::E).min(60.0);
        assert!(
            (f.delay() - expected).abs() < 1e-9,
            "attempt {attempt}: {} vs {expected}",
            f.delay()
        );
        let before = connects(&connector);
        // Just before the delay: nothing. At it: one new attempt.
        reactor.advance(Duration::from_secs_f64(expected - 0.001));
        assert_eq!(connects(&connector), before);
        reactor.advance(Duration::from_millis(1));
        assert_eq!(connects(&connector), before + 1, "attempt {attempt}");
    }
    assert_eq!(f.delay(), 60.0, "capped at max_delay");
    assert_eq!(f.retries(), 8);
}

#[test]
fn a_lost_connection_is_retried_too_and_success_resets_the_delay() {
    let (reactor, f, connector) = setup(Backoff::default().jitter(0.0));
    f.client_connection_failed(&connector, &refused());
    f.client_connection_failed(&connector, &refused());
    assert!(f.delay() > 7.0);
    // A successful connection builds a protocol, which resets the delay.
    let addr = twistor::Address::Memory("peer".into());
    assert!(f.build_protocol(&addr).is_some());
    assert_eq!((f.delay(), f.retries()), (1.0, 0));
    reactor.advance(Duration::from_secs(100));
    let before = connects(&connector);
    f.client_connection_lost(&connector, &CloseReason::Done);
    reactor.advance(Duration::from_secs_f64(std::f64::consts::E));
    assert_eq!(connects(&connector), before + 1);
}

#[test]
fn max_retries_gives_up() {
    let (reactor, f, connector) = setup(Backoff::default().jitter(0.0).max_retries(3));
    for _ in 0..5 {
        f.client_connection_failed(&connector, &refused());
        reactor.advance(Duration::from_secs(10_000));
    }
    assert_eq!(
        connects(&connector),
        1 + 3,
        "the first attempt and three retries"
    );
}

#[test]
fn stop_trying_cancels_the_pending_retry() {
    let (reactor, f, connector) = setup(Backoff::default().jitter(0.0));
    f.client_connection_failed(&connector, &refused());
    assert_eq!(reactor.clock().delayed_calls().len(), 1);
    f.stop_trying();
    assert!(reactor.clock().delayed_calls().is_empty());
    reactor.advance(Duration::from_secs(10_000));
    assert_eq!(connects(&connector), 1);
    f.client_connection_failed(&connector, &refused());
    assert!(
        reactor.clock().delayed_calls().is_empty(),
        "no retries after stop_trying"
    );
    f.reset_delay();
    assert!(f.continue_trying());
}

#[test]
fn jitter_spreads_delays_around_the_nominal_value() {
    let (_reactor, f, connector) = setup(Backoff::default().max_retries(1000));
    f.seed(42);
    let mut samples = Vec::new();
    for _ in 0..400 {
        f.reset_delay();
        f.client_connection_failed(&connector, &refused());
        samples.push(f.delay() / std::f64::consts::E);
    }
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let sd =
        (samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
    assert!((sd - 0.1196).abs() < 0.03, "sd {sd}");
    assert!(samples.iter().any(|&s| s != samples[0]));
}
