//! Datagram sockets (UDP and Unix datagrams) and the [`DatagramTransport`] their protocols
//! write through.
//!
//! # Batches
//!
//! A readable socket is read a batch at a time: one `recvmmsg` takes up to 32 datagrams
//! (fewer for a large `max_packet_size`: the batch buffer, shared by the reactor's
//! datagram sockets, is at most 256 KiB), and the protocol hears them one by one, in order.
//! Replies it writes meanwhile (up to 1232 bytes each) wait and go out together, in the
//! order written, with one `sendmmsg` when the batch ends; a server answering each query
//! makes two system calls per batch instead of two per datagram. Writes made at other
//! times, and longer ones, are sent at once. One turn still reads at most 256 datagrams.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::rc::Rc;

use mio::Interest;
use rustix::net::SocketAddrAny;
use socket2::{SockAddr, SockRef, Socket};

use crate::address::{Address, UnixAddress};
use crate::error::Error;
use crate::guard::{Delivery, Guard, Kind, Panicked};
use crate::protocol::DatagramProtocol;
use crate::reactor::{Reactor, Readiness, Source, WeakReactor};
use crate::sys::addr::{IpKind, unix_sockaddr};
use crate::sys::mmsg::{self, MAX_BATCH, Outgoing};
use crate::sys::{self, FdCell};
use crate::unstable::ReactorInternals;

/// Twisted's default maximum packet size.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 8192;

/// How many datagrams one readiness event reads before letting others run; the rest are
/// read at the end of the turn.
const DATAGRAMS_PER_TURN: usize = 256;

/// The most bytes one batch of received datagrams takes (in a buffer the reactor shares
/// between its datagram sockets): up to [`MAX_BATCH`] datagrams of `max_packet_size` per
/// `recvmmsg`, fewer for large packet sizes (4 at 64 KiB; 32 at the default 8 KiB).
const BATCH_BYTES: usize = 256 * 1024;

/// The longest datagram a protocol's write is queued for the batch's `sendmmsg`; longer
/// ones are sent at once, so a datagram too long for the socket (`EMSGSIZE`) is still the
/// caller's error. 1232 bytes (the IPv6 minimum MTU less its headers, the DNS flag day's
/// EDNS size) fits every IPv6 path and any Unix datagram socket's buffer.
const QUEUED_SEND_MAX: usize = 1232;

/// Which family a datagram socket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Udp,
    Unix,
}

/// A datagram socket and its protocol. Cloning the handle is cheap.
#[derive(Clone)]
pub struct DatagramTransport {
    inner: Rc<DatagramPort>,
}

/// The socket behind a [`DatagramTransport`].
pub struct DatagramPort {
    /// Closed by `stop` (handles may outlive it).
    socket: FdCell,
    family: Family,
    /// An IPv4 socket (which cannot send to IPv6 addresses).
    ipv4: bool,
    token: Cell<usize>,
    max_packet_size: usize,
    protocol: Guard<Datagrams>,
    reactor: WeakReactor,
    connected: RefCell<Option<Address>>,
    listening: Cell<bool>,
    /// Datagrams may be waiting (reading stopped at the per-turn limit).
    more: Cell<bool>,
    /// Files to remove when the socket closes (a Unix datagram socket's path).
    cleanup: RefCell<Option<std::path::PathBuf>>,
    /// A batch of received datagrams is being delivered: writes wait in `outbox`.
    batching: Cell<bool>,
    /// Datagrams written while a batch is delivered, sent together when it ends.
    outbox: RefCell<Outbox>,
}

/// Datagrams written during a batch, waiting for one `sendmmsg`: at most [`MAX_BATCH`] of at
/// most [`QUEUED_SEND_MAX`] bytes each (it is sent early when full). It keeps its capacity.
#[derive(Default)]
struct Outbox {
    /// The datagrams' bytes, one after another.
    bytes: Vec<u8>,
    /// Where each datagram ends in `bytes`, and where it goes (`None`: the connected peer).
    ends: Vec<(usize, Option<SocketAddrAny>)>,
}

impl DatagramTransport {
    /// Registers a bound, non-blocking socket and starts `protocol` on it.
    pub(crate) fn start(
        reactor: &Reactor,
        socket: Socket,
        family: Family,
        protocol: Box<dyn DatagramProtocol>,
        max_packet_size: usize,
        cleanup: Option<std::path::PathBuf>,
    ) -> Result<DatagramTransport, Error> {
        let ipv4 = matches!(
            socket.local_addr().ok().and_then(|a| a.as_socket()),
            Some(SocketAddr::V4(_))
        );
        let port = Rc::new(DatagramPort {
            socket: FdCell::new(OwnedFd::from(socket)),
            family,
            ipv4,
            token: Cell::new(usize::MAX),
            max_packet_size: max_packet_size.clamp(1, crate::reactor::READ_BUFFER_SIZE),
            protocol: Guard::new(protocol),
            reactor: reactor.downgrade(),
            connected: RefCell::new(None),
            listening: Cell::new(true),
            more: Cell::new(false),
            cleanup: RefCell::new(cleanup),
            batching: Cell::new(false),
            outbox: RefCell::new(Outbox::default()),
        });
        let registered = port
            .socket
            .with(|fd| reactor.register(fd, Interest::READABLE, port.clone()));
        let token = match registered {
            Some(Ok(token)) => token,
            Some(Err(err)) => return Err(Error::io(err)),
            None => return Err(Error::io(not_open())),
        };
        port.token.set(token);
        let transport = DatagramTransport { inner: port };
        transport.dispatch(DatagramEvent::Start);
        Ok(transport)
    }

    /// Sends one datagram to `addr`. A datagram is sent whole or not at all; if the socket's
    /// buffer is full it is dropped (with a debug log), as UDP would drop it anyway.
    ///
    /// Written from `datagram_received`, a datagram of up to 1232 bytes waits for the end of
    /// the batch of datagrams being delivered, and goes out with the other replies in one
    /// `sendmmsg` (in the order written). An error the kernel reports for such a datagram
    /// cannot be returned here: it is logged and the datagram dropped (a refusal still
    /// reaches `connection_refused`). Longer datagrams are sent at once (after those
    /// waiting), so [`Error::MessageTooLong`] is returned as before.
    pub fn write_to(&self, data: &[u8], addr: &Address) -> Result<(), Error> {
        if self.inner.queues(data) {
            let target = self.inner.sockaddr_any_for(addr)?;
            self.inner.queue(data, Some(target));
            return Ok(());
        }
        let target = self.inner.sockaddr_for(addr)?;
        self.send(data, Some(&target))
    }

    /// Sends one datagram to the connected address (see [`connect`](Self::connect)). As
    /// with [`write_to`](Self::write_to), a short one written from `datagram_received` goes
    /// out with the batch's replies.
    pub fn write(&self, data: &[u8]) -> Result<(), Error> {
        if self.inner.connected.borrow().is_none() {
            return Err(Error::Unsupported(
                "write without an address needs a connected socket",
            ));
        }
        if self.inner.queues(data) {
            self.inner.queue(data, None);
            return Ok(());
        }
        self.send(data, None)
    }

    /// Connects the socket to one peer: only its datagrams are received, `write` sends to it,
    /// and a refusal (nothing listening) reaches `connection_refused`. IP addresses only, as
    /// in Twisted.
    pub fn connect(&self, addr: &Address) -> Result<(), Error> {
        let target = self.inner.sockaddr_for(addr)?;
        // Datagrams written for the old peer go to it.
        self.inner.flush_outbox();
        self.inner
            .with_socket(|s| s.connect(&target))
            .map_err(Error::io)?;
        *self.inner.connected.borrow_mut() = Some(addr.clone());
        Ok(())
    }

    pub(crate) fn set_connected(&self, addr: Address) {
        *self.inner.connected.borrow_mut() = Some(addr);
    }

    /// The connected peer, if any.
    pub fn peer(&self) -> Option<Address> {
        self.inner.connected.borrow().clone()
    }

    /// The address this socket is bound to.
    pub fn host(&self) -> Address {
        self.inner.local_address()
    }

    /// The port number, for UDP sockets.
    pub fn port(&self) -> u16 {
        self.host().socket_addr().map_or(0, |a| a.port())
    }

    /// Datagrams longer than this are truncated on receipt.
    pub fn max_packet_size(&self) -> usize {
        self.inner.max_packet_size
    }

    /// Closes the socket; the protocol gets `stop_protocol`.
    pub fn stop_listening(&self) {
        self.inner.stop();
    }

    /// Whether the socket is open.
    pub fn listening(&self) -> bool {
        self.inner.listening.get()
    }

    /// Joins a multicast group, on `interface` (an address of a local interface; for IPv6
    /// its index goes in the low bits, 0 for any) or the default one.
    pub fn join_group(&self, group: IpAddr, interface: Option<IpAddr>) -> Result<(), Error> {
        self.inner
            .with_socket(|sock| match (group, interface) {
                (IpAddr::V4(g), i) => sock.join_multicast_v4(&g, &v4_interface(i)),
                (IpAddr::V6(g), i) => sock.join_multicast_v6(&g, v6_index(i)),
            })
            .map_err(Error::io)
    }

    /// Leaves a multicast group joined with [`join_group`](Self::join_group).
    pub fn leave_group(&self, group: IpAddr, interface: Option<IpAddr>) -> Result<(), Error> {
        self.inner
            .with_socket(|sock| match (group, interface) {
                (IpAddr::V4(g), i) => sock.leave_multicast_v4(&g, &v4_interface(i)),
                (IpAddr::V6(g), i) => sock.leave_multicast_v6(&g, v6_index(i)),
            })
            .map_err(Error::io)
    }

    /// Sets how many hops multicast datagrams live (IPv4 TTL / IPv6 hop limit).
    pub fn set_ttl(&self, ttl: u32) -> Result<(), Error> {
        let v6 = self.is_ipv6();
        self.inner
            .with_socket(|sock| {
                if v6 {
                    sock.set_multicast_hops_v6(ttl)
                } else {
                    sock.set_multicast_ttl_v4(ttl)
                }
            })
            .map_err(Error::io)
    }

    /// Whether our own multicast datagrams loop back to this host (default on).
    pub fn set_loopback_mode(&self, enabled: bool) -> Result<(), Error> {
        let v6 = self.is_ipv6();
        self.inner
            .with_socket(|sock| {
                if v6 {
                    sock.set_multicast_loop_v6(enabled)
                } else {
                    sock.set_multicast_loop_v4(enabled)
                }
            })
            .map_err(Error::io)
    }

    /// Sends multicast datagrams through the interface with this address.
    pub fn set_outgoing_interface(&self, interface: IpAddr) -> Result<(), Error> {
        self.inner
            .with_socket(|sock| match interface {
                IpAddr::V4(a) => sock.set_multicast_if_v4(&a),
                i => sock.set_multicast_if_v6(v6_index(Some(i))),
            })
            .map_err(Error::io)
    }

    /// Allows sending to broadcast addresses.
    pub fn set_broadcast_allowed(&self, enabled: bool) -> Result<(), Error> {
        self.inner
            .with_socket(|sock| sock.set_broadcast(enabled))
            .map_err(Error::io)
    }

    /// Lends the socket's descriptor to `f` (for options this type does not cover); `None`
    /// once the socket is closed ([`stop_listening`](Self::stop_listening) closes it).
    pub fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
        self.inner.socket.with(f)
    }

    fn is_ipv6(&self) -> bool {
        matches!(self.host().socket_addr(), Some(SocketAddr::V6(_)))
    }

    fn send(&self, data: &[u8], target: Option<&SockAddr>) -> Result<(), Error> {
        let port = &self.inner;
        if !port.listening.get() {
            tracing::debug!("datagram of {} bytes after close ignored", data.len());
            return Ok(());
        }
        // After those written before it.
        port.flush_outbox();
        loop {
            let result = port.with_socket(|sock| match target {
                Some(t) => sock.send_to_with_flags(data, t, libc::MSG_NOSIGNAL),
                None => sock.send_with_flags(data, libc::MSG_NOSIGNAL),
            });
            return match result {
                Ok(_) => Ok(()),
                Err(err) => match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => {
                        tracing::debug!("socket buffer full: datagram dropped");
                        Ok(())
                    }
                    Some(libc::EMSGSIZE) => Err(Error::MessageTooLong { size: data.len() }),
                    Some(libc::ECONNREFUSED) => {
                        // The protocol is usually running (it is writing): tell it next turn.
                        if let Some(reactor) = port.reactor.upgrade() {
                            let me = self.clone();
                            reactor.call_soon(move || me.dispatch(DatagramEvent::Refused));
                        }
                        Ok(())
                    }
                    _ => Err(Error::io(err)),
                },
            };
        }
    }

    /// Runs one protocol callback under the guard; a panic closes the socket.
    fn dispatch(&self, event: impl Delivery<Datagrams>) {
        if let Err(panicked) = self.inner.protocol.deliver(self, event) {
            self.panicked(panicked);
        }
    }

    #[cold]
    fn panicked(&self, panicked: Panicked) {
        let _ = panicked.report(format_args!(
            "the datagram protocol on {} (closing its socket)",
            self.host()
        ));
        self.inner.stop();
    }
}

/// A datagram protocol's callbacks, as the guard delivers (and queues) them.
pub(crate) enum DatagramEvent {
    Start,
    Datagram(Vec<u8>, Address),
    Refused,
    Stop,
}

/// The guard's [`Kind`] for [`DatagramProtocol`]s.
pub(crate) struct Datagrams;

impl Kind for Datagrams {
    type Protocol = dyn DatagramProtocol;
    type Transport = DatagramTransport;
    type Event = DatagramEvent;

    fn deliver(p: &mut dyn DatagramProtocol, t: &DatagramTransport, event: DatagramEvent) {
        match event {
            DatagramEvent::Start => p.start_protocol(t),
            DatagramEvent::Datagram(data, from) => p.datagram_received(t, &data, &from),
            DatagramEvent::Refused => p.connection_refused(t),
            DatagramEvent::Stop => p.stop_protocol(),
        }
    }
}

impl Delivery<Datagrams> for DatagramEvent {
    fn call(self, p: &mut dyn DatagramProtocol, t: &DatagramTransport) {
        Datagrams::deliver(p, t, self)
    }

    fn keep(self) -> DatagramEvent {
        self
    }
}

/// A datagram in the read buffer (copied only if kept).
struct Received<'a>(&'a [u8], Address);

impl Delivery<Datagrams> for Received<'_> {
    fn call(self, p: &mut dyn DatagramProtocol, t: &DatagramTransport) {
        p.datagram_received(t, self.0, &self.1)
    }

    fn keep(self) -> DatagramEvent {
        DatagramEvent::Datagram(self.0.to_vec(), self.1)
    }
}

fn v4_interface(interface: Option<IpAddr>) -> Ipv4Addr {
    match interface {
        Some(IpAddr::V4(a)) => a,
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

fn v6_index(interface: Option<IpAddr>) -> u32 {
    match interface {
        Some(IpAddr::V6(a)) => (u128::from(a) & 0xffff_ffff) as u32,
        _ => 0,
    }
}

impl DatagramPort {
    fn sockaddr_for(&self, addr: &Address) -> Result<SockAddr, Error> {
        match (self.family, addr) {
            (Family::Udp, Address::Udp(a) | Address::Tcp(a)) => Ok((*a).into()),
            (Family::Unix, Address::Unix(u)) => unix_sockaddr(u).map_err(Error::io),
            _ => Err(Error::Unsupported(
                "the address is not of this socket's family",
            )),
        }
    }

    /// Runs a `socket2` call on the socket; `NotConnected` once it is closed.
    fn with_socket<R>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<R>) -> io::Result<R> {
        self.socket
            .with(|fd| f(SockRef::from(&fd)))
            .unwrap_or_else(|| Err(not_open()))
    }

    /// The address to queue a datagram for, as [`sockaddr_for`](Self::sockaddr_for) checks
    /// it, and the error the kernel would give at once for an IPv6 address on an IPv4
    /// socket (a queued datagram's error cannot reach its writer).
    fn sockaddr_any_for(&self, addr: &Address) -> Result<SocketAddrAny, Error> {
        match (self.family, addr) {
            (Family::Udp, Address::Udp(SocketAddr::V6(_)) | Address::Tcp(SocketAddr::V6(_)))
                if self.ipv4 =>
            {
                Err(Error::io(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)))
            }
            (Family::Udp, Address::Udp(_) | Address::Tcp(_)) | (Family::Unix, Address::Unix(_)) => {
                sys::addr::to_sockaddr_any(addr).map_err(Error::io)
            }
            _ => Err(Error::Unsupported(
                "the address is not of this socket's family",
            )),
        }
    }

    /// Whether a write of `data` waits in the outbox: during a batch, when it is short enough
    /// that the kernel will not refuse it as too long.
    fn queues(&self, data: &[u8]) -> bool {
        self.batching.get() && self.listening.get() && data.len() <= QUEUED_SEND_MAX
    }

    /// Queues a datagram for the batch's `sendmmsg`, sending those waiting first if the
    /// outbox is full.
    fn queue(self: &Rc<Self>, data: &[u8], to: Option<SocketAddrAny>) {
        if self.outbox.borrow().ends.len() >= MAX_BATCH {
            self.flush_outbox();
        }
        let mut outbox = self.outbox.borrow_mut();
        outbox.bytes.extend_from_slice(data);
        let end = outbox.bytes.len();
        outbox.ends.push((end, to));
    }

    /// Sends the datagrams waiting in the outbox, in order, with as few `sendmmsg` calls as
    /// the kernel takes them in. As a single send would: a full socket buffer drops the rest
    /// (one debug log), a refusal reaches `connection_refused` next turn; a datagram the
    /// kernel rejects (too long for the path, an unreachable network, say) is dropped with a
    /// warning, and the rest go.
    fn flush_outbox(self: &Rc<Self>) {
        let mut outbox = self.outbox.borrow_mut();
        let Outbox { bytes, ends } = &mut *outbox;
        let total = ends.len();
        let mut next = 0;
        while next < total {
            let mut batch = [Outgoing::default(); MAX_BATCH];
            let mut count = 0;
            let mut start = match next.checked_sub(1) {
                Some(prev) => ends[prev].0,
                None => 0,
            };
            for ((end, to), slot) in ends[next..].iter().zip(batch.iter_mut()) {
                *slot = Outgoing {
                    data: &bytes[start..*end],
                    to: to.as_ref(),
                };
                start = *end;
                count += 1;
            }
            let Some(sent) = self.socket.with(|fd| mmsg::send_batch(fd, &batch[..count])) else {
                // Closed: nothing more can go.
                break;
            };
            match sent {
                Ok(0) => {
                    tracing::debug!("socket buffer full: {} datagrams dropped", total - next);
                    break;
                }
                Ok(n) => next += n,
                // The first datagram of the call failed: drop it (with a log, as its writer
                // cannot be told) and go on with the others, as separate sends would.
                Err(err) => {
                    match err.raw_os_error() {
                        Some(libc::ECONNREFUSED) => {
                            if let Some(reactor) = self.reactor.upgrade() {
                                let me = DatagramTransport {
                                    inner: self.clone(),
                                };
                                reactor.call_soon(move || me.dispatch(DatagramEvent::Refused));
                            }
                        }
                        Some(libc::EMSGSIZE) => {
                            tracing::warn!("datagram too long for the socket: dropped");
                        }
                        _ => tracing::warn!("datagram send failed: {err}: dropped"),
                    }
                    next += 1;
                }
            }
        }
        bytes.clear();
        ends.clear();
    }

    fn local_address(&self) -> Address {
        match self.socket.with(sys::socket::local_name) {
            Some(Ok(a)) => sys::addr::to_address(&a, IpKind::Udp),
            _ => Address::Memory("closed".into()),
        }
    }

    /// Reads and delivers datagrams, a batch (one `recvmmsg`) at a time, up to the per-turn
    /// limit. Replies the protocol writes during a batch go out together after it.
    fn read_some(self: &Rc<Self>, reactor: &Reactor) {
        let transport = DatagramTransport {
            inner: self.clone(),
        };
        self.more.set(false);
        let slot = self.max_packet_size;
        let batch = (BATCH_BYTES / slot).clamp(1, MAX_BATCH);
        let mut budget = DATAGRAMS_PER_TURN;
        while budget > 0 {
            if !self.listening.get() {
                return;
            }
            let want = batch.min(budget);
            let outcome = reactor.with_datagram_buffer(want * slot, |buf| -> io::Result<usize> {
                let mut batch = mmsg::RecvBatch::new();
                let n = self
                    .socket
                    .with(|fd| mmsg::recv_batch(fd, buf, slot, want, &mut batch))
                    .unwrap_or(Ok(None))?;
                let Some(n) = n else {
                    return Ok(0);
                };
                self.deliver_batch(&transport, buf, &batch);
                Ok(n)
            });
            match outcome {
                Ok(0) => return,
                // A short batch emptied the queue: the socket is edge-triggered on every
                // arrival, so the next datagram wakes us again (and an error queued after
                // these datagrams reports readiness too). This saves the call that would
                // only say `EAGAIN`.
                Ok(n) if n < want => return,
                Ok(n) => budget -= n,
                Err(err) => match err.raw_os_error() {
                    Some(libc::ECONNREFUSED) => {
                        transport.dispatch(DatagramEvent::Refused);
                        budget -= 1;
                    }
                    _ => {
                        tracing::warn!("datagram receive failed: {err}");
                        return;
                    }
                },
            }
        }
        // The per-turn limit: finish at the end of the turn (edge-triggered, so no new
        // edge would remind us).
        self.more.set(true);
        reactor.mark_dirty(self.clone());
    }

    /// Delivers one batch of datagrams, the `i`th from its slot in `buf`, in order, then
    /// sends what the protocol wrote meanwhile. Closing the socket (from a callback) drops
    /// the rest of the batch.
    fn deliver_batch(
        self: &Rc<Self>,
        transport: &DatagramTransport,
        buf: &[u8],
        batch: &mmsg::RecvBatch,
    ) {
        let slot = self.max_packet_size;
        self.batching.set(true);
        for (i, chunk) in buf.chunks(slot).enumerate() {
            let Some((len, from)) = batch.get(i) else {
                break;
            };
            if !self.listening.get() {
                break;
            }
            let from = sys::addr::to_address_or_unnamed(from.as_ref(), IpKind::Udp);
            let data = chunk.get(..len).unwrap_or(chunk);
            transport.dispatch(Received(data, from));
        }
        self.batching.set(false);
        self.flush_outbox();
    }

    fn stop(self: &Rc<Self>) {
        if !self.listening.get() {
            return;
        }
        // What the protocol wrote before closing still goes.
        self.flush_outbox();
        self.listening.set(false);
        // An adopted socket has duplicates elsewhere, which would keep our epoll
        // registration alive after we close: remove it first.
        if let Some(reactor) = self.reactor.upgrade() {
            let token = self.token.get();
            self.socket
                .with(|fd| reactor.deregister(token, Some(fd)))
                .unwrap_or_else(|| reactor.deregister(token, None));
        }
        self.socket.close();
        if let Some(path) = self.cleanup.borrow_mut().take() {
            let _ = std::fs::remove_file(path);
        }
        let transport = DatagramTransport {
            inner: self.clone(),
        };
        if let Err(panicked) = self.protocol.finish(&transport, DatagramEvent::Stop) {
            let _ = panicked.report(format_args!("stop_protocol"));
        }
    }
}

/// The error for a call on a closed datagram socket.
fn not_open() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

impl Source for DatagramPort {
    fn ready(self: Rc<Self>, reactor: &Reactor, readiness: Readiness) {
        if readiness.readable || readiness.error {
            self.read_some(reactor);
        }
    }

    fn flush(self: Rc<Self>, reactor: &Reactor) {
        if self.more.get() {
            self.read_some(reactor);
        }
    }

    fn shutdown(self: Rc<Self>, _reactor: &Reactor) {
        self.stop();
    }

    fn reactor_dropped(&self) {
        self.listening.set(false);
        self.socket.close();
        if let Some(path) = self.cleanup.borrow_mut().take() {
            let _ = std::fs::remove_file(path);
        }
        drop(self.protocol.take());
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("host", &self.host())
            .field("listening", &self.listening())
            .finish()
    }
}

/// A datagram socket's Unix path, for cleanup (`None` for abstract and unnamed ones).
pub(crate) fn unix_path(address: &UnixAddress) -> Option<std::path::PathBuf> {
    match address {
        UnixAddress::Path(p) => Some(p.clone()),
        _ => None,
    }
}
