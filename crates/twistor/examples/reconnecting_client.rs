//! A client that reconnects (Twisted's `ClientService`): it says hello each time it
//! connects, prints each line the server sends, and when the server says `bye` it stops the
//! program, which stops the service: the connection is closed and no retry follows.
//!
//! `cargo run --example reconnecting_client -- PORT`

use std::rc::Rc;

use twistor::application::{self, ClientService};
use twistor::endpoints::client_from_string;
use twistor::protocol::factory;
use twistor::reactor::WeakReactor;
use twistor::{Protocol, Reactor, Transport};

struct Greeter {
    reactor: WeakReactor,
}

impl Protocol for Greeter {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"hello\n");
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        for line in String::from_utf8_lossy(data).lines() {
            println!("server said: {line}");
            if line == "bye"
                && let Some(reactor) = self.reactor.upgrade()
            {
                reactor.stop(); // stops the service first, which closes the connection
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: reconnecting_client PORT")?
        .parse()?;
    twistor::log::init(); // connections and retries at info level, on stderr
    let reactor = Reactor::new()?;
    let endpoint = client_from_string(&reactor, &format!("tcp:127.0.0.1:{port}"))?;
    let weak = reactor.downgrade();
    let greeters = factory(move |_addr| Greeter {
        reactor: weak.clone(),
    });
    let backoff = ClientService::default_backoff()
        .initial_delay(0.1)
        .max_delay(1.0);
    let service = ClientService::new(reactor.clone(), endpoint, greeters).with_backoff(backoff);
    application::run(&reactor, Rc::new(service))?;
    Ok(())
}
