//! TCP: listening ports and outgoing connections (Twisted's `listenTCP` / `connectTCP`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::connecting::{StreamConnector, Target};
use crate::connector::Connector;
use crate::error::Error;
use crate::listener::StreamListener;
use crate::port::ListeningPort;
use crate::protocol::{ClientFactory, Factory};
use crate::reactor::Reactor;
use crate::stream::StreamKind;

/// Twisted's default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`Reactor::listen_tcp_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenOptions {
    /// The address to listen on; all IPv4 interfaces by default. `::` listens on IPv6 (and
    /// IPv4, where the system allows).
    pub interface: IpAddr,
    /// The `listen(2)` backlog (Twisted's default, 50).
    pub backlog: i32,
    /// Sets `SO_REUSEPORT`, so several reactors can each own a listener on one port.
    pub reuse_port: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            interface: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            backlog: 50,
            reuse_port: false,
        }
    }
}

impl ListenOptions {
    /// Listen on `interface` instead of all IPv4 interfaces.
    pub fn interface(mut self, interface: IpAddr) -> Self {
        self.interface = interface;
        self
    }

    /// Use this `listen(2)` backlog.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Set `SO_REUSEPORT`.
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.reuse_port = reuse;
        self
    }
}

/// Options for [`Reactor::connect_tcp_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Give up if the connection is not up after this long (default 30 s); `None` waits
    /// for the OS to give up.
    pub timeout: Option<Duration>,
    /// Bind the local end to this address before connecting.
    pub bind_address: Option<SocketAddr>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            bind_address: None,
        }
    }
}

impl ConnectOptions {
    /// Give up after `timeout` (or never, with `None`).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bind the local end to `addr` first.
    pub fn bind_address(mut self, addr: SocketAddr) -> Self {
        self.bind_address = Some(addr);
        self
    }
}

impl Reactor {
    /// Listens for TCP connections on `port` (0 lets the OS choose) on all IPv4 interfaces,
    /// building a protocol with `factory` for each.
    pub fn listen_tcp(&self, port: u16, factory: Rc<dyn Factory>) -> Result<ListeningPort, Error> {
        self.listen_tcp_with(port, factory, ListenOptions::default())
    }

    /// Listens for TCP connections on `port` (0 lets the OS choose) on the loopback
    /// interface, 127.0.0.1, so only this machine can connect (Twisted's
    /// `listenTCP(port, factory, interface="127.0.0.1")`). For another interface, use
    /// [`listen_tcp_with`](Reactor::listen_tcp_with) and [`ListenOptions::interface`].
    pub fn listen_tcp_local(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
    ) -> Result<ListeningPort, Error> {
        let options = ListenOptions::default().interface(IpAddr::V4(Ipv4Addr::LOCALHOST));
        self.listen_tcp_with(port, factory, options)
    }

    /// Listens for TCP connections on `port` with the given interface, backlog and options.
    pub fn listen_tcp_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        options: ListenOptions,
    ) -> Result<ListeningPort, Error> {
        let addr = SocketAddr::new(options.interface, port);
        let cannot = |source: io::Error| Error::CannotListen {
            addr: addr.to_string(),
            source: source.into(),
        };
        let socket = listening_socket(addr, &options).map_err(cannot)?;
        StreamListener::start(
            self,
            socket,
            StreamKind::Tcp,
            factory,
            None,
            &addr.to_string(),
        )
    }

    /// Connects to `host:port` (a name or an address literal; names are looked up without
    /// blocking the loop), with the default options. The factory builds the protocol once
    /// connected and hears about failures and losses.
    pub fn connect_tcp(&self, host: &str, port: u16, factory: Rc<dyn ClientFactory>) -> Connector {
        self.connect_tcp_with(host, port, factory, ConnectOptions::default())
    }

    /// Connects to `host:port` with a timeout and bind address.
    pub fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        options: ConnectOptions,
    ) -> Connector {
        let target = Target::Tcp {
            host: host.to_string(),
            port,
            bind_address: options.bind_address,
        };
        StreamConnector::start(self, target, factory, options.timeout)
    }
}

/// The TCP half of a reactor (Twisted's `IReactorTCP`), as a trait so code can be tested
/// against the test kit's `MemoryReactor`, which records calls instead of making sockets.
pub trait ReactorTcp {
    /// Listens on `port`; see [`Reactor::listen_tcp_with`].
    fn listen_tcp_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        options: ListenOptions,
    ) -> Result<ListeningPort, Error>;

    /// Connects to `host:port`; see [`Reactor::connect_tcp_with`].
    fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        options: ConnectOptions,
    ) -> Connector;
}

impl ReactorTcp for Reactor {
    fn listen_tcp_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        options: ListenOptions,
    ) -> Result<ListeningPort, Error> {
        Reactor::listen_tcp_with(self, port, factory, options)
    }

    fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        options: ConnectOptions,
    ) -> Connector {
        Reactor::connect_tcp_with(self, host, port, factory, options)
    }
}

fn listening_socket(addr: SocketAddr, options: &ListenOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(options.backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
