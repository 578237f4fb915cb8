//! Policies on in-memory transports and the test clock: idle timeouts, throttling,
//! connection limits, traffic logging, and the wrapper's own transport semantics.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use twistor::protocol::factory;
use twistor::transport::Producer;
use twistor::{Address, CloseReason, Factory, Protocol, Transport};
use twistor_protocols::policies::{
    Connection, IdleTimeout, LimitConnectionsByPeer, LimitTotalConnections, Policy, Throttling,
    ThrottlingOptions, TimeoutMixin, TrafficLogging, WrappingFactory,
};
use twistor_testing::{Clock, ProducerState, StringTransport};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn addr(ip: &str) -> Address {
    Address::Tcp(format!("{ip}:4000").parse().unwrap())
}

/// Builds and connects one protocol from `f` on a fresh StringTransport.
fn connect(f: &dyn Factory, from: &str) -> Option<(Box<dyn Protocol>, StringTransport)> {
    let a = addr(from);
    let mut p = f.build_protocol(&a)?;
    let st = StringTransport::with_addresses(a, addr("10.0.0.1"));
    p.make_connection(&st.transport());
    Some((p, st))
}

struct Echo;
impl Protocol for Echo {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.write(data);
    }
}

#[test]
fn timeout_mixin_set_reset_cancel_and_hook() {
    let clock = Clock::new();
    let fired = Rc::new(Cell::new(0));
    let f = fired.clone();
    let t = TimeoutMixin::new(clock.clone(), move || f.set(f.get() + 1));
    assert_eq!(t.set_timeout(Some(secs(5.0))), None);
    clock.advance(secs(4.0));
    t.reset_timeout();
    clock.advance(secs(4.0));
    assert_eq!(fired.get(), 0);
    assert_eq!(
        t.set_timeout(Some(secs(2.0))),
        Some(secs(5.0)),
        "returns the old period"
    );
    clock.advance(secs(2.0));
    assert_eq!(fired.get(), 1);
    assert!(!t.active());
    t.reset_timeout(); // after firing, reset does not restart (as in Twisted)
    clock.advance(secs(10.0));
    assert_eq!(fired.get(), 1);
    t.set_timeout(Some(secs(1.0)));
    t.cancel_timeout();
    clock.advance(secs(5.0));
    assert_eq!(fired.get(), 1);
    t.set_timeout(Some(secs(1.0)));
    drop(t);
    assert!(clock.delayed_calls().is_empty(), "drop cancels the timer");
}

#[test]
fn idle_timeout_closes_quiet_connections_and_traffic_resets_it() {
    let clock = Clock::new();
    let f = WrappingFactory::new(
        factory(|_| Echo),
        IdleTimeout::new(clock.clone(), secs(10.0)),
    );
    let (mut p, st) = connect(&*f, "192.0.2.1").unwrap();
    clock.advance(secs(9.0));
    p.data_received(&st.transport(), b"ping"); // read (and echoed: a write) resets
    clock.advance(secs(9.0));
    assert!(!st.disconnecting());
    clock.advance(secs(1.0));
    assert!(st.disconnecting());
    p.connection_lost(&CloseReason::Done);
    assert!(clock.delayed_calls().is_empty());
    assert_eq!(f.connection_count(), 0);
}

/// A streaming producer recording pauses.
#[derive(Default)]
struct Recording {
    paused: Cell<bool>,
    resumes: Cell<u32>,
}
impl Producer for Recording {
    fn pause_producing(&self) {
        self.paused.set(true);
    }
    fn resume_producing(&self) {
        self.paused.set(false);
        self.resumes.set(self.resumes.get() + 1);
    }
    fn stop_producing(&self) {}
}

/// Writes `n` bytes on connect, registering a producer; pauses itself on "pause".
struct Writer {
    n: usize,
    producer: Rc<Recording>,
}
impl Protocol for Writer {
    fn connection_made(&mut self, t: &Transport) {
        t.register_producer(self.producer.clone(), true).unwrap();
        t.write(&vec![b'w'; self.n]);
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        if data == b"pause" {
            t.pause_producing();
        }
    }
}

#[test]
fn throttling_holds_reads_for_the_excess_then_resumes() {
    let clock = Clock::new();
    let options = ThrottlingOptions {
        read_limit: Some(100),
        ..Default::default()
    };
    let f = WrappingFactory::new(factory(|_| Echo), Throttling::new(clock.clone(), options));
    let (mut p, st) = connect(&*f, "192.0.2.1").unwrap();
    p.data_received(&st.transport(), &[b'x'; 300]);
    assert_eq!(st.producer_state(), ProducerState::Producing);
    clock.advance(secs(1.0)); // 300 read in a second: hold for 300/100 - 1 = 2 s
    assert!(f.policy().reads_throttled());
    assert_eq!(st.producer_state(), ProducerState::Paused);
    clock.advance(secs(1.9));
    assert_eq!(st.producer_state(), ProducerState::Paused);
    clock.advance(secs(0.1));
    assert_eq!(st.producer_state(), ProducerState::Producing);
    // Under the limit: no hold.
    p.data_received(&st.transport(), &[b'x'; 100]);
    clock.advance(secs(1.0));
    assert_eq!(st.producer_state(), ProducerState::Producing);
    // Last connection gone: the once-a-second check stops.
    p.connection_lost(&CloseReason::Done);
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn throttle_and_the_protocols_own_pause_combine() {
    let clock = Clock::new();
    let options = ThrottlingOptions {
        read_limit: Some(10),
        ..Default::default()
    };
    let producer = Rc::new(Recording::default());
    let pr = producer.clone();
    let f = WrappingFactory::new(
        factory(move |_| Writer {
            n: 0,
            producer: pr.clone(),
        }),
        Throttling::new(clock.clone(), options),
    );
    let (mut p, st) = connect(&*f, "192.0.2.1").unwrap();
    p.data_received(&st.transport(), b"pause");
    p.data_received(&st.transport(), &[b'x'; 15]);
    clock.advance(secs(1.0)); // 20 bytes: held 1 s
    clock.advance(secs(1.0));
    assert!(!f.policy().reads_throttled());
    assert_eq!(
        st.producer_state(),
        ProducerState::Paused,
        "the protocol paused itself: the throttle's end does not resume it"
    );
}

#[test]
fn throttling_holds_the_protocols_producer_for_writes() {
    let clock = Clock::new();
    let options = ThrottlingOptions {
        write_limit: Some(100),
        ..Default::default()
    };
    let producer = Rc::new(Recording::default());
    let pr = producer.clone();
    let f = WrappingFactory::new(
        factory(move |_| Writer {
            n: 500,
            producer: pr.clone(),
        }),
        Throttling::new(clock.clone(), options),
    );
    let (_p, st) = connect(&*f, "192.0.2.1").unwrap();
    assert_eq!(st.value().len(), 500);
    clock.advance(secs(1.0)); // 500 written: hold writes 4 s
    assert!(producer.paused.get());
    // The transport's own back-pressure cannot release the hold.
    let gate = st.producer().unwrap();
    gate.pause_producing();
    gate.resume_producing();
    assert!(producer.paused.get());
    clock.advance(secs(4.0));
    assert!(!producer.paused.get());
}

#[test]
fn throttling_max_connections() {
    let clock = Clock::new();
    let options = ThrottlingOptions {
        max_connections: Some(2),
        ..Default::default()
    };
    let f = WrappingFactory::new(factory(|_| Echo), Throttling::new(clock.clone(), options));
    let (mut a, _) = connect(&*f, "192.0.2.1").unwrap();
    let _b = connect(&*f, "192.0.2.2").unwrap();
    assert!(connect(&*f, "192.0.2.3").is_none());
    a.connection_lost(&CloseReason::Done);
    assert!(connect(&*f, "192.0.2.3").is_some());
}

struct Busy;
impl Protocol for Busy {
    fn connection_made(&mut self, t: &Transport) {
        t.write(b"busy, try later\r\n");
        t.lose_connection();
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

#[test]
fn total_limit_refuses_or_overflows() {
    let f = WrappingFactory::new(factory(|_| Echo), LimitTotalConnections::new(2));
    let (mut a, _) = connect(&*f, "192.0.2.1").unwrap();
    let _b = connect(&*f, "192.0.2.1").unwrap();
    assert!(connect(&*f, "192.0.2.9").is_none());
    a.connection_lost(&CloseReason::Done);
    assert_eq!(f.connection_count(), 1);
    let _c = connect(&*f, "192.0.2.9").unwrap();

    let f = WrappingFactory::new(
        factory(|_| Echo),
        LimitTotalConnections::new(1).overflow(|| Busy),
    );
    let (_a, st) = connect(&*f, "192.0.2.1").unwrap();
    assert!(!st.disconnecting());
    let (_b, st) = connect(&*f, "192.0.2.2").unwrap();
    assert_eq!(st.value(), b"busy, try later\r\n");
    assert!(st.disconnecting());
    assert_eq!(f.connection_count(), 2, "overflow connections count too");
}

#[test]
fn per_peer_limit() {
    let f = WrappingFactory::new(factory(|_| Echo), LimitConnectionsByPeer::new(2));
    let (mut a, _) = connect(&*f, "192.0.2.1").unwrap();
    let _b = connect(&*f, "192.0.2.1").unwrap();
    assert!(connect(&*f, "192.0.2.1").is_none());
    let _other = connect(&*f, "192.0.2.2").unwrap();
    assert_eq!(f.policy().connections_from(&addr("192.0.2.1")), 2);
    a.connection_lost(&CloseReason::Done);
    assert_eq!(f.policy().connections_from(&addr("192.0.2.1")), 1);
    let _c = connect(&*f, "192.0.2.1").unwrap();

    let f = WrappingFactory::new(
        factory(|_| Echo),
        LimitConnectionsByPeer::new(1).overflow(|| Busy),
    );
    let _a = connect(&*f, "192.0.2.1").unwrap();
    let (_b, st) = connect(&*f, "192.0.2.1").unwrap();
    assert!(st.value().starts_with(b"busy"));
    assert_eq!(f.policy().connections_from(&addr("192.0.2.1")), 1);
}

#[derive(Clone, Default)]
struct Sink(Rc<RefCell<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn traffic_logging_records_every_event() {
    let sink = Sink::default();
    let f = WrappingFactory::new(
        factory(|_| Echo),
        TrafficLogging::new("echo", Rc::new(RefCell::new(sink.clone()))),
    );
    let (mut p, st) = connect(&*f, "192.0.2.1").unwrap();
    p.data_received(&st.transport(), b"hi\n\x00");
    p.connection_lost(&CloseReason::Done);
    let log = String::from_utf8(sink.0.borrow().clone()).unwrap();
    assert_eq!(
        log,
        "echo 1 made: tcp:192.0.2.1:4000\n\
         echo 1 read 4: \"hi\\n\\x00\"\n\
         echo 1 wrote 4: \"hi\\n\\x00\"\n\
         echo 1 lost: Connection was closed cleanly.\n"
    );
    assert_eq!(st.value(), b"hi\n\x00");
}

#[test]
fn wrapped_transport_overrides_addresses_and_combines_pauses() {
    struct SetPeer;
    impl Policy for SetPeer {
        fn connection_made(&self, conn: &Connection) {
            conn.set_addresses(Some(addr("203.0.113.7")), None);
        }
    }
    struct Peer(Rc<RefCell<Option<Address>>>);
    impl Protocol for Peer {
        fn connection_made(&mut self, t: &Transport) {
            *self.0.borrow_mut() = Some(t.peer());
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    let f = WrappingFactory::new(factory(move |_| Peer(s.clone())), SetPeer);
    let (_p, _st) = connect(&*f, "192.0.2.1").unwrap();
    assert_eq!(*seen.borrow(), Some(addr("203.0.113.7")));
}

/// A protocol under a policy wrapper sets a connection timer on the transport it is given
/// (`Transport::call_later`): the call reaches it through the wrapper.
#[test]
fn a_wrapped_protocols_connection_timer_reaches_it() {
    use std::io::Read;
    struct Ticker {
        ticks: u32,
    }
    impl Protocol for Ticker {
        fn connection_made(&mut self, t: &Transport) {
            t.call_later(Duration::ZERO, |me: &mut Ticker, t: &Transport| {
                me.ticks += 1;
                t.write(format!("tick {}", me.ticks).as_bytes());
                t.lose_connection();
            })
            .unwrap();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let reactor = twistor_testing::reactor();
    let limited = WrappingFactory::new(
        factory(|_| Ticker { ticks: 0 }),
        LimitTotalConnections::new(10),
    );
    let port = reactor.listen_tcp_local(0, limited).unwrap().port();
    let handle = reactor.handle();
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        handle.call_from_thread(|r| r.stop()).unwrap();
        reply
    });
    reactor.run().unwrap();
    assert_eq!(client.join().unwrap(), "tick 1");
}
