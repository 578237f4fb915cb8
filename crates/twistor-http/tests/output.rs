//! The server's bounds on what it sends and how it closes, without sockets: a client that
//! pipelines and never reads, the send timeout, the lingering close after an error, and
//! draining a site for shutdown. The transport here keeps what is written "unsent" until
//! the test says the client read it, and resumes a streaming producer as the engine's
//! transports do; timers run on the test `Clock`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use twistor::protocol::{CloseReason, Protocol};
use twistor::transport::{DEFAULT_HIGH_WATER_MARK, Producer, TransportImpl};
use twistor::{Address, Transport};
use twistor_http::Bytes;
use twistor_http::server::{Render, Request, ServerOptions, Site, handler};
use twistor_testing::Clock;

/// A transport whose written bytes stay buffered until [`SlowClient::read`].
#[derive(Default)]
struct Slow {
    out: RefCell<Vec<u8>>,
    producer: RefCell<Option<(Rc<dyn Producer>, bool)>>,
    paused: Cell<bool>,
    reading: Cell<bool>,
    closing: Cell<bool>,
    aborted: Cell<bool>,
    write_shut: Cell<bool>,
}

impl TransportImpl for Slow {
    fn write(&self, data: &[u8]) {
        if self.aborted.get() || self.write_shut.get() {
            return;
        }
        self.out.borrow_mut().extend_from_slice(data);
        let over = self.out.borrow().len() > DEFAULT_HIGH_WATER_MARK;
        let producer = self.producer.borrow().clone();
        if over
            && let Some((p, true)) = producer
            && !self.paused.replace(true)
        {
            p.pause_producing();
        }
    }
    fn lose_connection(&self) {
        self.closing.set(true);
    }
    fn abort_connection(&self) {
        self.aborted.set(true);
        self.closing.set(true);
    }
    fn lose_write_connection(&self) {
        self.write_shut.set(true);
    }
    fn peer(&self) -> Address {
        Address::Tcp("192.0.2.1:4000".parse().unwrap())
    }
    fn host(&self) -> Address {
        Address::Tcp("192.0.2.2:80".parse().unwrap())
    }
    fn disconnecting(&self) -> bool {
        self.closing.get()
    }
    fn buffered(&self) -> usize {
        self.out.borrow().len()
    }
    fn pause_producing(&self) {
        self.reading.set(false);
    }
    fn resume_producing(&self) {
        self.reading.set(true);
    }
    fn register_producer(
        &self,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), twistor::Error> {
        let producer: Rc<dyn Producer> = Rc::from(producer);
        *self.producer.borrow_mut() = Some((producer.clone(), streaming));
        let over = self.out.borrow().len() > DEFAULT_HIGH_WATER_MARK;
        self.paused.set(streaming && over);
        if streaming && over {
            producer.pause_producing();
        } else if !streaming {
            producer.resume_producing();
        }
        Ok(())
    }
    fn unregister_producer(&self) {
        self.producer.borrow_mut().take();
        self.paused.set(false);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct SlowClient {
    slow: Rc<Slow>,
    t: Transport,
    p: Box<dyn Protocol>,
}

impl SlowClient {
    fn new(site: &Site) -> SlowClient {
        let slow = Rc::new(Slow {
            reading: Cell::new(true),
            ..Slow::default()
        });
        let t = Transport::new(slow.clone());
        let mut p = site.connection(&t.peer());
        p.make_connection(&t);
        SlowClient { slow, t, p }
    }

    fn send(&mut self, data: &[u8]) {
        self.p.data_received(&self.t, data);
    }

    fn unsent(&self) -> usize {
        self.slow.out.borrow().len()
    }

    /// The client reads `n` bytes; the transport resumes a paused streaming producer at
    /// half the mark, as the engine's do.
    fn read(&self, n: usize) -> Vec<u8> {
        let taken: Vec<u8> = {
            let mut out = self.slow.out.borrow_mut();
            let n = n.min(out.len());
            out.drain(..n).collect()
        };
        let producer = self.slow.producer.borrow().clone();
        if let Some((p, streaming)) = producer {
            let low = self.unsent() <= DEFAULT_HIGH_WATER_MARK / 2;
            if streaming && self.slow.paused.get() && low {
                self.slow.paused.set(false);
                p.resume_producing();
            } else if !streaming && self.unsent() == 0 {
                p.resume_producing();
            }
        }
        taken
    }
}

/// A site whose every `GET` renders a 20,000-byte page, counting renders.
fn big_pages(clock: &Clock, options: ServerOptions) -> (Site, Rc<Cell<usize>>) {
    let rendered = Rc::new(Cell::new(0));
    let r = rendered.clone();
    let page = Bytes::from(vec![b'x'; 20_000]);
    let root = handler(move |_req| {
        r.set(r.get() + 1);
        Render::Body(page.clone())
    });
    (Site::with_options(clock.as_time(), root, options), rendered)
}

/// Lets `secs` seconds pass one at a time, as a real clock would, so each timer fires at
/// its own time.
fn pass(clock: &Clock, secs: u64) {
    for _ in 0..secs {
        clock.advance(Duration::from_secs(1));
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn an_unread_pipeline_stops_at_the_high_water_mark_and_resumes_as_the_client_reads() {
    let clock = Clock::new();
    let (site, rendered) = big_pages(&clock, ServerOptions::default());
    let mut c = SlowClient::new(&site);
    c.send(&GET.repeat(100));
    // 4 × 20 kB passes the 64 KiB mark: the fifth request waits.
    assert_eq!(rendered.get(), 4);
    let held = c.unsent();
    assert!(held < DEFAULT_HIGH_WATER_MARK + 21_000, "{held}");
    // More requests arriving change nothing while the client does not read.
    c.send(&GET.repeat(100));
    assert_eq!(rendered.get(), 4);
    assert!(c.slow.reading.get(), "the pipeline buffer is not full yet");
    // The client reads down to half the mark: the next requests start.
    c.read(50_000);
    assert_eq!(rendered.get(), 6);
    let mut answered = 0;
    while rendered.get() < 200 {
        let before = rendered.get();
        answered += c.read(usize::MAX).len();
        assert!(rendered.get() > before, "reading resumes the pipeline");
        assert!(c.unsent() < DEFAULT_HIGH_WATER_MARK + 21_000);
    }
    assert!(answered > 190 * 20_000);
    assert!(!c.slow.closing.get());
}

#[test]
fn reading_stops_when_the_waiting_requests_fill_the_pipeline_buffer() {
    let clock = Clock::new();
    let (site, rendered) = big_pages(&clock, ServerOptions::default());
    let mut c = SlowClient::new(&site);
    // 3 MB of requests, as the attack sent, in reads of 64 KiB.
    let requests = GET.repeat(3_000_000 / GET.len());
    for piece in requests.chunks(64 * 1024) {
        if c.slow.reading.get() {
            c.send(piece);
        }
    }
    assert!(!c.slow.reading.get(), "reading paused");
    assert_eq!(rendered.get(), 4);
    assert!(c.unsent() < DEFAULT_HIGH_WATER_MARK + 21_000);
}

#[test]
fn a_client_that_stops_reading_is_dropped_at_the_send_timeout() {
    let clock = Clock::new();
    let (site, rendered) = big_pages(&clock, ServerOptions::default());
    let mut c = SlowClient::new(&site);
    c.send(&GET.repeat(20));
    assert_eq!(rendered.get(), 4);
    // Reading a little at a time counts as reading: the clock starts again.
    for _ in 0..4 {
        pass(&clock, 50);
        c.read(1000);
        assert!(!c.slow.closing.get());
    }
    // Then nothing for 60 s: the server looks every 15 s, so it notices within 75 s.
    pass(&clock, 59);
    assert!(!c.slow.closing.get());
    pass(&clock, 16);
    assert!(c.slow.aborted.get(), "dropped, not waiting to flush");
    assert_eq!(rendered.get(), 4);
}

#[test]
fn the_send_timeout_is_an_option_and_covers_a_response_in_flight() {
    let clock = Clock::new();
    let mut options = ServerOptions::default();
    options.send_timeout = Duration::from_secs(8);
    let kept: Rc<RefCell<Option<Request>>> = Rc::default();
    let k = kept.clone();
    let root = handler(move |req| {
        // A response written without a producer, by a resource that never stops.
        req.write(vec![b'y'; 100_000]);
        *k.borrow_mut() = Some(req.clone());
        Render::Later
    });
    let site = Site::with_options(clock.as_time(), root, options);
    let mut c = SlowClient::new(&site);
    c.send(GET);
    let request = kept.borrow().clone().unwrap();
    // Looks come every 2 s; the first sees output waiting since some time unknown and
    // starts the count. Writing more is not the client reading.
    pass(&clock, 2);
    request.write(vec![b'y'; 1000]);
    pass(&clock, 7);
    assert!(!c.slow.closing.get());
    pass(&clock, 3);
    assert!(c.slow.aborted.get());
    assert!(request.lost());
    let failure = request.notify_finish().try_result().unwrap().unwrap_err();
    assert_eq!(
        failure.find::<twistor_http::Error>(),
        Some(&twistor_http::Error::ConnectionLost(
            twistor_http::error::Lost::TimedOut
        ))
    );
}

#[test]
fn an_error_response_lingers_until_the_client_is_quiet() {
    let clock = Clock::new();
    let mut options = ServerOptions::default();
    options.limits.max_body_size = 10;
    let site = Site::with_options(clock.as_time(), handler(|_| "ok".into()), options);
    let mut c = SlowClient::new(&site);
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nxxxx");
    let out = String::from_utf8(c.read(usize::MAX)).unwrap();
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    assert!(c.slow.write_shut.get(), "our side is shut");
    assert!(!c.slow.closing.get(), "but the connection is still read");
    assert!(c.slow.reading.get());
    // The client goes on sending for a while; all of it is dropped.
    for _ in 0..4 {
        pass(&clock, 4);
        c.send(&[b'x'; 10_000]);
        assert!(!c.slow.closing.get());
    }
    // Five quiet seconds end it.
    pass(&clock, 5);
    assert!(c.slow.closing.get());
    assert_eq!(c.unsent(), 0, "nothing more was sent");
}

#[test]
fn lingering_ends_after_its_total_time_or_when_the_client_closes() {
    let clock = Clock::new();
    let mut options = ServerOptions::default();
    options.limits.max_body_size = 10;
    let site = Site::with_options(clock.as_time(), handler(|_| "ok".into()), options);
    let big = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n";
    let mut c = SlowClient::new(&site);
    c.send(big);
    for _ in 0..29 {
        pass(&clock, 1);
        c.send(b"x");
    }
    assert!(!c.slow.closing.get());
    pass(&clock, 1);
    assert!(c.slow.aborted.get(), "30 s of lingering at most");

    let mut c = SlowClient::new(&site);
    c.send(big);
    assert!(c.slow.write_shut.get());
    c.p.read_connection_lost(&c.t);
    assert!(c.slow.closing.get() && !c.slow.aborted.get());
}

#[test]
fn a_draining_site_closes_idle_connections_and_finishes_those_in_flight() {
    let clock = Clock::new();
    let kept: Rc<RefCell<Option<Request>>> = Rc::default();
    let k = kept.clone();
    let root = handler(move |req| {
        if req.path() == "/slow" {
            *k.borrow_mut() = Some(req.clone());
            return Render::Later;
        }
        "quick".into()
    });
    let site = Site::with_options(clock.as_time(), root, ServerOptions::default());
    let mut idle = SlowClient::new(&site);
    idle.send(GET);
    idle.read(usize::MAX);
    let mut busy = SlowClient::new(&site);
    busy.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");

    let drained = site.drain();
    assert!(site.draining());
    assert!(idle.slow.closing.get(), "an idle connection closes at once");
    assert!(!busy.slow.closing.get(), "a response in flight goes on");
    idle.p.connection_lost(&CloseReason::Done);
    assert!(drained.try_result().is_none(), "one connection is left");

    let request = kept.borrow().clone().unwrap();
    request.respond("done");
    let out = String::from_utf8(busy.read(usize::MAX)).unwrap();
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert!(
        out.ends_with("\r\n\r\ndone"),
        "the pipelined request is not started: {out}"
    );
    assert!(busy.slow.closing.get());
    busy.p.connection_lost(&CloseReason::Done);
    assert!(matches!(drained.try_result(), Some(Ok(()))));

    // A connection made while draining is closed at once.
    let late = SlowClient::new(&site);
    assert!(late.slow.closing.get());
}

#[test]
fn draining_a_site_without_connections_is_done_at_once() {
    let clock = Clock::new();
    let site = Site::new(clock.as_time(), handler(|_| "x".into()));
    assert!(matches!(site.drain().try_result(), Some(Ok(()))));
}

#[test]
fn a_lost_request_says_how_as_a_value() {
    use twistor_http::Error;
    use twistor_http::error::Lost;
    let clock = Clock::new();
    let kept: Rc<RefCell<Vec<Request>>> = Rc::default();
    let k = kept.clone();
    let root = handler(move |req| {
        k.borrow_mut().push(req.clone());
        Render::Later
    });
    let site = Site::with_options(clock.as_time(), root, ServerOptions::default());
    let reasons = [
        CloseReason::Done,
        CloseReason::Lost(twistor::Error::ShuttingDown),
    ];
    for reason in reasons {
        let mut c = SlowClient::new(&site);
        c.send(GET);
        let finished = kept.borrow().last().unwrap().notify_finish();
        c.p.connection_lost(&reason);
        let failure = finished.try_result().unwrap().unwrap_err();
        let err = failure.find::<Error>().unwrap();
        match reason {
            CloseReason::Done => assert_eq!(err, &Error::ConnectionLost(Lost::Closed)),
            _ => {
                assert!(
                    matches!(
                        err,
                        Error::ConnectionLost(Lost::Failed(twistor::Error::ShuttingDown))
                    ),
                    "{err:?}"
                );
                let source = std::error::Error::source(err).unwrap();
                assert!(source.downcast_ref::<twistor::Error>().is_some());
            }
        }
    }
}
