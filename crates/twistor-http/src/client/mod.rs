//! The HTTP client: an [`Agent`] that sends requests over a pool of keep-alive
//! connections and gives back each response as its head arrives, with a body that
//! streams (Twisted's `twisted.web.client.Agent`, `HTTPConnectionPool`,
//! `RedirectAgent`, `ContentDecoderAgent` and `readBody` in one).
//!
//! ```no_run
//! use twistor::Reactor;
//! use twistor::defer::Failure;
//! use twistor_http::client::Agent;
//!
//! let reactor = Reactor::new()?;
//! let agent = Agent::new(&reactor);
//! // Runs the reactor until the block is done, whether it succeeds or fails.
//! let body = reactor.run_until(async move {
//!     let response = agent.get("http://example.com/").await?;
//!     println!("{}", response.status());
//!     response.read_body().await
//! })??;
//! println!("{} bytes", body.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The pool
//!
//! Connections are kept per scheme, host and port. A request takes an idle connection if
//! there is one, else opens a new one while fewer than
//! [`AgentOptions::max_connections_per_host`] are open, else waits in line for the next
//! one freed. A connection goes back to the pool once its response body has been read to
//! the end (so read or drop every body), and is closed after
//! [`AgentOptions::idle_timeout`] unused. A request that fails on a reused connection
//! before any byte of the response came back (the server closed it while idle) is
//! retried once on a new connection, if its method is idempotent.

mod connection;
mod gzip;
mod pool;

use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use twistor::defer::{Deferred, Failure};
use twistor::tls::TrustRoots;
use twistor::{Producer, Reactor, Transport};

pub use connection::{BodyFlow, ResponseBody};

use crate::Error;
use crate::body::{self, BodyReceiver};
use crate::proto::{Limits, ResponseHead};
use connection::Conn;
use pool::{Pool, PoolKey};

/// Tuning for an [`Agent`].
#[derive(Clone)]
#[non_exhaustive]
pub struct AgentOptions {
    /// Connections open at once to one server (default 6); more requests wait in line.
    pub max_connections_per_host: usize,
    /// Idle keep-alive connections kept per server (default 6).
    pub max_idle_per_host: usize,
    /// How long an idle connection is kept (default 240 s, as Twisted's pool).
    pub idle_timeout: Duration,
    /// Give up connecting after this long (default 30 s).
    pub connect_timeout: Option<Duration>,
    /// Fail a request when the server goes this long without sending anything while a
    /// response (head or body) is awaited (default 60 s; `None` waits for ever).
    pub timeout: Option<Duration>,
    /// Redirects followed before giving up with [`Error::TooManyRedirects`] (default 10;
    /// 0 returns redirect responses as they are).
    pub max_redirects: u32,
    /// Ask for gzip (`Accept-Encoding: gzip`) and decode gzip bodies (default true).
    pub decompress: bool,
    /// Bounds on what servers may send.
    pub limits: Limits,
    /// The largest body [`Response::read_body`] gathers (default 64 MiB).
    pub max_read_body: u64,
    /// The `User-Agent` sent unless the request has one.
    pub user_agent: Option<HeaderValue>,
    /// The certificate authorities `https` servers are checked against (default: the
    /// system's). Host names are always checked too.
    pub tls_roots: Option<TrustRoots>,
    /// Accept any certificate from `https` servers: no verification at all. For tests
    /// against servers with throwaway certificates only.
    pub dangerous_accept_any_certificate: bool,
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("max_connections_per_host", &self.max_connections_per_host)
            .field("max_idle_per_host", &self.max_idle_per_host)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_redirects", &self.max_redirects)
            .field("decompress", &self.decompress)
            .field("max_read_body", &self.max_read_body)
            .field("custom_tls_roots", &self.tls_roots.is_some())
            .field(
                "dangerous_accept_any_certificate",
                &self.dangerous_accept_any_certificate,
            )
            .finish_non_exhaustive()
    }
}

impl Default for AgentOptions {
    fn default() -> AgentOptions {
        AgentOptions {
            max_connections_per_host: 6,
            max_idle_per_host: 6,
            idle_timeout: Duration::from_secs(240),
            connect_timeout: Some(Duration::from_secs(30)),
            timeout: Some(Duration::from_secs(60)),
            max_redirects: 10,
            decompress: true,
            limits: Limits::default(),
            max_read_body: 64 << 20,
            user_agent: Some(HeaderValue::from_static(crate::proto::SERVER)),
            tls_roots: None,
            dangerous_accept_any_certificate: false,
        }
    }
}

/// A request body.
pub enum Body {
    /// No body.
    Empty,
    /// These bytes (sent with `Content-Length`). Can be sent again after a redirect.
    Bytes(Bytes),
    /// A body written as the request goes; see [`Body::stream`].
    Stream(StreamBody),
}

/// A streamed request body; see [`Body::stream`].
pub struct StreamBody {
    length: Option<u64>,
    start: Box<dyn FnOnce(BodyWriter)>,
}

impl Body {
    /// A body written by `start` once the request head is on its way: it gets a
    /// [`BodyWriter`] to `write` with and `finish`. With `length`, it is sent with
    /// `Content-Length` (and must be exactly that long); without, chunked. Such a body
    /// cannot be sent again, so 307/308 redirects are not followed for it.
    pub fn stream(length: Option<u64>, start: impl FnOnce(BodyWriter) + 'static) -> Body {
        Body::Stream(StreamBody {
            length,
            start: Box::new(start),
        })
    }

    fn replay(&self) -> Option<Body> {
        match self {
            Body::Empty => Some(Body::Empty),
            Body::Bytes(b) => Some(Body::Bytes(b.clone())),
            Body::Stream(_) => None,
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::Bytes(b)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::Bytes(Bytes::from(s))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::Bytes(Bytes::from(v))
    }
}

/// Writes a streamed request body; see [`Body::stream`].
pub struct BodyWriter {
    conn: Weak<Conn>,
    generation: u64,
    transport: Transport,
}

impl BodyWriter {
    /// Sends a piece of the body.
    pub fn write(&self, data: &[u8]) {
        if let Some(conn) = self.conn.upgrade() {
            conn.write_body(self.generation, data);
        }
    }

    /// Ends the body.
    pub fn finish(&self) {
        if let Some(conn) = self.conn.upgrade() {
            conn.finish_body(self.generation);
        }
    }

    /// Gives up on the body: the request fails and the connection closes.
    pub fn fail(&self, why: &str) {
        if let Some(conn) = self.conn.upgrade() {
            conn.fail_body(self.generation, why.to_owned());
        }
    }

    /// Registers the source of the body with the connection, so it is paused while the
    /// connection's send buffer is full (see `Transport::register_producer`).
    pub fn register_producer(
        &self,
        producer: impl Producer + 'static,
        streaming: bool,
    ) -> Result<(), twistor::Error> {
        self.transport.register_producer(producer, streaming)
    }

    /// Forgets the registered producer.
    pub fn unregister_producer(&self) {
        self.transport.unregister_producer();
    }

    /// Bytes written but not yet sent.
    pub fn buffered(&self) -> usize {
        self.transport.buffered()
    }
}

/// A response: status and headers now, the body as it streams (Twisted's `IResponse`).
pub struct Response {
    head: ResponseHead,
    url: Uri,
    body: ResponseBody,
    decode_gzip: bool,
    max_read_body: u64,
}

impl Response {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The version the server spoke.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The reason phrase as sent.
    pub fn reason(&self) -> &str {
        &self.head.reason
    }

    /// The header fields. A gzip body being decoded has lost its `Content-Encoding` and
    /// `Content-Length` here.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// A header field's value, if present and text.
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.head.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The URL this response came from (after redirects).
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// Pauses and resumes the body's delivery.
    pub fn body_flow(&self) -> BodyFlow {
        self.body.producer()
    }

    /// Streams the body to `receiver` (decoded, if it was gzip).
    pub fn deliver_body(self, receiver: impl BodyReceiver) {
        let receiver: Box<dyn BodyReceiver> = if self.decode_gzip {
            Box::new(gzip::GzipReceiver::new(Box::new(receiver)))
        } else {
            Box::new(receiver)
        };
        self.body.deliver_boxed(receiver);
    }

    /// Gathers the whole body (Twisted's `readBody`), up to
    /// [`AgentOptions::max_read_body`] bytes.
    pub fn read_body(self) -> Deferred<Bytes> {
        let (collector, body) = body::collect(self.max_read_body);
        self.deliver_body(collector);
        body
    }

    /// Drops the body but keeps the connection for reuse: it is read and thrown away.
    pub fn discard_body(self) {
        self.deliver_body(body::from_fn(|_| {}, |_| {}));
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.head.status)
            .field("url", &self.url)
            .field("headers", &self.head.headers)
            .finish()
    }
}

/// Sends requests and follows redirects over a pool of connections. Cheap to clone;
/// clones share the pool.
#[derive(Clone)]
pub struct Agent {
    pool: Rc<Pool>,
}

impl Agent {
    /// An agent with the default options.
    pub fn new(reactor: &Reactor) -> Agent {
        Agent::with_options(reactor, AgentOptions::default())
    }

    /// An agent with `options`.
    pub fn with_options(reactor: &Reactor, options: AgentOptions) -> Agent {
        Agent {
            pool: Pool::new(reactor.clone(), options),
        }
    }

    /// The options it was made with.
    pub fn options(&self) -> &AgentOptions {
        self.pool.options()
    }

    /// `GET url`.
    pub fn get(&self, url: &str) -> Deferred<Response> {
        self.request(Method::GET, url, HeaderMap::new(), Body::Empty)
    }

    /// Sends a request; the Deferred fires with the response once its head has arrived
    /// (after following redirects), or fails with an [`Error`] inside the
    /// [`Failure`]. Cancelling it abandons the request.
    pub fn request(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Deferred<Response> {
        let url = match parse_url(url) {
            Ok(u) => u,
            Err(e) => return Deferred::failed(Failure::new(e)),
        };
        self.attempt(method, url, headers, body, 0)
    }

    /// Requests waiting for a connection to `url`'s server (for tests and monitoring).
    pub fn waiting(&self, url: &str) -> usize {
        parse_url(url).map_or(0, |u| self.pool.waiting(&key_for(&u)))
    }

    /// Idle connections kept to `url`'s server.
    pub fn idle_connections(&self, url: &str) -> usize {
        parse_url(url).map_or(0, |u| self.pool.idle(&key_for(&u)))
    }

    /// Closes all idle connections.
    pub fn close_idle(&self) {
        self.pool.close_idle();
    }

    fn attempt(
        &self,
        method: Method,
        url: Uri,
        headers: HeaderMap,
        body: Body,
        redirects: u32,
    ) -> Deferred<Response> {
        let agent = self.clone();
        let key = key_for(&url);
        let replay = body.replay();
        let replay_on_redirect = body.replay();
        let retry = replay.is_some() && Conn::method_is_idempotent(&method);
        let request = match self.build_request(&method, &url, headers.clone()) {
            Ok(r) => r,
            Err(e) => return Deferred::failed(Failure::new(e)),
        };
        let first = self.pool.acquire(&key);
        let (m, u, h) = (method.clone(), url.clone(), headers.clone());
        let sent = first.and_then_deferred(move |conn: Rc<Conn>| {
            let reused = conn.st.borrow().served > 0;
            let d = conn.request(request, body);
            let agent2 = agent.clone();
            // A reused connection the server had closed fails before any byte came
            // back: try once more on a fresh one.
            d.then(move |result| Ok((result, reused && !conn.st.borrow().got_bytes)))
                .and_then_deferred(move |(result, stale)| match result {
                    Err(f) if stale && retry && is_connection_loss(&f) => {
                        tracing::debug!("retrying {m} {u} on a new connection");
                        let body = replay.unwrap_or(Body::Empty);
                        let request = match agent2.build_request(&m, &u, h) {
                            Ok(r) => r,
                            Err(e) => return Deferred::failed(Failure::new(e)),
                        };
                        agent2
                            .pool
                            .acquire(&key_for(&u))
                            .and_then_deferred(move |conn: Rc<Conn>| conn.request(request, body))
                    }
                    other => Deferred::resolved(other),
                })
        });
        let agent = self.clone();
        sent.and_then_deferred(move |(head, body)| {
            let sent = Sent {
                method,
                url,
                headers,
                replay: replay_on_redirect,
                redirects,
            };
            agent.handle_response(sent, head, body)
        })
    }

    fn handle_response(
        &self,
        sent: Sent,
        mut head: ResponseHead,
        body: ResponseBody,
    ) -> Deferred<Response> {
        let Sent {
            method,
            url,
            headers,
            replay,
            redirects,
        } = sent;
        let options = self.pool.options();
        let status = head.status;
        let redirect =
            matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) && options.max_redirects > 0;
        if redirect && let Some(location) = head.headers.get(header::LOCATION) {
            if redirects >= options.max_redirects {
                drop(body);
                return Deferred::failed(Failure::new(Error::TooManyRedirects(redirects)));
            }
            let next = match location
                .to_str()
                .map_err(|_| Error::InvalidUrl("Location is not text".into()))
                .and_then(|l| resolve(&url, l))
            {
                Ok(next) => next,
                Err(e) => return Deferred::failed(Failure::new(e)),
            };
            // 303, and 301/302 after a POST, become GET (what browsers do; RFC 9110
            // §15.4.2-4); 307 and 308 keep the method and body, which only a body that
            // can be sent again allows.
            let to_get = status == StatusCode::SEE_OTHER
                || (matches!(status.as_u16(), 301 | 302) && method == Method::POST);
            let (next_method, body_again) = if to_get {
                let m = if method == Method::HEAD {
                    Method::HEAD
                } else {
                    Method::GET
                };
                (m, Some(Body::Empty))
            } else {
                (method.clone(), replay)
            };
            if let Some(next_body) = body_again {
                // The redirect's own body is read and dropped, so the connection is reused.
                discard(body);
                let mut headers = headers;
                if to_get {
                    headers.remove(header::CONTENT_TYPE);
                    headers.remove(header::CONTENT_LENGTH);
                }
                if key_for(&next) != key_for(&url) {
                    // Credentials are for the server they were meant for.
                    headers.remove(header::AUTHORIZATION);
                    headers.remove(header::COOKIE);
                    headers.remove(header::PROXY_AUTHORIZATION);
                }
                return self.attempt(next_method, next, headers, next_body, redirects + 1);
            }
        }
        let decode_gzip = options.decompress
            && method != Method::HEAD
            && head
                .headers
                .get(header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        if decode_gzip {
            head.headers.remove(header::CONTENT_ENCODING);
            head.headers.remove(header::CONTENT_LENGTH);
        }
        Deferred::succeeded(Response {
            head,
            url,
            body,
            decode_gzip,
            max_read_body: options.max_read_body,
        })
    }

    fn build_request(
        &self,
        method: &Method,
        url: &Uri,
        headers: HeaderMap,
    ) -> Result<http::Request<()>, Error> {
        let options = self.pool.options();
        let mut request = http::Request::new(());
        *request.method_mut() = method.clone();
        let scheme = if url.scheme_str() == Some("https") {
            "https"
        } else {
            "http"
        };
        // Origin-form target, with the Host from the URL (the core writes it).
        let target = url.path_and_query().map_or("/", |p| p.as_str());
        let authority = url
            .authority()
            .ok_or_else(|| Error::InvalidUrl("no host".into()))?;
        let host_value = host_header(url, authority.as_str());
        *request.uri_mut() = Uri::builder()
            .scheme(scheme)
            .authority(authority.as_str())
            .path_and_query(target)
            .build()
            .map_err(|e| Error::InvalidUrl(e.to_string()))?;
        let mut headers = headers;
        if !headers.contains_key(header::HOST) {
            headers.insert(
                header::HOST,
                HeaderValue::from_str(&host_value)
                    .map_err(|_| Error::InvalidUrl("bad host".into()))?,
            );
        }
        if options.decompress && !headers.contains_key(header::ACCEPT_ENCODING) {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if let Some(ua) = &options.user_agent
            && !headers.contains_key(header::USER_AGENT)
        {
            headers.insert(header::USER_AGENT, ua.clone());
        }
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
        *request.headers_mut() = headers;
        Ok(request)
    }
}

/// What was sent, for deciding about a redirect.
struct Sent {
    method: Method,
    url: Uri,
    headers: HeaderMap,
    /// The body again, if it can be sent again.
    replay: Option<Body>,
    redirects: u32,
}

fn discard(body: ResponseBody) {
    body.deliver(body::from_fn(|_| {}, |_| {}));
}

fn is_connection_loss(f: &Failure) -> bool {
    matches!(
        f.find::<Error>(),
        Some(Error::ConnectionLost(_) | Error::UnexpectedEof | Error::Closed)
    )
}

/// Parses an absolute `http` or `https` URL.
fn parse_url(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::InvalidUrl(format!("{url:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(Error::InvalidUrl(format!("{url:?}: not an http(s) URL"))),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(Error::InvalidUrl(format!("{url:?}: no host")));
    }
    Ok(uri)
}

/// Resolves a `Location` against the URL it came from (RFC 3986 §5, for the forms
/// servers send: absolute, scheme-relative, absolute-path and relative-path).
fn resolve(base: &Uri, location: &str) -> Result<Uri, Error> {
    let location = location.trim();
    if location.contains("://") {
        return parse_url(location);
    }
    let scheme = base.scheme_str().unwrap_or("http");
    if let Some(rest) = location.strip_prefix("//") {
        return parse_url(&format!("{scheme}://{rest}"));
    }
    let authority = base
        .authority()
        .map(|a| a.as_str())
        .ok_or_else(|| Error::InvalidUrl("no base".into()))?;
    let path = if location.starts_with('/') {
        location.to_owned()
    } else if location.starts_with('?') {
        format!("{}{location}", base.path())
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    parse_url(&format!("{scheme}://{authority}{}", remove_dots(&path)))
}

/// Removes `.` and `..` segments from a path (RFC 3986 §5.2.4).
fn remove_dots(path: &str) -> String {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i == segments.len() - 1;
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut joined = out.join("/");
    if !joined.starts_with('/') {
        joined.insert(0, '/');
    }
    if let Some(q) = query {
        joined.push('?');
        joined.push_str(q);
    }
    joined
}

fn key_for(url: &Uri) -> PoolKey {
    let secure = url.scheme_str() == Some("https");
    let host = url
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = url.port_u16().unwrap_or(if secure { 443 } else { 80 });
    PoolKey { secure, host, port }
}

/// The `Host` value: the authority without userinfo, and without a default port.
fn host_header(url: &Uri, authority: &str) -> String {
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let default = if url.scheme_str() == Some("https") {
        ":443"
    } else {
        ":80"
    };
    host.strip_suffix(default).unwrap_or(host).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve() {
        let base: Uri = "http://a.example:8080/x/y/z?q=1".parse().unwrap();
        let r = |l| resolve(&base, l).unwrap().to_string();
        assert_eq!(r("http://b/"), "http://b/");
        assert_eq!(r("//c.example/p"), "http://c.example/p");
        assert_eq!(r("/abs"), "http://a.example:8080/abs");
        assert_eq!(r("rel"), "http://a.example:8080/x/y/rel");
        assert_eq!(r("../up?z=2"), "http://a.example:8080/x/up?z=2");
        assert_eq!(r("../../../../top"), "http://a.example:8080/top");
        assert_eq!(r("?only"), "http://a.example:8080/x/y/z?only");
        assert!(resolve(&base, "ftp://x/").is_err());
    }

    #[test]
    fn keys_and_hosts() {
        let u: Uri = "http://user@Example.COM:80/".parse().unwrap();
        assert_eq!(
            key_for(&u),
            PoolKey {
                secure: false,
                host: "example.com".into(),
                port: 80
            }
        );
        assert_eq!(
            host_header(&u, u.authority().unwrap().as_str()),
            "Example.COM"
        );
        let v: Uri = "http://[::1]:8000/".parse().unwrap();
        assert_eq!(key_for(&v).host, "::1");
        assert!(parse_url("mailto:x@y").is_err());
        assert!(parse_url("http:///nohost").is_err());
    }
}
