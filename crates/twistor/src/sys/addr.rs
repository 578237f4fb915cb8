//! Socket addresses to and from [`Address`].
//!
//! The kernel's addresses come back from `rustix` calls as `SocketAddrAny`; addresses we
//! bind and connect to go to `socket2` as `SockAddr`.

use std::ffi::OsStr;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::net::{AddressFamily, SocketAddrAny, SocketAddrUnix};
use socket2::SockAddr;

use crate::address::{Address, UnixAddress};

/// How an IP address is shown: which transport it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpKind {
    Tcp,
    Udp,
}

/// A kernel socket address as an [`Address`]: TCP or UDP (as `ip` says) for IP sockets,
/// Unix for Unix ones.
pub(crate) fn to_address(addr: &SocketAddrAny, ip: IpKind) -> Address {
    match addr.address_family() {
        AddressFamily::INET | AddressFamily::INET6 => match SocketAddr::try_from(addr.clone()) {
            Ok(a) if ip == IpKind::Tcp => Address::Tcp(a),
            Ok(a) => Address::Udp(a),
            Err(_) => Address::Memory("unknown".into()),
        },
        AddressFamily::UNIX => match SocketAddrUnix::try_from(addr.clone()) {
            Ok(unix) => Address::Unix(unix_address(&unix)),
            Err(_) => Address::Unix(UnixAddress::Unnamed),
        },
        _ => Address::Memory("unknown".into()),
    }
}

/// A received address that may be absent (an unnamed Unix peer has none) as an
/// [`Address`].
pub(crate) fn to_address_or_unnamed(addr: Option<&SocketAddrAny>, ip: IpKind) -> Address {
    match addr {
        Some(addr) => to_address(addr, ip),
        None => Address::Unix(UnixAddress::Unnamed),
    }
}

/// Whether the address is an IP one (as opposed to a Unix one).
pub(crate) fn is_ip(addr: &SocketAddrAny) -> bool {
    matches!(
        addr.address_family(),
        AddressFamily::INET | AddressFamily::INET6
    )
}

/// Whether the address is a Unix one.
pub(crate) fn is_unix(addr: &SocketAddrAny) -> bool {
    addr.address_family() == AddressFamily::UNIX
}

fn unix_address(addr: &SocketAddrUnix) -> UnixAddress {
    if let Some(path) = addr.path_bytes() {
        return UnixAddress::Path(PathBuf::from(OsStr::from_bytes(path)));
    }
    if let Some(name) = addr.abstract_name() {
        return UnixAddress::Abstract(name.to_vec());
    }
    UnixAddress::Unnamed
}

/// The kernel address to send a datagram to, as `sendmmsg` takes it: UDP (or TCP) addresses
/// as IP ones, Unix ones by path or abstract name.
pub(crate) fn to_sockaddr_any(address: &Address) -> io::Result<SocketAddrAny> {
    match address {
        Address::Udp(a) | Address::Tcp(a) => Ok(SocketAddrAny::from(*a)),
        Address::Unix(UnixAddress::Path(path)) => Ok(SocketAddrUnix::new(path.as_path())?.into()),
        Address::Unix(UnixAddress::Abstract(name)) => {
            Ok(SocketAddrUnix::new_abstract_name(name)?.into())
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no socket address to send to",
        )),
    }
}

/// The socket address to bind or connect to for a Unix address.
pub(crate) fn unix_sockaddr(address: &UnixAddress) -> io::Result<SockAddr> {
    match address {
        UnixAddress::Path(path) => SockAddr::unix(path),
        UnixAddress::Abstract(name) => {
            // socket2 reads a leading NUL byte as "abstract namespace".
            let mut bytes = Vec::with_capacity(name.len() + 1);
            bytes.push(0);
            bytes.extend_from_slice(name);
            SockAddr::unix(Path::new(OsStr::from_bytes(&bytes)))
        }
        UnixAddress::Unnamed => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an unnamed Unix socket has no address to listen on or connect to",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_addresses_become_addresses() {
        let ip: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(to_address(&ip.into(), IpKind::Tcp), Address::Tcp(ip));
        assert_eq!(to_address(&ip.into(), IpKind::Udp), Address::Udp(ip));
        let path = SocketAddrUnix::new("/tmp/x.sock").unwrap();
        assert_eq!(
            to_address(&path.into(), IpKind::Tcp),
            Address::Unix(UnixAddress::Path("/tmp/x.sock".into()))
        );
        let name = SocketAddrUnix::new_abstract_name(b"twistor").unwrap();
        assert_eq!(
            to_address(&name.into(), IpKind::Tcp),
            Address::Unix(UnixAddress::Abstract(b"twistor".to_vec()))
        );
        assert_eq!(
            to_address_or_unnamed(None, IpKind::Tcp),
            Address::Unix(UnixAddress::Unnamed)
        );
    }
}
