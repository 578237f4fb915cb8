//! The server side of one connection: requests in, responses out.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, SERVER, TRANSFER_ENCODING};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};

use super::body::{BodyDecoder, BodyEncoder, Decoded};
use super::head::{
    self, ContentLength, HeadScanner, RawFields, ScanLimits, TransferCoding, TransferCodings,
};
use super::{BodySize, Framing, Limits};
use crate::Error;

/// The head of a received request, checked: its framing is decided and safe.
///
/// The header fields stay as received until they are asked for:
/// [`header`](RequestHead::header) reads one straight from the bytes, and
/// [`headers`](RequestHead::headers) builds the `HeaderMap` on first use, so a request
/// whose fields nobody reads costs no map.
#[derive(Clone)]
#[non_exhaustive]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target as sent: usually origin-form (`/path?query`), absolute-form for a
    /// proxy, authority-form for `CONNECT`, or `*`.
    pub uri: Uri,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// How the body is delimited: [`Framing::Empty`], [`Framing::Length`] or [`Framing::Chunked`].
    pub framing: Framing,
    /// Whether the client asked to keep the connection open (version and `Connection`).
    /// The response may still close it; see [`ServerConnection::send_response`].
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` (HTTP/1.1, with a body) and waits for
    /// [`ServerConnection::send_continue`] before sending the body.
    pub expect_continue: bool,
    fields: RawFields,
    /// Boxed: most requests never build it, and the head is moved around by value.
    map: OnceLock<Box<HeaderMap>>,
}

impl RequestHead {
    /// The header fields, in the order received. The map is built on the first call.
    pub fn headers(&self) -> &HeaderMap {
        self.map
            .get_or_init(|| Box::new(self.fields.to_header_map()))
    }

    /// The value of the first field named `name` (ASCII case-insensitive), read from the
    /// received bytes without building the map: the value `headers().get(name)` holds.
    ///
    /// ```
    /// use twistor_http::proto::{Limits, RequestEvent, ServerConnection};
    ///
    /// let mut conn = ServerConnection::new(Limits::default());
    /// conn.handle_data(b"GET / HTTP/1.1\r\nHost: example.com\r\nAccept:  */* \r\n\r\n");
    /// let Ok(Some(RequestEvent::Head(head))) = conn.poll_event() else { panic!() };
    /// assert_eq!(head.header("accept"), Some(&b"*/*"[..]));
    /// assert_eq!(head.header(twistor_http::http::header::HOST), Some(&b"example.com"[..]));
    /// assert_eq!(head.header("cookie"), None);
    /// ```
    pub fn header(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.fields.get(name.as_ref())
    }

    /// The header fields, owned.
    pub fn into_headers(self) -> HeaderMap {
        let RequestHead { fields, map, .. } = self;
        map.into_inner()
            .map_or_else(|| fields.to_header_map(), |map| *map)
    }

    /// An `http::Request<()>` with this head's method, URI, version and headers.
    pub fn into_request(self) -> Request<()> {
        let RequestHead {
            method,
            uri,
            version,
            fields,
            map,
            ..
        } = self;
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = map
            .into_inner()
            .map_or_else(|| fields.to_header_map(), |map| *map);
        request
    }
}

impl std::fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("version", &self.version)
            .field("headers", &self.fields)
            .field("framing", &self.framing)
            .field("keep_alive", &self.keep_alive)
            .field("expect_continue", &self.expect_continue)
            .finish()
    }
}

/// What [`ServerConnection::poll_event`] yields, strictly in the order of the bytes received.
#[derive(Debug, Clone)]
pub enum RequestEvent {
    /// A request began. Its body events follow, then [`RequestEvent::End`].
    Head(RequestHead),
    /// A piece of the body, as it arrived (never the whole body gathered up).
    Data(Bytes),
    /// The request is complete; the trailer fields of a chunked body, if any, are here.
    End(HeaderMap),
}

/// Where a connection is, for the server's timers: the idle timeout belongs to
/// [`Phase::Idle`], the request timeout (408) to [`Phase::ReadingHead`] and
/// [`Phase::ReadingBody`], and no read timer to [`Phase::Responding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Between requests, with no byte of the next one received.
    Idle,
    /// Part of a request head has arrived.
    ReadingHead,
    /// The request body is arriving.
    ReadingBody,
    /// The request is complete; the application owes the response.
    Responding,
    /// The connection is finished: once [`ServerConnection::poll_transmit`] has nothing more,
    /// close it.
    Closed,
}

/// One server connection's HTTP/1.1 state, without I/O.
///
/// # Driving it
///
/// 1. Feed received bytes with [`handle_data`](Self::handle_data) (and the end of the stream
///    with [`handle_eof`](Self::handle_eof)).
/// 2. Call [`poll_event`](Self::poll_event) until it returns `Ok(None)`. Events come in
///    order: `Head`, `Data`…, `End`, for one request at a time.
/// 3. Answer each request with [`send_response`](Self::send_response),
///    [`send_data`](Self::send_data)… and [`finish`](Self::finish) (and
///    [`send_continue`](Self::send_continue) first, if the head asked for it).
/// 4. Write what [`poll_transmit`](Self::poll_transmit) returns to the peer, and close
///    the connection once [`phase`](Self::phase) is [`Phase::Closed`] and nothing is left
///    to transmit.
///
/// After `End`, the connection reads nothing more until the response to that request is
/// finished; only then does `poll_event` parse the next pipelined request, from bytes it
/// kept. Responses therefore leave in request order by construction (Twisted's
/// CVE-2023-46137 was pipelined requests handled, and answered, out of order). While
/// [`wants_read`](Self::wants_read) is false, stop reading the socket so a pipelining
/// client cannot fill memory.
///
/// A request the connection refuses makes `poll_event` return the error once; the error
/// response (status from [`Error::status`]) is then already queued, and the phase is
/// [`Phase::Closed`].
#[derive(Debug)]
pub struct ServerConnection {
    limits: Limits,
    /// Received bytes not yet parsed.
    buf: BytesMut,
    /// Bytes to send.
    out: BytesMut,
    read: Read,
    write: Write,
    eof: bool,
    /// It closed while a request body was still arriving (the client may be sending).
    closed_mid_body: bool,
    /// What the current request needs from its response.
    exchange: Exchange,
}

#[derive(Debug)]
enum Read {
    /// Waiting for (the rest of) a request head.
    Head(HeadScanner),
    Body(BodyDecoder),
    /// The request is complete; waiting for its response to finish.
    Done,
    Closed,
}

#[derive(Debug)]
enum Write {
    /// No request head yet.
    Idle,
    /// A request head was yielded; no final response started.
    Waiting,
    Body(BodyEncoder),
    /// The response is finished; the request body is still arriving.
    Done,
    Closed,
}

#[derive(Debug, Default)]
struct Exchange {
    head_request: bool,
    version_10: bool,
    keep_alive: bool,
    expect_continue: bool,
    continue_sent: bool,
}

impl ServerConnection {
    /// A connection that enforces `limits` on its peer.
    pub fn new(limits: Limits) -> ServerConnection {
        ServerConnection {
            limits,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            read: Read::Head(HeadScanner::default()),
            write: Write::Idle,
            eof: false,
            closed_mid_body: false,
            exchange: Exchange::default(),
        }
    }

    /// Takes bytes received from the client. They are only buffered here; parsing happens
    /// in [`poll_event`](Self::poll_event).
    pub fn handle_data(&mut self, data: &[u8]) {
        if matches!(self.read, Read::Closed) {
            return;
        }
        // Heads are split off the front of this buffer and live as long as their request,
        // sharing its memory; room for several small requests at a time means a new
        // allocation every so often rather than per request, and an idle connection keeps
        // at most this much.
        if self.buf.capacity() - self.buf.len() < data.len() {
            self.buf.reserve(data.len().max(READ_BUFFER));
        }
        self.buf.extend_from_slice(data);
    }

    /// The client closed its side. A request in progress fails with
    /// [`Error::UnexpectedEof`]; between requests the connection just closes, once any
    /// response in progress is finished.
    pub fn handle_eof(&mut self) {
        self.eof = true;
    }

    /// The server's read timer ran out (idle or request timeout, see [`Phase`]). A request
    /// in progress with no response started is answered 408; either way the connection
    /// closes.
    pub fn handle_timeout(&mut self) {
        match self.phase() {
            Phase::ReadingHead | Phase::ReadingBody => {
                let _ = self.fail(Error::Timeout);
            }
            Phase::Idle | Phase::Responding => self.close(),
            Phase::Closed => {}
        }
    }

    /// Takes no more requests (a server shutting down): between requests the connection
    /// closes at once (bytes of a request not yet complete are dropped); a response not
    /// started yet gets `Connection: close`, and the connection closes once the response
    /// in progress is finished.
    pub fn close_when_done(&mut self) {
        match self.write {
            Write::Idle if !matches!(self.read, Read::Body(_)) => self.close(),
            Write::Done => self.close(),
            Write::Closed => {}
            Write::Idle | Write::Waiting | Write::Body(_) => self.exchange.keep_alive = false,
        }
    }

    /// The next request event, `Ok(None)` when more bytes are needed or the connection is
    /// paused for a response, or the error that ends the connection.
    pub fn poll_event(&mut self) -> Result<Option<RequestEvent>, Error> {
        match self.poll_inner() {
            Ok(event) => Ok(event),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Sends `100 Continue`, telling a client that sent `Expect: 100-continue` to send its
    /// body. Does nothing if the client did not ask, or if it was already sent.
    pub fn send_continue(&mut self) -> Result<(), Error> {
        match self.write {
            Write::Waiting => {}
            Write::Closed => return Err(Error::Closed),
            _ => return Err(Error::InvalidState("no request is waiting for a response")),
        }
        // Once the body is here, the client has stopped waiting.
        let body_done = matches!(self.read, Read::Done);
        if self.exchange.expect_continue && !self.exchange.continue_sent && !body_done {
            self.exchange.continue_sent = true;
            self.out.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        Ok(())
    }

    /// Starts the response to the current request; the body follows with
    /// [`send_data`](Self::send_data) and [`finish`](Self::finish).
    ///
    /// The status line is always `HTTP/1.1` (RFC 9110 §2.5); the response's own version is
    /// ignored. Framing comes from `body` alone, so `headers` must not hold
    /// `Content-Length` or `Transfer-Encoding`:
    ///
    /// - [`BodySize::Length`] sends `Content-Length`, [`BodySize::Empty`] `Content-Length: 0`;
    /// - [`BodySize::Unknown`] sends chunked to HTTP/1.1 clients, and to HTTP/1.0 clients a
    ///   body ended by closing the connection;
    /// - responses to `HEAD`, and 204 and 304 responses, carry no body: body bytes given to
    ///   them are dropped, `Content-Length` is kept where it describes the body the resource
    ///   would have (HEAD, 304) and never sent with 204 (RFC 9110 §8.6).
    ///
    /// The connection stays open only if the request asked for it, the response does not
    /// say `Connection: close`, the framing allows it, and a client waiting for
    /// `100 Continue` got it; otherwise `Connection: close` is added. A 1xx status other
    /// than 101 is sent as an interim response, and a final one is still due.
    pub fn send_response(&mut self, response: Response<()>, body: BodySize) -> Result<(), Error> {
        let (parts, ()) = response.into_parts();
        self.send_response_head(
            parts.status,
            parts.headers.iter(),
            DefaultFields::default(),
            body,
        )
    }

    /// [`send_response`](Self::send_response) from its pieces, writing `defaults` where
    /// `headers` lacks those fields. One pass over `headers` checks them and writes them.
    pub(crate) fn send_response_head<'h>(
        &mut self,
        status: StatusCode,
        headers: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
        defaults: DefaultFields<'_>,
        body: BodySize,
    ) -> Result<(), Error> {
        match self.write {
            Write::Waiting => {}
            Write::Closed => return Err(Error::Closed),
            Write::Body(_) => return Err(Error::InvalidState("a response is already in progress")),
            Write::Idle | Write::Done => {
                return Err(Error::InvalidState("no request is waiting for a response"));
            }
        }
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let mut headers = headers;
            return Err(
                if headers.any(|(n, _)| n == CONTENT_LENGTH || n == TRANSFER_ENCODING) {
                    framing_fields_error()
                } else {
                    Error::InvalidMessage("protocol upgrades are not supported")
                },
            );
        }
        let mark = self.out.len();
        write_status_line(&mut self.out, status);
        let seen = match write_fields(&mut self.out, headers) {
            Ok(seen) => seen,
            Err(e) => {
                self.out.truncate(mark);
                return Err(e);
            }
        };
        if status.is_informational() {
            self.out.put_slice(b"\r\n");
            if status == StatusCode::CONTINUE {
                self.exchange.continue_sent = true;
            }
            return Ok(());
        }
        match defaults.both {
            Some(both) if !seen.server && !seen.date => self.out.put_slice(both),
            _ => {
                if !seen.server
                    && let Some(server) = defaults.server
                {
                    head::write_header(&mut self.out, b"server", server);
                }
                if !seen.date
                    && let Some(date) = defaults.date
                {
                    head::write_header(&mut self.out, b"date", date);
                }
            }
        }

        let ex = &mut self.exchange;
        if seen.close {
            ex.keep_alive = false;
        }
        // The client may never send a body it was told to wait for; its next bytes could be
        // that body or a new request, so the connection cannot be reused (RFC 9110 §10.1.1).
        if ex.expect_continue && !ex.continue_sent && !matches!(self.read, Read::Done) {
            ex.keep_alive = false;
        }
        let bodiless = ex.head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let (length, encoder) = if bodiless {
            let length = match body {
                BodySize::Length(n) if status != StatusCode::NO_CONTENT => Some(n),
                BodySize::Empty if ex.head_request && status != StatusCode::NO_CONTENT => Some(0),
                _ => None,
            };
            (length, BodyEncoder::Discard)
        } else {
            match body {
                BodySize::Empty => (Some(0), BodyEncoder::Length { remaining: 0 }),
                BodySize::Length(n) => (Some(n), BodyEncoder::Length { remaining: n }),
                BodySize::Unknown if ex.version_10 => {
                    ex.keep_alive = false;
                    (None, BodyEncoder::UntilClose)
                }
                BodySize::Unknown => (None, BodyEncoder::Chunked),
            }
        };

        match (length, &encoder) {
            (Some(n), _) => head::write_content_length(&mut self.out, n),
            (None, BodyEncoder::Chunked) => self.out.put_slice(b"transfer-encoding: chunked\r\n"),
            _ => {}
        }
        if !ex.keep_alive {
            if !seen.close {
                self.out.put_slice(b"connection: close\r\n");
            }
        } else if ex.version_10 && !seen.keep_alive {
            self.out.put_slice(b"connection: keep-alive\r\n");
        }
        self.out.put_slice(b"\r\n");
        self.write = Write::Body(encoder);
        Ok(())
    }

    /// Sends a piece of the response body. Empty pieces send nothing.
    pub fn send_data(&mut self, data: &[u8]) -> Result<(), Error> {
        match &mut self.write {
            Write::Body(encoder) => encoder.encode(&mut self.out, data),
            Write::Closed => Err(Error::Closed),
            _ => Err(Error::InvalidState("no response body in progress")),
        }
    }

    /// Ends the response, with trailer fields if it is chunked (elsewhere they are dropped).
    /// A body shorter than its `Content-Length` is an error, and closes the connection.
    pub fn finish(&mut self, trailers: Option<&HeaderMap>) -> Result<(), Error> {
        let encoder = match &mut self.write {
            Write::Body(encoder) => encoder,
            Write::Closed => return Err(Error::Closed),
            _ => return Err(Error::InvalidState("no response in progress")),
        };
        if let Err(e) = encoder.finish(&mut self.out, trailers) {
            self.close();
            return Err(e);
        }
        let until_close = matches!(encoder, BodyEncoder::UntilClose);
        if until_close || !self.exchange.keep_alive {
            self.close();
            return Ok(());
        }
        self.write = Write::Done;
        if matches!(self.read, Read::Done) {
            self.next_exchange();
        }
        Ok(())
    }

    /// Bytes to send to the client, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// Bytes to send to the client, if any, as the connection's own output buffer: a
    /// caller that copies them out (into a socket's buffer) hands the buffer back with
    /// [`recycle_transmit`](Self::recycle_transmit), so a busy connection does not allocate
    /// an output buffer per response.
    pub fn poll_transmit_buf(&mut self) -> Option<BytesMut> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Gives back a buffer from [`poll_transmit_buf`](Self::poll_transmit_buf) once its
    /// bytes are sent: it is emptied and kept for the next output, if nothing was queued
    /// meanwhile.
    pub fn recycle_transmit(&mut self, mut buf: BytesMut) {
        if self.out.is_empty() && self.out.capacity() < buf.capacity() {
            buf.clear();
            self.out = buf;
        }
    }

    /// [`recycle_transmit`](Self::recycle_transmit), then
    /// [`poll_transmit_buf`](Self::poll_transmit_buf) for what was queued meanwhile.
    pub(crate) fn recycle_transmit_and_poll(&mut self, buf: BytesMut) -> Option<BytesMut> {
        if self.out.is_empty() {
            self.recycle_transmit(buf);
            None
        } else {
            self.poll_transmit_buf()
        }
    }

    /// Where the connection is; see [`Phase`].
    pub fn phase(&self) -> Phase {
        match self.read {
            Read::Closed => Phase::Closed,
            Read::Head(_) if self.buf.is_empty() => Phase::Idle,
            Read::Head(_) => Phase::ReadingHead,
            Read::Body(_) => Phase::ReadingBody,
            Read::Done => Phase::Responding,
        }
    }

    /// Whether reading from the socket is useful now. False while a response is owed (the
    /// connection is paused between pipelined requests) and once it is closing.
    pub fn wants_read(&self) -> bool {
        matches!(self.read, Read::Head(_) | Read::Body(_)) && !self.eof
    }

    /// Whether it closed while a request body was still arriving: the client may still be
    /// sending it, so the connection should close gracefully (RFC 9112 §9.6).
    pub fn closed_mid_body(&self) -> bool {
        self.closed_mid_body
    }

    /// Received bytes not parsed yet (e.g. pipelined requests waiting their turn).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn poll_inner(&mut self) -> Result<Option<RequestEvent>, Error> {
        match &mut self.read {
            Read::Closed | Read::Done => Ok(None),
            Read::Head(scanner) => {
                if !head::skip_leading_empty_lines(&mut self.buf, true)? {
                    return self.need_more_head();
                }
                // A head that arrived whole is parsed once, without the scanner, when
                // httparse's view of it shows the scanner would find the same end and no
                // fault; otherwise the scanner finds the end first, as bytes arrive.
                if self.buf.is_empty() {
                    return self.need_more_head();
                }
                let fast = if scanner.is_fresh() {
                    parse_request_head(&mut self.buf, None, &self.limits)?
                } else {
                    None
                };
                let head = match fast {
                    Some(head) => head,
                    None => {
                        let scan = ScanLimits {
                            max_line: Some(self.limits.max_request_line),
                            max_head: self.limits.max_head_size,
                            strict: true,
                        };
                        let Some(len) = scanner.scan(&self.buf, &scan)? else {
                            return self.need_more_head();
                        };
                        match parse_request_head(&mut self.buf, Some(len), &self.limits)? {
                            Some(head) => head,
                            None => return Err(Error::MalformedHead("incomplete head")),
                        }
                    }
                };
                self.exchange = Exchange {
                    head_request: head.method == Method::HEAD,
                    version_10: head.version == Version::HTTP_10,
                    keep_alive: head.keep_alive,
                    expect_continue: head.expect_continue,
                    continue_sent: false,
                };
                self.read = Read::Body(match head.framing {
                    Framing::Length(n) => BodyDecoder::Length { remaining: n },
                    Framing::Chunked => BodyDecoder::chunked(),
                    _ => BodyDecoder::Length { remaining: 0 },
                });
                self.write = Write::Waiting;
                Ok(Some(RequestEvent::Head(head)))
            }
            Read::Body(decoder) => match decoder.decode(&mut self.buf, self.eof, &self.limits)? {
                Decoded::Data(data) => Ok(Some(RequestEvent::Data(data))),
                Decoded::Pending => Ok(None),
                Decoded::End(trailers) => {
                    self.read = Read::Done;
                    if matches!(self.write, Write::Done) {
                        self.next_exchange();
                    }
                    Ok(Some(RequestEvent::End(trailers)))
                }
            },
        }
    }

    fn need_more_head(&mut self) -> Result<Option<RequestEvent>, Error> {
        if !self.eof {
            Ok(None)
        } else if self.buf.is_empty() {
            self.close();
            Ok(None)
        } else {
            Err(Error::UnexpectedEof)
        }
    }

    /// Both halves of an exchange are done on a keep-alive connection: read the next request.
    fn next_exchange(&mut self) {
        self.read = Read::Head(HeadScanner::default());
        self.write = Write::Idle;
        if self.eof && self.buf.is_empty() {
            self.close();
        }
    }

    /// Stops reading; what is queued is still sent.
    fn close(&mut self) {
        self.closed_mid_body = matches!(
            self.read,
            Read::Body(BodyDecoder::Chunked(_) | BodyDecoder::UntilClose { .. })
                | Read::Body(BodyDecoder::Length { remaining: 1.. })
        );
        self.read = Read::Closed;
        self.write = Write::Closed;
        self.buf = BytesMut::new();
    }

    /// Ends the connection over `err`, queueing the error response if one is due and no
    /// response has started.
    fn fail(&mut self, err: Error) -> Error {
        if let (Some(status), Write::Idle | Write::Waiting) = (err.status(), &self.write) {
            let reason = err.to_string();
            write_status_line(&mut self.out, status);
            self.out
                .put_slice(b"content-type: text/plain; charset=utf-8\r\n");
            head::write_content_length(&mut self.out, reason.len() as u64 + 1);
            self.out.put_slice(b"connection: close\r\n\r\n");
            self.out.put_slice(reason.as_bytes());
            self.out.put_slice(b"\n");
        }
        self.close();
        err
    }
}

/// Fields a response gets unless its own headers have them (a server's `Server` and `Date`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DefaultFields<'a> {
    /// The `Server` value.
    pub server: Option<&'a [u8]>,
    /// The `Date` value.
    pub date: Option<&'a [u8]>,
    /// Both fields as they are written (`server: …\r\ndate: …\r\n`), for the usual case
    /// where the response has neither.
    pub both: Option<&'a [u8]>,
}

/// What [`write_fields`] saw in a response's own fields.
#[derive(Debug, Default)]
struct SeenFields {
    server: bool,
    date: bool,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
}

/// Writes a response's own fields, refusing framing fields (the caller drops what was
/// written then), and notes those the connection cares about.
fn write_fields<'h>(
    out: &mut BytesMut,
    headers: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
) -> Result<SeenFields, Error> {
    let mut seen = SeenFields::default();
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            return Err(framing_fields_error());
        } else if name == CONNECTION {
            seen.close |= head::value_has_token(value.as_bytes(), b"close");
            seen.keep_alive |= head::value_has_token(value.as_bytes(), b"keep-alive");
        } else if name == SERVER {
            seen.server = true;
        } else if name == DATE {
            seen.date = true;
        }
        head::write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    Ok(seen)
}

fn framing_fields_error() -> Error {
    Error::InvalidMessage("Content-Length and Transfer-Encoding are set from BodySize")
}

fn write_status_line(out: &mut BytesMut, status: StatusCode) {
    // The common ones in one piece.
    let line: &[u8] = match status.as_u16() {
        200 => b"HTTP/1.1 200 OK\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        206 => b"HTTP/1.1 206 Partial Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        _ => return write_status_line_parts(out, status),
    };
    out.put_slice(line);
}

fn write_status_line_parts(out: &mut BytesMut, status: StatusCode) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
}

/// Parses and checks the request head at the front of `buf`, and splits it off.
///
/// With `len`, the head is `buf[..len]` (found by the scanner, so complete and within the
/// limits). Without, this is the attempt on a head that may have arrived whole: it returns
/// `Ok(None)`, leaving `buf` alone, unless httparse finds a complete head that
/// [`scanner_agrees`] the scanner would also have found, with no fault, at the same end.
fn parse_request_head(
    buf: &mut BytesMut,
    len: Option<usize>,
    limits: &Limits,
) -> Result<Option<RequestHead>, Error> {
    // Left uninitialised: httparse writes the slots it fills, and zeroing 4 KiB per request
    // would cost more than the parse.
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; head::STACK_HEADERS];
    let mut heap;
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] =
        if limits.max_headers <= head::STACK_HEADERS {
            &mut stack[..limits.max_headers]
        } else {
            heap = vec![MaybeUninit::uninit(); limits.max_headers];
            &mut heap
        };
    let input: &[u8] = match len {
        Some(len) => &buf[..len],
        None => buf,
    };
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(input, slots);
    let head_len = match (parsed, len) {
        (Ok(httparse::Status::Complete(n)), None) => n,
        (Ok(httparse::Status::Complete(_)), Some(len)) => len,
        // The first attempt leaves every other outcome to the scanner.
        (_, None) => return Ok(None),
        (Ok(httparse::Status::Partial), Some(_)) => {
            return Err(Error::MalformedHead("incomplete head"));
        }
        (Err(httparse::Error::Version), Some(_)) => {
            let line = input.split(|&b| b == b'\r').next().unwrap_or_default();
            let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
            return Err(if head::is_other_major_version(version) {
                Error::UnsupportedVersion
            } else {
                Error::MalformedHead("invalid version")
            });
        }
        (Err(e), Some(_)) => return Err(head::httparse_error(e)),
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Error::MalformedHead("incomplete request line"));
    };
    // httparse took `METHOD SP target SP HTTP/1.x`, and a line ending after it.
    let request_line_len = method.len() + path.len() + 12;
    if len.is_none() && !scanner_agrees(input, head_len, request_line_len, req.headers, limits) {
        return Ok(None);
    }
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Error::MalformedHead("invalid method"))?;
    let path_at =
        offset_in(input, path.as_bytes()).ok_or(Error::MalformedHead("invalid request target"))?;
    let path_range = path_at..path_at + path.len();
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // The fields' verdict waits until the target is checked, whose fault is reported first.
    let fields = check_fields(req.headers, version, limits);

    let bytes = buf.split_to(head_len).freeze();
    let uri = Uri::from_maybe_shared(bytes.slice(path_range))
        .map_err(|_| Error::MalformedHead("invalid request target"))?;
    let FieldVerdict {
        framing,
        keep_alive,
        expect_continue,
    } = fields?;
    Ok(Some(RequestHead {
        method,
        uri,
        version,
        framing,
        keep_alive,
        expect_continue,
        fields: RawFields::new(bytes, request_line_len),
        map: OnceLock::new(),
    }))
}

/// What a request's fields say about its body and connection.
struct FieldVerdict {
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// One pass over the fields for everything framing and the connection need, with the
/// request-smuggling refusals.
fn check_fields(
    fields: &[httparse::Header<'_>],
    version: Version,
    limits: &Limits,
) -> Result<FieldVerdict, Error> {
    let mut hosts = 0usize;
    let mut length = ContentLength::default();
    let mut length_error = None;
    let mut has_length = false;
    let mut codings = TransferCodings::default();
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut expect_other = false;
    for field in fields {
        let name = field.name.as_bytes();
        let value = field.value;
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    expect_other = true;
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                close |= head::value_has_token(value, b"close");
                keep_alive_token |= head::value_has_token(value, b"keep-alive");
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                has_length = true;
                if length_error.is_none()
                    && let Err(e) = length.add(value)
                {
                    length_error = Some(e);
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => codings.add(value),
            // `http`'s HeaderName holds at most this many bytes.
            n if n > MAX_FIELD_NAME => return Err(Error::MalformedHead("invalid header name")),
            _ => {}
        }
    }

    // RFC 9112 §3.2: exactly one Host in HTTP/1.1; more than one is refused in 1.0 too.
    if hosts > 1 || (hosts == 0 && version == Version::HTTP_11) {
        return Err(Error::InvalidHost);
    }

    // RFC 9112 §6.3. Every shape two parsers could read differently is refused.
    let framing = match codings.result() {
        TransferCoding::Absent => match length_error {
            Some(e) => return Err(e),
            None => match length.value {
                None | Some(0) => Framing::Empty,
                Some(n) if n > limits.max_body_size => return Err(Error::BodyTooLarge),
                Some(n) => Framing::Length(n),
            },
        },
        _ if has_length => return Err(Error::ContentLengthWithTransferEncoding),
        // §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
        _ if version == Version::HTTP_10 => return Err(Error::InvalidTransferEncoding),
        TransferCoding::Chunked => Framing::Chunked,
        TransferCoding::OtherThenChunked => return Err(Error::UnsupportedTransferCoding),
        TransferCoding::Invalid => return Err(Error::InvalidTransferEncoding),
    };

    // RFC 9112 §9.3.
    let keep_alive = !close && (version == Version::HTTP_11 || keep_alive_token);
    if expect_other {
        return Err(Error::UnsupportedExpectation);
    }
    // RFC 9110 §10.1.1: a 1.0 client cannot mean it, and without a body it means nothing.
    let expect_continue =
        expect_continue && version == Version::HTTP_11 && framing != Framing::Empty;
    Ok(FieldVerdict {
        framing,
        keep_alive,
        expect_continue,
    })
}

/// Whether the scanner, given the head httparse found complete at the front of `buf`
/// (`len` bytes, a request line of `line_len` bytes with its line ending, then `fields`),
/// would have found the same end with no fault: within both limits, and every line
/// ending with CRLF.
///
/// httparse's grammar allows no LF inside a line (tokens, target, version and field
/// values exclude control characters), so the line endings are the only LFs; they are
/// checked by following the lines end to end: the request line, each field line (its
/// name starts where the previous line ended; whitespace after its value, then CRLF),
/// and the empty line, which must end the head.
fn scanner_agrees(
    buf: &[u8],
    len: usize,
    line_len: usize,
    fields: &[httparse::Header<'_>],
    limits: &Limits,
) -> bool {
    if len > limits.max_head_size || line_len - 2 > limits.max_request_line {
        return false;
    }
    let crlf_at = |i: usize| buf.get(i..i + 2) == Some(b"\r\n");
    if !crlf_at(line_len - 2) {
        return false;
    }
    let mut next = line_len;
    for field in fields {
        if offset_in(buf, field.name.as_bytes()) != Some(next) {
            return false;
        }
        let Some(mut end) = offset_in(buf, field.value).map(|at| at + field.value.len()) else {
            return false;
        };
        while matches!(buf.get(end), Some(b' ' | b'\t')) {
            end += 1;
        }
        if !crlf_at(end) {
            return false;
        }
        next = end + 2;
    }
    crlf_at(next) && next + 2 == len
}

/// Where `part`, a slice httparse returned from `buf`, starts in it.
fn offset_in(buf: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    (at + part.len() <= buf.len()).then_some(at)
}

/// The least the receive buffer grows by.
const READ_BUFFER: usize = 1024;

/// The longest field name `http::HeaderName` takes.
const MAX_FIELD_NAME: usize = (1 << 16) - 1;
