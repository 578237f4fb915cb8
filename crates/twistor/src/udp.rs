//! UDP: datagram ports and multicast (Twisted's `listenUDP` / `listenMulticast`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

use crate::datagram::{DEFAULT_MAX_PACKET_SIZE, DatagramTransport, Family};
use crate::error::Error;
use crate::protocol::DatagramProtocol;
use crate::reactor::Reactor;

/// Options for [`Reactor::listen_udp_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UdpOptions {
    /// The address to bind; all IPv4 interfaces by default.
    pub interface: IpAddr,
    /// Datagrams longer than this are truncated on receipt (default 8192, Twisted's).
    pub max_packet_size: usize,
    /// Let several sockets bind the same port (`SO_REUSEADDR` and `SO_REUSEPORT`), as
    /// several multicast listeners on one host need (Twisted's `listenMultiple`).
    pub listen_multiple: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            interface: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            listen_multiple: false,
        }
    }
}

impl UdpOptions {
    /// Binds `interface` instead of all IPv4 interfaces.
    pub fn interface(mut self, interface: IpAddr) -> Self {
        self.interface = interface;
        self
    }

    /// Truncates received datagrams at `size` bytes.
    pub fn max_packet_size(mut self, size: usize) -> Self {
        self.max_packet_size = size;
        self
    }

    /// Shares the port with other sockets that ask for it too.
    pub fn listen_multiple(mut self, enabled: bool) -> Self {
        self.listen_multiple = enabled;
        self
    }
}

impl Reactor {
    /// Listens for UDP datagrams on `port` (0 lets the OS choose) on all IPv4 interfaces.
    pub fn listen_udp(
        &self,
        port: u16,
        protocol: impl DatagramProtocol,
    ) -> Result<DatagramTransport, Error> {
        self.listen_udp_with(port, protocol, UdpOptions::default())
    }

    /// Listens for UDP datagrams with the given options.
    pub fn listen_udp_with(
        &self,
        port: u16,
        protocol: impl DatagramProtocol,
        options: UdpOptions,
    ) -> Result<DatagramTransport, Error> {
        let addr = SocketAddr::new(options.interface, port);
        let socket = (|| {
            let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
            if options.listen_multiple {
                socket.set_reuse_address(true)?;
                socket.set_reuse_port(true)?;
            }
            socket.bind(&addr.into())?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })()
        .map_err(|source: std::io::Error| Error::CannotListen {
            addr: format!("udp:{addr}"),
            source: source.into(),
        })?;
        DatagramTransport::start(
            self,
            socket,
            Family::Udp,
            Box::new(protocol),
            options.max_packet_size,
            None,
        )
    }

    /// Listens for UDP datagrams on a port that will join multicast groups (Twisted's
    /// `listenMulticast`); with `listen_multiple`, several listeners share the port.
    pub fn listen_multicast(
        &self,
        port: u16,
        protocol: impl DatagramProtocol,
        listen_multiple: bool,
    ) -> Result<DatagramTransport, Error> {
        self.listen_udp_with(
            port,
            protocol,
            UdpOptions::default().listen_multiple(listen_multiple),
        )
    }
}
