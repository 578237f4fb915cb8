//! The client core: request serialization and response decoding.

mod common;

use common::{ClientRequest, Resp, run_client};
use twistor_http::Error;
use twistor_http::http::{HeaderValue, Method, Request, StatusCode};
use twistor_http::proto::{BodySize, ClientConnection, Framing, Limits, ResponseEvent};

fn req(method: Method) -> ClientRequest {
    ClientRequest {
        method,
        body: Vec::new(),
        chunked: false,
    }
}

fn sent(request: Request<()>, body: BodySize, data: &[u8]) -> String {
    let mut conn = ClientConnection::new(Limits::default());
    conn.send_request(request, body).unwrap();
    conn.send_data(data).unwrap();
    conn.finish(None).unwrap();
    String::from_utf8(conn.poll_transmit().unwrap().to_vec()).unwrap()
}

#[test]
fn request_serialization() {
    let get = Request::get("http://user:pw@example.com:8080/a/b?c=d")
        .body(())
        .unwrap();
    assert_eq!(
        sent(get, BodySize::Empty, b""),
        "GET /a/b?c=d HTTP/1.1\r\nhost: example.com:8080\r\n\r\n"
    );
    let post = Request::post("http://example.com").body(()).unwrap();
    assert_eq!(
        sent(post, BodySize::Empty, b""),
        "POST / HTTP/1.1\r\nhost: example.com\r\ncontent-length: 0\r\n\r\n"
    );
    let put = Request::put("/x").header("host", "h").body(()).unwrap();
    assert_eq!(
        sent(put, BodySize::Length(3), b"abc"),
        "PUT /x HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\nabc"
    );
    let chunked = Request::post("http://h/up").body(()).unwrap();
    assert_eq!(
        sent(chunked, BodySize::Unknown, b"abc"),
        "POST /up HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    );
    let connect = Request::connect("example.com:443").body(()).unwrap();
    assert_eq!(
        sent(connect, BodySize::Empty, b""),
        "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n"
    );
}

#[test]
fn request_misuse() {
    let mut conn = ClientConnection::new(Limits::default());
    let no_host = Request::get("/x").body(()).unwrap();
    assert!(matches!(
        conn.send_request(no_host, BodySize::Empty),
        Err(Error::InvalidMessage(_))
    ));
    let framed = Request::get("http://h/")
        .header("content-length", "1")
        .body(())
        .unwrap();
    assert!(matches!(
        conn.send_request(framed, BodySize::Empty),
        Err(Error::InvalidMessage(_))
    ));
    conn.send_request(Request::get("http://h/").body(()).unwrap(), BodySize::Empty)
        .unwrap();
    let again = Request::get("http://h/").body(()).unwrap();
    assert!(matches!(
        conn.send_request(again, BodySize::Empty),
        Err(Error::InvalidState(_))
    ));
}

#[test]
fn keep_alive_exchange_and_reuse() {
    let mut conn = ClientConnection::new(Limits::default());
    assert!(conn.is_reusable());
    conn.send_request(Request::get("http://h/").body(()).unwrap(), BodySize::Empty)
        .unwrap();
    conn.finish(None).unwrap();
    assert!(!conn.is_reusable());
    conn.handle_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let Some(ResponseEvent::Head(head)) = conn.poll_event().unwrap() else {
        panic!()
    };
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.reason, "OK");
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.keep_alive);
    assert!(matches!(conn.poll_event().unwrap(), Some(ResponseEvent::Data(d)) if d == "hello"));
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(ResponseEvent::End(_))
    ));
    assert!(conn.is_reusable());
    assert_eq!(head.into_response().status(), StatusCode::OK);
}

#[test]
fn responses_without_bodies() {
    // HEAD: Content-Length describes the resource, no body follows.
    let run = run_client(
        Limits::default(),
        &[req(Method::HEAD), req(Method::GET), req(Method::GET)],
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n\
            HTTP/1.1 204 No Content\r\n\r\n\
            HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"],
        false,
    );
    assert_eq!(run.error, None);
    assert_eq!(run.sent, 3);
    let heads: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Resp::Head {
                status, framing, ..
            } => Some((*status, *framing)),
            _ => None,
        })
        .collect();
    assert_eq!(
        heads,
        [
            (200, Framing::Empty),
            (204, Framing::Empty),
            (304, Framing::Empty)
        ]
    );
    assert!(!run.events.iter().any(|e| matches!(e, Resp::Body(_))));
}

#[test]
fn interim_responses_then_final() {
    let mut conn = ClientConnection::new(Limits::default());
    let put = Request::put("http://h/")
        .header("expect", "100-continue")
        .body(())
        .unwrap();
    conn.send_request(put, BodySize::Length(2)).unwrap();
    conn.handle_data(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\n");
    assert!(
        matches!(conn.poll_event().unwrap(), Some(ResponseEvent::Interim(h)) if h.status == 100)
    );
    assert!(
        matches!(conn.poll_event().unwrap(), Some(ResponseEvent::Interim(h)) if h.status == 103)
    );
    assert!(conn.poll_event().unwrap().is_none());
    conn.send_data(b"ok").unwrap();
    conn.finish(None).unwrap();
    conn.handle_data(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    assert!(matches!(conn.poll_event().unwrap(), Some(ResponseEvent::Head(h)) if h.status == 201));
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(ResponseEvent::End(_))
    ));
    assert!(conn.is_reusable());
}

#[test]
fn close_delimited_body_ends_at_eof() {
    let run = run_client(
        Limits::default(),
        &[req(Method::GET)],
        &[
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ",
            b"world",
        ],
        true,
    );
    assert_eq!(run.error, None);
    assert!(matches!(
        &run.events[0],
        Resp::Head {
            framing: Framing::UntilClose,
            keep_alive: false,
            ..
        }
    ));
    assert_eq!(run.events[1], Resp::Body(b"hello world".to_vec()));
    assert_eq!(run.events[2], Resp::End(vec![]));
}

#[test]
fn close_delimited_body_limit_is_exact() {
    let mut small = Limits::default();
    small.max_body_size = 10;
    let input = b"HTTP/1.1 200 OK\r\n\r\n0123456789X";
    let bytewise: Vec<&[u8]> = input.chunks(1).collect();
    for pieces in [vec![&input[..]], bytewise] {
        let run = run_client(small.clone(), &[req(Method::GET)], &pieces, false);
        assert_eq!(run.events[1], Resp::Body(b"0123456789".to_vec()));
        assert_eq!(run.error, Some(Error::BodyTooLarge));
    }
    // Exactly at the limit is fine.
    let run = run_client(
        small,
        &[req(Method::GET)],
        &[&input[..input.len() - 1]],
        true,
    );
    assert_eq!(run.error, None);
}

#[test]
fn chunked_response_with_trailers() {
    let run = run_client(
        Limits::default(),
        &[req(Method::GET)],
        &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"],
        false,
    );
    assert_eq!(run.error, None);
    assert_eq!(run.events[1], Resp::Body(b"hello".to_vec()));
    assert_eq!(
        run.events[2],
        Resp::End(vec![("x-t".into(), b"1".to_vec())])
    );
}

#[test]
fn keep_alive_rules() {
    let cases: &[(&[u8], bool)] = &[
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            true,
        ),
        // Both framings: chunked wins, but the connection is not trusted again.
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            false,
        ),
    ];
    for (response, keep) in cases {
        let mut conn = ClientConnection::new(Limits::default());
        conn.send_request(Request::get("http://h/").body(()).unwrap(), BodySize::Empty)
            .unwrap();
        conn.finish(None).unwrap();
        conn.handle_data(response);
        let Some(ResponseEvent::Head(head)) = conn.poll_event().unwrap() else {
            panic!()
        };
        assert_eq!(
            head.keep_alive,
            *keep,
            "{:?}",
            String::from_utf8_lossy(response)
        );
        while conn.poll_event().unwrap().is_some() {}
        assert_eq!(conn.is_reusable(), *keep);
        assert_eq!(conn.is_closed(), !*keep);
    }
    // The request asked to close.
    let mut conn = ClientConnection::new(Limits::default());
    let close = Request::get("http://h/").header("connection", HeaderValue::from_static("close"));
    conn.send_request(close.body(()).unwrap(), BodySize::Empty)
        .unwrap();
    conn.finish(None).unwrap();
    conn.handle_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    while conn.poll_event().unwrap().is_some() {}
    assert!(!conn.is_reusable());
    assert!(conn.is_closed());
}

#[test]
fn response_errors() {
    let mut small = Limits::default();
    small.max_head_size = 100;
    small.max_headers = 4;
    small.max_body_size = 10;
    let cases: &[(&[u8], Error)] = &[
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            Error::ConflictingContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            Error::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Error::UnsupportedTransferCoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
            Error::BodyTooLarge,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n",
            Error::BodyTooLarge,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n",
            Error::InvalidChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
            Error::TooManyHeaders,
        ),
        (b"HTTP/2.0 200 OK\r\n\r\n", Error::UnsupportedVersion),
        (
            b"HTTP/1.1 2000 OK\r\n\r\n",
            Error::MalformedHead("invalid status"),
        ),
        (
            b"SSH-2.0-OpenSSH\r\n\r\n",
            Error::MalformedHead("invalid version"),
        ),
    ];
    for (response, err) in cases {
        let run = run_client(small.clone(), &[req(Method::GET)], &[response], false);
        assert_eq!(
            run.error.as_ref(),
            Some(err),
            "{:?}",
            String::from_utf8_lossy(response)
        );
        let bytewise: Vec<&[u8]> = response.chunks(1).collect();
        let run = run_client(small.clone(), &[req(Method::GET)], &bytewise, false);
        assert_eq!(run.error.as_ref(), Some(err));
    }
    let big = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'x'; 200]].concat();
    let run = run_client(small.clone(), &[req(Method::GET)], &[&big], false);
    assert_eq!(run.error, Some(Error::HeadTooLarge));
    // Cut short.
    for partial in [
        &b"HTTP/1.1 200 OK\r\nContent-Le"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
    ] {
        let run = run_client(Limits::default(), &[req(Method::GET)], &[partial], true);
        assert_eq!(run.error, Some(Error::UnexpectedEof));
    }
}

#[test]
fn lenient_line_endings_in_response_heads() {
    let run = run_client(
        Limits::default(),
        &[req(Method::GET)],
        &[b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi"],
        false,
    );
    assert_eq!(run.error, None);
    assert_eq!(run.events[1], Resp::Body(b"hi".to_vec()));
}
