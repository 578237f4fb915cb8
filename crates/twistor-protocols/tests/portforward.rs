//! ProxyFactory over real sockets: many echoes through it, a slow reader throttling a
//! fast writer through it, refused destinations, and curl through it to Python's
//! http.server.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use common::{ReactorThread, client, round_trip};
use twistor::protocol::factory;
use twistor::tcp::ListenOptions;
use twistor::{Address, CloseReason, Factory, Protocol, Reactor, Transport};
use twistor_protocols::portforward::ProxyFactory;
use twistor_testing::process::{ChildGuard, have};
use twistor_testing::{MemoryReactor, ProducerState, StringTransport};

fn local() -> ListenOptions {
    ListenOptions::default().interface([127, 0, 0, 1].into())
}

struct Echo;
impl Protocol for Echo {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.write(data);
    }
}

/// An echo server and a proxy in front of it; returns the proxy's port.
fn echo_behind_proxy(reactor: &Reactor) -> u16 {
    let echo = reactor
        .listen_tcp_with(0, factory(|_| Echo), local())
        .unwrap();
    let proxy = ProxyFactory::new(reactor.clone(), "127.0.0.1", echo.port());
    reactor.listen_tcp_with(0, proxy, local()).unwrap().port()
}

#[test]
fn ten_thousand_echoes_over_a_hundred_connections() {
    let (_reactor, port) = ReactorThread::start(echo_behind_proxy);
    let mut conns: Vec<_> = (0..100).map(|_| client(port)).collect();
    for round in 0..100 {
        for (i, c) in conns.iter_mut().enumerate() {
            c.write_all(format!("{i:03}:{round:03}|").as_bytes())
                .unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let mut back = [0u8; 8];
            c.read_exact(&mut back).unwrap();
            assert_eq!(&back, format!("{i:03}:{round:03}|").as_bytes());
        }
    }
    // A half-close is passed on: the echo server sees EOF, closes, and so do we.
    let mut c = conns.pop().unwrap();
    assert_eq!(round_trip(&mut c, b"last"), b"last");
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn unreachable_destination_closes_the_incoming_connection() {
    let (_reactor, port) = ReactorThread::start(|reactor| {
        // A port nothing listens on: bind one, note it, close it.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let proxy = ProxyFactory::new(reactor.clone(), "127.0.0.1", dead_port);
        reactor.listen_tcp_with(0, proxy, local()).unwrap().port()
    });
    let mut c = client(port);
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    assert!(buf.is_empty());
}

const PAYLOAD: usize = 64 << 20;

#[derive(Default)]
struct Watch {
    source: RefCell<Option<Transport>>,
    reader: RefCell<Option<Transport>>,
    received: Cell<usize>,
    held_back: Cell<usize>,
}

/// Writes the whole payload at once, then closes.
struct Source(Rc<Watch>);
impl Protocol for Source {
    fn connection_made(&mut self, t: &Transport) {
        *self.0.source.borrow_mut() = Some(t.clone());
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..PAYLOAD / chunk.len() {
            t.write(&chunk);
        }
        t.lose_connection();
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

/// Reads nothing until resumed.
struct SlowReader(Rc<Watch>);
impl Protocol for SlowReader {
    fn connection_made(&mut self, t: &Transport) {
        t.pause_producing();
        *self.0.reader.borrow_mut() = Some(t.clone());
    }
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        self.0.received.set(self.0.received.get() + data.len());
    }
}

#[test]
fn a_slow_reader_throttles_the_fast_side_through_the_proxy() {
    let reactor = twistor_testing::reactor();
    let watch = Rc::new(Watch::default());
    let w = watch.clone();
    let source = reactor
        .listen_tcp_with(0, factory(move |_| Source(w.clone())), local())
        .unwrap();
    let proxy = ProxyFactory::new(reactor.clone(), "127.0.0.1", source.port());
    let proxy_port = reactor.listen_tcp_with(0, proxy, local()).unwrap().port();
    let w = watch.clone();
    reactor.connect_tcp(
        "127.0.0.1",
        proxy_port,
        factory(move |_| SlowReader(w.clone())),
    );

    // (The test ends when every byte is in; `eof_arriving_while_paused_is_seen_after_resume`
    // covers the close.)
    // Once the source's buffer stops shrinking, the proxy has stopped reading from it.
    let last = Rc::new(Cell::new(0usize));
    let steady = Rc::new(Cell::new(0u32));
    tick(&reactor, watch.clone(), last, steady);
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(120), move || r.stop());
    reactor.run().unwrap();

    let held = watch.held_back.get();
    eprintln!("while the reader was paused the source still held {held} of {PAYLOAD} bytes");
    // Loopback socket buffers take a few MiB each way; the proxy itself holds at most a
    // high-water mark's worth per side. Everything else must wait at the source.
    assert!(
        held > PAYLOAD - (24 << 20),
        "the proxy read too much: {held}"
    );
    assert_eq!(watch.received.get(), PAYLOAD);
}

fn tick(reactor: &Reactor, watch: Rc<Watch>, last: Rc<Cell<usize>>, steady: Rc<Cell<u32>>) {
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(20), move || {
        if watch.received.get() == PAYLOAD {
            r.stop();
            return;
        }
        if watch.held_back.get() == 0 {
            let buffered = watch.source.borrow().as_ref().map_or(0, |t| t.buffered());
            if buffered > 0 && buffered == last.get() {
                steady.set(steady.get() + 1);
            } else {
                steady.set(0);
            }
            last.set(buffered);
            if steady.get() >= 10 {
                watch.held_back.set(buffered);
                if let Some(reader) = watch.reader.borrow().as_ref() {
                    reader.resume_producing();
                }
            }
        }
        tick(&r, watch, last, steady);
    });
}

#[test]
fn curl_through_the_proxy_to_python_http_server() {
    if !have("curl", &["--version"]) || !have("python3", &["--version"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("twistor-pf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.join("hello.txt"), &body).unwrap();

    let (_http, http_port) = ChildGuard::python_http_server(&dir);

    let (_reactor, port) = ReactorThread::start(move |reactor| {
        let proxy = ProxyFactory::new(reactor.clone(), "127.0.0.1", http_port);
        reactor.listen_tcp_with(0, proxy, local()).unwrap().port()
    });
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .arg(format!("http://127.0.0.1:{port}/hello.txt"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), body);
}

struct Hello;
impl Protocol for Hello {
    fn connection_made(&mut self, t: &Transport) {
        t.write(b"hello");
        t.lose_connection();
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

struct PausedAtFirst(Rc<Cell<usize>>, Rc<RefCell<Option<Transport>>>);
impl Protocol for PausedAtFirst {
    fn connection_made(&mut self, t: &Transport) {
        t.pause_producing();
        *self.1.borrow_mut() = Some(t.clone());
    }
    fn data_received(&mut self, _: &Transport, d: &[u8]) {
        self.0.set(self.0.get() + d.len());
    }
    fn connection_lost(&mut self, _: &CloseReason) {
        self.0.set(self.0.get() + 1000);
    }
}

/// The peer's FIN arrives while reading is paused: after resuming, the data and then the end
/// of stream are seen (epoll reports the close only once, so the engine remembers it).
#[test]
fn eof_arriving_while_paused_is_seen_after_resume() {
    let reactor = twistor_testing::reactor();
    let port = reactor
        .listen_tcp_with(0, factory(|_| Hello), local())
        .unwrap()
        .port();
    let got = Rc::new(Cell::new(0));
    let slot: Rc<RefCell<Option<Transport>>> = Default::default();
    let (g, s) = (got.clone(), slot.clone());
    reactor.connect_tcp(
        "127.0.0.1",
        port,
        factory(move |_| PausedAtFirst(g.clone(), s.clone())),
    );
    let s = slot.clone();
    reactor.call_later(Duration::from_millis(300), move || {
        s.borrow().as_ref().unwrap().resume_producing();
    });
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(2), move || r.stop());
    reactor.run().unwrap();
    assert_eq!(
        got.get(),
        1005,
        "5 bytes, then connection_lost before the reactor stops"
    );
}

/// A proxy on the test kit's reactor with both sides on `StringTransport`s: returns the
/// incoming side's protocol and transport, the outgoing side's, and the reactor.
fn wired_in_memory(
    drain: Duration,
) -> (
    Box<dyn Protocol>,
    StringTransport,
    Box<dyn Protocol>,
    StringTransport,
    MemoryReactor,
) {
    let reactor = MemoryReactor::new();
    let proxy = ProxyFactory::new(reactor.clone(), "destination", 80);
    proxy.set_drain_timeout(drain);
    let peer = Address::Memory("client".into());
    let mut server = proxy.build_protocol(&peer).unwrap();
    let incoming = StringTransport::new();
    server.make_connection(&incoming.transport());
    let call = reactor.tcp_clients().pop().expect("the proxy connects out");
    let mut client = call.factory.build_protocol(&peer).unwrap();
    let outgoing = StringTransport::new();
    client.make_connection(&outgoing.transport());
    (server, incoming, client, outgoing, reactor)
}

#[test]
fn a_destination_that_never_drains_is_aborted_at_the_drain_timeout() {
    let (mut server, incoming, _client, outgoing, reactor) =
        wired_in_memory(Duration::from_secs(5));
    server.data_received(&incoming.transport(), b"queued for the destination");
    outgoing.transport().pause_producing();
    outgoing.set_buffered(1_000_000);
    // The client dies (it wrote without reading, and was reset).
    server.connection_lost(&CloseReason::Lost(twistor::Error::io(
        std::io::ErrorKind::ConnectionReset.into(),
    )));
    assert!(
        outgoing.write_closed() && !outgoing.disconnecting(),
        "the destination's sending side is shut after a flush; it is still read from"
    );
    assert_eq!(
        outgoing.producer_state(),
        ProducerState::Producing,
        "and read from meanwhile, so a destination blocked writing to us can go on"
    );
    reactor.advance(Duration::from_millis(4_900));
    assert!(!outgoing.aborted(), "it has until the drain timeout");
    reactor.advance(Duration::from_millis(200));
    assert!(outgoing.aborted(), "then it is cut");
}

#[test]
fn a_client_that_never_drains_is_aborted_when_the_destination_goes() {
    let (_server, incoming, mut client, outgoing, reactor) =
        wired_in_memory(Duration::from_secs(2));
    client.data_received(&outgoing.transport(), b"queued for the client");
    client.connection_lost(&CloseReason::Done);
    assert!(incoming.write_closed());
    reactor.advance(Duration::from_secs(2));
    assert!(incoming.aborted());
}

#[test]
fn a_survivor_that_keeps_draining_is_given_more_time() {
    let (mut server, _incoming, mut client, outgoing, reactor) =
        wired_in_memory(Duration::from_secs(5));
    outgoing.set_buffered(1_000_000);
    server.connection_lost(&CloseReason::Done);
    reactor.advance(Duration::from_secs(4));
    outgoing.set_buffered(400_000);
    reactor.advance(Duration::from_secs(2));
    assert!(!outgoing.aborted(), "it took some: another period");
    outgoing.set_buffered(100_000);
    reactor.advance(Duration::from_secs(5));
    assert!(!outgoing.aborted(), "and more");
    reactor.advance(Duration::from_secs(5));
    assert!(outgoing.aborted(), "then nothing for a whole period");
    client.connection_lost(&CloseReason::Aborted);
    assert!(reactor.clock().delayed_calls().is_empty());
}

#[test]
fn a_survivor_that_has_sent_everything_is_closed_and_hears_its_peer_close() {
    let (mut server, _incoming, mut client, outgoing, _reactor) =
        wired_in_memory(Duration::from_secs(5));
    server.connection_lost(&CloseReason::Done);
    // The flush is done and the sending side shut: close, without waiting for the peer.
    client.write_connection_lost(&outgoing.transport());
    assert!(outgoing.disconnecting());
    // Or, had the peer closed first, its end of stream closes ours.
    let (mut server, _incoming, mut client, outgoing, _reactor) =
        wired_in_memory(Duration::from_secs(5));
    server.connection_lost(&CloseReason::Done);
    client.read_connection_lost(&outgoing.transport());
    assert!(outgoing.disconnecting());
}

#[test]
fn a_survivor_that_closes_in_time_is_not_aborted_and_leaves_no_timer() {
    let (mut server, incoming, mut client, outgoing, reactor) =
        wired_in_memory(Duration::from_secs(5));
    server.connection_lost(&CloseReason::Done);
    assert_eq!(reactor.clock().delayed_calls().len(), 1);
    // The destination took the last bytes and closed.
    client.connection_lost(&CloseReason::Done);
    assert!(reactor.clock().delayed_calls().is_empty());
    reactor.advance(Duration::from_secs(10));
    assert!(!outgoing.aborted());
    assert!(!incoming.aborted());
}
