//! The TLS layer: a protocol that sits on a lower transport and a transport that the wrapped
//! protocol sees (Twisted's `TLSMemoryBIOProtocol`).
//!
//! Bytes from the lower transport go to [`TlsProtocol::data_received`], into the rustls
//! connection; what it decrypts goes to the wrapped protocol's `data_received`, and what it
//! wants to send (handshake messages, alerts, records) is written to the lower transport at
//! once. The wrapped protocol writes to a [`TlsTransport`], which encrypts and writes to the
//! lower transport. Both halves share one `Rc<TlsTransport>`.
//!
//! Order of events for the wrapped protocol: `make_connection` (at once, before the
//! handshake: writes made then are held and sent when it completes), then
//! `handshake_completed`, `data_received`..., and `connection_lost` once.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::config::TlsVersion;
use super::error::TlsError;
use crate::address::Address;
use crate::error::Error;
use crate::flags::Flags;
use crate::guard::{Delivery, Guard, Panicked};
use crate::protocol::{CloseReason, Conn, ConnEvent, Protocol, Received};
use crate::reactor::{DelayedCall, Reactor, ReactorTime, WeakReactor};
use crate::stream::StreamConnection;
use crate::transport::{Producer, ProtocolCall, ProtocolWrapper, Transport, TransportImpl};

/// Where the connection is in its life: exactly one of these, changed only forwards
/// (the handshake is a flag of its own: a close can be asked for before it completes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Open,
    /// `lose_connection` (`Full`) or `lose_write_connection` (`Half`): close_notify is sent
    /// once nothing holds it back (a producer, data written before the handshake).
    Closing(Close),
    /// close_notify is queued, nothing more is written, and the lower transport is closing
    /// (`Full`) or half-closed (`Half`; reading goes on).
    CloseSent(Close),
    /// A TLS error, a truncated connection, a handshake timeout or a panic is closing the
    /// lower connection; `error` says which.
    Failed,
    /// `abort_connection`.
    Aborted,
    /// The lower connection is gone.
    Closed,
}

/// How far a requested close goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// Both directions.
    Full,
    /// Our sending side only.
    Half,
}

impl Life {
    /// Failed, aborted or closed: nothing more is read, written or delivered.
    fn ending(self) -> bool {
        matches!(self, Life::Failed | Life::Aborted | Life::Closed)
    }

    /// Writes are taken (encrypted and sent).
    fn writable(self) -> bool {
        matches!(self, Life::Open | Life::Closing(_))
    }

    /// The transitions there are: forwards only.
    fn may_become(self, next: Life) -> bool {
        use Close::{Full, Half};
        match (self, next) {
            (Life::Closed, _) | (_, Life::Open) => false,
            (_, Life::Closed) => true,
            (Life::Aborted, _) => false,
            (_, Life::Aborted) => true,
            (Life::Failed, _) => false,
            (_, Life::Failed) => true,
            (Life::Open, Life::Closing(_)) => true,
            (Life::Closing(Half), Life::Closing(Full)) => true,
            (Life::Closing(a), Life::CloseSent(b)) => a == b,
            (Life::CloseSent(Half), Life::CloseSent(Full)) => true,
            _ => false,
        }
    }
}

// Independent state flags.
/// The handshake has completed.
const HANDSHAKE_DONE: u32 = 1 << 0;
/// Feeding received bytes through rustls.
const PROCESSING: u32 = 1 << 2;
/// The wrapped protocol paused reading.
const READ_PAUSED: u32 = 1 << 9;
/// Received data is held (decrypted in rustls or in `pending_in`) until reading resumes.
const PENDING: u32 = 1 << 10;
/// A delivery of held data is queued on the reactor.
const DELIVERY_SCHEDULED: u32 = 1 << 11;
/// The peer's close_notify arrived and the wrapped protocol was told.
const PEER_CLOSED: u32 = 1 << 12;
/// The lower transport reported end of stream while data was held.
const LOWER_EOF: u32 = 1 << 13;
/// The wrapped protocol wrote before the handshake completed.
const WROTE_EARLY: u32 = 1 << 14;
/// Reading resumed inside the wrapped protocol's callback, with no reactor to schedule the
/// delivery of held data on: deliver when the callback returns.
const DELIVER_AFTER_APP: u32 = 1 << 15;

/// The transport a protocol running over TLS writes to. Get at it by downcasting the
/// protocol's [`Transport`] for the negotiated details:
///
/// ```no_run
/// # use twistor::Transport;
/// # fn f(transport: &Transport) {
/// use twistor::tls::TlsTransport;
///
/// if let Some(tls) = transport.downcast_ref::<TlsTransport>() {
///     println!("ALPN: {:?}, version: {:?}", tls.negotiated_protocol(), tls.protocol_version());
/// }
/// # }
/// ```
///
/// Writes are encrypted and written to the lower transport at once (before the handshake
/// completes they are held by rustls, then sent). `lose_connection` sends everything, then
/// TLS `close_notify`, then closes the lower transport; `abort_connection` aborts the lower
/// transport. Pausing it pauses the lower transport, and decrypted data already received is
/// held until it resumes. Producers registered on it are driven by the lower transport's
/// buffer. A TLS error closes the connection with [`CloseReason::Lost`] carrying
/// [`Error::Tls`]; so does a connection closed by the peer without `close_notify`.
pub struct TlsTransport {
    me: Weak<TlsTransport>,
    conn: RefCell<rustls::Connection>,
    lower: RefCell<Option<Transport>>,
    app: Guard<Conn>,
    life: Cell<Life>,
    flags: Cell<u32>,
    /// Received bytes not yet fed to rustls, held while reading is paused.
    pending_in: RefCell<Vec<u8>>,
    /// Why the connection is failing, given to `connection_lost`.
    error: RefCell<Option<Error>>,
    producer: RefCell<Option<Rc<AppProducer>>>,
    reactor: RefCell<Option<WeakReactor>>,
    /// The name a client asked for.
    requested_name: Option<String>,
    /// Told the close reason just before the wrapped protocol is (client factories report it).
    close_sink: Option<Rc<RefCell<Option<CloseReason>>>>,
    /// How long the handshake may take.
    handshake_timeout: Option<Duration>,
    /// Aborts the connection if the handshake has not completed in time.
    handshake_timer: RefCell<Option<DelayedCall>>,
    /// The clock for the handshake timer and `call_later`, if not the lower connection's
    /// reactor.
    time: RefCell<Option<Rc<dyn ReactorTime>>>,
    /// Timers set with `Transport::call_later`, cancelled when the connection is lost.
    timers: RefCell<Vec<DelayedCall>>,
}

/// The protocol that runs on the lower transport and drives a [`TlsTransport`]. Made by the
/// TLS factories, by [`start_tls`](super::start_tls), or directly (with
/// [`server`](TlsProtocol::server) and [`client`](TlsProtocol::client)) to put TLS on any
/// transport, such as the test kit's in-memory pairs.
pub struct TlsProtocol {
    tls: Rc<TlsTransport>,
}

impl TlsProtocol {
    /// TLS server side around `app`.
    pub fn server(
        config: &super::ServerTlsConfig,
        app: Box<dyn Protocol>,
    ) -> Result<TlsProtocol, Error> {
        let conn = super::new_connection(&super::TlsConfig::Server(config.clone()))?;
        Ok(TlsProtocol::new(
            conn,
            Some(app),
            None,
            None,
            config.handshake_timeout(),
        ))
    }

    /// TLS client side around `app`.
    pub fn client(
        config: &super::ClientTlsConfig,
        app: Box<dyn Protocol>,
    ) -> Result<TlsProtocol, Error> {
        let conn = super::new_connection(&super::TlsConfig::Client(config.clone()))?;
        Ok(TlsProtocol::new(
            conn,
            Some(app),
            Some(config.server_name()),
            None,
            config.handshake_timeout(),
        ))
    }

    pub(crate) fn new(
        conn: rustls::Connection,
        app: Option<Box<dyn Protocol>>,
        requested_name: Option<String>,
        close_sink: Option<Rc<RefCell<Option<CloseReason>>>>,
        handshake_timeout: Option<Duration>,
    ) -> TlsProtocol {
        TlsProtocol {
            tls: TlsTransport::new(conn, app, requested_name, close_sink, handshake_timeout),
        }
    }

    /// Times the handshake, and the protocol's [`Transport::call_later`] timers, on `time`
    /// instead of the lower connection's reactor (needed when the lower transport has
    /// none, such as the test kit's in-memory pairs, and for tests on a fake clock). Call
    /// it before the connection is made.
    pub fn with_clock(self, time: impl ReactorTime + 'static) -> TlsProtocol {
        *self.tls.time.borrow_mut() = Some(Rc::new(time));
        self
    }

    pub(crate) fn from_transport(tls: Rc<TlsTransport>) -> TlsProtocol {
        TlsProtocol { tls }
    }

    /// The TLS transport the wrapped protocol writes to.
    pub fn transport(&self) -> Transport {
        Transport::new(self.tls.clone())
    }
}

impl Protocol for TlsProtocol {
    fn make_connection(&mut self, transport: &Transport) {
        self.tls.attach(transport);
        self.tls.dispatch_app(ConnEvent::Make);
        self.tls.flush_tls();
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.tls.receive(data);
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.tls.lower_lost(reason);
    }

    fn read_connection_lost(&mut self, _transport: &Transport) {
        self.tls.lower_eof();
    }

    fn write_connection_lost(&mut self, _transport: &Transport) {
        self.tls.dispatch_app(ConnEvent::WriteLost);
    }

    // The lower transport's own handshake (TLS over TLS) is no business of ours.
    fn handshake_completed(&mut self, _transport: &Transport) {}
}

impl TlsTransport {
    pub(crate) fn new(
        mut conn: rustls::Connection,
        app: Option<Box<dyn Protocol>>,
        requested_name: Option<String>,
        close_sink: Option<Rc<RefCell<Option<CloseReason>>>>,
        handshake_timeout: Option<Duration>,
    ) -> Rc<TlsTransport> {
        // Memory stays bounded by the lower transport's producers, not by refusing writes.
        conn.set_buffer_limit(None);
        Rc::new_cyclic(|me| TlsTransport {
            me: me.clone(),
            conn: RefCell::new(conn),
            lower: RefCell::new(None),
            app: app.map_or_else(Guard::empty, Guard::new),
            life: Cell::new(Life::Open),
            flags: Cell::new(0),
            pending_in: RefCell::new(Vec::new()),
            error: RefCell::new(None),
            producer: RefCell::new(None),
            reactor: RefCell::new(None),
            requested_name,
            close_sink,
            handshake_timeout,
            handshake_timer: RefCell::new(None),
            time: RefCell::new(None),
            timers: RefCell::new(Vec::new()),
        })
    }

    /// The ALPN protocol both sides agreed on, if any.
    pub fn negotiated_protocol(&self) -> Option<Vec<u8>> {
        self.conn.borrow().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The certificates the peer presented, leaf first (`None` before the handshake, or if
    /// the peer is a client that sent none).
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.conn.borrow().peer_certificates().map(<[_]>::to_vec)
    }

    /// On a server, the name the client asked for with SNI; on a client, the name it asked
    /// for.
    pub fn server_name(&self) -> Option<String> {
        match &*self.conn.borrow() {
            rustls::Connection::Server(server) => server.server_name().map(str::to_string),
            rustls::Connection::Client(_) => self.requested_name.clone(),
        }
    }

    /// The negotiated TLS version (once the handshake has got far enough).
    pub fn protocol_version(&self) -> Option<TlsVersion> {
        self.conn
            .borrow()
            .protocol_version()
            .and_then(TlsVersion::from_rustls)
    }

    /// The negotiated cipher suite's IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub fn cipher_suite(&self) -> Option<String> {
        self.conn
            .borrow()
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
    }

    /// Whether the handshake resumed an earlier session (an abbreviated handshake).
    pub fn resumed(&self) -> bool {
        matches!(
            self.conn.borrow().handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// Whether the handshake has completed.
    pub fn handshake_complete(&self) -> bool {
        self.has(HANDSHAKE_DONE)
    }

    /// Whether this is the server side.
    pub fn is_server(&self) -> bool {
        matches!(&*self.conn.borrow(), rustls::Connection::Server(_))
    }

    /// The transport TLS runs over.
    pub fn lower_transport(&self) -> Option<Transport> {
        self.lower.borrow().clone()
    }

    fn handle(&self) -> Option<Transport> {
        let me: Rc<dyn TransportImpl> = self.me.upgrade()?;
        Some(Transport::new(me))
    }

    fn lower(&self) -> Option<Transport> {
        self.lower.borrow().clone()
    }

    /// Sets the lower transport, and finds the reactor to schedule deliveries on.
    pub(crate) fn attach(&self, lower: &Transport) {
        let reactor = if let Some(stream) = lower.downcast_ref::<StreamConnection>() {
            Some(stream.reactor().clone())
        } else if let Some(tls) = lower.downcast_ref::<TlsTransport>() {
            tls.reactor.borrow().clone()
        } else {
            None
        };
        *self.reactor.borrow_mut() = reactor;
        *self.lower.borrow_mut() = Some(lower.clone());
        self.start_handshake_timer();
    }

    /// Schedules `fire` on this connection's clock: the one given with `with_clock`, else
    /// the lower connection's reactor.
    fn schedule(&self, delay: Duration, fire: Box<dyn FnOnce()>) -> Option<DelayedCall> {
        let explicit = self.time.borrow().clone();
        if let Some(time) = explicit {
            return Some(time.call_later_boxed(delay, fire));
        }
        let reactor = self
            .reactor
            .borrow()
            .as_ref()
            .and_then(WeakReactor::upgrade)?;
        Some(reactor.call_later_boxed(delay, fire))
    }

    /// Starts timing the handshake, if it has a time limit and a clock to time it on.
    fn start_handshake_timer(&self) {
        let Some(timeout) = self.handshake_timeout else {
            return;
        };
        if self.has(HANDSHAKE_DONE) || self.handshake_timer.borrow().is_some() {
            return;
        }
        let me = self.me.clone();
        let fire: Box<dyn FnOnce()> = Box::new(move || {
            if let Some(tls) = me.upgrade() {
                tls.handshake_timed_out(timeout);
            }
        });
        if let Some(call) = self.schedule(timeout, fire) {
            *self.handshake_timer.borrow_mut() = Some(call);
        }
    }

    fn cancel_handshake_timer(&self) {
        if let Some(timer) = self.handshake_timer.borrow_mut().take()
            && timer.active()
        {
            let _ = timer.cancel();
        }
    }

    /// The handshake took too long: abort (a peer that stalls may not read either, so
    /// nothing is flushed).
    fn handshake_timed_out(&self, after: Duration) {
        self.handshake_timer.borrow_mut().take();
        if self.has(HANDSHAKE_DONE) || self.life().ending() {
            return;
        }
        let peer = self
            .lower()
            .map(|l| l.peer().to_string())
            .unwrap_or_default();
        tracing::debug!("TLS handshake with {peer} did not complete in {after:?}; aborting");
        self.set_life(Life::Failed);
        *self.error.borrow_mut() = Some(Error::Tls(TlsError::HandshakeTimeout { after }));
        if let Some(lower) = self.lower() {
            lower.abort_connection();
        }
    }

    fn life(&self) -> Life {
        self.life.get()
    }

    fn set_life(&self, next: Life) {
        debug_assert!(self.life().may_become(next), "{:?} → {next:?}", self.life());
        self.life.set(next);
    }

    /// Installs the wrapped protocol (`start_tls`, once the lower transport lets go of it).
    pub(crate) fn set_app(&self, app: Box<dyn Protocol>) {
        self.app.set(app);
    }

    /// Runs one callback of the wrapped protocol under its guard (queued if it is
    /// running); a panic aborts the connection.
    fn dispatch_app(&self, event: impl Delivery<Conn>) {
        let Some(transport) = self.handle() else {
            return;
        };
        if let Err(panicked) = self.app.deliver(&transport, event) {
            self.app_panicked(panicked);
        }
        if self.has(DELIVER_AFTER_APP) && !self.has(PROCESSING) && !self.app.running() {
            self.unset(DELIVER_AFTER_APP);
            self.run_pending();
        }
    }

    /// The wrapped protocol panicked: report it and abort the lower connection; the
    /// protocol hears `connection_lost` with the panic as the reason.
    #[cold]
    fn app_panicked(&self, panicked: Panicked) {
        let peer = self.lower().map(|l| l.peer());
        let message = panicked.report(format_args!(
            "the protocol of the TLS connection from {} (aborting it)",
            peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string())
        ));
        match self.life() {
            Life::Aborted | Life::Closed => return,
            Life::Failed => {}
            _ => self.set_life(Life::Failed),
        }
        *self.error.borrow_mut() = Some(Error::ProtocolPanicked(message));
        if let Some(lower) = self.lower() {
            lower.abort_connection();
        }
    }

    /// Writes whatever rustls has to send to the lower transport.
    pub(crate) fn flush_tls(&self) {
        let Some(lower) = self.lower() else {
            return;
        };
        let mut out = Vec::new();
        {
            let mut conn = self.conn.borrow_mut();
            while conn.wants_write() {
                match conn.write_tls(&mut out) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        if !out.is_empty() {
            lower.write(&out);
        }
    }

    /// Bytes from the lower transport.
    fn receive(&self, data: &[u8]) {
        if self.life().ending() {
            return;
        }
        if self.has(PENDING | READ_PAUSED | PROCESSING) {
            self.pending_in.borrow_mut().extend_from_slice(data);
            self.set(PENDING);
            if self.has(READ_PAUSED)
                && let Some(lower) = self.lower()
            {
                lower.pause_producing();
            }
            return;
        }
        self.process(data);
    }

    /// Feeds `input` through rustls, delivering plaintext, until it is used up or reading
    /// is paused (then the rest is held).
    fn process(&self, input: &[u8]) {
        let _processing = FlagGuard::set(self, PROCESSING);
        let mut input = input;
        let mut plain = [0u8; 16 * 1024];
        loop {
            if !self.deliver_plaintext(&mut plain) {
                self.hold(input);
                return;
            }
            if input.is_empty() || self.has(PEER_CLOSED) || self.life().ending() {
                break;
            }
            let read = self.conn.borrow_mut().read_tls(&mut input);
            match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) => {
                    self.fail(Error::Tls(TlsError::Io(Arc::new(err))));
                    return;
                }
            }
            let processed = self.conn.borrow_mut().process_new_packets();
            if let Err(err) = processed {
                // rustls has queued an alert for the peer: send it before closing.
                self.flush_tls();
                self.fail(tls_error(err));
                return;
            }
            self.flush_tls();
            self.check_handshake();
        }
        drop(_processing);
        // Bytes that arrived while we were busy (they cannot, from a well-behaved lower
        // transport, but keep them in order if they do).
        if self.has(PENDING) && !self.has(READ_PAUSED) {
            self.run_pending();
        } else if self.has(LOWER_EOF) && !self.has(PENDING) {
            self.unset(LOWER_EOF);
            self.lower_eof();
        }
    }

    /// Keeps `rest` (and anything already held after it) until reading resumes, and stops
    /// the lower transport meanwhile.
    fn hold(&self, rest: &[u8]) {
        if !rest.is_empty() {
            let mut pending = self.pending_in.borrow_mut();
            let later = std::mem::take(&mut *pending);
            pending.extend_from_slice(rest);
            pending.extend_from_slice(&later);
        }
        self.set(PENDING);
        if let Some(lower) = self.lower() {
            lower.pause_producing();
        }
    }

    /// Hands decrypted data to the wrapped protocol until there is none, or reading is
    /// paused (returns `false` then).
    fn deliver_plaintext(&self, buf: &mut [u8]) -> bool {
        loop {
            if self.has(READ_PAUSED) {
                return false;
            }
            if self.life().ending() {
                return true;
            }
            let read = self.conn.borrow_mut().reader().read(buf);
            match read {
                Ok(0) => {
                    if !self.has(PEER_CLOSED) {
                        self.set(PEER_CLOSED);
                        self.dispatch_app(ConnEvent::ReadLost);
                    }
                    return true;
                }
                Ok(n) => self.dispatch_app(Received(&buf[..n])),
                Err(_) => return true,
            }
        }
    }

    fn check_handshake(&self) {
        if self.has(HANDSHAKE_DONE) || self.conn.borrow().is_handshaking() {
            return;
        }
        self.set(HANDSHAKE_DONE);
        self.cancel_handshake_timer();
        debug_assert!(self.handshake_timer.borrow().is_none());
        self.flush_tls();
        self.dispatch_app(ConnEvent::Handshake);
        let producer = self.producer.borrow().clone();
        if let Some(producer) = producer {
            producer.release();
        }
        self.maybe_finish_close();
    }

    /// Closes the connection because of a TLS error (reported to the wrapped protocol's
    /// `connection_lost`).
    fn fail(&self, err: Error) {
        if self.life().ending() {
            return;
        }
        tracing::debug!("TLS connection failing: {err}");
        self.set_life(Life::Failed);
        *self.error.borrow_mut() = Some(err);
        if let Some(lower) = self.lower() {
            lower.lose_connection();
        }
    }

    /// The lower transport's peer closed its sending side.
    fn lower_eof(&self) {
        if self.has(PENDING) {
            self.set(LOWER_EOF);
            return;
        }
        if self.has(PEER_CLOSED) || self.life().ending() {
            return;
        }
        if let Life::CloseSent(_) = self.life() {
            // We closed first: the peer's answer may come without close_notify.
            return;
        }
        let why = if self.has(HANDSHAKE_DONE) {
            TlsError::Truncated
        } else {
            TlsError::ClosedDuringHandshake
        };
        self.fail(Error::Tls(why));
    }

    /// The lower connection is gone: tell the producer and the wrapped protocol.
    fn lower_lost(&self, reason: &CloseReason) {
        let was = self.life();
        if was == Life::Closed {
            return;
        }
        self.set_life(Life::Closed);
        self.cancel_handshake_timer();
        let timers = std::mem::take(&mut *self.timers.borrow_mut());
        for timer in timers {
            if timer.active() {
                let _ = timer.cancel();
            }
        }
        // Our own failures abort the lower connection too; only the wrapped protocol's
        // `abort_connection` makes the close an abort.
        let reason = match self.error.borrow_mut().take() {
            Some(err) if was != Life::Aborted => CloseReason::Lost(err),
            _ => reason.clone(),
        };
        let producer = self.producer.borrow_mut().take();
        if let Some(producer) = producer {
            producer.stop();
        }
        if let Some(sink) = &self.close_sink {
            *sink.borrow_mut() = Some(reason.clone());
        }
        if let Some(transport) = self.handle()
            && let Err(panicked) = self.app.finish(&transport, ConnEvent::Lost(reason))
        {
            let _ = panicked.report(format_args!("connection_lost of a TLS connection"));
        }
        // Closed holds nothing that could fire later.
        debug_assert!(
            self.producer.borrow().is_none()
                && self.handshake_timer.borrow().is_none()
                && self.timers.borrow().iter().all(|t| !t.active())
        );
    }

    /// Sends close_notify and closes (or half-closes) the lower transport, once no producer
    /// and no unfinished handshake holds the close back.
    fn maybe_finish_close(&self) {
        let Life::Closing(how) = self.life() else {
            return;
        };
        if self.producer.borrow().is_some() && how == Close::Full {
            return;
        }
        if !self.has(HANDSHAKE_DONE) && self.has(WROTE_EARLY) {
            // What was written is waiting for the handshake: send it first.
            return;
        }
        self.set_life(Life::CloseSent(how));
        self.conn.borrow_mut().send_close_notify();
        self.flush_tls();
        if let Some(lower) = self.lower() {
            match how {
                Close::Full => lower.lose_connection(),
                Close::Half => lower.lose_write_connection(),
            }
        }
    }

    /// Encrypts `data` and writes the records to the lower transport, in one write.
    fn encrypt(&self, data: &[&[u8]]) {
        if data.iter().all(|d| d.is_empty()) {
            return;
        }
        if !self.has(HANDSHAKE_DONE) {
            self.set(WROTE_EARLY);
        }
        let written = {
            let mut conn = self.conn.borrow_mut();
            let mut writer = conn.writer();
            data.iter().try_for_each(|chunk| writer.write_all(chunk))
        };
        if let Err(err) = written {
            self.fail(Error::Tls(TlsError::Io(Arc::new(err))));
            return;
        }
        self.flush_tls();
    }

    fn schedule_delivery(&self) {
        if self.has(DELIVERY_SCHEDULED) {
            return;
        }
        let reactor = self
            .reactor
            .borrow()
            .as_ref()
            .and_then(WeakReactor::upgrade);
        match reactor {
            Some(reactor) => {
                self.set(DELIVERY_SCHEDULED);
                let me = self.me.clone();
                reactor.call_soon(move || {
                    if let Some(tls) = me.upgrade() {
                        tls.unset(DELIVERY_SCHEDULED);
                        tls.run_pending();
                    }
                });
            }
            // No reactor (an in-memory transport): deliver now, unless the wrapped protocol
            // is running, in which case the delivery continues when it returns.
            None if !self.app.running() => self.run_pending(),
            None => self.set(DELIVER_AFTER_APP),
        }
    }

    /// Delivers held data after reading resumed, then resumes the lower transport.
    fn run_pending(&self) {
        if self.has(READ_PAUSED | PROCESSING) || self.life() == Life::Closed {
            return;
        }
        let held = std::mem::take(&mut *self.pending_in.borrow_mut());
        self.unset(PENDING);
        self.process(&held);
        if !self.has(READ_PAUSED | PENDING)
            && let Some(lower) = self.lower()
        {
            lower.resume_producing();
        }
    }
}

impl TransportImpl for TlsTransport {
    fn write(&self, data: &[u8]) {
        if !self.life().writable() {
            tracing::debug!("write of {} bytes after TLS close ignored", data.len());
            return;
        }
        self.encrypt(&[data]);
    }

    fn write_sequence(&self, data: &[&[u8]]) {
        if !self.life().writable() {
            tracing::debug!("write after TLS close ignored");
            return;
        }
        self.encrypt(data);
    }

    fn lose_connection(&self) {
        match self.life() {
            Life::Open | Life::Closing(Close::Half) => {
                self.set_life(Life::Closing(Close::Full));
                self.maybe_finish_close();
            }
            Life::CloseSent(Close::Half) => {
                // close_notify is out and our side shut: now close the rest (Twisted's
                // `_shutdownTLS` does the same).
                self.set_life(Life::CloseSent(Close::Full));
                if let Some(lower) = self.lower() {
                    lower.lose_connection();
                }
            }
            _ => {}
        }
    }

    fn abort_connection(&self) {
        if matches!(self.life(), Life::Aborted | Life::Closed) {
            return;
        }
        self.set_life(Life::Aborted);
        if let Some(lower) = self.lower() {
            lower.abort_connection();
        }
    }

    /// Sends close_notify (after what is queued) and shuts down the lower transport's
    /// sending side; reading goes on.
    fn lose_write_connection(&self) {
        if self.life() != Life::Open {
            return;
        }
        self.set_life(Life::Closing(Close::Half));
        self.maybe_finish_close();
    }

    fn peer(&self) -> Address {
        self.lower()
            .map_or_else(|| Address::Memory("unknown".into()), |l| l.peer())
    }

    fn host(&self) -> Address {
        self.lower()
            .map_or_else(|| Address::Memory("unknown".into()), |l| l.host())
    }

    fn disconnecting(&self) -> bool {
        let closing = match self.life() {
            Life::Open => false,
            Life::Closing(how) | Life::CloseSent(how) => how == Close::Full,
            Life::Failed | Life::Aborted | Life::Closed => true,
        };
        closing || self.lower().is_some_and(|l| l.disconnecting())
    }

    fn buffered(&self) -> usize {
        self.lower().map_or(0, |l| l.buffered())
    }

    fn pause_producing(&self) {
        if self.has(READ_PAUSED) {
            return;
        }
        self.set(READ_PAUSED);
        if let Some(lower) = self.lower() {
            lower.pause_producing();
        }
    }

    fn resume_producing(&self) {
        if !self.has(READ_PAUSED) {
            return;
        }
        self.unset(READ_PAUSED);
        if self.has(PROCESSING) || !self.has(PENDING) {
            // Nothing held (or the loop that holds it is running and will go on).
            if let Some(lower) = self.lower() {
                lower.resume_producing();
            }
            return;
        }
        self.schedule_delivery();
    }

    fn register_producer(&self, producer: Box<dyn Producer>, streaming: bool) -> Result<(), Error> {
        if self.life() == Life::Closed {
            producer.stop_producing();
            return Ok(());
        }
        if self.producer.borrow().is_some() {
            return Err(Error::ProducerAlreadyRegistered);
        }
        // The transport registered as its own producer (an echo): pausing it stops reading,
        // which the handshake needs, so it is never held back.
        let reads_itself = producer
            .as_transport()
            .is_some_and(|t| std::ptr::addr_eq(Rc::as_ptr(t.inner()), self as *const Self));
        let slot = Rc::new(AppProducer {
            producer,
            streaming,
            tls: self.me.clone(),
            held: Cell::new(false),
            stopped: Cell::new(false),
            never_hold: reads_itself,
        });
        *self.producer.borrow_mut() = Some(slot.clone());
        if streaming && !reads_itself && !self.has(HANDSHAKE_DONE) {
            // Nothing can be sent before the handshake: hold it until then.
            slot.held.set(true);
            slot.producer.pause_producing();
        }
        if let Some(lower) = self.lower()
            && let Err(err) = lower.register_producer(Forwarder(slot), streaming)
        {
            self.producer.borrow_mut().take();
            return Err(err);
        }
        Ok(())
    }

    fn unregister_producer(&self) {
        if self.producer.borrow_mut().take().is_none() {
            return;
        }
        if let Some(lower) = self.lower() {
            lower.unregister_producer();
        }
        self.maybe_finish_close();
    }

    fn set_high_water_mark(&self, bytes: usize) {
        if let Some(lower) = self.lower() {
            lower.set_high_water_mark(bytes);
        }
    }

    fn set_tcp_nodelay(&self, enabled: bool) -> io::Result<()> {
        match self.lower() {
            Some(lower) => lower.set_tcp_nodelay(enabled),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn set_tcp_keepalive(&self, enabled: bool) -> io::Result<()> {
        match self.lower() {
            Some(lower) => lower.set_tcp_keepalive(enabled),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn wrap_protocol(&self, wrap: ProtocolWrapper) -> Result<(), Error> {
        if self.life() == Life::Closed {
            return Err(Error::io(io::Error::from(io::ErrorKind::NotConnected)));
        }
        self.app
            .replace(wrap)
            .map_err(|_| Error::Unsupported("wrapping twice in one callback"))
    }

    fn call_later(&self, delay: Duration, call: ProtocolCall) -> Result<DelayedCall, Error> {
        if self.life() == Life::Closed {
            return Err(Error::io(io::Error::from(io::ErrorKind::NotConnected)));
        }
        let me = self.me.clone();
        let fire: Box<dyn FnOnce()> = Box::new(move || {
            if let Some(tls) = me.upgrade()
                && tls.life() != Life::Closed
            {
                tls.dispatch_app(ConnEvent::Call(call));
            }
        });
        let timer = self.schedule(delay, fire).ok_or(Error::Unsupported(
            "call_later over a transport without a clock (see TlsProtocol::with_clock)",
        ))?;
        let mut timers = self.timers.borrow_mut();
        timers.retain(DelayedCall::active);
        timers.push(timer.clone());
        Ok(timer)
    }

    fn reactor(&self) -> Option<Reactor> {
        self.reactor
            .borrow()
            .as_ref()
            .and_then(WeakReactor::upgrade)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The wrapped protocol's producer, as registered on the TLS transport.
struct AppProducer {
    producer: Box<dyn Producer>,
    streaming: bool,
    tls: Weak<TlsTransport>,
    /// Held back until the handshake completes: a streaming producer we paused, or a pull
    /// producer that was asked for data.
    held: Cell<bool>,
    stopped: Cell<bool>,
    /// The producer is the TLS transport itself (see `register_producer`).
    never_hold: bool,
}

impl AppProducer {
    /// The handshake is done: let the producer go.
    fn release(&self) {
        if self.held.replace(false) && !self.stopped.get() {
            self.producer.resume_producing();
        }
    }

    fn stop(&self) {
        if !self.stopped.replace(true) {
            self.producer.stop_producing();
        }
    }

    fn handshake_done(&self) -> bool {
        self.tls.upgrade().is_some_and(|t| t.has(HANDSHAKE_DONE))
    }
}

/// Registered on the lower transport for the wrapped protocol's producer: the lower
/// transport's buffer (of encrypted bytes) decides when it runs.
struct Forwarder(Rc<AppProducer>);

impl Producer for Forwarder {
    fn pause_producing(&self) {
        if !self.0.stopped.get() {
            self.0.producer.pause_producing();
        }
    }

    fn resume_producing(&self) {
        if self.0.stopped.get() {
            return;
        }
        if !self.0.handshake_done() && !self.0.never_hold {
            self.0.held.set(true);
            if self.0.streaming {
                self.0.producer.pause_producing();
            }
            return;
        }
        self.0.producer.resume_producing();
    }

    fn stop_producing(&self) {
        self.0.stop();
    }
}

/// Sets a flag for as long as it lives (so a panic passing through cannot leave it set).
struct FlagGuard<'a> {
    tls: &'a TlsTransport,
    flag: u32,
}

impl<'a> FlagGuard<'a> {
    fn set(tls: &'a TlsTransport, flag: u32) -> FlagGuard<'a> {
        tls.set(flag);
        FlagGuard { tls, flag }
    }
}

impl Drop for FlagGuard<'_> {
    fn drop(&mut self) {
        self.tls.unset(self.flag);
    }
}

/// A rustls error as an engine error, saying plainly what went wrong.
fn tls_error(err: rustls::Error) -> Error {
    Error::Tls(TlsError::from_rustls(err))
}

impl crate::flags::Flags for TlsTransport {
    fn flags(&self) -> &std::cell::Cell<u32> {
        &self.flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{ClientTlsConfig, Identity, ServerTlsConfig};

    type Log = Rc<RefCell<Vec<String>>>;

    /// One side's lower transport: what it is given to write goes at once to the other
    /// side's TLS layer (a synchronous loopback), so the peer's answer arrives while this
    /// side's protocol is still in the callback that wrote.
    struct Loopback {
        peer: RefCell<Option<Rc<TlsTransport>>>,
    }

    impl TransportImpl for Loopback {
        fn write(&self, data: &[u8]) {
            let peer = self.peer.borrow().clone();
            if let Some(peer) = peer {
                peer.receive(data);
            }
        }
        fn lose_connection(&self) {}
        fn abort_connection(&self) {}
        fn peer(&self) -> Address {
            Address::Memory("loopback".into())
        }
        fn host(&self) -> Address {
            Address::Memory("loopback".into())
        }
        fn disconnecting(&self) -> bool {
            false
        }
        fn buffered(&self) -> usize {
            0
        }
        fn pause_producing(&self) {}
        fn resume_producing(&self) {}
        fn register_producer(&self, _: Box<dyn Producer>, _: bool) -> Result<(), Error> {
            Ok(())
        }
        fn unregister_producer(&self) {}
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    /// Writes a greeting as soon as it is connected, and records what it hears.
    struct Greeter(Log);

    impl Protocol for Greeter {
        fn connection_made(&mut self, t: &Transport) {
            self.0.borrow_mut().push("made".into());
            t.write(b"hello");
            self.0.borrow_mut().push("wrote".into());
        }
        fn handshake_completed(&mut self, _: &Transport) {
            self.0.borrow_mut().push("handshake".into());
        }
        fn data_received(&mut self, _: &Transport, data: &[u8]) {
            let text = String::from_utf8_lossy(data);
            self.0.borrow_mut().push(format!("data {text}"));
        }
    }

    struct Echo;

    impl Protocol for Echo {
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            t.write(data);
        }
    }

    /// The client's greeting drives the whole handshake, and the server's echo, through
    /// the synchronous loopback while the client is still in `connection_made`: its
    /// `handshake_completed` and the echoed bytes must follow that callback, in order.
    /// (They used to be dropped: "TLS protocol callback re-entered; event dropped".)
    #[test]
    fn events_for_a_running_protocol_follow_its_callback() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let identity = Identity::from_pem(
            cert.signing_key.serialize_pem().as_bytes(),
            cert.cert.pem().as_bytes(),
        )
        .unwrap();
        let server_config = ServerTlsConfig::new(identity);
        let client_config = ClientTlsConfig::new("localhost")
            .unwrap()
            .dangerous_accept_any_certificate();
        let log: Log = Rc::default();
        let mut server = TlsProtocol::server(&server_config, Box::new(Echo)).unwrap();
        let mut client =
            TlsProtocol::client(&client_config, Box::new(Greeter(log.clone()))).unwrap();
        let to_server = Rc::new(Loopback {
            peer: RefCell::new(Some(server.tls.clone())),
        });
        let to_client = Rc::new(Loopback {
            peer: RefCell::new(Some(client.tls.clone())),
        });
        server.make_connection(&Transport::new(to_client));
        client.make_connection(&Transport::new(to_server));
        assert_eq!(
            *log.borrow(),
            ["made", "wrote", "handshake", "data hello"],
            "the handshake and the echo arrived during connection_made"
        );
    }
}
