//! Looks a name up, as `host` does: `resolve NAME [TYPE] [@SERVER[:PORT]]`.
//!
//! Without a server, `/etc/resolv.conf` and `/etc/hosts` decide. For example:
//!
//! ```text
//! cargo run -p twistor-dns --example resolve -- example.com
//! cargo run -p twistor-dns --example resolve -- example.com MX @127.0.0.1:5353
//! cargo run -p twistor-dns --example resolve -- 192.0.2.1 PTR
//! ```

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use twistor::Reactor;
use twistor_dns::client::{Resolver, ResolverConfig};
use twistor_dns::wire::rr::RecordType;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprintln!("usage: resolve NAME [TYPE] [@SERVER[:PORT]]");
        std::process::exit(2);
    };
    let mut record_type = None;
    let mut server = None;
    for arg in &args[1..] {
        match arg.strip_prefix('@') {
            Some(s) => server = Some(parse_server(s)?),
            None => record_type = Some(RecordType::from_str(&arg.to_uppercase())?),
        }
    }
    let reactor = Reactor::new()?;
    let mut config = ResolverConfig::from_system()?;
    if let Some(server) = server {
        config.nameservers = vec![server];
    }
    let resolver = Resolver::new(&reactor, config);
    match (record_type, name.parse::<IpAddr>()) {
        (None, _) => {
            for address in reactor.run_until(resolver.lookup_ip(name))?? {
                println!("{name} has address {address}");
            }
        }
        (Some(RecordType::PTR), Ok(address)) => {
            for host in reactor.run_until(resolver.lookup_ptr(address))?? {
                println!("{address} is {host}");
            }
        }
        (Some(record_type), _) => {
            for record in reactor.run_until(resolver.lookup(name, record_type))?? {
                println!("{record}");
            }
        }
    }
    Ok(())
}

/// `HOST` or `HOST:PORT` or `[V6]:PORT`, port 53 by default.
fn parse_server(text: &str) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    Ok(SocketAddr::new(text.trim_matches(['[', ']']).parse()?, 53))
}
