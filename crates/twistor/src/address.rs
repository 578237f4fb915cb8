//! Addresses of the two ends of a transport (Twisted's `IAddress`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where one end of a transport is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A TCP endpoint (IPv4 or IPv6).
    Tcp(SocketAddr),
    /// A UDP endpoint (IPv4 or IPv6).
    Udp(SocketAddr),
    /// A Unix domain socket.
    Unix(UnixAddress),
    /// A host name and port, before the name is resolved.
    Hostname {
        /// The name (or address literal) as given.
        host: String,
        /// The port.
        port: u16,
    },
    /// A pipe, such as a child process's stdio or this process's own.
    Pipe,
    /// An in-memory transport used in tests; the string names it.
    Memory(String),
}

/// The address of a Unix domain socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnixAddress {
    /// A socket bound to a path in the filesystem.
    Path(PathBuf),
    /// A socket in Linux's abstract namespace (shown with a leading `@`).
    Abstract(Vec<u8>),
    /// An unbound socket (the usual client side).
    Unnamed,
}

impl Address {
    /// The address of `host:port` for TCP: an IP address if `host` is one, else a host name
    /// still to be looked up.
    pub fn tcp_host(host: &str, port: u16) -> Address {
        match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => Address::Tcp(SocketAddr::new(ip, port)),
            Err(_) => Address::Hostname {
                host: host.to_string(),
                port,
            },
        }
    }

    /// The host, as Twisted's `address.host` gives it: the IP address of a TCP or UDP
    /// address (`127.0.0.1`, `::1`), the name of a [`Hostname`](Address::Hostname).
    /// `None` for Unix sockets, pipes and in-memory transports, which have no host.
    ///
    /// ```
    /// use twistor::Address;
    ///
    /// let peer = Address::Tcp("127.0.0.1:4321".parse().unwrap());
    /// assert_eq!(peer.host().as_deref(), Some("127.0.0.1"));
    /// assert_eq!(peer.port(), Some(4321));
    /// assert_eq!(Address::Pipe.host(), None);
    /// ```
    pub fn host(&self) -> Option<String> {
        match self {
            Address::Tcp(a) | Address::Udp(a) => Some(a.ip().to_string()),
            Address::Hostname { host, .. } => Some(host.clone()),
            _ => None,
        }
    }

    /// The port of a TCP, UDP or host-name address; `None` for the others.
    pub fn port(&self) -> Option<u16> {
        match self {
            Address::Tcp(a) | Address::Udp(a) => Some(a.port()),
            Address::Hostname { port, .. } => Some(*port),
            _ => None,
        }
    }

    /// The IP socket address, for TCP and UDP addresses.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(a) | Address::Udp(a) => Some(*a),
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "tcp:{a}"),
            Address::Udp(a) => write!(f, "udp:{a}"),
            Address::Unix(u) => write!(f, "unix:{u}"),
            Address::Hostname { host, port } => write!(f, "{host}:{port}"),
            Address::Pipe => f.write_str("pipe"),
            Address::Memory(name) => write!(f, "memory:{name}"),
        }
    }
}

impl From<&Path> for UnixAddress {
    fn from(path: &Path) -> UnixAddress {
        UnixAddress::Path(path.to_path_buf())
    }
}

impl From<PathBuf> for UnixAddress {
    fn from(path: PathBuf) -> UnixAddress {
        UnixAddress::Path(path)
    }
}

impl From<&str> for UnixAddress {
    /// A filesystem path (use [`UnixAddress::Abstract`] for an abstract name).
    fn from(path: &str) -> UnixAddress {
        UnixAddress::Path(PathBuf::from(path))
    }
}

impl fmt::Display for UnixAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddress::Path(p) => write!(f, "{}", p.display()),
            UnixAddress::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            UnixAddress::Unnamed => f.write_str("(unnamed)"),
        }
    }
}
