//! The client side of one connection: requests out, responses in.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, HOST};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};

use super::body::{BodyDecoder, BodyEncoder, Decoded};
use super::head::{self, HeadScanner, ScanLimits, TransferCoding};
use super::{BodySize, Framing, Limits};
use crate::Error;

/// The head of a received response, checked: its framing is decided.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// The reason phrase as sent (informative only; may be empty).
    pub reason: String,
    /// The header fields, in the order received.
    pub headers: HeaderMap,
    /// How the body is delimited. [`Framing::Empty`] for 1xx, 204, 304 and responses to `HEAD`.
    pub framing: Framing,
    /// Whether the connection can carry another request after this exchange, as far as
    /// this response goes (version, `Connection`, framing). See
    /// [`ClientConnection::is_reusable`] for the whole answer.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// An `http::Response<()>` with this head's status, version and headers.
    pub fn into_response(self) -> Response<()> {
        let mut response = Response::new(());
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        response
    }
}

/// What [`ClientConnection::poll_event`] yields.
#[derive(Debug, Clone)]
pub enum ResponseEvent {
    /// An interim (1xx) response, e.g. `100 Continue`; the final response is still to come.
    Interim(ResponseHead),
    /// The final response began. Body events follow, then [`ResponseEvent::End`].
    Head(ResponseHead),
    /// A piece of the body, as it arrived.
    Data(Bytes),
    /// The response is complete; the trailer fields of a chunked body, if any, are here.
    End(HeaderMap),
}

/// One client connection's HTTP/1.1 state, without I/O. One request at a time: no
/// pipelining.
///
/// # Driving it
///
/// 1. Start a request with [`send_request`](Self::send_request), its body with
///    [`send_data`](Self::send_data)… and [`finish`](Self::finish). Write what
///    [`poll_transmit`](Self::poll_transmit) returns to the server.
/// 2. Feed received bytes with [`handle_data`](Self::handle_data), and the server closing
///    with [`handle_eof`](Self::handle_eof) (a body without length ends there).
/// 3. Call [`poll_event`](Self::poll_event) until it returns `Ok(None)`: any `Interim`
///    responses, then `Head`, `Data`…, `End`. Events may come before the request body is
///    finished (a server can answer early); with `Expect: 100-continue`, wait for the
///    `Interim` 100 before sending the body.
/// 4. Once both the request is finished and `End` has come, [`is_reusable`](Self::is_reusable)
///    says whether another request may follow on this connection.
///
/// An error from `poll_event` ends the connection: close it.
#[derive(Debug)]
pub struct ClientConnection {
    limits: Limits,
    buf: BytesMut,
    out: BytesMut,
    write: Write,
    read: Read,
    eof: bool,
    exchange: Exchange,
}

#[derive(Debug)]
enum Write {
    Idle,
    Body(BodyEncoder),
    Done,
    Closed,
}

#[derive(Debug)]
enum Read {
    /// No request sent: nothing is expected.
    Idle,
    Head(HeadScanner),
    Body(BodyDecoder),
    Done,
    Closed,
}

#[derive(Debug, Default)]
struct Exchange {
    head_request: bool,
    connect_request: bool,
    keep_alive: bool,
}

impl ClientConnection {
    /// A connection that enforces `limits` on the server's responses.
    pub fn new(limits: Limits) -> ClientConnection {
        ClientConnection {
            limits,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            write: Write::Idle,
            read: Read::Idle,
            eof: false,
            exchange: Exchange::default(),
        }
    }

    /// Starts a request; its body follows with [`send_data`](Self::send_data) and
    /// [`finish`](Self::finish).
    ///
    /// The request line uses the URI's path and query (its authority for `CONNECT`), and
    /// `Host` is taken from the URI when the headers lack it. The version is always
    /// `HTTP/1.1`. Framing comes from `body` alone, so `headers` must not hold
    /// `Content-Length` or `Transfer-Encoding`: [`BodySize::Length`] sends `Content-Length`,
    /// [`BodySize::Unknown`] sends chunked.
    pub fn send_request(&mut self, request: Request<()>, body: BodySize) -> Result<(), Error> {
        match (&self.write, &self.read) {
            (Write::Closed, _) | (_, Read::Closed) => return Err(Error::Closed),
            (Write::Idle, Read::Idle) => {}
            _ => return Err(Error::InvalidState("the previous exchange is not finished")),
        }
        let (parts, ()) = request.into_parts();
        if head::has_framing_fields(&parts.headers) {
            return Err(Error::InvalidMessage(
                "Content-Length and Transfer-Encoding are set from BodySize",
            ));
        }
        let connect = parts.method == Method::CONNECT;
        let target = if connect {
            parts.uri.authority().map(|a| a.as_str())
        } else {
            Some(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
        };
        let Some(target) = target else {
            return Err(Error::InvalidMessage("CONNECT needs an authority"));
        };
        let host = if parts.headers.contains_key(HOST) {
            None
        } else {
            let authority = parts
                .uri
                .authority()
                .ok_or(Error::InvalidMessage("no Host"))?;
            // Userinfo never goes in Host (RFC 9110 §7.2).
            let host = authority.as_str().rsplit('@').next().unwrap_or_default();
            Some(host.to_owned())
        };

        let (length, encoder) = match body {
            BodySize::Empty if expects_content(&parts.method) => {
                (Some(0), BodyEncoder::Length { remaining: 0 })
            }
            BodySize::Empty => (None, BodyEncoder::Length { remaining: 0 }),
            BodySize::Length(n) => (Some(n), BodyEncoder::Length { remaining: n }),
            BodySize::Unknown => (None, BodyEncoder::Chunked),
        };

        let out = &mut self.out;
        out.put_slice(parts.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(target.as_bytes());
        out.put_slice(b" HTTP/1.1\r\n");
        if let Some(host) = host {
            head::write_header(out, b"host", host.as_bytes());
        }
        head::write_headers(out, &parts.headers);
        match (length, &encoder) {
            (Some(n), _) => head::write_content_length(out, n),
            (None, BodyEncoder::Chunked) => out.put_slice(b"transfer-encoding: chunked\r\n"),
            _ => {}
        }
        out.put_slice(b"\r\n");

        self.exchange = Exchange {
            head_request: parts.method == Method::HEAD,
            connect_request: connect,
            keep_alive: !head::has_token(&parts.headers, &CONNECTION, "close"),
        };
        self.write = Write::Body(encoder);
        self.read = Read::Head(HeadScanner::default());
        Ok(())
    }

    /// Sends a piece of the request body. Empty pieces send nothing.
    pub fn send_data(&mut self, data: &[u8]) -> Result<(), Error> {
        match &mut self.write {
            Write::Body(encoder) => encoder.encode(&mut self.out, data),
            Write::Closed => Err(Error::Closed),
            _ => Err(Error::InvalidState("no request body in progress")),
        }
    }

    /// Ends the request, with trailer fields if it is chunked. A body shorter than its
    /// `Content-Length` is an error, and closes the connection.
    pub fn finish(&mut self, trailers: Option<&HeaderMap>) -> Result<(), Error> {
        let encoder = match &mut self.write {
            Write::Body(encoder) => encoder,
            Write::Closed => return Err(Error::Closed),
            _ => return Err(Error::InvalidState("no request in progress")),
        };
        if let Err(e) = encoder.finish(&mut self.out, trailers) {
            self.close();
            return Err(e);
        }
        self.write = Write::Done;
        self.maybe_next_exchange();
        Ok(())
    }

    /// Takes bytes received from the server.
    pub fn handle_data(&mut self, data: &[u8]) {
        if !matches!(self.read, Read::Closed) {
            self.buf.extend_from_slice(data);
        }
    }

    /// The server closed the connection: a body delimited by closing ends here; a response
    /// cut short is [`Error::UnexpectedEof`].
    pub fn handle_eof(&mut self) {
        self.eof = true;
    }

    /// The next response event, `Ok(None)` when more bytes are needed, or the error that
    /// ends the connection.
    pub fn poll_event(&mut self) -> Result<Option<ResponseEvent>, Error> {
        match self.poll_inner() {
            Ok(event) => Ok(event),
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    /// Bytes to send to the server, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// Whether a new request may be sent on this connection now: the last exchange is
    /// complete, both sides wanted to keep the connection, the server has not closed it,
    /// and it sent nothing unasked.
    pub fn is_reusable(&self) -> bool {
        self.is_idle() && !self.eof && self.buf.is_empty()
    }

    /// Whether no exchange is in progress, so [`send_request`](Self::send_request) may be
    /// called (it may still fail with [`Error::Closed`]).
    pub fn is_idle(&self) -> bool {
        matches!((&self.write, &self.read), (Write::Idle, Read::Idle))
    }

    /// Whether the connection is finished: close it once nothing is left to transmit.
    pub fn is_closed(&self) -> bool {
        matches!(self.read, Read::Closed)
            || (matches!(self.read, Read::Idle) && self.eof && matches!(self.write, Write::Idle))
    }

    fn poll_inner(&mut self) -> Result<Option<ResponseEvent>, Error> {
        match &mut self.read {
            Read::Idle | Read::Done | Read::Closed => Ok(None),
            Read::Head(scanner) => {
                if !head::skip_leading_empty_lines(&mut self.buf, false)? {
                    return self.need_more_head();
                }
                let scan = ScanLimits {
                    max_line: None,
                    max_head: self.limits.max_head_size,
                    strict: false,
                };
                let Some(len) = scanner.scan(&self.buf, &scan)? else {
                    return self.need_more_head();
                };
                let bytes = self.buf.split_to(len).freeze();
                let head = parse_response_head(&bytes, &self.limits, &self.exchange)?;
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    self.read = Read::Head(HeadScanner::default());
                    return Ok(Some(ResponseEvent::Interim(head)));
                }
                self.exchange.keep_alive &= head.keep_alive;
                self.read = Read::Body(match head.framing {
                    Framing::Length(n) => BodyDecoder::Length { remaining: n },
                    Framing::Chunked => BodyDecoder::chunked(),
                    Framing::UntilClose => BodyDecoder::UntilClose { received: 0 },
                    Framing::Empty => BodyDecoder::Length { remaining: 0 },
                });
                Ok(Some(ResponseEvent::Head(head)))
            }
            Read::Body(decoder) => match decoder.decode(&mut self.buf, self.eof, &self.limits)? {
                Decoded::Data(data) => Ok(Some(ResponseEvent::Data(data))),
                Decoded::Pending => Ok(None),
                Decoded::End(trailers) => {
                    self.read = Read::Done;
                    self.maybe_next_exchange();
                    Ok(Some(ResponseEvent::End(trailers)))
                }
            },
        }
    }

    fn need_more_head(&mut self) -> Result<Option<ResponseEvent>, Error> {
        if self.eof {
            Err(Error::UnexpectedEof)
        } else {
            Ok(None)
        }
    }

    fn maybe_next_exchange(&mut self) {
        if matches!((&self.write, &self.read), (Write::Done, Read::Done)) {
            if self.exchange.keep_alive {
                self.write = Write::Idle;
                self.read = Read::Idle;
            } else {
                self.close();
            }
        }
    }

    fn close(&mut self) {
        self.read = Read::Closed;
        self.write = Write::Closed;
        self.buf = BytesMut::new();
    }
}

/// Methods whose requests carry content, so an empty body still says `Content-Length: 0`.
fn expects_content(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

fn parse_response_head(
    bytes: &Bytes,
    limits: &Limits,
    exchange: &Exchange,
) -> Result<ResponseHead, Error> {
    let mut stack = [httparse::EMPTY_HEADER; head::STACK_HEADERS];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= head::STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap
    };
    let mut res = httparse::Response::new(slots);
    match res.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::MalformedHead("incomplete head")),
        Err(httparse::Error::Version) => {
            let version = bytes.split(|&b| b == b' ').next().unwrap_or_default();
            return Err(if head::is_other_major_version(version) {
                Error::UnsupportedVersion
            } else {
                Error::MalformedHead("invalid version")
            });
        }
        Err(e) => return Err(head::httparse_error(e)),
    }
    let (Some(code), Some(minor)) = (res.code, res.version) else {
        return Err(Error::MalformedHead("incomplete status line"));
    };
    let status = StatusCode::from_u16(code).map_err(|_| Error::MalformedHead("invalid status"))?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let reason = res.reason.unwrap_or_default().to_owned();
    let headers = head::to_header_map(bytes, res.headers)?;
    let mut keep_alive = head::wants_keep_alive(version, &headers);

    // RFC 9112 §6.3, in its order.
    let bodiless = exchange.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Empty
    } else if exchange.connect_request && status.is_success() {
        // The connection is a tunnel now, not HTTP.
        keep_alive = false;
        Framing::UntilClose
    } else {
        match head::transfer_coding(&headers) {
            TransferCoding::Absent => match head::content_length(&headers)? {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => {
                    keep_alive = false;
                    Framing::UntilClose
                }
            },
            TransferCoding::Chunked => {
                // Transfer-Encoding overrides Content-Length, but a message with both may be
                // an attempt at smuggling: do not reuse the connection (§6.3 item 3).
                if headers.contains_key(http::header::CONTENT_LENGTH) {
                    keep_alive = false;
                }
                Framing::Chunked
            }
            TransferCoding::OtherThenChunked | TransferCoding::Invalid => {
                return Err(Error::UnsupportedTransferCoding);
            }
        }
    };
    if let Framing::Length(n) = framing
        && n > limits.max_body_size
    {
        return Err(Error::BodyTooLarge);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        keep_alive = false;
    }
    Ok(ResponseHead {
        status,
        version,
        reason,
        headers,
        framing,
        keep_alive,
    })
}
