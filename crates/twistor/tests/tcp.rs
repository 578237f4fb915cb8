//! TCP transport semantics, ported from Twisted's behaviour, over real sockets on 127.0.0.1.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use twistor::protocol::{ClientFactory, CloseReason, Factory, Protocol, factory};
use twistor::reactor::UnhandledPanic;
use twistor::tcp::{ConnectOptions, ListenOptions};
use twistor::transport::Producer;
use twistor::{Address, Connector, Error, ListeningPort, Reactor, Transport};

fn local_listen(reactor: &Reactor, f: Rc<dyn Factory>) -> ListeningPort {
    reactor
        .listen_tcp_with(
            0,
            f,
            ListenOptions::default().interface("127.0.0.1".parse().unwrap()),
        )
        .unwrap()
}

/// Runs `client` on a thread with a connection to `port`, then stops the reactor.
fn client_thread<T: Send + 'static>(
    reactor: &Reactor,
    port: u16,
    client: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> mpsc::Receiver<T> {
    let handle = reactor.handle();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let result = client(stream);
        tx.send(result).unwrap();
        handle.call_from_thread(|r| r.stop()).unwrap();
    });
    rx
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

type Log = Rc<RefCell<Vec<String>>>;

#[test]
fn lose_connection_delivers_everything_written_before_it() {
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    struct Writer(Log);
    impl Protocol for Writer {
        fn connection_made(&mut self, t: &Transport) {
            let data = pattern(10 << 20);
            for chunk in data.chunks(100_000) {
                t.write(chunk);
            }
            t.lose_connection();
            t.write(b""); // writes after lose_connection but before the close are fine
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0
                .borrow_mut()
                .push(format!("lost clean={}", reason.is_clean()));
        }
    }
    let l = log.clone();
    let port = local_listen(&reactor, factory(move |_| Writer(l.clone())));
    let rx = client_thread(&reactor, port.port(), |mut s| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    reactor.run().unwrap();
    let got = rx.recv().unwrap();
    assert_eq!(got.len(), 10 << 20);
    assert!(got == pattern(10 << 20), "content intact, in order");
    assert_eq!(*log.borrow(), ["lost clean=true"]);
}

/// A streaming producer that writes 64 KiB chunks of a 100 MB stream whenever it is not
/// paused, and records how full the transport's buffer ever got.
struct Streamer {
    reactor: Reactor,
    transport: RefCell<Option<Transport>>,
    paused: Cell<bool>,
    sent: Cell<usize>,
    total: usize,
    max_buffered: Cell<usize>,
    pauses: Cell<u32>,
    resumes: Cell<u32>,
    scheduled: Cell<bool>,
}

const CHUNK: usize = 64 * 1024;
const HIGH_WATER: usize = 64 * 1024;

impl Streamer {
    fn schedule(self: &Rc<Self>) {
        if self.scheduled.replace(true) {
            return;
        }
        let me = self.clone();
        self.reactor.call_soon(move || {
            me.scheduled.set(false);
            me.pump();
        });
    }

    fn pump(self: &Rc<Self>) {
        let transport = self.transport.borrow().clone().unwrap();
        let chunk = vec![0xabu8; CHUNK];
        while !self.paused.get() && self.sent.get() < self.total {
            let n = CHUNK.min(self.total - self.sent.get());
            transport.write(&chunk[..n]);
            self.sent.set(self.sent.get() + n);
            self.max_buffered
                .set(self.max_buffered.get().max(transport.buffered()));
        }
        if self.sent.get() == self.total {
            transport.unregister_producer();
            transport.lose_connection();
        }
    }
}

struct StreamerHandle(Rc<Streamer>);

impl Producer for StreamerHandle {
    fn pause_producing(&self) {
        self.0.paused.set(true);
        self.0.pauses.set(self.0.pauses.get() + 1);
    }
    fn resume_producing(&self) {
        self.0.paused.set(false);
        self.0.resumes.set(self.0.resumes.get() + 1);
        self.0.schedule();
    }
    fn stop_producing(&self) {
        self.0.paused.set(true);
    }
}

#[test]
fn streaming_producer_is_paused_above_the_high_water_mark_and_resumed_below() {
    let reactor = twistor_testing::reactor();
    let streamer = Rc::new(Streamer {
        reactor: reactor.clone(),
        transport: RefCell::new(None),
        paused: Cell::new(false),
        sent: Cell::new(0),
        total: 100_000_000,
        max_buffered: Cell::new(0),
        pauses: Cell::new(0),
        resumes: Cell::new(0),
        scheduled: Cell::new(false),
    });
    struct Serve(Rc<Streamer>);
    impl Protocol for Serve {
        fn connection_made(&mut self, t: &Transport) {
            t.set_high_water_mark(HIGH_WATER);
            *self.0.transport.borrow_mut() = Some(t.clone());
            t.register_producer(StreamerHandle(self.0.clone()), true)
                .unwrap();
            self.0.schedule();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let s = streamer.clone();
    let port = local_listen(&reactor, factory(move |_| Serve(s.clone())));
    // A slow reader: small reads, and a pause every few megabytes.
    let rx = client_thread(&reactor, port.port(), |mut s| {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0usize;
        let mut since_nap = 0usize;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break total;
            }
            assert!(buf[..n].iter().all(|&b| b == 0xab));
            total += n;
            since_nap += n;
            if since_nap > 4 << 20 {
                since_nap = 0;
                thread::sleep(Duration::from_millis(2));
            }
        }
    });
    reactor.run().unwrap();
    assert_eq!(rx.recv().unwrap(), 100_000_000, "every byte arrived");
    assert!(
        streamer.pauses.get() > 10,
        "paused {} times",
        streamer.pauses.get()
    );
    assert!(
        streamer.resumes.get() > 10,
        "resumed {} times",
        streamer.resumes.get()
    );
    let max = streamer.max_buffered.get();
    assert!(
        max <= HIGH_WATER + CHUNK,
        "buffer peaked at {max} bytes, over the high-water mark plus one chunk"
    );
}

#[test]
fn pull_producer_is_asked_for_more_each_time_the_buffer_empties() {
    let reactor = twistor_testing::reactor();
    struct Pull {
        transport: Transport,
        left: Cell<usize>,
        calls: Rc<Cell<u32>>,
    }
    struct PullHandle(Rc<Pull>);
    impl Producer for PullHandle {
        fn pause_producing(&self) {}
        fn resume_producing(&self) {
            let p = &self.0;
            p.calls.set(p.calls.get() + 1);
            let left = p.left.get();
            if left == 0 {
                p.transport.unregister_producer();
                p.transport.lose_connection();
                return;
            }
            let n = left.min(10_000);
            p.transport.write(&vec![b'p'; n]);
            p.left.set(left - n);
        }
        fn stop_producing(&self) {}
    }
    let calls = Rc::new(Cell::new(0));
    struct Serve(Rc<Cell<u32>>);
    impl Protocol for Serve {
        fn connection_made(&mut self, t: &Transport) {
            let pull = Rc::new(Pull {
                transport: t.clone(),
                left: Cell::new(1_000_000),
                calls: self.0.clone(),
            });
            t.register_producer(PullHandle(pull), false).unwrap();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let c = calls.clone();
    let port = local_listen(&reactor, factory(move |_| Serve(c.clone())));
    let rx = client_thread(&reactor, port.port(), |mut s| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got.len()
    });
    reactor.run().unwrap();
    assert_eq!(rx.recv().unwrap(), 1_000_000);
    assert_eq!(
        calls.get(),
        101,
        "100 chunks, then one call that finds nothing left"
    );
}

#[test]
fn refusing_in_build_protocol_closes_the_socket() {
    let reactor = twistor_testing::reactor();
    struct Refuse(Rc<Cell<u32>>);
    impl Factory for Refuse {
        fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
            self.0.set(self.0.get() + 1);
            None
        }
    }
    let asked = Rc::new(Cell::new(0));
    let port = local_listen(&reactor, Rc::new(Refuse(asked.clone())));
    let rx = client_thread(&reactor, port.port(), |mut s| {
        let mut buf = [0u8; 16];
        s.read(&mut buf).unwrap_or(0)
    });
    reactor.run().unwrap();
    assert_eq!(rx.recv().unwrap(), 0, "closed without a byte");
    assert_eq!(asked.get(), 1);
}

#[test]
fn stop_factory_runs_after_the_last_port_closes() {
    let reactor = twistor_testing::reactor();
    #[derive(Default)]
    struct Counting {
        starts: Cell<u32>,
        stops: Cell<u32>,
    }
    impl Factory for Counting {
        fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
            None
        }
        fn start_factory(&self) {
            self.starts.set(self.starts.get() + 1);
        }
        fn stop_factory(&self) {
            self.stops.set(self.stops.get() + 1);
        }
    }
    let f = Rc::new(Counting::default());
    let a = local_listen(&reactor, f.clone());
    let b = local_listen(&reactor, f.clone());
    assert_eq!((f.starts.get(), f.stops.get()), (1, 0));
    a.stop_listening();
    assert_eq!(f.stops.get(), 0, "one port still uses it");
    b.stop_listening();
    b.stop_listening();
    assert_eq!((f.starts.get(), f.stops.get()), (1, 1));
    assert!(!a.listening() && !b.listening());
}

#[test]
fn abort_discards_the_buffer() {
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    struct Aborter(Log);
    impl Protocol for Aborter {
        fn connection_made(&mut self, t: &Transport) {
            t.write(&pattern(1 << 20));
            t.abort_connection();
            t.write(b"ignored after abort");
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0.borrow_mut().push(format!("{reason:?}"));
        }
    }
    let l = log.clone();
    let port = local_listen(&reactor, factory(move |_| Aborter(l.clone())));
    let rx = client_thread(&reactor, port.port(), |mut s| {
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got.len()
    });
    reactor.run().unwrap();
    assert_eq!(rx.recv().unwrap(), 0, "nothing of the buffer was sent");
    assert_eq!(*log.borrow(), ["Aborted"]);
}

#[test]
fn peer_reset_mid_write_is_one_connection_lost() {
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    struct Flood(Log, Reactor);
    impl Protocol for Flood {
        fn connection_made(&mut self, t: &Transport) {
            // More than the socket buffers hold, so writing is still under way at the reset.
            t.write(&vec![1u8; 32 << 20]);
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0.borrow_mut().push(match reason {
                CloseReason::Lost(_) => "lost".into(),
                other => format!("{other:?}"),
            });
            self.1.stop();
        }
    }
    let (l, r) = (log.clone(), reactor.clone());
    let port = local_listen(&reactor, factory(move |_| Flood(l.clone(), r.clone())));
    let addr: SocketAddr = ([127, 0, 0, 1], port.port()).into();
    thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        let mut buf = vec![0u8; 100_000];
        let mut s2 = s.try_clone().unwrap();
        s2.read_exact(&mut buf).unwrap();
        // SO_LINGER 0: close sends a reset.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
        drop(s2);
    });
    reactor.run().unwrap();
    assert_eq!(*log.borrow(), ["lost"]);
}

#[test]
fn a_reset_reaches_a_protocol_that_paused_reading() {
    // A paused protocol (a proxy waiting for the other side to drain) must still hear that
    // its peer is gone; else the connection, and whatever waits on it, is held for ever.
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    struct Paused(Log, Reactor);
    impl Protocol for Paused {
        fn connection_made(&mut self, t: &Transport) {
            t.pause_producing();
            self.0.borrow_mut().push("made".into());
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {
            self.0.borrow_mut().push("data".into());
        }
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0.borrow_mut().push(match reason {
                CloseReason::Lost(_) => "lost".into(),
                other => format!("{other:?}"),
            });
            self.1.stop();
        }
    }
    let (l, r) = (log.clone(), reactor.clone());
    let port = local_listen(&reactor, factory(move |_| Paused(l.clone(), r.clone())));
    let addr: SocketAddr = ([127, 0, 0, 1], port.port()).into();
    thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"never read").unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    reactor.run().unwrap();
    assert_eq!(*log.borrow(), ["made", "lost"]);
}

#[test]
fn a_panicking_protocol_costs_only_its_connection() {
    let reactor = twistor_testing::reactor();
    // Panics on purpose: the default mode, where a panic costs only what panicked.
    reactor.set_unhandled_panic(UnhandledPanic::Ignore);
    struct Fragile;
    impl Protocol for Fragile {
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            if data.starts_with(b"boom") {
                panic!("protocol bug triggered by peer data");
            }
            t.write(data);
        }
    }
    let port = local_listen(&reactor, factory(|_| Fragile));
    let rx = victim_and_bystander(&reactor, port.port(), b"boom");
    reactor.run().unwrap();
    let (victim_read, echo) = rx.recv().unwrap();
    assert_eq!(
        victim_read.as_deref(),
        Some(&b""[..]),
        "the panicking connection was dropped"
    );
    assert_eq!(&echo, b"still here", "the other connection goes on");
}

/// Connects a victim and a bystander to an echoing server on `port`; the victim sends
/// `trigger`. Gives what the victim read before the server closed its connection (`None`
/// if it was not closed within the read timeout), and what the bystander's echo was.
fn victim_and_bystander(
    reactor: &Reactor,
    port: u16,
    trigger: &'static [u8],
) -> mpsc::Receiver<(Option<Vec<u8>>, [u8; 10])> {
    client_thread(reactor, port, move |mut victim| {
        let mut other = TcpStream::connect(("127.0.0.1", port)).unwrap();
        victim.write_all(trigger).unwrap();
        let mut buf = Vec::new();
        let closed = match victim.read_to_end(&mut buf) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        other.write_all(b"still here").unwrap();
        let mut echo = [0u8; 10];
        other.read_exact(&mut echo).unwrap();
        (closed.then_some(buf), echo)
    })
}

/// A producer is user code the transport runs outside the protocol's callbacks: its panic
/// too costs only that connection (it used to unwind out of `run`).
#[test]
fn a_panicking_producer_costs_only_its_connection() {
    let reactor = twistor_testing::reactor();
    reactor.set_unhandled_panic(UnhandledPanic::Ignore);
    /// Writes once when registered; panics when asked for more (from the transport's
    /// flush, once the first chunk has gone: outside any protocol callback).
    struct Exploding(Transport, Cell<bool>);
    impl Producer for Exploding {
        fn pause_producing(&self) {}
        fn resume_producing(&self) {
            if self.1.replace(true) {
                panic!("producer bug");
            }
            self.0.write(b"first chunk");
        }
        fn stop_producing(&self) {}
    }
    struct Fragile;
    impl Protocol for Fragile {
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            if data.starts_with(b"produce") {
                // A pull producer is asked for data at once, and panics.
                t.register_producer(Exploding(t.clone(), Cell::new(false)), false)
                    .unwrap();
                return;
            }
            t.write(data);
        }
    }
    let port = local_listen(&reactor, factory(|_| Fragile));
    let rx = victim_and_bystander(&reactor, port.port(), b"produce");
    reactor.run().unwrap();
    let (victim_read, echo) = rx.recv().unwrap();
    let victim_read = victim_read.expect("the connection with the panicking producer is closed");
    assert!(
        victim_read.is_empty() || victim_read == b"first chunk",
        "{victim_read:?}"
    );
    assert_eq!(&echo, b"still here", "the other connection goes on");
}

/// The same bug with the test kit's reactor (`UnhandledPanic::StopReactor`): the reactor
/// stops, the test sees the panic, and every connection is closed.
#[test]
fn a_panicking_protocol_fails_the_run_when_panics_stop_the_reactor() {
    let reactor = twistor_testing::reactor();
    struct Fragile;
    impl Protocol for Fragile {
        fn data_received(&mut self, _: &Transport, _: &[u8]) {
            panic!("protocol bug triggered by peer data");
        }
    }
    let port = local_listen(&reactor, factory(|_| Fragile));
    let p = port.port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"boom").unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        tx.send(buf.len()).unwrap();
    });
    let err = reactor.run().unwrap_err();
    match &err {
        Error::UnhandledPanic { what, message } => {
            assert!(what.starts_with("the protocol of the connection from tcp:127.0.0.1:"));
            assert_eq!(message, "protocol bug triggered by peer data");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.recv().unwrap(), 0, "the connection was closed");
}

/// A factory whose `build_protocol` panics: the connection is closed, and under
/// `StopReactor` the run fails with it.
#[test]
fn a_panicking_factory_closes_the_connection() {
    struct Broken;
    impl Factory for Broken {
        fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
            panic!("factory bug");
        }
    }
    for mode in [UnhandledPanic::Ignore, UnhandledPanic::StopReactor] {
        let reactor = twistor_testing::reactor();
        reactor.set_unhandled_panic(mode);
        let port = local_listen(&reactor, Rc::new(Broken));
        let (p, handle) = (port.port(), reactor.handle());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = Vec::new();
            let closed = s.read_to_end(&mut buf).is_ok() && buf.is_empty();
            tx.send(closed).unwrap();
            // (Already stopped, under StopReactor.)
            let _ = handle.call_from_thread(|r| r.stop());
        });
        let ran = reactor.run();
        assert!(rx.recv().unwrap(), "the connection was closed at once");
        match mode {
            UnhandledPanic::Ignore => ran.unwrap(),
            _ => assert!(
                matches!(&ran, Err(Error::UnhandledPanic { message, .. }) if message == "factory bug"),
                "{ran:?}"
            ),
        }
    }
}

#[test]
fn half_close_from_the_peer_reaches_read_connection_lost() {
    let reactor = twistor_testing::reactor();
    struct Polite;
    impl Protocol for Polite {
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            t.write(data);
        }
        fn read_connection_lost(&mut self, t: &Transport) {
            t.write(b" and goodbye");
            t.lose_connection();
        }
    }
    let port = local_listen(&reactor, factory(|_| Polite));
    let rx = client_thread(&reactor, port.port(), |mut s| {
        s.write_all(b"hello").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        got
    });
    reactor.run().unwrap();
    assert_eq!(rx.recv().unwrap(), "hello and goodbye");
}

#[test]
fn lose_write_connection_half_closes_our_side() {
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    struct HalfCloser(Log);
    impl Protocol for HalfCloser {
        fn connection_made(&mut self, t: &Transport) {
            t.write(b"early");
            t.lose_write_connection();
            t.write(b", still sent: the shutdown waits for the buffer");
        }
        fn data_received(&mut self, _: &Transport, data: &[u8]) {
            self.0
                .borrow_mut()
                .push(format!("got {}", String::from_utf8_lossy(data)));
        }
        fn write_connection_lost(&mut self, _: &Transport) {
            self.0.borrow_mut().push("write side closed".into());
        }
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0
                .borrow_mut()
                .push(format!("lost clean={}", reason.is_clean()));
        }
    }
    let l = log.clone();
    let port = local_listen(&reactor, factory(move |_| HalfCloser(l.clone())));
    let rx = client_thread(&reactor, port.port(), |mut s| {
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap(); // EOF after "early"
        s.write_all(b"late").unwrap(); // we may still send
        thread::sleep(Duration::from_millis(50));
        s.shutdown(Shutdown::Write).unwrap();
        got
    });
    reactor.run().unwrap();
    assert_eq!(
        rx.recv().unwrap(),
        "early, still sent: the shutdown waits for the buffer"
    );
    let log = log.borrow();
    assert_eq!(log[0], "write side closed");
    assert_eq!(log[1], "got late");
}

struct ClientLog {
    log: Log,
    reactor: Reactor,
}

impl Factory for ClientLog {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        self.log.borrow_mut().push(format!("build {addr}"));
        struct Hang;
        impl Protocol for Hang {
            fn connection_made(&mut self, t: &Transport) {
                t.write(b"hi");
            }
            fn data_received(&mut self, t: &Transport, _: &[u8]) {
                t.lose_connection();
            }
        }
        Some(Box::new(Hang))
    }
}

impl ClientFactory for ClientLog {
    fn started_connecting(&self, connector: &Connector) {
        self.log
            .borrow_mut()
            .push(format!("started {:?}", connector.state()));
    }
    fn client_connection_failed(&self, _: &Connector, reason: &Error) {
        let kind = match reason {
            Error::ConnectionRefused { .. } => "refused",
            Error::ConnectTimeout { .. } => "timeout",
            Error::DnsLookup { .. } => "dns",
            Error::UserCancelledConnect => "cancelled",
            _ => "other",
        };
        self.log
            .borrow_mut()
            .push(format!("failed {kind}: {reason}"));
        self.reactor.stop();
    }
    fn client_connection_lost(&self, connector: &Connector, reason: &CloseReason) {
        self.log.borrow_mut().push(format!(
            "lost clean={} state={:?}",
            reason.is_clean(),
            connector.state()
        ));
        self.reactor.stop();
    }
}

fn client_log(reactor: &Reactor) -> (Rc<ClientLog>, Log) {
    let log: Log = Rc::default();
    (
        Rc::new(ClientLog {
            log: log.clone(),
            reactor: reactor.clone(),
        }),
        log,
    )
}

#[test]
fn client_factory_hears_the_whole_story() {
    let reactor = twistor_testing::reactor();
    struct Echo;
    impl Protocol for Echo {
        fn data_received(&mut self, t: &Transport, d: &[u8]) {
            t.write(d)
        }
    }
    let port = local_listen(&reactor, factory(|_| Echo));
    let (f, log) = client_log(&reactor);
    let connector = reactor.connect_tcp("127.0.0.1", port.port(), f);
    assert_eq!(
        connector.destination(),
        Address::Tcp(([127, 0, 0, 1], port.port()).into())
    );
    reactor.run().unwrap();
    assert_eq!(
        *log.borrow(),
        [
            "started Connecting".to_string(),
            format!("build tcp:127.0.0.1:{}", port.port()),
            "lost clean=true state=Disconnected".to_string(),
        ]
    );
}

#[test]
fn connection_refused_is_its_own_error() {
    let reactor = twistor_testing::reactor();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (f, log) = client_log(&reactor);
    reactor.connect_tcp("127.0.0.1", port, f);
    reactor.run().unwrap();
    let log = log.borrow();
    assert!(log[1].starts_with("failed refused"), "{log:?}");
}

#[test]
fn unresolvable_name_is_a_dns_error() {
    let reactor = twistor_testing::reactor();
    let (f, log) = client_log(&reactor);
    let connector = reactor.connect_tcp("no-such-host.invalid", 80, f);
    assert!(matches!(connector.destination(), Address::Hostname { .. }));
    reactor.run().unwrap();
    let log = log.borrow();
    assert!(log[1].starts_with("failed dns"), "{log:?}");
    assert!(log[1].contains("no-such-host.invalid"), "{log:?}");
}

#[test]
fn connect_timeout_is_its_own_error() {
    // A listener whose accept queue is full drops further SYNs, so a connect hangs.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    thread::sleep(Duration::from_millis(50));
    let reactor = twistor_testing::reactor();
    let (f, log) = client_log(&reactor);
    reactor.connect_tcp_with(
        "127.0.0.1",
        addr.port(),
        f,
        ConnectOptions::default().timeout(Some(Duration::from_millis(300))),
    );
    reactor.run().unwrap();
    let log = log.borrow();
    assert!(log[1].starts_with("failed timeout"), "{log:?}");
}

#[test]
fn stop_connecting_cancels_the_attempt() {
    let reactor = twistor_testing::reactor();
    let (f, log) = client_log(&reactor);
    let connector = reactor.connect_tcp("no-such-host.invalid", 80, f);
    connector.stop_connecting().unwrap();
    assert!(matches!(
        connector.stop_connecting(),
        Err(Error::NotConnecting)
    ));
    assert_eq!(
        log.borrow()[1],
        "failed cancelled: connection attempt cancelled"
    );
}

#[test]
fn writes_after_close_are_ignored() {
    let reactor = twistor_testing::reactor();
    let kept: Rc<RefCell<Option<Transport>>> = Rc::default();
    struct Keep(Rc<RefCell<Option<Transport>>>, Reactor);
    impl Protocol for Keep {
        fn connection_made(&mut self, t: &Transport) {
            *self.0.borrow_mut() = Some(t.clone());
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        fn connection_lost(&mut self, _: &CloseReason) {
            let t = self.0.borrow().clone().unwrap();
            t.write(b"too late");
            t.lose_connection();
            t.abort_connection();
            assert!(t.disconnecting());
            self.1.stop();
        }
    }
    let (k, r) = (kept.clone(), reactor.clone());
    let port = local_listen(&reactor, factory(move |_| Keep(k.clone(), r.clone())));
    let p = port.port();
    thread::spawn(move || drop(TcpStream::connect(("127.0.0.1", p)).unwrap()));
    reactor.run().unwrap();
    let t = kept.borrow().clone().unwrap();
    t.write(b"still too late");
    assert_eq!(t.buffered(), 0);
}

#[test]
fn addresses_and_socket_options() {
    let reactor = twistor_testing::reactor();
    let seen: Log = Rc::default();
    struct Look(Log);
    impl Protocol for Look {
        fn connection_made(&mut self, t: &Transport) {
            t.set_tcp_nodelay(true).unwrap();
            t.set_tcp_keepalive(true).unwrap();
            self.0
                .borrow_mut()
                .push(format!("{} {}", t.host(), t.peer()));
            t.lose_connection();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let s = seen.clone();
    let port = local_listen(&reactor, factory(move |_| Look(s.clone())));
    let rx = client_thread(&reactor, port.port(), |mut s| {
        let mut sink = Vec::new();
        s.read_to_end(&mut sink).unwrap();
        s.local_addr().unwrap()
    });
    reactor.run().unwrap();
    let client = rx.recv().unwrap();
    assert_eq!(
        seen.borrow()[0],
        format!("tcp:127.0.0.1:{} tcp:{client}", port.port())
    );
}

#[test]
fn port_in_use_says_which_address() {
    let reactor = twistor_testing::reactor();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = reactor
        .listen_tcp_with(
            port,
            factory(|_| Sink),
            ListenOptions::default().interface("127.0.0.1".parse().unwrap()),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("Address already in use"), "{err}");
}

struct Sink;
impl Protocol for Sink {
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

#[test]
fn wrap_protocol_swaps_in_a_wrapper_after_the_callback() {
    let reactor = twistor_testing::reactor();
    /// Echoes; on "UPGRADE" wraps itself in a layer that upper-cases what it echoes.
    struct Plain;
    impl Protocol for Plain {
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            if data == b"UPGRADE" {
                t.write(b"ok ");
                t.wrap_protocol(|inner| Box::new(Shout(inner))).unwrap();
                return;
            }
            t.write(data);
        }
    }
    struct Shout(Box<dyn Protocol>);
    impl Protocol for Shout {
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            self.0.data_received(t, &data.to_ascii_uppercase());
        }
    }
    let port = local_listen(&reactor, factory(|_| Plain));
    let rx = client_thread(&reactor, port.port(), |mut s| {
        let mut got = vec![0u8; 3];
        s.write_all(b"abc").unwrap();
        s.read_exact(&mut got).unwrap();
        s.write_all(b"UPGRADE").unwrap();
        let mut ok = [0u8; 3];
        s.read_exact(&mut ok).unwrap();
        got.extend_from_slice(&ok);
        s.write_all(b"def").unwrap();
        let mut more = [0u8; 3];
        s.read_exact(&mut more).unwrap();
        got.extend_from_slice(&more);
        String::from_utf8(got).unwrap()
    });
    reactor.run().unwrap();
    assert_eq!(rx.recv().unwrap(), "abcok DEF");
}

#[test]
fn a_transport_as_its_own_producer_reads_no_faster_than_its_peer() {
    let reactor = twistor_testing::reactor();
    let max_buffered = Rc::new(Cell::new(0usize));
    struct BoundedEcho(Rc<Cell<usize>>);
    impl Protocol for BoundedEcho {
        fn connection_made(&mut self, t: &Transport) {
            t.register_producer(t.clone(), true).unwrap();
            assert!(matches!(
                t.register_producer(t.clone(), true),
                Err(Error::ProducerAlreadyRegistered)
            ));
        }
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            t.write(data);
            self.0.set(self.0.get().max(t.buffered()));
        }
    }
    let m = max_buffered.clone();
    let port = local_listen(&reactor, factory(move |_| BoundedEcho(m.clone())));
    const TOTAL: usize = 30 << 20;
    let rx = client_thread(&reactor, port.port(), |s| {
        // Write everything before reading anything back: without back-pressure the server
        // would hold nearly all of it.
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            let chunk = vec![5u8; 1 << 16];
            for _ in 0..TOTAL / chunk.len() {
                w.write_all(&chunk).unwrap();
            }
            w.shutdown(Shutdown::Write).unwrap();
        });
        thread::sleep(Duration::from_millis(200));
        let mut s = s;
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        writer.join().unwrap();
        got
    });
    reactor.run().unwrap();
    assert_eq!(rx.recv().unwrap(), TOTAL);
    let max = max_buffered.get();
    assert!(
        max <= 64 * 1024 + READ_CHUNK,
        "the server buffered up to {max} bytes"
    );
}

/// The reactor reads at most this much at once.
const READ_CHUNK: usize = twistor::reactor::READ_BUFFER_SIZE;

#[test]
fn closing_from_write_connection_lost_closes() {
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    struct ShutThenClose(Log, Reactor);
    impl Protocol for ShutThenClose {
        fn connection_made(&mut self, t: &Transport) {
            t.write(b"bye");
            t.lose_write_connection();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        fn write_connection_lost(&mut self, t: &Transport) {
            self.0.borrow_mut().push("write side closed".into());
            t.lose_connection();
        }
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0
                .borrow_mut()
                .push(format!("lost clean={}", reason.is_clean()));
            self.1.stop();
        }
    }
    let (l, r) = (log.clone(), reactor.clone());
    let port = local_listen(
        &reactor,
        factory(move |_| ShutThenClose(l.clone(), r.clone())),
    );
    let p = port.port();
    // The client keeps its socket open until the reactor has stopped: only the server's
    // own close can end this.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let _ = done_rx.recv();
        got
    });
    reactor.run().unwrap();
    done_tx.send(()).unwrap();
    assert_eq!(client.join().unwrap(), b"bye");
    assert_eq!(*log.borrow(), ["write side closed", "lost clean=true"]);
}

/// `Transport::call_later` (Twisted's `self.callLater` in a protocol): the timer gets the
/// protocol itself, sees what `data_received` stored and changes it.
#[test]
fn a_connection_timer_reaches_its_protocols_state() {
    let reactor = twistor_testing::reactor();
    struct Delayed {
        heard: Vec<u8>,
        timers_run: u32,
        log: Log,
    }
    impl Protocol for Delayed {
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            self.heard.extend_from_slice(data);
            assert!(t.reactor().is_some(), "a TCP transport knows its reactor");
            t.call_later(Duration::ZERO, |me: &mut Delayed, t: &Transport| {
                me.timers_run += 1;
                let reply = format!(
                    "timer {} saw {}",
                    me.timers_run,
                    String::from_utf8_lossy(&me.heard)
                );
                t.write(reply.as_bytes());
                t.lose_connection();
            })
            .unwrap();
        }
        fn connection_lost(&mut self, _: &CloseReason) {
            self.log
                .borrow_mut()
                .push(format!("lost after {} timer(s)", self.timers_run));
        }
    }
    let log: Log = Rc::default();
    let l = log.clone();
    let port = local_listen(
        &reactor,
        factory(move |_| Delayed {
            heard: Vec::new(),
            timers_run: 0,
            log: l.clone(),
        }),
    );
    let rx = client_thread(&reactor, port.port(), |mut s| {
        s.write_all(b"ping").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    });
    reactor.run().unwrap();
    assert_eq!(rx.recv().unwrap(), "timer 1 saw ping");
    assert_eq!(*log.borrow(), ["lost after 1 timer(s)"]);
}

/// A connection's timers are cancelled when it is lost (they would find no protocol).
#[test]
fn a_connection_timer_is_cancelled_when_the_connection_is_lost() {
    let reactor = twistor_testing::reactor();
    type Timers = Rc<RefCell<Vec<twistor::DelayedCall>>>;
    struct Patient {
        timers: Timers,
        reactor: Reactor,
    }
    impl Protocol for Patient {
        fn connection_made(&mut self, t: &Transport) {
            let never = t
                .call_later(
                    Duration::from_secs(3600),
                    |_: &mut Patient, _: &Transport| panic!("a timer outlived its connection"),
                )
                .unwrap();
            self.timers.borrow_mut().push(never);
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        fn connection_lost(&mut self, _: &CloseReason) {
            self.reactor.stop();
        }
    }
    let timers: Timers = Rc::default();
    let (t, r) = (timers.clone(), reactor.clone());
    let port = local_listen(
        &reactor,
        factory(move |_| Patient {
            timers: t.clone(),
            reactor: r.clone(),
        }),
    );
    let p = port.port();
    thread::spawn(move || drop(TcpStream::connect(("127.0.0.1", p)).unwrap()));
    reactor.run().unwrap();
    let timers = timers.borrow();
    assert_eq!(timers.len(), 1);
    assert!(timers[0].cancelled(), "cancelled by the connection's end");
}
