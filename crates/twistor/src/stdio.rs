//! This process's own stdin and stdout as a transport (Twisted's `stdio.StandardIO`).
//!
//! [`standard_io`] runs any [`Protocol`] over fd 0 and fd 1: what arrives on stdin is given
//! to `data_received`, writes go to stdout. End of file on stdin is a half-close: the
//! protocol's `read_connection_lost` runs (by default it calls `lose_connection`, which
//! writes everything queued to stdout, then closes). `connection_lost` comes once both
//! sides are closed, so a program that exits from `connection_lost` has flushed its output.
//!
//! ```no_run
//! use twistor::protocol::Protocol;
//! use twistor::stdio::standard_io;
//! use twistor::{CloseReason, Reactor, Transport};
//!
//! struct Echo(Reactor);
//! impl Protocol for Echo {
//!     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
//!         transport.write(data);
//!     }
//!     fn connection_lost(&mut self, _reason: &CloseReason) {
//!         self.0.stop();
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! standard_io(&reactor, Echo(reactor.clone()))?;
//! reactor.run()?;
//! # Ok::<(), twistor::Error>(())
//! ```
//!
//! # Non-blocking I/O on shared descriptors
//!
//! `O_NONBLOCK` belongs to an open file *description*, which fd 0 and 1 usually share with
//! other processes: the shell's terminal, the other programs of a pipeline. Setting it there
//! would make their reads fail with `EAGAIN`. So for pipes, FIFOs and terminals this module
//! opens `/proc/self/fd/N` again, which gives a new description of the same pipe or
//! terminal, private to us, and sets `O_NONBLOCK` on that one only. Sockets cannot be
//! reopened so; for them (and if reopening fails) the descriptor is duplicated,
//! `O_NONBLOCK` is set on the shared description while the transport lives, and the
//! original flags are put back when it closes. Regular files and `/dev/null` never block
//! and cannot be watched with epoll; they are read and written a bounded amount per reactor
//! turn.
//!
//! When the transport closes a side, that standard descriptor is pointed at `/dev/null`
//! (as Twisted closes it): the process at the other end sees end of file or a broken pipe,
//! and the number is not reused by an unrelated file that later prints would reach.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use crate::address::Address;
use crate::error::Error;
use crate::guard::{Delivery, Guard, Panicked};
use crate::pipe::{PipeOwner, PipeReader, PipeWriter};
use crate::protocol::{CloseReason, Conn, ConnEvent, Protocol, Received};
use crate::reactor::Reactor;
use crate::sys;
use crate::transport::{Producer, Transport, TransportImpl};

/// Runs `protocol` over this process's stdin (fd 0) and stdout (fd 1); its
/// `connection_made` runs before this returns. See the [module docs](self).
pub fn standard_io(reactor: &Reactor, protocol: impl Protocol) -> Result<Transport, Error> {
    StandardIO::start(reactor, Box::new(protocol), 0, 1)
}

/// Like [`standard_io`], over other descriptors of this process: `input` is read and
/// `output` written. They stay this process's: the transport works on duplicates, never
/// closes them, and points them at `/dev/null` once closed, so keep them open meanwhile.
pub fn standard_io_fds(
    reactor: &Reactor,
    protocol: impl Protocol,
    input: RawFd,
    output: RawFd,
) -> Result<Transport, Error> {
    StandardIO::start(reactor, Box::new(protocol), input, output)
}

/// The standard I/O transport (what [`standard_io`] returns a [`Transport`] on; reach it
/// with `transport.downcast_ref::<StandardIO>()`).
pub struct StandardIO {
    inner: Rc<StdioInner>,
}

/// The reader's id (stdin's number, whatever the real descriptor).
const INPUT: i32 = 0;
/// The writer's id.
const OUTPUT: i32 = 1;

impl StandardIO {
    fn start(
        reactor: &Reactor,
        protocol: Box<dyn Protocol>,
        input: RawFd,
        output: RawFd,
    ) -> Result<Transport, Error> {
        let input = sys::fd::borrow_inherited(input)?;
        let output = sys::fd::borrow_inherited(output)?;
        let (input_fd, input_restore) = open_side(input, false)?;
        let (output_fd, output_restore) = open_side(output, true)?;
        let inner = Rc::new(StdioInner {
            reader: RefCell::new(None),
            writer: RefCell::new(None),
            fds: [input, output],
            restore: [Cell::new(input_restore), Cell::new(output_restore)],
            protocol: Guard::new(protocol),
            losing: Cell::new(false),
            aborting: Cell::new(false),
            closed: Cell::new(false),
            reason: RefCell::new(None),
            transport: RefCell::new(None),
        });
        let owner: Rc<dyn PipeOwner> = inner.clone();
        let reader = PipeReader::open(reactor, input_fd, INPUT, owner.clone());
        let writer = PipeWriter::open(reactor, output_fd, OUTPUT, owner);
        let (reader, writer) = match (reader, writer) {
            (Ok(reader), Ok(writer)) => (reader, writer),
            (reader, writer) => {
                let err = [reader.as_ref().err(), writer.as_ref().err()]
                    .into_iter()
                    .flatten()
                    .next()
                    .map(|e| io::Error::new(e.kind(), e.to_string()))
                    .unwrap_or_else(|| io::Error::other("cannot watch standard I/O"));
                // Whichever side opened closes without telling a protocol that never
                // started, and leaves its standard descriptor alone.
                inner.protocol.take();
                inner.closed.set(true);
                if let Ok(reader) = reader {
                    reader.lose();
                }
                if let Ok(writer) = writer {
                    writer.abort();
                }
                return Err(Error::io(err));
            }
        };
        *inner.reader.borrow_mut() = Some(reader);
        *inner.writer.borrow_mut() = Some(writer);
        let transport = Transport::new(Rc::new(StandardIO {
            inner: inner.clone(),
        }));
        *inner.transport.borrow_mut() = Some(transport.clone());
        inner.dispatch(ConnEvent::Make);
        Ok(transport)
    }

    fn writer(&self) -> Option<Rc<PipeWriter>> {
        self.inner.writer.borrow().clone()
    }

    fn reader(&self) -> Option<Rc<PipeReader>> {
        self.inner.reader.borrow().clone()
    }
}

impl TransportImpl for StandardIO {
    fn write(&self, data: &[u8]) {
        match self.writer() {
            Some(writer) => writer.write(data),
            None => tracing::debug!("write of {} bytes to closed stdout ignored", data.len()),
        }
    }

    fn lose_connection(&self) {
        self.inner.lose(false);
    }

    fn abort_connection(&self) {
        self.inner.lose(true);
    }

    fn lose_write_connection(&self) {
        if let Some(writer) = self.writer() {
            writer.lose();
        }
    }

    fn peer(&self) -> Address {
        Address::Pipe
    }

    fn host(&self) -> Address {
        Address::Pipe
    }

    fn disconnecting(&self) -> bool {
        self.inner.losing.get() || self.inner.aborting.get() || self.inner.closed.get()
    }

    fn buffered(&self) -> usize {
        self.writer().map_or(0, |w| w.buffered())
    }

    fn pause_producing(&self) {
        if let Some(reader) = self.reader() {
            reader.pause();
        }
    }

    fn resume_producing(&self) {
        if let Some(reader) = self.reader() {
            reader.resume();
        }
    }

    fn register_producer(&self, producer: Box<dyn Producer>, streaming: bool) -> Result<(), Error> {
        match self.writer() {
            Some(writer) => writer.register_producer(producer, streaming),
            None => {
                producer.stop_producing();
                Ok(())
            }
        }
    }

    fn unregister_producer(&self) {
        if let Some(writer) = self.writer() {
            writer.unregister_producer();
        }
    }

    fn set_high_water_mark(&self, bytes: usize) {
        if let Some(writer) = self.writer() {
            writer.set_high_water_mark(bytes);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct StdioInner {
    reader: RefCell<Option<Rc<PipeReader>>>,
    writer: RefCell<Option<Rc<PipeWriter>>>,
    /// The standard descriptors (input, output) we were given: the process's, not ours.
    fds: [BorrowedFd<'static>; 2],
    /// Whether to clear `O_NONBLOCK` again on each shared description when its side closes.
    restore: [Cell<bool>; 2],
    protocol: Guard<Conn>,
    /// `lose_connection` was called.
    losing: Cell<bool>,
    /// `abort_connection` was called (or a callback panicked).
    aborting: Cell<bool>,
    /// `connection_lost` has been delivered.
    closed: Cell<bool>,
    /// The first unclean reason a side closed for.
    reason: RefCell<Option<CloseReason>>,
    /// The handle given to the protocol, made once (a cycle, broken by `finish`).
    transport: RefCell<Option<Transport>>,
}

impl StdioInner {
    fn lose(&self, abort: bool) {
        if abort {
            self.aborting.set(true);
        } else {
            self.losing.set(true);
        }
        let writer = self.writer.borrow().clone();
        if let Some(writer) = writer {
            if abort {
                writer.abort();
            } else {
                writer.lose();
            }
        }
        let reader = self.reader.borrow().clone();
        if let Some(reader) = reader {
            reader.lose();
        }
    }

    /// Runs one protocol callback under the guard; a panic aborts both sides.
    fn dispatch(&self, event: impl Delivery<Conn>) {
        let Some(transport) = self.transport.borrow().clone() else {
            return;
        };
        if let Err(panicked) = self.protocol.deliver(&transport, event) {
            self.panicked(panicked);
        }
    }

    #[cold]
    fn panicked(&self, panicked: Panicked) {
        let message = panicked.report(format_args!(
            "the standard I/O protocol (aborting standard I/O)"
        ));
        self.reason
            .borrow_mut()
            .get_or_insert(CloseReason::Lost(Error::ProtocolPanicked(message)));
        self.lose(true);
    }

    /// One side's descriptor is closed: put back what we changed on the standard one, and
    /// point it at `/dev/null` (unless starting failed: then it is left as it was).
    fn release(&self, side: usize) {
        let fd = self.fds[side];
        if self.restore[side].take()
            && let Err(err) = sys::fd::set_nonblocking(fd, false)
        {
            tracing::debug!("cannot make fd {} blocking again: {err}", fd.as_raw_fd());
        }
        if self.closed.get() {
            return;
        }
        if let Err(err) = sys::fd::redirect_to_null(fd) {
            tracing::debug!("cannot point fd {} at /dev/null: {err}", fd.as_raw_fd());
        }
    }

    fn finish(&self) {
        if self.closed.replace(true) {
            return;
        }
        let reason = match self.reason.borrow_mut().take() {
            Some(reason) => reason,
            None if self.aborting.get() => CloseReason::Aborted,
            None => CloseReason::Done,
        };
        let Some(transport) = self.transport.borrow_mut().take() else {
            return;
        };
        if let Err(panicked) = self.protocol.finish(&transport, ConnEvent::Lost(reason)) {
            let _ = panicked.report(format_args!("connection_lost of standard I/O"));
        }
    }
}

impl PipeOwner for StdioInner {
    fn pipe_data(&self, _id: i32, data: &[u8]) {
        self.dispatch(Received(data));
    }

    fn pipe_closed(&self, id: i32, reason: CloseReason) {
        let unclean = !reason.is_clean() && !matches!(reason, CloseReason::Aborted);
        if unclean {
            self.reason.borrow_mut().get_or_insert(reason);
        }
        if id == INPUT {
            let _reader = self.reader.borrow_mut().take();
            self.release(0);
            let writer = self.writer.borrow().clone();
            match writer {
                None => self.finish(),
                Some(writer) if unclean => writer.abort(),
                Some(_) if self.losing.get() || self.aborting.get() => {}
                Some(_) => self.dispatch(ConnEvent::ReadLost),
            }
        } else {
            let _writer = self.writer.borrow_mut().take();
            self.release(1);
            let reader = self.reader.borrow().clone();
            match reader {
                None => self.finish(),
                Some(reader) if unclean || self.losing.get() || self.aborting.get() => {
                    reader.lose()
                }
                Some(_) => self.dispatch(ConnEvent::WriteLost),
            }
        }
    }
}

/// A descriptor of our own for one standard side, and whether we set `O_NONBLOCK` on the
/// shared description (to clear again at the end; see the module docs).
fn open_side(fd: BorrowedFd<'static>, write: bool) -> io::Result<(OwnedFd, bool)> {
    let was_nonblocking = sys::fd::nonblocking(fd)?;
    if sys::fd::is_pipe_or_char_device(fd)? {
        match sys::fd::reopen(fd, write) {
            Ok(new) => return Ok((new, false)),
            Err(err) => tracing::debug!(
                "cannot reopen fd {} ({err}); sharing its description",
                fd.as_raw_fd()
            ),
        }
    }
    Ok((sys::fd::dup_above_stdio(fd)?, !was_nonblocking))
}
