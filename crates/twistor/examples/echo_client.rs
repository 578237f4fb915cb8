//! The classic echo client: sends `hello, world!`, prints the answer, closes, and stops.
//!
//! `cargo run --example echo_client [PORT]` (default 8000, on localhost).

use twistor::protocol::{ClientFactory, CloseReason, Factory, Protocol};
use twistor::{Address, Connector, Error, Reactor, Transport};

struct EchoClient;

impl Protocol for EchoClient {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"hello, world!");
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        println!("Server said: {}", String::from_utf8_lossy(data));
        transport.lose_connection();
    }

    fn connection_lost(&mut self, _reason: &CloseReason) {
        println!("connection lost");
    }
}

struct EchoFactory {
    reactor: Reactor,
}

impl Factory for EchoFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(EchoClient))
    }
}

impl ClientFactory for EchoFactory {
    fn client_connection_failed(&self, _connector: &Connector, _reason: &Error) {
        println!("Connection failed - goodbye!");
        self.reactor.stop();
    }

    fn client_connection_lost(&self, _connector: &Connector, _reason: &CloseReason) {
        println!("Connection lost - goodbye!");
        self.reactor.stop();
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
    let factory = std::rc::Rc::new(EchoFactory {
        reactor: reactor.clone(),
    });
    reactor.connect_tcp("localhost", port, factory);
    reactor.run()?;
    Ok(())
}
