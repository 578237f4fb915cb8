//! Property tests: valid message sequences decode to the same events however the bytes are
//! split, down to one byte at a time; and what one side writes, the other reads back.

mod common;

use common::{ClientRequest, Req, Resp, run_client, run_server, split_at};
use proptest::prelude::*;
use twistor_http::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use twistor_http::proto::{
    BodySize, ClientConnection, Limits, RequestEvent, ResponseEvent, ServerConnection,
};

// ---- generated requests ---------------------------------------------------------------

#[derive(Debug, Clone)]
enum Body {
    None,
    Length(Vec<u8>),
    /// Non-empty chunks, whether to add extensions, and trailer fields.
    Chunked(Vec<Vec<u8>>, bool, Vec<(String, String)>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::None => Vec::new(),
            Body::Length(b) => b.clone(),
            Body::Chunked(chunks, ..) => chunks.concat(),
        }
    }
}

#[derive(Debug, Clone)]
struct GenRequest {
    method: &'static str,
    path: String,
    http10: bool,
    fields: Vec<(String, String)>,
    body: Body,
}

fn field() -> impl Strategy<Value = (String, String)> {
    ("x-[a-z]{1,8}", "[ -~&&[^ ]]([ -~]{0,20}[!-~])?")
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..40)
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::None),
        body_bytes().prop_map(Body::Length),
        (
            prop::collection::vec(body_bytes(), 0..4),
            any::<bool>(),
            prop::collection::vec(field(), 0..3)
        )
            .prop_map(|(c, e, t)| Body::Chunked(c, e, t)),
    ]
}

fn request() -> impl Strategy<Value = GenRequest> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
        "/[a-z0-9/._~-]{0,16}(\\?[a-z0-9=&]{0,10})?",
        any::<bool>(),
        prop::collection::vec(field(), 0..4),
        body(),
    )
        .prop_map(|(method, path, http10, fields, mut body)| {
            if http10 && matches!(body, Body::Chunked(..)) {
                body = Body::Length(body.bytes()).non_empty();
            }
            GenRequest {
                method,
                path,
                http10,
                fields,
                body,
            }
        })
}

impl Body {
    fn non_empty(self) -> Body {
        match self {
            Body::Length(b) if b.is_empty() => Body::None,
            other => other,
        }
    }
}

fn serialize_request(r: &GenRequest, last: bool) -> Vec<u8> {
    let mut s = format!(
        "{} {} HTTP/1.{}\r\n",
        r.method,
        r.path,
        if r.http10 { 0 } else { 1 }
    );
    if !r.http10 {
        s.push_str("Host: example.com\r\n");
    }
    for (n, v) in &r.fields {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    match (r.http10, last) {
        (true, false) => s.push_str("Connection: keep-alive\r\n"),
        (false, true) => s.push_str("Connection: close\r\n"),
        _ => {}
    }
    let mut out = Vec::new();
    match &r.body {
        Body::None => {
            s.push_str("\r\n");
            out.extend_from_slice(s.as_bytes());
        }
        Body::Length(b) => {
            s.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b);
        }
        Body::Chunked(chunks, ext, trailers) => {
            s.push_str("Transfer-Encoding: chunked\r\n\r\n");
            out.extend_from_slice(s.as_bytes());
            for c in chunks {
                let e = if *ext { " ; a=b;c=\"d e\"" } else { "" };
                out.extend_from_slice(format!("{:X}{e}\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            for (n, v) in trailers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn cuts(len: usize, idx: &[prop::sample::Index]) -> Vec<usize> {
    let mut c: Vec<usize> = idx.iter().map(|i| i.index(len + 1)).collect();
    c.sort_unstable();
    c
}

// ---- generated responses --------------------------------------------------------------

#[derive(Debug, Clone)]
struct GenResponse {
    head_request: bool,
    interim: Vec<u16>,
    status: u16,
    fields: Vec<(String, String)>,
    /// Content-Length framing if false, chunked if true (ignored when there is no body).
    chunked: bool,
    body: Vec<u8>,
}

fn response() -> impl Strategy<Value = GenResponse> {
    (
        any::<bool>(),
        prop::collection::vec(prop::sample::select(vec![100u16, 102, 103]), 0..3),
        prop::sample::select(vec![200u16, 201, 204, 304, 404, 500]),
        prop::collection::vec(field(), 0..3),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..60),
    )
        .prop_map(
            |(head_request, interim, status, fields, chunked, body)| GenResponse {
                head_request,
                interim,
                status,
                fields,
                chunked,
                body,
            },
        )
}

impl GenResponse {
    fn bodiless(&self) -> bool {
        self.head_request || self.status == 204 || self.status == 304
    }
}

/// Serializes a response; the last one may be delimited by closing the connection.
fn serialize_response(r: &GenResponse, until_close: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for code in &r.interim {
        out.extend_from_slice(format!("HTTP/1.1 {code} Interim\r\n\r\n").as_bytes());
    }
    out.extend_from_slice(format!("HTTP/1.1 {} Whatever\r\n", r.status).as_bytes());
    for (n, v) in &r.fields {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if r.bodiless() {
        if r.status != 204 {
            out.extend_from_slice(format!("Content-Length: {}\r\n", r.body.len() + 7).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    } else if until_close {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&r.body);
    } else if r.chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for c in r.body.chunks(7) {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", r.body.len()).as_bytes());
        out.extend_from_slice(&r.body);
    }
    out
}

fn response_bodies(events: &[Resp]) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    for e in events {
        match e {
            Resp::Head { .. } => bodies.push(Vec::new()),
            Resp::Body(b) => bodies.last_mut().unwrap().extend_from_slice(b),
            _ => {}
        }
    }
    bodies
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn requests_decode_the_same_in_any_chunking(
        reqs in prop::collection::vec(request(), 1..5),
        close_last in any::<bool>(),
        idx in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut input = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let last = i + 1 == reqs.len();
            // A 1.0 request without keep-alive closes: only the last may be one.
            input.extend(serialize_request(r, last && (close_last || r.http10)));
        }
        let whole = run_server(Limits::default(), &[&input], false);
        prop_assert_eq!(&whole.error, &None);

        // The model: each request's head, body and trailers, in order.
        let heads: Vec<_> = whole.events.iter().filter_map(|e| match e {
            Req::Head { method, uri, .. } => Some((method.clone(), uri.clone())),
            _ => None,
        }).collect();
        let want: Vec<_> = reqs.iter().map(|r| (r.method.to_string(), r.path.clone())).collect();
        prop_assert_eq!(heads, want);
        let mut bodies = Vec::new();
        for e in &whole.events {
            match e {
                Req::Head { .. } => bodies.push(Vec::new()),
                Req::Body(b) => bodies.last_mut().unwrap().extend_from_slice(b),
                _ => {}
            }
        }
        let want: Vec<_> = reqs.iter().map(|r| r.body.bytes()).collect();
        prop_assert_eq!(bodies, want);

        let pieces = split_at(&input, &cuts(input.len(), &idx));
        let split = run_server(Limits::default(), &pieces, false);
        prop_assert_eq!(&split, &whole);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let bytewise = run_server(Limits::default(), &bytes, false);
        prop_assert_eq!(&bytewise, &whole);
    }

    #[test]
    fn responses_decode_the_same_in_any_chunking(
        resps in prop::collection::vec(response(), 1..5),
        until_close in any::<bool>(),
        idx in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut input = Vec::new();
        let mut requests = Vec::new();
        for (i, r) in resps.iter().enumerate() {
            let last = i + 1 == resps.len();
            input.extend(serialize_response(r, last && until_close && !r.bodiless()));
            let method = if r.head_request { Method::HEAD } else { Method::GET };
            requests.push(ClientRequest { method, body: Vec::new(), chunked: false });
        }
        let whole = run_client(Limits::default(), &requests, &[&input], true);
        prop_assert_eq!(&whole.error, &None);
        prop_assert_eq!(whole.sent, resps.len());
        let want: Vec<_> = resps
            .iter()
            .map(|r| if r.bodiless() { Vec::new() } else { r.body.clone() })
            .collect();
        prop_assert_eq!(response_bodies(&whole.events), want);
        let interims = whole.events.iter().filter(|e| matches!(e, Resp::Interim(_))).count();
        prop_assert_eq!(interims, resps.iter().map(|r| r.interim.len()).sum::<usize>());

        let pieces = split_at(&input, &cuts(input.len(), &idx));
        let split = run_client(Limits::default(), &requests, &pieces, true);
        prop_assert_eq!(&split, &whole);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let bytewise = run_client(Limits::default(), &requests, &bytes, true);
        prop_assert_eq!(&bytewise, &whole);
    }

    /// What a `ServerConnection` writes, a `ClientConnection` reads back, for any body
    /// pieces and framing.
    #[test]
    fn server_responses_round_trip_through_the_client(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 0..5),
        known_length in any::<bool>(),
        head in any::<bool>(),
        http10 in any::<bool>(),
    ) {
        let body: Vec<u8> = pieces.concat();
        let mut server = ServerConnection::new(Limits::default());
        let method = if head { Method::HEAD } else { Method::GET };
        let request = if http10 {
            format!("{method} / HTTP/1.0\r\n\r\n")
        } else {
            format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n")
        };
        server.handle_data(request.as_bytes());
        while server.poll_event().unwrap().is_some() {}
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert("x-a", HeaderValue::from_static("b"));
        let size = if known_length { BodySize::Length(body.len() as u64) } else { BodySize::Unknown };
        server.send_response(response, size).unwrap();
        for p in &pieces {
            server.send_data(p).unwrap();
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", HeaderValue::from_static("1"));
        server.finish(Some(&trailers)).unwrap();
        let wire = server.poll_transmit().unwrap();

        let mut client = ClientConnection::new(Limits::default());
        let request = Request::builder().method(method).uri("http://a/").body(()).unwrap();
        client.send_request(request, BodySize::Empty).unwrap();
        client.finish(None).unwrap();
        client.handle_data(&wire);
        client.handle_eof();
        let mut got = Vec::new();
        let mut ended = false;
        while let Some(ev) = client.poll_event().unwrap() {
            match ev {
                ResponseEvent::Head(h) => prop_assert_eq!(h.status, StatusCode::OK),
                ResponseEvent::Data(d) => got.extend_from_slice(&d),
                ResponseEvent::End(t) => {
                    ended = true;
                    if !known_length && !http10 && !head {
                        prop_assert_eq!(t.get("x-t").map(|v| v.as_bytes()), Some(&b"1"[..]));
                    }
                }
                ResponseEvent::Interim(_) => prop_assert!(false, "no interim sent"),
            }
        }
        prop_assert!(ended);
        prop_assert_eq!(got, if head { Vec::new() } else { body });
    }

    /// What a `ClientConnection` writes, a `ServerConnection` reads back.
    #[test]
    fn client_requests_round_trip_through_the_server(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 0..5),
        known_length in any::<bool>(),
        method in prop::sample::select(vec![Method::POST, Method::PUT, Method::GET, Method::DELETE]),
    ) {
        let body: Vec<u8> = pieces.concat();
        let mut client = ClientConnection::new(Limits::default());
        let size = match (known_length, body.is_empty()) {
            (true, true) => BodySize::Empty,
            (true, false) => BodySize::Length(body.len() as u64),
            (false, _) => BodySize::Unknown,
        };
        let request = Request::builder().method(method.clone()).uri("http://h:81/p?q").body(()).unwrap();
        client.send_request(request, size).unwrap();
        for p in &pieces {
            client.send_data(p).unwrap();
        }
        client.finish(None).unwrap();
        let wire = client.poll_transmit().unwrap();

        let mut server = ServerConnection::new(Limits::default());
        server.handle_data(&wire);
        let mut got = Vec::new();
        let mut ended = false;
        while let Some(ev) = server.poll_event().unwrap() {
            match ev {
                RequestEvent::Head(h) => {
                    prop_assert_eq!(&h.method, &method);
                    prop_assert_eq!(h.uri.to_string(), "/p?q");
                    prop_assert_eq!(h.headers().get("host").unwrap(), "h:81");
                    prop_assert_eq!(h.header("Host"), Some(&b"h:81"[..]));
                }
                RequestEvent::Data(d) => got.extend_from_slice(&d),
                RequestEvent::End(_) => ended = true,
            }
        }
        prop_assert!(ended);
        prop_assert_eq!(got, body);
        prop_assert_eq!(server.buffered(), 0);
    }
}
