//! Resolves a name recursively, from the root servers down, as `dig +trace` would show:
//! `recursive NAME [TYPE] [@HINT[:PORT]]`.
//!
//! ```text
//! cargo run -p twistor-dns --example recursive -- www.example.com
//! cargo run -p twistor-dns --example recursive -- example.com MX
//! RUST_LOG=debug cargo run -p twistor-dns --example recursive -- example.org AAAA
//! ```
//!
//! With `@HINT:PORT`, that server is the root and every server is asked on PORT (a test
//! hierarchy on loopback).

use std::net::SocketAddr;
use std::str::FromStr;

use twistor::Reactor;
use twistor_dns::recursive::Recursive;
use twistor_dns::wire::op::{Message, Query};
use twistor_dns::wire::rr::{Name, RecordType};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprintln!("usage: recursive NAME [TYPE] [@HINT[:PORT]]");
        std::process::exit(2);
    };
    let mut record_type = RecordType::A;
    let mut hint: Option<SocketAddr> = None;
    for arg in &args[1..] {
        match arg.strip_prefix('@') {
            Some(s) => hint = Some(s.parse()?),
            None => record_type = RecordType::from_str(&arg.to_uppercase())?,
        }
    }
    let reactor = Reactor::new()?;
    let resolver = match hint {
        Some(hint) => Recursive::new(&reactor, vec![hint]).with_port(hint.port()),
        None => Recursive::from_root_hints(&reactor),
    };
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(Name::from_utf8(name)?, record_type));
    let response = reactor.run_until(resolver.resolve(&request))??;
    println!(
        ";; {} after {} queries",
        response.metadata.response_code,
        resolver.queries_sent()
    );
    for record in response.answers.iter().chain(&response.authorities) {
        println!("{record}");
    }
    Ok(())
}
