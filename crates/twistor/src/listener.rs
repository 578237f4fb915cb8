//! Listening stream sockets (TCP and Unix): the accept loop shared by `listen_tcp`,
//! `listen_unix` and `adopt_stream_port`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::time::Duration;

use mio::Interest;
use rustix::net::SocketAddrAny;
use socket2::Socket;

use crate::address::Address;
use crate::error::Error;
use crate::port::{ListeningPort, PortImpl};
use crate::protocol::{self, Factory};
use crate::reactor::{DelayedCall, Reactor, Readiness, Source, WeakReactor, panic_message};
use crate::stream::{StreamConnection, StreamKind};
use crate::sys::{self, FdCell, addr::IpKind};
use crate::unstable::ReactorInternals;

/// How long `accept` waits before trying again after running out of file descriptors
/// (or memory): long enough not to spin, short enough to recover promptly.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Run when a listener closes (a Unix port removes its socket file and lock file).
pub(crate) type OnClose = Box<dyn FnOnce()>;

/// A listening stream socket, seen through [`ListeningPort`].
pub struct StreamListener {
    /// Closed by `stop` (the port handle may outlive it).
    fd: FdCell,
    kind: StreamKind,
    token: Cell<usize>,
    factory: Rc<dyn Factory>,
    reactor: WeakReactor,
    local: Address,
    listening: Cell<bool>,
    retry: RefCell<Option<DelayedCall>>,
    /// Accepting failed for want of descriptors or memory, and has not succeeded since.
    starved: Cell<bool>,
    on_close: RefCell<Option<OnClose>>,
    me: Weak<StreamListener>,
}

impl StreamListener {
    /// Starts accepting on `socket` (bound, listening, non-blocking): registers it with the
    /// reactor and starts the factory. `describe` names the socket in errors.
    pub(crate) fn start(
        reactor: &Reactor,
        socket: Socket,
        kind: StreamKind,
        factory: Rc<dyn Factory>,
        on_close: Option<OnClose>,
        describe: &str,
    ) -> Result<ListeningPort, Error> {
        let local = match sys::socket::local_name(socket.as_fd()) {
            Ok(addr) => sys::addr::to_address(&addr, IpKind::Tcp),
            Err(err) => return Err(cannot(describe, err)),
        };
        let listener = Rc::new_cyclic(|me| StreamListener {
            fd: FdCell::new(OwnedFd::from(socket)),
            kind,
            token: Cell::new(usize::MAX),
            factory,
            reactor: reactor.downgrade(),
            local,
            listening: Cell::new(true),
            retry: RefCell::new(None),
            starved: Cell::new(false),
            on_close: RefCell::new(on_close),
            me: me.clone(),
        });
        let registered = listener
            .fd
            .with(|fd| reactor.register(fd, Interest::READABLE, listener.clone()))
            .unwrap_or_else(|| Err(io::Error::from(io::ErrorKind::NotConnected)));
        match registered {
            Ok(token) => listener.token.set(token),
            Err(err) => {
                listener.listening.set(false);
                listener.fd.close();
                return Err(cannot(describe, err));
            }
        }
        protocol::do_start(&listener.factory);
        tracing::info!(
            "{} starting on {}",
            listener.factory.log_prefix(),
            listener.describe()
        );
        Ok(ListeningPort::new(listener))
    }

    /// How logs name this port: the TCP port number, or the Unix address.
    fn describe(&self) -> String {
        match &self.local {
            Address::Tcp(a) => a.port().to_string(),
            other => other.to_string(),
        }
    }

    fn stop(&self) {
        if !self.listening.replace(false) {
            return;
        }
        if let Some(retry) = self.retry.borrow_mut().take() {
            let _ = retry.cancel();
        }
        // An adopted socket has duplicates elsewhere, which would keep our epoll
        // registration alive after we close: remove it first.
        if let Some(reactor) = self.reactor.upgrade() {
            let token = self.token.get();
            self.fd
                .with(|fd| reactor.deregister(token, Some(fd)))
                .unwrap_or_else(|| reactor.deregister(token, None));
        }
        self.fd.close();
        if let Some(on_close) = self.on_close.borrow_mut().take() {
            on_close();
        }
        tracing::info!("({} Closed)", self.log_name());
        protocol::do_stop(&self.factory);
    }

    fn log_name(&self) -> String {
        match &self.local {
            Address::Tcp(a) => format!("TCP Port {}", a.port()),
            other => format!("Port {other}"),
        }
    }

    fn accept_loop(self: &Rc<Self>, reactor: &Reactor) {
        while self.listening.get() {
            let Some(accepted) = self.fd.with(sys::socket::accept) else {
                return;
            };
            match accepted {
                Ok(Some((fd, addr))) => {
                    if self.starved.replace(false) {
                        tracing::info!("{}: accepting again", self.log_name());
                    }
                    self.accepted(reactor, fd, addr.as_ref())
                }
                Ok(None) => return,
                Err(err) => match err.raw_os_error() {
                    Some(
                        libc::ECONNABORTED
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
                            tracing::debug!("{}: accept still failing: {err}", self.log_name());
                        } else {
                            tracing::warn!(
                                "{}: accept failed: {err}; retrying every {:?}",
                                self.log_name(),
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

    /// A connection was accepted: build its protocol and start it, or drop (close) it.
    fn accepted(&self, reactor: &Reactor, fd: OwnedFd, addr: Option<&SocketAddrAny>) {
        let peer = sys::addr::to_address_or_unnamed(addr, IpKind::Tcp);
        let built = catch_unwind(AssertUnwindSafe(|| self.factory.build_protocol(&peer)));
        let protocol = match built {
            Ok(Some(protocol)) => protocol,
            Ok(None) => {
                tracing::debug!("factory refused connection from {peer}");
                return;
            }
            Err(panic) => {
                crate::reactor::report_panic(
                    format_args!("build_protocol for a connection from {peer} (closing it)"),
                    &panic_message(&*panic),
                );
                return;
            }
        };
        StreamConnection::start_accepted(reactor, fd, self.kind, peer, protocol);
    }
}

fn cannot(describe: &str, source: io::Error) -> Error {
    Error::CannotListen {
        addr: describe.to_string(),
        source: source.into(),
    }
}

impl PortImpl for StreamListener {
    fn host(&self) -> Address {
        self.local.clone()
    }

    fn stop_listening(&self) {
        self.stop()
    }

    fn listening(&self) -> bool {
        self.listening.get()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Source for StreamListener {
    fn ready(self: Rc<Self>, reactor: &Reactor, _readiness: Readiness) {
        self.accept_loop(reactor);
    }

    fn shutdown(self: Rc<Self>, _reactor: &Reactor) {
        self.stop();
    }

    fn reactor_dropped(&self) {
        self.listening.set(false);
        self.fd.close();
        self.retry.borrow_mut().take();
        // Removes a Unix socket's file and lock file, as `stop` does.
        let on_close = self.on_close.borrow_mut().take();
        if let Some(on_close) = on_close {
            on_close();
        }
    }
}
