//! Unix domain sockets: stream listening and connecting (Twisted's `listenUNIX` /
//! `connectUNIX`), with file modes, PID lock files and Linux's abstract namespace.
//! Descriptor passing is a transport feature: [`Transport::send_file_descriptor`] and
//! [`Protocol::file_descriptor_received`](crate::Protocol::file_descriptor_received).
//!
//! [`Transport::send_file_descriptor`]: crate::Transport::send_file_descriptor

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::address::{Address, UnixAddress};
use crate::connecting::{StreamConnector, Target};
use crate::connector::Connector;
use crate::datagram::{DEFAULT_MAX_PACKET_SIZE, DatagramTransport, Family, unix_path};
use crate::error::Error;
use crate::listener::{OnClose, StreamListener};
use crate::port::ListeningPort;
use crate::protocol::{ClientFactory, DatagramProtocol, Factory};
use crate::reactor::Reactor;
use crate::stream::StreamKind;
use crate::sys::addr::unix_sockaddr;
use crate::tcp::DEFAULT_CONNECT_TIMEOUT;

/// Options for [`Reactor::listen_unix_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UnixListenOptions {
    /// Permissions of the socket file (default `0o666`, as in Twisted).
    pub mode: u32,
    /// The `listen(2)` backlog (default 50).
    pub backlog: i32,
    /// Guard the socket with a lock file `PATH.lock` holding our PID (Twisted's `wantPID`):
    /// listening fails if a live process holds the lock, and a socket file left by a dead
    /// one is removed first.
    pub lockfile: bool,
}

impl Default for UnixListenOptions {
    fn default() -> Self {
        UnixListenOptions {
            mode: 0o666,
            backlog: 50,
            lockfile: false,
        }
    }
}

impl UnixListenOptions {
    /// Sets the socket file's permissions.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the `listen(2)` backlog.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Turns the PID lock file on or off.
    pub fn lockfile(mut self, enabled: bool) -> Self {
        self.lockfile = enabled;
        self
    }
}

impl Reactor {
    /// Listens on a Unix socket with the default options.
    pub fn listen_unix(
        &self,
        address: impl Into<UnixAddress>,
        factory: Rc<dyn Factory>,
    ) -> Result<ListeningPort, Error> {
        self.listen_unix_with(address, factory, UnixListenOptions::default())
    }

    /// Listens on a Unix socket (a path, or an abstract name) with a mode, backlog and lock
    /// file. An existing socket file is not removed (that would steal a live server's
    /// address) unless the lock file shows its owner is dead. Closing the port removes the
    /// socket file and the lock file.
    pub fn listen_unix_with(
        &self,
        address: impl Into<UnixAddress>,
        factory: Rc<dyn Factory>,
        options: UnixListenOptions,
    ) -> Result<ListeningPort, Error> {
        let address = address.into();
        let describe = address.to_string();
        let cannot = |source: io::Error| Error::CannotListen {
            addr: describe.clone(),
            source: source.into(),
        };
        let path = match &address {
            UnixAddress::Path(p) => Some(p.clone()),
            _ => None,
        };
        let lock = match (&path, options.lockfile) {
            (Some(path), true) => Some(PidLock::acquire(path).map_err(cannot)?),
            _ => None,
        };
        let socket = (|| {
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            socket.bind(&unix_sockaddr(&address)?)?;
            if let Some(path) = &path {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(options.mode))?;
            }
            socket.listen(options.backlog)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })()
        .map_err(cannot)?;
        let on_close: Option<OnClose> = path.map(|path| -> OnClose {
            Box::new(move || {
                let _ = std::fs::remove_file(&path);
                drop(lock);
            })
        });
        StreamListener::start(self, socket, StreamKind::Unix, factory, on_close, &describe)
    }

    /// Connects to a Unix socket, giving up after 30 seconds.
    pub fn connect_unix(
        &self,
        address: impl Into<UnixAddress>,
        factory: Rc<dyn ClientFactory>,
    ) -> Connector {
        self.connect_unix_with(address, factory, Some(DEFAULT_CONNECT_TIMEOUT))
    }

    /// Connects to a Unix socket with a timeout (`None`: no timeout).
    pub fn connect_unix_with(
        &self,
        address: impl Into<UnixAddress>,
        factory: Rc<dyn ClientFactory>,
        timeout: Option<Duration>,
    ) -> Connector {
        StreamConnector::start(self, Target::Unix(address.into()), factory, timeout)
    }
}

impl Reactor {
    /// Binds a Unix datagram socket at `address` (Twisted's `listenUNIXDatagram`); its file
    /// gets `mode` and is removed when the socket closes.
    pub fn listen_unix_datagram(
        &self,
        address: impl Into<UnixAddress>,
        protocol: impl DatagramProtocol,
        mode: u32,
    ) -> Result<DatagramTransport, Error> {
        let address = address.into();
        let socket = self.unix_datagram_socket(Some(&address), mode)?;
        DatagramTransport::start(
            self,
            socket,
            Family::Unix,
            Box::new(protocol),
            DEFAULT_MAX_PACKET_SIZE,
            unix_path(&address),
        )
    }

    /// A Unix datagram socket connected to `address`, bound to `bind` if given (a peer can
    /// only answer a bound socket) — Twisted's `connectUNIXDatagram`.
    pub fn connect_unix_datagram(
        &self,
        address: impl Into<UnixAddress>,
        protocol: impl DatagramProtocol,
        bind: Option<UnixAddress>,
    ) -> Result<DatagramTransport, Error> {
        let address = address.into();
        let socket = self.unix_datagram_socket(bind.as_ref(), 0o666)?;
        let connect = unix_sockaddr(&address).and_then(|a| socket.connect(&a));
        connect.map_err(|source| Error::ConnectFailed {
            addr: address.to_string(),
            source: source.into(),
        })?;
        let transport = DatagramTransport::start(
            self,
            socket,
            Family::Unix,
            Box::new(protocol),
            DEFAULT_MAX_PACKET_SIZE,
            bind.as_ref().and_then(unix_path),
        )?;
        transport.set_connected(Address::Unix(address));
        Ok(transport)
    }

    fn unix_datagram_socket(&self, bind: Option<&UnixAddress>, mode: u32) -> Result<Socket, Error> {
        (|| {
            let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
            if let Some(address) = bind {
                socket.bind(&unix_sockaddr(address)?)?;
                if let UnixAddress::Path(path) = address {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                }
            }
            socket.set_nonblocking(true)?;
            Ok(socket)
        })()
        .map_err(|source: io::Error| Error::CannotListen {
            addr: bind.map_or_else(|| "(unbound)".to_string(), |a| a.to_string()),
            source: source.into(),
        })
    }
}

/// A PID lock file next to a socket (Twisted's `FilesystemLock`): a symbolic link named
/// `PATH.lock` whose target is our process id. Removed when dropped.
struct PidLock {
    path: PathBuf,
}

impl PidLock {
    fn acquire(socket: &Path) -> io::Result<PidLock> {
        let mut lock_name = socket.as_os_str().to_owned();
        lock_name.push(".lock");
        let path = PathBuf::from(lock_name);
        let pid = std::process::id().to_string();
        for _ in 0..2 {
            match std::os::unix::fs::symlink(&pid, &path) {
                Ok(()) => return Ok(PidLock { path }),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_link(&path)
                        .ok()
                        .and_then(|target| target.to_str()?.parse::<u32>().ok());
                    if owner.is_some_and(process_alive) {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!(
                                "cannot acquire lock {}: held by process {}",
                                path.display(),
                                owner.unwrap_or_default()
                            ),
                        ));
                    }
                    // A dead owner: its lock and its socket file are stale.
                    std::fs::remove_file(&path)?;
                    match std::fs::remove_file(socket) {
                        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                        _ => {}
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("cannot acquire lock {}", path.display()),
        ))
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn process_alive(pid: u32) -> bool {
    crate::sys::signal::process_exists(pid)
}
