//! A UDP echo server: each datagram goes back to where it came from.
//!
//! `cargo run --example udp_echo_server [PORT]` (default 9999), then
//! `echo hi | nc -u -w1 127.0.0.1 9999`.

use twistor::{Address, DatagramProtocol, DatagramTransport, Reactor};

struct Echo;

impl DatagramProtocol for Echo {
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], addr: &Address) {
        if let Err(err) = transport.write_to(data, addr) {
            eprintln!("could not answer {addr}: {err}");
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("expected a port number, got {arg:?}"))?,
        None => 9999,
    };
    let reactor = Reactor::new()?;
    let transport = reactor.listen_udp(port, Echo)?;
    println!("UDP echo server listening on {}", transport.port());
    reactor.run()?;
    Ok(())
}
