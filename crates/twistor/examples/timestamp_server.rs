//! The timestamp server: answers each message with `[<ctime>] <message>`.
//!
//! `cargo run --example timestamp_server [PORT]` (default 21567).

use twistor::protocol::{Protocol, factory};
use twistor::{Reactor, Transport};

struct TsServProtocol;

impl Protocol for TsServProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        let peer = transport.peer();
        let host = peer.socket_addr().map(|a| a.ip().to_string());
        println!(
            "...connected from: {}",
            host.unwrap_or_else(|| peer.to_string())
        );
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let stamp = format!("[{}] ", ctime());
        transport.write_sequence(&[stamp.as_bytes(), data]);
    }
}

/// The local time formatted like C's `ctime()` (without its newline), e.g.
/// `Sun Nov  2 13:00:00 2026`.
fn ctime() -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // SAFETY: time(NULL) and localtime_r into a zeroed struct we own.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[tm.tm_wday as usize % 7],
        MONTHS[tm.tm_mon as usize % 12],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("expected a port number, got {arg:?}"))?,
        None => 21567,
    };
    let reactor = Reactor::new()?;
    let listening = reactor.listen_tcp(port, factory(|_addr| TsServProtocol))?;
    println!("waiting for connection... (port {})", listening.port());
    reactor.run()?;
    Ok(())
}
