//! The HTML listing of a directory without an index file.

use std::fmt::Write as _;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::proto::http_date;
use crate::server::escape_html;

struct Entry {
    name: Vec<u8>,
    dir: bool,
    size: u64,
    modified: Option<std::time::SystemTime>,
}

/// The listing page for `dir`, served at `url_path` (which ends in `/`). Names are
/// HTML-escaped in the text and percent-encoded in the links; names that are not UTF-8
/// are shown with replacement characters but still linked byte for byte.
pub(super) fn render(url_path: &str, dir: &Path) -> io::Result<String> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // Follow links for what they point at; a dangling link is listed as a file.
        let meta = std::fs::metadata(entry.path()).or_else(|_| entry.metadata());
        let (dir, size, modified) = match &meta {
            Ok(m) => (m.is_dir(), m.len(), m.modified().ok()),
            Err(_) => (false, 0, None),
        };
        entries.push(Entry {
            name: entry.file_name().as_bytes().to_vec(),
            dir,
            size,
            modified,
        });
    }
    entries.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));

    let title = escape_html(&String::from_utf8_lossy(&percent_decode_lossy(url_path)));
    let mut html = String::with_capacity(512 + entries.len() * 160);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n<title>Directory listing for {title}</title>\n\
         <style>body{{font-family:sans-serif}}td{{padding:0 1em}}td.size{{text-align:right}}</style>\n\
         </head><body>\n<h1>Directory listing for {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n"
    );
    if url_path != "/" {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in &entries {
        let slash = if e.dir { "/" } else { "" };
        let href = percent_encode(&e.name);
        let text = escape_html(&String::from_utf8_lossy(&e.name));
        let size = if e.dir {
            "-".to_owned()
        } else {
            human_size(e.size)
        };
        let date = e
            .modified
            .filter(|t| *t >= UNIX_EPOCH)
            .map(http_date)
            .unwrap_or_default();
        let _ = writeln!(
            html,
            "<tr><td><a href=\"{href}{slash}\">{text}{slash}</a></td><td class=\"size\">{size}</td><td>{date}</td></tr>"
        );
    }
    html.push_str("</table>\n</body></html>\n");
    Ok(html)
}

/// Percent-encodes a name for a relative link: everything but unreserved characters.
fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn percent_decode_lossy(path: &str) -> Vec<u8> {
    crate::server::percent_decode_path(path)
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_and_sizes() {
        assert_eq!(percent_encode(b"a b&<c>.txt"), "a%20b%26%3Cc%3E.txt");
        assert_eq!(percent_encode(b"\xff"), "%FF");
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(10 << 30), "10.0 GiB");
    }
}
