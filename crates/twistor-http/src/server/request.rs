//! The [`Request`] handle a resource renders with: the request's head, its body as it
//! arrives, and the response being written.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};
use twistor::defer::{Deferred, Failure};
use twistor::{Address, Producer};

use super::channel::Channel;
use super::percent_decode;
use crate::Error;
use crate::body::{self, BodyReceiver};
use crate::error::Lost;
use crate::proto::{Framing, RequestHead};

/// One request, and the response to it (Twisted's `twisted.web.server.Request`).
///
/// A cheap handle (`Rc` inside): keep a clone to answer later, from a timer or a
/// Deferred's callback. Set the status and headers first, then send the body with
/// [`write`](Request::write) and end it with [`finish`](Request::finish); the response
/// head goes out with the first write. Without [`set_content_length`] the body is sent
/// chunked (or, to an HTTP/1.0 client, delimited by closing the connection).
///
/// Once the client has gone ([`lost`](Request::lost)), writes are ignored; use
/// [`notify_finish`](Request::notify_finish) to hear about it.
///
/// [`set_content_length`]: Request::set_content_length
#[derive(Clone)]
pub struct Request {
    pub(super) inner: Rc<RequestInner>,
}

pub(crate) struct RequestInner {
    pub(super) head: RequestHead,
    pub(super) peer: Address,
    pub(super) secure: bool,
    pub(super) received: SystemTime,
    /// Byte offset in the path where the postpath starts (past `len` when it is empty).
    pub(super) postpath_at: Cell<usize>,
    pub(super) resp: RefCell<ResponseState>,
    pub(super) channel: Weak<Channel>,
}

/// A response's header fields as they are set: a plain list while they are only set and
/// then written (the usual case, and cheaper than hashing each into a map), a `HeaderMap`
/// once someone asks to read or edit them as one.
#[derive(Debug)]
pub(crate) enum ResponseFields {
    /// In the order set; `insert` has removed earlier fields of the same name.
    List(Vec<(HeaderName, HeaderValue)>),
    /// As a map.
    Map(HeaderMap),
}

impl Default for ResponseFields {
    fn default() -> ResponseFields {
        ResponseFields::List(Vec::new())
    }
}

impl ResponseFields {
    /// Sets `name` to `value`, replacing what it had.
    pub(crate) fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        match self {
            ResponseFields::List(list) => {
                if list.iter().any(|(n, _)| *n == name) {
                    list.retain(|(n, _)| *n != name);
                }
                list.push((name, value));
            }
            ResponseFields::Map(map) => {
                map.insert(name, value);
            }
        }
    }

    /// Adds a value to `name`, keeping those it had.
    pub(crate) fn append(&mut self, name: HeaderName, value: HeaderValue) {
        match self {
            ResponseFields::List(list) => list.push((name, value)),
            ResponseFields::Map(map) => {
                map.append(name, value);
            }
        }
    }

    /// The fields as a map (made into one from here on).
    pub(crate) fn map(&mut self) -> &mut HeaderMap {
        if let ResponseFields::List(list) = self {
            let mut map = HeaderMap::with_capacity(list.len());
            for (name, value) in list.drain(..) {
                map.append(name, value);
            }
            *self = ResponseFields::Map(map);
        }
        match self {
            ResponseFields::Map(map) => map,
            ResponseFields::List(_) => unreachable!("made a map just above"),
        }
    }

    /// Emptied, keeping a list's memory for the next response.
    pub(crate) fn recycled(self) -> ResponseFields {
        match self {
            ResponseFields::List(mut list) => {
                list.clear();
                ResponseFields::List(list)
            }
            ResponseFields::Map(_) => ResponseFields::default(),
        }
    }
}

impl ResponseState {
    fn new(headers: ResponseFields) -> ResponseState {
        ResponseState {
            status: StatusCode::OK,
            headers,
            length: None,
            empty: false,
            started: false,
            finished: false,
            lost: None,
            bytes: 0,
            waiters: Vec::new(),
            pending: None,
            producer: false,
        }
    }
}

pub(super) struct ResponseState {
    pub status: StatusCode,
    pub headers: ResponseFields,
    pub length: Option<u64>,
    /// Finished before anything was written or announced: no body at all.
    pub empty: bool,
    pub started: bool,
    pub finished: bool,
    /// Why the client went away before the response was finished.
    pub lost: Option<Lost>,
    /// Body bytes written.
    pub bytes: u64,
    pub waiters: Vec<Deferred<()>>,
    /// The Deferred of a `Render::Deferred`, cancelled if the client goes away.
    pub pending: Option<Deferred<Bytes>>,
    /// A producer was registered through this request.
    pub producer: bool,
}

impl RequestInner {
    pub(super) fn new(
        head: RequestHead,
        peer: Address,
        secure: bool,
        received: SystemTime,
        response_headers: ResponseFields,
        channel: Weak<Channel>,
    ) -> RequestInner {
        RequestInner {
            head,
            peer,
            secure,
            received,
            postpath_at: Cell::new(1),
            resp: RefCell::new(ResponseState::new(response_headers)),
            channel,
        }
    }

    /// Makes this the state of the next request on the same connection, in place.
    pub(super) fn reset(
        &mut self,
        head: RequestHead,
        secure: bool,
        received: SystemTime,
        response_headers: ResponseFields,
    ) {
        self.head = head;
        self.secure = secure;
        self.received = received;
        self.postpath_at.set(1);
        *self.resp.get_mut() = ResponseState::new(response_headers);
    }

    pub(super) fn path(&self) -> &str {
        self.head.uri.path()
    }

    /// The request line for the access log.
    pub(super) fn request_line(&self) -> String {
        let head = &self.head;
        let target = head
            .uri
            .path_and_query()
            .map_or_else(|| head.uri.to_string(), |p| p.as_str().to_owned());
        format!("{} {} {:?}", head.method, target, head.version)
    }
}

impl Request {
    pub(super) fn from_inner(inner: Rc<RequestInner>) -> Request {
        Request { inner }
    }

    fn channel(&self) -> Option<Rc<Channel>> {
        self.inner.channel.upgrade()
    }

    // ---- the request ------------------------------------------------------------------

    /// The method.
    pub fn method(&self) -> &Method {
        &self.inner.head.method
    }

    /// The request target as sent.
    pub fn uri(&self) -> &Uri {
        &self.inner.head.uri
    }

    /// The path, still percent-encoded (`/` for `*` and authority-form targets).
    pub fn path(&self) -> &str {
        self.inner.path()
    }

    /// The query string, without its `?`.
    pub fn query(&self) -> Option<&str> {
        self.inner.head.uri.query()
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn version(&self) -> Version {
        self.inner.head.version
    }

    /// The header fields.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.head.headers()
    }

    /// A header field's value, if present and text.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.inner
            .head
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// The client's address.
    pub fn peer(&self) -> &Address {
        &self.inner.peer
    }

    /// The client's IP address, for TCP connections.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.inner.peer.socket_addr().map(|a| a.ip())
    }

    /// Whether the request came over TLS.
    pub fn is_secure(&self) -> bool {
        self.inner.secure
    }

    /// The body's framing: [`Framing::Empty`] when there is none.
    pub fn body_framing(&self) -> Framing {
        self.inner.head.framing
    }

    /// The path segments consumed while finding the resource (Twisted's `prepath`),
    /// percent-decoded.
    pub fn prepath(&self) -> Vec<Vec<u8>> {
        let path = self.path();
        let at = self.inner.postpath_at.get().min(path.len() + 1);
        if at <= 1 {
            return Vec::new();
        }
        path[1..at - 1]
            .split('/')
            .map(|s| percent_decode(s).into_owned())
            .collect()
    }

    /// The path segments left after the resource that renders (Twisted's `postpath`),
    /// percent-decoded: what a leaf resource such as a directory of files serves.
    pub fn postpath(&self) -> Vec<Vec<u8>> {
        match self.postpath_raw() {
            None => Vec::new(),
            Some(rest) => rest
                .split('/')
                .map(|s| percent_decode(s).into_owned())
                .collect(),
        }
    }

    /// The rest of the path after the resource that renders, still encoded, without a
    /// leading slash (`None` when nothing is left, `Some("")` for a trailing slash).
    pub fn postpath_raw(&self) -> Option<&str> {
        let path = self.path();
        path.get(self.inner.postpath_at.get()..)
    }

    // ---- the response -----------------------------------------------------------------

    /// Sets the status (default 200 OK).
    pub fn set_status(&self, status: StatusCode) {
        self.inner.resp.borrow_mut().status = status;
    }

    /// The status set so far.
    pub fn status(&self) -> StatusCode {
        self.inner.resp.borrow().status
    }

    /// Sets a response header field, replacing any value it had. A name or value that is
    /// not valid is logged and ignored. `Content-Length` sets the length (as
    /// [`set_content_length`](Request::set_content_length)); `Transfer-Encoding` is
    /// ignored: framing is the connection's business.
    pub fn set_header<K, V>(&self, name: K, value: V)
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        self.put_header(name, value, false)
    }

    /// Adds a response header field, keeping the values it had (e.g. `Set-Cookie`).
    pub fn add_header<K, V>(&self, name: K, value: V)
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        self.put_header(name, value, true)
    }

    fn put_header<K, V>(&self, name: K, value: V, append: bool)
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        let (Ok(name), Ok(value)) = (name.try_into(), value.try_into()) else {
            tracing::warn!("invalid response header field ignored");
            return;
        };
        if name == header::CONTENT_LENGTH {
            match value.to_str().ok().and_then(|v| v.trim().parse().ok()) {
                Some(n) => self.set_content_length(n),
                None => tracing::warn!("invalid Content-Length ignored"),
            }
            return;
        }
        if name == header::TRANSFER_ENCODING {
            return;
        }
        let mut resp = self.inner.resp.borrow_mut();
        if resp.started {
            tracing::warn!("header {name} set after the response started; ignored");
            return;
        }
        if append {
            resp.headers.append(name, value);
        } else {
            resp.headers.insert(name, value);
        }
    }

    /// Changes the response header fields directly.
    pub fn with_response_headers<R>(&self, f: impl FnOnce(&mut HeaderMap) -> R) -> R {
        f(self.inner.resp.borrow_mut().headers.map())
    }

    /// A response header field set so far.
    pub fn response_header(&self, name: impl http::header::AsHeaderName) -> Option<HeaderValue> {
        self.inner
            .resp
            .borrow_mut()
            .headers
            .map()
            .get(name)
            .cloned()
    }

    /// Announces the body's length, so it is sent with `Content-Length` rather than
    /// chunked. Writing more is an error (the excess is dropped); finishing with less
    /// closes the connection.
    pub fn set_content_length(&self, length: u64) {
        self.inner.resp.borrow_mut().length = Some(length);
    }

    /// Sets a redirect to `location` (302 Found, or the status set if it is a 3xx) and
    /// returns a small body pointing there.
    pub fn redirect(&self, location: &str) -> super::Render {
        let mut resp = self.inner.resp.borrow_mut();
        if !resp.status.is_redirection() {
            resp.status = StatusCode::FOUND;
        }
        match HeaderValue::from_str(location) {
            Ok(v) => {
                resp.headers.insert(header::LOCATION, v);
            }
            Err(_) => tracing::warn!("invalid redirect location ignored"),
        }
        resp.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        let escaped = super::escape_html(location);
        super::Render::Body(Bytes::from(format!(
            "<!DOCTYPE html>\n<html><body>Moved to <a href=\"{escaped}\">{escaped}</a>.</body></html>\n"
        )))
    }

    /// Sends a piece of the body (the head first, if it has not gone yet).
    pub fn write(&self, data: impl AsRef<[u8]>) {
        if let Some(channel) = self.channel() {
            channel.write(&self.inner, data.as_ref());
        }
    }

    /// Ends the response. Calling it again does nothing.
    pub fn finish(&self) {
        if let Some(channel) = self.channel() {
            channel.finish(&self.inner);
        }
    }

    /// Sends `body` as the whole response with a `Content-Length`, and finishes.
    pub fn respond(&self, body: impl Into<Bytes>) {
        if let Some(channel) = self.channel() {
            channel.respond(&self.inner, body.into());
        }
    }

    /// Closes the connection at once, mid-response if need be: for a response that
    /// cannot be completed as announced. The request counts as lost.
    pub fn abort(&self) {
        if let Some(channel) = self.channel() {
            channel.abort();
            channel.mark_lost(&self.inner, Lost::Aborted);
        }
    }

    /// Whether the response head has been sent.
    pub fn started(&self) -> bool {
        self.inner.resp.borrow().started
    }

    /// Whether `finish` has been called.
    pub fn finished(&self) -> bool {
        self.inner.resp.borrow().finished
    }

    /// Whether the client went away before the response was finished.
    pub fn lost(&self) -> bool {
        self.inner.resp.borrow().lost.is_some()
    }

    /// Body bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.inner.resp.borrow().bytes
    }

    /// A Deferred that fires when the response is finished, or fails with
    /// [`Error::ConnectionLost`] if the client goes away first (Twisted's `notifyFinish`).
    pub fn notify_finish(&self) -> Deferred<()> {
        let mut resp = self.inner.resp.borrow_mut();
        if resp.finished {
            return Deferred::succeeded(());
        }
        if let Some(how) = &resp.lost {
            return Deferred::failed(Failure::new(Error::ConnectionLost(how.clone())));
        }
        let d = Deferred::new();
        resp.waiters.push(d.clone());
        d
    }

    /// Makes `producer` the source of the response body: a streaming producer is paused
    /// while the connection's send buffer is above its high-water mark and resumed when it
    /// drains; a pull producer (`streaming == false`) is asked for more each time the
    /// buffer empties. The producer writes with [`write`](Request::write) and ends with
    /// [`finish`](Request::finish), which unregisters it. This is how a 10 GB file is
    /// sent with only a buffer's worth in memory.
    pub fn register_producer(
        &self,
        producer: impl Producer + 'static,
        streaming: bool,
    ) -> Result<(), Error> {
        let Some(channel) = self.channel() else {
            producer.stop_producing();
            return Ok(());
        };
        channel.register_producer(&self.inner, Box::new(producer), streaming)
    }

    /// Forgets the producer registered with [`register_producer`](Request::register_producer).
    pub fn unregister_producer(&self) {
        if let Some(channel) = self.channel() {
            channel.unregister_producer(&self.inner);
        }
    }

    // ---- the request body -------------------------------------------------------------

    /// Streams the request body to `receiver` as it arrives. If the client waits for
    /// `100 Continue`, it is sent now. Pieces already received are delivered at once
    /// (possibly before this returns). A body nobody asks for is read and dropped once
    /// the response is finished.
    pub fn deliver_body(&self, receiver: impl BodyReceiver) {
        match self.channel() {
            Some(channel) => channel.deliver_body(&self.inner, Box::new(receiver)),
            None => {
                let mut receiver = receiver;
                receiver.body_finished(Err(Error::ConnectionLost(Lost::Closed)));
            }
        }
    }

    /// Gathers the whole request body, up to the site's `max_body_size` (Twisted's
    /// `request.content`, read as it streams).
    pub fn read_body(&self) -> Deferred<Bytes> {
        let max = self
            .channel()
            .map_or(0, |c| c.site().options.limits.max_body_size);
        let (collector, body) = body::collect(max);
        self.deliver_body(collector);
        body
    }

    /// Stops delivering the request body (and reading from the client) until
    /// [`resume_body`](Request::resume_body).
    pub fn pause_body(&self) {
        if let Some(channel) = self.channel() {
            channel.set_body_paused(&self.inner, true);
        }
    }

    /// Delivers the request body again after [`pause_body`](Request::pause_body).
    pub fn resume_body(&self) {
        if let Some(channel) = self.channel() {
            channel.set_body_paused(&self.inner, false);
        }
    }

    /// The request body's source as a [`Producer`], to register with whatever consumes
    /// it (a proxy registers it on the upstream connection, so a slow upstream slows the
    /// client down).
    pub fn body_producer(&self) -> BodyProducer {
        BodyProducer {
            request: Rc::downgrade(&self.inner),
        }
    }

    /// Sends `100 Continue` now, if the client waits for it and nothing was sent yet
    /// (asking for the body does this by itself).
    pub fn send_continue(&self) {
        if let Some(channel) = self.channel() {
            channel.send_continue(&self.inner);
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.inner.head.method)
            .field("uri", &self.inner.head.uri)
            .field("peer", &self.inner.peer)
            .finish()
    }
}

/// A request body's source as a [`Producer`]; see [`Request::body_producer`].
#[derive(Clone)]
pub struct BodyProducer {
    request: Weak<RequestInner>,
}

impl Producer for BodyProducer {
    fn pause_producing(&self) {
        if let Some(inner) = self.request.upgrade() {
            Request::from_inner(inner).pause_body();
        }
    }

    fn resume_producing(&self) {
        if let Some(inner) = self.request.upgrade() {
            Request::from_inner(inner).resume_body();
        }
    }

    fn stop_producing(&self) {
        if let Some(inner) = self.request.upgrade()
            && let Some(channel) = inner.channel.upgrade()
        {
            channel.abort();
        }
    }
}
