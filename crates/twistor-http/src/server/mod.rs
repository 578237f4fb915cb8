//! The HTTP server: a [`Site`] serves a tree of [`Resource`]s over HTTP/1.1 (Twisted's
//! `twisted.web.server`).
//!
//! The site is the [`Factory`]: give it to `listen_tcp` or to a server
//! endpoint, and each connection gets a protocol that drives the sans-IO
//! [`ServerConnection`](crate::proto::ServerConnection). For each request the site walks
//! the resource tree ([`Resource::child`]), then renders the resource it found with a
//! [`Request`] handle, through which the resource sets the status and headers, streams the
//! body out (`write`, `finish`, or a registered producer), and reads the request body as
//! it arrives ([`Request::deliver_body`], [`Request::read_body`]).
//!
//! ```no_run
//! use std::rc::Rc;
//! use twistor::Reactor;
//! use twistor_http::server::{Site, handler};
//!
//! let reactor = Reactor::new()?;
//! let site = Site::new(reactor.clone(), handler(|req| {
//!     req.set_header("content-type", "text/plain");
//!     "Hello, world!\n".into()
//! }));
//! reactor.listen_tcp(8080, Rc::new(site))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What the connection does for you
//!
//! Keep-alive and pipelining (responses strictly in request order: the next request is
//! not even parsed until the previous response is finished), chunked bodies both ways,
//! `Expect: 100-continue` (the `100` goes out when the resource asks for the body),
//! `HEAD` (the body is dropped, its length kept), `Date` and `Server` fields, the limits
//! of [`Limits`] with their 4xx answers, and three timers on the
//! reactor's clock: an idle timeout between requests, a deadline for the whole request
//! head (a slow-loris defence: trickling bytes does not extend it), and an inactivity
//! timeout while the body arrives. A timed-out request gets 408.
//!
//! Output is bounded too: while more than the transport's high-water mark of response
//! bytes is unsent, the next pipelined request waits, and a client that reads nothing for
//! [`ServerOptions::send_timeout`] is dropped. After an error response the connection
//! closes through a *lingering close* (RFC 9112 §9.6): our side is shut, and what the
//! client still sends is read and dropped for a bounded time, so the client reads the
//! error rather than a reset. [`Site::drain`] winds the connections down for a graceful
//! shutdown.

mod channel;
mod connections;
mod guard;
mod log;
mod request;
mod resource;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use twistor::defer::Deferred;
use twistor::protocol::{Factory, Protocol};
use twistor::{Address, ReactorTime};

pub use guard::BasicAuth;
pub use log::{AccessLog, AccessLogEntry, combined_log_line};
pub use request::{BodyProducer, Request};
pub use resource::{
    Methods, NotFound, Render, Resource, Tree, error_page, escape_html, handler, method_not_allowed,
};

use crate::proto::{DefaultFields, Limits, SERVER, http_date};

/// Tuning for a [`Site`]. The defaults suit a public server.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Bounds on requests; see [`Limits`].
    pub limits: Limits,
    /// How long a keep-alive connection may sit between requests (default 60 s).
    pub idle_timeout: Duration,
    /// How long a client has to send a whole request head, from its first byte (default
    /// 30 s). Beyond it: 408.
    pub header_timeout: Duration,
    /// How long a request body may go without a byte arriving (default 60 s). Beyond it:
    /// 408 if no response has started, else the connection is closed.
    pub body_timeout: Duration,
    /// How long a client may leave response bytes unread before it is dropped (default
    /// 60 s, as nginx's `send_timeout`): measured from the last time it was seen reading,
    /// so a slow reader that keeps reading is served. While more than the transport's
    /// high-water mark is unsent, the next pipelined request is not even started, so a
    /// client that never reads holds about one response plus that mark.
    pub send_timeout: Duration,
    /// After an error response to a client that may still be sending (400, 408, 413,
    /// 431…), the connection half-closes and reads and drops the client's input for at
    /// most this long before closing (default 30 s; RFC 9112 §9.6, nginx's
    /// `lingering_time`), so the client reads the error instead of a reset.
    pub lingering_time: Duration,
    /// Lingering also ends when the client sends nothing for this long (default 5 s;
    /// nginx's `lingering_timeout`).
    pub lingering_timeout: Duration,
    /// The `Server` field sent with every response; `None` sends none. Default
    /// `twistor/<version>`.
    pub server_header: Option<HeaderValue>,
    /// Where each finished request is logged; see [`AccessLog`]. Default: nowhere.
    pub access_log: Option<Rc<dyn AccessLog>>,
    /// Whether connections count as TLS for [`Request::is_secure`] even when the
    /// transport is not twistor's TLS (e.g. TLS ended by a proxy in front). Connections
    /// over twistor's TLS are seen as secure anyway.
    pub secure: bool,
    /// The wall clock, for `Date` and the access log (default `SystemTime::now`).
    pub wall_clock: fn() -> SystemTime,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            server_header: Some(HeaderValue::from_static(SERVER)),
            access_log: None,
            secure: false,
            wall_clock: SystemTime::now,
        }
    }
}

/// A web site: the factory that serves a resource tree over HTTP/1.1 (Twisted's
/// `server.Site`). Cheap to clone; clones share the tree and options.
#[derive(Clone)]
pub struct Site {
    inner: Rc<SiteInner>,
}

pub(crate) struct SiteInner {
    root: Rc<dyn Resource>,
    time: Rc<dyn ReactorTime>,
    options: ServerOptions,
    defaults: RefCell<DefaultFieldCache>,
    connections: connections::Connections,
}

/// The `Server` and `Date` fields every response gets, formatted once a second.
///
/// The wall clock is read only when the reactor's clock says its second may be over: a
/// busy server reads one clock per request, not two. A wall clock stepped meanwhile shows
/// in `Date` at the latest a second later.
pub(crate) struct DefaultFieldCache {
    /// Reactor time (seconds) until which `date` is right.
    valid_until: f64,
    /// The wall-clock second `date` shows.
    secs: Option<u64>,
    date: Vec<u8>,
    /// `server: …\r\ndate: …\r\n`.
    both: Vec<u8>,
}

impl Default for DefaultFieldCache {
    fn default() -> DefaultFieldCache {
        DefaultFieldCache {
            valid_until: f64::NEG_INFINITY,
            secs: None,
            date: Vec::new(),
            both: Vec::new(),
        }
    }
}

impl DefaultFieldCache {
    /// The fields for a response sent at reactor time `now` (seconds) by a server that
    /// calls itself `server`; `wall_clock` is read if the cached second may be over.
    pub(crate) fn fields<'a>(
        &'a mut self,
        server: Option<&'a HeaderValue>,
        now: f64,
        wall_clock: fn() -> SystemTime,
    ) -> DefaultFields<'a> {
        if now >= self.valid_until {
            let wall = wall_clock();
            let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
            let secs = since.as_secs();
            // Right until the wall clock's next second begins.
            self.valid_until = now + (1.0 - f64::from(since.subsec_nanos()) / 1e9);
            if self.secs != Some(secs) {
                self.secs = Some(secs);
                self.date = http_date(wall).into_bytes();
                self.both.clear();
                if let Some(server) = server {
                    self.both.extend_from_slice(b"server: ");
                    self.both.extend_from_slice(server.as_bytes());
                    self.both.extend_from_slice(b"\r\n");
                }
                self.both.extend_from_slice(b"date: ");
                self.both.extend_from_slice(&self.date);
                self.both.extend_from_slice(b"\r\n");
            }
        }
        DefaultFields {
            server: server.map(HeaderValue::as_bytes),
            date: Some(&self.date),
            both: Some(&self.both),
        }
    }
}

impl Site {
    /// A site serving `root`, with timers on `time` (the reactor, or a test clock) and the
    /// default options.
    pub fn new(time: impl ReactorTime + 'static, root: Rc<dyn Resource>) -> Site {
        Site::with_options(time, root, ServerOptions::default())
    }

    /// A site with the given options.
    pub fn with_options(
        time: impl ReactorTime + 'static,
        root: Rc<dyn Resource>,
        options: ServerOptions,
    ) -> Site {
        Site {
            inner: Rc::new(SiteInner {
                root,
                time: Rc::new(time),
                options,
                defaults: RefCell::new(DefaultFieldCache::default()),
                connections: connections::Connections::default(),
            }),
        }
    }

    /// The root resource.
    pub fn root(&self) -> &Rc<dyn Resource> {
        &self.inner.root
    }

    /// The options it was made with.
    pub fn options(&self) -> &ServerOptions {
        &self.inner.options
    }

    /// Drains the site for a graceful shutdown: from now on idle keep-alive connections
    /// close at once, a response in flight is finished (with `Connection: close` if its
    /// head has not gone yet) and its connection then closes, and no further pipelined
    /// request is started; a connection made later is closed at once. The Deferred fires
    /// when every connection of the site is gone (at once if there are none).
    ///
    /// Closing the listeners is the caller's part; so is a deadline, after which it may
    /// stop the reactor, which cuts what is left.
    pub fn drain(&self) -> Deferred<()> {
        self.inner.connections.drain()
    }

    /// How many connections the site has now.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.count()
    }

    /// Whether [`drain`](Site::drain) was called.
    pub fn draining(&self) -> bool {
        self.inner.connections.draining()
    }

    /// The protocol for one connection from `peer`: what `build_protocol` returns, for
    /// driving a connection by hand (tests, or a transport of your own).
    pub fn connection(&self, peer: &Address) -> Box<dyn Protocol> {
        Box::new(channel::HttpChannel::new(self.inner.clone(), peer.clone()))
    }
}

impl Factory for Site {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(self.connection(addr))
    }

    fn log_prefix(&self) -> &str {
        "Site"
    }
}

/// Percent-decodes a whole path (for display).
pub(crate) fn percent_decode_path(path: &str) -> Vec<u8> {
    percent_decode(path).into_owned()
}

/// Percent-decodes one path segment. Invalid escapes are kept as they are.
pub(crate) fn percent_decode(segment: &str) -> std::borrow::Cow<'_, [u8]> {
    let bytes = segment.as_bytes();
    if !bytes.contains(&b'%') {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_segments() {
        assert_eq!(&*percent_decode("plain"), b"plain");
        assert_eq!(&*percent_decode("%2e%2E"), b"..");
        assert_eq!(&*percent_decode("a%2fb"), b"a/b");
        assert_eq!(&*percent_decode("bad%zz%4"), b"bad%zz%4");
        assert_eq!(&*percent_decode("%00"), b"\0");
        assert_eq!(&*percent_decode("%e2%82%ac"), "€".as_bytes());
    }
}
