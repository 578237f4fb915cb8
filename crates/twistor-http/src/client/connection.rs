//! One client connection: the `Protocol` that drives the sans-IO [`ClientConnection`] for
//! one exchange at a time, hands the response head to a Deferred and its body to a
//! receiver, and gives the connection back to the pool when the exchange is over.
//!
//! As on the server, no `RefCell` here is borrowed while user code runs.

use std::cell::{OnceCell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use twistor::defer::{Deferred, Failure};
use twistor::protocol::{CloseReason, Protocol};
use twistor::reactor::DelayedCall;
use twistor::{Producer, ReactorTime, Transport};

use super::pool::{Pool, PoolKey};
use super::{Body, BodyWriter};
use crate::Error;
use crate::body::BodyReceiver;
use crate::error::Lost;
use crate::proto::{BodySize, ClientConnection, Framing, Limits, ResponseEvent, ResponseHead};
use crate::sink::Sink;

/// The protocol of a pooled connection.
pub(crate) struct ClientProtocol {
    pub(crate) conn: Rc<Conn>,
}

impl Protocol for ClientProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        let _ = self.conn.transport.set(transport.clone());
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        {
            let mut st = self.conn.st.borrow_mut();
            st.got_bytes = true;
            st.last_progress = self.conn.time.seconds();
        }
        self.conn.core.borrow_mut().handle_data(data);
        self.conn.process();
    }

    fn read_connection_lost(&mut self, transport: &Transport) {
        self.conn.core.borrow_mut().handle_eof();
        self.conn.process();
        // The server will send nothing more; what we owe it does not matter any more.
        transport.lose_connection();
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.conn.lost(reason);
    }
}

#[derive(Default)]
pub(crate) struct State {
    /// The head's Deferred, until the head arrives.
    response: Option<Deferred<(ResponseHead, ResponseBody)>>,
    sink: Sink,
    busy: bool,
    request_done: bool,
    response_done: bool,
    body_empty: bool,
    paused: bool,
    reading_paused: bool,
    processing: bool,
    again: bool,
    closed: bool,
    /// A response byte has arrived on this connection (so a failure is not a stale
    /// keep-alive connection that the server closed).
    pub(crate) got_bytes: bool,
    /// Exchanges completed on this connection.
    pub(crate) served: u32,
    last_progress: f64,
    timer: Option<DelayedCall>,
    idle_timer: Option<DelayedCall>,
    /// Increments per exchange, so a stale body handle cannot touch a later one.
    generation: u64,
}

/// One connection to a server, owned by the pool.
pub(crate) struct Conn {
    pub(crate) key: PoolKey,
    core: RefCell<ClientConnection>,
    pub(crate) transport: OnceCell<Transport>,
    pub(crate) st: RefCell<State>,
    time: Rc<dyn ReactorTime>,
    timeout: Option<Duration>,
    pool: Weak<Pool>,
    me: Weak<Conn>,
}

impl Conn {
    pub(crate) fn new(
        key: PoolKey,
        limits: Limits,
        time: Rc<dyn ReactorTime>,
        timeout: Option<Duration>,
        pool: Weak<Pool>,
    ) -> Rc<Conn> {
        Rc::new_cyclic(|me| Conn {
            key,
            core: RefCell::new(ClientConnection::new(limits)),
            transport: OnceCell::new(),
            st: RefCell::new(State::default()),
            time,
            timeout,
            pool,
            me: me.clone(),
        })
    }

    /// Whether a new request may go out on this connection.
    pub(crate) fn is_usable(&self) -> bool {
        let st = self.st.borrow();
        !st.closed
            && !st.busy
            && self.transport.get().is_some_and(|t| !t.disconnecting())
            && self.core.borrow().is_reusable()
    }

    /// Sends a request; the Deferred fires with the response head and a handle on its
    /// body, or fails.
    pub(crate) fn request(
        &self,
        request: Request<()>,
        body: Body,
    ) -> Deferred<(ResponseHead, ResponseBody)> {
        let d = Deferred::new();
        let Some(transport) = self.transport.get().cloned() else {
            let _ = d.errback(Failure::new(Error::Closed));
            return d;
        };
        self.cancel_idle_timer();
        {
            let mut st = self.st.borrow_mut();
            st.busy = true;
            st.response = Some(d.clone());
            st.sink = Sink::Idle;
            st.request_done = false;
            st.response_done = false;
            st.body_empty = false;
            st.paused = false;
            st.got_bytes = false;
            st.generation += 1;
            st.last_progress = self.time.seconds();
        }
        let size = match &body {
            Body::Empty => BodySize::Empty,
            Body::Bytes(b) if b.is_empty() => BodySize::Empty,
            Body::Bytes(b) => BodySize::Length(b.len() as u64),
            Body::Stream(s) => s.length.map_or(BodySize::Unknown, BodySize::Length),
        };
        let sent = self.core.borrow_mut().send_request(request, size);
        if let Err(e) = sent {
            self.fail(e);
            return d;
        }
        self.arm_timer();
        match body {
            Body::Empty => self.finish_request(),
            Body::Bytes(b) => {
                let r = self.core.borrow_mut().send_data(&b);
                if let Err(e) = r {
                    self.fail(e);
                    return d;
                }
                self.finish_request();
            }
            Body::Stream(stream) => {
                self.flush_out();
                let generation = self.st.borrow().generation;
                (stream.start)(BodyWriter {
                    conn: self.me.clone(),
                    generation,
                    transport,
                });
            }
        }
        d
    }

    fn current(&self, generation: u64) -> bool {
        let st = self.st.borrow();
        st.busy && st.generation == generation && !st.closed
    }

    pub(crate) fn write_body(&self, generation: u64, data: &[u8]) {
        if !self.current(generation) || self.st.borrow().request_done {
            return;
        }
        let r = self.core.borrow_mut().send_data(data);
        match r {
            Ok(()) => self.flush_out(),
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn finish_body(&self, generation: u64) {
        if self.current(generation) && !self.st.borrow().request_done {
            self.finish_request();
        }
    }

    pub(crate) fn fail_body(&self, generation: u64, why: String) {
        if self.current(generation) {
            self.fail(Error::ConnectionLost(Lost::BodyFailed(why)));
        }
    }

    fn finish_request(&self) {
        let r = self.core.borrow_mut().finish(None);
        if let Err(e) = r {
            self.fail(e);
            return;
        }
        self.st.borrow_mut().request_done = true;
        self.flush_out();
        self.process();
    }

    fn flush_out(&self) {
        let Some(transport) = self.transport.get() else {
            return;
        };
        loop {
            let bytes = self.core.borrow_mut().poll_transmit();
            match bytes {
                Some(b) => transport.write(&b),
                None => break,
            }
        }
    }

    fn process(&self) {
        {
            let mut st = self.st.borrow_mut();
            if st.processing {
                st.again = true;
                return;
            }
            st.processing = true;
        }
        loop {
            let blocked = {
                let st = self.st.borrow();
                st.paused || (st.sink.unclaimed() && !st.body_empty)
            };
            let event = if blocked {
                Ok(None)
            } else {
                self.core.borrow_mut().poll_event()
            };
            match event {
                Ok(Some(ResponseEvent::Interim(_))) => {}
                Ok(Some(ResponseEvent::Head(head))) => self.head(head),
                Ok(Some(ResponseEvent::Data(data))) => self.body_data(data),
                Ok(Some(ResponseEvent::End(trailers))) => {
                    // The connection goes back to the pool before the receiver hears of
                    // the end, so a request made from its callback can reuse it.
                    let receiver = self.st.borrow_mut().sink.end(Ok(trailers));
                    self.st.borrow_mut().response_done = true;
                    self.maybe_done();
                    if let Some((mut receiver, result)) = receiver {
                        receiver.body_finished(result);
                    }
                }
                Ok(None) => {
                    let mut st = self.st.borrow_mut();
                    if !st.again {
                        break;
                    }
                    st.again = false;
                }
                Err(e) => {
                    self.st.borrow_mut().processing = false;
                    self.fail(e);
                    return;
                }
            }
        }
        self.st.borrow_mut().processing = false;
        self.flush_out();
        self.update_reading();
        self.maybe_done();
    }

    fn head(&self, head: ResponseHead) {
        let (d, generation) = {
            let mut st = self.st.borrow_mut();
            st.sink = Sink::Unclaimed;
            st.body_empty = head.framing == Framing::Empty;
            (st.response.take(), st.generation)
        };
        let body = ResponseBody {
            conn: self.me.clone(),
            generation,
            empty: head.framing == Framing::Empty,
        };
        match d {
            Some(d) => {
                let _ = d.callback((head, body));
            }
            None => drop(body),
        }
    }

    fn body_data(&self, data: Bytes) {
        let receiver = self.st.borrow_mut().sink.take_receiver();
        if let Some(mut receiver) = receiver {
            receiver.data_received(data);
            self.st.borrow_mut().sink.put_back(receiver);
        }
    }

    fn body_end(&self, result: Result<HeaderMap, Error>) {
        let receiver = self.st.borrow_mut().sink.end(result);
        if let Some((mut receiver, result)) = receiver {
            receiver.body_finished(result);
        }
    }

    pub(crate) fn deliver_body(&self, generation: u64, receiver: Box<dyn BodyReceiver>) {
        let ended = {
            let mut st = self.st.borrow_mut();
            if st.generation != generation {
                Some((receiver, Err(Error::InvalidState("this response is over"))))
            } else {
                st.sink.claim(receiver)
            }
        };
        if let Some((mut receiver, result)) = ended {
            receiver.body_finished(result);
            return;
        }
        self.process();
    }

    /// The response's handle was dropped without asking for the body.
    pub(crate) fn body_dropped(&self, generation: u64) {
        let abandon = {
            let mut st = self.st.borrow_mut();
            if st.generation != generation {
                return;
            }
            match st.sink {
                Sink::Unclaimed => {
                    st.sink = Sink::Done;
                    // An empty body still ends on its own; anything else would have to be
                    // read for nothing: close instead.
                    !st.body_empty
                }
                Sink::Ended(_) => {
                    st.sink = Sink::Done;
                    false
                }
                _ => false,
            }
        };
        if abandon {
            self.abort();
        } else {
            self.process();
        }
    }

    pub(crate) fn set_paused(&self, generation: u64, paused: bool) {
        {
            let mut st = self.st.borrow_mut();
            if st.generation != generation || st.paused == paused {
                return;
            }
            st.paused = paused;
            if !paused {
                st.last_progress = self.time.seconds();
            }
        }
        if paused {
            self.update_reading();
        } else {
            self.process();
        }
    }

    fn update_reading(&self) {
        let Some(transport) = self.transport.get() else {
            return;
        };
        let want = {
            let st = self.st.borrow();
            !(st.paused || (st.sink.unclaimed() && !st.body_empty))
        };
        let mut st = self.st.borrow_mut();
        if st.reading_paused == want {
            st.reading_paused = !want;
            drop(st);
            if want {
                transport.resume_producing();
            } else {
                transport.pause_producing();
            }
        }
    }

    /// The exchange is over when the request is sent and the response read: give the
    /// connection back to the pool, or close it.
    fn maybe_done(&self) {
        let over = {
            let st = self.st.borrow();
            st.busy && st.request_done && st.response_done && !st.closed
        };
        if !over {
            return;
        }
        {
            let mut st = self.st.borrow_mut();
            st.busy = false;
            st.served += 1;
            st.sink = Sink::Idle;
            if let Some(t) = st.timer.take()
                && t.active()
            {
                let _ = t.cancel();
            }
        }
        let reusable = self.core.borrow().is_reusable();
        let (Some(pool), Some(me)) = (self.pool.upgrade(), self.me.upgrade()) else {
            return;
        };
        if reusable {
            pool.release(me);
        } else {
            self.close();
        }
    }

    /// Ends the exchange in progress with `err` and closes the connection.
    fn fail(&self, err: Error) {
        let (d, receiving) = {
            let mut st = self.st.borrow_mut();
            let receiving = matches!(st.sink, Sink::Receiver(_) | Sink::Unclaimed);
            (st.response.take(), receiving)
        };
        if let Some(d) = d {
            let _ = d.errback(Failure::new(err.clone()));
        }
        if receiving {
            self.body_end(Err(err));
        }
        self.abort();
    }

    pub(crate) fn close(&self) {
        self.st.borrow_mut().closed = true;
        if let Some(t) = self.transport.get() {
            t.lose_connection();
        }
    }

    fn abort(&self) {
        self.st.borrow_mut().closed = true;
        if let Some(t) = self.transport.get() {
            t.abort_connection();
        }
    }

    fn lost(&self, reason: &CloseReason) {
        let (busy, timers) = {
            let mut st = self.st.borrow_mut();
            st.closed = true;
            (st.busy, [st.timer.take(), st.idle_timer.take()])
        };
        for t in timers.into_iter().flatten() {
            if t.active() {
                let _ = t.cancel();
            }
        }
        if busy {
            let (d, receiving) = {
                let mut st = self.st.borrow_mut();
                (
                    st.response.take(),
                    matches!(st.sink, Sink::Receiver(_) | Sink::Unclaimed),
                )
            };
            let err = Error::ConnectionLost(Lost::from_close(reason));
            if let Some(d) = d {
                let _ = d.errback(Failure::new(err.clone()));
            }
            if receiving {
                self.body_end(Err(err));
            }
        }
        if let (Some(pool), Some(me)) = (self.pool.upgrade(), self.me.upgrade()) {
            pool.forget(&me);
        }
    }

    // ---- timers ---------------------------------------------------------------------------

    /// Starts the exchange's inactivity timer: the server must answer, and keep the body
    /// coming, without a gap longer than the timeout (while we are reading).
    fn arm_timer(&self) {
        let Some(timeout) = self.timeout else {
            return;
        };
        let me = self.me.clone();
        let call = self.time.call_later_boxed(
            timeout,
            Box::new(move || {
                if let Some(conn) = me.upgrade() {
                    conn.timer_fired();
                }
            }),
        );
        if let Some(old) = self.st.borrow_mut().timer.replace(call)
            && old.active()
        {
            let _ = old.cancel();
        }
    }

    fn timer_fired(&self) {
        let Some(timeout) = self.timeout else {
            return;
        };
        let (due, waiting_on_us) = {
            let mut st = self.st.borrow_mut();
            st.timer = None;
            if !st.busy || st.closed {
                return;
            }
            let waiting_on_us = st.paused || st.sink.unclaimed();
            (st.last_progress + timeout.as_secs_f64(), waiting_on_us)
        };
        let now = self.time.seconds();
        if waiting_on_us || now + 1e-6 < due {
            if waiting_on_us {
                self.st.borrow_mut().last_progress = now;
            }
            let me = self.me.clone();
            let delay = if waiting_on_us {
                timeout
            } else {
                Duration::from_secs_f64(due - now)
            };
            let call = self.time.call_later_boxed(
                delay,
                Box::new(move || {
                    if let Some(conn) = me.upgrade() {
                        conn.timer_fired();
                    }
                }),
            );
            self.st.borrow_mut().timer = Some(call);
            return;
        }
        tracing::debug!("no answer from {:?} in {timeout:?}", self.key);
        self.fail(Error::ResponseTimeout);
    }

    pub(crate) fn start_idle_timer(&self, idle: Duration) {
        let me = self.me.clone();
        let call = self.time.call_later_boxed(
            idle,
            Box::new(move || {
                if let Some(conn) = me.upgrade() {
                    conn.close();
                }
            }),
        );
        if let Some(old) = self.st.borrow_mut().idle_timer.replace(call)
            && old.active()
        {
            let _ = old.cancel();
        }
    }

    fn cancel_idle_timer(&self) {
        if let Some(t) = self.st.borrow_mut().idle_timer.take()
            && t.active()
        {
            let _ = t.cancel();
        }
    }

    pub(crate) fn method_is_idempotent(method: &Method) -> bool {
        matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        )
    }
}

/// The response body of one exchange, as it streams (Twisted's `IResponse.deliverBody`).
///
/// Until [`deliver`](ResponseBody::deliver) is called nothing more is read from the
/// connection, so an unread body costs a buffer, not memory without end. Dropping the
/// handle unread closes the connection (unless the body is empty).
pub struct ResponseBody {
    conn: Weak<Conn>,
    generation: u64,
    empty: bool,
}

impl ResponseBody {
    /// Streams the body to `receiver`; pieces already received come at once.
    pub fn deliver(self, receiver: impl BodyReceiver) {
        self.deliver_boxed(Box::new(receiver));
    }

    pub(crate) fn deliver_boxed(self, mut receiver: Box<dyn BodyReceiver>) {
        let conn = self.conn.upgrade();
        let (generation, empty) = (self.generation, self.empty);
        std::mem::forget(self);
        if empty {
            // Nothing to read (and the connection may already carry another exchange).
            receiver.body_finished(Ok(HeaderMap::new()));
            if let Some(conn) = conn {
                conn.body_dropped(generation);
            }
            return;
        }
        match conn {
            Some(conn) => conn.deliver_body(generation, receiver),
            None => receiver.body_finished(Err(Error::Closed)),
        }
    }

    /// Whether the response has no body at all (HEAD, 204, 304, `Content-Length: 0`).
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// A handle that pauses and resumes the body's delivery (reading from the server), to
    /// register as the producer of whatever consumes it.
    pub fn producer(&self) -> BodyFlow {
        BodyFlow {
            conn: self.conn.clone(),
            generation: self.generation,
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.upgrade() {
            conn.body_dropped(self.generation);
        }
    }
}

/// Pauses and resumes the delivery of a response body; see [`ResponseBody::producer`].
#[derive(Clone)]
pub struct BodyFlow {
    conn: Weak<Conn>,
    generation: u64,
}

impl BodyFlow {
    /// Stops delivering (and reading) until [`resume`](BodyFlow::resume).
    pub fn pause(&self) {
        if let Some(conn) = self.conn.upgrade() {
            conn.set_paused(self.generation, true);
        }
    }

    /// Delivers again.
    pub fn resume(&self) {
        if let Some(conn) = self.conn.upgrade() {
            conn.set_paused(self.generation, false);
        }
    }
}

impl Producer for BodyFlow {
    fn pause_producing(&self) {
        self.pause();
    }

    fn resume_producing(&self) {
        self.resume();
    }

    fn stop_producing(&self) {
        if let Some(conn) = self.conn.upgrade() {
            conn.fail(Error::ConnectionLost(Lost::Stopped));
        }
    }
}
