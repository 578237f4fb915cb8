//! TLS over real TCP connections on 127.0.0.1: a twistor client and a twistor server in one
//! reactor. Echo, verification failures reported to the client factory, STARTTLS, TLS over
//! TLS, a 10 MB transfer closed with close_notify, producers, and pausing.

mod tls_support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tls_support::{Recorder, SharedLog, TestCa, log, pattern, tls_error};
use twistor::protocol::factory;
use twistor::reactor::UnhandledPanic;
use twistor::tls::{ClientTlsConfig, ServerTlsConfig, TlsTransport, start_tls};
use twistor::transport::Producer;
use twistor::{Address, ClientFactory, CloseReason, Connector, Error, Factory, Protocol};
use twistor::{Reactor, Transport};

/// A client factory that builds one protocol and stops the reactor when the connection ends.
struct OneClient {
    reactor: Reactor,
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    lost: Rc<RefCell<Option<CloseReason>>>,
}

impl OneClient {
    /// A client factory for one `protocol`, and where it records how the connection ended.
    #[allow(clippy::type_complexity)]
    fn new(
        reactor: &Reactor,
        protocol: impl Protocol,
    ) -> (Rc<OneClient>, Rc<RefCell<Option<CloseReason>>>) {
        let lost = Rc::new(RefCell::new(None));
        let client = Rc::new(OneClient {
            reactor: reactor.clone(),
            protocol: RefCell::new(Some(Box::new(protocol))),
            lost: lost.clone(),
        });
        (client, lost)
    }
}

impl Factory for OneClient {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        self.protocol.borrow_mut().take()
    }
}

impl ClientFactory for OneClient {
    fn client_connection_failed(&self, _connector: &Connector, reason: &Error) {
        panic!("connection failed: {reason}");
    }

    fn client_connection_lost(&self, _connector: &Connector, reason: &CloseReason) {
        *self.lost.borrow_mut() = Some(reason.clone());
        self.reactor.stop();
    }
}

/// Serves `server_app` with `server_config`, connects `client_app` with `client_config`,
/// runs until the client's connection ends (20 s at most); returns the reason the client
/// factory was given.
fn run_pair<S: Protocol>(
    server_config: ServerTlsConfig,
    server_app: impl Fn() -> S + 'static,
    client_config: ClientTlsConfig,
    client_app: impl Protocol,
) -> CloseReason {
    let reactor = twistor_testing::reactor();
    run_pair_on(
        reactor,
        server_config,
        server_app,
        client_config,
        client_app,
    )
}

/// [`run_pair`] on `reactor`.
fn run_pair_on<S: Protocol>(
    reactor: Reactor,
    server_config: ServerTlsConfig,
    server_app: impl Fn() -> S + 'static,
    client_config: ClientTlsConfig,
    client_app: impl Protocol,
) -> CloseReason {
    let port = reactor
        .listen_ssl(0, factory(move |_| server_app()), server_config)
        .unwrap();
    let (client, lost) = OneClient::new(&reactor, client_app);
    reactor
        .connect_ssl("127.0.0.1", port.port(), client, client_config)
        .unwrap();
    let r = reactor.clone();
    let watchdog = reactor.call_later(Duration::from_secs(20), move || r.stop());
    reactor.run().unwrap();
    assert!(watchdog.active(), "timed out");
    let _ = watchdog.cancel();
    port.stop_listening();
    lost.borrow_mut().take().expect("client connection ended")
}

#[test]
fn echo_over_tcp() {
    let ca = TestCa::new("tcp-echo");
    let (slog, clog) = (log(), log());
    let s = slog.clone();
    let reason = run_pair(
        ca.server_config(),
        move || Recorder::new(&s).echo(),
        ca.client_config("localhost"),
        Recorder::new(&clog)
            .greeting(b"hello over TCP")
            .close_after(14),
    );
    assert!(reason.is_clean(), "{reason}");
    assert_eq!(clog.borrow().data, b"hello over TCP");
    assert!(clog.borrow().lost.as_ref().unwrap().is_clean());
    assert_eq!(clog.borrow().handshakes, 1);
    // The server may still be closing when the client is done; it saw the data.
    assert_eq!(slog.borrow().data, b"hello over TCP");
    assert_eq!(slog.borrow().handshakes, 1);
}

#[test]
fn untrusted_server_is_reported_to_the_client_factory() {
    let ca = TestCa::new("tcp-trusted");
    let rogue = TestCa::new("tcp-rogue");
    let clog = log();
    let reason = run_pair(
        rogue.server_config(),
        move || Recorder::new(&log()),
        ca.client_config("localhost"),
        Recorder::new(&clog).greeting(b"secret"),
    );
    let err = tls_error(&Some(reason));
    assert!(err.contains("certificate verification failed"), "{err}");
    assert_eq!(tls_error(&clog.borrow().lost), err);
}

/// Line protocol with STARTTLS over plain TCP: the client sends `STARTTLS`, the server
/// answers `GO` and starts TLS, the client starts TLS on `GO`, then sends `secret` and
/// closes when it is echoed.
struct StartTls {
    server: Option<ServerTlsConfig>,
    client: Option<ClientTlsConfig>,
    log: SharedLog,
    clear: Vec<u8>,
    tls: Option<Transport>,
}

impl StartTls {
    fn new(log: &SharedLog) -> StartTls {
        StartTls {
            server: None,
            client: None,
            log: log.clone(),
            clear: Vec::new(),
            tls: None,
        }
    }
}

impl Protocol for StartTls {
    fn connection_made(&mut self, transport: &Transport) {
        if self.client.is_some() {
            transport.write(b"STARTTLS\n");
        }
    }

    fn handshake_completed(&mut self, transport: &Transport) {
        let tls = transport.downcast_ref::<TlsTransport>().unwrap();
        let lower = tls.lower_transport().unwrap();
        assert!(lower.downcast_ref::<TlsTransport>().is_none());
        self.log.borrow_mut().handshakes += 1;
        if self.client.is_some() {
            transport.write(b"secret");
        }
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if self.tls.is_some() {
            self.log.borrow_mut().data.extend_from_slice(data);
            if self.server.is_some() {
                transport.write(data);
            } else if self.log.borrow().data == b"secret" {
                transport.lose_connection();
            }
            return;
        }
        self.clear.extend_from_slice(data);
        if self.clear == b"STARTTLS\n" {
            let config = self.server.clone().unwrap();
            transport.write(b"GO\n");
            self.tls = Some(start_tls(transport, config).unwrap());
        } else if self.clear == b"GO\n" {
            let config = self.client.clone().unwrap();
            self.tls = Some(start_tls(transport, &config).unwrap());
        }
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.log.borrow_mut().lost = Some(reason.clone());
    }
}

#[test]
fn start_tls_mid_conversation() {
    let ca = TestCa::new("starttls");
    let (slog, clog) = (log(), log());
    let reactor = twistor_testing::reactor();
    let server_config = ca.server_config();
    let s = slog.clone();
    let port = reactor
        .listen_tcp(
            0,
            factory(move |_| StartTls {
                server: Some(server_config.clone()),
                ..StartTls::new(&s)
            }),
        )
        .unwrap();
    let (client, lost) = OneClient::new(
        &reactor,
        StartTls {
            client: Some(ca.client_config("localhost")),
            ..StartTls::new(&clog)
        },
    );
    reactor.connect_tcp("127.0.0.1", port.port(), client);
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(20), move || r.stop());
    reactor.run().unwrap();
    assert_eq!(clog.borrow().handshakes, 1);
    assert_eq!(slog.borrow().handshakes, 1);
    assert_eq!(slog.borrow().data, b"secret");
    assert_eq!(clog.borrow().data, b"secret");
    let reason = lost.borrow_mut().take().expect("closed");
    assert!(reason.is_clean(), "{reason}");
}

#[test]
fn ten_megabytes_then_close_notify() {
    const SIZE: usize = 10 * 1024 * 1024;
    struct Sender;
    impl Protocol for Sender {
        fn connection_made(&mut self, transport: &Transport) {
            // Written before the handshake completes: held by rustls, then sent.
            let data = pattern(SIZE, 10);
            for chunk in data.chunks(256 * 1024) {
                transport.write(chunk);
            }
            transport.lose_connection();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let ca = TestCa::new("10mb");
    let clog = log();
    let reason = run_pair(
        ca.server_config(),
        || Sender,
        ca.client_config("localhost"),
        Recorder::new(&clog),
    );
    assert!(reason.is_clean(), "{reason}");
    let log = clog.borrow();
    assert!(log.read_lost, "close_notify arrived after the data");
    assert_eq!(log.data.len(), SIZE);
    assert!(log.data == pattern(SIZE, 10));
}

/// A pull producer writing `left` chunks of 64 kB, then unregistering and closing.
struct PullChunks {
    transport: Transport,
    left: Cell<u32>,
}

impl Producer for PullChunks {
    fn pause_producing(&self) {}
    fn resume_producing(&self) {
        let left = self.left.get();
        if left == 0 {
            return;
        }
        self.left.set(left - 1);
        self.transport.write(&pattern(64 * 1024, left));
        if left == 1 {
            self.transport.unregister_producer();
            self.transport.lose_connection();
        }
    }
    fn stop_producing(&self) {}
}

/// A streaming producer that writes whenever it is not paused, from reactor turns.
struct Streamer {
    transport: Transport,
    reactor: Reactor,
    left: Cell<u32>,
    paused: Cell<bool>,
    pauses: Rc<Cell<u32>>,
    me: RefCell<Option<std::rc::Weak<Streamer>>>,
}

impl Streamer {
    fn go(self: &Rc<Self>) {
        while !self.paused.get() && self.left.get() > 0 {
            let left = self.left.get();
            self.left.set(left - 1);
            self.transport.write(&pattern(64 * 1024, left));
        }
        if self.left.get() == 0 {
            self.transport.unregister_producer();
            self.transport.lose_connection();
        }
    }
}

impl Producer for Streamer {
    fn pause_producing(&self) {
        self.paused.set(true);
        self.pauses.set(self.pauses.get() + 1);
    }
    fn resume_producing(&self) {
        self.paused.set(false);
        let me = self.me.borrow().clone().unwrap();
        // Produce from the reactor, not from inside the consumer's call.
        self.reactor.call_soon(move || {
            if let Some(s) = me.upgrade() {
                s.go();
            }
        });
    }
    fn stop_producing(&self) {
        self.left.set(0);
    }
}

#[test]
fn producers_run_through_tls() {
    let ca = TestCa::new("producers");
    // Pull.
    struct PullServer;
    impl Protocol for PullServer {
        fn connection_made(&mut self, transport: &Transport) {
            transport
                .register_producer(
                    PullChunks {
                        transport: transport.clone(),
                        left: Cell::new(40),
                    },
                    false,
                )
                .unwrap();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let clog = log();
    let reason = run_pair(
        ca.server_config(),
        || PullServer,
        ca.client_config("localhost"),
        Recorder::new(&clog),
    );
    assert!(reason.is_clean(), "{reason}");
    let expected: Vec<u8> = (1..=40).rev().flat_map(|i| pattern(64 * 1024, i)).collect();
    assert!(clog.borrow().data == expected);

    // Streaming, paused by the lower transport's buffer while the client reads slowly.
    let pauses = Rc::new(Cell::new(0));
    let p = pauses.clone();
    let reactor_slot: Rc<RefCell<Option<Reactor>>> = Rc::new(RefCell::new(None));
    let rs = reactor_slot.clone();
    struct StreamServer {
        pauses: Rc<Cell<u32>>,
        reactor: Rc<RefCell<Option<Reactor>>>,
    }
    impl Protocol for StreamServer {
        fn handshake_completed(&mut self, transport: &Transport) {
            let streamer = Rc::new(Streamer {
                transport: transport.clone(),
                reactor: self.reactor.borrow().clone().unwrap(),
                left: Cell::new(160),
                paused: Cell::new(false),
                pauses: self.pauses.clone(),
                me: RefCell::new(None),
            });
            *streamer.me.borrow_mut() = Some(Rc::downgrade(&streamer));
            transport.register_producer(streamer.clone(), true).unwrap();
            streamer.go();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let reactor = twistor_testing::reactor();
    *reactor_slot.borrow_mut() = Some(reactor.clone());
    let port = reactor
        .listen_ssl(
            0,
            factory(move |_| StreamServer {
                pauses: p.clone(),
                reactor: rs.clone(),
            }),
            ca.server_config(),
        )
        .unwrap();
    let clog = log();
    let (client, lost) = OneClient::new(&reactor, Recorder::new(&clog));
    reactor
        .connect_ssl(
            "127.0.0.1",
            port.port(),
            client,
            ca.client_config("localhost"),
        )
        .unwrap();
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(20), move || r.stop());
    reactor.run().unwrap();
    reactor_slot.borrow_mut().take();
    let reason = lost.borrow_mut().take().expect("closed");
    assert!(reason.is_clean(), "{reason}");
    let expected: Vec<u8> = (1..=160)
        .rev()
        .flat_map(|i| pattern(64 * 1024, i))
        .collect();
    assert_eq!(clog.borrow().data.len(), expected.len());
    assert!(clog.borrow().data == expected);
    assert!(pauses.get() > 0, "the producer was paused at least once");
}

/// Pauses reading for a moment after every megabyte, resuming from a timer.
struct SlowReader {
    log: SharedLog,
    reactor: Reactor,
    next_pause: usize,
    pauses: u32,
}

impl Protocol for SlowReader {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.log.borrow_mut().data.extend_from_slice(data);
        if self.log.borrow().data.len() >= self.next_pause {
            self.next_pause += 1024 * 1024;
            self.pauses += 1;
            transport.pause_producing();
            let t = transport.clone();
            let log = self.log.clone();
            let len = log.borrow().data.len();
            self.reactor.call_later(Duration::from_millis(20), move || {
                assert_eq!(log.borrow().data.len(), len, "nothing while paused");
                t.resume_producing();
            });
        }
    }

    fn read_connection_lost(&mut self, transport: &Transport) {
        self.log.borrow_mut().read_lost = true;
        transport.lose_connection();
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.log.borrow_mut().lost = Some(reason.clone());
        self.log.borrow_mut().handshakes = self.pauses;
    }
}

#[test]
fn pausing_reading_over_tcp() {
    const SIZE: usize = 4 * 1024 * 1024;
    struct Sender;
    impl Protocol for Sender {
        fn handshake_completed(&mut self, transport: &Transport) {
            transport.write(&pattern(SIZE, 3));
            transport.lose_connection();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let ca = TestCa::new("slow-reader");
    let reactor = twistor_testing::reactor();
    let port = reactor
        .listen_ssl(0, factory(|_| Sender), ca.server_config())
        .unwrap();
    let clog = log();
    let (client, lost) = OneClient::new(
        &reactor,
        SlowReader {
            log: clog.clone(),
            reactor: reactor.clone(),
            next_pause: 1024 * 1024,
            pauses: 0,
        },
    );
    reactor
        .connect_ssl(
            "127.0.0.1",
            port.port(),
            client,
            ca.client_config("localhost"),
        )
        .unwrap();
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(20), move || r.stop());
    reactor.run().unwrap();
    let reason = lost.borrow_mut().take().expect("closed");
    assert!(reason.is_clean(), "{reason}");
    let log = clog.borrow();
    assert!(log.read_lost);
    assert!(log.data == pattern(SIZE, 3));
    assert!(log.handshakes >= 3, "paused {} times", log.handshakes);
}

/// TLS started inside a TLS connection, over real TCP.
#[test]
fn tls_over_tls_over_tcp() {
    struct Inner {
        server: Option<ServerTlsConfig>,
        client: Option<ClientTlsConfig>,
        log: SharedLog,
        upgraded: bool,
    }
    impl Protocol for Inner {
        fn handshake_completed(&mut self, transport: &Transport) {
            let tls = transport.downcast_ref::<TlsTransport>().unwrap();
            if !self.upgraded {
                if self.client.is_some() {
                    transport.write(b"STARTTLS\n");
                }
                return;
            }
            let lower = tls.lower_transport().unwrap();
            assert!(lower.downcast_ref::<TlsTransport>().is_some());
            self.log.borrow_mut().handshakes += 1;
            if self.client.is_some() {
                transport.write(b"inner secret");
            }
        }
        fn data_received(&mut self, transport: &Transport, data: &[u8]) {
            if self.upgraded {
                self.log.borrow_mut().data.extend_from_slice(data);
                if self.server.is_some() {
                    transport.write(data);
                } else if self.log.borrow().data == b"inner secret" {
                    transport.lose_connection();
                }
            } else if data == b"STARTTLS\n" {
                transport.write(b"GO\n");
                start_tls(transport, self.server.as_ref().unwrap()).unwrap();
                self.upgraded = true;
            } else if data == b"GO\n" {
                start_tls(transport, self.client.as_ref().unwrap()).unwrap();
                self.upgraded = true;
            }
        }
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.log.borrow_mut().lost = Some(reason.clone());
        }
    }
    let outer = TestCa::new("outer-tcp");
    let inner = TestCa::new("inner-tcp");
    let (slog, clog) = (log(), log());
    let s = slog.clone();
    let inner_server = inner.server_config();
    let reason = run_pair(
        outer.server_config(),
        move || Inner {
            server: Some(inner_server.clone()),
            client: None,
            log: s.clone(),
            upgraded: false,
        },
        outer.client_config("localhost"),
        Inner {
            server: None,
            client: Some(inner.client_config("localhost")),
            log: clog.clone(),
            upgraded: false,
        },
    );
    assert!(reason.is_clean(), "{reason}");
    assert_eq!(slog.borrow().data, b"inner secret");
    assert_eq!(clog.borrow().data, b"inner secret");
    assert_eq!((slog.borrow().handshakes, clog.borrow().handshakes), (1, 1));
}

/// The same pull producer over plain TCP: the chunk written (and the close asked for) from
/// inside `resume_producing` is sent before the connection closes. (A regression test for
/// the stream transport, which closed at once and dropped that chunk.)
#[test]
fn pull_producer_closing_from_resume_over_plain_tcp() {
    struct PullServer;
    impl Protocol for PullServer {
        fn connection_made(&mut self, transport: &Transport) {
            transport
                .register_producer(
                    PullChunks {
                        transport: transport.clone(),
                        left: Cell::new(8),
                    },
                    false,
                )
                .unwrap();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let reactor = twistor_testing::reactor();
    let port = reactor.listen_tcp(0, factory(|_| PullServer)).unwrap();
    let clog = log();
    let (client, lost) = OneClient::new(&reactor, Recorder::new(&clog));
    reactor.connect_tcp("127.0.0.1", port.port(), client);
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(20), move || r.stop());
    reactor.run().unwrap();
    assert!(lost.borrow().as_ref().is_some_and(CloseReason::is_clean));
    let expected: Vec<u8> = (1..=8).rev().flat_map(|i| pattern(64 * 1024, i)).collect();
    assert_eq!(clog.borrow().data.len(), expected.len());
}

/// A panic in the protocol under TLS costs only that connection, which is reported lost.
#[test]
fn a_panicking_protocol_under_tls_loses_its_connection() {
    struct Panicky(SharedLog);
    impl Protocol for Panicky {
        fn data_received(&mut self, _: &Transport, _: &[u8]) {
            panic!("boom under TLS");
        }
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0.borrow_mut().lost = Some(reason.clone());
        }
    }
    let ca = TestCa::new("panic");
    let slog = log();
    let s = slog.clone();
    let clog = log();
    let reactor = twistor_testing::reactor();
    // Panics on purpose: the default mode, where a panic costs only that connection.
    reactor.set_unhandled_panic(UnhandledPanic::Ignore);
    let reason = run_pair_on(
        reactor,
        ca.server_config(),
        move || Panicky(s.clone()),
        ca.client_config("localhost"),
        Recorder::new(&clog).greeting(b"trigger"),
    );
    assert!(!reason.is_clean());
    let server_reason = slog.borrow().lost.clone();
    match server_reason {
        Some(CloseReason::Lost(Error::ProtocolPanicked(msg))) => {
            assert!(msg.contains("boom under TLS"))
        }
        other => panic!("{other:?}"),
    }
}
