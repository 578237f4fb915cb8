//! Says `Hello` to each client, prints what clients send and when they leave.
//!
//! `cargo run --example hello_server [PORT]` (default 9001).

use twistor::protocol::{CloseReason, Protocol, factory};
use twistor::{Address, Reactor, Transport};

struct SimpleProtocol {
    client: Option<Address>,
}

impl Protocol for SimpleProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        let peer = transport.peer();
        println!("success from {peer}");
        self.client = Some(peer);
        transport.write(b"Hello");
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        println!("{}", String::from_utf8_lossy(data));
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        if let Some(client) = &self.client {
            println!("{client} disconnected");
        }
        println!("{reason}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("expected a port number, got {arg:?}"))?,
        None => 9001,
    };
    let reactor = Reactor::new()?;
    let listening = reactor.listen_tcp(port, factory(|_addr| SimpleProtocol { client: None }))?;
    println!("listening on {}", listening.port());
    reactor.run()?;
    Ok(())
}
