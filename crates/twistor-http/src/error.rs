//! The crate's error type.

use std::fmt;

use http::StatusCode;

/// Everything that can go wrong in twistor-http.
///
/// Errors that come from the peer's bytes say, through [`Error::status`], which status a
/// server answers with. After any of them the connection is finished: the cores refuse to
/// parse further, because once framing is in doubt nothing after it can be trusted.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The request line is longer than `Limits::max_request_line` (414).
    RequestLineTooLong,
    /// The header section (or the trailer section) is larger than `Limits::max_head_size` (431).
    HeadTooLarge,
    /// The header section (or the trailer section) has more than `Limits::max_headers` fields (431).
    TooManyHeaders,
    /// The body is larger than `Limits::max_body_size` (413).
    BodyTooLarge,
    /// The start line or a header field is malformed; the text says what (400).
    MalformedHead(&'static str),
    /// A line ends in a bare LF (no CR), which peers disagree on and smugglers use (400).
    BareLineFeed,
    /// The request is HTTP/1.1 but has no `Host` field, or has more than one (400).
    InvalidHost,
    /// The version is well formed but its major number is not 1, e.g. `HTTP/2.0` (505).
    /// A malformed version is [`Error::MalformedHead`].
    UnsupportedVersion,
    /// A `Content-Length` value is not a plain decimal number, or overflows (400).
    InvalidContentLength,
    /// Several `Content-Length` values that differ (400).
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` in a request (400).
    ContentLengthWithTransferEncoding,
    /// `Transfer-Encoding` whose final coding is not `chunked`, repeats `chunked`, or
    /// appears in an HTTP/1.0 request (400).
    InvalidTransferEncoding,
    /// A transfer coding other than `chunked` that this crate does not decode (501).
    UnsupportedTransferCoding,
    /// A chunk-size line is not `1*HEXDIG [chunk-ext] CRLF`, or the size overflows (400).
    InvalidChunkSize,
    /// Chunk data is not followed by CRLF, or a chunk line is too long (400).
    InvalidChunk,
    /// An `Expect` value other than `100-continue` (417).
    UnsupportedExpectation,
    /// The peer was too slow: the server's read timer ran out in the middle of a request (408).
    Timeout,
    /// The peer closed the connection in the middle of a message.
    UnexpectedEof,
    /// The server answered when no request was outstanding, or the response is malformed
    /// in a way not covered above (client side).
    UnexpectedResponse(&'static str),
    /// The header section, status or method handed to a `send_*` method cannot be sent;
    /// the text says why (a programming error, not the peer's).
    InvalidMessage(&'static str),
    /// A `send_*` or `finish` call came at the wrong moment (e.g. a response with no request
    /// waiting for one, or more body bytes than the announced length).
    InvalidState(&'static str),
    /// The connection is closed or closing; nothing more can be sent or received.
    Closed,
    /// The connection went away before the message was complete; [`Lost`] says how, and
    /// carries the engine's error when there is one (it is also this error's `source`).
    ConnectionLost(Lost),
    /// A client could not connect to the server; the engine's error says why (refused,
    /// timed out, DNS, TLS…), and is also this error's `source`.
    ConnectFailed(twistor::Error),
    /// A URL the client was given, or a `Location` it was sent, cannot be used; the text
    /// says why.
    InvalidUrl(String),
    /// The client followed this many redirects and was sent yet another.
    TooManyRedirects(u32),
    /// The server did not answer (or went quiet in the middle of its answer) within the
    /// client's timeout.
    ResponseTimeout,
    /// A `Content-Encoding` the client decodes (gzip) is corrupt; the text says how.
    Decode(String),
    /// Something this crate does not do (yet); the text says what.
    Unsupported(&'static str),
}

impl Error {
    /// The status a server answers with when this error comes from a request, or `None`
    /// when no answer is due (the peer went away, or the error is not the peer's).
    pub fn status(&self) -> Option<StatusCode> {
        Some(match self {
            Error::RequestLineTooLong => StatusCode::URI_TOO_LONG,
            Error::HeadTooLarge | Error::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Error::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Error::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            Error::UnsupportedExpectation => StatusCode::EXPECTATION_FAILED,
            Error::Timeout => StatusCode::REQUEST_TIMEOUT,
            Error::MalformedHead(_)
            | Error::BareLineFeed
            | Error::InvalidHost
            | Error::InvalidContentLength
            | Error::ConflictingContentLength
            | Error::ContentLengthWithTransferEncoding
            | Error::InvalidTransferEncoding
            | Error::InvalidChunkSize
            | Error::InvalidChunk => StatusCode::BAD_REQUEST,
            Error::UnexpectedEof
            | Error::UnexpectedResponse(_)
            | Error::InvalidMessage(_)
            | Error::InvalidState(_)
            | Error::Closed
            | Error::ConnectionLost(_)
            | Error::ConnectFailed(_)
            | Error::InvalidUrl(_)
            | Error::TooManyRedirects(_)
            | Error::ResponseTimeout
            | Error::Decode(_)
            | Error::Unsupported(_) => return None,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::RequestLineTooLong => f.write_str("request line too long"),
            Error::HeadTooLarge => f.write_str("header section too large"),
            Error::TooManyHeaders => f.write_str("too many header fields"),
            Error::BodyTooLarge => f.write_str("body too large"),
            Error::MalformedHead(what) => write!(f, "malformed message head: {what}"),
            Error::BareLineFeed => f.write_str("line ends in a bare LF"),
            Error::InvalidHost => f.write_str("missing or repeated Host field"),
            Error::UnsupportedVersion => f.write_str("unsupported HTTP version"),
            Error::InvalidContentLength => f.write_str("invalid Content-Length"),
            Error::ConflictingContentLength => f.write_str("conflicting Content-Length values"),
            Error::ContentLengthWithTransferEncoding => {
                f.write_str("both Content-Length and Transfer-Encoding")
            }
            Error::InvalidTransferEncoding => f.write_str("invalid Transfer-Encoding"),
            Error::UnsupportedTransferCoding => f.write_str("unsupported transfer coding"),
            Error::InvalidChunkSize => f.write_str("invalid chunk size line"),
            Error::InvalidChunk => f.write_str("invalid chunk framing"),
            Error::UnsupportedExpectation => f.write_str("unsupported Expect value"),
            Error::Timeout => f.write_str("timed out waiting for the request"),
            Error::UnexpectedEof => f.write_str("connection closed in the middle of a message"),
            Error::UnexpectedResponse(what) => write!(f, "unexpected response: {what}"),
            Error::InvalidMessage(what) => write!(f, "cannot send message: {what}"),
            Error::InvalidState(what) => write!(f, "call out of order: {what}"),
            Error::Closed => f.write_str("connection closed"),
            Error::ConnectionLost(how) => write!(f, "connection lost: {how}"),
            Error::ConnectFailed(why) => write!(f, "cannot connect: {why}"),
            Error::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Error::TooManyRedirects(n) => write!(f, "more than {n} redirects"),
            Error::ResponseTimeout => f.write_str("timed out waiting for the response"),
            Error::Decode(why) => write!(f, "cannot decode the body: {why}"),
            Error::Unsupported(what) => write!(f, "not supported: {what}"),
        }
    }
}

/// Errors compare by value; engine errors inside (which have no equality of their own)
/// compare by their text.
impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        match (self, other) {
            (Error::ConnectionLost(a), Error::ConnectionLost(b)) => a == b,
            (Error::ConnectFailed(a), Error::ConnectFailed(b)) => a.to_string() == b.to_string(),
            // Every other variant holds only plain values, which `Debug` shows in full.
            _ => format!("{self:?}") == format!("{other:?}"),
        }
    }
}

impl Eq for Error {}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ConnectionLost(Lost::Failed(err)) | Error::ConnectFailed(err) => Some(err),
            _ => None,
        }
    }
}

/// How a connection went away before a message was complete: the cause in
/// [`Error::ConnectionLost`].
///
/// ```
/// use twistor_http::error::{Error, Lost};
///
/// fn retry_worthy(err: &Error) -> bool {
///     matches!(err, Error::ConnectionLost(Lost::Closed | Lost::Failed(_)))
/// }
/// assert!(retry_worthy(&Error::ConnectionLost(Lost::Closed)));
/// assert!(!retry_worthy(&Error::ConnectionLost(Lost::TimedOut)));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Lost {
    /// The peer closed the connection cleanly (a FIN, TLS `close_notify`).
    Closed,
    /// The connection failed: reset by the peer, an I/O or TLS error, the reactor shutting
    /// down. The engine's error says which.
    Failed(twistor::Error),
    /// This side closed it: the peer broke the protocol, or the application aborted.
    Aborted,
    /// This side closed it because the peer was too slow (a read or send timeout).
    TimedOut,
    /// The body being sent failed (client side: its producer gave up); the text says why.
    BodyFailed(String),
    /// Whoever consumed the body stopped it: its own connection went away (a proxy's
    /// client left), so this one was dropped.
    Stopped,
}

impl Lost {
    /// The cause for a connection that ended with `reason`.
    pub fn from_close(reason: &twistor::protocol::CloseReason) -> Lost {
        use twistor::protocol::CloseReason;
        match reason {
            CloseReason::Done => Lost::Closed,
            CloseReason::Aborted => Lost::Aborted,
            CloseReason::Lost(err) => Lost::Failed(err.clone()),
            _ => Lost::Failed(twistor::Error::Unsupported("an unknown close reason")),
        }
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::Closed => f.write_str("the peer closed the connection"),
            Lost::Failed(err) => write!(f, "{err}"),
            Lost::Aborted => f.write_str("aborted"),
            Lost::TimedOut => f.write_str("the peer was too slow"),
            Lost::BodyFailed(why) => write!(f, "the body failed: {why}"),
            Lost::Stopped => f.write_str("the body's consumer went away"),
        }
    }
}

/// Causes compare by kind; two engine errors compare by their text (the engine's error
/// has no equality of its own).
impl PartialEq for Lost {
    fn eq(&self, other: &Lost) -> bool {
        match (self, other) {
            (Lost::Failed(a), Lost::Failed(b)) => a.to_string() == b.to_string(),
            (Lost::BodyFailed(a), Lost::BodyFailed(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for Lost {}
