//! HTTPS: a twistor site over twistor's TLS (ALPN `http/1.1`) for curl and for the
//! twistor `Agent`, and the `Agent` against `openssl s_server -www`, with certificates
//! verified against a throwaway authority (and refused without it).

mod support;

use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use support::{Server, TempDir, localhost};
use twistor::Reactor;
use twistor::defer::{Deferred, Failure};
use twistor::tls::{ServerTlsConfig, TrustRoots};
use twistor_http::client::{Agent, AgentOptions};
use twistor_http::server::{Site, handler};
use twistor_testing::process::{ChildGuard, have};

/// A throwaway authority and a certificate it signed for `localhost` and 127.0.0.1:
/// (dir, leaf key, leaf certificate, authority certificate).
fn certificate() -> (TempDir, String, String, String) {
    let dir = TempDir::new("tls");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("key.pem"),
        p("leaf.csr"),
        p("cert.pem"),
        p("leaf.ext"),
    );
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for args in [
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=twistor test CA"],
        ]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .chain(["-keyout".into(), ca_key.clone(), "-out".into(), ca.clone()])
        .collect::<Vec<String>>(),
        [&["req"][..], &ec, &["-subj", "/CN=localhost"]]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .chain(["-keyout".into(), key.clone(), "-out".into(), csr.clone()])
            .collect(),
        [
            "x509", "-req", "-days", "2", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(["-CAcreateserial".into(), "-extfile".into(), ext.clone()])
        .chain(["-out".into(), cert.clone()])
        .collect(),
    ] {
        let out = Command::new("openssl").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (dir, key, cert, ca)
}

fn https_site(key: String, cert: String) -> Server {
    Server::start_with(
        |reactor| {
            Site::new(
                reactor.clone(),
                handler(|req| format!("secure={} path={}", req.is_secure(), req.path()).into()),
            )
        },
        move |reactor, site| {
            let config = ServerTlsConfig::from_pem_files(&key, Some(&cert), None)
                .unwrap()
                .with_alpn(["http/1.1"]);
            reactor
                .listen_ssl_with(0, site, config, localhost())
                .unwrap()
        },
    )
}

fn run<T: 'static>(f: impl FnOnce(&Reactor) -> Deferred<T>) -> Result<T, Failure> {
    let reactor = twistor_testing::reactor();
    let out = Rc::new(std::cell::RefCell::new(None));
    let (o, r) = (out.clone(), reactor.clone());
    f(&reactor).consume(move |res| {
        *o.borrow_mut() = Some(res);
        r.stop();
    });
    if out.borrow().is_none() {
        let r = reactor.clone();
        reactor.call_later(Duration::from_secs(30), move || r.stop());
        reactor.run().unwrap();
    }
    let result = out.borrow_mut().take();
    result.expect("the test did not finish in 30 s")
}

fn agent_with_roots(reactor: &Reactor, cert: &str) -> Agent {
    let mut options = AgentOptions::default();
    options.tls_roots = Some(TrustRoots::from_path(cert).unwrap());
    Agent::with_options(reactor, options)
}

fn get_text(agent: &Agent, url: &str) -> Deferred<(u16, String)> {
    agent.get(url).and_then_deferred(|resp| {
        let status = resp.status().as_u16();
        resp.read_body()
            .map(move |b| (status, String::from_utf8_lossy(&b).into_owned()))
    })
}

#[test]
fn curl_over_https_with_alpn_and_keep_alive() {
    if !have("openssl", &["version"]) || !have("curl", &["--version"]) {
        return;
    }
    let (_dir, key, cert, ca) = certificate();
    let server = https_site(key, cert);
    let url = |p: &str| format!("https://localhost:{}{p}", server.port);
    let out = Command::new("curl")
        .args(["-sv", "--max-time", "10", "--cacert", &ca])
        .arg(url("/a"))
        .arg(url("/b"))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(body, "secure=true path=/asecure=true path=/b", "{err}");
    assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
    assert!(err.contains("e-using existing connection"), "{err}");
    // Without the authority, curl refuses the certificate.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(url("/"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn agent_over_https_to_our_site_verifies_the_certificate() {
    if !have("openssl", &["version"]) {
        return;
    }
    let (_dir, key, cert, ca) = certificate();
    let server = https_site(key, cert);
    let url = format!("https://localhost:{}/x", server.port);
    let (status, body) = run(|r| {
        let agent = agent_with_roots(r, &ca);
        let (a, u) = (agent.clone(), url.clone());
        get_text(&agent, &url).and_then_deferred(move |_| get_text(&a, &u))
    })
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "secure=true path=/x"));
    // The system's roots do not know our authority.
    let err = run(|r| Agent::new(r).get(&url)).unwrap_err();
    assert!(
        err.to_string().to_ascii_lowercase().contains("certificate"),
        "{err}"
    );
}

#[test]
fn agent_against_openssl_s_server() {
    if !have("openssl", &["version"]) {
        return;
    }
    let (dir, key, cert, ca) = certificate();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_server", "-www", "-alpn", "http/1.1", "-key", &key, "-cert", &cert,
    ])
    .args(["-accept", &format!("127.0.0.1:{port}")])
    .current_dir(dir.path());
    let mut child = ChildGuard::spawn(cmd);
    child.line_containing("ACCEPT");
    let url = format!("https://localhost:{port}/");
    let (status, body) = run(|r| get_text(&agent_with_roots(r, &ca), &url)).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("s_server"), "{body}");
}
