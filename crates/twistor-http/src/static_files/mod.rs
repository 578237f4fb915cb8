//! Serving a directory of files (Twisted's `twisted.web.static.File`).
//!
//! [`StaticFile`] is a leaf [`Resource`]: the path below it names a file under its root.
//! It answers `GET` and `HEAD` with `Content-Type` from the extension ([`content_type`]),
//! `Last-Modified` and `ETag`; the preconditions of RFC 9110 §13 (`If-Match` and
//! `If-Unmodified-Since` with 412, `If-None-Match` and `If-Modified-Since` with 304); `Range`
//! with 206 for one range or `multipart/byteranges` for several (416 when none can be
//! served, and `If-Range` honoured); a directory with its `index.html`, or an HTML listing
//! of its entries (names escaped, sizes, dates). Files are streamed by a pull producer a
//! chunk at a time, so a 10 GB file never sits in memory.
//!
//! No request reaches outside the root: segments `.` and `..` (however encoded, e.g.
//! `%2e%2e`), segments holding `/` (`%2f`) or NUL are refused, and the resolved path must
//! stay under the root, so a symbolic link pointing out of it is refused unless
//! [`StaticOptions::follow_outside_links`] says otherwise. Refusals are 404s, so they
//! reveal nothing.
//!
//! ```no_run
//! use std::rc::Rc;
//! use twistor::Reactor;
//! use twistor_http::server::Site;
//! use twistor_http::static_files::StaticFile;
//!
//! let reactor = Reactor::new()?;
//! let site = Site::new(reactor.clone(), Rc::new(StaticFile::new("/srv/www")?));
//! reactor.listen_tcp(8080, Rc::new(site))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod listing;
mod mime;
mod range;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, StatusCode, header};
use twistor::Producer;

pub use mime::{DEFAULT_TYPE, content_type};
pub use range::{RangeRequest, parse_http_date, parse_range};

use crate::proto::http_date;
use crate::server::{Render, Request, Resource, error_page, method_not_allowed};

/// Tuning for [`StaticFile`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StaticOptions {
    /// Files served for a directory's own URL, first found wins (default `index.html`).
    pub index_files: Vec<String>,
    /// List a directory that has no index file (default true); otherwise 403.
    pub directory_listing: bool,
    /// Follow symbolic links that point outside the root (default false: 404).
    pub follow_outside_links: bool,
    /// Bytes read from a file per write (default 64 KiB).
    pub chunk_size: usize,
    /// Most ranges served in one response; more and the whole file is sent (default 32).
    pub max_ranges: usize,
}

impl Default for StaticOptions {
    fn default() -> StaticOptions {
        StaticOptions {
            index_files: vec!["index.html".into()],
            directory_listing: true,
            follow_outside_links: false,
            chunk_size: 64 * 1024,
            max_ranges: 32,
        }
    }
}

/// A directory (or a single file) served over HTTP. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct StaticFile {
    root: PathBuf,
    options: StaticOptions,
}

impl StaticFile {
    /// Serves `root` with the default options. Fails if `root` does not exist.
    pub fn new(root: impl AsRef<Path>) -> io::Result<StaticFile> {
        StaticFile::with_options(root, StaticOptions::default())
    }

    /// Serves `root` with `options`.
    pub fn with_options(root: impl AsRef<Path>, options: StaticOptions) -> io::Result<StaticFile> {
        Ok(StaticFile {
            root: root.as_ref().canonicalize()?,
            options,
        })
    }

    /// The root, resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file or directory a request names, or `None` if it may not be served.
    fn resolve(&self, request: &Request) -> Option<PathBuf> {
        let mut path = self.root.clone();
        for segment in request.postpath() {
            if segment.is_empty() {
                continue;
            }
            if segment == b"."
                || segment == b".."
                || segment.contains(&b'/')
                || segment.contains(&0)
            {
                return None;
            }
            path.push(OsStr::from_bytes(&segment));
        }
        if self.options.follow_outside_links {
            return Some(path);
        }
        // Resolving every link on the way shows where the path really leads.
        match path.canonicalize() {
            Ok(real) if real.starts_with(&self.root) => Some(path),
            Ok(_) => {
                tracing::debug!("{} leads out of the root; refused", path.display());
                None
            }
            Err(_) => Some(path),
        }
    }
}

impl Resource for StaticFile {
    fn is_leaf(&self) -> bool {
        true
    }

    fn render(&self, request: &Request) -> Render {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            return method_not_allowed(request, &[Method::GET, Method::HEAD]);
        }
        let Some(path) = self.resolve(request) else {
            return not_found(request);
        };
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => return io_error(request, &e),
        };
        if !meta.is_dir() {
            if request.postpath_raw().is_some_and(|p| p.ends_with('/')) {
                // `file.txt/` names a directory that is not there.
                return not_found(request);
            }
            return self.serve_file(request, &path, &meta);
        }
        // A directory's URL ends in a slash, so relative links in it resolve inside it.
        if !request.path().ends_with('/') {
            let mut location = format!("{}/", request.path());
            if let Some(q) = request.query() {
                location.push('?');
                location.push_str(q);
            }
            request.set_status(StatusCode::MOVED_PERMANENTLY);
            return request.redirect(&location);
        }
        for index in &self.options.index_files {
            let candidate = path.join(index);
            if let Ok(meta) = std::fs::metadata(&candidate)
                && meta.is_file()
            {
                return self.serve_file(request, &candidate, &meta);
            }
        }
        if !self.options.directory_listing {
            return error_page(
                request,
                StatusCode::FORBIDDEN,
                "Directory listing is not allowed.",
            );
        }
        match listing::render(request.path(), &path) {
            Ok(html) => {
                request.set_header(header::CONTENT_TYPE, "text/html; charset=utf-8");
                Render::Body(Bytes::from(html))
            }
            Err(e) => io_error(request, &e),
        }
    }
}

impl StaticFile {
    fn serve_file(&self, request: &Request, path: &Path, meta: &Metadata) -> Render {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => return io_error(request, &e),
        };
        let size = meta.len();
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let mtime = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        let etag = format!("\"{:x}-{:x}\"", mtime.as_nanos(), size);
        let last_modified = http_date(modified);
        request.set_header(header::ETAG, etag.as_str());
        request.set_header(header::LAST_MODIFIED, last_modified.as_str());
        request.set_header(header::ACCEPT_RANGES, "bytes");

        match preconditions(request, &etag, modified) {
            Some(StatusCode::NOT_MODIFIED) => {
                request.set_status(StatusCode::NOT_MODIFIED);
                request.finish();
                return Render::Later;
            }
            Some(status) => {
                return error_page(request, status, "A precondition of the request failed.");
            }
            None => {}
        }

        let kind = content_type(path);
        let ranges = match request.header(header::RANGE) {
            Some(value) if self.if_range_holds(request, &etag, modified) => {
                parse_range(value, size, self.options.max_ranges)
            }
            _ => RangeRequest::Full,
        };
        let mut pieces = VecDeque::new();
        let length = match ranges {
            RangeRequest::Full => {
                request.set_header(header::CONTENT_TYPE, kind);
                pieces.push_back(Piece::File {
                    offset: 0,
                    len: size,
                });
                size
            }
            RangeRequest::Unsatisfiable => {
                request.set_header(header::CONTENT_RANGE, format!("bytes */{size}"));
                return error_page(
                    request,
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "The requested range is not satisfiable.",
                );
            }
            RangeRequest::Ranges(ranges) if ranges.len() == 1 => {
                let (first, last) = ranges[0];
                request.set_status(StatusCode::PARTIAL_CONTENT);
                request.set_header(header::CONTENT_TYPE, kind);
                request.set_header(
                    header::CONTENT_RANGE,
                    format!("bytes {first}-{last}/{size}"),
                );
                pieces.push_back(Piece::File {
                    offset: first,
                    len: last - first + 1,
                });
                last - first + 1
            }
            RangeRequest::Ranges(ranges) => {
                let boundary = boundary(&etag);
                request.set_status(StatusCode::PARTIAL_CONTENT);
                request.set_header(
                    header::CONTENT_TYPE,
                    format!("multipart/byteranges; boundary={boundary}"),
                );
                let mut total = 0;
                for (first, last) in ranges {
                    let part = Bytes::from(format!(
                        "\r\n--{boundary}\r\nContent-Type: {kind}\r\nContent-Range: bytes {first}-{last}/{size}\r\n\r\n"
                    ));
                    total += part.len() as u64 + (last - first + 1);
                    pieces.push_back(Piece::Bytes(part));
                    pieces.push_back(Piece::File {
                        offset: first,
                        len: last - first + 1,
                    });
                }
                let end = Bytes::from(format!("\r\n--{boundary}--\r\n"));
                total += end.len() as u64;
                pieces.push_back(Piece::Bytes(end));
                total
            }
        };
        request.set_content_length(length);
        if request.method() == Method::HEAD {
            request.finish();
            return Render::Later;
        }
        // Small bodies go out in one write; larger ones through a producer.
        if length <= self.options.chunk_size as u64 {
            match read_pieces(&file, &pieces, length) {
                Ok(body) => {
                    request.respond(body);
                    return Render::Later;
                }
                Err(e) => return io_error(request, &e),
            }
        }
        let sender = FileSender {
            request: request.clone(),
            file,
            pieces: RefCell::new(pieces),
            buf: RefCell::new(vec![0; self.options.chunk_size.max(1)]),
            done: Cell::new(false),
        };
        if let Err(e) = request.register_producer(sender, false) {
            tracing::error!("cannot stream {}: {e}", path.display());
        }
        Render::Later
    }

    /// Whether `If-Range` (if any) lets the `Range` apply: a strong ETag that matches, or
    /// the exact `Last-Modified` date.
    fn if_range_holds(&self, request: &Request, etag: &str, modified: SystemTime) -> bool {
        match request.header(header::IF_RANGE) {
            None => true,
            Some(v) if v.starts_with('"') => v == etag,
            Some(v) if v.starts_with("W/") => false,
            Some(v) => parse_http_date(v) == Some(whole_seconds(modified)),
        }
    }
}

/// Part of a response body: bytes in memory, or a stretch of the file.
enum Piece {
    Bytes(Bytes),
    File { offset: u64, len: u64 },
}

/// A pull producer that writes the pieces of a file response a chunk at a time.
struct FileSender {
    request: Request,
    file: File,
    pieces: RefCell<VecDeque<Piece>>,
    buf: RefCell<Vec<u8>>,
    done: Cell<bool>,
}

impl Producer for FileSender {
    fn pause_producing(&self) {}

    fn resume_producing(&self) {
        if self.done.get() {
            return;
        }
        let next = {
            let mut pieces = self.pieces.borrow_mut();
            match pieces.front_mut() {
                None => None,
                Some(Piece::Bytes(_)) => pieces.pop_front(),
                Some(Piece::File { offset, len }) => {
                    let mut buf = self.buf.borrow_mut();
                    let want = (*len).min(buf.len() as u64) as usize;
                    match self.file.read_at(&mut buf[..want], *offset) {
                        Ok(0) | Err(_) => {
                            // The file shrank or failed under us: the announced length can
                            // no longer be met, so the connection must close.
                            tracing::error!("file changed while being sent; aborting");
                            self.done.set(true);
                            drop(buf);
                            drop(pieces);
                            self.request.unregister_producer();
                            self.request.abort();
                            return;
                        }
                        Ok(n) => {
                            *offset += n as u64;
                            *len -= n as u64;
                            if *len == 0 {
                                pieces.pop_front();
                            }
                            drop(pieces);
                            self.request.write(&buf[..n]);
                            return;
                        }
                    }
                }
            }
        };
        match next {
            Some(Piece::Bytes(bytes)) => self.request.write(&bytes),
            Some(Piece::File { .. }) => unreachable!("file pieces are read in place"),
            None => {
                self.done.set(true);
                self.request.finish();
            }
        }
    }

    fn stop_producing(&self) {
        self.done.set(true);
    }
}

/// Reads all pieces into one buffer (small responses).
fn read_pieces(file: &File, pieces: &VecDeque<Piece>, length: u64) -> io::Result<Bytes> {
    let mut body = Vec::with_capacity(length as usize);
    for piece in pieces {
        match piece {
            Piece::Bytes(b) => body.extend_from_slice(b),
            Piece::File { offset, len } => {
                let start = body.len();
                body.resize(start + *len as usize, 0);
                file.read_exact_at(&mut body[start..], *offset)?;
            }
        }
    }
    Ok(Bytes::from(body))
}

/// The answer the request's preconditions call for instead of the file, if any: RFC 9110
/// §13.2.2's order. `If-Match` (strong comparison) else `If-Unmodified-Since` can fail
/// with 412; then `If-None-Match` (weak comparison) else `If-Modified-Since` answer a
/// `GET` or `HEAD` whose copy is current with 304 (another method with 412). A date that
/// does not parse is ignored, as §13.1.3–4 say.
fn preconditions(request: &Request, etag: &str, modified: SystemTime) -> Option<StatusCode> {
    let modified = whole_seconds(modified);
    let date = |name| request.header(name).and_then(parse_http_date);
    match request.header(header::IF_MATCH) {
        Some(list) if !etag_matches(list, etag, true) => {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
        Some(_) => {}
        None => {
            if date(header::IF_UNMODIFIED_SINCE).is_some_and(|since| modified > since) {
                return Some(StatusCode::PRECONDITION_FAILED);
            }
        }
    }
    let safe = request.method() == Method::GET || request.method() == Method::HEAD;
    let current = match request.header(header::IF_NONE_MATCH) {
        Some(list) => etag_matches(list, etag, false),
        None => safe && date(header::IF_MODIFIED_SINCE).is_some_and(|since| modified <= since),
    };
    match (current, safe) {
        (false, _) => None,
        (true, true) => Some(StatusCode::NOT_MODIFIED),
        (true, false) => Some(StatusCode::PRECONDITION_FAILED),
    }
}

/// Whether a field value that is `*` or a list of entity tags matches `etag`, comparing
/// strongly (both strong and equal) or weakly (equal once `W/` is set aside), RFC 9110
/// §8.8.3.2. A malformed list matches nothing.
fn etag_matches(list: &str, etag: &str, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let (etag_weak, etag) = match etag.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, etag),
    };
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with("W/");
        if weak {
            rest = &rest[2..];
        }
        // An opaque tag is a quoted string with no quote inside (commas allowed).
        let Some(body) = rest.strip_prefix('"') else {
            return false;
        };
        let Some(end) = body.find('"') else {
            return false;
        };
        let tag = &rest[..end + 2];
        rest = &body[end + 1..];
        if tag == etag && !(strong && (weak || etag_weak)) {
            return true;
        }
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// A multipart boundary that cannot occur in the parts' headers and is unlikely in the
/// data: derived from the ETag and the time.
fn boundary(etag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in etag.bytes().chain(nanos.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("twistor-{h:016x}")
}

fn not_found(request: &Request) -> Render {
    error_page(request, StatusCode::NOT_FOUND, "No such file or directory.")
}

fn io_error(request: &Request, err: &io::Error) -> Render {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => not_found(request),
        io::ErrorKind::PermissionDenied => {
            error_page(request, StatusCode::FORBIDDEN, "Permission denied.")
        }
        _ => {
            tracing::error!("serving {}: {err}", request.path());
            error_page(
                request,
                StatusCode::INTERNAL_SERVER_ERROR,
                "The file could not be read.",
            )
        }
    }
}
