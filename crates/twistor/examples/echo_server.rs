//! The classic echo server: every byte received is sent back.
//!
//! `cargo run --example echo_server [PORT]` (default port 8000).

use twistor::protocol::{Protocol, factory};
use twistor::{Reactor, Transport};

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("expected a port number, got {arg:?}"))?,
        None => 8000,
    };
    let reactor = Reactor::new()?;
    let listening = reactor.listen_tcp(port, factory(|_addr| Echo))?;
    println!("echo server listening on {}", listening.port());
    reactor.run()?;
    Ok(())
}
