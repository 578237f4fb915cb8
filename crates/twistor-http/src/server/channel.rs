//! One server connection: the `Protocol` that moves bytes between the transport and the
//! sans-IO [`ServerConnection`], finds and renders resources, and runs the timers.
//!
//! Borrow discipline: no `RefCell` of the channel is borrowed while user code runs
//! (rendering, a body receiver, a producer), because user code calls back in through its
//! `Request`. Re-entrant calls to `process` only note that another round is due.

use std::cell::{Cell, OnceCell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use twistor::defer::Failure;
use twistor::protocol::{CloseReason, Protocol};
use twistor::reactor::{DelayedCall, panic_message};
use twistor::tls::TlsTransport;
use twistor::{Address, Producer, Transport};

use super::log::AccessLogEntry;
use super::request::{Request, RequestInner, ResponseFields};
use super::{NotFound, Render, Resource, SiteInner, percent_decode};
use crate::Error;
use crate::body::BodyReceiver;
use crate::proto::{BodySize, Framing, Phase, RequestEvent, ServerConnection};
use crate::sink::Sink;

/// How many received bytes may wait in the core (pipelined requests) while a response is
/// being produced before reading from the socket stops. Reading on a little keeps a
/// client's going away visible during a long response.
const PIPELINE_BUFFER: usize = 64 * 1024;

/// The protocol the site builds for each connection.
pub(crate) struct HttpChannel {
    channel: Rc<Channel>,
}

impl HttpChannel {
    pub(crate) fn new(site: Rc<SiteInner>, peer: Address) -> HttpChannel {
        let core = ServerConnection::new(site.options.limits.clone());
        let secure = site.options.secure;
        HttpChannel {
            channel: Rc::new_cyclic(|me| Channel {
                site,
                peer,
                core: RefCell::new(core),
                transport: OnceCell::new(),
                secure: Cell::new(secure),
                st: RefCell::new(State::default()),
                spare_headers: RefCell::new(ResponseFields::default()),
                me: me.clone(),
            }),
        }
    }
}

impl Protocol for HttpChannel {
    fn connection_made(&mut self, transport: &Transport) {
        let _ = self.channel.transport.set(transport.clone());
        if transport.downcast_ref::<TlsTransport>().is_some() {
            self.channel.secure.set(true);
        }
        let now = self.channel.site.time.seconds();
        self.channel.st.borrow_mut().last_activity = now;
        self.channel.update_timer(Some(now));
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        let chan = &self.channel;
        let now = chan.site.time.seconds();
        {
            let mut core = chan.core.borrow_mut();
            let mut st = chan.st.borrow_mut();
            st.last_activity = now;
            if core.phase() == Phase::Idle {
                st.head_started = now;
            }
            core.handle_data(data);
        }
        chan.process();
    }

    fn read_connection_lost(&mut self, _transport: &Transport) {
        // The client half-closed: answer what it asked, then close (the core closes once
        // the exchange in progress is over).
        self.channel.st.borrow_mut().eof = true;
        self.channel.core.borrow_mut().handle_eof();
        self.channel.process();
    }

    fn connection_lost(&mut self, _reason: &CloseReason) {
        self.channel.lost();
    }
}

#[derive(Default)]
struct State {
    /// The latest request whose head arrived.
    request: Option<Rc<RequestInner>>,
    sink: Sink,
    body_empty: bool,
    body_paused: bool,
    processing: bool,
    again: bool,
    /// Whether the transport is reading (we paused it otherwise).
    paused_reading: bool,
    closing: bool,
    eof: bool,
    gone: bool,
    last_activity: f64,
    head_started: f64,
    timer: Option<DelayedCall>,
    timer_at: f64,
    last_phase: Option<Phase>,
}

pub(crate) struct Channel {
    site: Rc<SiteInner>,
    peer: Address,
    core: RefCell<ServerConnection>,
    transport: OnceCell<Transport>,
    /// TLS underneath (seen on the transport, or said by the options).
    secure: Cell<bool>,
    st: RefCell<State>,
    /// An emptied response field list, kept for the next request's response.
    spare_headers: RefCell<ResponseFields>,
    me: Weak<Channel>,
}

impl Channel {
    pub(super) fn site(&self) -> &SiteInner {
        &self.site
    }

    fn is_current(&self, request: &RequestInner) -> bool {
        self.st
            .borrow()
            .request
            .as_ref()
            .is_some_and(|r| std::ptr::eq(&**r, request))
    }

    /// Parses and dispatches everything the core has, then writes, and adjusts reading
    /// and the timer.
    fn process(&self) {
        {
            let mut st = self.st.borrow_mut();
            if st.processing {
                st.again = true;
                return;
            }
            if st.gone {
                return;
            }
            st.processing = true;
        }
        loop {
            let blocked = {
                let mut st = self.st.borrow_mut();
                // This poll sees every change made so far; only changes made after it
                // returns nothing (none: nothing runs in between) would need another round.
                st.again = false;
                st.body_paused || (st.sink.unclaimed() && !st.body_empty)
            };
            let event = if blocked {
                Ok(None)
            } else {
                self.core.borrow_mut().poll_event()
            };
            match event {
                Ok(Some(RequestEvent::Head(head))) => self.start_request(head),
                Ok(Some(RequestEvent::Data(data))) => self.body_data(data),
                Ok(Some(RequestEvent::End(trailers))) => self.body_end(Ok(trailers)),
                Ok(None) => {
                    let mut st = self.st.borrow_mut();
                    if !st.again {
                        break;
                    }
                    st.again = false;
                }
                Err(err) => self.refused(err),
            }
        }
        self.flush_out();
        self.update_reading();
        // The clock is read afresh: the round's handlers may have run a while.
        self.update_timer(None);
        self.st.borrow_mut().processing = false;
    }

    /// Processes now, or after the round in progress.
    fn kick(&self) {
        let processing = {
            let mut st = self.st.borrow_mut();
            if st.processing {
                st.again = true;
            }
            st.processing
        };
        if !processing {
            self.process();
        }
    }

    fn start_request(&self, head: crate::proto::RequestHead) {
        let options = &self.site.options;
        let received = if options.access_log.is_some() {
            (options.wall_clock)()
        } else {
            UNIX_EPOCH
        };
        let body_empty = head.framing == Framing::Empty;
        let secure = self.secure.get();
        let response_headers = std::mem::take(&mut *self.spare_headers.borrow_mut());
        // The previous request's allocation is reused when nothing else holds it (no
        // `Request` clone, no body producer): a keep-alive connection then allocates no
        // request state per request. The old state is dropped outside any borrow, since
        // dropping it may run user code (a body receiver).
        let reusable = self
            .st
            .borrow_mut()
            .request
            .take_if(|r| Rc::get_mut(r).is_some());
        let build = |head, response_headers| {
            Rc::new(RequestInner::new(
                head,
                self.peer.clone(),
                secure,
                received,
                response_headers,
                self.me.clone(),
            ))
        };
        let inner = match reusable {
            Some(mut previous) => match Rc::get_mut(&mut previous) {
                Some(slot) => {
                    slot.reset(head, secure, received, response_headers);
                    previous
                }
                None => build(head, response_headers),
            },
            None => build(head, response_headers),
        };
        {
            let mut st = self.st.borrow_mut();
            st.request = Some(inner.clone());
            st.sink = Sink::Unclaimed;
            st.body_empty = body_empty;
            st.body_paused = false;
        }
        let request = Request::from_inner(inner.clone());
        let rendered = catch_unwind(AssertUnwindSafe(|| {
            let resource = self.locate(&request);
            resource.render(&request)
        }));
        match rendered {
            Ok(Render::Body(body)) => self.respond(&inner, body),
            Ok(Render::Later) => {}
            Ok(Render::Deferred(d)) => {
                inner.resp.borrow_mut().pending = Some(d.clone());
                let request = request.clone();
                d.consume(move |result| {
                    request.inner.resp.borrow_mut().pending = None;
                    match result {
                        Ok(body) => request.respond(body),
                        Err(failure) => internal_error(&request, &failure.to_string()),
                    }
                });
            }
            Err(panic) => {
                let message = panic_message(&*panic);
                tracing::error!("rendering {} panicked: {message}", request.path());
                internal_error(&request, &message);
            }
        }
    }

    /// Walks the tree from the root (Twisted's `getChildForRequest`).
    fn locate(&self, request: &Request) -> Rc<dyn Resource> {
        let mut resource = self.site.root.clone();
        let path = request.path();
        if !path.starts_with('/') {
            request.inner.postpath_at.set(path.len() + 1);
            return resource;
        }
        let mut pos = 1;
        while !resource.is_leaf() && pos <= path.len() {
            let end = path[pos..].find('/').map_or(path.len(), |i| pos + i);
            let segment = percent_decode(&path[pos..end]);
            request.inner.postpath_at.set(end + 1);
            resource = match resource.child(&segment, request) {
                Some(child) => child,
                None => return Rc::new(NotFound),
            };
            pos = end + 1;
        }
        resource
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

    /// The core refused the input: its error response (if one is due) is queued.
    fn refused(&self, err: Error) {
        tracing::debug!("refusing request from {}: {err}", self.peer);
        let request = self.st.borrow().request.clone();
        let in_progress = request.filter(|r| !r.resp.borrow().finished);
        match &in_progress {
            // The error is in the body of a request still being answered.
            Some(r) => {
                if let (Some(status), false) = (err.status(), r.resp.borrow().started) {
                    self.log_access(Some(r), status.as_u16(), 0);
                }
                if self.st.borrow().sink.receiving() {
                    self.body_end(Err(err.clone()));
                }
                self.mark_lost(r);
            }
            // The error is in a new request's head, or the body of one already answered.
            None => {
                let answered_body = self.core.borrow().phase() == Phase::Closed
                    && matches!(self.st.borrow().sink, Sink::Discard | Sink::Receiver(_));
                if let (Some(status), false) = (err.status(), answered_body) {
                    self.log_access(None, status.as_u16(), 0);
                }
                if self.st.borrow().sink.receiving() {
                    self.body_end(Err(err.clone()));
                }
            }
        }
        self.st.borrow_mut().closing = true;
    }

    // ---- writing ------------------------------------------------------------------------

    fn transport(&self) -> Option<&Transport> {
        self.transport.get()
    }

    /// Moves what the core queued to the transport; closes once the core is done.
    fn flush_out(&self) {
        let Some(transport) = self.transport() else {
            return;
        };
        // The core's buffer is lent out, not borrowed: writing may run a producer that
        // calls back into this channel.
        let mut buf = self.core.borrow_mut().poll_transmit_buf();
        while let Some(bytes) = buf {
            transport.write(&bytes);
            buf = self.core.borrow_mut().recycle_transmit_and_poll(bytes);
        }
        if self.core.borrow().phase() == Phase::Closed {
            let mut st = self.st.borrow_mut();
            if !st.gone && !transport.disconnecting() {
                st.closing = true;
                drop(st);
                transport.lose_connection();
            }
        }
    }

    fn start_response(&self, request: &RequestInner) -> bool {
        let (status, headers, size) = {
            let mut resp = request.resp.borrow_mut();
            if resp.started {
                return true;
            }
            resp.started = true;
            let size = match resp.length {
                Some(n) => BodySize::Length(n),
                None if resp.empty => BodySize::Empty,
                None => BodySize::Unknown,
            };
            (resp.status, std::mem::take(&mut resp.headers), size)
        };
        let options = &self.site.options;
        let result = {
            let mut cache = self.site.defaults.borrow_mut();
            // Read now, not at the start of the round: a handler may have run a while.
            let now = self.site.time.seconds();
            let defaults = cache.fields(options.server_header.as_ref(), now, options.wall_clock);
            let mut core = self.core.borrow_mut();
            match &headers {
                ResponseFields::List(list) => core.send_response_head(
                    status,
                    list.iter().map(|(n, v)| (n, v)),
                    defaults,
                    size,
                ),
                ResponseFields::Map(map) => {
                    core.send_response_head(status, map.iter(), defaults, size)
                }
            }
        };
        // Keep the list's memory for the next request's response.
        *self.spare_headers.borrow_mut() = headers.recycled();
        if let Err(err) = result {
            tracing::error!("cannot send the response to {}: {err}", request.path());
            self.abort();
            return false;
        }
        true
    }

    pub(super) fn write(&self, request: &RequestInner, data: &[u8]) {
        {
            let resp = request.resp.borrow();
            if resp.finished || resp.lost {
                tracing::debug!("write after the response ended ignored");
                return;
            }
        }
        if !self.start_response(request) {
            return;
        }
        if data.is_empty() {
            return;
        }
        let result = self.core.borrow_mut().send_data(data);
        match result {
            Ok(()) => count_sent(request, data.len()),
            Err(err) => tracing::warn!("response body to {} refused: {err}", request.path()),
        }
        self.flush_out();
    }

    pub(super) fn respond(&self, request: &RequestInner, body: Bytes) {
        {
            let mut resp = request.resp.borrow_mut();
            if resp.finished || resp.lost {
                return;
            }
            if !resp.started {
                resp.length = Some(body.len() as u64);
            }
        }
        if !self.start_response(request) {
            return;
        }
        if !body.is_empty() {
            let result = self.core.borrow_mut().send_data(&body);
            match result {
                Ok(()) => count_sent(request, body.len()),
                Err(err) => tracing::warn!("response body to {} refused: {err}", request.path()),
            }
        }
        self.finish(request);
    }

    pub(super) fn finish(&self, request: &RequestInner) {
        let producer = {
            let mut resp = request.resp.borrow_mut();
            if resp.finished || resp.lost {
                return;
            }
            if !resp.started && resp.length.is_none() {
                resp.empty = true;
            }
            resp.producer
        };
        if !self.start_response(request) {
            return;
        }
        let result = self.core.borrow_mut().finish(None);
        if let Err(err) = result {
            tracing::warn!("response to {} ended badly: {err}", request.path());
        }
        let (status, bytes, waiters) = {
            let mut resp = request.resp.borrow_mut();
            resp.finished = true;
            resp.producer = false;
            (resp.status, resp.bytes, std::mem::take(&mut resp.waiters))
        };
        if producer && let Some(t) = self.transport() {
            t.unregister_producer();
        }
        self.flush_out();
        self.log_access(Some(request), status.as_u16(), bytes);
        {
            let mut st = self.st.borrow_mut();
            if st.sink.unclaimed() {
                st.sink = Sink::Discard;
            }
            st.body_paused = false;
            st.last_activity = self.site.time.seconds();
        }
        for waiter in waiters {
            let _ = waiter.callback(());
        }
        self.kick();
    }

    pub(super) fn register_producer(
        &self,
        request: &RequestInner,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), Error> {
        let Some(transport) = self.transport() else {
            return Err(Error::Closed);
        };
        {
            let resp = request.resp.borrow();
            if resp.finished || resp.lost {
                producer.stop_producing();
                return Ok(());
            }
            if resp.producer {
                return Err(Error::InvalidState("a producer is already registered"));
            }
        }
        request.resp.borrow_mut().producer = true;
        // Registering a pull producer runs it at once, so the flag is set first.
        if let Err(err) = transport.inner().register_producer(producer, streaming) {
            request.resp.borrow_mut().producer = false;
            return Err(Error::ConnectionLost(err.to_string()));
        }
        Ok(())
    }

    pub(super) fn unregister_producer(&self, request: &RequestInner) {
        let was = std::mem::replace(&mut request.resp.borrow_mut().producer, false);
        if was && let Some(t) = self.transport() {
            t.unregister_producer();
        }
    }

    // ---- the request body ---------------------------------------------------------------

    pub(super) fn deliver_body(&self, request: &RequestInner, mut receiver: Box<dyn BodyReceiver>) {
        if !self.is_current(request) {
            receiver.body_finished(Err(Error::InvalidState(
                "the body of an earlier request is gone",
            )));
            return;
        }
        let ended = self.st.borrow_mut().sink.claim(receiver);
        if let Some((mut receiver, result)) = ended {
            receiver.body_finished(result);
            return;
        }
        self.send_continue(request);
        self.kick();
    }

    pub(super) fn send_continue(&self, request: &RequestInner) {
        if !self.is_current(request) || request.resp.borrow().started {
            return;
        }
        let _ = self.core.borrow_mut().send_continue();
        self.flush_out();
    }

    pub(super) fn set_body_paused(&self, request: &RequestInner, paused: bool) {
        if !self.is_current(request) {
            return;
        }
        let changed = {
            let mut st = self.st.borrow_mut();
            std::mem::replace(&mut st.body_paused, paused) != paused
        };
        if !changed {
            return;
        }
        if paused {
            self.update_reading();
        } else {
            self.kick();
        }
    }

    // ---- reading and timers -------------------------------------------------------------

    fn update_reading(&self) {
        let Some(transport) = self.transport() else {
            return;
        };
        let want = {
            let core = self.core.borrow();
            let st = self.st.borrow();
            let blocked = st.body_paused || (st.sink.unclaimed() && !st.body_empty);
            !blocked
                && !st.closing
                && (core.wants_read() || core.buffered() < PIPELINE_BUFFER)
                && core.phase() != Phase::Closed
        };
        let mut st = self.st.borrow_mut();
        if st.paused_reading == want {
            st.paused_reading = !want;
            drop(st);
            if want {
                transport.resume_producing();
            } else {
                transport.pause_producing();
            }
        }
    }

    /// When the read timer should fire for the connection's state, if at all.
    fn deadline(&self) -> Option<f64> {
        let phase = self.core.borrow().phase();
        self.deadline_in(phase, &self.st.borrow())
    }

    /// The deadline for `phase`, with the state already borrowed.
    fn deadline_in(&self, phase: Phase, st: &State) -> Option<f64> {
        let options = &self.site.options;
        match phase {
            Phase::Idle => Some(st.last_activity + options.idle_timeout.as_secs_f64()),
            Phase::ReadingHead => Some(st.head_started + options.header_timeout.as_secs_f64()),
            Phase::ReadingBody => {
                let blocked = st.body_paused || (st.sink.unclaimed() && !st.body_empty);
                (!blocked).then_some(st.last_activity + options.body_timeout.as_secs_f64())
            }
            _ => None,
        }
    }

    /// Makes sure a timer fires no later than the deadline. A timer that fires early
    /// (the deadline moved on) just schedules itself again, so a busy keep-alive
    /// connection does not reschedule on every request.
    fn update_timer(&self, now: Option<f64>) {
        let phase = self.core.borrow().phase();
        let deadline = {
            let mut st = self.st.borrow_mut();
            if st.gone {
                return;
            }
            if phase == Phase::ReadingHead && st.last_phase != Some(Phase::ReadingHead) {
                // Pipelined bytes became the next head without a read: its clock starts now.
                if st.last_phase.is_some_and(|p| p != Phase::Idle) {
                    st.head_started = now.unwrap_or_else(|| self.site.time.seconds());
                }
            }
            st.last_phase = Some(phase);
            let Some(deadline) = self.deadline_in(phase, &st) else {
                return;
            };
            if st.timer.as_ref().is_some_and(DelayedCall::active) && st.timer_at <= deadline {
                return;
            }
            deadline
        };
        let now = now.unwrap_or_else(|| self.site.time.seconds());
        let delay = Duration::from_secs_f64((deadline - now).max(0.0));
        let me = self.me.clone();
        let call = self.site.time.call_later_boxed(
            delay,
            Box::new(move || {
                if let Some(chan) = me.upgrade() {
                    chan.timer_fired();
                }
            }),
        );
        let mut st = self.st.borrow_mut();
        if let Some(old) = st.timer.replace(call)
            && old.active()
        {
            let _ = old.cancel();
        }
        st.timer_at = deadline;
    }

    fn timer_fired(&self) {
        self.st.borrow_mut().timer = None;
        let now = self.site.time.seconds();
        match self.deadline() {
            // Allow for float rounding between scheduling and firing.
            Some(deadline) if now + 1e-6 >= deadline => {}
            Some(_) => return self.update_timer(Some(now)),
            None => return,
        }
        let phase = self.core.borrow().phase();
        tracing::debug!("connection from {} timed out ({phase:?})", self.peer);
        let request = self.st.borrow().request.clone();
        let answered_408 = matches!(phase, Phase::ReadingHead | Phase::ReadingBody)
            && !request.as_ref().is_some_and(|r| {
                phase == Phase::ReadingBody && (r.resp.borrow().started || r.resp.borrow().finished)
            });
        self.core.borrow_mut().handle_timeout();
        if answered_408 {
            let current = if phase == Phase::ReadingBody {
                request.as_deref()
            } else {
                None
            };
            self.log_access(current, StatusCode::REQUEST_TIMEOUT.as_u16(), 0);
        }
        if phase == Phase::ReadingBody
            && let Some(r) = &request
        {
            if self.st.borrow().sink.receiving() {
                self.body_end(Err(Error::Timeout));
            }
            if !r.resp.borrow().finished {
                self.mark_lost(r);
            }
        }
        self.st.borrow_mut().closing = true;
        self.flush_out();
    }

    // ---- the end ------------------------------------------------------------------------

    /// Closes the connection at once (a response that cannot go on).
    pub(super) fn abort(&self) {
        self.st.borrow_mut().closing = true;
        if let Some(t) = self.transport() {
            t.abort_connection();
        }
    }

    pub(super) fn mark_lost(&self, request: &RequestInner) {
        let (waiters, pending) = {
            let mut resp = request.resp.borrow_mut();
            if resp.finished || resp.lost {
                return;
            }
            resp.lost = true;
            (std::mem::take(&mut resp.waiters), resp.pending.take())
        };
        for waiter in waiters {
            let _ = waiter.errback(Failure::new(Error::ConnectionLost(
                "the client went away".into(),
            )));
        }
        if let Some(d) = pending {
            d.cancel();
        }
    }

    fn lost(&self) {
        let (request, timer) = {
            let mut st = self.st.borrow_mut();
            st.gone = true;
            (st.request.take(), st.timer.take())
        };
        if let Some(timer) = timer
            && timer.active()
        {
            let _ = timer.cancel();
        }
        if self.st.borrow().sink.receiving() {
            self.body_end(Err(Error::ConnectionLost("the client went away".into())));
        }
        self.st.borrow_mut().sink = Sink::Idle;
        if let Some(r) = request {
            self.mark_lost(&r);
        }
    }

    fn log_access(&self, request: Option<&RequestInner>, status: u16, bytes: u64) {
        let Some(log) = &self.site.options.access_log else {
            return;
        };
        let client = match self.peer.socket_addr() {
            Some(addr) => addr.ip().to_string(),
            None => "-".to_owned(),
        };
        let line = request.map_or_else(|| "-".to_owned(), RequestInner::request_line);
        let time = request.map_or_else(|| (self.site.options.wall_clock)(), |r| r.received);
        let field = |name| request.and_then(|r| r.head.header(name));
        log.log(&AccessLogEntry {
            client: &client,
            time,
            request_line: &line,
            status,
            bytes,
            referer: field(header::REFERER),
            user_agent: field(header::USER_AGENT),
        });
    }
}

/// Counts body bytes sent (none go out for HEAD, 204 and 304).
fn count_sent(request: &RequestInner, n: usize) {
    let mut resp = request.resp.borrow_mut();
    let bodiless = request.head.method == http::Method::HEAD
        || resp.status == StatusCode::NO_CONTENT
        || resp.status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        resp.bytes += n as u64;
    }
}

/// Answers 500, or aborts the connection if the response had started.
fn internal_error(request: &Request, detail: &str) {
    if request.finished() || request.lost() {
        return;
    }
    if request.started() {
        tracing::error!("response to {} failed midway: {detail}", request.path());
        if let Some(channel) = request.inner.channel.upgrade() {
            channel.abort();
            channel.mark_lost(&request.inner);
        }
        return;
    }
    tracing::error!("response to {} failed: {detail}", request.path());
    request.with_response_headers(HeaderMap::clear);
    request.inner.resp.borrow_mut().length = None;
    if let Render::Body(body) = super::error_page(
        request,
        StatusCode::INTERNAL_SERVER_ERROR,
        "The server could not produce this page.",
    ) {
        request.respond(body);
    }
}
