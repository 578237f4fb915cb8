//! The client `Agent` over real sockets: against a twistor site (keep-alive reuse, queueing
//! when the pool is full, redirects, gzip, timeouts, streamed uploads, a stale keep-alive
//! connection), and against servers we did not write: `python3 -m http.server` and
//! Twisted's `twist web`.

mod support;

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Write as _;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use support::{Server, TempDir};
use twistor::Reactor;
use twistor::defer::{Deferred, Failure};
use twistor_http::client::{Agent, AgentOptions, Body, Response};
use twistor_http::http::{HeaderMap, Method, StatusCode};
use twistor_http::server::{Render, ServerOptions, Site, handler};
use twistor_http::{Bytes, Error};
use twistor_testing::process::{ChildGuard, have, have_twisted};

/// Runs `f` on a fresh reactor until its Deferred fires (or 30 s pass).
fn run<T: 'static>(f: impl FnOnce(&Reactor) -> Deferred<T>) -> Result<T, Failure> {
    let reactor = twistor_testing::reactor();
    let out = Rc::new(RefCell::new(None));
    let (o, r) = (out.clone(), reactor.clone());
    let d = f(&reactor);
    d.consume(move |res| {
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

fn text(body: Bytes) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

fn get_text(agent: &Agent, url: &str) -> Deferred<(StatusCode, String)> {
    agent.get(url).and_then_deferred(|resp: Response| {
        let status = resp.status();
        resp.read_body().map(move |b| (status, text(b)))
    })
}

/// A site that answers `/peer` with the client's port (to count connections), `/slow`
/// after 200 ms, `/redirect/N` with a chain of N redirects, `/gzip` gzipped, `/echo` with
/// the request body, `/silent` never.
fn test_site() -> Server {
    Server::start(|reactor| {
        let r = reactor.clone();
        let root = handler(move |req| {
            let path = req.path().to_owned();
            match path.as_str() {
                "/peer" => format!("{}", req.peer().socket_addr().unwrap().port()).into(),
                "/slow" => {
                    let req = req.clone();
                    r.call_later(Duration::from_millis(200), move || {
                        req.respond(format!("{}", req.peer().socket_addr().unwrap().port()));
                    });
                    Render::Later
                }
                "/gzip" => {
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    enc.write_all(&b"squeeze me ".repeat(1000)).unwrap();
                    req.set_header("content-encoding", "gzip");
                    enc.finish().unwrap().into()
                }
                "/badgzip" => {
                    req.set_header("content-encoding", "gzip");
                    "this is not gzip".into()
                }
                "/echo" => {
                    let req2 = req.clone();
                    req.read_body().consume(move |b| {
                        let b = b.unwrap();
                        req2.respond(format!("{} {}", req2.method(), text(b)));
                    });
                    Render::Later
                }
                "/see-other" => {
                    req.set_status(StatusCode::SEE_OTHER);
                    req.redirect("/echo")
                }
                "/temporary" => {
                    req.set_status(StatusCode::TEMPORARY_REDIRECT);
                    req.redirect("/echo")
                }
                "/silent" => Render::Later,
                p if p.starts_with("/redirect/") => {
                    let n: u32 = p["/redirect/".len()..].parse().unwrap();
                    if n == 0 {
                        "arrived".into()
                    } else {
                        req.redirect(&format!("{}", n - 1))
                    }
                }
                _ => {
                    req.set_status(StatusCode::NOT_FOUND);
                    "nothing here".into()
                }
            }
        });
        let mut options = ServerOptions::default();
        options.idle_timeout = Duration::from_millis(300);
        Site::with_options(reactor.clone(), root, options)
    })
}

#[test]
fn keep_alive_connections_are_reused() {
    let server = test_site();
    let url = server.url("/peer");
    let ports = run(|reactor| {
        let agent = Agent::new(reactor);
        let (a, u) = (agent.clone(), url.clone());
        get_text(&agent, &url).and_then_deferred(move |(_, first)| {
            let (a2, u2) = (a.clone(), u.clone());
            get_text(&a, &u).and_then_deferred(move |(_, second)| {
                get_text(&a2, &u2).map(move |(_, third)| vec![first, second, third])
            })
        })
    })
    .unwrap();
    assert_eq!(ports[0], ports[1]);
    assert_eq!(ports[1], ports[2]);
}

#[test]
fn requests_beyond_the_pool_wait_in_line() {
    let server = test_site();
    let url = server.url("/slow");
    let (ports, waiting) = run(|reactor| {
        let mut options = AgentOptions::default();
        options.max_connections_per_host = 2;
        let agent = Agent::with_options(reactor, options);
        let all: Vec<_> = (0..6).map(|_| get_text(&agent, &url)).collect();
        let waiting = agent.waiting(&url);
        twistor::defer::gather_results(all, true).map(move |r| (r, waiting))
    })
    .unwrap();
    assert_eq!(waiting, 4, "two connections open, four requests queued");
    let distinct: HashSet<String> = ports.into_iter().map(|(_, p)| p).collect();
    assert_eq!(distinct.len(), 2, "{distinct:?}");
}

#[test]
fn redirects_are_followed_resolved_and_bounded() {
    let server = test_site();
    let (status, body) = run(|r| get_text(&Agent::new(r), &server.url("/redirect/3"))).unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "arrived"));

    let url = server.url("/redirect/3");
    let final_url = run(|r| Agent::new(r).get(&url).map(|resp| resp.url().to_string())).unwrap();
    assert!(final_url.ends_with("/redirect/0"), "{final_url}");

    let err = run(|r| {
        let mut o = AgentOptions::default();
        o.max_redirects = 2;
        get_text(&Agent::with_options(r, o), &server.url("/redirect/5"))
    })
    .unwrap_err();
    assert_eq!(err.find::<Error>(), Some(&Error::TooManyRedirects(2)));

    let status = run(|r| {
        let mut o = AgentOptions::default();
        o.max_redirects = 0;
        Agent::with_options(r, o)
            .get(&server.url("/redirect/1"))
            .map(|resp| resp.status())
    })
    .unwrap();
    assert_eq!(status, StatusCode::FOUND);

    // 303 turns a POST into a GET; 307 repeats the POST with its body.
    let post = |path: &str| {
        let url = server.url(path);
        run(move |r| {
            Agent::new(r)
                .request(Method::POST, &url, HeaderMap::new(), Body::from("payload"))
                .and_then_deferred(|resp| resp.read_body().map(text))
        })
        .unwrap()
    };
    assert_eq!(post("/see-other"), "GET ");
    assert_eq!(post("/temporary"), "POST payload");
}

#[test]
fn gzip_bodies_are_decoded_and_corrupt_ones_fail() {
    let server = test_site();
    let (headers, body) = run(|r| {
        Agent::new(r)
            .get(&server.url("/gzip"))
            .and_then_deferred(|resp| {
                let gone = resp.header("content-encoding").is_none();
                resp.read_body().map(move |b| (gone, b))
            })
    })
    .unwrap();
    assert!(headers, "Content-Encoding is removed once decoded");
    assert_eq!(body, b"squeeze me ".repeat(1000));
    let err = run(|r| {
        Agent::new(r)
            .get(&server.url("/badgzip"))
            .and_then_deferred(|resp| resp.read_body())
    })
    .unwrap_err();
    assert!(
        matches!(err.find::<Error>(), Some(Error::Decode(_))),
        "{err}"
    );
}

#[test]
fn a_silent_server_times_out() {
    let server = test_site();
    let err = run(|r| {
        let mut o = AgentOptions::default();
        o.timeout = Some(Duration::from_millis(300));
        Agent::with_options(r, o).get(&server.url("/silent"))
    })
    .unwrap_err();
    assert_eq!(err.find::<Error>(), Some(&Error::ResponseTimeout));
}

#[test]
fn refused_connections_and_bad_urls_fail_cleanly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = run(|r| Agent::new(r).get(&format!("http://127.0.0.1:{port}/"))).unwrap_err();
    // The engine's error is kept as a value to match, and as the source.
    let found = err.find::<Error>();
    assert!(
        matches!(
            found,
            Some(Error::ConnectFailed(
                twistor::Error::ConnectionRefused { .. }
            ))
        ),
        "{err}"
    );
    let source = std::error::Error::source(found.unwrap()).expect("a source");
    assert!(source.downcast_ref::<twistor::Error>().is_some());
    let err = run(|r| Agent::new(r).get("ftp://example.com/")).unwrap_err();
    assert!(
        matches!(err.find::<Error>(), Some(Error::InvalidUrl(_))),
        "{err}"
    );
}

#[test]
fn streamed_upload_and_read_body_limit() {
    let server = test_site();
    let url = server.url("/echo");
    let body = run(|r| {
        let body = Body::stream(None, |w| {
            w.write(b"one ");
            w.write(b"two ");
            w.write(b"three");
            w.finish();
        });
        Agent::new(r)
            .request(Method::PUT, &url, HeaderMap::new(), body)
            .and_then_deferred(|resp| resp.read_body().map(text))
    })
    .unwrap();
    assert_eq!(body, "PUT one two three");

    let err = run(|r| {
        let mut o = AgentOptions::default();
        o.max_read_body = 10;
        o.decompress = false;
        Agent::with_options(r, o)
            .get(&server.url("/gzip"))
            .and_then_deferred(|resp| resp.read_body())
    })
    .unwrap_err();
    assert_eq!(err.find::<Error>(), Some(&Error::BodyTooLarge));
}

#[test]
fn a_keep_alive_connection_closed_by_the_server_is_replaced() {
    let server = test_site();
    let url = server.url("/peer");
    let ports = run(|reactor| {
        let agent = Agent::new(reactor);
        let (a, u, r) = (agent.clone(), url.clone(), reactor.clone());
        get_text(&agent, &url).and_then_deferred(move |(_, first)| {
            // The server's idle timeout (300 ms) closes the pooled connection.
            let d = Deferred::new();
            let d2 = d.clone();
            r.call_later(Duration::from_millis(600), move || {
                let _ = d2.callback(());
            });
            d.and_then_deferred(move |()| get_text(&a, &u))
                .map(move |(_, second)| (first, second))
        })
    })
    .unwrap();
    assert_ne!(ports.0, ports.1);
}

/// Starts a Python server in `dir` and returns it with its port.
fn python_server(dir: &std::path::Path) -> (ChildGuard, u16) {
    let mut cmd = Command::new("python3");
    cmd.args(["-u", "-c", PY_SERVER]).current_dir(dir);
    let mut child = ChildGuard::spawn(cmd);
    let port = child.port();
    (child, port)
}

/// `http.server` on an OS-chosen port, printing it first.
const PY_SERVER: &str = "
import http.server, functools
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory='.')
h.func.protocol_version = 'HTTP/1.1'
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)
print('port', s.server_address[1], flush=True)
s.serve_forever()
";

#[test]
fn agent_against_python_http_server() {
    if !have("python3", &["--version"]) {
        return;
    }
    let dir = TempDir::new("py");
    dir.write("hello.txt", b"hello from python\n");
    dir.write("sub/inner.txt", b"inner");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    dir.write("big.bin", &big);
    let (_child, port) = python_server(dir.path());
    let base = format!("http://127.0.0.1:{port}");
    let results = run(|r| {
        let agent = Agent::new(r);
        twistor::defer::gather_results(
            vec![
                get_text(&agent, &format!("{base}/hello.txt")),
                get_text(&agent, &format!("{base}/missing")),
                // http.server redirects /sub to /sub/ and lists it.
                get_text(&agent, &format!("{base}/sub")),
            ],
            true,
        )
    })
    .unwrap();
    assert_eq!(results[0], (StatusCode::OK, "hello from python\n".into()));
    assert_eq!(results[1].0, StatusCode::NOT_FOUND);
    assert_eq!(results[2].0, StatusCode::OK);
    assert!(results[2].1.contains("inner.txt"), "{}", results[2].1);
    let body = run(|r| {
        Agent::new(r)
            .get(&format!("{base}/big.bin"))
            .and_then_deferred(|resp| resp.read_body())
    })
    .unwrap();
    assert_eq!(body, big);
}

#[test]
fn agent_against_twisted_web() {
    if !have_twisted() {
        return;
    }
    let dir = TempDir::new("tw");
    dir.write("index.html", b"<h1>twisted serves</h1>");
    dir.write("data.txt", b"0123456789".repeat(10_000));
    let mut cmd = Command::new("python3");
    cmd.args([
        "-u",
        "-m",
        "twisted",
        "web",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--path",
    ])
    .arg(dir.path());
    let mut child = ChildGuard::spawn(cmd);
    let line = child.line_containing("Site starting on ");
    let port: u16 = line
        .split("Site starting on ")
        .nth(1)
        .map(|s| {
            s.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let base = format!("http://127.0.0.1:{port}");
    let results = run(|r| {
        let agent = Agent::new(r);
        twistor::defer::gather_results(
            vec![
                get_text(&agent, &format!("{base}/")),
                get_text(&agent, &format!("{base}/data.txt")),
                get_text(&agent, &format!("{base}/nope")),
            ],
            true,
        )
    })
    .unwrap();
    assert_eq!(
        results[0],
        (StatusCode::OK, "<h1>twisted serves</h1>".into())
    );
    assert_eq!(results[1].1, "0123456789".repeat(10_000));
    assert_eq!(results[2].0, StatusCode::NOT_FOUND);
}
