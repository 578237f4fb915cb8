//! The platform layer: the one place in the engine that makes raw OS calls (Linux).
//!
//! Everything above this module holds descriptors as [`OwnedFd`](std::os::fd::OwnedFd),
//! `socket2::Socket` or [`FdCell`], and closes them by dropping them. Everything in here
//! either goes through `rustix` (whose calls are safe: they take `AsFd` and return owned
//! descriptors) or, where rustix has no safe call, through `libc`, each such block with a
//! `// SAFETY:` comment saying why it holds. No other module of the engine needs one.
//!
//! # The contract
//!
//! Every function here promises:
//!
//! - **Ownership.** A descriptor that a call creates or receives comes back as an
//!   `OwnedFd` (or is closed before the call returns). Calls that use a descriptor borrow it
//!   (`BorrowedFd`); none closes a descriptor it was lent. [`FdCell`] is the one owner that
//!   can close through a shared reference (a connection behind an `Rc` closes before its
//!   last handle goes away), and it never closes a descriptor while a call is using it.
//! - **Close-on-exec.** Every descriptor created or received here has `FD_CLOEXEC` set
//!   (`SOCK_CLOEXEC`, `O_CLOEXEC`, `F_DUPFD_CLOEXEC`, `MSG_CMSG_CLOEXEC`, pidfds), so no
//!   child process inherits one by accident. Children get only what `process` moves into
//!   place for them.
//! - **`EINTR` is retried inside.** No caller sees `ErrorKind::Interrupted`.
//! - **`EAGAIN` is a value** where that is what callers branch on: a read that would block
//!   is `Ok(None)`, a send that would block has sent `Ok(0)` bytes, an `accept` with nothing
//!   pending is `Ok(None)`. Other errors are `io::Error`s carrying the errno.
//! - **No allocation on the hot path.** Reads, sends, `recvmsg` (with descriptors) and the
//!   datagram batches use only the caller's buffers and the stack. (Sending descriptors, a
//!   rare operation, allocates its control buffer.)
//! - **No `SIGPIPE`.** Socket sends pass `MSG_NOSIGNAL`; pipe writers call
//!   [`signal::ignore_sigpipe`] first, so a vanished reader is `EPIPE`.
//!
//! # Files
//!
//! - `fd.rs`: [`FdCell`], and descriptors in general: `read`/`write`, `O_NONBLOCK`,
//!   duplicating above the standard descriptors, `/dev/null`, pipes, what kind of file a
//!   descriptor is, reopening a standard descriptor, borrowing inherited descriptors.
//! - `socket.rs`: sends on sockets, `accept`, `shutdown`, `SO_ERROR`, local and peer
//!   names, and the socket options the transports set.
//! - `mmsg.rs`: datagrams in batches, `recvmmsg` / `sendmmsg` (the UDP and Unix datagram
//!   transports' reads, and their replies written while a batch is delivered).
//! - `fdpass.rs`: `SCM_RIGHTS`: descriptors sent and received with bytes (`sendmsg` /
//!   `recvmsg`).
//! - `addr.rs`: socket addresses to and from [`Address`](crate::Address).
//! - `signal.rs`: signal dispositions, the async-signal-safe handler that wakes the reactor,
//!   `SIGPIPE`, `kill`.
//! - `process.rs`: what starting and reaping a child needs: moving descriptors into place
//!   between `fork` and `exec`, pseudo-terminals, pidfds, `waitpid`.
//! - `inotify.rs`: the inotify calls.
//! - `time.rs`: the monotonic clock.

pub(crate) mod addr;
pub(crate) mod fd;
pub(crate) mod fdpass;
pub(crate) mod inotify;
pub(crate) mod mmsg;
pub(crate) mod process;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod time;

pub(crate) use fd::FdCell;

use std::io;

/// Runs `call` until it returns something other than `EINTR`.
#[inline]
fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// `EAGAIN` as `Ok(None)`, other errors as `io::Error`s.
#[inline]
fn would_block<T>(result: rustix::io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(rustix::io::Errno::AGAIN) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// A process id as rustix takes it; `EINVAL` for 0 or one too large.
fn pid_of(pid: u32) -> io::Result<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(invalid)
}

fn invalid() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// The error a call on a closed [`FdCell`] gets.
#[cold]
fn closed() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}
