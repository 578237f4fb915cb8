//! Traffic logging: Twisted's `TrafficLoggingFactory`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::rc::Rc;

use twistor::CloseReason;

use super::wrapper::{Connection, Policy};

/// A policy that writes a line for every event on every connection to a sink:
///
/// ```text
/// PREFIX 1 made: tcp:127.0.0.1:51234
/// PREFIX 1 read 6: "hello\n"
/// PREFIX 1 wrote 6: "hello\n"
/// PREFIX 1 lost: Connection was closed cleanly.
/// ```
///
/// Bytes are shown escaped, as Rust byte strings.
pub struct TrafficLogging {
    prefix: String,
    sink: Rc<RefCell<dyn Write>>,
}

impl TrafficLogging {
    /// Logs to `sink`, starting each line with `prefix`.
    pub fn new(prefix: &str, sink: Rc<RefCell<dyn Write>>) -> TrafficLogging {
        TrafficLogging {
            prefix: prefix.to_string(),
            sink,
        }
    }

    fn log(&self, conn: &Connection, what: std::fmt::Arguments<'_>) {
        let line = format!("{} {} {what}\n", self.prefix, conn.id());
        if let Err(err) = self.sink.borrow_mut().write_all(line.as_bytes()) {
            tracing::warn!("traffic log write failed: {err}");
        }
    }
}

fn escaped(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() + 2);
    out.push('"');
    for &b in data {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

impl Policy for TrafficLogging {
    fn connection_made(&self, conn: &Connection) {
        let peer = conn.transport().peer();
        self.log(conn, format_args!("made: {peer}"));
    }

    fn data_received(&self, conn: &Connection, data: &[u8]) {
        self.log(conn, format_args!("read {}: {}", data.len(), escaped(data)));
    }

    fn data_written(&self, conn: &Connection, data: &[u8]) {
        self.log(
            conn,
            format_args!("wrote {}: {}", data.len(), escaped(data)),
        );
    }

    fn connection_lost(&self, conn: &Connection, reason: &CloseReason) {
        self.log(conn, format_args!("lost: {reason}"));
    }
}
