//! The client core on arbitrary bytes from a server: it must never panic, and it must read
//! the same events whether the input comes whole or in pieces.
//!
//! The first byte picks the piece size and the limits, the second the methods of the
//! requests sent; the rest is the server's output.

#![no_main]

use libfuzzer_sys::fuzz_target;
use twistor_http::http::{HeaderMap, Method, Request};
use twistor_http::proto::{BodySize, ClientConnection, Limits, ResponseEvent};

#[derive(Debug, PartialEq)]
enum Ev {
    Interim(u16),
    Head(u16, HeaderMap, bool),
    Data(Vec<u8>),
    End(HeaderMap),
    Error(twistor_http::Error),
}

fn run(limits: &Limits, methods: u8, input: &[u8], piece: usize) -> Vec<Ev> {
    let mut conn = ClientConnection::new(limits.clone());
    let mut events = Vec::new();
    let mut sent = 0u32;
    let mut drive = |conn: &mut ClientConnection, events: &mut Vec<Ev>| loop {
        if conn.is_idle() && !conn.is_closed() && sent < 8 {
            let method = match (methods >> (sent % 4 * 2)) & 3 {
                0 => Method::GET,
                1 => Method::HEAD,
                2 => Method::POST,
                _ => Method::CONNECT,
            };
            let uri = if method == Method::CONNECT {
                "h:443"
            } else {
                "http://h/"
            };
            let req = Request::builder().method(method).uri(uri).body(()).unwrap();
            sent += 1;
            if conn.send_request(req, BodySize::Unknown).is_ok() {
                let _ = conn.send_data(b"body");
                let _ = conn.finish(None);
            }
        }
        match conn.poll_event() {
            Ok(Some(ResponseEvent::Interim(h))) => events.push(Ev::Interim(h.status.as_u16())),
            Ok(Some(ResponseEvent::Head(h))) => {
                events.push(Ev::Head(h.status.as_u16(), h.headers, h.keep_alive))
            }
            Ok(Some(ResponseEvent::Data(d))) => {
                assert!(!d.is_empty());
                if let Some(Ev::Data(prev)) = events.last_mut() {
                    prev.extend_from_slice(&d);
                } else {
                    events.push(Ev::Data(d.to_vec()));
                }
            }
            Ok(Some(ResponseEvent::End(t))) => events.push(Ev::End(t)),
            Ok(None) => break,
            Err(e) => {
                events.push(Ev::Error(e));
                break;
            }
        }
    };
    drive(&mut conn, &mut events);
    for chunk in input.chunks(piece.max(1)) {
        conn.handle_data(chunk);
        drive(&mut conn, &mut events);
        let _ = conn.poll_transmit();
    }
    conn.handle_eof();
    drive(&mut conn, &mut events);
    events
}

fuzz_target!(|data: &[u8]| {
    let [first, methods, input @ ..] = data else {
        return;
    };
    let mut limits = Limits::default();
    if first & 0x80 != 0 {
        limits.max_head_size = 200;
        limits.max_headers = 6;
        limits.max_body_size = 300;
    }
    let piece = usize::from(first & 0x7f) + 1;
    let whole = run(&limits, *methods, input, input.len());
    let split = run(&limits, *methods, input, piece);
    assert_eq!(whole, split, "chunking changed the outcome");
});
