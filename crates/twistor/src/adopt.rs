//! Adopting sockets created elsewhere (Twisted's `IReactorSocket`): a listening socket
//! passed down by a supervisor, a connection accepted by other code, a bound datagram
//! socket. The reactor works on a duplicate, so the caller keeps (and should close) its own
//! descriptor. The family (TCP or Unix) is read from the socket itself.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use socket2::{Socket, Type};

use crate::datagram::{DatagramTransport, Family};
use crate::error::Error;
use crate::listener::StreamListener;
use crate::port::ListeningPort;
use crate::protocol::{DatagramProtocol, Factory};
use crate::reactor::Reactor;
use crate::stream::{StreamConnection, StreamKind};
use crate::sys::{self, addr::IpKind};

impl Reactor {
    /// Starts accepting connections on an already listening stream socket (TCP or Unix).
    pub fn adopt_stream_port(
        &self,
        fd: BorrowedFd<'_>,
        factory: Rc<dyn Factory>,
    ) -> Result<ListeningPort, Error> {
        let (socket, kind, describe) = adopt(fd, Type::STREAM)?;
        let listening = socket.is_listener().map_err(Error::io)?;
        if !listening {
            return Err(Error::Unsupported(
                "adopt_stream_port needs a listening socket",
            ));
        }
        StreamListener::start(self, socket, kind, factory, None, &describe)
    }

    /// Runs a protocol built by `factory` on an already connected stream socket.
    pub fn adopt_stream_connection(
        &self,
        fd: BorrowedFd<'_>,
        factory: Rc<dyn Factory>,
    ) -> Result<(), Error> {
        let (socket, kind, _) = adopt(fd, Type::STREAM)?;
        let peer = sys::socket::peer_name(socket.as_fd()).map_err(Error::io)?;
        let peer = sys::addr::to_address_or_unnamed(peer.as_ref(), IpKind::Tcp);
        let Some(protocol) = factory.build_protocol(&peer) else {
            return Ok(());
        };
        StreamConnection::start_accepted(self, OwnedFd::from(socket), kind, peer, protocol);
        Ok(())
    }

    /// Runs a datagram protocol on an already bound datagram socket (UDP or Unix).
    pub fn adopt_datagram_port(
        &self,
        fd: BorrowedFd<'_>,
        protocol: impl DatagramProtocol,
        max_packet_size: usize,
    ) -> Result<DatagramTransport, Error> {
        let (socket, kind, _) = adopt(fd, Type::DGRAM)?;
        let family = match kind {
            StreamKind::Tcp => Family::Udp,
            StreamKind::Unix => Family::Unix,
        };
        DatagramTransport::start(
            self,
            socket,
            family,
            Box::new(protocol),
            max_packet_size,
            None,
        )
    }
}

/// Duplicates `fd`, checks its type, makes it non-blocking, and tells its family.
fn adopt(fd: BorrowedFd<'_>, want: Type) -> Result<(Socket, StreamKind, String), Error> {
    let socket = Socket::from(fd.try_clone_to_owned().map_err(Error::io)?);
    let fail = |e: io::Error| Error::io(e);
    if socket.r#type().map_err(fail)? != want {
        return Err(Error::Unsupported(
            "the descriptor is not a socket of the expected type",
        ));
    }
    let local = sys::socket::local_name(socket.as_fd()).map_err(fail)?;
    let Some(kind) = StreamKind::of(&local) else {
        return Err(Error::Unsupported(
            "only IP and Unix sockets can be adopted",
        ));
    };
    socket.set_nonblocking(true).map_err(fail)?;
    let describe = format!(
        "{} (fd {})",
        sys::addr::to_address(&local, IpKind::Tcp),
        socket.as_raw_fd()
    );
    Ok((socket, kind, describe))
}
