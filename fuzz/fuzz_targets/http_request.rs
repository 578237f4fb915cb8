//! The server core on arbitrary bytes: it must never panic, and it must read the same
//! events (and write the same bytes) whether the input comes whole or in pieces.
//!
//! The first byte picks the piece size and the limits; the rest is the client's input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use twistor_http::http::{HeaderMap, Method, Response};
use twistor_http::proto::{BodySize, Limits, RequestEvent, ServerConnection};

#[derive(Debug, PartialEq)]
enum Ev {
    Head(Method, String, HeaderMap),
    Data(Vec<u8>),
    End(HeaderMap),
    Error(twistor_http::Error),
}

fn run(limits: &Limits, input: &[u8], piece: usize) -> (Vec<Ev>, Vec<u8>) {
    let mut conn = ServerConnection::new(limits.clone());
    let mut events: Vec<Ev> = Vec::new();
    let mut out = Vec::new();
    let mut answered = 0u64;
    let mut drive = |conn: &mut ServerConnection, events: &mut Vec<Ev>| loop {
        match conn.poll_event() {
            Ok(Some(RequestEvent::Head(h))) => {
                // Fields read from the raw head agree with the map built from it.
                for name in h.headers().keys() {
                    assert_eq!(
                        h.header(name),
                        h.headers().get(name).map(|v| v.as_bytes()),
                        "field {name}"
                    );
                }
                events.push(Ev::Head(
                    h.method.clone(),
                    h.uri.to_string(),
                    h.headers().clone(),
                ));
                // Answer some requests early, before their body is read.
                if answered % 3 == 2 {
                    let _ = conn.send_response(Response::new(()), BodySize::Unknown);
                    let _ = conn.send_data(b"early");
                    let _ = conn.finish(None);
                }
            }
            Ok(Some(RequestEvent::Data(d))) => {
                assert!(!d.is_empty());
                if let Some(Ev::Data(prev)) = events.last_mut() {
                    prev.extend_from_slice(&d);
                } else {
                    events.push(Ev::Data(d.to_vec()));
                }
            }
            Ok(Some(RequestEvent::End(t))) => {
                events.push(Ev::End(t));
                let size = match answered % 3 {
                    0 => BodySize::Length(2),
                    1 => BodySize::Unknown,
                    _ => BodySize::Empty,
                };
                answered += 1;
                if conn.send_response(Response::new(()), size).is_ok() {
                    let _ = conn.send_data(if size == BodySize::Empty { b"" } else { b"ok" });
                    let _ = conn.send_continue();
                    let _ = conn.finish(None);
                }
            }
            Ok(None) => break,
            Err(e) => {
                events.push(Ev::Error(e));
                break;
            }
        }
    };
    for chunk in input.chunks(piece.max(1)) {
        conn.handle_data(chunk);
        drive(&mut conn, &mut events);
        while let Some(b) = conn.poll_transmit() {
            out.extend_from_slice(&b);
        }
    }
    conn.handle_eof();
    drive(&mut conn, &mut events);
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    (events, out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let mut limits = Limits::default();
    if first & 0x80 != 0 {
        limits.max_request_line = 40;
        limits.max_head_size = 200;
        limits.max_headers = 6;
        limits.max_body_size = 300;
    }
    let piece = usize::from(first & 0x7f) + 1;
    let whole = run(&limits, input, input.len());
    let split = run(&limits, input, piece);
    assert_eq!(whole, split, "chunking changed the outcome");
});
