//! The reverse proxy over real sockets: a twistor proxy in front of a twistor backend
//! (paths, X-Forwarded-For, hop-by-hop fields, large bodies streamed both ways, upstream
//! failure) and in front of `python3 -m http.server`.

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use support::{Server, TempDir, connect, exchange_until_close, field, read_response};
use twistor_http::body::from_fn;
use twistor_http::proxy::ReverseProxy;
use twistor_http::server::{Render, ServerOptions, Site, Tree, handler};
use twistor_testing::process::{ChildGuard, have};

/// A backend that describes each request, streams `/big` (32 MiB), and sums uploads.
fn backend() -> Server {
    Server::start(|reactor| {
        let r = reactor.clone();
        let root = handler(move |req| {
            if req.path() == "/v1/big" {
                let req = req.clone();
                req.set_content_length(32 << 20);
                // Written in pieces from timers, so the proxy must stream it.
                fn step(r: twistor::Reactor, req: twistor_http::server::Request, left: u32) {
                    if left == 0 {
                        req.finish();
                        return;
                    }
                    req.write(vec![b'x'; 1 << 20]);
                    let r2 = r.clone();
                    r.call_later(Duration::from_millis(1), move || step(r2, req, left - 1));
                }
                step(r.clone(), req, 32);
                return Render::Later;
            }
            if req.path() == "/v1/upload" {
                let req2 = req.clone();
                let total = Rc::new(std::cell::Cell::new(0u64));
                let t = total.clone();
                req.deliver_body(from_fn(
                    move |piece| t.set(t.get() + piece.len() as u64),
                    move |end| {
                        // A body cut short (the proxy gave up on its client) gets no answer.
                        if end.is_ok() {
                            req2.respond(format!("received {}", total.get()));
                        }
                    },
                ));
                return Render::Later;
            }
            req.set_header("x-backend", "yes");
            req.set_header("connection", "x-private");
            req.set_header("x-private", "hop");
            format!(
                "{} {} xff={} xfh={} host={} conn={}",
                req.method(),
                req.uri(),
                req.header("x-forwarded-for").unwrap_or("-"),
                req.header("x-forwarded-host").unwrap_or("-"),
                req.header("host").unwrap_or("-"),
                req.header("x-hop").unwrap_or("-"),
            )
            .into()
        });
        Site::new(reactor.clone(), root)
    })
}

fn proxy_to(url: String) -> Server {
    proxy_with(url, ServerOptions::default)
}

fn proxy_with(url: String, options: fn() -> ServerOptions) -> Server {
    Server::start(move |reactor| {
        let root = Tree::new();
        root.put_child("api", Rc::new(ReverseProxy::new(reactor, &url).unwrap()));
        Site::with_options(reactor.clone(), Rc::new(root), options())
    })
}

#[test]
fn forwards_paths_and_headers() {
    let back = backend();
    let proxy = proxy_to(back.url("/v1"));
    let mut s = connect(proxy.port);
    s.write_all(
        b"GET /api/a/b%20c?q=1 HTTP/1.1\r\nHost: front.example\r\nX-Forwarded-For: 10.1.2.3\r\nConnection: x-hop\r\nX-Hop: secret\r\n\r\n",
    )
    .unwrap();
    let (head, body) = read_response(&mut s);
    let body = String::from_utf8(body).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(
        body,
        format!(
            "GET /v1/a/b%20c?q=1 xff=10.1.2.3, 127.0.0.1 xfh=front.example host=127.0.0.1:{} conn=-",
            back.port
        )
    );
    assert_eq!(field(&head, "x-backend").as_deref(), Some("yes"));
    assert_eq!(
        field(&head, "x-private"),
        None,
        "fields named by Connection stay"
    );
    // Keep-alive through the proxy: a second request on the same connection.
    s.write_all(b"GET /api HTTP/1.1\r\nHost: f\r\n\r\n")
        .unwrap();
    let (_, body) = read_response(&mut s);
    assert!(String::from_utf8(body).unwrap().starts_with("GET /v1 "));
}

#[test]
fn large_bodies_stream_both_ways() {
    let back = backend();
    let proxy = proxy_to(back.url("/v1"));
    // Download 32 MiB through the proxy, reading slowly at first.
    let mut s = connect(proxy.port);
    s.write_all(b"GET /api/big HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = support::rss_kib();
    let mut total = 0usize;
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total > 32 << 20, "{total}");
    let after = support::rss_kib();
    // Backend and proxy live in this process; neither held the whole body.
    assert!(
        after < before + 48 * 1024,
        "RSS {before} KiB -> {after} KiB"
    );

    // Upload 8 MiB chunked through the proxy.
    let mut s = connect(proxy.port);
    s.write_all(b"POST /api/upload HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let piece = vec![b'u'; 64 * 1024];
    for _ in 0..128 {
        write!(s, "{:x}\r\n", piece.len()).unwrap();
        s.write_all(&piece).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("received {}", 8 << 20)
    );
}

#[test]
fn upstream_down_is_a_502() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = proxy_to(format!("http://127.0.0.1:{port}/"));
    let (response, closed) = exchange_until_close(
        proxy.port,
        b"GET /api/x HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
    );
    assert!(
        response.starts_with("HTTP/1.1 502 Bad Gateway"),
        "{response}"
    );
    assert!(closed);
}

#[test]
fn proxy_in_front_of_python_http_server() {
    if !have("python3", &["--version"]) {
        return;
    }
    let dir = TempDir::new("pyproxy");
    dir.write("file.txt", b"from python through twistor\n");
    let mut cmd = Command::new("python3");
    cmd.args([
        "-u",
        "-c",
        "import http.server as h, functools as f\n\
         s = h.ThreadingHTTPServer(('127.0.0.1', 0), f.partial(h.SimpleHTTPRequestHandler, directory='.'))\n\
         print('port', s.server_address[1], flush=True)\n\
         s.serve_forever()",
    ])
    .current_dir(dir.path());
    let mut child = ChildGuard::spawn(cmd);
    let port = child.port();
    let proxy = proxy_to(format!("http://127.0.0.1:{port}"));
    let mut s = connect(proxy.port);
    s.write_all(b"GET /api/file.txt HTTP/1.1\r\nHost: f\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"from python through twistor\n");
    assert_eq!(field(&head, "content-length").as_deref(), Some("28"));
    s.write_all(b"GET /api/missing HTTP/1.1\r\nHost: f\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn a_request_body_that_times_out_through_the_proxy_is_a_408() {
    let back = backend();
    let proxy = proxy_with(format!("http://127.0.0.1:{}/v1", back.port), || {
        let mut options = ServerOptions::default();
        options.body_timeout = Duration::from_millis(300);
        options
    });
    let (response, closed) = exchange_until_close(
        proxy.port,
        b"POST /api/upload HTTP/1.1\r\nHost: f\r\nContent-Length: 100\r\n\r\nonly ten b",
    );
    assert!(response.starts_with("HTTP/1.1 408 "), "{response:?}");
    assert!(closed);
}

#[test]
fn a_malformed_chunked_trailer_through_the_proxy_is_a_400() {
    let back = backend();
    let proxy = proxy_to(format!("http://127.0.0.1:{}/v1", back.port));
    let (response, closed) = exchange_until_close(
        proxy.port,
        b"POST /api/upload HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 400 "), "{response:?}");
    assert!(closed);
}

#[test]
fn an_upstream_101_is_a_502() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    let answer = std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nraw bytes")
            .unwrap();
        // Held open until the proxy gives up on it.
        let _ = s.read(&mut buf);
    });
    let proxy = proxy_to(format!("http://127.0.0.1:{port}/"));
    let (response, closed) = exchange_until_close(
        proxy.port,
        b"GET /api/x HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 502 "), "{response:?}");
    assert!(closed);
    answer.join().unwrap();
}

/// What the reactor thread logs, for a test to read.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_client_leaving_mid_response_is_logged_at_debug_not_warn() {
    let back = backend();
    let log = LogBuffer::default();
    let writer = log.clone();
    let url = format!("http://127.0.0.1:{}/v1", back.port);
    let proxy = Server::start(move |reactor| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        // For the reactor thread's whole life.
        std::mem::forget(tracing::subscriber::set_default(subscriber));
        let root = Tree::new();
        root.put_child("api", Rc::new(ReverseProxy::new(reactor, &url).unwrap()));
        Site::new(reactor.clone(), Rc::new(root))
    });
    for _ in 0..3 {
        let mut s = connect(proxy.port);
        s.write_all(b"GET /api/big HTTP/1.1\r\nHost: f\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 65536];
        let mut got = 0;
        while got < 1 << 20 {
            got += s.read(&mut buf).unwrap();
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.text().matches("client for /api/big went away").count() < 3
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = log.text();
    assert!(!text.contains("WARN"), "{text}");
    assert_eq!(
        text.matches("client for /api/big went away").count(),
        3,
        "{text}"
    );
}
