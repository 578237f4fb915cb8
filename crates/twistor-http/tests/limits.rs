//! Request smuggling shapes and limits over real sockets: each gets its exact status, and
//! the connection closes (nothing after the refused request is read or answered).
//! Pipelined requests are answered strictly in order even when the first is slow
//! (Twisted's CVE-2023-46137).

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{Server, connect, exchange_until_close, read_response};
use twistor_http::proto::Limits;
use twistor_http::server::{Render, ServerOptions, Site, handler};

fn limited_server() -> Server {
    Server::start(|reactor| {
        let r = reactor.clone();
        let root = handler(move |req| {
            if req.path() == "/slow" {
                let req = req.clone();
                r.call_later(Duration::from_millis(300), move || req.respond("slow"));
                return Render::Later;
            }
            if req.path() == "/upload" {
                let req2 = req.clone();
                req.read_body().consume(move |body| {
                    if let Ok(b) = body {
                        req2.respond(format!("got {}", b.len()));
                    }
                });
                return Render::Later;
            }
            format!("answer for {}", req.path()).into()
        });
        let mut limits = Limits::default();
        limits.max_body_size = 1000;
        let mut options = ServerOptions::default();
        options.limits = limits;
        options.header_timeout = Duration::from_millis(300);
        Site::with_options(reactor.clone(), root, options)
    })
}

/// Sends `request`; the server must answer `status` once, then close.
fn refused(server: &Server, request: &str, status: &str) {
    let (response, closed) = exchange_until_close(server.port, request.as_bytes());
    assert!(
        response.starts_with(&format!("HTTP/1.1 {status} ")),
        "{request:?} got {response:?}"
    );
    assert!(closed, "{request:?}: connection left open");
    assert_eq!(
        response.matches("HTTP/1.1 ").count(),
        1,
        "{request:?}: more than one response: {response:?}"
    );
    assert!(!response.contains("smuggled"), "{response}");
    assert!(response.to_ascii_lowercase().contains("connection: close"));
}

#[test]
fn smuggling_shapes_are_refused_and_close() {
    let server = limited_server();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    for (head, status) in [
        // Content-Length with Transfer-Encoding, either order.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            "400",
        ),
        // Differing or malformed Content-Length (CVE-2022-24801 accepted "+5").
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
            "400",
        ),
        // Transfer codings that are not exactly one final chunked.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "501",
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        // Chunk sizes Python's int(x, 16) took (CVE-2022-24801).
        (
            "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
            "400",
        ),
        (
            "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
            "400",
        ),
        (
            "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
            "400",
        ),
        (
            "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5_0\r\nhello\r\n0\r\n\r\n",
            "400",
        ),
        (
            "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
            "400",
        ),
        // Chunk data not followed by CRLF.
        (
            "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            "400",
        ),
        // Bare LF, obs-fold, space before the colon.
        ("GET / HTTP/1.1\nHost: a\n\n", "400"),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", "400"),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
            "400",
        ),
        // Host missing or repeated.
        ("GET / HTTP/1.1\r\n\r\n", "400"),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
        // Other versions and expectations.
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "505"),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\nx",
            "417",
        ),
    ] {
        refused(&server, &format!("{head}{smuggled}"), status);
    }
}

#[test]
fn limits_get_their_status_and_close() {
    let server = limited_server();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    refused(&server, &long_target, "414");
    let big_field = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    refused(&server, &big_field, "431");
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    refused(&server, &many, "431");
    refused(
        &server,
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n",
        "413",
    );
    let chunks = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n{}\r\n200\r\n{}\r\n0\r\n\r\n",
        "x".repeat(0x200),
        "y".repeat(0x200)
    );
    refused(&server, &chunks, "413");
    // Within the limit, all is well.
    let (response, _) = exchange_until_close(
        server.port,
        format!(
            "POST /upload HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n{}",
            "z".repeat(1000)
        )
        .as_bytes(),
    );
    assert!(response.ends_with("got 1000"), "{response}");
}

#[test]
fn a_slow_head_gets_408_and_the_connection_closes() {
    let server = limited_server();
    let start = Instant::now();
    let (response, closed) = exchange_until_close(server.port, b"GET / HTTP/1.1\r\nHost:");
    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout"),
        "{response}"
    );
    assert!(closed);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = limited_server();
    let mut s = connect(server.port);
    s.write_all(
        b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast1 HTTP/1.1\r\nHost: a\r\n\r\nGET /fast2 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    let bodies: Vec<String> = (0..3)
        .map(|_| String::from_utf8(read_response(&mut s).1).unwrap())
        .collect();
    assert_eq!(bodies, ["slow", "answer for /fast1", "answer for /fast2"]);
}

#[test]
fn a_client_that_half_closes_still_gets_its_answers() {
    let server = limited_server();
    let out = support::exchange(
        server.port,
        b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("\r\n\r\nslow"), "{out}");
    assert!(out.ends_with("\r\n\r\nanswer for /next"), "{out}");
}

#[test]
fn a_client_still_sending_a_body_too_large_reads_the_413() {
    let server = limited_server();
    let mut s = connect(server.port);
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4000000\r\n\r\n")
        .unwrap();
    // The client sends its whole body before it looks for an answer, as many do.
    let piece = [b'x'; 16 * 1024];
    let mut sent = 0;
    while sent < 4_000_000 {
        match s.write(&piece) {
            Ok(n) => sent += n,
            Err(e) => panic!("the server reset the connection after {sent} bytes: {e}"),
        }
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
}
