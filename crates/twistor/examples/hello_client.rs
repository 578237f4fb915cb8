//! Sends `hello` to the hello server and prints what comes back as `DATA ...`. Stops when
//! the connection ends.
//!
//! `cargo run --example hello_client [PORT]` (default 9001, on 127.0.0.1).

use twistor::protocol::{ClientFactory, CloseReason, Factory, Protocol};
use twistor::{Address, Connector, Error, Reactor, Transport};

struct Sender;

impl Protocol for Sender {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"hello");
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        println!("DATA {}", String::from_utf8_lossy(data));
    }
}

struct BasicClientFactory {
    reactor: Reactor,
}

impl Factory for BasicClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Sender))
    }
}

impl ClientFactory for BasicClientFactory {
    fn client_connection_lost(&self, _connector: &Connector, reason: &CloseReason) {
        println!("Lost connection: {reason}");
        self.reactor.stop();
    }

    fn client_connection_failed(&self, _connector: &Connector, reason: &Error) {
        println!("Connection failed: {reason}");
        self.reactor.stop();
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
    let factory = std::rc::Rc::new(BasicClientFactory {
        reactor: reactor.clone(),
    });
    reactor.connect_tcp("127.0.0.1", port, factory);
    reactor.run()?;
    Ok(())
}
