//! The timestamp server: answers each message with `[<ctime>] <message>`.
//!
//! `cargo run --example timestamp_server [PORT]` (default 21567).

use twistor::protocol::{Protocol, factory};
use twistor::{Reactor, Transport};

struct TsServProtocol;

impl Protocol for TsServProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        let peer = transport.peer();
        println!(
            "...connected from: {}",
            peer.host().unwrap_or(peer.to_string())
        );
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write_sequence(&[format!("[{}] ", ctime()).as_bytes(), data]);
    }
}

/// The local time formatted like C's `ctime()` (without its newline), e.g.
/// `Sun Nov  2 13:00:00 2026`.
fn ctime() -> String {
    let mut buf = [0u8; 26]; // ctime_r's documented size
    // SAFETY: time(NULL), then ctime_r into a buffer of the size it requires.
    let text = unsafe {
        let now = libc::time(std::ptr::null_mut());
        libc::ctime_r(&now, buf.as_mut_ptr().cast());
        std::ffi::CStr::from_ptr(buf.as_ptr().cast())
    };
    text.to_string_lossy().trim_end().to_string()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).map_or(Ok(21567), |p| p.parse())?;
    let reactor = Reactor::new()?;
    let listening = reactor.listen_tcp(port, factory(|_addr| TsServProtocol))?;
    println!("waiting for connection... (port {})", listening.port());
    reactor.run()?;
    Ok(())
}
