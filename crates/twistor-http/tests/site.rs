//! The server adapter without sockets: a `Site` connection on a `StringTransport`, timers on
//! the test `Clock`. Routing, render kinds, pipelining order with late answers, bodies
//! both ways, 100-continue, HEAD, timeouts, producers and the access log.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use twistor::Transport;
use twistor::defer::{Deferred, Failure};
use twistor::protocol::{CloseReason, Protocol};
use twistor::transport::Producer;
use twistor_http::Bytes;
use twistor_http::http::Method;
use twistor_http::server::{
    Methods, Render, Request, Resource, ServerOptions, Site, Tree, handler,
};
use twistor_testing::{Clock, ProducerState, StringTransport};

fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(784_111_777)
}

const DATE: &str = "date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

fn options() -> ServerOptions {
    let mut o = ServerOptions::default();
    o.wall_clock = fixed_time;
    o.server_header = None;
    o
}

struct Conn {
    st: StringTransport,
    t: Transport,
    p: Box<dyn Protocol>,
}

impl Conn {
    fn new(site: &Site) -> Conn {
        let st = StringTransport::new();
        let t = st.transport();
        let mut p = site.connection(&t.peer());
        p.make_connection(&t);
        Conn { st, t, p }
    }

    fn send(&mut self, data: &str) {
        self.p.data_received(&self.t, data.as_bytes());
    }

    fn take(&self) -> String {
        String::from_utf8_lossy(&self.st.take()).into_owned()
    }
}

fn site_with(root: Rc<dyn Resource>) -> (Site, Clock) {
    let clock = Clock::new();
    (Site::with_options(clock.as_time(), root, options()), clock)
}

#[test]
fn handler_answers_with_length_date_and_server() {
    let clock = Clock::new();
    let site = Site::with_options(
        clock.as_time(),
        handler(|req| {
            req.set_header("content-type", "text/plain");
            "hello\n".into()
        }),
        {
            let mut o = ServerOptions::default();
            o.wall_clock = fixed_time;
            o
        },
    );
    let mut c = Conn::new(&site);
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let out = c.take();
    assert_eq!(
        out,
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nserver: twistor/{}\r\n{DATE}content-length: 6\r\n\r\nhello\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(!c.st.disconnecting());
}

#[test]
fn tree_routing_prepath_postpath_and_404() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let leaf = handler(move |req| {
        s.borrow_mut().push((
            req.prepath(),
            req.postpath(),
            req.postpath_raw().map(str::to_owned),
        ));
        "leaf".into()
    });
    let root = Rc::new(Tree::new());
    let sub = Rc::new(Tree::new());
    sub.put_child("leaf", leaf.clone());
    sub.put_child("", handler(|_| "sub index".into()));
    root.put_child("sub", sub);
    root.put_child("", handler(|_| "root index".into()));
    root.put_child("a b", handler(|_| "spaced".into()));
    let (site, _clock) = site_with(root);
    let mut c = Conn::new(&site);
    let body = |c: &mut Conn, path: &str| {
        c.send(&format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n"));
        let out = c.take();
        let status = out[9..12].to_owned();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    };
    assert_eq!(body(&mut c, "/"), ("200".into(), "root index".into()));
    assert_eq!(body(&mut c, "/sub/"), ("200".into(), "sub index".into()));
    assert_eq!(body(&mut c, "/a%20b"), ("200".into(), "spaced".into()));
    assert_eq!(
        body(&mut c, "/sub/leaf/x/y%2Fz?q=1"),
        ("200".into(), "leaf".into())
    );
    assert_eq!(body(&mut c, "/missing").0, "404");
    assert_eq!(body(&mut c, "/sub").0, "404");
    assert_eq!(
        seen.borrow()[0],
        (
            vec![b"sub".to_vec(), b"leaf".to_vec()],
            vec![b"x".to_vec(), b"y/z".to_vec()],
            Some("x/y%2Fz".to_owned())
        )
    );
}

#[test]
fn method_dispatch_and_405_with_allow() {
    struct Posty;
    impl Resource for Posty {
        fn is_leaf(&self) -> bool {
            true
        }
        fn render_post(&self, _request: &Request) -> Render {
            "posted".into()
        }
        fn allowed_methods(&self) -> Vec<Method> {
            vec![Method::POST]
        }
    }
    let (site, _clock) = site_with(Rc::new(Posty));
    let mut c = Conn::new(&site);
    c.send("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    let out = c.take();
    assert!(
        out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{out}"
    );
    assert!(out.contains("allow: POST\r\n"), "{out}");
    c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert!(c.take().ends_with("\r\n\r\nposted"));
}

#[test]
fn methods_derive_allow_and_options_from_what_they_render() {
    let posted = Rc::new(Cell::new(0));
    let p = posted.clone();
    let root = Tree::new();
    root.put_child(
        "post-only",
        Rc::new(Methods::new().post(move |_| {
            p.set(p.get() + 1);
            "posted".into()
        })),
    );
    root.put_child(
        "both",
        Rc::new(
            Methods::new()
                .get(|_| "got".into())
                .delete(|_| "deleted".into()),
        ),
    );
    let (site, _clock) = site_with(Rc::new(root));
    let mut c = Conn::new(&site);
    let mut ask = |method: &str, path: &str| {
        c.send(&format!(
            "{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
        ));
        c.take()
    };
    for method in ["GET", "HEAD", "PUT", "PATCH"] {
        let out = ask(method, "/post-only");
        assert!(out.starts_with("HTTP/1.1 405 "), "{method}: {out}");
        assert!(out.contains("allow: POST, OPTIONS\r\n"), "{method}: {out}");
    }
    let out = ask("OPTIONS", "/post-only");
    assert!(out.starts_with("HTTP/1.1 204 "), "{out}");
    assert!(out.contains("allow: POST, OPTIONS\r\n"), "{out}");
    assert_eq!(posted.get(), 0, "no method rendered to find the list");
    assert!(ask("POST", "/post-only").ends_with("\r\n\r\nposted"));
    assert_eq!(posted.get(), 1);

    let out = ask("POST", "/both");
    assert!(out.starts_with("HTTP/1.1 405 "), "{out}");
    assert!(
        out.contains("allow: GET, HEAD, DELETE, OPTIONS\r\n"),
        "{out}"
    );
    let out = ask("HEAD", "/both");
    assert!(out.starts_with("HTTP/1.1 200 ") && out.contains("content-length: 3\r\n"));
    assert!(out.ends_with("\r\n\r\n"), "no body for HEAD: {out}");
    assert!(ask("DELETE", "/both").ends_with("\r\n\r\ndeleted"));
    assert!(ask("OPTIONS", "/both").contains("allow: GET, HEAD, DELETE, OPTIONS\r\n"));
    assert!(ask("GET", "/both/below").starts_with("HTTP/1.1 404 "));
}

#[test]
fn pipelined_requests_wait_for_a_late_answer_and_keep_order() {
    let clock = Clock::new();
    let rendered = Rc::new(RefCell::new(Vec::new()));
    let (r, k) = (rendered.clone(), clock.clone());
    let root = handler(move |req| {
        r.borrow_mut().push(req.path().to_owned());
        if req.path() == "/slow" {
            let req = req.clone();
            k.call_later(Duration::from_secs(2), move || {
                req.write("slow ");
                req.write("done");
                req.finish();
            });
            Render::Later
        } else {
            format!("fast {}", req.path()).into()
        }
    });
    let site = Site::with_options(clock.as_time(), root, options());
    let mut c = Conn::new(&site);
    c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(*rendered.borrow(), ["/slow"], "later requests wait");
    assert_eq!(c.take(), "");
    clock.advance(Duration::from_secs(2));
    let out = c.take();
    assert_eq!(*rendered.borrow(), ["/slow", "/one", "/two"]);
    let slow = out.find("done\r\n0\r\n").expect(&out);
    let one = out.find("fast /one").unwrap();
    let two = out.find("fast /two").unwrap();
    assert!(slow < one && one < two, "{out}");
    assert!(out.starts_with(&format!(
        "HTTP/1.1 200 OK\r\n{DATE}transfer-encoding: chunked\r\n\r\n5\r\nslow \r\n4\r\ndone\r\n0\r\n\r\n"
    )));
}

#[test]
fn deferred_render_success_failure_and_panic() {
    let pending: Rc<RefCell<Vec<Deferred<Bytes>>>> = Rc::default();
    let p = pending.clone();
    let root = handler(move |req| match req.path() {
        "/panic" => panic!("boom"),
        _ => {
            let d = Deferred::new();
            p.borrow_mut().push(d.clone());
            Render::Deferred(d)
        }
    });
    let (site, _clock) = site_with(root);
    let mut c = Conn::new(&site);
    c.send("GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
    pending.borrow()[0]
        .callback(Bytes::from_static(b"later"))
        .unwrap();
    assert!(c.take().ends_with("content-length: 5\r\n\r\nlater"));
    c.send("GET /fail HTTP/1.1\r\nHost: a\r\n\r\n");
    pending.borrow()[1]
        .errback(Failure::msg("db down"))
        .unwrap();
    let out = c.take();
    assert!(
        out.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{out}"
    );
    assert!(!out.contains("db down"), "details stay in the log");
    c.send("GET /panic HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(c.take().starts_with("HTTP/1.1 500 "));
    c.send("GET /again HTTP/1.1\r\nHost: a\r\n\r\n");
    pending.borrow()[2]
        .callback(Bytes::from_static(b"fine"))
        .unwrap();
    assert!(
        c.take().ends_with("\r\n\r\nfine"),
        "connection still serves"
    );
}

#[test]
fn head_gets_length_without_body_and_http10_unknown_length_closes() {
    let root = handler(|req| {
        if req.path() == "/stream" {
            req.write("abc");
            req.finish();
            return Render::Later;
        }
        "twelve bytes".into()
    });
    let (site, _clock) = site_with(root);
    let mut c = Conn::new(&site);
    c.send("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        c.take(),
        format!("HTTP/1.1 200 OK\r\n{DATE}content-length: 12\r\n\r\n")
    );
    c.send("GET /stream HTTP/1.0\r\n\r\n");
    assert_eq!(
        c.take(),
        format!("HTTP/1.1 200 OK\r\n{DATE}connection: close\r\n\r\nabc")
    );
    assert!(c.st.disconnecting());
}

#[test]
fn chunked_upload_is_streamed_to_the_resource() {
    let got = Rc::new(RefCell::new(Vec::<Vec<u8>>::new()));
    let g = got.clone();
    let root = handler(move |req| {
        let (g, req2) = (g.clone(), req.clone());
        req.deliver_body(twistor_http::body::from_fn(
            move |piece| g.borrow_mut().push(piece.to_vec()),
            move |end| {
                assert!(end.unwrap().get("x-sum").is_some());
                req2.respond("thanks");
            },
        ));
        Render::Later
    });
    let (site, _clock) = site_with(root);
    let mut c = Conn::new(&site);
    c.send("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    assert_eq!(*got.borrow(), [b"hello".to_vec()]);
    c.send("6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n");
    assert_eq!(*got.borrow(), [b"hello".to_vec(), b" world".to_vec()]);
    assert!(c.take().ends_with("\r\n\r\nthanks"));
    assert!(!c.st.disconnecting());
}

#[test]
fn continue_is_sent_only_when_the_body_is_asked_for() {
    let root = handler(|req| {
        if req.path() == "/read" {
            let req2 = req.clone();
            req.read_body().consume(move |body| {
                req2.respond(format!("got {}", body.unwrap().len()));
            });
            Render::Later
        } else {
            "no thanks".into()
        }
    });
    let (site, _clock) = site_with(root);
    let mut c = Conn::new(&site);
    c.send("POST /read HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.take(), "HTTP/1.1 100 Continue\r\n\r\n");
    c.send("abcd");
    assert!(c.take().ends_with("\r\n\r\ngot 4"));
    c.send("POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let out = c.take();
    assert!(!out.contains("100 Continue"), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert!(c.st.write_closed(), "lingering close");
}

#[test]
fn unread_body_stops_reading_until_the_response_finishes_then_is_dropped() {
    let waiting: Rc<RefCell<Option<Request>>> = Rc::default();
    let w = waiting.clone();
    let root = handler(move |req| {
        if req.path() == "/later" {
            *w.borrow_mut() = Some(req.clone());
            Render::Later
        } else {
            "next".into()
        }
    });
    let (site, _clock) = site_with(root);
    let mut c = Conn::new(&site);
    c.send("POST /later HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(c.st.producer_state(), ProducerState::Paused);
    c.send("xyzGET /n HTTP/1.1\r\nHost: a\r\n\r\n");
    waiting.borrow().as_ref().unwrap().respond("first");
    let out = c.take();
    assert!(out.contains("\r\n\r\nfirst"), "{out}");
    assert!(out.ends_with("\r\n\r\nnext"), "{out}");
    assert_eq!(c.st.producer_state(), ProducerState::Producing);
}

#[test]
fn idle_timeout_closes_quietly() {
    let (site, clock) = site_with(handler(|_| "x".into()));
    let mut c = Conn::new(&site);
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    c.take();
    clock.advance(Duration::from_secs(59));
    assert!(!c.st.disconnecting());
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    c.take();
    clock.advance(Duration::from_secs(59));
    assert!(!c.st.disconnecting(), "a request restarts the idle clock");
    clock.advance(Duration::from_secs(1));
    assert!(c.st.disconnecting());
    assert_eq!(c.take(), "");
}

#[test]
fn header_timeout_is_not_extended_by_trickling_and_answers_408() {
    let (site, clock) = site_with(handler(|_| "x".into()));
    let mut c = Conn::new(&site);
    c.send("GET / HT");
    for _ in 0..29 {
        clock.advance(Duration::from_secs(1));
        c.send("T");
    }
    assert!(!c.st.disconnecting());
    clock.advance(Duration::from_secs(1));
    let out = c.take();
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
    assert!(c.st.write_closed(), "lingering close");
}

#[test]
fn body_timeout_answers_408_and_fails_the_receiver() {
    let ended = Rc::new(RefCell::new(None));
    let e = ended.clone();
    let root = handler(move |req| {
        let e = e.clone();
        req.deliver_body(twistor_http::body::from_fn(
            |_| {},
            move |end| {
                *e.borrow_mut() = Some(end.map(|_| ()));
            },
        ));
        Render::Later
    });
    let (site, clock) = site_with(root);
    let mut c = Conn::new(&site);
    c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    clock.advance(Duration::from_secs(59));
    c.send("d");
    clock.advance(Duration::from_secs(59));
    assert!(!c.st.disconnecting(), "each piece restarts the body clock");
    clock.advance(Duration::from_secs(1));
    assert!(c.take().starts_with("HTTP/1.1 408 "));
    assert!(c.st.write_closed(), "lingering close");
    assert_eq!(*ended.borrow(), Some(Err(twistor_http::Error::Timeout)));
}

#[test]
fn no_read_timer_while_the_application_owes_the_response() {
    let root = handler(|_| Render::Later);
    let (site, clock) = site_with(root);
    let mut c = Conn::new(&site);
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    clock.advance(Duration::from_secs(3600));
    assert!(!c.st.disconnecting());
}

#[test]
fn notify_finish_fails_when_the_client_goes_and_writes_are_ignored() {
    let kept: Rc<RefCell<Option<Request>>> = Rc::default();
    let outcome = Rc::new(RefCell::new(None));
    let (k, o) = (kept.clone(), outcome.clone());
    let root = handler(move |req| {
        *k.borrow_mut() = Some(req.clone());
        let o = o.clone();
        req.notify_finish()
            .consume(move |r| *o.borrow_mut() = Some(r.is_ok()));
        Render::Later
    });
    let (site, _clock) = site_with(root);
    let mut c = Conn::new(&site);
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    c.p.connection_lost(&CloseReason::Done);
    assert_eq!(*outcome.borrow(), Some(false));
    let req = kept.borrow().clone().unwrap();
    assert!(req.lost());
    req.write("ignored");
    req.finish();
    assert_eq!(c.take(), "");
}

#[test]
fn pull_producer_streams_a_body_and_is_unregistered_at_the_end() {
    struct Counter {
        req: Request,
        left: Cell<u32>,
    }
    impl Producer for Counter {
        fn pause_producing(&self) {}
        fn resume_producing(&self) {
            let n = self.left.get();
            if n == 0 {
                self.req.finish();
                return;
            }
            self.left.set(n - 1);
            self.req.write(format!("piece {n}\n"));
        }
        fn stop_producing(&self) {}
    }
    let root = handler(|req| {
        req.set_content_length(24);
        req.register_producer(
            Counter {
                req: req.clone(),
                left: Cell::new(3),
            },
            false,
        )
        .unwrap();
        Render::Later
    });
    let (site, _clock) = site_with(root);
    let mut c = Conn::new(&site);
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.st.registered_producer(), Some(false));
    // The StringTransport does not drive producers; act as the consumer would.
    for _ in 0..4 {
        if let Some(p) = c.st.producer() {
            p.resume_producing();
        }
    }
    assert_eq!(c.st.registered_producer(), None);
    assert!(
        c.take()
            .ends_with("content-length: 24\r\n\r\npiece 3\npiece 2\npiece 1\n")
    );
}

#[test]
fn access_log_lines_in_combined_format_including_refusals() {
    let lines = Rc::new(RefCell::new(Vec::<String>::new()));
    let l = lines.clone();
    let mut opts = options();
    opts.access_log = Some(Rc::new(move |line: &str| {
        l.borrow_mut().push(line.to_owned())
    }));
    let clock = Clock::new();
    let site = Site::with_options(clock.as_time(), handler(|_| "0123456789".into()), opts);
    let mut c = Conn::new(&site);
    c.send(
        "GET /x?y=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: test\"agent\r\nReferer: http://r/\r\n\r\n",
    );
    c.send("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n");
    assert_eq!(
        *lines.borrow(),
        [
            "192.168.1.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /x?y=1 HTTP/1.1\" 200 10 \"http://r/\" \"test\\\"agent\"",
            "192.168.1.1 - - [06/Nov/1994:08:49:37 +0000] \"-\" 400 - \"-\" \"-\"",
        ]
    );
}

#[test]
fn refused_request_gets_its_status_and_the_connection_closes() {
    let (site, _clock) = site_with(handler(|_| "x".into()));
    for (input, status) in [
        (
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400",
        ),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "505"),
        ("GET / HTTP/1.1\r\n\r\n", "400"),
    ] {
        let mut c = Conn::new(&site);
        c.send(input);
        let out = c.take();
        assert_eq!(&out[9..12], status, "{input:?}: {out}");
        assert!(c.st.write_closed(), "lingering close");
    }
}

thread_local! {
    /// The wall clock of `moving_time`, in seconds since the epoch.
    static WALL: Cell<u64> = const { Cell::new(784_111_777) };
}

fn moving_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(WALL.with(Cell::get))
}

/// A site whose `/slow` handler takes five seconds of reactor and wall time to answer.
fn slow_site() -> (Site, Clock) {
    let clock = Clock::new();
    let c2 = clock.clone();
    let mut o = options();
    o.wall_clock = moving_time;
    let site = Site::with_options(
        clock.as_time(),
        handler(move |req| {
            if req.path() == "/slow" {
                c2.advance(Duration::from_secs(5));
                WALL.with(|w| w.set(w.get() + 5));
            }
            "x".into()
        }),
        o,
    );
    (site, clock)
}

#[test]
fn date_is_read_when_the_response_starts_not_when_its_request_arrived() {
    let (site, _clock) = slow_site();
    let mut c = Conn::new(&site);
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(c.take().contains(DATE));
    c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
    let out = c.take();
    assert!(
        out.contains("date: Sun, 06 Nov 1994 08:49:42 GMT\r\n"),
        "{out}"
    );
}

#[test]
fn idle_timeout_counts_from_the_end_of_a_slow_response() {
    let (site, clock) = slow_site();
    let mut c = Conn::new(&site);
    c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
    c.take();
    clock.advance(Duration::from_secs(59));
    assert!(
        !c.st.disconnecting(),
        "the idle clock starts when the response is done, five seconds after the request"
    );
    clock.advance(Duration::from_secs(1));
    assert!(c.st.disconnecting());
}

#[test]
fn a_malformed_chunked_trailer_is_a_400() {
    let root = handler(|req| {
        let r = req.clone();
        req.read_body().consume(move |body| {
            if let Ok(b) = body {
                r.respond(format!("got {}", b.len()));
            }
        });
        Render::Later
    });
    let (site, _clock) = site_with(root);
    for trailer in [
        "bad trailer line\r\n\r\n",
        "x-a: 1\r\nno colon\r\n\r\n",
        " folded: x\r\n\r\n",
        "x-a: 1\n\r\n",
    ] {
        let mut c = Conn::new(&site);
        c.send(&format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n{trailer}"
        ));
        let out = c.take();
        assert!(out.starts_with("HTTP/1.1 400 "), "{trailer:?}: {out:?}");
        assert!(c.st.write_closed(), "lingering close");
    }
}
