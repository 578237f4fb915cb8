//! `twist portforward`: forward every connection to a fixed destination.

use std::rc::Rc;
use std::time::Duration;

use twistor::endpoints::server_from_string;
use twistor_protocols::portforward::ProxyFactory;

use crate::Failure;
use crate::serve::{Server, sources};

/// Options of `twist portforward`.
#[derive(clap::Args)]
pub struct Options {
    /// Where to listen, as an endpoint description (repeatable), e.g. `tcp:8080`,
    /// `haproxy:tcp:8080` (behind a load balancer speaking the PROXY protocol).
    #[arg(
        long = "listen",
        value_name = "DESCRIPTION",
        default_value = "tcp:8080"
    )]
    listen: Vec<String>,

    /// Where to forward connections: HOST:PORT (`[ADDR]:PORT` for an IPv6 address).
    #[arg(long = "dest", value_name = "HOST:PORT")]
    dest: String,

    /// Once one side of a forwarded connection is gone, how many seconds the other side
    /// may take to send what is queued for it before it is cut.
    #[arg(long = "drain-timeout", value_name = "SECONDS", default_value = "10", value_parser = crate::parse_seconds)]
    drain_timeout: Duration,
}

/// Splits `HOST:PORT` or `[IPV6]:PORT`.
fn parse_dest(dest: &str) -> Result<(String, u16), String> {
    let bad = || format!("--dest must be HOST:PORT, got {dest:?}");
    let (host, port) = dest.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(':') && !dest.starts_with('[') {
        return Err(bad());
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("--dest port must be a number from 1 to 65535, got {port:?}"))?;
    Ok((host.to_string(), port))
}

/// Listens on every description and forwards to the destination until SIGINT or SIGTERM.
pub fn run(options: Options) -> Result<(), Failure> {
    let (host, port) = parse_dest(&options.dest).map_err(Failure::Usage)?;
    let reactor = crate::service_reactor()?;
    let endpoints = options
        .listen
        .iter()
        .map(|text| server_from_string(&reactor, text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let forward = ProxyFactory::new(reactor.clone(), &host, port);
    forward.set_drain_timeout(options.drain_timeout);
    let proxy: Rc<dyn twistor::Factory> = forward;
    let server = Server::new(&reactor, sources(&reactor), || {});
    for endpoint in endpoints {
        server.listen(endpoint, proxy.clone());
    }
    server.start()?;
    tracing::info!("forwarding to {host}:{port}");
    reactor.run().map_err(|e| Failure::Runtime(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_dest;

    #[test]
    fn destinations() {
        assert_eq!(
            parse_dest("localhost:80").unwrap(),
            ("localhost".into(), 80)
        );
        assert_eq!(parse_dest("[::1]:8000").unwrap(), ("::1".into(), 8000));
        assert!(parse_dest("localhost").is_err());
        assert!(parse_dest("::1:80").is_err());
        assert!(parse_dest("h:0").unwrap_err().contains("1 to 65535"));
        assert!(parse_dest(":80").is_err());
    }
}
