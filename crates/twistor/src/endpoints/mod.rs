//! Endpoints: where to listen or connect, named by strings such as `tcp:8080` or
//! `unix:/run/app.sock` (Twisted's `twisted.internet.endpoints`).
//!
//! [`server_from_string`] and [`client_from_string`] read Twisted's description grammar
//! (see [`Description`]); server endpoints' `listen` returns a `Deferred<ListeningPort>`,
//! client endpoints' `connect` a cancellable `Deferred<Transport>`.
//!
//! ```
//! use twistor::endpoints::server_from_string;
//! use twistor::Reactor;
//!
//! let reactor = Reactor::new().unwrap();
//! let endpoint = server_from_string(&reactor, "tcp:0:interface=127.0.0.1").unwrap();
//! let err = server_from_string(&reactor, "tcp:http").err().unwrap();
//! assert!(err.to_string().contains("port must be a number"));
//! ```

mod client;
mod description;
mod hostname;
mod server;
mod tls;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

pub use client::UnixClientEndpoint;
pub use description::Description;
pub use hostname::{DEFAULT_ATTEMPT_DELAY, HostnameEndpoint, Resolver, SystemResolver};
pub use server::{StdioEndpoint, SystemdEndpoint, TcpServerEndpoint, UnixServerEndpoint};
pub use tls::{SslServerEndpoint, TlsClientEndpoint, wrap_client_tls};

use crate::address::UnixAddress;
use crate::defer::Deferred;
use crate::error::Error;
use crate::port::ListeningPort;
use crate::protocol::{Factory, Protocol};
use crate::reactor::Reactor;
use crate::tcp::ListenOptions;
use crate::transport::Transport;
use crate::unix::UnixListenOptions;

/// Somewhere to listen (Twisted's `IStreamServerEndpoint`).
pub trait ServerEndpoint {
    /// Starts listening, building a protocol with `factory` for each connection.
    fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<ListeningPort>;

    /// A summary of where this endpoint listens.
    fn describe(&self) -> String;
}

/// Somewhere to connect to (Twisted's `IStreamClientEndpoint`).
pub trait ClientEndpoint {
    /// Connects, building the protocol with `factory`; the Deferred fires with the
    /// connection's transport once it is up, or fails with why it could not be made.
    /// Cancelling it abandons the attempt.
    fn connect(&self, factory: Rc<dyn Factory>) -> Deferred<Transport>;

    /// A summary of where this endpoint connects to.
    fn describe(&self) -> String;
}

/// Connects `protocol` through `endpoint` (Twisted's `connectProtocol`).
pub fn connect_protocol<P: Protocol>(
    endpoint: &dyn ClientEndpoint,
    protocol: P,
) -> Deferred<Transport> {
    let slot = std::cell::RefCell::new(Some(protocol));
    endpoint.connect(Rc::new(OnceFactory(slot)))
}

/// A factory that builds one given protocol, once.
struct OnceFactory<P>(std::cell::RefCell<Option<P>>);

impl<P: Protocol> Factory for OnceFactory<P> {
    fn build_protocol(&self, _addr: &crate::Address) -> Option<Box<dyn Protocol>> {
        self.0
            .borrow_mut()
            .take()
            .map(|p| Box::new(p) as Box<dyn Protocol>)
    }

    fn noisy(&self) -> bool {
        false
    }
}

/// Parses a description of a server endpoint type added with [`register_server_type`].
pub type ServerParser = fn(&Reactor, &Description) -> Result<Box<dyn ServerEndpoint>, Error>;

/// Parses a description of a client endpoint type added with [`register_client_type`].
pub type ClientParser = fn(&Reactor, &Description) -> Result<Box<dyn ClientEndpoint>, Error>;

static SERVER_TYPES: std::sync::RwLock<Vec<(String, ServerParser)>> =
    std::sync::RwLock::new(Vec::new());
static CLIENT_TYPES: std::sync::RwLock<Vec<(String, ClientParser)>> =
    std::sync::RwLock::new(Vec::new());

/// Adds a server endpoint type (Twisted's endpoint plugins): `server_from_string` hands
/// descriptions of type `name` to `parser`. Crates above the engine use it, e.g. the PROXY
/// protocol's `haproxy:` wrapper. Registering a name again replaces the parser.
pub fn register_server_type(name: &str, parser: ServerParser) {
    let mut types = SERVER_TYPES.write().unwrap_or_else(|e| e.into_inner());
    types.retain(|(n, _)| n != name);
    types.push((name.to_string(), parser));
}

/// Adds a client endpoint type; names are matched case-insensitively.
pub fn register_client_type(name: &str, parser: ClientParser) {
    let mut types = CLIENT_TYPES.write().unwrap_or_else(|e| e.into_inner());
    types.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    types.push((name.to_ascii_lowercase(), parser));
}

fn registered_server(name: &str) -> Option<ServerParser> {
    let types = SERVER_TYPES.read().unwrap_or_else(|e| e.into_inner());
    types.iter().find(|(n, _)| n == name).map(|(_, p)| *p)
}

fn registered_client(name: &str) -> Option<ClientParser> {
    let types = CLIENT_TYPES.read().unwrap_or_else(|e| e.into_inner());
    types.iter().find(|(n, _)| n == name).map(|(_, p)| *p)
}

fn known_types(
    builtin: &[&str],
    registry: &std::sync::RwLock<Vec<(String, impl Sized)>>,
) -> String {
    let types = registry.read().unwrap_or_else(|e| e.into_inner());
    builtin
        .iter()
        .map(|s| s.to_string())
        .chain(types.iter().map(|(n, _)| n.clone()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The part of a description after its type and colon: what a wrapper type (such as
/// `haproxy:tcp:80`) wraps.
pub fn wrapped_description(d: &Description) -> &str {
    d.text.split_once(':').map_or("", |(_, rest)| rest)
}

/// Makes a server endpoint from a description:
///
/// - `tcp:PORT[:interface=ADDR][:backlog=N]` — TCP on IPv4 (all interfaces by default);
/// - `tcp6:PORT[:interface=ADDR][:backlog=N]` — TCP on IPv6 (`::` by default; write
///   colons as `\:`);
/// - `unix:PATH[:mode=OCTAL][:backlog=N][:lockfile=0|1]` — a Unix socket (`@NAME` for
///   Linux's abstract namespace);
/// - `ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem][:extraCertChain=CHAIN.pem]
///   [:interface=ADDR][:backlog=N][:handshakeTimeout=SECONDS]` — TLS over TCP (without
///   `certKey`, the certificate is read from the key file; a client that has not completed
///   the handshake in `handshakeTimeout`, 30 s by default, 0 for none, is cut);
/// - `systemd:domain=INET|INET6|UNIX:index=N` (or `name=NAME`) — a socket passed by
///   systemd socket activation;
/// - `stdio:` — this process's standard input and output, as one connection.
///
/// Type names are case-sensitive, as in Twisted. A malformed description is an
/// [`Error::BadDescription`] that quotes it and says which part is wrong.
pub fn server_from_string(reactor: &Reactor, text: &str) -> Result<Box<dyn ServerEndpoint>, Error> {
    let d = Description::parse(text)?;
    match d.kind.as_str() {
        "tcp" => tcp_server(reactor, &d, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        "tcp6" => tcp_server(reactor, &d, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        "unix" => unix_server(reactor, &d),
        "systemd" => systemd_server(reactor, &d),
        "ssl" => ssl_server(reactor, &d),
        "stdio" => {
            if d.args.iter().any(|a| !a.is_empty()) || !d.kwargs.is_empty() {
                return Err(d.error("stdio takes no arguments"));
            }
            Ok(Box::new(StdioEndpoint::new(reactor)))
        }
        other => match registered_server(other) {
            Some(parser) => parser(reactor, &d),
            None => Err(d.error(format!(
                "unknown endpoint type {other:?} (expected one of: {})",
                known_types(SERVER_BUILTIN, &SERVER_TYPES)
            ))),
        },
    }
}

/// Makes a client endpoint from a description:
///
/// - `tcp:HOST:PORT[:timeout=SECONDS][:bindAddress=ADDR]` — TCP to a name or address; a
///   name's addresses are raced (see [`HostnameEndpoint`]);
/// - `unix:PATH[:timeout=SECONDS]` — a Unix socket (`@NAME` for an abstract name);
/// - `tls:HOST:PORT[:trustRoots=DIR_OR_FILE][:certificate=CERT.pem][:privateKey=KEY.pem]
///   [:timeout=SECONDS][:bindAddress=ADDR][:handshakeTimeout=SECONDS]` (or `ssl:`) — TLS
///   over TCP; the server's certificate is checked for HOST against the system's roots, or
///   `trustRoots`.
///
/// Type names are case-insensitive, as in Twisted.
pub fn client_from_string(reactor: &Reactor, text: &str) -> Result<Box<dyn ClientEndpoint>, Error> {
    let d = Description::parse(text)?;
    match d.kind.to_ascii_lowercase().as_str() {
        "tcp" => tcp_client(reactor, &d),
        "unix" => unix_client(reactor, &d),
        "ssl" | "tls" => tls_client(reactor, &d),
        other => match registered_client(other) {
            Some(parser) => parser(reactor, &d),
            None => Err(d.error(format!(
                "unknown endpoint type {other:?} (expected one of: {})",
                known_types(CLIENT_BUILTIN, &CLIENT_TYPES)
            ))),
        },
    }
}

const SERVER_BUILTIN: &[&str] = &["tcp", "tcp6", "unix", "ssl", "systemd", "stdio"];
const CLIENT_BUILTIN: &[&str] = &["tcp", "unix", "ssl", "tls"];

fn tcp_server(
    reactor: &Reactor,
    d: &Description,
    default: IpAddr,
) -> Result<Box<dyn ServerEndpoint>, Error> {
    d.check_known(3, &["port", "interface", "backlog"])?;
    let port = d.port(0, "port")?;
    let interface = match d.arg(1, "interface") {
        None | Some("") => default,
        Some(text) => text
            .parse::<IpAddr>()
            .map_err(|_| d.error(format!("interface must be an IP address, got {text:?}")))?,
    };
    if default.is_ipv4() != interface.is_ipv4() {
        return Err(d.error(format!(
            "interface {interface} is not an {} address (use {})",
            if default.is_ipv4() { "IPv4" } else { "IPv6" },
            if default.is_ipv4() { "tcp6" } else { "tcp" },
        )));
    }
    let backlog = backlog(d, 2)?;
    let options = ListenOptions::default()
        .interface(interface)
        .backlog(backlog);
    Ok(Box::new(TcpServerEndpoint::new(reactor, port, options)))
}

fn backlog(d: &Description, index: usize) -> Result<i32, Error> {
    let backlog = d.int::<i32>(index, "backlog")?.unwrap_or(50);
    if backlog < 1 {
        return Err(d.error(format!("backlog must be at least 1, got {backlog}")));
    }
    Ok(backlog)
}

fn unix_server(reactor: &Reactor, d: &Description) -> Result<Box<dyn ServerEndpoint>, Error> {
    d.check_known(4, &["address", "mode", "backlog", "lockfile"])?;
    let address = unix_address(d)?;
    let mut options = UnixListenOptions::default().backlog(backlog(d, 2)?);
    if let Some(mode) = d.arg(1, "mode") {
        let parsed = u32::from_str_radix(mode, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                d.error(format!(
                    "mode must be octal permissions like 660, got {mode:?}"
                ))
            })?;
        options = options.mode(parsed);
    }
    if let Some(lockfile) = d.arg(3, "lockfile") {
        options = options.lockfile(flag(d, "lockfile", lockfile)?);
    }
    Ok(Box::new(UnixServerEndpoint::new(reactor, address, options)))
}

fn systemd_server(reactor: &Reactor, d: &Description) -> Result<Box<dyn ServerEndpoint>, Error> {
    d.check_known(0, &["domain", "index", "name"])?;
    match d.kwargs.get("domain").map(String::as_str) {
        Some("INET" | "INET6" | "UNIX") => {}
        Some(other) => {
            return Err(d.error(format!("domain must be INET, INET6 or UNIX, got {other:?}")));
        }
        None => return Err(d.error("missing domain (INET, INET6 or UNIX)")),
    }
    let endpoint = match (d.kwargs.get("index"), d.kwargs.get("name")) {
        (Some(_), None) => {
            let index = d.int::<usize>(usize::MAX, "index")?.unwrap_or(0);
            SystemdEndpoint::from_index(reactor, index)
        }
        (None, Some(name)) => SystemdEndpoint::from_name(reactor, name),
        _ => return Err(d.error("give exactly one of index=N or name=NAME")),
    };
    endpoint
        .map(|e| Box::new(e) as Box<dyn ServerEndpoint>)
        .map_err(|problem| d.error(problem))
}

fn ssl_server(reactor: &Reactor, d: &Description) -> Result<Box<dyn ServerEndpoint>, Error> {
    d.check_known(
        1,
        &[
            "port",
            "privateKey",
            "certKey",
            "extraCertChain",
            "interface",
            "backlog",
            "handshakeTimeout",
        ],
    )?;
    let port = d.port(0, "port")?;
    let config = ssl_server_config(d)?;
    let interface = match d.kwargs.get("interface").map(String::as_str) {
        None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(text) => text
            .parse::<IpAddr>()
            .map_err(|_| d.error(format!("interface must be an IP address, got {text:?}")))?,
    };
    let options = ListenOptions::default()
        .interface(interface)
        .backlog(backlog(d, usize::MAX)?);
    Ok(Box::new(SslServerEndpoint::new(
        reactor, port, options, config,
    )))
}

fn tls_client(reactor: &Reactor, d: &Description) -> Result<Box<dyn ClientEndpoint>, Error> {
    d.check_known(
        2,
        &[
            "host",
            "port",
            "trustRoots",
            "caCertsDir",
            "certificate",
            "certKey",
            "privateKey",
            "timeout",
            "bindAddress",
            "handshakeTimeout",
        ],
    )?;
    let tcp = tcp_client_endpoint(reactor, d)?;
    let host = d.required(0, "host")?;
    let problem = |e: Error| d.error(e.to_string());
    let mut config = crate::tls::ClientTlsConfig::new(host)
        .map_err(problem)?
        .with_handshake_timeout(handshake_timeout(d)?);
    if let Some(roots) = d.kwargs.get("trustRoots").or(d.kwargs.get("caCertsDir")) {
        config = config.with_trust_roots(roots).map_err(problem)?;
    }
    let certificate = d.kwargs.get("certificate").or(d.kwargs.get("certKey"));
    match (certificate, d.kwargs.get("privateKey")) {
        (Some(cert), key) => {
            config = config
                .with_client_certificate(cert, key.unwrap_or(cert))
                .map_err(problem)?;
        }
        (None, Some(_)) => return Err(d.error("privateKey needs certificate=CERT.pem")),
        (None, None) => {}
    }
    Ok(Box::new(wrap_client_tls(config, Box::new(tcp))))
}

fn tcp_client(reactor: &Reactor, d: &Description) -> Result<Box<dyn ClientEndpoint>, Error> {
    d.check_known(2, &["host", "port", "timeout", "bindAddress"])?;
    Ok(Box::new(tcp_client_endpoint(reactor, d)?))
}

fn tcp_client_endpoint(reactor: &Reactor, d: &Description) -> Result<HostnameEndpoint, Error> {
    let host = d.required(0, "host")?;
    if host.is_empty() {
        return Err(d.error("missing host"));
    }
    let port = d.port(1, "port")?;
    let mut endpoint = HostnameEndpoint::new(reactor, host, port).timeout(timeout(d)?);
    if let Some(bind) = d.kwargs.get("bindAddress") {
        let ip = bind
            .parse::<IpAddr>()
            .map_err(|_| d.error(format!("bindAddress must be an IP address, got {bind:?}")))?;
        endpoint = endpoint.bind_address(SocketAddr::new(ip, 0));
    }
    Ok(endpoint)
}

fn unix_client(reactor: &Reactor, d: &Description) -> Result<Box<dyn ClientEndpoint>, Error> {
    d.check_known(1, &["path", "address", "timeout", "checkPID"])?;
    let address = match d.arg(0, "path") {
        Some(_) => unix_address_named(d, "path")?,
        None => unix_address(d)?,
    };
    Ok(Box::new(UnixClientEndpoint::new(
        reactor,
        address,
        timeout(d)?,
    )))
}

/// The `address` (first positional) argument as a Unix address; `@name` is abstract.
fn unix_address(d: &Description) -> Result<UnixAddress, Error> {
    unix_address_named(d, "address")
}

fn unix_address_named(d: &Description, name: &str) -> Result<UnixAddress, Error> {
    let text = d.required(0, name)?;
    if text.is_empty() {
        return Err(d.error(format!("missing {name}")));
    }
    Ok(match text.strip_prefix('@') {
        Some(abstract_name) => UnixAddress::Abstract(abstract_name.as_bytes().to_vec()),
        None => UnixAddress::from(text),
    })
}

/// The `timeout=SECONDS` option (default 30 seconds).
/// The TLS server configuration an `ssl:` description names: `privateKey=KEY.pem`
/// (required), `certKey=CERT.pem` (else the certificate is read from the key file),
/// `extraCertChain=CHAIN.pem`, `handshakeTimeout=SECONDS` (`0` for none). For servers that
/// read `ssl:` descriptions themselves (to add ALPN, say).
pub fn ssl_server_config(d: &Description) -> Result<crate::tls::ServerTlsConfig, Error> {
    let handshake = handshake_timeout(d)?;
    let key = d
        .kwargs
        .get("privateKey")
        .ok_or_else(|| d.error("missing privateKey=KEY.pem"))?;
    Ok(crate::tls::ServerTlsConfig::from_pem_files(
        key.as_str(),
        d.kwargs.get("certKey").map(String::as_str),
        d.kwargs.get("extraCertChain").map(String::as_str),
    )
    .map_err(|e| d.error(e.to_string()))?
    .with_handshake_timeout(handshake))
}

/// `handshakeTimeout=SECONDS` (`0` for none); the default is
/// [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::tls::DEFAULT_HANDSHAKE_TIMEOUT).
fn handshake_timeout(d: &Description) -> Result<Option<Duration>, Error> {
    match d.kwargs.get("handshakeTimeout") {
        None => Ok(Some(crate::tls::DEFAULT_HANDSHAKE_TIMEOUT)),
        Some(text) => match text.parse::<f64>() {
            Ok(0.0) => Ok(None),
            Ok(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(d.error(format!(
                "handshakeTimeout must be a number of seconds (0 for none), got {text:?}"
            ))),
        },
    }
}

fn timeout(d: &Description) -> Result<Option<Duration>, Error> {
    match d.kwargs.get("timeout") {
        None => Ok(Some(crate::tcp::DEFAULT_CONNECT_TIMEOUT)),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Some(Duration::from_secs_f64(s)))
            .ok_or_else(|| {
                d.error(format!(
                    "timeout must be a positive number of seconds, got {text:?}"
                ))
            }),
    }
}

fn flag(d: &Description, name: &str, value: &str) -> Result<bool, Error> {
    match value {
        "1" | "true" | "True" | "yes" => Ok(true),
        "0" | "false" | "False" | "no" => Ok(false),
        other => Err(d.error(format!("{name} must be 0 or 1, got {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_err(text: &str) -> String {
        let reactor = Reactor::new().unwrap();
        match server_from_string(&reactor, text) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => e.to_string(),
        }
    }

    fn client_err(text: &str) -> String {
        let reactor = Reactor::new().unwrap();
        match client_from_string(&reactor, text) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn server_descriptions() {
        let reactor = Reactor::new().unwrap();
        let describe = |t: &str| server_from_string(&reactor, t).unwrap().describe();
        assert_eq!(
            describe("tcp:8080:interface=127.0.0.1:backlog=7"),
            "tcp:8080:interface=127.0.0.1"
        );
        assert_eq!(describe(r"tcp6:0:interface=\:\:1"), "tcp:0:interface=::1");
        assert_eq!(describe("tcp:port=99"), "tcp:99:interface=0.0.0.0");
        assert_eq!(
            describe(r"unix:/tmp/a\:b.sock:mode=600"),
            "unix:/tmp/a:b.sock"
        );
        assert_eq!(describe("unix:@abstract"), "unix:@abstract");
        assert_eq!(
            describe("unix:address=/x.sock:lockfile=1:backlog=3"),
            "unix:/x.sock"
        );
    }

    #[test]
    fn malformed_server_descriptions_say_what_is_wrong() {
        assert!(server_err("tcp").contains("missing port"));
        assert!(server_err("tcp:99999").contains("0 to 65535"));
        assert!(server_err("tcp:80:interface=nowhere").contains("IP address"));
        assert!(server_err("tcp:80:backlog=many").contains("backlog must be a number"));
        assert!(server_err(r"tcp:80:interface=\:\:1").contains("use tcp6"));
        assert!(server_err("tcpx:80").contains("unknown endpoint type \"tcpx\""));
        assert!(server_err("TCP:80").contains("unknown endpoint type"));
        assert!(server_err("unix:/x:mode=rw").contains("octal"));
        assert!(server_err("unix:/x:lockfile=maybe").contains("lockfile must be 0 or 1"));
        assert!(server_err("unix:").contains("missing address"));
        assert!(server_err("systemd:index=0").contains("missing domain"));
        assert!(server_err("systemd:domain=INET:index=0").contains("LISTEN_PID"));
    }

    #[test]
    fn registered_types_are_parsed_and_listed() {
        fn upper(reactor: &Reactor, d: &Description) -> Result<Box<dyn ServerEndpoint>, Error> {
            // A wrapper type: parse what it wraps.
            server_from_string(reactor, wrapped_description(d))
        }
        register_server_type("wrapped-test", upper);
        let reactor = Reactor::new().unwrap();
        let e = server_from_string(&reactor, "wrapped-test:tcp:81").unwrap();
        assert_eq!(e.describe(), "tcp:81:interface=0.0.0.0");
        assert!(server_err("nope:1").contains("wrapped-test"));
    }

    #[test]
    fn client_descriptions() {
        let reactor = Reactor::new().unwrap();
        let describe = |t: &str| client_from_string(&reactor, t).unwrap().describe();
        assert_eq!(
            describe("tcp:example.com:80:timeout=2.5"),
            "tcp:example.com:80"
        );
        assert_eq!(
            describe("TCP:host=localhost:port=8000"),
            "tcp:localhost:8000"
        );
        assert_eq!(
            describe("tcp:127.0.0.1:80:bindAddress=127.0.0.1"),
            "tcp:127.0.0.1:80"
        );
        assert_eq!(describe("UNIX:/run/x.sock"), "unix:/run/x.sock");
        assert_eq!(
            describe("unix:path=/run/y.sock:timeout=1"),
            "unix:/run/y.sock"
        );
    }

    #[test]
    fn malformed_client_descriptions_say_what_is_wrong() {
        assert!(client_err("tcp:example.com").contains("missing port"));
        assert!(client_err("tcp::80").contains("missing host"));
        assert!(client_err("tcp:h:80:timeout=soon").contains("timeout must be"));
        assert!(client_err("tls:h:443:handshakeTimeout=-1").contains("handshakeTimeout must"));
        assert!(
            server_err("ssl:443:privateKey=k.pem:handshakeTimeout=soon")
                .contains("handshakeTimeout must")
        );
        assert!(client_err("tcp:h:80:bindAddress=me").contains("bindAddress"));
        assert!(client_err("carrier:h:80").contains("unknown endpoint type \"carrier\""));
    }
}
