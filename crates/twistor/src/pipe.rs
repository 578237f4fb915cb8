//! One-way file descriptors (pipes, ttys, files) as reactor sources: the building blocks of
//! the process and standard I/O transports.
//!
//! A [`PipeReader`] reads like a stream connection does: on each readiness edge it reads into
//! the reactor's one shared buffer until a short read (the pipe is drained) and hands each
//! chunk to its owner. While paused it stops reading, so the pipe fills and the writer on the
//! other side blocks: back-pressure, with nothing buffered here.
//!
//! A [`PipeWriter`] buffers what the pipe does not take and flushes once per reactor turn,
//! pausing a streaming producer above the high-water mark, as the stream transport does. It
//! uses `write(2)`, so a reader that went away is `EPIPE` (the writer makes sure `SIGPIPE` is
//! ignored, as Rust programs do by default).
//!
//! Descriptors that epoll refuses (`EPERM`: regular files, `/dev/null`) never block; such a
//! pipe is read or written from the reactor's flush step, a bounded amount per turn.
//!
//! Neither calls its owner from a method the owner's own protocol may call: closing and
//! errors are reported from the reactor (`ready` or `flush`).

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::OwnedFd;
use std::rc::{Rc, Weak};

use mio::Interest;

use crate::error::Error;
use crate::flags::Flags;
use crate::outbuf::{OutBuf, ProducerSlot};
use crate::protocol::CloseReason;
use crate::reactor::{IoBuffers, Reactor, Readiness, Source, WeakReactor};
use crate::sys::{self, FdCell};
use crate::transport::{DEFAULT_HIGH_WATER_MARK, Producer};
use crate::unstable::ReactorInternals;

/// Told what happens on the pipes it owns. `id` is the number the owner gave the pipe (the
/// child's descriptor number, for processes).
pub(crate) trait PipeOwner {
    /// Bytes were read from pipe `id`.
    fn pipe_data(&self, id: i32, data: &[u8]);
    /// Pipe `id` is closed: end of file, an error, or a close the owner asked for.
    fn pipe_closed(&self, id: i32, reason: CloseReason);
}

// Flags shared by readers and writers.
/// Queued in the reactor's flush list.
const DIRTY: u32 = 1 << 0;
/// Gone.
const CLOSED: u32 = 1 << 1;
/// Epoll refused the descriptor: it never blocks; work from `flush`.
const ALWAYS_READY: u32 = 1 << 2;
/// Close at the next flush (the owner asked; readers close at once, writers after flushing).
const CLOSE_REQUESTED: u32 = 1 << 3;
/// Close at the next flush, dropping buffered output.
const ABORT_REQUESTED: u32 = 1 << 4;
// Reader flags.
/// The owner asked us to stop reading.
const PAUSED: u32 = 1 << 5;
/// Reading stopped before the pipe was drained; read again when resumed.
const PENDING: u32 = 1 << 6;
/// Epoll reported the writer's close (or an error): read through to end of file once
/// reading resumes, since no new edge will say so again.
const PEER_CLOSED: u32 = 1 << 8;
// Writer flags.
/// `write` said `EAGAIN`; wait for a writable edge.
const BLOCKED: u32 = 1 << 7;

/// How many reads from an always-ready descriptor (a regular file) one flush does.
const ALWAYS_READY_READS: usize = 16;

/// State both kinds of pipe share.
struct PipeCore {
    /// Closed by `close` (or when the pipe is dropped).
    fd: FdCell,
    id: i32,
    token: Cell<Option<usize>>,
    flags: Cell<u32>,
    /// Taken when the pipe closes, which breaks the owner ↔ pipe cycle.
    owner: RefCell<Option<Rc<dyn PipeOwner>>>,
    reactor: WeakReactor,
}

impl PipeCore {
    fn new(reactor: &Reactor, fd: OwnedFd, id: i32, owner: Rc<dyn PipeOwner>) -> PipeCore {
        PipeCore {
            fd: FdCell::new(fd),
            id,
            token: Cell::new(None),
            flags: Cell::new(0),
            owner: RefCell::new(Some(owner)),
            reactor: reactor.downgrade(),
        }
    }

    /// Registers with the reactor, or marks the pipe always ready if epoll refuses it.
    fn register(
        &self,
        reactor: &Reactor,
        interest: Interest,
        me: Rc<dyn Source>,
    ) -> io::Result<()> {
        let registered = self.fd.with(|fd| {
            sys::fd::set_nonblocking(fd, true)?;
            reactor.register(fd, interest, me)
        });
        match registered.unwrap_or_else(|| Err(io::Error::from(io::ErrorKind::NotConnected))) {
            Ok(token) => {
                self.token.set(Some(token));
                Ok(())
            }
            Err(err) if err.raw_os_error() == Some(libc::EPERM) => {
                self.set(ALWAYS_READY);
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    fn request_flush(&self, me: &Weak<impl Source + 'static>) {
        if self.has(DIRTY | CLOSED) {
            return;
        }
        if let (Some(reactor), Some(me)) = (self.reactor.upgrade(), me.upgrade()) {
            self.set(DIRTY);
            reactor.mark_dirty(me);
        }
    }

    /// Closes the descriptor and tells the owner, once.
    fn close(&self, reactor: &Reactor, reason: CloseReason) {
        if self.has(CLOSED) {
            return;
        }
        self.set(CLOSED);
        // Standard descriptors share their open file with other processes, which would keep
        // our epoll registration alive after we close: remove it first.
        if let Some(token) = self.token.take() {
            self.fd
                .with(|fd| reactor.deregister(token, Some(fd)))
                .unwrap_or_else(|| reactor.deregister(token, None));
        }
        self.fd.close();
        let owner = self.owner.borrow_mut().take();
        if let Some(owner) = owner {
            owner.pipe_closed(self.id, reason);
        }
    }

    /// The reactor is gone: close, and forget the owner without telling it.
    fn reactor_dropped(&self) {
        self.set(CLOSED);
        self.token.take();
        self.fd.close();
        let owner = self.owner.borrow_mut().take();
        drop(owner);
    }
}

/// The reading end of a pipe, feeding its owner.
pub(crate) struct PipeReader {
    core: PipeCore,
    io: Rc<IoBuffers>,
    me: Weak<PipeReader>,
}

impl PipeReader {
    /// Takes `fd`, makes it non-blocking and registers it; the owner hears `pipe_data` and
    /// `pipe_closed` under `id`.
    pub(crate) fn open(
        reactor: &Reactor,
        fd: OwnedFd,
        id: i32,
        owner: Rc<dyn PipeOwner>,
    ) -> io::Result<Rc<PipeReader>> {
        let reader = Rc::new_cyclic(|me| PipeReader {
            core: PipeCore::new(reactor, fd, id, owner),
            io: reactor.io_buffers(),
            me: me.clone(),
        });
        if let Err(err) = reader
            .core
            .register(reactor, Interest::READABLE, reader.clone())
        {
            reader.core.owner.borrow_mut().take();
            reader.core.set(CLOSED);
            reader.core.fd.close();
            return Err(err);
        }
        if reader.core.has(ALWAYS_READY) {
            reader.core.set(PENDING);
            reader.core.request_flush(&reader.me);
        }
        Ok(reader)
    }

    /// Stops reading until [`resume`](Self::resume).
    pub(crate) fn pause(&self) {
        self.core.set(PAUSED);
    }

    /// Reads again after [`pause`](Self::pause).
    pub(crate) fn resume(&self) {
        if !self.core.has(PAUSED) {
            return;
        }
        self.core.unset(PAUSED);
        if self.core.has(PENDING) {
            self.core.request_flush(&self.me);
        }
    }

    /// Closes the pipe from the reactor, soon; the owner hears `pipe_closed` with `Done`.
    pub(crate) fn lose(&self) {
        if self.core.has(CLOSED) {
            return;
        }
        self.core.set(CLOSE_REQUESTED);
        self.core.request_flush(&self.me);
    }

    /// Reads until the pipe is drained, reading stops, or (with `until_eof`) end of file.
    fn do_read(self: &Rc<Self>, reactor: &Reactor, until_eof: bool) {
        let core = &self.core;
        let mut budget = ALWAYS_READY_READS;
        loop {
            if core.has(PAUSED | CLOSED | CLOSE_REQUESTED | ABORT_REQUESTED) {
                if core.has(PAUSED) {
                    core.set(PENDING);
                }
                return;
            }
            if core.has(ALWAYS_READY) {
                if budget == 0 {
                    core.set(PENDING);
                    core.request_flush(&self.me);
                    return;
                }
                budget -= 1;
            }
            let Ok(mut buf) = self.io.read.try_borrow_mut() else {
                core.set(PENDING);
                core.request_flush(&self.me);
                return;
            };
            let read = core.fd.read(&mut buf);
            if let Ok(Some(n)) = read
                && n > 0
            {
                let drained = n < buf.len() && !until_eof && !core.has(ALWAYS_READY);
                let owner = core.owner.borrow().clone();
                if let Some(owner) = owner {
                    owner.pipe_data(core.id, &buf[..n]);
                }
                if drained {
                    return;
                }
                continue;
            }
            drop(buf);
            match read {
                Ok(None) => {}
                // A pseudo-terminal's master reads EIO once the last slave descriptor closes:
                // that is its end of file.
                Ok(Some(_)) => core.close(reactor, CloseReason::Done),
                Err(err) if err.raw_os_error() == Some(libc::EIO) => {
                    core.close(reactor, CloseReason::Done)
                }
                Err(err) => core.close(reactor, CloseReason::Lost(Error::io(err))),
            }
            return;
        }
    }
}

impl Source for PipeReader {
    fn ready(self: Rc<Self>, reactor: &Reactor, readiness: Readiness) {
        if self.core.has(CLOSED) {
            return;
        }
        if readiness.read_closed || readiness.error {
            self.core.set(PEER_CLOSED);
        }
        if readiness.readable || readiness.read_closed || readiness.error {
            self.core.unset(PENDING);
            self.do_read(reactor, self.core.has(PEER_CLOSED));
        }
    }

    fn flush(self: Rc<Self>, reactor: &Reactor) {
        self.core.unset(DIRTY);
        if self.core.has(CLOSED) {
            return;
        }
        if self.core.has(CLOSE_REQUESTED | ABORT_REQUESTED) {
            self.core.close(reactor, CloseReason::Done);
            return;
        }
        if self.core.has(PENDING) && !self.core.has(PAUSED) {
            self.core.unset(PENDING);
            self.do_read(reactor, self.core.has(PEER_CLOSED));
        }
    }

    fn shutdown(self: Rc<Self>, reactor: &Reactor) {
        self.core
            .close(reactor, CloseReason::Lost(Error::ShuttingDown));
    }

    fn reactor_dropped(&self) {
        self.core.reactor_dropped();
    }
}

/// The writing end of a pipe, with an output buffer and an optional producer.
pub(crate) struct PipeWriter {
    core: PipeCore,
    high_water: Cell<usize>,
    out: RefCell<OutBuf>,
    producer: RefCell<Option<ProducerSlot>>,
    me: Weak<PipeWriter>,
}

impl PipeWriter {
    /// Takes `fd`, makes it non-blocking and registers it; the owner hears `pipe_closed`
    /// under `id` when it closes (after [`lose`](Self::lose), [`abort`](Self::abort), or
    /// when the reader goes away).
    pub(crate) fn open(
        reactor: &Reactor,
        fd: OwnedFd,
        id: i32,
        owner: Rc<dyn PipeOwner>,
    ) -> io::Result<Rc<PipeWriter>> {
        sys::signal::ignore_sigpipe();
        let writer = Rc::new_cyclic(|me| PipeWriter {
            core: PipeCore::new(reactor, fd, id, owner),
            high_water: Cell::new(DEFAULT_HIGH_WATER_MARK),
            out: RefCell::new(OutBuf::default()),
            producer: RefCell::new(None),
            me: me.clone(),
        });
        if let Err(err) = writer
            .core
            .register(reactor, Interest::WRITABLE, writer.clone())
        {
            writer.core.owner.borrow_mut().take();
            writer.core.set(CLOSED);
            writer.core.fd.close();
            return Err(err);
        }
        Ok(writer)
    }

    /// Queues `data`; it is written at the end of the reactor's turn.
    pub(crate) fn write(&self, data: &[u8]) {
        if self.core.has(CLOSED | CLOSE_REQUESTED | ABORT_REQUESTED) {
            tracing::debug!("write of {} bytes to a closed pipe ignored", data.len());
            return;
        }
        if data.is_empty() {
            return;
        }
        self.out.borrow_mut().extend(data);
        if self.buffered() > self.high_water.get() {
            self.pause_producer();
        }
        self.core.request_flush(&self.me);
    }

    /// Writes what is queued, then closes.
    pub(crate) fn lose(&self) {
        if self.core.has(CLOSED | CLOSE_REQUESTED | ABORT_REQUESTED) {
            return;
        }
        self.core.set(CLOSE_REQUESTED);
        self.core.request_flush(&self.me);
    }

    /// Closes soon, dropping what is queued; the owner hears `Aborted`.
    pub(crate) fn abort(&self) {
        if self.core.has(CLOSED | ABORT_REQUESTED) {
            return;
        }
        self.core.set(ABORT_REQUESTED);
        self.out.borrow_mut().clear();
        self.core.request_flush(&self.me);
    }

    /// Bytes queued but not yet written.
    pub(crate) fn buffered(&self) -> usize {
        self.out.borrow().len()
    }

    /// Sets the high-water mark above which a streaming producer is paused.
    pub(crate) fn set_high_water_mark(&self, bytes: usize) {
        self.high_water.set(bytes.max(1));
    }

    /// Registers the producer of this pipe's data (see `TransportImpl::register_producer`).
    pub(crate) fn register_producer(
        &self,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), Error> {
        if self.core.has(CLOSED) {
            producer.stop_producing();
            return Ok(());
        }
        let producer: Rc<dyn Producer> = Rc::from(producer);
        let pause_now = streaming && self.buffered() > self.high_water.get();
        {
            let mut slot = self.producer.borrow_mut();
            if slot.is_some() {
                return Err(Error::ProducerAlreadyRegistered);
            }
            *slot = Some(ProducerSlot {
                producer: producer.clone(),
                streaming,
                paused: pause_now,
            });
        }
        if pause_now {
            producer.pause_producing();
        } else if !streaming {
            // A pull producer is asked for data from the reactor, when the buffer is empty.
            self.core.request_flush(&self.me);
        }
        Ok(())
    }

    /// Forgets the producer.
    pub(crate) fn unregister_producer(&self) {
        self.producer.borrow_mut().take();
        if self.core.has(CLOSE_REQUESTED) {
            self.core.request_flush(&self.me);
        }
    }

    fn pause_producer(&self) {
        let producer = self
            .producer
            .borrow_mut()
            .as_mut()
            .and_then(ProducerSlot::pause);
        if let Some(producer) = producer {
            producer.pause_producing();
        }
    }

    /// Resumes a paused streaming producer once the buffer drains to half the high-water
    /// mark, or asks a pull producer for more once it is empty.
    fn run_producer(&self) {
        let buffered = self.buffered();
        let producer = self
            .producer
            .borrow_mut()
            .as_mut()
            .and_then(|slot| slot.resume_if_due(buffered, self.high_water.get()));
        if let Some(producer) = producer {
            producer.resume_producing();
        }
    }

    /// Writes the buffer until it is empty or the pipe is full.
    fn write_buffered(&self) -> io::Result<()> {
        let mut out = self.out.borrow_mut();
        while out.len() > 0 {
            match self.core.fd.write(out.pending())? {
                0 => {
                    self.core.set(BLOCKED);
                    return Ok(());
                }
                n => out.consume(n),
            }
        }
        Ok(())
    }

    fn flush_now(self: &Rc<Self>, reactor: &Reactor) {
        let core = &self.core;
        if core.has(CLOSED) {
            return;
        }
        if core.has(ABORT_REQUESTED) {
            core.close(reactor, CloseReason::Aborted);
            self.stop_producer();
            return;
        }
        if !core.has(BLOCKED)
            && let Err(err) = self.write_buffered()
        {
            self.out.borrow_mut().clear();
            core.close(reactor, CloseReason::Lost(Error::io(err)));
            self.stop_producer();
            return;
        }
        self.run_producer();
        if core.has(CLOSED) || self.buffered() > 0 {
            return;
        }
        // As in Twisted, a pending close waits for a pull producer to unregister, not for a
        // streaming one.
        let pull = self
            .producer
            .borrow()
            .as_ref()
            .is_some_and(|s| !s.streaming);
        if core.has(CLOSE_REQUESTED) && !pull {
            core.close(reactor, CloseReason::Done);
        }
    }

    fn stop_producer(&self) {
        let producer = self.producer.borrow_mut().take();
        if let Some(slot) = producer {
            slot.producer.stop_producing();
        }
    }
}

impl Source for PipeWriter {
    fn ready(self: Rc<Self>, reactor: &Reactor, readiness: Readiness) {
        if self.core.has(CLOSED) {
            return;
        }
        if readiness.error || (readiness.write_closed && !readiness.writable) {
            // The reading end went away: nothing written from now on can arrive.
            self.out.borrow_mut().clear();
            let err = io::Error::from_raw_os_error(libc::EPIPE);
            self.core.close(reactor, CloseReason::Lost(Error::io(err)));
            self.stop_producer();
            return;
        }
        if readiness.writable {
            self.core.unset(BLOCKED);
        }
        self.flush_now(reactor);
    }

    fn flush(self: Rc<Self>, reactor: &Reactor) {
        self.core.unset(DIRTY);
        self.flush_now(reactor);
    }

    fn shutdown(self: Rc<Self>, reactor: &Reactor) {
        self.out.borrow_mut().clear();
        self.core
            .close(reactor, CloseReason::Lost(Error::ShuttingDown));
        self.stop_producer();
    }

    fn reactor_dropped(&self) {
        self.core.reactor_dropped();
        self.out.borrow_mut().clear();
        let producer = self.producer.borrow_mut().take();
        drop(producer);
    }
}

impl crate::flags::Flags for PipeCore {
    fn flags(&self) -> &std::cell::Cell<u32> {
        &self.flags
    }
}
