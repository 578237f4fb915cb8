//! Draining a site for a graceful shutdown, over real sockets: an idle keep-alive
//! connection closes at once, a response in flight finishes with `Connection: close`, and
//! the drain's Deferred fires once both are gone.

mod support;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Server, connect, field, read_response};
use twistor_http::server::{Render, Request, Site, handler};

thread_local! {
    /// The site, on the reactor thread that serves it.
    static SITE: RefCell<Option<Site>> = const { RefCell::new(None) };
    /// The slow request, answered when the test says so.
    static SLOW: RefCell<Option<Request>> = const { RefCell::new(None) };
}

/// Reads until the server closes; true if it did within the read timeout.
fn closes(s: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    matches!(s.read(&mut buf), Ok(0))
}

#[test]
fn a_drained_site_closes_idle_connections_and_finishes_responses_in_flight() {
    let server = Server::start(|reactor| {
        let root = handler(move |req| {
            if req.path() == "/slow" {
                SLOW.with(|s| *s.borrow_mut() = Some(req.clone()));
                return Render::Later;
            }
            "quick".into()
        });
        let site = Site::new(reactor.clone(), root);
        SITE.with(|s| *s.borrow_mut() = Some(site.clone()));
        site
    });
    let mut idle = connect(server.port);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut idle);
    assert!(head.starts_with("HTTP/1.1 200 "));
    let mut busy = connect(server.port);
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    // Once the slow request is being answered (a connection whose request has not been
    // read yet is idle, and would be closed at once).
    let deadline = Instant::now() + Duration::from_secs(5);
    let drained = Arc::new(AtomicBool::new(false));
    loop {
        let d = drained.clone();
        let started = server.on_reactor(move |_| {
            SITE.with(|s| {
                let site = s.borrow().clone().unwrap();
                let ready = site.connection_count() == 2 && SLOW.with(|s| s.borrow().is_some());
                if ready {
                    site.drain()
                        .consume(move |r| d.store(r.is_ok(), Ordering::SeqCst));
                }
                ready
            })
        });
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "the connections never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(closes(&mut idle), "the idle connection closes at once");
    assert!(
        !drained.load(Ordering::SeqCst),
        "a response is still in flight"
    );
    // Now the slow response is ready.
    server.on_reactor(|_| SLOW.with(|s| s.borrow_mut().take().unwrap().respond("slow")));
    let (head, body) = read_response(&mut busy);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(field(&head, "connection").as_deref(), Some("close"));
    assert_eq!(body, b"slow");
    assert!(closes(&mut busy), "the pipelined request was not started");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !drained.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the drain never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
}
