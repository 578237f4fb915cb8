//! A client that reconnects: it says hello each time it connects, prints each line the
//! server sends, and stops for good (no more retries) when the server says `bye`.
//!
//! `cargo run --example reconnecting_client -- PORT`

use twistor::protocol::{ClientFactory, Factory};
use twistor::reconnect::{Backoff, ReconnectControl, ReconnectingClientFactory};
use twistor::{Address, CloseReason, Connector, Protocol, Reactor, Transport};

struct Greeter {
    retry: ReconnectControl,
}

impl Protocol for Greeter {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"hello\n");
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        for line in String::from_utf8_lossy(data).lines() {
            println!("server said: {line}");
            if line == "bye" {
                self.retry.stop_trying(); // Twisted's self.factory.stopTrying()
                transport.lose_connection();
            }
        }
    }
}

/// Builds greeters, and stops the reactor once the reconnecting factory gives up.
struct Greeters {
    retry: ReconnectControl,
    reactor: Reactor,
}

impl Factory for Greeters {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        let retry = self.retry.clone();
        Some(Box::new(Greeter { retry }))
    }
}

impl ClientFactory for Greeters {
    fn client_connection_lost(&self, _connector: &Connector, _reason: &CloseReason) {
        if !self.retry.continue_trying() {
            self.reactor.stop();
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: reconnecting_client PORT")?
        .parse()?;
    let reactor = Reactor::new()?;
    let backoff = Backoff::default().initial_delay(0.1).max_delay(1.0);
    let r = reactor.clone();
    let retrying = ReconnectingClientFactory::with_control(reactor.clone(), backoff, |retry| {
        Greeters { retry, reactor: r }
    });
    reactor.connect_tcp("127.0.0.1", port, retrying);
    reactor.run()?;
    Ok(())
}
