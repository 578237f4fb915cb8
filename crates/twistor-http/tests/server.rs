//! The server core: requests, framing, keep-alive, pipelining, limits and the
//! request-smuggling shapes it refuses.

mod common;

use common::{Req, assert_status, run_server};
use twistor_http::Error;
use twistor_http::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use twistor_http::proto::{BodySize, Framing, Limits, Phase, RequestEvent, ServerConnection};

fn small_limits() -> Limits {
    let mut l = Limits::default();
    l.max_request_line = 64;
    l.max_head_size = 256;
    l.max_headers = 8;
    l.max_body_size = 100;
    l
}

/// Feeds `input` whole and one byte at a time; both must refuse with `err`, answer
/// `status`, close, and refuse to parse anything afterwards.
fn assert_refused(limits: Limits, input: &[u8], err: Error) {
    let status = err.status().expect("a status");
    let whole = run_server(limits.clone(), &[input], false);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let bytewise = run_server(limits.clone(), &bytes, false);
    for run in [&whole, &bytewise] {
        assert_eq!(
            run.error.as_ref(),
            Some(&err),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        assert_status(&run.output, status);
        assert!(
            String::from_utf8_lossy(&run.output).contains("\r\nconnection: close\r\n"),
            "no close in {:?}",
            String::from_utf8_lossy(&run.output)
        );
        assert_eq!(run.phase, Phase::Closed);
    }

    // Refuses to continue: a good request afterwards is ignored.
    let mut conn = ServerConnection::new(limits);
    conn.handle_data(input);
    while let Ok(Some(_)) = conn.poll_event() {}
    assert_eq!(conn.phase(), Phase::Closed);
    conn.handle_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(matches!(conn.poll_event(), Ok(None)));
    assert!(!conn.wants_read());
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n")
}

#[test]
fn simple_get_keeps_alive() {
    let run = run_server(Limits::default(), &[get("/a?b=c").as_bytes()], false);
    assert_eq!(run.error, None);
    assert_eq!(
        run.events,
        vec![
            Req::Head {
                method: "GET".into(),
                uri: "/a?b=c".into(),
                version: "HTTP/1.1".into(),
                headers: vec![("host".into(), b"example.com".to_vec())],
                framing: Framing::Empty,
                keep_alive: true,
                expect_continue: false,
            },
            Req::End(vec![]),
        ]
    );
    assert_eq!(
        run.output,
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok 0"
    );
    assert_eq!(run.phase, Phase::Idle);
}

#[test]
fn keep_alive_decisions() {
    let cases: &[(&str, bool)] = &[
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
            false,
        ),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            "GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n",
            true,
        ),
    ];
    for (input, keep) in cases {
        let run = run_server(Limits::default(), &[input.as_bytes()], false);
        let Req::Head { keep_alive, .. } = &run.events[0] else {
            panic!()
        };
        assert_eq!(keep_alive, keep, "{input:?}");
        let out = String::from_utf8(run.output).unwrap();
        assert_eq!(out.contains("connection: close"), !keep, "{out:?}");
        assert_eq!(run.phase == Phase::Closed, !keep);
        if input.contains("HTTP/1.0") && *keep {
            assert!(out.contains("connection: keep-alive"), "{out:?}");
        }
    }
}

#[test]
fn leading_empty_lines_are_ignored() {
    let run = run_server(
        Limits::default(),
        &[format!("\r\n\r\n{}", get("/")).as_bytes()],
        false,
    );
    assert_eq!(run.error, None);
    assert_eq!(run.events.len(), 2);
}

#[test]
fn content_length_body_streams_in_pieces() {
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhel");
    let Some(RequestEvent::Head(head)) = conn.poll_event().unwrap() else {
        panic!()
    };
    assert_eq!(head.framing, Framing::Length(11));
    assert_eq!(head.method, Method::POST);
    assert!(matches!(conn.poll_event().unwrap(), Some(RequestEvent::Data(d)) if d == "hel"));
    assert!(conn.poll_event().unwrap().is_none());
    assert_eq!(conn.phase(), Phase::ReadingBody);
    conn.handle_data(b"lo worldGET");
    assert!(matches!(conn.poll_event().unwrap(), Some(RequestEvent::Data(d)) if d == "lo world"));
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(RequestEvent::End(_))
    ));
    // Paused: the leftover "GET" waits for the response.
    assert!(conn.poll_event().unwrap().is_none());
    assert_eq!(conn.buffered(), 3);
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value;q=\"a b\"\r\nhello\r\n\
        006\r\n world\r\n\
        0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n";
    let run = run_server(Limits::default(), &[input], false);
    assert_eq!(run.error, None);
    assert_eq!(run.events[1], Req::Body(b"hello world".to_vec()));
    assert_eq!(
        run.events[2],
        Req::End(vec![
            ("x-checksum".into(), b"abc".to_vec()),
            ("x-other".into(), b"1".to_vec())
        ])
    );
    let Req::Head { framing, .. } = &run.events[0] else {
        panic!()
    };
    assert_eq!(*framing, Framing::Chunked);
}

#[test]
fn pipelined_requests_are_handled_strictly_in_order() {
    // CVE-2023-46137: Twisted answered pipelined requests out of order. Here the second
    // request is not even parsed until the first response is finished.
    let mut conn = ServerConnection::new(Limits::default());
    let input = [get("/1"), get("/2"), get("/3")].concat();
    conn.handle_data(input.as_bytes());
    let mut seen = Vec::new();
    for n in 1..=3 {
        let Some(RequestEvent::Head(head)) = conn.poll_event().unwrap() else {
            panic!()
        };
        seen.push(head.uri.to_string());
        assert!(matches!(
            conn.poll_event().unwrap(),
            Some(RequestEvent::End(_))
        ));
        for _ in 0..3 {
            assert!(
                conn.poll_event().unwrap().is_none(),
                "request {n} not answered yet"
            );
        }
        assert_eq!(conn.phase(), Phase::Responding);
        assert!(!conn.wants_read());
        let body = format!("r{n}");
        conn.send_response(Response::new(()), BodySize::Length(2))
            .unwrap();
        conn.send_data(body.as_bytes()).unwrap();
        conn.finish(None).unwrap();
    }
    assert_eq!(seen, ["/1", "/2", "/3"]);
    let out = conn.poll_transmit().unwrap();
    let out = String::from_utf8_lossy(&out);
    let p1 = out.find("r1").unwrap();
    let p2 = out.find("r2").unwrap();
    let p3 = out.find("r3").unwrap();
    assert!(p1 < p2 && p2 < p3);
    assert_eq!(conn.phase(), Phase::Idle);
}

#[test]
fn close_response_stops_before_the_next_pipelined_request() {
    let input = [
        "GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_string(),
        get("/2"),
    ]
    .concat();
    let run = run_server(Limits::default(), &[input.as_bytes()], false);
    assert_eq!(run.events.len(), 2, "only the first request");
    assert_eq!(run.phase, Phase::Closed);
}

#[test]
fn early_response_then_body_then_next_request() {
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab");
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(RequestEvent::Head(_))
    ));
    conn.send_response(Response::new(()), BodySize::Empty)
        .unwrap();
    conn.finish(None).unwrap();
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(RequestEvent::Data(_))
    ));
    conn.handle_data(format!("cd{}", get("/next")).as_bytes());
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(RequestEvent::Data(_))
    ));
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(RequestEvent::End(_))
    ));
    let Some(RequestEvent::Head(head)) = conn.poll_event().unwrap() else {
        panic!()
    };
    assert_eq!(head.uri.path(), "/next");
}

#[test]
fn expect_continue() {
    let input = b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(input);
    let Some(RequestEvent::Head(head)) = conn.poll_event().unwrap() else {
        panic!()
    };
    assert!(head.expect_continue);
    conn.send_continue().unwrap();
    conn.send_continue().unwrap(); // only once
    assert_eq!(
        &conn.poll_transmit().unwrap()[..],
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    conn.handle_data(b"abc");
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(RequestEvent::Data(_))
    ));
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(RequestEvent::End(_))
    ));
    conn.send_response(Response::new(()), BodySize::Empty)
        .unwrap();
    conn.finish(None).unwrap();
    let out = conn.poll_transmit().unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("close"));
    assert_eq!(conn.phase(), Phase::Idle);

    // Answering without 100 Continue: the client may or may not send the body, so the
    // connection cannot carry another request.
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(input);
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(RequestEvent::Head(_))
    ));
    let mut refused = Response::new(());
    *refused.status_mut() = StatusCode::UNAUTHORIZED;
    conn.send_response(refused, BodySize::Empty).unwrap();
    conn.finish(None).unwrap();
    let out = conn.poll_transmit().unwrap();
    assert!(String::from_utf8_lossy(&out).contains("connection: close"));
    assert_eq!(conn.phase(), Phase::Closed);

    // HTTP/1.0 and bodiless requests: the expectation is ignored.
    for input in [
        &b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n",
    ] {
        let run = run_server(Limits::default(), &[input], false);
        let Req::Head {
            expect_continue, ..
        } = &run.events[0]
        else {
            panic!()
        };
        assert!(!expect_continue);
    }
}

fn respond(input: &str, status: StatusCode, body: BodySize, data: &[u8]) -> String {
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(input.as_bytes());
    while let Some(ev) = conn.poll_event().unwrap() {
        if let RequestEvent::End(_) = ev {
            let mut r = Response::new(());
            *r.status_mut() = status;
            r.headers_mut().insert("x-a", HeaderValue::from_static("b"));
            conn.send_response(r, body).unwrap();
            conn.send_data(data).unwrap();
            conn.finish(None).unwrap();
        }
    }
    String::from_utf8(conn.poll_transmit().unwrap().to_vec()).unwrap()
}

#[test]
fn response_framing() {
    let get11 = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let get10 = "GET / HTTP/1.0\r\n\r\n";
    let head11 = "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(
        respond(get11, StatusCode::OK, BodySize::Unknown, b"hello"),
        "HTTP/1.1 200 OK\r\nx-a: b\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    assert_eq!(
        respond(get10, StatusCode::OK, BodySize::Unknown, b"hello"),
        "HTTP/1.1 200 OK\r\nx-a: b\r\nconnection: close\r\n\r\nhello"
    );
    assert_eq!(
        respond(get11, StatusCode::NOT_FOUND, BodySize::Length(5), b"hello"),
        "HTTP/1.1 404 Not Found\r\nx-a: b\r\ncontent-length: 5\r\n\r\nhello"
    );
    // HEAD: same fields as GET, no body.
    assert_eq!(
        respond(head11, StatusCode::OK, BodySize::Length(5), b"hello"),
        "HTTP/1.1 200 OK\r\nx-a: b\r\ncontent-length: 5\r\n\r\n"
    );
    assert_eq!(
        respond(head11, StatusCode::OK, BodySize::Unknown, b"hello"),
        "HTTP/1.1 200 OK\r\nx-a: b\r\n\r\n"
    );
    // 204 never has Content-Length; 304 may keep the representation's.
    assert_eq!(
        respond(get11, StatusCode::NO_CONTENT, BodySize::Length(5), b"hello"),
        "HTTP/1.1 204 No Content\r\nx-a: b\r\n\r\n"
    );
    assert_eq!(
        respond(get11, StatusCode::NOT_MODIFIED, BodySize::Length(5), b""),
        "HTTP/1.1 304 Not Modified\r\nx-a: b\r\ncontent-length: 5\r\n\r\n"
    );
    assert_eq!(
        respond(get11, StatusCode::NOT_MODIFIED, BodySize::Empty, b""),
        "HTTP/1.1 304 Not Modified\r\nx-a: b\r\n\r\n"
    );
}

#[test]
fn chunked_response_trailers_and_empty_writes() {
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(get("/").as_bytes());
    while conn.poll_event().unwrap().is_some() {}
    conn.send_response(Response::new(()), BodySize::Unknown)
        .unwrap();
    conn.send_data(b"").unwrap();
    conn.send_data(&[b'x'; 26]).unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", HeaderValue::from_static("1"));
    conn.finish(Some(&trailers)).unwrap();
    let out = conn.poll_transmit().unwrap();
    assert!(out.ends_with(b"\r\n\r\n1a\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n0\r\nx-sum: 1\r\n\r\n"));
}

#[test]
fn response_misuse_is_an_error() {
    let mut conn = ServerConnection::new(Limits::default());
    assert!(matches!(
        conn.send_response(Response::new(()), BodySize::Empty),
        Err(Error::InvalidState(_))
    ));
    conn.handle_data(get("/").as_bytes());
    while conn.poll_event().unwrap().is_some() {}
    let mut r = Response::new(());
    r.headers_mut()
        .insert("content-length", HeaderValue::from_static("3"));
    assert!(matches!(
        conn.send_response(r, BodySize::Empty),
        Err(Error::InvalidMessage(_))
    ));
    conn.send_response(Response::new(()), BodySize::Length(3))
        .unwrap();
    assert!(matches!(
        conn.send_data(b"abcd"),
        Err(Error::InvalidState(_))
    ));
    conn.send_data(b"ab").unwrap();
    // Too short: the client would wait forever, so the connection closes.
    assert!(matches!(conn.finish(None), Err(Error::InvalidState(_))));
    assert_eq!(conn.phase(), Phase::Closed);
}

#[test]
fn interim_responses() {
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(get("/").as_bytes());
    while conn.poll_event().unwrap().is_some() {}
    let mut early = Response::new(());
    *early.status_mut() = StatusCode::from_u16(103).unwrap();
    early
        .headers_mut()
        .insert("link", HeaderValue::from_static("</s.css>; rel=preload"));
    conn.send_response(early, BodySize::Empty).unwrap();
    conn.send_response(Response::new(()), BodySize::Empty)
        .unwrap();
    conn.finish(None).unwrap();
    let out = conn.poll_transmit().unwrap();
    assert_eq!(
        &out[..],
        b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn request_head_into_request() {
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(b"OPTIONS * HTTP/1.0\r\n\r\n");
    let Some(RequestEvent::Head(head)) = conn.poll_event().unwrap() else {
        panic!()
    };
    let req = head.into_request();
    assert_eq!(req.method(), Method::OPTIONS);
    assert_eq!(req.uri(), "*");
    assert_eq!(req.version(), Version::HTTP_10);
}

// ---- limits -------------------------------------------------------------------------

#[test]
fn limit_request_line_414() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(60));
    assert_refused(small_limits(), long.as_bytes(), Error::RequestLineTooLong);
    // Without its end yet: refused as soon as the line passes the limit.
    let run = run_server(
        small_limits(),
        &[format!("GET /{}", "a".repeat(70)).as_bytes()],
        false,
    );
    assert_eq!(run.error, Some(Error::RequestLineTooLong));
    // Exactly at the limit is fine.
    let path = "a".repeat(64 - "GET / HTTP/1.1".len());
    let ok = format!("GET /{path} HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        run_server(small_limits(), &[ok.as_bytes()], false).error,
        None
    );
}

#[test]
fn limit_head_size_431() {
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(300)
    );
    assert_refused(small_limits(), big.as_bytes(), Error::HeadTooLarge);
    let unfinished = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}", "b".repeat(300));
    assert_refused(small_limits(), unfinished.as_bytes(), Error::HeadTooLarge);
    let mut fits = String::from("GET / HTTP/1.1\r\nHost: a\r\nX-Big: \r\n\r\n");
    fits.insert_str(fits.len() - 4, &"b".repeat(256 - fits.len()));
    assert_eq!(fits.len(), 256);
    assert_eq!(
        run_server(small_limits(), &[fits.as_bytes()], false).error,
        None
    );
}

#[test]
fn limit_header_count_431() {
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..8 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_refused(small_limits(), many.as_bytes(), Error::TooManyHeaders);
}

#[test]
fn limit_body_413() {
    let over = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n";
    assert_refused(small_limits(), over.as_bytes(), Error::BodyTooLarge);
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n{}\r\n33\r\n",
        "x".repeat(50)
    );
    let run = run_server(small_limits(), &[chunked.as_bytes()], false);
    assert_eq!(run.error, Some(Error::BodyTooLarge));
    assert_status(&run.output, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(run.phase, Phase::Closed);
    // Exactly at the limit is fine.
    let at = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{}",
        "x".repeat(100)
    );
    assert_eq!(
        run_server(small_limits(), &[at.as_bytes()], false).error,
        None
    );
}

#[test]
fn limit_trailers_431() {
    let big = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: {}\r\n\r\n",
        "t".repeat(300)
    );
    assert_refused(small_limits(), big.as_bytes(), Error::HeadTooLarge);
    let mut many =
        String::from("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for i in 0..9 {
        many.push_str(&format!("T{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_refused(small_limits(), many.as_bytes(), Error::TooManyHeaders);
}

#[test]
fn defaults_hold_against_big_heads() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_refused(
        Limits::default(),
        long.as_bytes(),
        Error::RequestLineTooLong,
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let run = run_server(Limits::default(), &[big.as_bytes()], false);
    assert_eq!(run.error, Some(Error::HeadTooLarge));
}

#[test]
fn timeouts() {
    // Mid-head: 408.
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(b"GET / HTT");
    assert!(conn.poll_event().unwrap().is_none());
    assert_eq!(conn.phase(), Phase::ReadingHead);
    conn.handle_timeout();
    assert_status(&conn.poll_transmit().unwrap(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(conn.phase(), Phase::Closed);

    // Mid-body before any response: 408.
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab");
    while conn.poll_event().unwrap().is_some() {}
    assert_eq!(conn.phase(), Phase::ReadingBody);
    conn.handle_timeout();
    assert_status(&conn.poll_transmit().unwrap(), StatusCode::REQUEST_TIMEOUT);

    // Idle: close quietly.
    let mut conn = ServerConnection::new(Limits::default());
    assert_eq!(conn.phase(), Phase::Idle);
    conn.handle_timeout();
    assert!(conn.poll_transmit().is_none());
    assert_eq!(conn.phase(), Phase::Closed);
}

#[test]
fn eof_handling() {
    // Between requests: a clean close, after answering what was complete.
    let input = [get("/1"), get("/2")].concat();
    let run = run_server(Limits::default(), &[input.as_bytes()], true);
    assert_eq!(run.error, None);
    assert_eq!(run.events.len(), 4);
    assert_eq!(run.phase, Phase::Closed);
    // In the middle of a head or a body: an error, nothing to answer.
    for partial in [
        &b"GET / HTTP/1.1\r\nHo"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
    ] {
        let run = run_server(Limits::default(), &[partial], true);
        assert_eq!(run.error, Some(Error::UnexpectedEof));
        assert!(run.output.is_empty());
        assert_eq!(run.phase, Phase::Closed);
    }
}

#[test]
fn error_after_response_started_just_closes() {
    let mut conn = ServerConnection::new(Limits::default());
    conn.handle_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(RequestEvent::Head(_))
    ));
    conn.send_response(Response::new(()), BodySize::Unknown)
        .unwrap();
    conn.send_data(b"streaming").unwrap();
    conn.handle_data(b"zz\r\n");
    assert_eq!(conn.poll_event().unwrap_err(), Error::InvalidChunkSize);
    let out = conn.poll_transmit().unwrap();
    assert_eq!(
        out.windows(8).filter(|w| w == b"HTTP/1.1").count(),
        1,
        "no second status line"
    );
    assert_eq!(conn.phase(), Phase::Closed);
    assert_eq!(conn.send_data(b"more"), Err(Error::Closed));
}

// ---- request smuggling and malformed requests ---------------------------------------

fn post(fields: &str, body: &str) -> String {
    format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n{body}")
}

#[test]
fn smuggling_content_length_and_transfer_encoding() {
    for fields in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: identity\r\n",
    ] {
        assert_refused(
            Limits::default(),
            post(fields, "0\r\n\r\n").as_bytes(),
            Error::ContentLengthWithTransferEncoding,
        );
    }
}

#[test]
fn smuggling_duplicate_content_length() {
    for fields in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: 6\r\nContent-Length: 5, 5\r\n",
    ] {
        assert_refused(
            Limits::default(),
            post(fields, "hello!").as_bytes(),
            Error::ConflictingContentLength,
        );
    }
    // RFC 9110 §8.6: one value repeated is that value.
    for fields in [
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5, 5\r\n",
    ] {
        let run = run_server(
            Limits::default(),
            &[post(fields, "hello").as_bytes()],
            false,
        );
        assert_eq!(run.error, None, "{fields:?}");
        assert_eq!(run.events[1], Req::Body(b"hello".to_vec()));
    }
}

#[test]
fn smuggling_bad_content_length_values() {
    // CVE-2022-24801 accepted "+5".
    for value in [
        "+5",
        "-1",
        "0x10",
        "5 5",
        "5.0",
        "1_0",
        "1e3",
        "",
        "5,",
        "99999999999999999999999",
        "٣",
    ] {
        let input = post(&format!("Content-Length: {value}\r\n"), "hello");
        let err = if value == "5," {
            None
        } else {
            Some(Error::InvalidContentLength)
        };
        match err {
            Some(err) if value.is_ascii() => {
                assert_refused(Limits::default(), input.as_bytes(), err)
            }
            Some(_) => {
                let run = run_server(Limits::default(), &[input.as_bytes()], false);
                assert_status(&run.output, StatusCode::BAD_REQUEST);
            }
            // "5," is the list "5" with an empty element, which the list rule allows.
            None => assert_eq!(
                run_server(Limits::default(), &[input.as_bytes()], false).error,
                None
            ),
        }
    }
    // Leading OWS is part of the field syntax, not of the value.
    let run = run_server(
        Limits::default(),
        &[post("Content-Length:  \t5\r\n", "hello").as_bytes()],
        false,
    );
    assert_eq!(run.error, None);
}

#[test]
fn smuggling_transfer_encoding_values() {
    for value in [
        "chunked, chunked",
        "gzip",
        "chunked, gzip",
        "xchunked",
        "chunked;q=1",
        "identity",
        ",",
    ] {
        let input = post(&format!("Transfer-Encoding: {value}\r\n"), "0\r\n\r\n");
        assert_refused(
            Limits::default(),
            input.as_bytes(),
            Error::InvalidTransferEncoding,
        );
    }
    let two_fields = post(
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "0\r\n\r\n",
    );
    assert_refused(
        Limits::default(),
        two_fields.as_bytes(),
        Error::InvalidTransferEncoding,
    );
    let gzip = post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n");
    assert_refused(
        Limits::default(),
        gzip.as_bytes(),
        Error::UnsupportedTransferCoding,
    );
    // HTTP/1.0 with Transfer-Encoding is faulty framing (RFC 9112 §6.1).
    let old = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_refused(
        Limits::default(),
        old.as_bytes(),
        Error::InvalidTransferEncoding,
    );
    // Case and surrounding whitespace are fine.
    for value in ["Chunked", "  chunked\t", "CHUNKED"] {
        let input = post(&format!("Transfer-Encoding: {value}\r\n"), "0\r\n\r\n");
        assert_eq!(
            run_server(Limits::default(), &[input.as_bytes()], false).error,
            None
        );
    }
}

#[test]
fn smuggling_malformed_field_lines() {
    let cases: &[&str] = &[
        // Whitespace between field name and colon (RFC 9112 §5.1 says 400).
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\nhello",
        // obs-fold (RFC 9112 §5.2: a server rejects it with 400).
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n X: y\r\n\r\n",
        // Control characters and bad names.
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        // Request line shapes.
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        "GET /\r\nHost: a\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        "GET / http/1.1\r\nHost: a\r\n\r\n",
        "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n",
        "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for input in cases {
        let run = run_server(Limits::default(), &[input.as_bytes()], false);
        assert!(
            matches!(run.error, Some(Error::MalformedHead(_))),
            "{input:?}: {:?}",
            run.error
        );
        let err = run.error.unwrap();
        assert_refused(Limits::default(), input.as_bytes(), err);
    }
}

#[test]
fn bare_line_feeds() {
    for input in [
        "GET / HTTP/1.1\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\n",
        "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"\n\"\r\nhello\r\n0\r\n\r\n",
    ] {
        assert_refused(Limits::default(), input.as_bytes(), Error::BareLineFeed);
    }
}

#[test]
fn smuggling_bad_chunk_sizes() {
    // CVE-2022-24801: Twisted parsed chunk sizes with int(x, 16).
    for size in [
        "+5",
        "-5",
        "0x5",
        " 5",
        "5 ",
        "\t5",
        "5\t",
        "5_",
        "_5",
        "g",
        "",
        "10000000000000000",
        "5;",
        "5;=x",
        "5 ;a=\"b",
        "5;a=b c",
        "5\x0b",
        "5\x00",
    ] {
        let input = post(
            "Transfer-Encoding: chunked\r\n",
            &format!("{size}\r\nhello\r\n0\r\n\r\n"),
        );
        assert_refused(Limits::default(), input.as_bytes(), Error::InvalidChunkSize);
    }
    // Chunk data not followed by CRLF, or a CR alone.
    for body in [
        "5\r\nhelloX\r\n0\r\n\r\n",
        "5\r\nhello\rX0\r\n\r\n",
        "3\r\nhello\r\n0\r\n\r\n",
    ] {
        let input = post("Transfer-Encoding: chunked\r\n", body);
        assert_refused(Limits::default(), input.as_bytes(), Error::InvalidChunk);
    }
    // An endless chunk line.
    let endless = post("Transfer-Encoding: chunked\r\n", &"0".repeat(5000));
    assert_refused(Limits::default(), endless.as_bytes(), Error::InvalidChunk);
    // Valid oddities: leading zeros, BWS before extensions, upper-case hex.
    let ok = post(
        "Transfer-Encoding: chunked\r\n",
        "0005 ;ext\r\nhello\r\nA\r\n0123456789\r\n000\r\n\r\n",
    );
    let run = run_server(Limits::default(), &[ok.as_bytes()], false);
    assert_eq!(run.error, None);
    assert_eq!(run.events[1], Req::Body(b"hello0123456789".to_vec()));
}

#[test]
fn chunk_extension_flood_is_bounded() {
    let mut body = String::new();
    for _ in 0..2000 {
        body.push_str("1;aaaaaaaaaa=bbbbbbbbbb\r\nx\r\n");
    }
    let input = post("Transfer-Encoding: chunked\r\n", &body);
    let run = run_server(Limits::default(), &[input.as_bytes()], false);
    assert_eq!(run.error, Some(Error::InvalidChunk));
    assert_status(&run.output, StatusCode::BAD_REQUEST);
}

#[test]
fn host_rules() {
    assert_refused(
        Limits::default(),
        b"GET / HTTP/1.1\r\n\r\n",
        Error::InvalidHost,
    );
    assert_refused(
        Limits::default(),
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        Error::InvalidHost,
    );
    assert_refused(
        Limits::default(),
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        Error::InvalidHost,
    );
    assert_eq!(
        run_server(Limits::default(), &[b"GET / HTTP/1.0\r\n\r\n"], false).error,
        None
    );
}

#[test]
fn versions_and_expectations() {
    assert_refused(
        Limits::default(),
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        Error::UnsupportedVersion,
    );
    assert_refused(
        Limits::default(),
        b"GET / HTTP/0.9\r\nHost: a\r\n\r\n",
        Error::UnsupportedVersion,
    );
    assert_refused(
        Limits::default(),
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
        Error::UnsupportedExpectation,
    );
}
