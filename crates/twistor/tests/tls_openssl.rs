//! TLS against a peer this project did not write: OpenSSL's `s_client` through the
//! `tls_echo_server` example (TLS 1.2 and 1.3, ALPN, SNI), a twistor client against
//! `s_server` (verification, ALPN, versions, client certificates), and STARTTLS with
//! `s_client -starttls smtp` against a tiny SMTP-ish twistor server.

mod tls_support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tls_support::{Peer, Recorder, TestCa, log, tls_error, trailing_port};
use twistor::protocol::factory;
use twistor::tls::{ClientTlsConfig, ServerTlsConfig, TlsVersion, start_tls};
use twistor::{Address, ClientFactory, CloseReason, Connector, Error, Factory, Protocol};
use twistor::{Reactor, Transport};
use twistor_testing::process::have;

fn have_openssl() -> bool {
    have("openssl", &["version"])
}

fn path(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn s_client_through_the_echo_server() {
    if !have_openssl() {
        return;
    }
    let ca = TestCa::new("s-client");
    let main = ca.leaf("main", "localhost", &["localhost"]);
    let a = ca.leaf("a", "a.test", &["a.test"]);
    let wild = ca.leaf("wild", "wildcard", &["*.wild.test"]);
    let example = path(&tls_support::example_path("tls_echo_server"));
    let sni_a = format!("a.test={},{}", path(&a.key_path), path(&a.cert_path));
    let sni_wild = format!(
        "*.wild.test={},{}",
        path(&wild.key_path),
        path(&wild.cert_path)
    );
    let (key, cert) = (path(&main.key_path), path(&main.cert_path));
    let mut server = Peer::spawn(
        &example,
        &[
            &key,
            &cert,
            "0",
            "--alpn",
            "h2,http/1.1",
            "--sni",
            &sni_a,
            "--sni",
            &sni_wild,
        ],
    );
    let port = trailing_port(&server.wait_for("listening on"));
    let connect = format!("127.0.0.1:{port}");
    let ca_file = path(&ca.ca_path());
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        for (name, cn) in [
            ("localhost", "localhost"),
            ("a.test", "a.test"),
            ("x.wild.test", "wildcard"),
        ] {
            let mut client = Peer::spawn(
                "openssl",
                &[
                    "s_client",
                    "-connect",
                    &connect,
                    flag,
                    "-servername",
                    name,
                    "-verify_hostname",
                    name,
                    "-CAfile",
                    &ca_file,
                    "-verify_return_error",
                    "-alpn",
                    "http/1.1",
                ],
            );
            client.wait_for("Verify return code");
            let message = format!("hello over {version} to {name}");
            client.write(format!("{message}\n").as_bytes());
            client.wait_for(&message);
            assert!(
                client.saw(&format!("subject=CN = {cn}")),
                "{name} gets the certificate of {cn}: {:#?}",
                client.seen
            );
            assert!(client.saw("Verify return code: 0 (ok)"));
            assert!(client.saw("ALPN protocol: http/1.1"), "{:#?}", client.seen);
            assert!(client.saw(&format!("New, {version}")), "{:#?}", client.seen);
            client.close_stdin();
            assert!(client.wait(), "s_client ends cleanly: {:#?}", client.seen);
            let line = server.wait_for(&format!("SNI Some(\"{name}\")"));
            assert!(line.contains(version), "{line}");
            assert!(line.contains("ALPN Some(\"http/1.1\")"), "{line}");
        }
    }

    // No SNI at all: the default certificate.
    let mut client = Peer::spawn(
        "openssl",
        &[
            "s_client",
            "-connect",
            &connect,
            "-noservername",
            "-CAfile",
            &ca_file,
        ],
    );
    client.wait_for("Verify return code");
    client.write(b"no name\n");
    client.wait_for("no name");
    assert!(client.saw("subject=CN = localhost"));
    assert!(client.saw("No ALPN negotiated"));
    client.close_stdin();
    assert!(client.wait());

    // ALPN with nothing in common: refused.
    let mut client = Peer::spawn(
        "openssl",
        &[
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-alpn",
            "imap",
        ],
    );
    assert!(!client.wait(), "refused");
    assert!(client.saw("no application protocol"), "{:#?}", client.seen);
}

/// A client factory that builds one protocol and stops the reactor when the connection ends.
struct OneClient {
    reactor: Reactor,
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    lost: Rc<RefCell<Option<CloseReason>>>,
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

/// Connects a twistor client to `port`, sends `hello\n` and closes once 6 bytes came back;
/// returns what the factory was told, what arrived, and the negotiated ALPN and version.
fn hello_client(
    port: u16,
    config: ClientTlsConfig,
) -> (
    CloseReason,
    tls_support::SharedLog,
    Option<Vec<u8>>,
    Option<TlsVersion>,
) {
    let reactor = twistor_testing::reactor();
    let clog = log();
    let lost = Rc::new(RefCell::new(None));
    let client = Rc::new(OneClient {
        reactor: reactor.clone(),
        protocol: RefCell::new(Some(Box::new(
            Recorder::new(&clog).greeting(b"hello\n").close_after(6),
        ))),
        lost: lost.clone(),
    });
    reactor
        .connect_ssl("127.0.0.1", port, client, config)
        .unwrap();
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(20), move || r.stop());
    reactor.run().unwrap();
    let reason = lost.borrow_mut().take().expect("connection ended");
    let (alpn, version) = {
        let log = clog.borrow();
        (log.alpn.clone(), log.version)
    };
    (reason, clog, alpn, version)
}

fn s_server(leaf: &tls_support::Leaf, extra: &[&str]) -> (Peer, u16) {
    let (key, cert) = (path(&leaf.key_path), path(&leaf.cert_path));
    let mut args = vec![
        "s_server", "-accept", "0", "-cert", &cert, "-key", &key, "-rev",
    ];
    args.extend_from_slice(extra);
    let mut server = Peer::spawn("openssl", &args);
    let port = trailing_port(&server.wait_for("ACCEPT"));
    (server, port)
}

#[test]
fn twistor_client_against_s_server() {
    if !have_openssl() {
        return;
    }
    let ca = TestCa::new("s-server");
    let leaf = ca.leaf("server", "localhost", &["localhost"]);
    let (_server, port) = s_server(&leaf, &["-alpn", "h2"]);

    let config = ca.client_config("localhost").with_alpn(["h2"]);
    let (reason, clog, alpn, version) = hello_client(port, config.clone());
    assert!(reason.is_clean(), "{reason}");
    assert_eq!(clog.borrow().data, b"olleh\n");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(version, Some(TlsVersion::Tls13));

    let (reason, clog, _, version) = hello_client(port, config.with_versions(&[TlsVersion::Tls12]));
    assert!(reason.is_clean(), "{reason}");
    assert_eq!(clog.borrow().data, b"olleh\n");
    assert_eq!(version, Some(TlsVersion::Tls12));

    // The right CA, the wrong name.
    let (reason, clog, _, _) = hello_client(port, ca.client_config("www.example.com"));
    let err = tls_error(&Some(reason));
    assert!(err.contains("certificate verification failed"), "{err}");
    assert!(err.contains("www.example.com"), "{err}");
    assert!(clog.borrow().data.is_empty());
    assert_eq!(clog.borrow().handshakes, 0);
}

#[test]
fn twistor_client_refuses_an_untrusted_s_server() {
    if !have_openssl() {
        return;
    }
    let ca = TestCa::new("trusted");
    let rogue = TestCa::new("rogue");
    let leaf = rogue.leaf("server", "localhost", &["localhost"]);
    let (_server, port) = s_server(&leaf, &[]);
    let (reason, clog, _, _) = hello_client(port, ca.client_config("localhost"));
    let err = tls_error(&Some(reason));
    assert!(err.contains("certificate verification failed"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(clog.borrow().data.is_empty());
}

#[test]
fn twistor_client_certificate_for_s_server() {
    if !have_openssl() {
        return;
    }
    let ca = TestCa::new("mtls-s-server");
    let leaf = ca.leaf("server", "localhost", &["localhost"]);
    let alice = ca.leaf("alice", "alice", &["alice.test"]);
    let ca_file = path(&ca.ca_path());
    let (mut server, port) = s_server(&leaf, &["-Verify", "1", "-CAfile", &ca_file]);

    let with_cert = ca
        .client_config("localhost")
        .with_client_certificate(&alice.cert_path, &alice.key_path)
        .unwrap();
    let (reason, clog, _, _) = hello_client(port, with_cert);
    assert!(reason.is_clean(), "{reason}");
    assert_eq!(clog.borrow().data, b"olleh\n");
    server.wait_for("CN = alice");

    let (reason, clog, _, _) = hello_client(port, ca.client_config("localhost"));
    let err = tls_error(&Some(reason));
    assert!(err.contains("alert"), "{err}");
    assert!(clog.borrow().data.is_empty());
}

/// Just enough SMTP for `openssl s_client -starttls smtp`: a greeting, EHLO offering
/// STARTTLS, STARTTLS, and QUIT.
struct Smtpish {
    tls_config: ServerTlsConfig,
    buffer: Vec<u8>,
    tls: Option<Transport>,
}

impl Protocol for Smtpish {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"220 twistor ESMTP ready\r\n");
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line)
                .trim_end()
                .to_ascii_uppercase();
            if line.starts_with("EHLO") {
                if self.tls.is_some() {
                    transport.write(b"250 twistor greets you over TLS\r\n");
                } else {
                    transport.write(b"250-twistor greets you\r\n250 STARTTLS\r\n");
                }
            } else if line == "STARTTLS" && self.tls.is_none() {
                transport.write(b"220 2.0.0 Ready to start TLS\r\n");
                self.tls = Some(start_tls(transport, &self.tls_config).unwrap());
                // Whatever the client sent after STARTTLS, in the clear, is not trusted.
                self.buffer.clear();
                return;
            } else if line == "QUIT" {
                transport.write(b"221 2.0.0 Bye\r\n");
                transport.lose_connection();
            } else {
                transport.write(b"500 what?\r\n");
            }
        }
    }
}

#[test]
fn s_client_starttls_smtp() {
    if !have_openssl() {
        return;
    }
    let ca = TestCa::new("smtp");
    let config = ca.server_config();
    let reactor = twistor_testing::reactor();
    let port = reactor
        .listen_tcp(
            0,
            factory(move |_| Smtpish {
                tls_config: config.clone(),
                buffer: Vec::new(),
                tls: None,
            }),
        )
        .unwrap()
        .port();
    let handle = reactor.handle();
    let ca_file = path(&ca.ca_path());
    let driver = std::thread::spawn(move || {
        let connect = format!("127.0.0.1:{port}");
        let mut client = Peer::spawn(
            "openssl",
            &[
                "s_client",
                "-connect",
                &connect,
                "-starttls",
                "smtp",
                "-nocommands",
                "-servername",
                "localhost",
                "-CAfile",
                &ca_file,
                "-verify_return_error",
            ],
        );
        client.wait_for("Verify return code");
        client.write(b"EHLO again\r\n");
        client.wait_for("250 twistor greets you over TLS");
        client.write(b"QUIT\r\n");
        client.wait_for("221 2.0.0 Bye");
        let ok = client.wait();
        let _ = handle.call_from_thread(|r| r.stop());
        (ok, std::mem::take(&mut client.seen))
    });
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(30), move || r.stop());
    reactor.run().unwrap();
    let (ok, seen) = driver.join().unwrap();
    assert!(ok, "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("subject=CN = localhost")),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("Verify return code: 0 (ok)"))
    );
}
