//! Descriptors in general: [`FdCell`], reads and writes, `O_NONBLOCK`, duplicates, pipes,
//! `/dev/null`, and the descriptors a process inherits.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::pipe::PipeFlags;

use super::{closed, fdpass, retry, socket, would_block};

/// The cell holds no descriptor.
const CLOSED: RawFd = -1;
/// The descriptor is lent to a [`FdCell::with`] call.
const LENT: RawFd = -2;
/// The descriptor is lent, and is to be closed when it comes back.
const LENT_CLOSING: RawFd = -3;

/// An owned descriptor that its owner can close through a shared reference.
///
/// The engine's sources live behind `Rc`s that protocols and user code may keep after the
/// connection is closed, so a source cannot close its socket by dropping itself: it closes
/// the cell instead ([`close`](Self::close) or [`take`](Self::take)), and a cell still open
/// when it is dropped closes then. It is four bytes, like a `RawFd`, and reading it costs one
/// load, so the hot path pays nothing for the ownership.
///
/// It never closes a descriptor while a call uses it: the calls it makes itself (`read`,
/// `send`...) run no other code while they hold the descriptor, and one lent out by
/// [`with`](Self::with) is closed only when `with` returns.
pub(crate) struct FdCell {
    /// The descriptor, or one of the negative states above.
    raw: Cell<RawFd>,
}

impl FdCell {
    /// Takes ownership of `fd`.
    pub(crate) fn new(fd: OwnedFd) -> FdCell {
        FdCell {
            raw: Cell::new(fd.into_raw_fd()),
        }
    }

    /// Whether the cell still holds its descriptor (for tests and debug assertions).
    pub(crate) fn is_open(&self) -> bool {
        let raw = self.raw.get();
        raw >= 0 || raw == LENT
    }

    /// Closes the descriptor (at once, or when the running [`with`](Self::with) returns).
    pub(crate) fn close(&self) {
        drop(self.take());
    }

    /// Takes the descriptor out, leaving the cell closed. While it is lent to
    /// [`with`](Self::with), this returns `None` and the descriptor closes when `with`
    /// returns.
    pub(crate) fn take(&self) -> Option<OwnedFd> {
        let raw = self.raw.get();
        if raw >= 0 {
            self.raw.set(CLOSED);
            // SAFETY: the cell owned `raw` (non-negative means open and ours) and forgets it
            // now, so it has exactly one owner again.
            return Some(unsafe { OwnedFd::from_raw_fd(raw) });
        }
        if raw == LENT {
            self.raw.set(LENT_CLOSING);
        }
        None
    }

    /// Lends the descriptor to `f` (to register it, read an option...); `None` if the cell is
    /// closed, or already lent. Closing the cell from inside `f` takes effect when `f`
    /// returns.
    pub(crate) fn with<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
        let raw = self.raw.get();
        if raw < 0 {
            return None;
        }
        self.raw.set(LENT);
        let _back = GiveBack { cell: self, raw };
        // SAFETY: `raw` is open and ours; while the cell says LENT, `close` and `take` only
        // mark it for closing, so it stays open until `_back` drops, after `f` has returned
        // or unwound. The borrow cannot outlive `f` (its lifetime is `f`'s argument's).
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        Some(f(fd))
    }

    /// `read(2)` into `buf`: see [`read`].
    #[inline]
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        read(self.now()?, buf)
    }

    /// `write(2)` from `data`: see [`write`].
    #[inline]
    pub(crate) fn write(&self, data: &[u8]) -> io::Result<usize> {
        write(self.now()?, data)
    }

    /// `send(2)` on a socket: see [`socket::send`].
    #[inline]
    pub(crate) fn send(&self, data: &[u8]) -> io::Result<usize> {
        socket::send(self.now()?, data)
    }

    /// `recvmsg(2)` with descriptors: see [`fdpass::recv_with_fds`].
    pub(crate) fn recv_with_fds(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
    ) -> io::Result<Option<usize>> {
        fdpass::recv_with_fds(self.now()?, buf, fds)
    }

    /// `sendmsg(2)` with descriptors: see [`fdpass::send_with_fds`].
    pub(crate) fn send_with_fds(&self, data: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
        fdpass::send_with_fds(self.now()?, data, fds)
    }

    /// The descriptor, for one call made by this module's own methods.
    #[inline]
    fn now(&self) -> io::Result<BorrowedFd<'_>> {
        let raw = self.raw.get();
        if raw < 0 {
            return Err(closed());
        }
        // SAFETY: `raw` is open and owned by the cell. The borrow is private to this module,
        // whose methods pass it to one system call and run no other code meanwhile, so
        // nothing can close the cell while it is in use.
        Ok(unsafe { BorrowedFd::borrow_raw(raw) })
    }
}

impl Drop for FdCell {
    fn drop(&mut self) {
        self.close();
    }
}

/// Puts a lent descriptor back in its cell, or closes it if the cell was closed meanwhile.
struct GiveBack<'a> {
    cell: &'a FdCell,
    raw: RawFd,
}

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        if self.cell.raw.get() == LENT_CLOSING {
            self.cell.raw.set(CLOSED);
            // SAFETY: the cell lent us `raw`, which it owns, and has been closed meanwhile:
            // we are the descriptor's only owner now.
            drop(unsafe { OwnedFd::from_raw_fd(self.raw) });
        } else {
            self.cell.raw.set(self.raw);
        }
    }
}

/// `read(2)`: `Ok(Some(n))` bytes read (0 is end of file), `Ok(None)` if it would block.
#[inline]
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    would_block(retry(|| rustix::io::read(fd, &mut *buf)))
}

/// `write(2)`: the bytes written, 0 if it would block.
#[inline]
pub(crate) fn write(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    Ok(would_block(retry(|| rustix::io::write(fd, data)))?.unwrap_or(0))
}

/// Whether `O_NONBLOCK` is set on `fd`'s open file description.
pub(crate) fn nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(rustix::fs::fcntl_getfl(fd)?.contains(OFlags::NONBLOCK))
}

/// Sets or clears `O_NONBLOCK` on `fd`'s open file description (shared with its
/// duplicates, and with other processes that have it).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    if flags.contains(OFlags::NONBLOCK) != on {
        rustix::fs::fcntl_setfl(fd, flags ^ OFlags::NONBLOCK)?;
    }
    Ok(())
}

/// A close-on-exec duplicate of `fd`, numbered 3 or above (so moving a child's standard
/// descriptors into place cannot overwrite it, even if this process has 0-2 closed).
pub(crate) fn dup_above_stdio(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 3)?)
}

/// `fd` itself if it is numbered 3 or above, else a duplicate that is.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    dup_above_stdio(fd.as_fd())
}

/// `/dev/null`, for reading and writing, close-on-exec, numbered 3 or above.
pub(crate) fn dev_null() -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        c"/dev/null",
        OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    above_stdio(fd)
}

/// A pipe, (read end, write end), both close-on-exec and numbered 3 or above, and
/// non-blocking if asked.
pub(crate) fn pipe(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut flags = PipeFlags::CLOEXEC;
    if nonblocking {
        flags |= PipeFlags::NONBLOCK;
    }
    let (read, write) = rustix::pipe::pipe_with(flags)?;
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// Whether `fd` is a pipe, a FIFO or a character device (a terminal, say): the kinds that
/// [`reopen`] can give a private open file description.
pub(crate) fn is_pipe_or_char_device(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let stat = rustix::fs::fstat(fd)?;
    Ok(matches!(
        FileType::from_raw_mode(stat.st_mode),
        FileType::Fifo | FileType::CharacterDevice
    ))
}

/// Opens what `fd` refers to again, through `/proc/self/fd`, as a new open file
/// description of our own: non-blocking, close-on-exec, not a controlling terminal.
pub(crate) fn reopen(fd: BorrowedFd<'_>, write: bool) -> io::Result<OwnedFd> {
    let access = if write {
        OFlags::WRONLY
    } else {
        OFlags::RDONLY
    };
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(rustix::fs::open(
        path.as_str(),
        access | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?)
}

/// Points `target` at `/dev/null` (`dup2`), so what used it sees end of file or a broken
/// pipe, and its number is not reused by an unrelated file.
pub(crate) fn redirect_to_null(target: BorrowedFd<'_>) -> io::Result<()> {
    let null = dev_null()?;
    // SAFETY: dup2 changes only what the number `target` refers to; the descriptor stays
    // open, and stays its owner's (we were lent it), so no owner sees it closed. The
    // /dev/null descriptor is closed when `null` drops.
    if unsafe { libc::dup2(null.as_raw_fd(), target.as_raw_fd()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Borrows a descriptor this process was started with (systemd's `LISTEN_FDS`, the standard
/// descriptors) or that the caller names as its own, for the life of the process; fails if
/// the number is not open.
///
/// Such descriptors belong to the process, not to any value: the engine never closes them
/// (it works on duplicates, and [`redirect_to_null`] keeps the number open), as `std` treats
/// fd 0, 1 and 2.
pub(crate) fn borrow_inherited(raw: RawFd) -> io::Result<BorrowedFd<'static>> {
    if raw < 0 {
        return Err(closed());
    }
    // SAFETY: such a number is held by the process for its lifetime, by the convention this
    // function's callers document (nothing in the engine closes it); F_GETFD below checks
    // that it is open now, and reads and changes nothing.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_getfd(fd)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_closes_once_and_not_while_lent() {
        let (read_end, _write_end) = pipe(true).unwrap();
        let cell = FdCell::new(read_end);
        assert!(cell.is_open());
        let seen = cell.with(|fd| {
            cell.close();
            // Still open inside: the close waits for `with` to return.
            nonblocking(fd).unwrap()
        });
        assert_eq!(seen, Some(true));
        assert!(!cell.is_open());
        assert!(cell.with(|_| ()).is_none());
        assert_eq!(
            cell.read(&mut [0; 4]).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        cell.close();
    }

    #[test]
    fn reads_report_would_block_as_none() {
        let (read_end, write_end) = pipe(true).unwrap();
        let cell = FdCell::new(read_end);
        let mut buf = [0; 8];
        assert_eq!(cell.read(&mut buf).unwrap(), None);
        assert_eq!(write(write_end.as_fd(), b"hi").unwrap(), 2);
        assert_eq!(cell.read(&mut buf).unwrap(), Some(2));
        drop(write_end);
        assert_eq!(cell.read(&mut buf).unwrap(), Some(0));
    }
}
