//! The HTTP hello world: every request gets `Hello, world!` (keep-alive, pipelining).
//! The benchmark's HTTP scenarios run this one.
//!
//! ```text
//! cargo run --release -p twistor-http --example hello_world -- 8080
//! curl http://127.0.0.1:8080/
//! ```
//!
//! It prints `listening on PORT` once it listens (port 0 lets the OS choose).

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;

use twistor::Reactor;
use twistor::tcp::ListenOptions;
use twistor_http::http::HeaderValue;
use twistor_http::http::header::CONTENT_TYPE;
use twistor_http::server::{Site, handler};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(8080);
    let reactor = Reactor::new()?;
    let site = Site::new(
        reactor.clone(),
        handler(|req| {
            req.set_header(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            "Hello, world!\n".into()
        }),
    );
    let listening = reactor.listen_tcp_with(
        port,
        Rc::new(site),
        ListenOptions::default()
            .interface(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .backlog(1024),
    )?;
    println!("listening on {}", listening.port());
    reactor.run()?;
    Ok(())
}
