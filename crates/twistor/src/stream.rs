//! A connected stream socket (TCP or Unix) as a transport: the engine's hot path.
//!
//! Reading: on each readiness edge the connection reads into the reactor's one shared buffer
//! until a short read (the socket is drained; with edge-triggered epoll a new edge comes when
//! more data arrives) and hands each chunk to the protocol.
//!
//! Writing: `write` appends to the connection's output buffer, which exists only while it
//! holds unsent bytes. Writes made while the connection's own protocol is running are sent
//! right after the callback returns, writes made from elsewhere at the end of the reactor's
//! turn: either way one `send` per connection per turn, so pipelined replies coalesce. Only
//! after `EAGAIN` does the connection wait for a writable edge.
//!
//! Closing: `lose_connection` flushes, then closes; `abort_connection` drops the buffer and
//! closes. Either way `connection_lost` runs from the reactor, never from inside another of
//! the protocol's own callbacks.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::rc::{Rc, Weak};
use std::time::Duration;

use socket2::SockRef;

use crate::address::Address;
use crate::error::Error;
use crate::flags::Flags;
use crate::guard::{Delivery, Guard, Panicked};
use crate::outbuf::{OutBuf, ProducerSlot};
use crate::protocol::{CloseReason, Conn, ConnEvent, Protocol, Received};
use crate::reactor::{DelayedCall, IoBuffers, Reactor, Readiness, Source, WeakReactor};
use crate::sys::{self, FdCell};
use crate::transport::{
    DEFAULT_HIGH_WATER_MARK, Producer, ProtocolCall, ProtocolWrapper, Transport, TransportImpl,
};
use crate::unstable::ReactorInternals;

/// Which family a stream socket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Tcp,
    Unix,
}

impl StreamKind {
    /// The kind of a socket bound to `local`.
    pub(crate) fn of(local: &rustix::net::SocketAddrAny) -> Option<StreamKind> {
        if sys::addr::is_ip(local) {
            Some(StreamKind::Tcp)
        } else if sys::addr::is_unix(local) {
            Some(StreamKind::Unix)
        } else {
            None
        }
    }
}

/// Told when a connection ends, after its protocol (client connectors use it to notify
/// their factory).
pub(crate) trait ConnectionOwner {
    fn connection_lost(&self, reason: &CloseReason);
}

// The connection's state is one word: independent bits (below), and two exclusive states,
// `Life` and `Output`, kept in fields of the same word so that the hot path tests them
// together with the bits, in one mask. Only `life`/`set_life` and `output`/`set_output`
// touch the fields (the masks below name the few combinations the hot path tests).

/// Where the connection is in its life: exactly one of these, changed only forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// Open (the peer may have half-closed: that is `READ_EOF`).
    Open = 0,
    /// `lose_connection`: close once the buffer is empty (and a pull producer has
    /// unregistered). Writes are still taken.
    Disconnecting = 1,
    /// `abort_connection` (or a panic): close at the next flush, dropping the buffer.
    Aborting = 2,
    /// Gone: the socket is closed and the protocol has heard `connection_lost`.
    Closed = 3,
}

impl Life {
    fn from_bits(bits: u32) -> Life {
        match bits & 0b11 {
            0 => Life::Open,
            1 => Life::Disconnecting,
            2 => Life::Aborting,
            _ => Life::Closed,
        }
    }

    /// The transitions there are: forwards only, and `Disconnecting` only from `Open`.
    fn may_become(self, next: Life) -> bool {
        match next {
            Life::Open => false,
            Life::Disconnecting => self == Life::Open,
            Life::Aborting => matches!(self, Life::Open | Life::Disconnecting),
            Life::Closed => self != Life::Closed,
        }
    }
}

/// Our sending side (half-close), independent of `Life` until the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Open = 0,
    /// `lose_write_connection`: shut down our sending side once the buffer is empty.
    ShutRequested = 1,
    /// Shut down (`SHUT_WR`): nothing more is written.
    Shut = 2,
}

impl Output {
    fn from_bits(bits: u32) -> Output {
        match bits & 0b11 {
            0 => Output::Open,
            1 => Output::ShutRequested,
            _ => Output::Shut,
        }
    }
}

const LIFE_SHIFT: u32 = 24;
/// The `Life` field.
const LIFE: u32 = 0b11 << LIFE_SHIFT;
/// Set in `Aborting` and `Closed` alone: nothing more is sent.
const LIFE_ENDING: u32 = (Life::Aborting as u32) << LIFE_SHIFT;
const OUTPUT_SHIFT: u32 = 26;
const OUTPUT: u32 = 0b11 << OUTPUT_SHIFT;
/// `Output::ShutRequested`.
const OUTPUT_SHUT_REQUESTED: u32 = (Output::ShutRequested as u32) << OUTPUT_SHIFT;
/// `Output::Shut`.
const OUTPUT_SHUT: u32 = (Output::Shut as u32) << OUTPUT_SHIFT;
// The masks mean what they say, and the fields sit above every independent bit.
const _: () = assert!(
    Life::Closed as u32 & Life::Aborting as u32 != 0
        && Life::Disconnecting as u32 & Life::Aborting as u32 == 0
        && OUTPUT_SHUT_REQUESTED & OUTPUT_SHUT == 0
        && PEER_CLOSED < 1 << LIFE_SHIFT
);

// Independent bits.
/// The protocol asked us to stop reading.
const READ_PAUSED: u32 = 1 << 0;
/// Reading stopped before the socket was drained; read again when resumed.
const READ_PENDING: u32 = 1 << 1;
/// The peer closed its sending side.
const READ_EOF: u32 = 1 << 2;
/// `send` said `EAGAIN`; wait for a writable edge.
const WRITE_BLOCKED: u32 = 1 << 3;
/// The connection's own protocol is running; writes are flushed when it returns.
const IN_DISPATCH: u32 = 1 << 4;
/// Queued in the reactor's flush list.
const DIRTY: u32 = 1 << 5;
/// This connection's latest output is in the thread's staging buffer, not in `out`.
const STAGED: u32 = 1 << 11;
/// A producer is registered.
const HAS_PRODUCER: u32 = 1 << 12;
/// File descriptors wait to be sent with the next byte (Unix sockets).
const FDS_PENDING: u32 = 1 << 14;
/// The registered producer is a pull producer (it must unregister before a close).
const PULL_PRODUCER: u32 = 1 << 16;
/// The registered streaming producer is paused (waiting for the buffer to drain).
const PRODUCER_PAUSED: u32 = 1 << 17;
/// Epoll has reported the peer's close (or an error): once reading resumes, read through
/// to the end of the stream, since no new edge will say so again.
const PEER_CLOSED: u32 = 1 << 19;
/// The registered producer is this transport itself (reading pauses while the buffer is
/// full); kept as a flag, with no producer slot.
const SELF_PRODUCER: u32 = 1 << 18;
/// `out` holds bytes (kept as a flag so the hot path need not look inside the `RefCell`).
const HAS_OUT: u32 = 1 << 13;

/// Writes bigger than this bypass the staging buffer.
const STAGING_LIMIT: usize = 256 * 1024;

/// The rarely used parts of a connection, kept out of line so an idle connection stays
/// small.
#[derive(Default)]
struct Extras {
    producer: Option<ProducerSlot>,
    /// Descriptors to send with the next byte (Unix sockets).
    fds_out: Vec<OwnedFd>,
    /// Why the connection is being aborted, if not by `abort_connection`.
    abort_reason: Option<CloseReason>,
    /// Timers set with `Transport::call_later`, cancelled when the connection closes
    /// (those that have run are pruned as new ones come).
    timers: Vec<DelayedCall>,
}

/// One connected stream socket and its protocol.
pub(crate) struct StreamConnection {
    /// Closed by `close` (the connection may outlive it, in handles held elsewhere).
    fd: FdCell,
    kind: StreamKind,
    token: Cell<usize>,
    flags: Cell<u32>,
    /// The high-water mark, in bytes (a `u32` keeps the connection small; see
    /// `set_high_water_mark`).
    high_water: Cell<u32>,
    out: RefCell<OutBuf>,
    protocol: Guard<Conn>,
    /// State most connections never need, allocated on first use.
    extras: RefCell<Option<Box<Extras>>>,
    peer: Address,
    reactor: WeakReactor,
    io: Rc<IoBuffers>,
    me: Weak<StreamConnection>,
    /// Taken when the connection closes (it breaks the owner ↔ connection cycle).
    owner: Cell<Option<Rc<dyn ConnectionOwner>>>,
}

impl StreamConnection {
    /// Wraps a connected, non-blocking socket that is already registered under `token`
    /// (or will be, with [`set_token`](Self::set_token)).
    pub(crate) fn new(
        reactor: &Reactor,
        fd: OwnedFd,
        kind: StreamKind,
        peer: Address,
        protocol: Box<dyn Protocol>,
        owner: Option<Rc<dyn ConnectionOwner>>,
    ) -> Rc<StreamConnection> {
        Rc::new_cyclic(|me| StreamConnection {
            fd: FdCell::new(fd),
            kind,
            token: Cell::new(usize::MAX),
            flags: Cell::new(0),
            high_water: Cell::new(DEFAULT_HIGH_WATER_MARK as u32),
            out: RefCell::new(OutBuf::default()),
            protocol: Guard::new(protocol),
            extras: RefCell::new(None),
            peer,
            reactor: reactor.downgrade(),
            io: reactor.io_buffers(),
            me: me.clone(),
            owner: Cell::new(owner),
        })
    }

    pub(crate) fn set_token(&self, token: usize) {
        self.token.set(token);
    }

    /// Starts the protocol: `make_connection`, then whatever it wrote is flushed.
    pub(crate) fn start(self: &Rc<Self>, reactor: &Reactor) {
        let transport = Transport::new(self.clone());
        self.dispatch(&transport, ConnEvent::Make);
        self.flush_now(reactor);
    }

    /// Registers an accepted socket and starts its protocol.
    pub(crate) fn start_accepted(
        reactor: &Reactor,
        fd: OwnedFd,
        kind: StreamKind,
        peer: Address,
        protocol: Box<dyn Protocol>,
    ) {
        let conn = StreamConnection::new(reactor, fd, kind, peer, protocol, None);
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        let registered = conn
            .fd
            .with(|fd| reactor.register(fd, interest, conn.clone()))
            .unwrap_or_else(|| Err(sys_closed()));
        match registered {
            Ok(token) => conn.set_token(token),
            Err(err) => {
                tracing::error!("could not register accepted connection: {err}");
                // The connection never started: drop it, closing the socket.
                conn.set_life(Life::Closed);
                conn.fd.close();
                conn.protocol.take();
                return;
            }
        }
        conn.start(reactor);
    }

    /// The reactor this connection runs on (TLS layered on it schedules work there).
    pub(crate) fn reactor(&self) -> &WeakReactor {
        &self.reactor
    }

    /// A handle on this connection as a transport.
    pub(crate) fn transport(self: &Rc<Self>) -> Transport {
        Transport::new(self.clone())
    }

    /// Makes sure queued work is done soon: right after the running callback if the
    /// connection's own protocol is running, else at the end of the reactor's turn.
    fn request_flush(&self) {
        if self.has(IN_DISPATCH | DIRTY) || self.is_closed() {
            return;
        }
        if let (Some(reactor), Some(me)) = (self.reactor.upgrade(), self.me.upgrade()) {
            self.set(DIRTY);
            reactor.mark_dirty(me);
        }
    }

    /// Runs one protocol callback under the guard (queued if the protocol is running).
    #[inline]
    fn dispatch(&self, transport: &Transport, event: impl Delivery<Conn>) {
        let outer = self.has(IN_DISPATCH);
        self.set(IN_DISPATCH);
        let result = self.protocol.deliver(transport, event);
        if !outer {
            self.unset(IN_DISPATCH);
        }
        if let Err(panicked) = result {
            self.panicked(panicked);
        }
    }

    /// A timer set with `call_later` is due: run it under the guard, then send what it
    /// wrote.
    fn timer_fired(self: &Rc<Self>, reactor: &Reactor, call: ProtocolCall) {
        if self.is_closed() {
            return;
        }
        let transport = Transport::new(self.clone());
        self.dispatch(&transport, ConnEvent::Call(call));
        self.flush_now(reactor);
    }

    /// A callback panicked: report it and abort the connection.
    #[cold]
    #[inline(never)]
    fn panicked(&self, panicked: Panicked) {
        let message = panicked.report(format_args!(
            "the protocol of the connection from {} (aborting it)",
            self.peer
        ));
        if self.is_closed() {
            return;
        }
        self.extras().abort_reason = Some(CloseReason::Lost(Error::ProtocolPanicked(message)));
        if self.life() != Life::Aborting {
            self.set_life(Life::Aborting);
        }
        self.out_clear();
        self.request_flush();
    }

    /// Reads until the socket is drained (or reading should stop), feeding the protocol.
    fn do_read(self: &Rc<Self>, reactor: &Reactor, until_eof: bool) {
        let transport = Transport::new(self.clone());
        loop {
            let flags = self.flags.get();
            // Paused, at end of stream, or no longer `Life::Open`.
            if flags & (READ_PAUSED | READ_EOF | LIFE) != 0 {
                if flags & READ_PAUSED != 0 {
                    self.set(READ_PENDING);
                }
                return;
            }
            let Ok(mut buf) = self.io.read.try_borrow_mut() else {
                // Reading re-entered (it cannot, from the loop): try again at the flush.
                self.set(READ_PENDING);
                self.request_flush();
                return;
            };
            let read = if self.kind == StreamKind::Tcp {
                self.fd.read(&mut buf)
            } else {
                self.recv_with_fds(&mut buf, &transport)
            };
            let n = match read {
                Ok(Some(n)) if n > 0 => n,
                other => {
                    drop(buf);
                    self.read_ended(reactor, &transport, other);
                    return;
                }
            };
            let drained = n < buf.len() && !until_eof;
            self.dispatch(&transport, Received(&buf[..n]));
            if drained {
                return;
            }
        }
    }

    /// `recvmsg` for Unix sockets: descriptors that came with the bytes go to the protocol
    /// first (Twisted's order), then the caller hands it the bytes.
    fn recv_with_fds(&self, buf: &mut [u8], transport: &Transport) -> io::Result<Option<usize>> {
        let mut fds = Vec::new();
        let n = self.fd.recv_with_fds(buf, &mut fds);
        for fd in fds {
            self.dispatch(transport, ConnEvent::Fd(fd));
        }
        n
    }

    /// A read found no bytes: end of stream (`Some(0)`), nothing to read (`None`), or an
    /// error.
    #[cold]
    #[inline(never)]
    fn read_ended(
        self: &Rc<Self>,
        reactor: &Reactor,
        transport: &Transport,
        read: io::Result<Option<usize>>,
    ) {
        match read {
            Ok(Some(_)) => self.read_eof(reactor, transport),
            Ok(None) => {}
            Err(err) => self.close(reactor, CloseReason::Lost(Error::io(err))),
        }
    }

    /// Epoll reported an error while reading was paused: close with the socket's error.
    #[cold]
    fn broken_while_paused(self: &Rc<Self>, reactor: &Reactor) {
        let err = match self.with_sock(|s| s.take_error()) {
            Ok(Some(err)) => err,
            Ok(None) => io::Error::from(io::ErrorKind::ConnectionReset),
            Err(err) => err,
        };
        self.close(reactor, CloseReason::Lost(Error::io(err)));
    }

    /// The peer closed its sending side.
    fn read_eof(self: &Rc<Self>, reactor: &Reactor, transport: &Transport) {
        self.set(READ_EOF);
        if self.output() == Output::Shut {
            self.close(reactor, CloseReason::Done);
            return;
        }
        self.dispatch(transport, ConnEvent::ReadLost);
    }

    /// Sends what is queued, runs the producer, and closes if a close is due.
    #[inline(always)]
    fn flush_now(self: &Rc<Self>, reactor: &Reactor) {
        if self.has(STAGED) {
            self.send_staged(reactor);
        }
        let flags = self.flags.get();
        // A streaming producer that is not paused needs nothing from a flush, nor does an
        // open connection with no half-close to make.
        let busy = LIFE | OUTPUT_SHUT_REQUESTED;
        let idle = flags & (busy | PULL_PRODUCER | PRODUCER_PAUSED) == 0;
        if idle && flags & (WRITE_BLOCKED | HAS_OUT) != HAS_OUT {
            return;
        }
        self.flush_slow(reactor);
    }

    fn flush_slow(self: &Rc<Self>, reactor: &Reactor) {
        self.debug_invariants();
        match self.life() {
            Life::Closed => return,
            Life::Aborting => {
                let reason = self
                    .extras
                    .borrow_mut()
                    .as_mut()
                    .and_then(|e| e.abort_reason.take())
                    .unwrap_or(CloseReason::Aborted);
                self.close(reactor, reason);
                return;
            }
            Life::Open | Life::Disconnecting => {}
        }
        if !self.has(WRITE_BLOCKED)
            && let Err(err) = self.send_buffered()
        {
            self.close(reactor, CloseReason::Lost(Error::io(err)));
            return;
        }
        let buffered = self.out.borrow().len();
        self.run_producer(buffered);
        // The producer may have written (and asked to close): send that before closing.
        if buffered > 0 || self.has(HAS_OUT) || self.is_closed() {
            return;
        }
        // As in Twisted, a pending close waits for a pull producer to unregister, not for a
        // streaming one.
        if self.life() == Life::Disconnecting && !self.has(PULL_PRODUCER) {
            self.close(reactor, CloseReason::Done);
        } else if self.output() == Output::ShutRequested {
            self.shut_write(reactor);
        }
    }

    /// Appends `data` to the reactor's staging buffer, if this connection may use it: its
    /// own buffer is empty (so order is kept) and no other connection's bytes are staged.
    /// Returns how many bytes are staged now (all this connection has buffered), or 0 if
    /// `data` could not be staged.
    #[inline]
    fn stage(&self, data: &[u8]) -> usize {
        let io = &*self.io;
        let me = self as *const StreamConnection as *const ();
        let owner = io.staging_owner.get();
        if owner != me && (!owner.is_null() || self.has(HAS_OUT)) {
            return 0;
        }
        let Ok(mut buf) = io.staging.try_borrow_mut() else {
            return 0;
        };
        if buf.len() + data.len() > STAGING_LIMIT {
            return 0;
        }
        buf.extend_from_slice(data);
        io.staging_owner.set(me);
        self.set(STAGED);
        buf.len()
    }

    /// Sends the staged bytes; what the socket does not take moves to `out`.
    #[inline]
    fn send_staged(self: &Rc<Self>, reactor: &Reactor) {
        self.unset(STAGED);
        let io = &*self.io;
        io.staging_owner.set(std::ptr::null());
        let mut buf = io.staging.borrow_mut();
        if self.flags.get() & LIFE_ENDING == 0 {
            let sent = self.fd.send(&buf);
            if !matches!(sent, Ok(n) if n == buf.len()) {
                let result = self.send_staged_rest(&buf, sent);
                buf.clear();
                drop(buf);
                if let Err(err) = result {
                    self.close(reactor, CloseReason::Lost(Error::io(err)));
                }
                return;
            }
        }
        buf.clear();
    }

    /// The first `send` of staged bytes took less than all (`first`): send more or move
    /// the rest to `out`.
    #[cold]
    #[inline(never)]
    fn send_staged_rest(&self, buf: &[u8], first: io::Result<usize>) -> io::Result<()> {
        let mut sent = first?;
        if sent > 0 {
            sent += send_some(&self.fd, &buf[sent..])?;
        }
        if sent < buf.len() {
            self.set(WRITE_BLOCKED);
            self.out_extend(&buf[sent..]);
        }
        Ok(())
    }

    /// Moves staged bytes to `out` (a write that cannot be staged must follow them).
    fn unstage(&self) {
        if !self.has(STAGED) {
            return;
        }
        self.unset(STAGED);
        self.io.staging_owner.set(std::ptr::null());
        let mut buf = self.io.staging.borrow_mut();
        self.out_extend(&buf);
        buf.clear();
    }

    /// Forgets this connection's staged bytes (abort, close).
    fn drop_staged(&self) {
        if !self.has(STAGED) {
            return;
        }
        self.unset(STAGED);
        self.io.staging_owner.set(std::ptr::null());
        self.io.staging.borrow_mut().clear();
    }

    fn staged_len(&self) -> usize {
        if !self.has(STAGED) {
            return 0;
        }
        self.io.staging.borrow().len()
    }

    fn out_extend(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.out.borrow_mut().extend(bytes);
            self.set(HAS_OUT);
        }
    }

    fn out_clear(&self) {
        self.out.borrow_mut().clear();
        self.unset(HAS_OUT);
    }

    /// Every write but the hot path's.
    #[inline(never)]
    fn write_slow(&self, data: &[u8]) {
        let flags = self.flags.get();
        if !self.accepts_writes() {
            tracing::debug!("write of {} bytes after close ignored", data.len());
            return;
        }
        if data.is_empty() {
            return;
        }
        if flags & (IN_DISPATCH | WRITE_BLOCKED | FDS_PENDING) == IN_DISPATCH
            && self.stage(data) != 0
        {
            self.check_high_water();
            return;
        }
        self.unstage();
        self.out_extend(data);
        self.check_high_water();
        self.request_flush();
    }

    /// Pauses a streaming producer once the buffered bytes pass the high-water mark.
    fn check_high_water(&self) {
        if self.has(HAS_PRODUCER) && self.buffered() > self.high_water() {
            self.pause_producer_if_streaming();
        }
    }

    /// Sends the buffer until it is empty or the socket is full.
    fn send_buffered(&self) -> io::Result<()> {
        let mut out = self.out.borrow_mut();
        if out.len() == 0 {
            return Ok(());
        }
        if self.has(FDS_PENDING) {
            let fds = std::mem::take(&mut self.extras().fds_out);
            match self.fd.send_with_fds(&out.pending()[..1], &fds) {
                Ok(1) => {
                    out.consume(1);
                    self.unset(FDS_PENDING);
                }
                Ok(_) => {
                    self.extras().fds_out = fds;
                    self.set(WRITE_BLOCKED);
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
            if out.len() == 0 {
                self.unset(HAS_OUT);
                return Ok(());
            }
        }
        let sent = send_some(&self.fd, out.pending())?;
        out.consume(sent);
        if out.len() > 0 {
            self.set(WRITE_BLOCKED);
        } else {
            self.unset(HAS_OUT);
        }
        Ok(())
    }

    /// Resumes a paused streaming producer once the buffer has drained to half the
    /// high-water mark, or asks a pull producer for more once it is empty.
    fn run_producer(&self, buffered: usize) {
        if self.has(SELF_PRODUCER) {
            if self.has(PRODUCER_PAUSED) && buffered <= self.high_water() / 2 {
                self.unset(PRODUCER_PAUSED);
                TransportImpl::resume_producing(self);
            }
            return;
        }
        let producer = self
            .extras
            .borrow_mut()
            .as_mut()
            .and_then(|e| e.producer.as_mut())
            .and_then(|slot| slot.resume_if_due(buffered, self.high_water()));
        let Some(producer) = producer else {
            return;
        };
        self.unset(PRODUCER_PAUSED);
        producer.resume_producing();
    }

    fn shut_write(self: &Rc<Self>, reactor: &Reactor) {
        // Only once everything queued has been sent (it is not taken any more after this).
        debug_assert!(self.out.borrow().len() == 0 && !self.has(STAGED));
        self.set_output(Output::Shut);
        if let Some(Err(err)) = self.fd.with(sys::socket::shutdown_write) {
            tracing::debug!("shutdown(SHUT_WR) failed: {err}");
        }
        if self.has(READ_EOF) {
            self.close(reactor, CloseReason::Done);
            return;
        }
        let transport = Transport::new(self.clone());
        self.dispatch(&transport, ConnEvent::WriteLost);
        // Whatever the callback asked for (a close, say) is done at the end of the turn:
        // this runs from a flush, not from a read that flushes after it.
        self.request_flush();
    }

    /// Closes the socket and tells the producer, the protocol and the owner, once.
    fn close(self: &Rc<Self>, reactor: &Reactor, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.set_life(Life::Closed);
        // Closing the socket removes it from epoll, with no `epoll_ctl` on this path. (An
        // adopted socket whose caller keeps a duplicate stays in epoll until that closes;
        // its events carry a stale token, which the reactor drops.)
        reactor.deregister(self.token.get(), None);
        self.fd.close();
        self.out_clear();
        self.drop_staged();
        self.unset(HAS_PRODUCER | PULL_PRODUCER | PRODUCER_PAUSED | SELF_PRODUCER);
        let (producer, timers) = match self.extras.borrow_mut().as_mut() {
            Some(e) => (e.producer.take(), std::mem::take(&mut e.timers)),
            None => (None, Vec::new()),
        };
        for timer in timers {
            if timer.active() {
                let _ = timer.cancel();
            }
        }
        if let Some(slot) = producer {
            // User code, and the close must go on whatever it does.
            caught("stop_producing of a producer", &self.peer, || {
                slot.producer.stop_producing()
            });
        }
        let transport = Transport::new(self.clone());
        if let Err(panicked) = self
            .protocol
            .finish(&transport, ConnEvent::Lost(reason.clone()))
        {
            let _ = panicked.report(format_args!(
                "connection_lost of the connection from {}",
                self.peer
            ));
        }
        if let Some(owner) = self.owner.take() {
            caught(
                "client_connection_lost of a client factory",
                &self.peer,
                || owner.connection_lost(&reason),
            );
        }
        self.debug_invariants();
    }

    fn pause_producer_if_streaming(&self) {
        if self.has(SELF_PRODUCER) {
            if !self.has(PRODUCER_PAUSED) {
                self.set(PRODUCER_PAUSED);
                TransportImpl::pause_producing(self);
            }
            return;
        }
        let producer = self
            .extras
            .borrow_mut()
            .as_mut()
            .and_then(|e| e.producer.as_mut())
            .and_then(ProducerSlot::pause);
        let Some(producer) = producer else {
            return;
        };
        self.set(PRODUCER_PAUSED);
        producer.pause_producing();
    }

    /// Checks (in debug builds) what the comments on the state promise.
    fn debug_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let flags = self.flags.get();
        assert!(
            flags & (PULL_PRODUCER | PRODUCER_PAUSED | SELF_PRODUCER) == 0
                || flags & HAS_PRODUCER != 0,
            "producer bits without a producer: {flags:#x}"
        );
        assert!(flags & (PULL_PRODUCER | SELF_PRODUCER) != PULL_PRODUCER | SELF_PRODUCER);
        if let Ok(out) = self.out.try_borrow() {
            assert_eq!(
                flags & HAS_OUT != 0,
                out.len() > 0,
                "HAS_OUT is whether out has bytes"
            );
        }
        if flags & STAGED != 0 {
            let me = self as *const StreamConnection as *const ();
            assert_eq!(
                self.io.staging_owner.get(),
                me,
                "STAGED bytes are this connection's"
            );
        }
        if self.output() == Output::Shut {
            assert!(
                flags & (HAS_OUT | STAGED) == 0,
                "nothing is queued once shut"
            );
        }
        if self.is_closed() {
            assert!(
                flags & (HAS_OUT | STAGED | HAS_PRODUCER) == 0,
                "a closed connection holds nothing: {flags:#x}"
            );
            assert!(!self.fd.is_open(), "a closed connection's socket is closed");
        }
    }

    #[inline]
    fn life(&self) -> Life {
        Life::from_bits(self.flags.get() >> LIFE_SHIFT)
    }

    fn set_life(&self, next: Life) {
        debug_assert!(self.life().may_become(next), "{:?} → {next:?}", self.life());
        let flags = self.flags.get() & !LIFE;
        self.flags.set(flags | (next as u32) << LIFE_SHIFT);
    }

    #[inline]
    fn is_closed(&self) -> bool {
        self.flags.get() & LIFE == LIFE
    }

    fn output(&self) -> Output {
        Output::from_bits(self.flags.get() >> OUTPUT_SHIFT)
    }

    fn set_output(&self, next: Output) {
        debug_assert!(
            next as u8 == self.output() as u8 + 1,
            "{:?} → {next:?}",
            self.output()
        );
        let flags = self.flags.get() & !OUTPUT;
        self.flags.set(flags | (next as u32) << OUTPUT_SHIFT);
    }

    /// Whether writes are taken: not aborting or closed, and not shut for writing.
    #[inline]
    fn accepts_writes(&self) -> bool {
        self.flags.get() & (LIFE_ENDING | OUTPUT_SHUT) == 0
    }

    #[inline]
    fn high_water(&self) -> usize {
        self.high_water.get() as usize
    }

    /// The rarely used state, created on first use.
    fn extras(&self) -> std::cell::RefMut<'_, Extras> {
        std::cell::RefMut::map(self.extras.borrow_mut(), |e| {
            &mut **e.get_or_insert_with(Box::default)
        })
    }

    /// Runs a socket option call on an open TCP socket.
    fn with_tcp_socket(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<()>) -> io::Result<()> {
        if self.kind != StreamKind::Tcp {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a TCP transport",
            ));
        }
        if self.is_closed() {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        }
        self.with_sock(f)
    }

    fn with_sock<R>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<R>) -> io::Result<R> {
        self.fd
            .with(|fd| f(SockRef::from(&fd)))
            .unwrap_or_else(|| Err(sys_closed()))
    }
}

/// Runs user code on a connection's close path, reporting a panic instead of letting it
/// stop the close.
#[cold]
fn caught(what: &str, peer: &Address, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        crate::reactor::report_panic(
            format_args!("{what} (connection from {peer})"),
            &crate::reactor::panic_message(&*panic),
        );
    }
}

/// The error for a call on a connection whose socket is closed.
fn sys_closed() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

/// Sends as much of `data` as the socket takes; returns how much. `EAGAIN` is not an error
/// (it returns what was sent before it).
fn send_some(fd: &FdCell, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match fd.send(&data[sent..])? {
            0 => break,
            n => sent += n,
        }
    }
    Ok(sent)
}

impl Source for StreamConnection {
    #[inline]
    fn ready(self: Rc<Self>, reactor: &Reactor, readiness: Readiness) {
        if self.is_closed() {
            return;
        }
        if readiness.writable && self.has(WRITE_BLOCKED) {
            self.unset(WRITE_BLOCKED);
        }
        if readiness.read_closed || readiness.error {
            self.set(PEER_CLOSED);
        }
        if readiness.error && self.has(READ_PAUSED) {
            // The connection is broken (reset, or timed out): a paused protocol would
            // otherwise not hear of it until it resumed, which a proxy waiting for the
            // other side may never do, and the connection would be held for ever.
            self.broken_while_paused(reactor);
            return;
        }
        if readiness.readable || readiness.read_closed || readiness.error {
            self.unset(READ_PENDING);
            self.do_read(reactor, self.has(PEER_CLOSED));
        }
        self.flush_now(reactor);
    }

    fn flush(self: Rc<Self>, reactor: &Reactor) {
        self.unset(DIRTY);
        if self.has(READ_PENDING) && !self.has(READ_PAUSED) {
            self.unset(READ_PENDING);
            self.do_read(reactor, self.has(PEER_CLOSED));
        }
        self.flush_now(reactor);
    }

    fn shutdown(self: Rc<Self>, reactor: &Reactor) {
        self.close(reactor, CloseReason::Lost(Error::ShuttingDown));
    }

    fn reactor_dropped(&self) {
        if !self.is_closed() {
            self.set_life(Life::Closed);
        }
        self.fd.close();
        self.out_clear();
        self.drop_staged();
        let protocol = self.protocol.take();
        let extras = self.extras.borrow_mut().take();
        let owner = self.owner.take();
        drop((protocol, extras, owner));
    }
}

impl TransportImpl for StreamConnection {
    #[inline]
    fn write(&self, data: &[u8]) {
        // The hot path: a reply written by the connection's own protocol.
        let flags = self.flags.get();
        // Aborting or closed, shut for writing, blocked, or descriptors to send first.
        let unusual = LIFE_ENDING | OUTPUT_SHUT | WRITE_BLOCKED | FDS_PENDING;
        if flags & (IN_DISPATCH | unusual) == IN_DISPATCH {
            let staged = self.stage(data);
            if staged != 0 {
                if flags & HAS_PRODUCER != 0 && staged > self.high_water() {
                    self.pause_producer_if_streaming();
                }
                return;
            }
        }
        self.write_slow(data);
    }

    fn write_sequence(&self, data: &[&[u8]]) {
        for chunk in data {
            self.write(chunk);
        }
    }

    fn lose_connection(&self) {
        if self.life() != Life::Open {
            return;
        }
        self.set_life(Life::Disconnecting);
        self.request_flush();
    }

    fn abort_connection(&self) {
        if matches!(self.life(), Life::Aborting | Life::Closed) {
            return;
        }
        self.set_life(Life::Aborting);
        self.out_clear();
        self.drop_staged();
        self.request_flush();
    }

    fn lose_write_connection(&self) {
        if matches!(self.life(), Life::Aborting | Life::Closed) || self.output() != Output::Open {
            return;
        }
        self.set_output(Output::ShutRequested);
        self.request_flush();
    }

    fn peer(&self) -> Address {
        self.peer.clone()
    }

    fn host(&self) -> Address {
        if self.is_closed() {
            return Address::Memory("closed".into());
        }
        match self.fd.with(sys::socket::local_name) {
            Some(Ok(addr)) => sys::addr::to_address(&addr, sys::addr::IpKind::Tcp),
            _ => Address::Memory("unknown".into()),
        }
    }

    fn disconnecting(&self) -> bool {
        self.life() != Life::Open
    }

    fn buffered(&self) -> usize {
        self.out.borrow().len() + self.staged_len()
    }

    fn pause_producing(&self) {
        self.set(READ_PAUSED);
    }

    fn resume_producing(&self) {
        if !self.has(READ_PAUSED) {
            return;
        }
        self.unset(READ_PAUSED);
        if self.has(READ_PENDING) {
            self.request_flush();
        }
    }

    fn register_producer(&self, producer: Box<dyn Producer>, streaming: bool) -> Result<(), Error> {
        if self.is_closed() {
            producer.stop_producing();
            return Ok(());
        }
        if self.has(HAS_PRODUCER) {
            return Err(Error::ProducerAlreadyRegistered);
        }
        let pause_now = streaming && self.buffered() > self.high_water();
        let itself = producer
            .as_transport()
            .is_some_and(|t| std::ptr::addr_eq(Rc::as_ptr(t.inner()), self as *const Self));
        if itself && streaming {
            self.set(HAS_PRODUCER | SELF_PRODUCER);
            if pause_now {
                self.set(PRODUCER_PAUSED);
                TransportImpl::pause_producing(self);
            }
            return Ok(());
        }
        let producer: Rc<dyn Producer> = Rc::from(producer);
        {
            let mut extras = self.extras();
            if extras.producer.is_some() {
                return Err(Error::ProducerAlreadyRegistered);
            }
            extras.producer = Some(ProducerSlot {
                producer: producer.clone(),
                streaming,
                paused: pause_now,
            });
        }
        self.set(HAS_PRODUCER);
        if !streaming {
            self.set(PULL_PRODUCER);
        }
        if pause_now {
            self.set(PRODUCER_PAUSED);
            producer.pause_producing();
        } else if !streaming {
            producer.resume_producing();
        }
        Ok(())
    }

    fn unregister_producer(&self) {
        if let Some(extras) = self.extras.borrow_mut().as_mut() {
            extras.producer = None;
        }
        self.unset(HAS_PRODUCER | PULL_PRODUCER | PRODUCER_PAUSED | SELF_PRODUCER);
        if self.life() == Life::Disconnecting {
            self.request_flush();
        }
    }

    fn set_high_water_mark(&self, bytes: usize) {
        self.high_water
            .set(u32::try_from(bytes).unwrap_or(u32::MAX).max(1));
    }

    fn set_tcp_nodelay(&self, enabled: bool) -> io::Result<()> {
        self.with_tcp_socket(|s| s.set_tcp_nodelay(enabled))
    }

    fn set_tcp_keepalive(&self, enabled: bool) -> io::Result<()> {
        self.with_tcp_socket(|s| s.set_keepalive(enabled))
    }

    fn send_file_descriptor(&self, fd: BorrowedFd<'_>) -> Result<(), Error> {
        if self.kind != StreamKind::Unix {
            return Err(Error::Unsupported("descriptor passing needs a Unix socket"));
        }
        if !self.accepts_writes() {
            return Err(Error::io(io::Error::from(io::ErrorKind::NotConnected)));
        }
        let copy = fd.try_clone_to_owned().map_err(Error::io)?;
        // The descriptor travels with the next byte sent, so staged bytes must queue first.
        self.unstage();
        self.extras().fds_out.push(copy);
        self.set(FDS_PENDING);
        self.request_flush();
        Ok(())
    }

    fn wrap_protocol(&self, wrap: ProtocolWrapper) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Io(std::sync::Arc::new(io::Error::from(
                io::ErrorKind::NotConnected,
            ))));
        }
        self.protocol
            .replace(wrap)
            .map_err(|_| Error::Unsupported("wrapping twice in one callback"))
    }

    fn call_later(&self, delay: Duration, call: ProtocolCall) -> Result<DelayedCall, Error> {
        if self.is_closed() {
            return Err(Error::io(sys_closed()));
        }
        let reactor = self.reactor.upgrade().ok_or(Error::ReactorNotRunning)?;
        let (me, weak) = (self.me.clone(), self.reactor.clone());
        let timer = reactor.call_later(delay, move || {
            if let (Some(conn), Some(reactor)) = (me.upgrade(), weak.upgrade()) {
                conn.timer_fired(&reactor, call);
            }
        });
        let mut extras = self.extras();
        extras.timers.retain(DelayedCall::active);
        extras.timers.push(timer.clone());
        Ok(timer)
    }

    fn reactor(&self) -> Option<Reactor> {
        self.reactor.upgrade()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl crate::flags::Flags for StreamConnection {
    fn flags(&self) -> &std::cell::Cell<u32> {
        &self.flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection's memory is this struct (plus the `Rc` header and the reactor's
    /// slab slot): the budget is 512 bytes per idle connection in all.
    #[test]
    fn an_idle_connection_is_small() {
        let size = std::mem::size_of::<StreamConnection>();
        assert!(size <= 192, "StreamConnection is {size} bytes");
    }
}
