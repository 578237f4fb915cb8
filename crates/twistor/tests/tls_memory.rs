//! TLS as a layer, tested in memory (no sockets): handshakes, verification, SNI, ALPN,
//! TLS over TLS, pausing, producers, closing, bad input, and key and certificate loading.

mod tls_support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tls_support::{Recorder, SharedLog, TestCa, log, pattern, tls_error, tls_failure};
use twistor::tls::{
    AlertDescription, ClientTlsConfig, Identity, ServerTlsConfig, TlsError, TlsProtocol,
    TlsTransport, TlsVersion, TrustRoots, start_tls,
};
use twistor::transport::Producer;
use twistor::{CloseReason, Error, Protocol, Transport};
use twistor_testing::{Clock, ConnectedPair, StringTransport};

fn server(config: &ServerTlsConfig, app: impl Protocol) -> TlsProtocol {
    TlsProtocol::server(config, Box::new(app)).unwrap()
}

fn client(config: &ClientTlsConfig, app: impl Protocol) -> TlsProtocol {
    TlsProtocol::client(config, Box::new(app)).unwrap()
}

#[test]
fn handshake_echo_and_clean_close() {
    let ca = TestCa::new("mem-ca");
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Recorder::new(&slog).echo()),
        client(
            &ca.client_config("localhost"),
            Recorder::new(&clog).greeting(b"hello, TLS"),
        ),
    );
    pair.pump();
    assert_eq!(slog.borrow().data, b"hello, TLS");
    assert_eq!(clog.borrow().data, b"hello, TLS");
    assert_eq!((slog.borrow().handshakes, clog.borrow().handshakes), (1, 1));
    assert_eq!(clog.borrow().version, Some(TlsVersion::Tls13));
    assert_eq!(clog.borrow().server_name.as_deref(), Some("localhost"));
    assert_eq!(slog.borrow().server_name.as_deref(), Some("localhost"));
    assert!(
        clog.borrow()
            .peer_certs
            .as_ref()
            .is_some_and(|c| c.len() == 1)
    );
    assert!(slog.borrow().peer_certs.is_none(), "no client certificate");
    let ct = clog.borrow().transport.clone().unwrap();
    assert!(ct.downcast_ref::<TlsTransport>().is_some());
    ct.write_sequence(&[b", and", b"", b" more"]);
    pair.pump();
    assert_eq!(clog.borrow().data, b"hello, TLS, and more");
    ct.lose_connection();
    pair.pump();
    assert!(pair.closed());
    assert!(
        slog.borrow().read_lost,
        "the server saw close_notify as end of input"
    );
    assert!(clog.borrow().lost.as_ref().unwrap().is_clean());
    assert!(slog.borrow().lost.as_ref().unwrap().is_clean());
}

/// Both directions fed one byte at a time through `StringTransport`s.
#[test]
fn handshake_and_data_one_byte_at_a_time() {
    let ca = TestCa::new("bytewise");
    let (slog, clog) = (log(), log());
    let (sst, cst) = (StringTransport::new(), StringTransport::new());
    let (st, ct) = (sst.transport(), cst.transport());
    let mut s = server(&ca.server_config(), Recorder::new(&slog).echo());
    let mut c = client(
        &ca.client_config("localhost"),
        Recorder::new(&clog).greeting(b"one byte at a time"),
    );
    s.make_connection(&st);
    c.make_connection(&ct);
    for _ in 0..20 {
        for b in cst.take() {
            s.data_received(&st, &[b]);
        }
        for b in sst.take() {
            c.data_received(&ct, &[b]);
        }
    }
    assert_eq!(clog.borrow().data, b"one byte at a time");
    assert_eq!(clog.borrow().handshakes, 1);
}

#[test]
fn tls12_can_be_forced() {
    let ca = TestCa::new("v12");
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(
            &ca.server_config().with_versions(&[TlsVersion::Tls12]),
            Recorder::new(&slog).echo(),
        ),
        client(
            &ca.client_config("localhost"),
            Recorder::new(&clog).greeting(b"old"),
        ),
    );
    pair.pump();
    assert_eq!(clog.borrow().version, Some(TlsVersion::Tls12));
    assert_eq!(clog.borrow().data, b"old");
}

#[test]
fn alpn_is_negotiated_and_visible() {
    let ca = TestCa::new("alpn");
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(
            &ca.server_config().with_alpn(["h2", "http/1.1"]),
            Recorder::new(&slog),
        ),
        client(
            &ca.client_config("localhost")
                .with_alpn(["http/1.1", "spdy/1"]),
            Recorder::new(&clog),
        ),
    );
    pair.pump();
    assert_eq!(clog.borrow().alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(slog.borrow().alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[test]
fn alpn_mismatch_is_refused() {
    let ca = TestCa::new("alpn-no");
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(&ca.server_config().with_alpn(["h2"]), Recorder::new(&slog)),
        client(
            &ca.client_config("localhost").with_alpn(["imap"]),
            Recorder::new(&clog),
        ),
    );
    pair.pump();
    assert!(pair.closed());
    let err = tls_error(&slog.borrow().lost);
    assert!(err.contains("protocol"), "{err}");
    assert!(tls_error(&clog.borrow().lost).contains("alert"));
}

/// Handshakes with `config`, asking for `name`; returns the served certificate's DER, or
/// the client's error.
fn served_cert(config: &ServerTlsConfig, ca: &TestCa, name: &str) -> Result<Vec<u8>, String> {
    let clog = log();
    let mut pair = ConnectedPair::new(
        server(config, Recorder::new(&log())),
        client(&ca.client_config(name), Recorder::new(&clog)),
    );
    pair.pump();
    let log = clog.borrow();
    match &log.peer_certs {
        Some(certs) if log.handshakes == 1 => Ok(certs[0].clone()),
        _ => Err(tls_error(&log.lost)),
    }
}

#[test]
fn sni_chooses_the_certificate() {
    let ca = TestCa::new("sni");
    let default = ca.leaf("default", "default", &["localhost", "other.test"]);
    let a = ca.leaf("a", "a.test", &["a.test"]);
    let b = ca.leaf("b", "b.test", &["B.test"]);
    let wild = ca.leaf("wild", "wild", &["*.wild.test"]);
    let config = ServerTlsConfig::new(default.identity())
        .with_sni_certificate("a.test", a.identity())
        .with_sni_certificate("B.TEST", b.identity())
        .with_sni_certificate("*.wild.test", wild.identity());
    assert_eq!(served_cert(&config, &ca, "a.test").unwrap(), a.der);
    assert_eq!(served_cert(&config, &ca, "b.test").unwrap(), b.der);
    assert_eq!(served_cert(&config, &ca, "x.wild.test").unwrap(), wild.der);
    assert_eq!(
        served_cert(&config, &ca, "other.test").unwrap(),
        default.der
    );
    // An IP address sends no SNI: the default certificate.
    let ip = ca.leaf("ip", "ip", &["127.0.0.1"]);
    let by_ip = ServerTlsConfig::new(ip.identity()).with_sni_certificate("a.test", a.identity());
    assert_eq!(served_cert(&by_ip, &ca, "127.0.0.1").unwrap(), ip.der);

    let strict = ServerTlsConfig::sni_only().with_sni_certificate("a.test", a.identity());
    assert_eq!(served_cert(&strict, &ca, "a.test").unwrap(), a.der);
    let err = served_cert(&strict, &ca, "other.test").unwrap_err();
    assert!(err.contains("alert"), "{err}");
}

#[test]
fn untrusted_certificate_is_refused() {
    let ca = TestCa::new("real-ca");
    let other = TestCa::new("other-ca");
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(&other.server_config(), Recorder::new(&slog)),
        client(
            &ca.client_config("localhost"),
            Recorder::new(&clog).greeting(b"secret"),
        ),
    );
    pair.pump();
    let err = tls_error(&clog.borrow().lost);
    assert!(err.contains("certificate verification failed"), "{err}");
    assert!(
        tls_failure(&clog.borrow().lost).is_unknown_issuer(),
        "{err}"
    );
    assert_eq!(clog.borrow().handshakes, 0);
    assert!(slog.borrow().data.is_empty(), "nothing was sent to them");
    let serr = tls_error(&slog.borrow().lost);
    assert!(serr.contains("alert"), "{serr}");
}

#[test]
fn an_expired_certificate_is_refused_and_says_so() {
    let ca = TestCa::new("expired-ca");
    let (slog, clog) = (log(), log());
    let expired = ServerTlsConfig::new(ca.expired_leaf("old").identity());
    let mut pair = ConnectedPair::new(
        server(&expired, Recorder::new(&slog)),
        client(&ca.client_config("localhost"), Recorder::new(&clog)),
    );
    pair.pump();
    let failure = tls_failure(&clog.borrow().lost);
    assert!(failure.is_expired_certificate(), "{failure}");
    assert!(!failure.is_unknown_issuer());
    assert!(matches!(
        tls_failure(&slog.borrow().lost),
        TlsError::AlertReceived(AlertDescription::CertificateExpired)
    ));
}

#[test]
fn wrong_host_name_is_refused() {
    let ca = TestCa::new("name-ca");
    let clog = log();
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Recorder::new(&log())),
        client(&ca.client_config("example.org"), Recorder::new(&clog)),
    );
    pair.pump();
    let err = tls_error(&clog.borrow().lost);
    assert!(err.contains("certificate verification failed"), "{err}");
    assert!(err.contains("example.org"), "{err}");
}

#[test]
fn dangerous_accept_any_certificate_accepts_anything() {
    let other = TestCa::new("anything");
    let clog = log();
    let config = ClientTlsConfig::new("not-the-name.example")
        .unwrap()
        .dangerous_accept_any_certificate();
    let mut pair = ConnectedPair::new(
        server(&other.server_config(), Recorder::new(&log()).echo()),
        client(&config, Recorder::new(&clog).greeting(b"ok")),
    );
    pair.pump();
    assert_eq!(clog.borrow().data, b"ok");
}

#[test]
fn client_certificates() {
    let ca = TestCa::new("mtls");
    let client_leaf = ca.leaf("client", "alice", &["alice.test"]);
    let required = ca
        .server_config()
        .require_client_certificate(TrustRoots::from_path(ca.ca_path()).unwrap());

    // Without a certificate: refused.
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(&required, Recorder::new(&slog)),
        client(
            &ca.client_config("localhost"),
            Recorder::new(&clog).greeting(b"hi"),
        ),
    );
    pair.pump();
    assert!(tls_error(&slog.borrow().lost).contains("certificate"));
    assert!(slog.borrow().data.is_empty());

    // With one: the server sees it.
    let slog = log();
    let config = ca
        .client_config("localhost")
        .with_client_certificate(&client_leaf.cert_path, &client_leaf.key_path)
        .unwrap();
    let mut pair = ConnectedPair::new(
        server(&required, Recorder::new(&slog)),
        client(&config, Recorder::new(&log()).greeting(b"hi")),
    );
    pair.pump();
    assert_eq!(slog.borrow().data, b"hi");
    assert_eq!(
        slog.borrow().peer_certs.as_ref().unwrap()[0],
        client_leaf.der
    );
}

#[test]
fn writes_before_the_handshake_are_sent_before_close_notify() {
    struct WriteAndClose;
    impl Protocol for WriteAndClose {
        fn connection_made(&mut self, transport: &Transport) {
            transport.write(b"early bird");
            transport.lose_connection();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let ca = TestCa::new("early");
    let slog = log();
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Recorder::new(&slog)),
        client(&ca.client_config("localhost"), WriteAndClose),
    );
    pair.pump();
    assert!(pair.closed());
    assert_eq!(slog.borrow().data, b"early bird");
    assert!(slog.borrow().read_lost);
    assert!(slog.borrow().lost.as_ref().unwrap().is_clean());
}

#[test]
fn abort_closes_at_once() {
    let ca = TestCa::new("abort");
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Recorder::new(&slog)),
        client(&ca.client_config("localhost"), Recorder::new(&clog)),
    );
    pair.pump();
    clog.borrow().transport.clone().unwrap().abort_connection();
    pair.pump();
    assert!(matches!(clog.borrow().lost, Some(CloseReason::Aborted)));
    assert!(matches!(slog.borrow().lost, Some(CloseReason::Lost(_))));
}

/// A server protocol that pauses reading on the first data, and keeps what it got.
struct Pauser {
    log: SharedLog,
    transport: Rc<RefCell<Option<Transport>>>,
}

impl Protocol for Pauser {
    fn connection_made(&mut self, transport: &Transport) {
        *self.transport.borrow_mut() = Some(transport.clone());
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.log.borrow_mut().data.extend_from_slice(data);
        transport.pause_producing();
    }
}

#[test]
fn pausing_holds_decrypted_data_until_resumed() {
    struct BigWrite;
    impl Protocol for BigWrite {
        fn handshake_completed(&mut self, transport: &Transport) {
            // Three records (16 kB at most each) in one chunk of the lower transport.
            transport.write(&pattern(40_000, 7));
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let ca = TestCa::new("pause");
    let slog = log();
    let handle = Rc::new(RefCell::new(None));
    let mut pair = ConnectedPair::new(
        server(
            &ca.server_config(),
            Pauser {
                log: slog.clone(),
                transport: handle.clone(),
            },
        ),
        client(&ca.client_config("localhost"), BigWrite),
    );
    pair.pump();
    assert_eq!(slog.borrow().data.len(), 16 * 1024, "paused after one read");
    let st = handle.borrow().clone().unwrap();
    pair.pump();
    assert_eq!(slog.borrow().data.len(), 16 * 1024, "still paused");
    st.resume_producing();
    assert_eq!(slog.borrow().data.len(), 32 * 1024, "one more, then paused");
    st.resume_producing();
    st.resume_producing();
    pair.pump();
    assert!(slog.borrow().data == pattern(40_000, 7));
}

/// A pull producer that writes `chunks` chunks of `size` bytes, then unregisters and closes.
struct Chunks {
    transport: Transport,
    left: Cell<usize>,
    size: usize,
    paused: Rc<Cell<u32>>,
}

impl Producer for Chunks {
    fn pause_producing(&self) {
        self.paused.set(self.paused.get() + 1);
    }
    fn resume_producing(&self) {
        let left = self.left.get();
        if left == 0 {
            return;
        }
        self.left.set(left - 1);
        self.transport
            .write(&pattern(self.size, left as u32)[..self.size]);
        if left == 1 {
            self.transport.unregister_producer();
            self.transport.lose_connection();
        }
    }
    fn stop_producing(&self) {}
}

#[test]
fn a_pull_producer_runs_through_tls() {
    struct Produce(Rc<Cell<u32>>);
    impl Protocol for Produce {
        fn connection_made(&mut self, transport: &Transport) {
            // Registered before the handshake: held until it completes.
            transport
                .register_producer(
                    Chunks {
                        transport: transport.clone(),
                        left: Cell::new(20),
                        size: 10_000,
                        paused: self.0.clone(),
                    },
                    false,
                )
                .unwrap();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let ca = TestCa::new("producer");
    let slog = log();
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Produce(Rc::new(Cell::new(0)))),
        client(&ca.client_config("localhost"), Recorder::new(&slog)),
    );
    pair.pump();
    let expected: Vec<u8> = (1..=20u32).rev().flat_map(|i| pattern(10_000, i)).collect();
    assert_eq!(slog.borrow().data.len(), expected.len());
    assert!(slog.borrow().data == expected);
    assert!(slog.borrow().lost.as_ref().unwrap().is_clean());
}

#[test]
fn registering_a_second_producer_fails() {
    struct Nop;
    impl Producer for Nop {
        fn pause_producing(&self) {}
        fn resume_producing(&self) {}
        fn stop_producing(&self) {}
    }
    let ca = TestCa::new("two-producers");
    let clog = log();
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Recorder::new(&log())),
        client(&ca.client_config("localhost"), Recorder::new(&clog)),
    );
    pair.pump();
    let t = clog.borrow().transport.clone().unwrap();
    t.register_producer(Nop, true).unwrap();
    assert!(matches!(
        t.register_producer(Nop, true),
        Err(Error::ProducerAlreadyRegistered)
    ));
    t.unregister_producer();
    t.register_producer(Nop, true).unwrap();
}

/// A line protocol that upgrades to TLS on `STARTTLS`: the client asks, the server says
/// `GO` in the clear (of this layer) and starts TLS; the client starts TLS on `GO`.
struct Upgrader {
    server: Option<ServerTlsConfig>,
    client: Option<ClientTlsConfig>,
    log: SharedLog,
    upgraded: bool,
    send_after: &'static [u8],
}

impl Protocol for Upgrader {
    fn handshake_completed(&mut self, transport: &Transport) {
        if self.upgraded {
            self.log.borrow_mut().handshakes += 1;
            let tls = transport.downcast_ref::<TlsTransport>().unwrap();
            let lower = tls.lower_transport().unwrap();
            assert!(
                lower.downcast_ref::<TlsTransport>().is_some(),
                "TLS over TLS"
            );
            if !self.send_after.is_empty() {
                transport.write(self.send_after);
            }
        } else if self.client.is_some() {
            transport.write(b"STARTTLS\n");
        }
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if self.upgraded {
            self.log.borrow_mut().data.extend_from_slice(data);
            if self.server.is_some() {
                transport.write(data);
            }
            return;
        }
        if data == b"STARTTLS\n" {
            if let Some(config) = &self.server {
                transport.write(b"GO\n");
                start_tls(transport, config).unwrap();
                self.upgraded = true;
            }
        } else if data == b"GO\n"
            && let Some(config) = &self.client
        {
            start_tls(transport, config).unwrap();
            self.upgraded = true;
        }
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.log.borrow_mut().lost = Some(reason.clone());
    }
}

#[test]
fn tls_over_tls_in_memory() {
    let outer = TestCa::new("outer");
    let inner = TestCa::new("inner");
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(
            &outer.server_config(),
            Upgrader {
                server: Some(inner.server_config()),
                client: None,
                log: slog.clone(),
                upgraded: false,
                send_after: b"",
            },
        ),
        client(
            &outer.client_config("localhost"),
            Upgrader {
                server: None,
                client: Some(inner.client_config("localhost")),
                log: clog.clone(),
                upgraded: false,
                send_after: b"doubly wrapped",
            },
        ),
    );
    pair.pump();
    assert_eq!(slog.borrow().handshakes, 1);
    assert_eq!(clog.borrow().handshakes, 1);
    assert_eq!(slog.borrow().data, b"doubly wrapped");
    assert_eq!(clog.borrow().data, b"doubly wrapped", "echoed");
    pair.client_transport().lose_connection();
    pair.pump();
    assert!(slog.borrow().lost.is_some() && clog.borrow().lost.is_some());
}

#[test]
fn garbage_from_the_peer_fails_cleanly() {
    let ca = TestCa::new("garbage");
    let config = ca.server_config();
    for seed in 0..200u32 {
        let slog = log();
        let st = StringTransport::new();
        let t = st.transport();
        let mut s = server(&config, Recorder::new(&slog));
        s.make_connection(&t);
        let junk = pattern(1 + (seed as usize * 37) % 3000, seed);
        for chunk in junk.chunks(1 + seed as usize % 700) {
            s.data_received(&t, chunk);
        }
        // Either still waiting for more of a record, or failing with an alert.
        if st.disconnecting() {
            s.connection_lost(&CloseReason::Done);
            assert!(tls_error(&slog.borrow().lost).len() > 3);
        }
    }
    // A plain-text HTTP request to a TLS port.
    let slog = log();
    let st = StringTransport::new();
    let t = st.transport();
    let mut s = server(&config, Recorder::new(&slog));
    s.make_connection(&t);
    s.data_received(&t, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(st.disconnecting());
    assert!(!st.value().is_empty(), "an alert was sent");
    s.connection_lost(&CloseReason::Done);
    let err = tls_error(&slog.borrow().lost);
    assert!(!err.is_empty());
}

#[test]
fn truncated_connection_is_an_error() {
    let ca = TestCa::new("truncated");
    let clog = log();
    let (sst, cst) = (StringTransport::new(), StringTransport::new());
    let (st, ct) = (sst.transport(), cst.transport());
    let mut s = server(&ca.server_config(), Recorder::new(&log()).greeting(b"x"));
    let mut c = client(&ca.client_config("localhost"), Recorder::new(&clog));
    s.make_connection(&st);
    c.make_connection(&ct);
    for _ in 0..4 {
        s.data_received(&st, &cst.take());
        c.data_received(&ct, &sst.take());
    }
    assert_eq!(clog.borrow().data, b"x");
    // TCP end of stream with no close_notify.
    c.read_connection_lost(&ct);
    assert!(cst.disconnecting());
    c.connection_lost(&CloseReason::Done);
    let err = tls_error(&clog.borrow().lost);
    assert!(err.contains("without sending TLS close_notify"), "{err}");
}

#[test]
fn pem_errors_name_the_file() {
    let ca = TestCa::new("pem");
    let leaf = ca.leaf("good", "good", &["good.test"]);
    let dir = ca.dir.path();

    let missing = dir.join("missing.pem");
    let err = ServerTlsConfig::from_pem_files(&missing, None, None).unwrap_err();
    assert!(matches!(&err, Error::TlsFile { path, .. } if *path == missing));
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "this is not PEM\n").unwrap();
    let err = ServerTlsConfig::from_pem_files(&junk, Some(&leaf.cert_path), None).unwrap_err();
    assert!(err.to_string().contains("junk.pem"), "{err}");
    assert!(err.to_string().contains("no private key"), "{err}");

    let broken = dir.join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = ServerTlsConfig::from_pem_files(&leaf.key_path, Some(&broken), None).unwrap_err();
    assert!(err.to_string().contains("broken.pem"), "{err}");
    assert!(err.to_string().contains("malformed"), "{err}");

    // A key that is not the certificate's.
    let other = ca.leaf("other", "other", &["other.test"]);
    let err =
        ServerTlsConfig::from_pem_files(&other.key_path, Some(&leaf.cert_path), None).unwrap_err();
    assert!(err.to_string().contains("good.crt"), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");

    // Key and certificate in one file (Twisted's `privateKey=` alone), plus a chain file.
    let both = dir.join("both.pem");
    std::fs::write(&both, format!("{}{}", leaf.key_pem, leaf.cert_pem)).unwrap();
    let identity = Identity::from_pem_files(&both, None, Some(&ca.ca_path())).unwrap();
    assert_eq!(identity.certificate_chain().len(), 2);

    let err = TrustRoots::from_path(dir.join("nope")).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = ClientTlsConfig::new("x")
        .unwrap()
        .with_trust_roots(&junk)
        .unwrap_err();
    assert!(err.to_string().contains("junk.pem"), "{err}");
    assert!(ClientTlsConfig::new("not a name!").is_err());
}

#[test]
fn trust_roots_from_a_directory() {
    let ca = TestCa::new("dir-roots");
    let other = TestCa::new("dir-roots-2");
    let roots = crate::tls_support::TempDir::new("roots");
    std::fs::write(roots.path().join("a.pem"), ca.ca_pem()).unwrap();
    std::fs::write(roots.path().join("b.crt"), other.ca_pem()).unwrap();
    std::fs::write(roots.path().join("README"), "not a certificate").unwrap();
    let trust = TrustRoots::from_path(roots.path()).unwrap();
    assert_eq!(trust.len(), 2);
    for which in [&ca, &other] {
        let clog = log();
        let mut pair = ConnectedPair::new(
            server(&which.server_config(), Recorder::new(&log()).echo()),
            client(
                &ClientTlsConfig::new("localhost")
                    .unwrap()
                    .with_trust_roots(roots.path())
                    .unwrap(),
                Recorder::new(&clog).greeting(b"dir"),
            ),
        );
        pair.pump();
        assert_eq!(clog.borrow().data, b"dir");
    }
    let empty = crate::tls_support::TempDir::new("empty-roots");
    let err = TrustRoots::from_path(empty.path()).unwrap_err();
    assert!(err.to_string().contains("no certificates"), "{err}");
}

/// The client sends a request and half-closes (close_notify, then the lower transport's
/// sending side); the server still answers, then closes.
#[test]
fn half_close_then_answer() {
    struct Asker(SharedLog);
    impl Protocol for Asker {
        fn handshake_completed(&mut self, transport: &Transport) {
            transport.write(b"request");
            transport.lose_write_connection();
        }
        fn data_received(&mut self, _: &Transport, data: &[u8]) {
            self.0.borrow_mut().data.extend_from_slice(data);
        }
        fn write_connection_lost(&mut self, _: &Transport) {
            self.0.borrow_mut().made = true;
        }
        fn read_connection_lost(&mut self, transport: &Transport) {
            self.0.borrow_mut().read_lost = true;
            transport.lose_connection();
        }
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0.borrow_mut().lost = Some(reason.clone());
        }
    }
    struct Answerer(SharedLog);
    impl Protocol for Answerer {
        fn data_received(&mut self, _: &Transport, data: &[u8]) {
            self.0.borrow_mut().data.extend_from_slice(data);
        }
        fn read_connection_lost(&mut self, transport: &Transport) {
            // The request is complete: answer it.
            let request = self.0.borrow().data.clone();
            transport.write(b"answer to ");
            transport.write(&request);
            transport.lose_connection();
        }
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0.borrow_mut().lost = Some(reason.clone());
        }
    }
    let ca = TestCa::new("half-close");
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Answerer(slog.clone())),
        client(&ca.client_config("localhost"), Asker(clog.clone())),
    );
    pair.pump();
    assert!(pair.closed());
    assert_eq!(slog.borrow().data, b"request");
    assert_eq!(clog.borrow().data, b"answer to request");
    assert!(clog.borrow().made, "write_connection_lost");
    assert!(clog.borrow().read_lost);
    assert!(clog.borrow().lost.as_ref().unwrap().is_clean());
    assert!(slog.borrow().lost.as_ref().unwrap().is_clean());
}

#[test]
fn sessions_resume_across_clones_of_a_configuration() {
    struct Resumed(Rc<Cell<Option<bool>>>);
    impl Protocol for Resumed {
        fn handshake_completed(&mut self, transport: &Transport) {
            let tls = transport.downcast_ref::<TlsTransport>().unwrap();
            self.0.set(Some(tls.resumed()));
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let ca = TestCa::new("resume");
    let server_config = ca.server_config();
    let client_config = ca.client_config("localhost");
    for expected in [false, true, true] {
        let resumed = Rc::new(Cell::new(None));
        let mut pair = ConnectedPair::new(
            server(&server_config.clone(), Recorder::new(&log()).greeting(b"x")),
            client(&client_config.clone(), Resumed(resumed.clone())),
        );
        pair.pump();
        assert_eq!(resumed.get(), Some(expected));
    }
}

#[test]
fn system_roots() {
    match TrustRoots::system() {
        Ok(roots) => assert!(!roots.is_empty()),
        Err(err) => assert!(err.to_string().contains("no system trust roots"), "{err}"),
    }
    if std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        let config = ClientTlsConfig::new("example.com").unwrap();
        assert!(config.rustls_config().is_ok());
    }
}

#[test]
fn a_handshake_that_stalls_is_aborted_at_the_timeout() {
    let ca = TestCa::new("stall");
    let clock = Clock::new();
    let slog = log();
    let config = ca
        .server_config()
        .with_handshake_timeout(Some(Duration::from_secs(30)));
    let lower = StringTransport::new();
    let mut s = server(&config, Recorder::new(&slog)).with_clock(clock.clone());
    s.make_connection(&lower.transport());
    // Half a ClientHello, then nothing.
    s.data_received(&lower.transport(), &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    clock.advance(Duration::from_millis(29_900));
    assert!(!lower.aborted(), "the client has 30 s");
    clock.advance(Duration::from_millis(200));
    assert!(lower.aborted(), "then it is cut, without waiting to flush");
    // The lower transport reports its close; the protocol hears why.
    s.connection_lost(&CloseReason::Aborted);
    match &slog.borrow().lost {
        Some(CloseReason::Lost(Error::Tls(TlsError::HandshakeTimeout { after }))) => {
            assert_eq!(*after, Duration::from_secs(30))
        }
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
}

#[test]
fn a_completed_handshake_leaves_no_timer_and_no_limit() {
    let ca = TestCa::new("in-time");
    let clock = Clock::new();
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Recorder::new(&slog).echo()).with_clock(clock.clone()),
        client(
            &ca.client_config("localhost"),
            Recorder::new(&clog).greeting(b"quick"),
        )
        .with_clock(clock.clone()),
    );
    assert_eq!(
        clock.delayed_calls().len(),
        2,
        "both sides time the handshake"
    );
    pair.pump();
    assert_eq!(clog.borrow().data, b"quick");
    assert!(clock.delayed_calls().is_empty());
    clock.advance(Duration::from_secs(3600));
    assert!(
        !pair.closed(),
        "an idle connection is not the handshake's business"
    );
}

#[test]
fn no_handshake_timeout_when_turned_off() {
    let ca = TestCa::new("no-limit");
    let clock = Clock::new();
    let config = ca.server_config().with_handshake_timeout(None);
    let lower = StringTransport::new();
    let mut s = server(&config, Recorder::new(&log())).with_clock(clock.clone());
    s.make_connection(&lower.transport());
    assert!(clock.delayed_calls().is_empty());
}

/// A panic in the protocol over TLS aborts that connection (the protocol hears why), as it
/// does over TCP; it used to unwind out of the TLS layer into whatever drove it.
#[test]
fn a_panicking_protocol_over_tls_aborts_its_connection() {
    struct Fragile(Rc<RefCell<Option<CloseReason>>>);
    impl Protocol for Fragile {
        fn data_received(&mut self, _: &Transport, data: &[u8]) {
            if data == b"boom" {
                panic!("protocol bug");
            }
        }
        fn connection_lost(&mut self, reason: &CloseReason) {
            *self.0.borrow_mut() = Some(reason.clone());
        }
    }
    let ca = TestCa::new("panic");
    let lost = Rc::new(RefCell::new(None));
    let clog = log();
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Fragile(lost.clone())),
        client(
            &ca.client_config("localhost"),
            Recorder::new(&clog).greeting(b"boom"),
        ),
    );
    pair.pump();
    assert!(pair.closed(), "the connection was aborted");
    let reason = lost.borrow().clone().expect("connection_lost was called");
    assert!(
        matches!(&reason, CloseReason::Lost(Error::ProtocolPanicked(m)) if m == "protocol bug"),
        "{reason}"
    );
    assert!(clog.borrow().lost.as_ref().is_some_and(|r| !r.is_clean()));
}

/// `Transport::call_later` over TLS (on the test kit's clock): the timer reaches the
/// protocol over TLS, through the TLS transport's own guard, and is cancelled when the
/// connection is lost.
#[test]
fn a_connection_timer_over_tls_reaches_its_protocol_and_dies_with_it() {
    struct Later {
        greeted: u32,
        long: Rc<RefCell<Option<twistor::DelayedCall>>>,
    }
    impl Protocol for Later {
        fn handshake_completed(&mut self, t: &Transport) {
            t.call_later(Duration::from_secs(5), |me: &mut Later, t: &Transport| {
                me.greeted += 1;
                t.write(format!("greeting {}", me.greeted).as_bytes());
            })
            .unwrap();
            let long = t
                .call_later(Duration::from_secs(60), |_: &mut Later, _: &Transport| {
                    panic!("a timer outlived its connection")
                })
                .unwrap();
            *self.long.borrow_mut() = Some(long);
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let ca = TestCa::new("call-later");
    let clock = Clock::new();
    let long = Rc::new(RefCell::new(None));
    let clog = log();
    let server_tls = server(
        &ca.server_config(),
        Later {
            greeted: 0,
            long: long.clone(),
        },
    )
    .with_clock(clock.clone());
    let mut pair = ConnectedPair::new(
        server_tls,
        client(&ca.client_config("localhost"), Recorder::new(&clog)),
    );
    pair.pump();
    assert!(clog.borrow().data.is_empty());
    clock.advance(Duration::from_secs(5));
    pair.pump();
    assert_eq!(clog.borrow().data, b"greeting 1");
    let long = long.borrow_mut().take().unwrap();
    assert!(long.active());
    pair.client_transport().lose_connection();
    pair.pump();
    assert!(pair.closed());
    assert!(long.cancelled(), "cancelled when the connection was lost");
    assert!(clock.delayed_calls().is_empty());
}

/// A connection timer that comes due while its protocol is running (here the protocol
/// advances the fake clock itself) waits for the running callback to return.
#[test]
fn a_connection_timer_due_inside_a_callback_follows_it() {
    struct Advancer(Clock, Rc<RefCell<Vec<&'static str>>>);
    impl Protocol for Advancer {
        fn data_received(&mut self, t: &Transport, _: &[u8]) {
            self.1.borrow_mut().push("data begins");
            t.call_later(
                Duration::from_secs(1),
                |me: &mut Advancer, _: &Transport| {
                    me.1.borrow_mut().push("timer");
                },
            )
            .unwrap();
            self.0.advance(Duration::from_secs(1));
            self.1.borrow_mut().push("data ends");
        }
    }
    let ca = TestCa::new("due-inside");
    let clock = Clock::new();
    let events = Rc::new(RefCell::new(Vec::new()));
    let server_tls = server(&ca.server_config(), Advancer(clock.clone(), events.clone()))
        .with_clock(clock.clone());
    let clog = log();
    let mut pair = ConnectedPair::new(
        server_tls,
        client(
            &ca.client_config("localhost"),
            Recorder::new(&clog).greeting(b"go"),
        ),
    );
    pair.pump();
    assert_eq!(*events.borrow(), ["data begins", "data ends", "timer"]);
}

/// `lose_connection` after a half-close closes the connection (close_notify is out already)
/// even if the peer never closes its side; it used to wait for the peer.
#[test]
fn lose_connection_after_a_half_close_closes() {
    struct Silent(SharedLog);
    impl Protocol for Silent {
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        // Keeps its own side open.
        fn read_connection_lost(&mut self, _: &Transport) {
            self.0.borrow_mut().read_lost = true;
        }
        fn connection_lost(&mut self, reason: &CloseReason) {
            self.0.borrow_mut().lost = Some(reason.clone());
        }
    }
    let ca = TestCa::new("half-then-full");
    let (slog, clog) = (log(), log());
    let mut pair = ConnectedPair::new(
        server(&ca.server_config(), Silent(slog.clone())),
        client(&ca.client_config("localhost"), Recorder::new(&clog)),
    );
    pair.pump();
    let ct = clog.borrow().transport.clone().unwrap();
    ct.lose_write_connection();
    pair.pump();
    assert!(slog.borrow().read_lost, "the server saw close_notify");
    assert!(!pair.closed(), "half-closed only");
    assert!(!ct.disconnecting(), "still reading");
    ct.lose_connection();
    assert!(ct.disconnecting());
    pair.pump();
    assert!(pair.closed());
    assert!(clog.borrow().lost.as_ref().unwrap().is_clean());
}
