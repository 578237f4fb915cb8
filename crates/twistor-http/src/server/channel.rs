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
use twistor::reactor::DelayedCall;
use twistor::tls::TlsTransport;
use twistor::transport::DEFAULT_HIGH_WATER_MARK;
use twistor::unstable::panic_message;
use twistor::{Address, Producer, Transport};

use super::log::AccessLogEntry;
use super::request::{Request, RequestInner, ResponseFields};
use super::{NotFound, Render, Resource, SiteInner, percent_decode};
use crate::Error;
use crate::body::BodyReceiver;
use crate::error::Lost;
use crate::proto::{BodySize, Framing, Phase, RequestEvent, ServerConnection};
use crate::sink::Sink;

/// How many received bytes may wait in the core (pipelined requests) while a response is
/// being produced before reading from the socket stops. Reading on a little keeps a
/// client's going away visible during a long response.
const PIPELINE_BUFFER: usize = 64 * 1024;

/// Unsent response bytes above which the next pipelined request is not started until the
/// client reads: the transport's own mark, where it pauses a streaming producer, so a
/// client that never reads holds one response plus this much.
const OUTPUT_HIGH_WATER: usize = DEFAULT_HIGH_WATER_MARK;

/// Most bytes read and dropped while lingering after an error response: time bounds it
/// too, this stops a fast sender from keeping the server reading for the whole time.
const LINGER_MAX_BYTES: u64 = 16 * 1024 * 1024;

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
                written: Cell::new(0),
                output_bound: Cell::new(0),
                me: me.clone(),
            }),
        }
    }
}

impl Protocol for HttpChannel {
    fn connection_made(&mut self, transport: &Transport) {
        let chan = &self.channel;
        let _ = chan.transport.set(transport.clone());
        if transport.downcast_ref::<TlsTransport>().is_some() {
            chan.secure.set(true);
        }
        let now = chan.site.time.seconds();
        {
            let mut st = chan.st.borrow_mut();
            st.last_activity = now;
            st.send_mark = SendMark::progress(now, 0, false);
        }
        chan.site.connections.add(&chan.me);
        if chan.site.connections.draining() {
            // Made after the site began draining (a listener not yet closed): no request
            // is taken.
            chan.drain();
            return;
        }
        chan.update_timer(Some(now));
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        let chan = &self.channel;
        let now = chan.site.time.seconds();
        {
            let mut core = chan.core.borrow_mut();
            let mut st = chan.st.borrow_mut();
            st.last_activity = now;
            if let Life::Lingering { discarded, .. } = &mut st.life {
                // Read only so the client's sending does not reset the connection
                // before it has read the error response.
                *discarded += data.len() as u64;
                if *discarded > LINGER_MAX_BYTES {
                    drop((core, st));
                    tracing::debug!("lingering close of {}: too much input", chan.peer);
                    chan.abort();
                }
                return;
            }
            if core.phase() == Phase::Idle {
                st.head_started = now;
            }
            core.handle_data(data);
        }
        chan.process();
    }

    fn read_connection_lost(&mut self, transport: &Transport) {
        let chan = &self.channel;
        if matches!(chan.st.borrow().life, Life::Lingering { .. }) {
            // The client has read the error and closed: lingering is over.
            transport.lose_connection();
            return;
        }
        // The client half-closed: answer what it asked, then close (the core closes once
        // the exchange in progress is over).
        chan.st.borrow_mut().eof = true;
        chan.core.borrow_mut().handle_eof();
        chan.process();
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.channel.lost(Lost::from_close(reason));
    }
}

impl Drop for HttpChannel {
    fn drop(&mut self) {
        // A connection dropped without `connection_lost` (driven by hand) is gone too.
        self.channel.site.connections.remove(&self.channel.me);
    }
}

/// Where the connection is in its life. The states exclude each other; what may hold in
/// any of them (a paused body, a half-closed client) is a flag of [`State`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Life {
    /// Reading requests and answering them.
    #[default]
    Open,
    /// A finished response left more than [`OUTPUT_HIGH_WATER`] bytes unsent: the next
    /// pipelined request waits until the client reads them ([`DrainWatch`] is the
    /// transport's producer meanwhile), or is dropped at the send timeout.
    Blocked,
    /// No more requests: what is queued goes out, then the connection closes. `linger`:
    /// it ends over an error while the client may still be sending, so it closes
    /// through [`Life::Lingering`].
    Closing { linger: bool },
    /// The error response is sent and our side shut (RFC 9112 §9.6): the client's input
    /// is read and dropped until it closes, or the lingering time runs out.
    Lingering { since: f64, discarded: u64 },
    /// The transport is gone.
    Gone,
}

/// Whether [`Channel::process`] is running: re-entrant calls only ask for another round.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Round {
    #[default]
    Idle,
    Running,
    /// Running, and something changed that the running round may not have seen.
    Again,
}

/// What the send timeout knows of the client's reading. The transport does not say when
/// the client reads, so the channel looks every quarter of the timeout, and a client is
/// dropped within a quarter more than the timeout after it last read.
#[derive(Debug, Clone, Copy, Default)]
struct SendMark {
    /// When the client was last seen to have read.
    progress_at: f64,
    /// When the last look was.
    checked_at: f64,
    /// Bytes the transport had sent on (written minus still buffered) at the last look.
    sent: u64,
    /// Whether output was waiting at the last look; if not, when it began waiting is
    /// unknown, and the next look starts the count.
    pending: bool,
}

impl SendMark {
    fn progress(now: f64, sent: u64, pending: bool) -> SendMark {
        SendMark {
            progress_at: now,
            checked_at: now,
            sent,
            pending,
        }
    }
}

#[derive(Default)]
struct State {
    /// The latest request whose head arrived.
    request: Option<Rc<RequestInner>>,
    sink: Sink,
    life: Life,
    round: Round,
    /// The current request has no body.
    body_empty: bool,
    /// The resource paused the request body.
    body_paused: bool,
    /// Whether we paused the transport's reading.
    paused_reading: bool,
    /// The client closed its sending side.
    eof: bool,
    last_activity: f64,
    head_started: f64,
    send_mark: SendMark,
    timer: Option<DelayedCall>,
    timer_at: f64,
    last_phase: Option<Phase>,
}

impl State {
    /// Whether the next request event must wait: for the resource to claim or resume
    /// its body, or for the client to read what was sent.
    fn parse_blocked(&self) -> bool {
        self.body_paused
            || (self.sink.unclaimed() && !self.body_empty)
            || matches!(self.life, Life::Blocked)
    }

    /// The invariants the states promise (checked in debug builds).
    fn check(&self, phase: Phase) {
        if let Life::Lingering { .. } = self.life {
            debug_assert_eq!(phase, Phase::Closed, "lingering takes no requests");
        }
        if self.life == Life::Blocked {
            debug_assert!(
                self.request
                    .as_ref()
                    .is_none_or(|r| r.resp.borrow().finished || r.resp.borrow().lost.is_some()),
                "only a finished response blocks on output"
            );
        }
        debug_assert!(
            !(self.body_empty && self.sink.receiving()),
            "a request without a body has no body receiver"
        );
    }
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
    /// Bytes handed to the transport, for the send timeout's measure of progress.
    written: Cell<u64>,
    /// `written` minus what the transport's buffer held when it was last asked: while
    /// `written` is less than the mark beyond it, the buffer cannot be over the mark, and
    /// the transport need not be asked (a cheap keep-alive path).
    output_bound: Cell<u64>,
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
            if st.round != Round::Idle {
                st.round = Round::Again;
                return;
            }
            if matches!(st.life, Life::Gone | Life::Lingering { .. }) {
                return;
            }
            st.round = Round::Running;
        }
        loop {
            let blocked = {
                let mut st = self.st.borrow_mut();
                // This poll sees every change made so far; only changes made after it
                // returns nothing (none: nothing runs in between) would need another round.
                st.round = Round::Running;
                st.parse_blocked()
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
                    if self.st.borrow().round != Round::Again {
                        break;
                    }
                }
                Err(err) => self.refused(err),
            }
        }
        self.flush_out();
        self.update_reading();
        // The clock is read afresh: the round's handlers may have run a while.
        self.update_timer(None);
        let mut st = self.st.borrow_mut();
        st.round = Round::Idle;
        if cfg!(debug_assertions) {
            st.check(self.core.borrow().phase());
        }
    }

    /// Processes now, or after the round in progress.
    fn kick(&self) {
        let idle = {
            let mut st = self.st.borrow_mut();
            if st.round != Round::Idle {
                st.round = Round::Again;
            }
            st.round == Round::Idle
        };
        if idle {
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
        let root = self.site.root.clone();
        self.render_into(&request, || locate(root, &request));
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
                // Lost first: a body receiver that answers its failure (a proxy's 502)
                // must find the error response already owned by the connection.
                self.mark_lost(r, Lost::Aborted);
                if self.st.borrow().sink.receiving() {
                    self.body_end(Err(err.clone()));
                }
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
        // The client may be sending still (the rest of a body too large): it should read
        // the error before the connection goes.
        self.set_closing(true);
    }

    /// Takes no more requests, unless the connection is further on already.
    fn set_closing(&self, linger: bool) {
        let mut st = self.st.borrow_mut();
        if matches!(st.life, Life::Open | Life::Blocked) {
            st.life = Life::Closing { linger };
        }
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
            self.written.set(self.written.get() + bytes.len() as u64);
            buf = self.core.borrow_mut().recycle_transmit_and_poll(bytes);
        }
        if self.core.borrow().phase() == Phase::Closed {
            self.close_when_sent(transport);
        }
    }

    /// The core is done: closes once the output is sent, lingering first if due.
    fn close_when_sent(&self, transport: &Transport) {
        let mut st = self.st.borrow_mut();
        if transport.disconnecting() {
            return;
        }
        let linger = match st.life {
            Life::Gone | Life::Lingering { .. } => return,
            Life::Closing { linger } => linger,
            // Answered before the body was all here, and not keeping the connection.
            Life::Open | Life::Blocked => self.core.borrow().closed_mid_body(),
        } && !st.eof;
        if linger {
            let now = self.site.time.seconds();
            st.life = Life::Lingering {
                since: now,
                discarded: 0,
            };
            st.last_activity = now;
            drop(st);
            tracing::debug!("lingering close of {}", self.peer);
            // Sends the error, then shuts our side: the client sees the end of the
            // response, and its further bytes are read and dropped, not answered with a
            // reset that could destroy the response in its receive buffer.
            transport.lose_write_connection();
            self.update_reading();
            self.update_timer(Some(now));
        } else {
            st.life = Life::Closing { linger: false };
            drop(st);
            transport.lose_connection();
        }
    }

    /// Whether the transport may hold more than the mark: what it held when last asked,
    /// plus what was written since.
    fn output_may_exceed_mark(&self) -> bool {
        self.written.get() - self.output_bound.get() > OUTPUT_HIGH_WATER as u64
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
        match result {
            Ok(()) => true,
            // The connection ended first (its own error response may be on its way).
            Err(Error::Closed) => {
                tracing::debug!("response to {} not sent: connection closed", request.path());
                false
            }
            Err(err) => {
                tracing::error!("cannot send the response to {}: {err}", request.path());
                self.abort();
                false
            }
        }
    }

    pub(super) fn write(&self, request: &RequestInner, data: &[u8]) {
        {
            let resp = request.resp.borrow();
            if resp.finished || resp.lost.is_some() {
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
            if resp.finished || resp.lost.is_some() {
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
            if resp.finished || resp.lost.is_some() {
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
        let transport = self.transport();
        if producer && let Some(t) = transport {
            t.unregister_producer();
        }
        self.flush_out();
        self.log_access(Some(request), status.as_u16(), bytes);
        let now = self.site.time.seconds();
        {
            let mut st = self.st.borrow_mut();
            if st.sink.unclaimed() {
                st.sink = Sink::Discard;
            }
            st.body_paused = false;
            st.last_activity = now;
        }
        if let Some(t) = transport
            && self.output_may_exceed_mark()
        {
            let buffered = t.buffered();
            self.output_bound
                .set(self.written.get().saturating_sub(buffered as u64));
            if buffered > OUTPUT_HIGH_WATER {
                self.block_on_output(t, now);
            }
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
            if resp.finished || resp.lost.is_some() {
                producer.stop_producing();
                return Ok(());
            }
            if resp.producer {
                return Err(Error::InvalidState("a producer is already registered"));
            }
        }
        request.resp.borrow_mut().producer = true;
        // Registering a pull producer runs it at once, so the flag is set first.
        if let Err(err) = transport.register_producer(producer, streaming) {
            request.resp.borrow_mut().producer = false;
            return Err(Error::ConnectionLost(Lost::Failed(err)));
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
            match st.life {
                Life::Lingering { .. } => true,
                Life::Closing { .. } | Life::Gone => false,
                // Waiting for the client to read: take in a little more, no more.
                Life::Blocked => core.buffered() < PIPELINE_BUFFER,
                Life::Open => {
                    !st.parse_blocked()
                        && (core.wants_read() || core.buffered() < PIPELINE_BUFFER)
                        && core.phase() != Phase::Closed
                }
            }
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

    /// When the timer should fire for the connection's state, if at all.
    fn deadline(&self) -> Option<f64> {
        let phase = self.core.borrow().phase();
        self.deadline_in(phase, &self.st.borrow())
    }

    /// The deadline for `phase`, with the state already borrowed.
    #[inline]
    fn deadline_in(&self, phase: Phase, st: &State) -> Option<f64> {
        let options = &self.site.options;
        let send_deadline = || st.send_mark.checked_at + options.send_timeout.as_secs_f64() / 4.0;
        match st.life {
            Life::Gone => None,
            Life::Lingering { since, .. } => Some(
                (since + options.lingering_time.as_secs_f64())
                    .min(st.last_activity + options.lingering_timeout.as_secs_f64()),
            ),
            Life::Blocked | Life::Closing { .. } => Some(send_deadline()),
            Life::Open => match phase {
                Phase::Idle => Some(st.last_activity + options.idle_timeout.as_secs_f64()),
                Phase::ReadingHead => Some(st.head_started + options.header_timeout.as_secs_f64()),
                Phase::ReadingBody => {
                    let blocked = st.body_paused || (st.sink.unclaimed() && !st.body_empty);
                    (!blocked).then_some(st.last_activity + options.body_timeout.as_secs_f64())
                }
                Phase::Responding | Phase::Closed => Some(send_deadline()),
            },
        }
    }

    /// Makes sure a timer fires no later than the deadline. A timer that fires early
    /// (the deadline moved on) just schedules itself again, so a busy keep-alive
    /// connection does not reschedule on every request.
    fn update_timer(&self, now: Option<f64>) {
        let phase = self.core.borrow().phase();
        let deadline = {
            let mut st = self.st.borrow_mut();
            if matches!(st.life, Life::Gone) {
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
        let life = self.st.borrow().life;
        match life {
            Life::Gone => {}
            Life::Lingering { .. } => {
                tracing::debug!("lingering close of {} over", self.peer);
                if let Some(t) = self.transport() {
                    t.abort_connection();
                }
            }
            Life::Blocked | Life::Closing { .. } => self.send_check(now),
            Life::Open if matches!(phase, Phase::Responding | Phase::Closed) => {
                self.send_check(now)
            }
            Life::Open => self.read_timed_out(phase),
        }
    }

    /// The read timer ran out: 408 if a request is half-read, then close.
    fn read_timed_out(&self, phase: Phase) {
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
            // Lost first, as in `refused`: the 408 is queued already.
            self.mark_lost(r, Lost::TimedOut);
            if self.st.borrow().sink.receiving() {
                self.body_end(Err(Error::Timeout));
            }
        }
        self.set_closing(phase != Phase::Idle);
        self.flush_out();
        self.update_timer(None);
    }

    /// A look for the send timeout: drops a client that has read nothing for the whole
    /// timeout (nginx's `send_timeout`), else looks again later.
    fn send_check(&self, now: f64) {
        let Some(transport) = self.transport() else {
            return;
        };
        let buffered = transport.buffered();
        let sent = self.written.get().saturating_sub(buffered as u64);
        let mark = self.st.borrow().send_mark;
        if buffered == 0 || sent > mark.sent || !mark.pending {
            self.st.borrow_mut().send_mark = SendMark::progress(now, sent, buffered > 0);
            if self.st.borrow().life == Life::Blocked && buffered <= OUTPUT_HIGH_WATER / 2 {
                // Drained without the transport saying so (its mark differs from ours).
                self.output_drained();
            } else {
                self.update_timer(Some(now));
            }
            return;
        }
        let timeout = self.site.options.send_timeout.as_secs_f64();
        if now + 1e-6 < mark.progress_at + timeout {
            self.st.borrow_mut().send_mark.checked_at = now;
            self.update_timer(Some(now));
            return;
        }
        tracing::debug!(
            "{} read nothing for {:?}; dropping it",
            self.peer,
            self.site.options.send_timeout
        );
        let request = self.st.borrow().request.clone();
        self.abort();
        if let Some(r) = request {
            self.mark_lost(&r, Lost::TimedOut);
        }
    }

    /// A finished response left too much unsent: the next request waits for the client
    /// to read (the transport resumes [`DrainWatch`] once it has drained).
    fn block_on_output(&self, transport: &Transport, now: f64) {
        {
            let mut st = self.st.borrow_mut();
            if st.life != Life::Open {
                return;
            }
            st.life = Life::Blocked;
            let sent = self
                .written
                .get()
                .saturating_sub(transport.buffered() as u64);
            st.send_mark = SendMark::progress(now, sent, true);
        }
        let watch = DrainWatch(self.me.clone());
        if let Err(err) = transport.register_producer(Box::new(watch), true) {
            // Someone else's producer holds the slot: the send timer still looks.
            tracing::debug!("cannot watch the output of {}: {err}", self.peer);
        }
        self.update_timer(Some(now));
    }

    /// The client read enough of what was waiting: the next pipelined request may start.
    fn output_drained(&self) {
        let now = self.site.time.seconds();
        {
            let mut st = self.st.borrow_mut();
            if st.life != Life::Blocked {
                return;
            }
            st.life = Life::Open;
            st.last_activity = now;
            st.head_started = now;
        }
        if let Some(t) = self.transport() {
            t.unregister_producer();
        }
        self.kick();
    }

    /// Takes no more requests: closes now if idle, or after the response in flight (sent
    /// with `Connection: close` if not started).
    pub(super) fn drain(&self) {
        self.core.borrow_mut().close_when_done();
        let blocked = {
            let mut st = self.st.borrow_mut();
            let blocked = st.life == Life::Blocked;
            if blocked {
                st.life = Life::Closing { linger: false };
            }
            blocked
        };
        if blocked && let Some(t) = self.transport() {
            t.unregister_producer();
        }
        self.kick();
    }

    // ---- the end ------------------------------------------------------------------------

    /// Closes the connection at once (a response that cannot go on).
    pub(super) fn abort(&self) {
        self.set_closing(false);
        if let Some(t) = self.transport() {
            t.abort_connection();
        }
    }

    pub(super) fn mark_lost(&self, request: &RequestInner, how: Lost) {
        let (waiters, pending) = {
            let mut resp = request.resp.borrow_mut();
            if resp.finished || resp.lost.is_some() {
                return;
            }
            resp.lost = Some(how.clone());
            (std::mem::take(&mut resp.waiters), resp.pending.take())
        };
        for waiter in waiters {
            let _ = waiter.errback(Failure::new(Error::ConnectionLost(how.clone())));
        }
        if let Some(d) = pending {
            d.cancel();
        }
    }

    fn lost(&self, how: Lost) {
        let (request, timer) = {
            let mut st = self.st.borrow_mut();
            st.life = Life::Gone;
            (st.request.take(), st.timer.take())
        };
        if let Some(timer) = timer
            && timer.active()
        {
            let _ = timer.cancel();
        }
        // The request is lost before its body fails, so whoever hears of the failure sees
        // that the client is gone (a proxy then logs nothing).
        if let Some(r) = &request {
            self.mark_lost(r, how.clone());
        }
        if self.st.borrow().sink.receiving() {
            self.body_end(Err(Error::ConnectionLost(how)));
        }
        self.st.borrow_mut().sink = Sink::Idle;
        self.site.connections.remove(&self.me);
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

/// The transport's producer while a channel waits for its output to drain: resumed by
/// the transport once the client has read it down.
struct DrainWatch(Weak<Channel>);

impl Producer for DrainWatch {
    fn pause_producing(&self) {}

    fn resume_producing(&self) {
        if let Some(channel) = self.0.upgrade() {
            channel.output_drained();
        }
    }

    fn stop_producing(&self) {}
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
            channel.mark_lost(&request.inner, Lost::Aborted);
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

/// Renders what `find` finds for `request` and sends what the resource gives back: a body
/// now, later through the request, or when a Deferred fires; a panic is a 500.
pub(crate) fn render_into(request: &Request, find: impl FnOnce() -> Rc<dyn Resource>) {
    if let Some(channel) = request.inner.channel.upgrade() {
        channel.render_into(request, find);
    }
}

impl Channel {
    /// [`render_into`] on this channel (the request's own).
    fn render_into(&self, request: &Request, find: impl FnOnce() -> Rc<dyn Resource>) {
        let rendered = catch_unwind(AssertUnwindSafe(|| find().render(request)));
        match rendered {
            Ok(Render::Body(body)) => self.respond(&request.inner, body),
            Ok(Render::Later) => {}
            Ok(Render::Deferred(d)) => {
                request.inner.resp.borrow_mut().pending = Some(d.clone());
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
                internal_error(request, &message);
            }
        }
    }
}

/// Walks the tree from `resource` over the request's postpath (Twisted's
/// `getChildForRequest`): from the site's root for a new request, or from the resource a
/// leaf hands the rest of the path to (as the authentication guard does).
pub(crate) fn locate(mut resource: Rc<dyn Resource>, request: &Request) -> Rc<dyn Resource> {
    let path = request.path();
    if !path.starts_with('/') {
        request.inner.postpath_at.set(path.len() + 1);
        return resource;
    }
    let mut pos = request.inner.postpath_at.get().max(1);
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
