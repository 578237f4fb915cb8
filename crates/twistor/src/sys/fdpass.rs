//! Descriptor passing over Unix sockets (`SCM_RIGHTS`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::cmsg_space;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::{retry, would_block};

/// Most descriptors received with one message (Linux's `SCM_MAX_FD` is 253); the kernel
/// closes any beyond the room given.
pub(crate) const MAX_FDS: usize = 64;

/// `recvmsg(2)` into `buf`, appending the descriptors that came with the bytes to `fds`
/// (close-on-exec). `Ok(Some(n))` bytes read (0 is end of stream), `Ok(None)` if it would
/// block. The control buffer is on the stack.
pub(crate) fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Option<usize>> {
    let mut space = [MaybeUninit::<u8>::uninit(); cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = retry(|| {
        let mut iov = [IoSliceMut::new(&mut *buf)];
        rustix::net::recvmsg(fd, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
    });
    let Some(msg) = would_block(received)? else {
        return Ok(None);
    };
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok(Some(msg.bytes))
}

/// `sendmsg(2)` of `data` with `fds` attached, with `MSG_NOSIGNAL`: the bytes sent, 0 if it
/// would block (then no descriptor was sent either).
pub(crate) fn send_with_fds(fd: BorrowedFd<'_>, data: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let message = SendAncillaryMessage::ScmRights(&borrowed);
    let mut space = vec![MaybeUninit::<u8>::uninit(); message.size()];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(message) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    let iov = [IoSlice::new(data)];
    let sent = retry(|| rustix::net::sendmsg(fd, &iov, &mut control, SendFlags::NOSIGNAL));
    Ok(would_block(sent)?.unwrap_or(0))
}
