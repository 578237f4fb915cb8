//! Datagram sockets (UDP and Unix datagrams) and the [`DatagramTransport`] their protocols
//! write through.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use mio::Interest;
use socket2::{SockAddr, SockRef, Socket};

use crate::address::{Address, UnixAddress};
use crate::error::Error;
use crate::protocol::DatagramProtocol;
use crate::reactor::{Reactor, Readiness, Source, WeakReactor, panic_message};
use crate::stream::{StreamKind, sockaddr_to_address};
use crate::unix::unix_sockaddr;

/// Twisted's default maximum packet size.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 8192;

/// How many datagrams one readiness event reads before letting others run; the rest are
/// read at the end of the turn.
const DATAGRAMS_PER_TURN: usize = 256;

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
    socket: Socket,
    family: Family,
    token: Cell<usize>,
    max_packet_size: usize,
    protocol: RefCell<Option<Box<dyn DatagramProtocol>>>,
    reactor: WeakReactor,
    connected: RefCell<Option<Address>>,
    listening: Cell<bool>,
    /// Datagrams may be waiting (reading stopped at the per-turn limit).
    more: Cell<bool>,
    /// Files to remove when the socket closes (a Unix datagram socket's path).
    cleanup: RefCell<Option<std::path::PathBuf>>,
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
        let port = Rc::new(DatagramPort {
            socket,
            family,
            token: Cell::new(usize::MAX),
            max_packet_size: max_packet_size.clamp(1, crate::reactor::READ_BUFFER_SIZE),
            protocol: RefCell::new(Some(protocol)),
            reactor: reactor.downgrade(),
            connected: RefCell::new(None),
            listening: Cell::new(true),
            more: Cell::new(false),
            cleanup: RefCell::new(cleanup),
        });
        let fd = port.socket.as_raw_fd();
        let token = reactor.register(fd, Interest::READABLE, port.clone())?;
        port.token.set(token);
        let transport = DatagramTransport { inner: port };
        transport.dispatch(|p, t| p.start_protocol(t));
        Ok(transport)
    }

    /// Sends one datagram to `addr`. A datagram is sent whole or not at all; if the socket's
    /// buffer is full it is dropped (with a debug log), as UDP would drop it anyway.
    pub fn write_to(&self, data: &[u8], addr: &Address) -> Result<(), Error> {
        let target = self.inner.sockaddr_for(addr)?;
        self.send(data, Some(&target))
    }

    /// Sends one datagram to the connected address (see [`connect`](Self::connect)).
    pub fn write(&self, data: &[u8]) -> Result<(), Error> {
        if self.inner.connected.borrow().is_none() {
            return Err(Error::Unsupported(
                "write without an address needs a connected socket",
            ));
        }
        self.send(data, None)
    }

    /// Connects the socket to one peer: only its datagrams are received, `write` sends to it,
    /// and a refusal (nothing listening) reaches `connection_refused`. IP addresses only, as
    /// in Twisted.
    pub fn connect(&self, addr: &Address) -> Result<(), Error> {
        let target = self.inner.sockaddr_for(addr)?;
        self.inner.socket.connect(&target).map_err(Error::io)?;
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
        let sock = &self.inner.socket;
        match (group, interface) {
            (IpAddr::V4(g), i) => sock.join_multicast_v4(&g, &v4_interface(i)),
            (IpAddr::V6(g), i) => sock.join_multicast_v6(&g, v6_index(i)),
        }
        .map_err(Error::io)
    }

    /// Leaves a multicast group joined with [`join_group`](Self::join_group).
    pub fn leave_group(&self, group: IpAddr, interface: Option<IpAddr>) -> Result<(), Error> {
        let sock = &self.inner.socket;
        match (group, interface) {
            (IpAddr::V4(g), i) => sock.leave_multicast_v4(&g, &v4_interface(i)),
            (IpAddr::V6(g), i) => sock.leave_multicast_v6(&g, v6_index(i)),
        }
        .map_err(Error::io)
    }

    /// Sets how many hops multicast datagrams live (IPv4 TTL / IPv6 hop limit).
    pub fn set_ttl(&self, ttl: u32) -> Result<(), Error> {
        let sock = &self.inner.socket;
        if self.is_ipv6() {
            sock.set_multicast_hops_v6(ttl)
        } else {
            sock.set_multicast_ttl_v4(ttl)
        }
        .map_err(Error::io)
    }

    /// Whether our own multicast datagrams loop back to this host (default on).
    pub fn set_loopback_mode(&self, enabled: bool) -> Result<(), Error> {
        let sock = &self.inner.socket;
        if self.is_ipv6() {
            sock.set_multicast_loop_v6(enabled)
        } else {
            sock.set_multicast_loop_v4(enabled)
        }
        .map_err(Error::io)
    }

    /// Sends multicast datagrams through the interface with this address.
    pub fn set_outgoing_interface(&self, interface: IpAddr) -> Result<(), Error> {
        let sock = &self.inner.socket;
        match interface {
            IpAddr::V4(a) => sock.set_multicast_if_v4(&a),
            i => sock.set_multicast_if_v6(v6_index(Some(i))),
        }
        .map_err(Error::io)
    }

    /// Allows sending to broadcast addresses.
    pub fn set_broadcast_allowed(&self, enabled: bool) -> Result<(), Error> {
        self.inner.socket.set_broadcast(enabled).map_err(Error::io)
    }

    /// The socket's descriptor (for options this type does not cover).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.socket.as_fd()
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
        loop {
            let result = match target {
                Some(t) => port.socket.send_to_with_flags(data, t, libc::MSG_NOSIGNAL),
                None => port.socket.send_with_flags(data, libc::MSG_NOSIGNAL),
            };
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
                            reactor.call_soon(move || me.dispatch(|p, t| p.connection_refused(t)));
                        }
                        Ok(())
                    }
                    _ => Err(Error::io(err)),
                },
            };
        }
    }

    fn dispatch(&self, f: impl FnOnce(&mut dyn DatagramProtocol, &DatagramTransport)) {
        let Ok(mut slot) = self.inner.protocol.try_borrow_mut() else {
            tracing::warn!("datagram protocol callback re-entered; event dropped");
            return;
        };
        let Some(protocol) = slot.as_mut() else {
            return;
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(&mut **protocol, self))) {
            tracing::error!(
                "datagram protocol callback panicked: {}",
                panic_message(&*panic)
            );
        }
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

    fn local_address(&self) -> Address {
        match self.socket.local_addr() {
            Ok(a) => self.to_address(&a),
            Err(_) => Address::Memory("closed".into()),
        }
    }

    fn to_address(&self, addr: &SockAddr) -> Address {
        match self.family {
            Family::Udp => match addr.as_socket() {
                Some(a) => Address::Udp(a),
                None => Address::Memory("unknown".into()),
            },
            Family::Unix => sockaddr_to_address(StreamKind::Unix, addr),
        }
    }

    fn read_some(self: &Rc<Self>, reactor: &Reactor) {
        let transport = DatagramTransport {
            inner: self.clone(),
        };
        self.more.set(false);
        for _ in 0..DATAGRAMS_PER_TURN {
            if !self.listening.get() {
                return;
            }
            let outcome = reactor.with_read_buffer(|buf| {
                let buf = &mut buf[..self.max_packet_size];
                // SAFETY: `recv_from` only writes initialised bytes into the buffer, and a
                // `[u8]` viewed as `[MaybeUninit<u8>]` is always valid.
                let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
                match self.socket.recv_from(uninit) {
                    Ok((n, from)) => {
                        let from = self.to_address(&from);
                        let data = &buf[..n];
                        transport.dispatch(|p, t| p.datagram_received(t, data, &from));
                        Ok(true)
                    }
                    Err(err) => Err(err),
                }
            });
            match outcome {
                Ok(_) => continue,
                Err(err) => match err.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EINTR) => continue,
                    Some(libc::ECONNREFUSED) => {
                        transport.dispatch(|p, t| p.connection_refused(t));
                        continue;
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

    fn stop(&self) {
        if !self.listening.replace(false) {
            return;
        }
        if let Some(reactor) = self.reactor.upgrade() {
            reactor.deregister(self.token.get(), Some(self.socket.as_raw_fd()));
        }
        let _ = SockRef::from(&self.socket).shutdown(std::net::Shutdown::Both);
        if let Some(path) = self.cleanup.borrow_mut().take() {
            let _ = std::fs::remove_file(path);
        }
        let protocol = self.protocol.borrow_mut().take();
        if let Some(mut protocol) = protocol
            && let Err(panic) = catch_unwind(AssertUnwindSafe(|| protocol.stop_protocol()))
        {
            tracing::error!("stop_protocol panicked: {}", panic_message(&*panic));
        }
    }

    fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
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
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("host", &self.host())
            .field("fd", &self.inner.raw_fd())
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
