//! TCP: listening ports and outgoing connections (Twisted's `listenTCP` / `connectTCP`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{BorrowedFd, IntoRawFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::time::Duration;

use mio::Interest;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::address::Address;
use crate::connector::{Connector, ConnectorImpl, ConnectorState};
use crate::error::Error;
use crate::port::{ListeningPort, PortImpl};
use crate::protocol::{self, ClientFactory, CloseReason, Factory, Protocol};
use crate::reactor::{DelayedCall, Reactor, Readiness, Source, WeakReactor, panic_message};
use crate::resolve::resolve;
use crate::stream::{ConnectionOwner, StreamConnection, StreamKind};
use crate::transport::Transport;

/// How long `accept` waits before trying again after running out of file descriptors
/// (or memory): long enough not to spin, short enough to recover promptly.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

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
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        let fd = socket.into_raw_fd();
        let port = Rc::new_cyclic(|me| TcpPort {
            fd,
            token: Cell::new(usize::MAX),
            factory,
            reactor: self.downgrade(),
            local,
            listening: Cell::new(true),
            retry: RefCell::new(None),
            starved: Cell::new(false),
            me: me.clone(),
        });
        match self.register(fd, Interest::READABLE, port.clone()) {
            Ok(token) => port.token.set(token),
            Err(err) => {
                // SAFETY: closing the descriptor we just created and never registered.
                unsafe { libc::close(fd) };
                return Err(cannot(err));
            }
        }
        protocol::do_start(&port.factory);
        tracing::info!("{} starting on {}", port.factory.log_prefix(), local.port());
        Ok(ListeningPort::new(port))
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
        let connector = Rc::new_cyclic(|me| TcpConnector {
            me: me.clone(),
            reactor: self.downgrade(),
            host: host.to_string(),
            port,
            factory,
            options,
            state: Cell::new(ConnectorState::Disconnected),
            attempt: Cell::new(0),
            pending: RefCell::new(None),
            timeout: RefCell::new(None),
            connection: RefCell::new(None),
            factory_started: Cell::new(false),
        });
        connector.connect();
        Connector::new(connector)
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

/// A listening TCP socket, seen through [`ListeningPort`].
pub struct TcpPort {
    fd: RawFd,
    token: Cell<usize>,
    factory: Rc<dyn Factory>,
    reactor: WeakReactor,
    local: SocketAddr,
    listening: Cell<bool>,
    retry: RefCell<Option<DelayedCall>>,
    /// Accepting failed for want of descriptors or memory, and has not succeeded since.
    starved: Cell<bool>,
    me: Weak<TcpPort>,
}

impl TcpPort {
    fn stop_listening(&self) {
        if !self.listening.replace(false) {
            return;
        }
        if let Some(retry) = self.retry.borrow_mut().take() {
            let _ = retry.cancel();
        }
        if let Some(reactor) = self.reactor.upgrade() {
            reactor.deregister(self.token.get(), None);
        }
        // SAFETY: our listening descriptor, closed once (guarded by `listening`).
        unsafe { libc::close(self.fd) };
        tracing::info!("(TCP Port {} Closed)", self.local.port());
        protocol::do_stop(&self.factory);
    }

    fn accept_loop(self: &Rc<Self>, reactor: &Reactor) {
        while self.listening.get() {
            // SAFETY: accept4 fills in at most the storage and length it is given.
            let accepted = unsafe {
                SockAddr::try_init(|storage, len| {
                    let fd = libc::accept4(
                        self.fd,
                        storage.cast(),
                        len,
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    );
                    if fd < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(fd)
                    }
                })
            };
            match accepted {
                Ok((fd, addr)) => {
                    if self.starved.replace(false) {
                        tracing::info!("port {}: accepting again", self.local.port());
                    }
                    self.accepted(reactor, fd, &addr)
                }
                Err(err) => match err.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(
                        libc::EINTR
                        | libc::ECONNABORTED
                        | libc::EPROTO
                        | libc::ENETDOWN
                        | libc::ENOPROTOOPT
                        | libc::EHOSTDOWN
                        | libc::ENONET
                        | libc::EHOSTUNREACH
                        | libc::EOPNOTSUPP
                        | libc::ENETUNREACH,
                    ) => continue,
                    _ => {
                        // Out of descriptors or memory (or worse): the connection stays in
                        // the backlog, and with edge-triggered epoll no new edge may come,
                        // so try again shortly instead of spinning or giving up.
                        if self.starved.replace(true) {
                            tracing::debug!(
                                "accept on port {} still failing: {err}",
                                self.local.port()
                            );
                        } else {
                            tracing::warn!(
                                "accept on port {} failed: {err}; retrying every {:?}",
                                self.local.port(),
                                ACCEPT_RETRY_DELAY
                            );
                        }
                        self.schedule_retry(reactor);
                        return;
                    }
                },
            }
        }
    }

    fn schedule_retry(self: &Rc<Self>, reactor: &Reactor) {
        if self
            .retry
            .borrow()
            .as_ref()
            .is_some_and(DelayedCall::active)
        {
            return;
        }
        let me = self.me.clone();
        let weak_reactor = reactor.downgrade();
        let call = reactor.call_later(ACCEPT_RETRY_DELAY, move || {
            if let (Some(port), Some(reactor)) = (me.upgrade(), weak_reactor.upgrade()) {
                port.accept_loop(&reactor);
            }
        });
        *self.retry.borrow_mut() = Some(call);
    }

    fn accepted(&self, reactor: &Reactor, fd: RawFd, addr: &SockAddr) {
        let Some(peer) = addr.as_socket().map(Address::Tcp) else {
            // SAFETY: closing the descriptor accept just gave us.
            unsafe { libc::close(fd) };
            return;
        };
        let built = catch_unwind(AssertUnwindSafe(|| self.factory.build_protocol(&peer)));
        let protocol = match built {
            Ok(Some(protocol)) => protocol,
            Ok(None) => {
                tracing::debug!("factory refused connection from {peer}");
                // SAFETY: as above.
                unsafe { libc::close(fd) };
                return;
            }
            Err(panic) => {
                tracing::error!("build_protocol panicked: {}", panic_message(&*panic));
                // SAFETY: as above.
                unsafe { libc::close(fd) };
                return;
            }
        };
        let conn = StreamConnection::new(reactor, fd, StreamKind::Tcp, peer, protocol, None);
        match reactor.register(fd, Interest::READABLE | Interest::WRITABLE, conn.clone()) {
            Ok(token) => conn.set_token(token),
            Err(err) => {
                tracing::error!("could not register accepted connection: {err}");
                // SAFETY: the connection never started; the descriptor is still ours.
                unsafe { libc::close(fd) };
                return;
            }
        }
        conn.start(reactor);
    }
}

impl PortImpl for TcpPort {
    fn host(&self) -> Address {
        Address::Tcp(self.local)
    }

    fn stop_listening(&self) {
        TcpPort::stop_listening(self)
    }

    fn listening(&self) -> bool {
        self.listening.get()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Source for TcpPort {
    fn ready(self: Rc<Self>, reactor: &Reactor, _readiness: Readiness) {
        self.accept_loop(reactor);
    }

    fn shutdown(self: Rc<Self>, _reactor: &Reactor) {
        self.stop_listening();
    }
}

/// An outgoing TCP connection and its re-attempts (Twisted's `tcp.Connector`).
pub struct TcpConnector {
    me: Weak<TcpConnector>,
    reactor: WeakReactor,
    host: String,
    port: u16,
    factory: Rc<dyn ClientFactory>,
    options: ConnectOptions,
    state: Cell<ConnectorState>,
    /// Bumped by every attempt and cancellation, so late answers to old ones are ignored.
    attempt: Cell<u64>,
    pending: RefCell<Option<Rc<ConnectingSocket>>>,
    timeout: RefCell<Option<DelayedCall>>,
    connection: RefCell<Option<Rc<StreamConnection>>>,
    factory_started: Cell<bool>,
}

impl TcpConnector {
    fn handle(&self) -> Connector {
        Connector::new(self.me.upgrade().expect("connector alive while in use"))
    }

    fn destination_string(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn start_attempt(&self, reactor: &Reactor) {
        let attempt = self.attempt.get() + 1;
        self.attempt.set(attempt);
        if let Some(timeout) = self.options.timeout {
            let me = self.me.clone();
            let call = reactor.call_later(timeout, move || {
                if let Some(c) = me.upgrade() {
                    if c.attempt.get() == attempt {
                        let addr = c.destination_string();
                        c.fail(Error::ConnectTimeout { addr });
                    }
                }
            });
            *self.timeout.borrow_mut() = Some(call);
        }
        // The lookup holds the connector alive (the caller may have dropped its handle, as
        // with Twisted's `connectTCP`, where the reactor keeps the connector).
        let c = self.me.upgrade().expect("connector alive while in use");
        let weak_reactor = reactor.downgrade();
        resolve(reactor, &self.host, self.port, move |result| {
            let Some(reactor) = weak_reactor.upgrade() else {
                return;
            };
            if c.attempt.get() != attempt || c.state.get() != ConnectorState::Connecting {
                return;
            }
            match result {
                Ok(addrs) => c.connect_to(&reactor, pick_address(&addrs)),
                Err(err) => c.fail(err),
            }
        });
    }

    fn connect_to(&self, reactor: &Reactor, addr: SocketAddr) {
        let socket = match self.connecting_socket(addr) {
            Ok(s) => s,
            Err(err) => return self.fail(connect_error(&self.destination_string(), err)),
        };
        let fd = socket.into_raw_fd();
        let pending = Rc::new(ConnectingSocket {
            fd,
            token: Cell::new(usize::MAX),
            addr,
            attempt: self.attempt.get(),
            connector: self.me.upgrade().expect("connector alive while in use"),
        });
        match reactor.register(fd, Interest::READABLE | Interest::WRITABLE, pending.clone()) {
            Ok(token) => pending.token.set(token),
            Err(err) => {
                // SAFETY: our new descriptor, never registered.
                unsafe { libc::close(fd) };
                return self.fail(connect_error(&self.destination_string(), err));
            }
        }
        *self.pending.borrow_mut() = Some(pending);
    }

    fn connecting_socket(&self, addr: SocketAddr) -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        if let Some(bind) = self.options.bind_address {
            socket.bind(&bind.into())?;
        }
        match socket.connect(&addr.into()) {
            Ok(()) => Ok(socket),
            Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
            Err(err) => Err(err),
        }
    }

    /// The handshake finished on `socket`: start the protocol.
    fn connected(&self, reactor: &Reactor, socket: &ConnectingSocket) -> Rc<StreamConnection> {
        self.pending.borrow_mut().take();
        self.cancel_timeout();
        self.state.set(ConnectorState::Connected);
        let peer = Address::Tcp(socket.addr);
        let built = catch_unwind(AssertUnwindSafe(|| self.factory.build_protocol(&peer)));
        let (protocol, refused): (Box<dyn Protocol>, bool) = match built {
            Ok(Some(p)) => (p, false),
            Ok(None) => (Box::new(Discard), true),
            Err(panic) => {
                tracing::error!("build_protocol panicked: {}", panic_message(&*panic));
                (Box::new(Discard), true)
            }
        };
        let owner: Rc<dyn ConnectionOwner> = self.me.upgrade().expect("connector alive");
        let conn = StreamConnection::new(
            reactor,
            socket.fd,
            StreamKind::Tcp,
            peer,
            protocol,
            Some(owner),
        );
        conn.set_token(socket.token.get());
        reactor.replace_source(socket.token.get(), conn.clone());
        *self.connection.borrow_mut() = Some(conn.clone());
        if refused {
            // Twisted's way: a stand-in protocol, and the connection dropped at once.
            conn.transport().lose_connection();
        }
        conn.start(reactor);
        conn
    }

    fn fail(&self, reason: Error) {
        if self.state.get() != ConnectorState::Connecting {
            return;
        }
        self.attempt.set(self.attempt.get() + 1);
        self.cancel_timeout();
        if let Some(pending) = self.pending.borrow_mut().take() {
            pending.discard();
        }
        self.state.set(ConnectorState::Disconnected);
        let handle = self.handle();
        self.factory.client_connection_failed(&handle, &reason);
        self.stop_factory_if_idle();
    }

    fn cancel_timeout(&self) {
        if let Some(call) = self.timeout.borrow_mut().take() {
            let _ = call.cancel();
        }
    }

    fn stop_factory_if_idle(&self) {
        if self.state.get() == ConnectorState::Disconnected && self.factory_started.replace(false) {
            protocol::do_stop(&self.factory);
        }
    }
}

/// Of the addresses a name resolved to, Twisted's `connectTCP` uses an IPv4 one; so do we,
/// falling back to the first address. (Racing them all is `HostnameEndpoint`'s job.)
fn pick_address(addrs: &[SocketAddr]) -> SocketAddr {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .unwrap_or(addrs[0])
}

fn connect_error(addr: &str, err: io::Error) -> Error {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => Error::ConnectionRefused {
            addr: addr.to_string(),
        },
        Some(libc::ETIMEDOUT) => Error::ConnectTimeout {
            addr: addr.to_string(),
        },
        _ => Error::ConnectFailed {
            addr: addr.to_string(),
            source: err.into(),
        },
    }
}

impl ConnectorImpl for TcpConnector {
    fn connect(&self) {
        if self.state.get() != ConnectorState::Disconnected {
            tracing::warn!("connect() ignored: connector is {:?}", self.state.get());
            return;
        }
        let Some(reactor) = self.reactor.upgrade() else {
            return;
        };
        self.state.set(ConnectorState::Connecting);
        if !self.factory_started.replace(true) {
            protocol::do_start(&self.factory);
        }
        self.factory.started_connecting(&self.handle());
        if self.state.get() == ConnectorState::Connecting {
            self.start_attempt(&reactor);
        }
    }

    fn stop_connecting(&self) -> Result<(), Error> {
        if self.state.get() != ConnectorState::Connecting {
            return Err(Error::NotConnecting);
        }
        self.fail(Error::UserCancelledConnect);
        Ok(())
    }

    fn disconnect(&self) {
        match self.state.get() {
            ConnectorState::Connecting => {
                let _ = self.stop_connecting();
            }
            ConnectorState::Connected => {
                let conn = self.connection.borrow().clone();
                if let Some(conn) = conn {
                    conn.transport().lose_connection();
                }
            }
            ConnectorState::Disconnected => {}
        }
    }

    fn destination(&self) -> Address {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => Address::Tcp(SocketAddr::new(ip, self.port)),
            Err(_) => Address::Hostname {
                host: self.host.clone(),
                port: self.port,
            },
        }
    }

    fn state(&self) -> ConnectorState {
        self.state.get()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl ConnectionOwner for TcpConnector {
    fn connection_lost(&self, reason: &CloseReason) {
        self.connection.borrow_mut().take();
        self.state.set(ConnectorState::Disconnected);
        let handle = self.handle();
        self.factory.client_connection_lost(&handle, reason);
        self.stop_factory_if_idle();
    }
}

/// A socket whose non-blocking `connect` is under way.
struct ConnectingSocket {
    fd: RawFd,
    token: Cell<usize>,
    addr: SocketAddr,
    attempt: u64,
    /// Strong: while the attempt is registered with the reactor, it keeps the connector
    /// alive. The cycle ends when the attempt does (`pending` is cleared).
    connector: Rc<TcpConnector>,
}

impl ConnectingSocket {
    /// Drops the attempt: closes the socket.
    fn discard(&self) {
        if let Some(reactor) = self.connector.reactor.upgrade() {
            reactor.deregister(self.token.get(), None);
        }
        // SAFETY: the socket is ours; discard runs once, when the attempt is dropped.
        unsafe { libc::close(self.fd) };
    }
}

impl Source for ConnectingSocket {
    fn ready(self: Rc<Self>, reactor: &Reactor, readiness: Readiness) {
        let connector = self.connector.clone();
        if connector.attempt.get() != self.attempt {
            return;
        }
        // SAFETY: the descriptor is open while the attempt is current.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        match SockRef::from(&fd).take_error() {
            Ok(None) if readiness.writable || readiness.error => {
                let conn = connector.connected(reactor, &self);
                // Data may have come with the handshake's edge; no new edge will announce
                // it, so read now.
                if readiness.readable || readiness.read_closed {
                    conn.ready(reactor, readiness);
                }
            }
            Ok(None) => {}
            Ok(Some(err)) | Err(err) => {
                let addr = connector.destination_string();
                connector.fail(connect_error(&addr, err));
            }
        }
    }

    fn shutdown(self: Rc<Self>, _reactor: &Reactor) {
        self.connector.fail(Error::ShuttingDown);
    }
}

/// The stand-in protocol for a client connection whose factory built none.
struct Discard;

impl Protocol for Discard {
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}
