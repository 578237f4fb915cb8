//! Echoes standard input to standard output through the reactor (Twisted's `stdio` echo):
//! `echo hi | stdio_echo` prints `hi`. It exits once stdin has ended and everything read
//! has been written.

use twistor::protocol::Protocol;
use twistor::stdio::standard_io;
use twistor::{CloseReason, Reactor, Transport};

struct Echo {
    reactor: Reactor,
}

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        if !reason.is_clean() {
            eprintln!("stdio_echo: {reason}");
        }
        self.reactor.stop();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    standard_io(
        &reactor,
        Echo {
            reactor: reactor.clone(),
        },
    )?;
    reactor.run()?;
    Ok(())
}
