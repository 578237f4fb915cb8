//! Whatever a peer sends, nothing panics: the server adapter fed arbitrary bytes in
//! arbitrary pieces (with resources that stream, read bodies and answer late), and the
//! parsers of peer-controlled fields (`Range`, HTTP dates).

use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;
use twistor::protocol::{CloseReason, Protocol};
use twistor_http::server::{Render, Site, Tree, handler};
use twistor_http::static_files::{RangeRequest, parse_http_date, parse_range};
use twistor_testing::{Clock, StringTransport};

fn site(clock: &Clock) -> Site {
    let root = Tree::new();
    root.put_child("", handler(|_| "index".into()));
    root.put_child(
        "body",
        handler(|req| {
            let req2 = req.clone();
            req.read_body().consume(move |b| match b {
                Ok(b) => req2.respond(b),
                Err(_) => req2.finish(),
            });
            Render::Later
        }),
    );
    let k = clock.clone();
    root.put_child(
        "late",
        handler(move |req| {
            let req = req.clone();
            k.call_later(Duration::from_secs(1), move || {
                req.write("late ");
                req.finish();
            });
            Render::Later
        }),
    );
    Site::new(clock.as_time(), Rc::new(root))
}

/// Requests that get somewhere, for the fuzzer to splice.
const SEEDS: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    "POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "GET /late HTTP/1.0\r\n\r\n",
    "HEAD /late HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
];

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(SEEDS).prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ],
        1..6,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_server_never_panics(data in input(), cuts in prop::collection::vec(1usize..64, 1..20), lose in any::<bool>()) {
        let clock = Clock::new();
        let st = StringTransport::new();
        let t = st.transport();
        let mut p = site(&clock).connection(&t.peer());
        p.make_connection(&t);
        let mut rest = &data[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*cut).min(rest.len());
            p.data_received(&t, &rest[..n]);
            rest = &rest[n..];
            clock.advance(Duration::from_millis(300));
        }
        if lose {
            p.connection_lost(&CloseReason::Done);
        } else {
            p.read_connection_lost(&t);
        }
        clock.advance(Duration::from_secs(120));
        // Whatever was written starts with a status line.
        let out = st.value();
        prop_assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 "));
    }

    #[test]
    fn field_parsers_never_panic(text in ".{0,60}", size in any::<u64>(), max in 0usize..8) {
        match parse_range(&text, size, max) {
            RangeRequest::Ranges(ranges) => {
                for (first, last) in ranges {
                    prop_assert!(first <= last && last < size);
                }
            }
            RangeRequest::Full | RangeRequest::Unsatisfiable => {}
        }
        let _ = parse_http_date(&text);
    }

    #[test]
    fn range_specs_stay_inside(first in 0u64..2000, len in 0u64..2000, size in 0u64..1500) {
        let value = format!("bytes={first}-{}", first + len);
        if let RangeRequest::Ranges(r) = parse_range(&value, size, 4) {
            prop_assert_eq!(r, vec![(first, (first + len).min(size - 1))]);
        } else {
            prop_assert!(first >= size);
        }
    }
}
