//! Server endpoints and `server_from_string`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use super::description::Description;
use crate::error::Error;
use crate::port::ListeningPort;
use crate::protocol::Factory;
use crate::reactor::Reactor;
use crate::tcp::ListenOptions;

/// Somewhere to listen (Twisted's `IStreamServerEndpoint`).
pub trait ServerEndpoint {
    /// Starts listening, building a protocol with `factory` for each connection.
    fn listen(&self, factory: Rc<dyn Factory>) -> Result<ListeningPort, Error>;

    /// The description this endpoint was made from, or a summary of it.
    fn describe(&self) -> String;
}

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
    fn listen(&self, factory: Rc<dyn Factory>) -> Result<ListeningPort, Error> {
        self.reactor
            .listen_tcp_with(self.port, factory, self.options.clone())
    }

    fn describe(&self) -> String {
        format!("tcp:{}:interface={}", self.port, self.options.interface)
    }
}

/// Makes a server endpoint from a description:
///
/// - `tcp:PORT[:interface=ADDR][:backlog=N]` — TCP on IPv4 (all interfaces by default);
/// - `tcp6:PORT[:interface=ADDR][:backlog=N]` — TCP on IPv6 (`::` by default; write colons
///   in addresses as `\:`).
///
/// Type names are case-sensitive, as in Twisted. A malformed description is an
/// [`Error::BadDescription`] that quotes it and says which part is wrong.
pub fn server_from_string(reactor: &Reactor, text: &str) -> Result<Box<dyn ServerEndpoint>, Error> {
    let d = Description::parse(text)?;
    match d.kind.as_str() {
        "tcp" => tcp(reactor, &d, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        "tcp6" => tcp(reactor, &d, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        other => Err(d.error(format!(
            "unknown endpoint type {other:?} (expected one of: tcp, tcp6)"
        ))),
    }
}

fn tcp(
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
    let backlog = d.int::<i32>(2, "backlog")?.unwrap_or(50);
    if backlog < 1 {
        return Err(d.error(format!("backlog must be at least 1, got {backlog}")));
    }
    let options = ListenOptions::default()
        .interface(interface)
        .backlog(backlog);
    Ok(Box::new(TcpServerEndpoint::new(reactor, port, options)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let reactor = Reactor::new().unwrap();
        match server_from_string(&reactor, text) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tcp_descriptions() {
        let reactor = Reactor::new().unwrap();
        let e = server_from_string(&reactor, "tcp:8080:interface=127.0.0.1:backlog=7").unwrap();
        assert_eq!(e.describe(), "tcp:8080:interface=127.0.0.1");
        let e = server_from_string(&reactor, r"tcp6:0:interface=\:\:1").unwrap();
        assert_eq!(e.describe(), "tcp:0:interface=::1");
        let e = server_from_string(&reactor, "tcp:port=99").unwrap();
        assert_eq!(e.describe(), "tcp:99:interface=0.0.0.0");
    }

    #[test]
    fn malformed_descriptions_say_what_is_wrong() {
        assert!(err("tcp").contains("missing port"));
        assert!(err("tcp:99999").contains("0 to 65535"));
        assert!(err("tcp:80:interface=nowhere").contains("IP address"));
        assert!(err("tcp:80:backlog=many").contains("backlog must be a number"));
        assert!(err("tcp:80:interface=\\:\\:1").contains("use tcp6"));
        assert!(err("tcpx:80").contains("unknown endpoint type \"tcpx\""));
        assert!(err("TCP:80").contains("unknown endpoint type"));
    }

    #[test]
    fn listens_for_real() {
        let reactor = Reactor::new().unwrap();
        let e = server_from_string(&reactor, "tcp:0:interface=127.0.0.1").unwrap();
        let port = e.listen(crate::protocol::factory(|_| Sink)).unwrap();
        assert_ne!(port.port(), 0);
        port.stop_listening();
        assert!(!port.listening());
    }

    struct Sink;
    impl crate::protocol::Protocol for Sink {
        fn data_received(&mut self, _: &crate::Transport, _: &[u8]) {}
    }
}
