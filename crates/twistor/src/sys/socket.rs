//! Socket calls: sends, `accept`, `shutdown`, `SO_ERROR`, names.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{SendFlags, Shutdown, SocketAddrAny, SocketFlags};

use super::{retry, would_block};

/// `send(2)` with `MSG_NOSIGNAL`: the bytes sent, 0 if it would block.
#[inline]
pub(crate) fn send(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    let sent = retry(|| rustix::net::send(fd, data, SendFlags::NOSIGNAL));
    Ok(would_block(sent)?.unwrap_or(0))
}

/// `accept4(2)`: a connection, non-blocking and close-on-exec, and its peer's address; `None`
/// if none is waiting.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<Option<(OwnedFd, Option<SocketAddrAny>)>> {
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    would_block(retry(|| rustix::net::acceptfrom_with(fd, flags)))
}

/// Shuts down our sending side: the peer reads end of stream once it has read what was sent.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(fd, Shutdown::Write)?)
}

/// Takes the socket's pending error (`SO_ERROR`): how a non-blocking `connect` ended.
pub(crate) fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    Ok(rustix::net::sockopt::socket_error(fd)?
        .err()
        .map(io::Error::from))
}

/// The address the socket is bound to.
pub(crate) fn local_name(fd: BorrowedFd<'_>) -> io::Result<SocketAddrAny> {
    Ok(rustix::net::getsockname(fd)?)
}

/// The address of the socket's peer, if it is connected.
pub(crate) fn peer_name(fd: BorrowedFd<'_>) -> io::Result<Option<SocketAddrAny>> {
    Ok(rustix::net::getpeername(fd)?)
}
