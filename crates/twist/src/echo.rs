//! `twist echo`: the echo service.

use std::rc::Rc;

use twistor::endpoints::server_from_string;
use twistor::protocol::{Protocol, factory};
use twistor::{Reactor, Transport};

use crate::Failure;
use crate::serve::{Server, sources};

/// Options of `twist echo`.
#[derive(clap::Args)]
pub struct Options {
    /// Where to listen, as an endpoint description (repeatable), e.g. `tcp:8000`,
    /// `tcp:8000:interface=127.0.0.1:backlog=100`, `tcp6:8000`, `unix:/run/echo.sock`,
    /// `systemd:domain=INET:index=0`, `stdio:` (echoes standard input, then exits).
    #[arg(
        long = "listen",
        value_name = "DESCRIPTION",
        default_value = "tcp:8000"
    )]
    listen: Vec<String>,
}

/// Sends back every byte it receives. It reads no faster than the peer takes the echo: the
/// transport is registered as its own streaming producer, so reading pauses while the
/// outgoing buffer is above the high-water mark.
pub struct Echo;

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        // Cannot fail: the connection is new and has no producer yet.
        let _ = transport.register_producer(transport.clone(), true);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

/// The echo over standard I/O: the reactor stops when stdin ends and the echo is out.
struct StopWhenDone {
    reactor: Reactor,
}

impl Protocol for StopWhenDone {
    fn connection_made(&mut self, transport: &Transport) {
        Echo.connection_made(transport)
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        Echo.data_received(transport, data)
    }

    fn connection_lost(&mut self, _reason: &twistor::CloseReason) {
        self.reactor.stop();
    }
}

/// Listens on every description, then runs until SIGINT or SIGTERM.
pub fn run(options: Options) -> Result<(), Failure> {
    let reactor = crate::service_reactor()?;
    // Check every description before listening on any, so a typo fails fast.
    let endpoints = options
        .listen
        .iter()
        .map(|text| server_from_string(&reactor, text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let echo_factory: Rc<dyn twistor::Factory> = factory(|_addr| Echo);
    // Serving only standard I/O, the service is done when that connection is.
    let stdio_only = endpoints.iter().all(|e| e.describe() == "stdio:");
    let server = Server::new(&reactor, sources(&reactor), || {});
    for endpoint in endpoints {
        let factory = if endpoint.describe() == "stdio:" && stdio_only {
            let r = reactor.clone();
            twistor::protocol::factory(move |_addr| StopWhenDone { reactor: r.clone() })
        } else {
            echo_factory.clone()
        };
        server.listen(endpoint, factory);
    }
    server.run()
}
