//! Outgoing stream connections (TCP and Unix): name lookup, the non-blocking connect, the
//! timeout, and the connector that reports to a client factory and allows re-attempts.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::time::Duration;

use mio::Interest;
use socket2::{SockAddr, Socket, Type};

use crate::address::{Address, UnixAddress};
use crate::connector::{Connector, ConnectorImpl, ConnectorState};
use crate::error::Error;
use crate::protocol::{self, ClientFactory, CloseReason, Protocol};
use crate::reactor::{DelayedCall, Reactor, Readiness, Source, WeakReactor, panic_message};
use crate::resolve::resolve;
use crate::stream::{ConnectionOwner, StreamConnection, StreamKind};
use crate::sys::addr::unix_sockaddr;
use crate::sys::{self, FdCell};
use crate::transport::Transport;
use crate::unstable::ReactorInternals;

/// Where a [`StreamConnector`] connects to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A host name or address literal and a port, over TCP.
    Tcp {
        host: String,
        port: u16,
        bind_address: Option<SocketAddr>,
    },
    /// A Unix socket.
    Unix(UnixAddress),
}

/// An outgoing stream connection and its re-attempts (Twisted's `tcp.Connector` and
/// `unix.Connector`).
pub struct StreamConnector {
    me: Weak<StreamConnector>,
    reactor: WeakReactor,
    target: Target,
    factory: Rc<dyn ClientFactory>,
    timeout_after: Option<Duration>,
    state: Cell<ConnectorState>,
    /// Bumped by every attempt and cancellation, so late answers to old ones are ignored.
    attempt: Cell<u64>,
    pending: RefCell<Option<Rc<ConnectingSocket>>>,
    timeout: RefCell<Option<DelayedCall>>,
    connection: RefCell<Option<Rc<StreamConnection>>>,
    factory_started: Cell<bool>,
}

impl StreamConnector {
    /// Starts connecting to `target`; the returned handle also allows re-attempts.
    pub(crate) fn start(
        reactor: &Reactor,
        target: Target,
        factory: Rc<dyn ClientFactory>,
        timeout: Option<Duration>,
    ) -> Connector {
        let connector = Rc::new_cyclic(|me| StreamConnector {
            me: me.clone(),
            reactor: reactor.downgrade(),
            target,
            factory,
            timeout_after: timeout,
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

    fn handle(&self) -> Connector {
        Connector::new(self.me.upgrade().expect("connector alive while in use"))
    }

    fn destination_string(&self) -> String {
        match &self.target {
            Target::Tcp { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            Target::Tcp { host, port, .. } => format!("{host}:{port}"),
            Target::Unix(path) => path.to_string(),
        }
    }

    fn start_attempt(&self, reactor: &Reactor) {
        let attempt = self.attempt.get() + 1;
        self.attempt.set(attempt);
        if let Some(timeout) = self.timeout_after {
            let me = self.me.clone();
            let call = reactor.call_later(timeout, move || {
                if let Some(c) = me.upgrade()
                    && c.attempt.get() == attempt
                {
                    let addr = c.destination_string();
                    c.fail(Error::ConnectTimeout { addr });
                }
            });
            *self.timeout.borrow_mut() = Some(call);
        }
        let (host, port) = match &self.target {
            Target::Tcp { host, port, .. } => (host.clone(), *port),
            Target::Unix(path) => {
                let path = path.clone();
                return match unix_sockaddr(&path) {
                    Ok(addr) => self.connect_to(reactor, addr, Address::Unix(path)),
                    Err(err) => {
                        let reason = connect_error(&self.destination_string(), err);
                        self.fail_soon(reactor, reason)
                    }
                };
            }
        };
        // The lookup holds the connector alive (the caller may have dropped its handle, as
        // with Twisted's `connectTCP`, where the reactor keeps the connector).
        let c = self.me.upgrade().expect("connector alive while in use");
        let weak_reactor = reactor.downgrade();
        resolve(reactor, &host, port, move |result| {
            let Some(reactor) = weak_reactor.upgrade() else {
                return;
            };
            if c.attempt.get() != attempt || c.state.get() != ConnectorState::Connecting {
                return;
            }
            match result {
                Ok(addrs) => {
                    let addr = pick_address(&addrs);
                    c.connect_to(&reactor, addr.into(), Address::Tcp(addr))
                }
                Err(err) => c.fail(err),
            }
        });
    }

    fn connect_to(&self, reactor: &Reactor, addr: SockAddr, peer: Address) {
        let socket = match self.connecting_socket(&addr) {
            Ok(s) => s,
            Err(err) => {
                let reason = connect_error(&self.destination_string(), err);
                return self.fail_soon(reactor, reason);
            }
        };
        let pending = Rc::new(ConnectingSocket {
            fd: FdCell::new(OwnedFd::from(socket)),
            token: Cell::new(usize::MAX),
            peer,
            attempt: self.attempt.get(),
            connector: self.me.upgrade().expect("connector alive while in use"),
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registered = pending
            .fd
            .with(|fd| reactor.register(fd, interest, pending.clone()))
            .unwrap_or_else(|| Err(io::Error::from(io::ErrorKind::NotConnected)));
        match registered {
            Ok(token) => pending.token.set(token),
            Err(err) => {
                pending.fd.close();
                let reason = connect_error(&self.destination_string(), err);
                return self.fail_soon(reactor, reason);
            }
        }
        *self.pending.borrow_mut() = Some(pending);
    }

    fn connecting_socket(&self, addr: &SockAddr) -> io::Result<Socket> {
        let socket = Socket::new(addr.domain(), Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        if let Target::Tcp {
            bind_address: Some(bind),
            ..
        } = &self.target
        {
            socket.bind(&(*bind).into())?;
        }
        match socket.connect(addr) {
            Ok(()) => Ok(socket),
            Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
            Err(err) => Err(err),
        }
    }

    /// The handshake finished on `socket` (whose descriptor is `fd`): start the protocol.
    fn connected(
        &self,
        reactor: &Reactor,
        socket: &ConnectingSocket,
        fd: OwnedFd,
    ) -> Rc<StreamConnection> {
        self.pending.borrow_mut().take();
        self.cancel_timeout();
        self.state.set(ConnectorState::Connected);
        let peer = socket.peer.clone();
        let built = catch_unwind(AssertUnwindSafe(|| self.factory.build_protocol(&peer)));
        let (protocol, refused): (Box<dyn Protocol>, bool) = match built {
            Ok(Some(p)) => (p, false),
            Ok(None) => (Box::new(Discard), true),
            Err(panic) => {
                crate::reactor::report_panic(
                    format_args!("build_protocol for a connection to {peer} (closing it)"),
                    &panic_message(&*panic),
                );
                (Box::new(Discard), true)
            }
        };
        let owner: Rc<dyn ConnectionOwner> = self.me.upgrade().expect("connector alive");
        let kind = match self.target {
            Target::Tcp { .. } => StreamKind::Tcp,
            Target::Unix(_) => StreamKind::Unix,
        };
        let conn = StreamConnection::new(reactor, fd, kind, peer, protocol, Some(owner));
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

    /// Reports a failure found while starting an attempt on the next turn, as Twisted does,
    /// so the factory never hears of it before `connect` has returned.
    fn fail_soon(&self, reactor: &Reactor, reason: Error) {
        let attempt = self.attempt.get();
        let me = self.me.upgrade().expect("connector alive while in use");
        reactor.call_soon(move || {
            if me.attempt.get() == attempt {
                me.fail(reason);
            }
        });
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

impl ConnectorImpl for StreamConnector {
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
        match &self.target {
            Target::Tcp { host, port, .. } => Address::tcp_host(host, *port),
            Target::Unix(path) => Address::Unix(path.clone()),
        }
    }

    fn state(&self) -> ConnectorState {
        self.state.get()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl ConnectionOwner for StreamConnector {
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
    /// Handed to the connection once connected; closed if the attempt is dropped.
    fd: FdCell,
    token: Cell<usize>,
    peer: Address,
    attempt: u64,
    /// Strong: while the attempt is registered with the reactor, it keeps the connector
    /// alive. The cycle ends when the attempt does (`pending` is cleared).
    connector: Rc<StreamConnector>,
}

impl ConnectingSocket {
    /// Drops the attempt: closes the socket.
    fn discard(&self) {
        if let Some(reactor) = self.connector.reactor.upgrade() {
            reactor.deregister(self.token.get(), None);
        }
        self.fd.close();
    }
}

impl Source for ConnectingSocket {
    fn ready(self: Rc<Self>, reactor: &Reactor, readiness: Readiness) {
        let connector = self.connector.clone();
        if connector.attempt.get() != self.attempt {
            return;
        }
        let Some(pending_error) = self.fd.with(sys::socket::take_error) else {
            return;
        };
        match pending_error {
            Ok(None) if readiness.writable || readiness.error => {
                let Some(fd) = self.fd.take() else {
                    return;
                };
                let conn = connector.connected(reactor, &self, fd);
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

    fn reactor_dropped(&self) {
        self.fd.close();
        // The connector holds this attempt, which holds the connector.
        self.connector.pending.borrow_mut().take();
    }
}

/// The stand-in protocol for a client connection whose factory built none.
struct Discard;

impl Protocol for Discard {
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}
