//! The access log: one line per request, in the combined log format.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::proto::http_date;

/// What is known about one finished request, for the access log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AccessLogEntry<'a> {
    /// The client's address (IP without port), or `-`.
    pub client: &'a str,
    /// When the request arrived.
    pub time: SystemTime,
    /// The request line, e.g. `GET /index.html HTTP/1.1`; `-` for a request refused
    /// before its head could be read.
    pub request_line: &'a str,
    /// The status sent.
    pub status: u16,
    /// Body bytes sent (not counting the head).
    pub bytes: u64,
    /// The `Referer` field, if any.
    pub referer: Option<&'a [u8]>,
    /// The `User-Agent` field, if any.
    pub user_agent: Option<&'a [u8]>,
}

/// Where a site writes its access log (Twisted's `Site(logPath=...)`/`logFormatter`).
pub trait AccessLog {
    /// One request is done.
    fn log(&self, entry: &AccessLogEntry<'_>);
}

/// Any `Fn(&str)` is an access log that gets each line in the combined log format.
impl<F: Fn(&str)> AccessLog for F {
    fn log(&self, entry: &AccessLogEntry<'_>) {
        self(&combined_log_line(entry))
    }
}

/// Formats an entry in the combined log format (Apache's and nginx's `combined`), without
/// a line end:
///
/// ```text
/// 127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] "GET /x HTTP/1.1" 200 1234 "-" "curl/8.0"
/// ```
///
/// Quotes, backslashes and control characters in the quoted fields are escaped (`\"`,
/// `\\`, `\xHH`), so a client cannot forge log lines.
pub fn combined_log_line(entry: &AccessLogEntry<'_>) -> String {
    let mut line = String::with_capacity(128);
    line.push_str(entry.client);
    line.push_str(" - - [");
    push_clf_time(&mut line, entry.time);
    line.push_str("] \"");
    push_escaped(&mut line, entry.request_line.as_bytes());
    let _ = write!(line, "\" {} ", entry.status);
    if entry.bytes == 0 {
        line.push('-');
    } else {
        let _ = write!(line, "{}", entry.bytes);
    }
    for field in [entry.referer, entry.user_agent] {
        line.push_str(" \"");
        match field {
            Some(v) => push_escaped(&mut line, v),
            None => line.push('-'),
        }
        line.push('"');
    }
    line
}

/// `[dd/Mon/yyyy:HH:MM:SS +0000]`'s inside, from the IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`.
fn push_clf_time(out: &mut String, time: SystemTime) {
    let date = http_date(time);
    let parts: Vec<&str> = date.split(' ').collect();
    if let [_, day, month, year, clock, _] = parts[..] {
        let _ = write!(out, "{day}/{month}/{year}:{clock} +0000");
    } else {
        out.push_str(&date);
    }
}

fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn combined_format() {
        let entry = AccessLogEntry {
            client: "127.0.0.1",
            time: UNIX_EPOCH + Duration::from_secs(784_111_777),
            request_line: "GET /a\"b HTTP/1.1",
            status: 200,
            bytes: 1234,
            referer: None,
            user_agent: Some(b"curl/8.0 \x01"),
        };
        assert_eq!(
            combined_log_line(&entry),
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\\"b HTTP/1.1\" 200 1234 \"-\" \"curl/8.0 \\x01\""
        );
    }
}
