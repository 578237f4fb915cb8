//! Drivers shared by the tests: feed a connection some input in given pieces, answer every
//! request, and collect what came out with body pieces merged (so the result does not
//! depend on how the input was split).

#![allow(dead_code)]

use twistor_http::Error;
use twistor_http::http::{HeaderMap, Method, Request, Response, StatusCode};
use twistor_http::proto::{
    BodySize, ClientConnection, Framing, Limits, Phase, RequestEvent, ResponseEvent,
    ServerConnection,
};

/// A request event with body pieces merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Req {
    Head {
        method: String,
        uri: String,
        version: String,
        headers: Vec<(String, Vec<u8>)>,
        framing: Framing,
        keep_alive: bool,
        expect_continue: bool,
    },
    Body(Vec<u8>),
    End(Vec<(String, Vec<u8>)>),
}

/// A response event with body pieces merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Interim(u16),
    Head {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        framing: Framing,
        keep_alive: bool,
    },
    Body(Vec<u8>),
    End(Vec<(String, Vec<u8>)>),
}

pub fn fields(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn push_req(events: &mut Vec<Req>, ev: Req) {
    if let (Some(Req::Body(prev)), Req::Body(more)) = (events.last_mut(), &ev) {
        prev.extend_from_slice(more);
    } else {
        events.push(ev);
    }
}

fn push_resp(events: &mut Vec<Resp>, ev: Resp) {
    if let (Some(Resp::Body(prev)), Resp::Body(more)) = (events.last_mut(), &ev) {
        prev.extend_from_slice(more);
    } else {
        events.push(ev);
    }
}

/// What a server connection did with some input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRun {
    pub events: Vec<Req>,
    pub error: Option<Error>,
    pub output: Vec<u8>,
    pub phase: Phase,
}

/// Feeds `pieces` to a server, then EOF if `eof`. Every request is answered `200` with the
/// body `ok <n>` (n counts requests from 0), as soon as it ends.
pub fn run_server(limits: Limits, pieces: &[&[u8]], eof: bool) -> ServerRun {
    let mut conn = ServerConnection::new(limits);
    let mut run = ServerRun {
        events: Vec::new(),
        error: None,
        output: Vec::new(),
        phase: Phase::Idle,
    };
    let mut answered = 0;
    let mut drive = |conn: &mut ServerConnection, run: &mut ServerRun| {
        loop {
            match conn.poll_event() {
                Ok(Some(RequestEvent::Head(h))) => push_req(
                    &mut run.events,
                    Req::Head {
                        method: h.method.to_string(),
                        uri: h.uri.to_string(),
                        version: format!("{:?}", h.version),
                        headers: fields(h.headers()),
                        framing: h.framing,
                        keep_alive: h.keep_alive,
                        expect_continue: h.expect_continue,
                    },
                ),
                Ok(Some(RequestEvent::Data(d))) => {
                    assert!(!d.is_empty(), "empty data event");
                    push_req(&mut run.events, Req::Body(d.to_vec()))
                }
                Ok(Some(RequestEvent::End(t))) => {
                    push_req(&mut run.events, Req::End(fields(&t)));
                    let body = format!("ok {answered}");
                    answered += 1;
                    conn.send_response(Response::new(()), BodySize::Length(body.len() as u64))
                        .unwrap();
                    conn.send_data(body.as_bytes()).unwrap();
                    conn.finish(None).unwrap();
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(run.error.is_none(), "two errors");
                    run.error = Some(e);
                }
            }
        }
        while let Some(b) = conn.poll_transmit() {
            run.output.extend_from_slice(&b);
        }
    };
    for piece in pieces {
        conn.handle_data(piece);
        drive(&mut conn, &mut run);
    }
    if eof {
        conn.handle_eof();
        drive(&mut conn, &mut run);
    }
    run.phase = conn.phase();
    run
}

/// One request the client sends, and the response it reads.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub method: Method,
    pub body: Vec<u8>,
    pub chunked: bool,
}

/// What a client connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRun {
    pub events: Vec<Resp>,
    pub error: Option<Error>,
    pub output: Vec<u8>,
    pub sent: usize,
}

/// Sends `requests` one after the other on one client connection, each as soon as the
/// previous exchange is over, while feeding it `pieces` of server output, then EOF if `eof`.
pub fn run_client(
    limits: Limits,
    requests: &[ClientRequest],
    pieces: &[&[u8]],
    eof: bool,
) -> ClientRun {
    let mut conn = ClientConnection::new(limits);
    let mut run = ClientRun {
        events: Vec::new(),
        error: None,
        output: Vec::new(),
        sent: 0,
    };
    let drive = |conn: &mut ClientConnection, run: &mut ClientRun| {
        loop {
            if run.error.is_none()
                && !conn.is_closed()
                && conn.is_idle()
                && run.sent < requests.len()
            {
                let r = &requests[run.sent];
                run.sent += 1;
                let req = Request::builder()
                    .method(r.method.clone())
                    .uri("http://example.com/x")
                    .body(())
                    .unwrap();
                let size = if r.chunked {
                    BodySize::Unknown
                } else if r.body.is_empty() {
                    BodySize::Empty
                } else {
                    BodySize::Length(r.body.len() as u64)
                };
                conn.send_request(req, size).unwrap();
                conn.send_data(&r.body).unwrap();
                conn.finish(None).unwrap();
            }
            match conn.poll_event() {
                Ok(Some(ResponseEvent::Interim(h))) => {
                    push_resp(&mut run.events, Resp::Interim(h.status.as_u16()))
                }
                Ok(Some(ResponseEvent::Head(h))) => push_resp(
                    &mut run.events,
                    Resp::Head {
                        status: h.status.as_u16(),
                        headers: fields(&h.headers),
                        framing: h.framing,
                        keep_alive: h.keep_alive,
                    },
                ),
                Ok(Some(ResponseEvent::Data(d))) => {
                    assert!(!d.is_empty(), "empty data event");
                    push_resp(&mut run.events, Resp::Body(d.to_vec()))
                }
                Ok(Some(ResponseEvent::End(t))) => {
                    push_resp(&mut run.events, Resp::End(fields(&t)))
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(run.error.is_none(), "two errors");
                    run.error = Some(e);
                }
            }
        }
        while let Some(b) = conn.poll_transmit() {
            run.output.extend_from_slice(&b);
        }
    };
    drive(&mut conn, &mut run);
    for piece in pieces {
        conn.handle_data(piece);
        drive(&mut conn, &mut run);
    }
    if eof {
        conn.handle_eof();
        drive(&mut conn, &mut run);
    }
    run
}

/// Splits `input` at the given sorted cut points.
pub fn split_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for &c in cuts {
        let c = c.min(input.len());
        if c > start {
            pieces.push(&input[start..c]);
            start = c;
        }
    }
    pieces.push(&input[start..]);
    pieces
}

/// The output's status line starts with this status.
pub fn assert_status(output: &[u8], status: StatusCode) {
    let text = String::from_utf8_lossy(output);
    let want = format!("HTTP/1.1 {} ", status.as_u16());
    assert!(text.starts_with(&want), "want {want:?}, got {text:?}");
}
