//! What a failing program shows: with no logging set up, the engine still prints its errors
//! on standard error (Twisted prints the traceback); with `--log` it sets up logging with
//! `twistor::log::init()` and they go through the log instead, once each.
//!
//! It leaves a failed Deferred unhandled, then its main function fails to connect.
//!
//! `cargo run --example errors_shown -- PORT [--log]` (a port nothing listens on).

use twistor::Transport;
use twistor::defer::{Deferred, Failure};
use twistor::endpoints::{HostnameEndpoint, connect_protocol};
use twistor::protocol::Protocol;
use twistor::task::react;

struct Quiet;

impl Protocol for Quiet {
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--log") {
        twistor::log::init();
    }
    let port: u16 = args[1].parse().expect("usage: errors_shown PORT [--log]");
    react(move |reactor| async move {
        let forgotten: Deferred<()> = Deferred::new();
        forgotten.errback(Failure::msg("nobody handled this"))?;
        drop(forgotten); // "Unhandled error in Deferred"
        let server = HostnameEndpoint::new(&reactor, "127.0.0.1", port);
        connect_protocol(&server, Quiet).await?; // refused: main fails
        Ok(())
    });
}
