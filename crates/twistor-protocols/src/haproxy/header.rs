//! Parsing PROXY protocol headers, versions 1 (text) and 2 (binary), as HAProxy's
//! specification ("The PROXY protocol", versions 1 & 2) defines them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use twistor::Address;
use twistor::address::UnixAddress;

use crate::error::Error;

/// The 12 bytes that open a version 2 header.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\x00\r\nQUIT\n";

/// The longest version 1 header, `\r\n` included.
pub const V1_MAX_LENGTH: usize = 107;

const V1_PREFIX: &[u8] = b"PROXY ";

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyInfo {
    /// The protocol version of the header (1 or 2).
    pub version: u8,
    /// The original client, or `None` when the header does not say (`UNKNOWN`, `LOCAL`,
    /// `UNSPEC`): the connection's own addresses stand.
    pub source: Option<Address>,
    /// The address the client connected to, when the header says.
    pub destination: Option<Address>,
}

/// Parses a PROXY header at the start of `buf`.
///
/// Returns `Ok(None)` if `buf` is a valid beginning but too short, `Ok(Some((info,
/// length)))` once a whole header is there (the connection's data starts at `length`),
/// or an error naming what is wrong: bytes that cannot start a header at all (the header
/// is missing), or a malformed header.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyInfo, usize)>, Error> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        return if n < V1_PREFIX.len() {
            Ok(None)
        } else {
            parse_v1(buf)
        };
    }
    Err(bad(format!(
        "missing (the connection starts with {:?})",
        String::from_utf8_lossy(&buf[..buf.len().min(16)])
    )))
}

fn bad(why: impl Into<String>) -> Error {
    Error::ProxyHeader(why.into())
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyInfo, usize)>, Error> {
    let window = &buf[..buf.len().min(V1_MAX_LENGTH)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX_LENGTH {
            return Err(bad("version 1 header without CRLF in its first 107 bytes"));
        }
        if window.contains(&b'\n') {
            return Err(bad("version 1 header ends in LF without CR"));
        }
        return Ok(None);
    };
    let line =
        std::str::from_utf8(&buf[..end]).map_err(|_| bad("version 1 header is not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let info = |source, destination| ProxyInfo {
        version: 1,
        source,
        destination,
    };
    match fields.get(1).copied() {
        Some("UNKNOWN") => return Ok(Some((info(None, None), end + 2))),
        Some("TCP4" | "TCP6") => {}
        Some(other) => {
            return Err(bad(format!(
                "version 1 protocol must be TCP4, TCP6 or UNKNOWN, got {other:?}"
            )));
        }
        None => return Err(bad("version 1 header has no protocol")),
    }
    if fields.len() != 6 {
        return Err(bad(format!(
            "version 1 header needs 6 fields, got {}: {line:?}",
            fields.len()
        )));
    }
    let v4 = fields[1] == "TCP4";
    let ip = |text: &str| -> Result<IpAddr, Error> {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| bad(format!("bad address {text:?} in version 1 header")))?;
        if ip.is_ipv4() != v4 {
            return Err(bad(format!("address {text:?} is not {}", fields[1])));
        }
        Ok(ip)
    };
    let port = |text: &str| -> Result<u16, Error> {
        if text.is_empty() || text.len() > 1 && text.starts_with('0') {
            return Err(bad(format!("bad port {text:?} in version 1 header")));
        }
        text.parse()
            .map_err(|_| bad(format!("bad port {text:?} in version 1 header")))
    };
    let source = SocketAddr::new(ip(fields[2])?, port(fields[4])?);
    let destination = SocketAddr::new(ip(fields[3])?, port(fields[5])?);
    Ok(Some((
        info(Some(Address::Tcp(source)), Some(Address::Tcp(destination))),
        end + 2,
    )))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyInfo, usize)>, Error> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 {
        return Err(bad(format!("version 2 signature with version {version}")));
    }
    let family = buf[13] >> 4;
    let transport = buf[13] & 0x0f;
    let length = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let total = 16 + length;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[16..total];
    let unspecified = ProxyInfo {
        version: 2,
        source: None,
        destination: None,
    };
    match command {
        // LOCAL: the proxy's own connection (a health check); its addresses stand.
        0x0 => return Ok(Some((unspecified, total))),
        0x1 => {}
        other => return Err(bad(format!("unknown version 2 command {other:#x}"))),
    }
    let make = |sa: SocketAddr| match transport {
        0x2 => Address::Udp(sa),
        _ => Address::Tcp(sa),
    };
    if family != 0 && !matches!(transport, 0x1 | 0x2) {
        return Err(bad(format!("unknown version 2 transport {transport:#x}")));
    }
    let (source, destination) = match family {
        0x0 => return Ok(Some((unspecified, total))),
        0x1 => {
            let a = body
                .get(..12)
                .ok_or_else(|| bad("version 2 IPv4 addresses need 12 bytes"))?;
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                make(SocketAddr::new(ip(0), port(8))),
                make(SocketAddr::new(ip(4), port(10))),
            )
        }
        0x2 => {
            let a = body
                .get(..36)
                .ok_or_else(|| bad("version 2 IPv6 addresses need 36 bytes"))?;
            let ip = |o: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                make(SocketAddr::new(ip(0), port(32))),
                make(SocketAddr::new(ip(16), port(34))),
            )
        }
        0x3 => {
            let a = body
                .get(..216)
                .ok_or_else(|| bad("version 2 Unix addresses need 216 bytes"))?;
            (
                Address::Unix(unix_path(&a[..108])),
                Address::Unix(unix_path(&a[108..])),
            )
        }
        other => return Err(bad(format!("unknown version 2 address family {other:#x}"))),
    };
    Ok(Some((
        ProxyInfo {
            version: 2,
            source: Some(source),
            destination: Some(destination),
        },
        total,
    )))
}

/// A NUL-padded `sun_path`: a leading NUL marks a Linux abstract name.
fn unix_path(raw: &[u8]) -> UnixAddress {
    if raw.first() == Some(&0) {
        let name = &raw[1..];
        let end = name.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        if end == 0 {
            return UnixAddress::Unnamed;
        }
        return UnixAddress::Abstract(name[..end].to_vec());
    }
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let path = String::from_utf8_lossy(&raw[..end]).into_owned();
    UnixAddress::from(path.as_str())
}
