//! Server endpoints: TCP, Unix sockets, and sockets passed by systemd.

use std::any::Any;
use std::rc::Rc;

use crate::address::{Address, UnixAddress};
use crate::defer::{Deferred, Failure};
use crate::error::Error;
use crate::port::{ListeningPort, PortImpl};
use crate::protocol::Factory;
use crate::reactor::Reactor;
use crate::tcp::ListenOptions;
use crate::transport::Transport;
use crate::unix::UnixListenOptions;

use super::ServerEndpoint;

/// A TCP listening endpoint (`tcp:PORT` or `tcp6:PORT`).
#[derive(Debug, Clone)]
pub struct TcpServerEndpoint {
    reactor: Reactor,
    port: u16,
    options: ListenOptions,
}

impl TcpServerEndpoint {
    /// Listens on `port` with `options`.
    pub fn new(reactor: &Reactor, port: u16, options: ListenOptions) -> TcpServerEndpoint {
        TcpServerEndpoint {
            reactor: reactor.clone(),
            port,
            options,
        }
    }
}

impl ServerEndpoint for TcpServerEndpoint {
    fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<ListeningPort> {
        done(
            self.reactor
                .listen_tcp_with(self.port, factory, self.options.clone()),
        )
    }

    fn describe(&self) -> String {
        format!("tcp:{}:interface={}", self.port, self.options.interface)
    }
}

/// A Unix socket listening endpoint (`unix:PATH[:mode=][:backlog=][:lockfile=]`).
#[derive(Debug, Clone)]
pub struct UnixServerEndpoint {
    reactor: Reactor,
    address: UnixAddress,
    options: UnixListenOptions,
}

impl UnixServerEndpoint {
    /// Listens on `address` with `options`.
    pub fn new(
        reactor: &Reactor,
        address: impl Into<UnixAddress>,
        options: UnixListenOptions,
    ) -> UnixServerEndpoint {
        UnixServerEndpoint {
            reactor: reactor.clone(),
            address: address.into(),
            options,
        }
    }
}

impl ServerEndpoint for UnixServerEndpoint {
    fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<ListeningPort> {
        done(
            self.reactor
                .listen_unix_with(self.address.clone(), factory, self.options.clone()),
        )
    }

    fn describe(&self) -> String {
        format!("unix:{}", self.address)
    }
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// A listening socket passed by systemd socket activation (`systemd:domain=INET:index=0`,
/// or `name=` for a named socket): the reactor adopts descriptor `3 + index`, after
/// checking `LISTEN_PID` and `LISTEN_FDS`.
#[derive(Debug, Clone)]
pub struct SystemdEndpoint {
    reactor: Reactor,
    fd: i32,
}

impl SystemdEndpoint {
    /// The endpoint for the `index`th passed socket, checked against the environment.
    pub fn from_index(reactor: &Reactor, index: usize) -> Result<SystemdEndpoint, String> {
        let count = listen_fds()?;
        if index >= count {
            return Err(format!(
                "systemd passed {count} socket(s) (LISTEN_FDS), so there is no index {index}"
            ));
        }
        Ok(SystemdEndpoint {
            reactor: reactor.clone(),
            fd: LISTEN_FDS_START + index as i32,
        })
    }

    /// The endpoint for the socket systemd named `name` (`FileDescriptorName=`).
    pub fn from_name(reactor: &Reactor, name: &str) -> Result<SystemdEndpoint, String> {
        let count = listen_fds()?;
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        let index = names
            .split(':')
            .take(count)
            .position(|n| n == name)
            .ok_or_else(|| format!("no socket named {name:?} in LISTEN_FDNAMES={names:?}"))?;
        SystemdEndpoint::from_index(reactor, index)
    }
}

/// How many sockets systemd passed to this process.
fn listen_fds() -> Result<usize, String> {
    let pid = std::env::var("LISTEN_PID")
        .map_err(|_| "LISTEN_PID is not set: not started by systemd socket activation")?;
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Err(format!(
            "LISTEN_PID={pid} is another process's (ours is {})",
            std::process::id()
        ));
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| "LISTEN_FDS is missing or not a number".to_string())
}

impl ServerEndpoint for SystemdEndpoint {
    fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<ListeningPort> {
        // systemd passed this descriptor to the process for its lifetime; adoption works on
        // a duplicate.
        let adopted = crate::sys::fd::borrow_inherited(self.fd)
            .map_err(Error::io)
            .and_then(|fd| self.reactor.adopt_stream_port(fd, factory));
        done(adopted)
    }

    fn describe(&self) -> String {
        format!("systemd:fd={}", self.fd)
    }
}

/// This process's standard input and output as one connection (`stdio:`, Twisted's
/// `StandardIOEndpoint`): `listen` runs one protocol over them at once. The returned port's
/// `stop_listening` closes that connection.
#[derive(Debug, Clone)]
pub struct StdioEndpoint {
    reactor: Reactor,
}

impl StdioEndpoint {
    /// The endpoint for this process's stdin and stdout.
    pub fn new(reactor: &Reactor) -> StdioEndpoint {
        StdioEndpoint {
            reactor: reactor.clone(),
        }
    }
}

impl ServerEndpoint for StdioEndpoint {
    fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<ListeningPort> {
        let Some(protocol) = factory.build_protocol(&Address::Pipe) else {
            return done(Err(Error::FactoryRefused));
        };
        done(
            crate::stdio::standard_io(&self.reactor, protocol)
                .map(|transport| ListeningPort::new(Rc::new(StdioPort { transport }))),
        )
    }

    fn describe(&self) -> String {
        "stdio:".to_string()
    }
}

/// The "port" of a stdio endpoint: its one connection.
struct StdioPort {
    transport: Transport,
}

impl PortImpl for StdioPort {
    fn host(&self) -> Address {
        Address::Pipe
    }

    fn stop_listening(&self) {
        self.transport.lose_connection();
    }

    fn listening(&self) -> bool {
        !self.transport.disconnecting()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A listening result as an already fired Deferred.
pub(crate) fn done<T: 'static>(result: Result<T, Error>) -> Deferred<T> {
    Deferred::resolved(result.map_err(Failure::new))
}
