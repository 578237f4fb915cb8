//! Datagrams in batches: `recvmmsg(2)` and `sendmmsg(2)`, one system call for many
//! datagrams.
//!
//! Both calls take at most [`MAX_BATCH`] datagrams; their headers, I/O vectors and
//! addresses live on the stack, so neither allocates.

use std::io::{self, IoSlice};
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::net::addr::SocketAddrStorage;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

use super::{retry, would_block};

/// Most datagrams one call receives or sends.
pub(crate) const MAX_BATCH: usize = 32;

/// What one [`recv_batch`] read: each datagram's length and sender. The senders stay in
/// the kernel's form until asked for, so a batch costs no more to set up than one datagram.
pub(crate) struct RecvBatch {
    names: [MaybeUninit<SocketAddrStorage>; MAX_BATCH],
    /// For each datagram read: its length in its slot, and how many bytes of its entry in
    /// `names` the kernel initialized (0: no address).
    lens: [(usize, usize); MAX_BATCH],
    /// How many were read.
    count: usize,
}

impl RecvBatch {
    pub(crate) fn new() -> RecvBatch {
        RecvBatch {
            names: [MaybeUninit::uninit(); MAX_BATCH],
            lens: [(0, 0); MAX_BATCH],
            count: 0,
        }
    }

    /// The `i`th datagram read: its length (at most the slot's: a longer datagram was
    /// truncated, as `recvfrom` truncates) and its sender (`None` when the kernel gave no
    /// address: an unnamed Unix peer).
    pub(crate) fn get(&self, i: usize) -> Option<(usize, Option<SocketAddrAny>)> {
        if i >= self.count {
            return None;
        }
        let (len, name_len) = self.lens[i];
        if name_len < size_of::<libc::sa_family_t>() {
            return Some((len, None));
        }
        // SAFETY: `recv_batch` set `lens[i].1` (for `i < count`) to how many bytes of
        // `names[i]` the kernel initialized with a socket address, at most the entry's size;
        // `read` copies them out.
        let from = unsafe { SocketAddrAny::read(self.names[i].as_ptr(), name_len as u32) };
        Some((len, Some(from)))
    }
}

/// `recvmmsg(2)`: reads up to `want` (at most [`MAX_BATCH`]) datagrams, the `i`th into
/// `buf[i * slot..(i + 1) * slot]`, their lengths and senders into `batch`. Returns how many
/// were read, or `None` if none is waiting. The socket must be non-blocking: the call
/// returns what is queued, it does not wait for a full batch.
///
/// As with `recvfrom`, an error queued on the socket (an ICMP refusal) is returned when it
/// comes first; after some datagrams, the kernel keeps it for the next call.
pub(crate) fn recv_batch(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    slot: usize,
    want: usize,
    batch: &mut RecvBatch,
) -> io::Result<Option<usize>> {
    batch.count = 0;
    let count = want
        .min(MAX_BATCH)
        .min(buf.len().checked_div(slot).unwrap_or(0));
    if count == 0 {
        return Err(super::invalid());
    }
    // SAFETY (both): `iovec` and `mmsghdr` are plain C structs for which all-zero bytes are
    // a valid value (null pointers, zero lengths and flags).
    let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for (i, chunk) in buf.chunks_exact_mut(slot).take(count).enumerate() {
        iov[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        };
    }
    let names = &mut batch.names;
    let received = retry(|| {
        // The kernel writes each header's `msg_namelen` and `msg_flags`: set them afresh on
        // every try.
        for i in 0..count {
            let hdr = &mut hdrs[i].msg_hdr;
            hdr.msg_name = names[i].as_mut_ptr().cast();
            hdr.msg_namelen = size_of::<SocketAddrStorage>() as libc::socklen_t;
            hdr.msg_iov = &mut iov[i];
            hdr.msg_iovlen = 1;
            hdrs[i].msg_len = 0;
        }
        // SAFETY: `hdrs[..count]` point at live buffers of the lengths they give: each
        // `msg_iov` at one `iovec` over a disjoint chunk of `buf` (borrowed mutably for the
        // whole call), each `msg_name` at a `SocketAddrStorage`-sized entry of `names`;
        // `count` is at most their length. The descriptor is borrowed, so it stays open. A
        // null timeout is allowed (the socket is non-blocking).
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                count as libc::c_uint,
                0,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let errno = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            Err(rustix::io::Errno::from_raw_os_error(errno))
        } else {
            Ok(n as usize)
        }
    });
    let Some(n) = would_block(received)? else {
        return Ok(None);
    };
    let n = n.min(count);
    for (hdr, lens) in hdrs[..n].iter().zip(batch.lens.iter_mut()) {
        *lens = (
            (hdr.msg_len as usize).min(slot),
            (hdr.msg_hdr.msg_namelen as usize).min(size_of::<SocketAddrStorage>()),
        );
    }
    batch.count = n;
    Ok(Some(n))
}

/// One datagram for [`send_batch`]: its bytes and, unless the socket is connected, where to.
#[derive(Clone, Copy, Default)]
pub(crate) struct Outgoing<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) to: Option<&'a SocketAddrAny>,
}

/// `sendmmsg(2)` (`sendto(2)` for one) of up to [`MAX_BATCH`] datagrams from `msgs`, with `MSG_NOSIGNAL`: how many
/// were sent, in order; 0 if the first would block. An error is returned only when the
/// first datagram fails; after some were sent, the call returns their count and the caller
/// retries from the first unsent one (which then reports its error).
pub(crate) fn send_batch(fd: BorrowedFd<'_>, msgs: &[Outgoing<'_>]) -> io::Result<usize> {
    if let [one] = msgs {
        // The same call with less to set up (the usual reply to a lone query).
        let sent = retry(|| match one.to {
            Some(to) => rustix::net::sendto(fd, one.data, SendFlags::NOSIGNAL, to),
            None => rustix::net::send(fd, one.data, SendFlags::NOSIGNAL),
        });
        return Ok(would_block(sent)?.map_or(0, |_| 1));
    }
    let count = msgs.len().min(MAX_BATCH);
    let iovs: [[IoSlice<'_>; 1]; MAX_BATCH] =
        std::array::from_fn(|i| [IoSlice::new(msgs.get(i).map_or(&[][..], |m| m.data))]);
    let mut controls: [SendAncillaryBuffer<'_, '_, '_>; MAX_BATCH] =
        std::array::from_fn(|_| SendAncillaryBuffer::default());
    let mut controls = controls.iter_mut();
    // Headers past `count` (empty, never passed to the kernel) keep the array's type fixed.
    let mut hdrs: [MMsgHdr<'_>; MAX_BATCH] = std::array::from_fn(|i| {
        let control = controls.next().expect("as many control buffers as headers");
        match msgs.get(i).and_then(|m| m.to) {
            Some(to) => MMsgHdr::new_with_addr(to, &iovs[i], control),
            None => MMsgHdr::new(&iovs[i], control),
        }
    });
    let sent = retry(|| rustix::net::sendmmsg(fd, &mut hdrs[..count], SendFlags::NOSIGNAL));
    Ok(would_block(sent)?.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    use super::*;

    fn udp() -> UdpSocket {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        sock
    }

    #[test]
    fn one_call_sends_and_one_receives_several_datagrams() {
        let (a, b, c) = (udp(), udp(), udp());
        let to_c = SocketAddrAny::from(c.local_addr().unwrap());
        let msgs = [
            Outgoing {
                data: b"one",
                to: Some(&to_c),
            },
            Outgoing {
                data: b"longer than a slot",
                to: Some(&to_c),
            },
            Outgoing {
                data: b"",
                to: Some(&to_c),
            },
        ];
        assert_eq!(send_batch(a.as_fd(), &msgs).unwrap(), 3);
        b.send_to(b"from b", c.local_addr().unwrap()).unwrap();

        let mut buf = [0u8; 8 * 5];
        let mut batch = RecvBatch::new();
        let n = recv_batch(c.as_fd(), &mut buf, 8, 5, &mut batch).unwrap();
        assert_eq!(n, Some(4));
        let got: Vec<(usize, SocketAddr)> = (0..4)
            .map(|i| batch.get(i).unwrap())
            .map(|(len, from)| (len, SocketAddr::try_from(from.unwrap()).unwrap()))
            .collect();
        let (a, b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(
            got,
            [(3, a), (8, a), (0, a), (6, b)],
            "the long one truncated"
        );
        assert!(batch.get(4).is_none());
        assert_eq!(&buf[..3], b"one");
        assert_eq!(&buf[8..16], b"longer t");
        assert_eq!(&buf[24..30], b"from b");
        // Nothing more waiting.
        assert_eq!(
            recv_batch(c.as_fd(), &mut buf, 8, 5, &mut batch).unwrap(),
            None
        );
        assert!(batch.get(0).is_none());
    }

    #[test]
    fn a_full_batch_stops_at_its_size_and_unnamed_senders_have_no_address() {
        let (left, right) = UnixDatagram::pair().unwrap();
        right.set_nonblocking(true).unwrap();
        let msgs = [Outgoing {
            data: b"x",
            to: None,
        }; 3];
        assert_eq!(send_batch(left.as_fd(), &msgs).unwrap(), 3);
        let mut buf = [0u8; 4 * 2];
        let mut batch = RecvBatch::new();
        let n = recv_batch(right.as_fd(), &mut buf, 4, 3, &mut batch).unwrap();
        assert_eq!(n, Some(2), "as many as the buffer has slots");
        for i in 0..2 {
            assert!(matches!(batch.get(i), Some((1, None))));
        }
        let n = recv_batch(right.as_fd(), &mut buf, 4, 3, &mut batch).unwrap();
        assert_eq!(n, Some(1));
    }

    #[test]
    fn a_send_that_would_block_sent_nothing() {
        let (left, _right) = UnixDatagram::pair().unwrap();
        left.set_nonblocking(true).unwrap();
        let msgs = [Outgoing {
            data: b"x",
            to: None,
        }; MAX_BATCH];
        // The peer's queue holds `max_dgram_qlen` datagrams: fill it.
        while send_batch(left.as_fd(), &msgs).unwrap() > 0 {}
        assert_eq!(send_batch(left.as_fd(), &msgs).unwrap(), 0);
    }
}
