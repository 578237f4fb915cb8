//! The sans-IO HTTP/1.1 core: message framing and connection state, with no sockets and no
//! clocks.
//!
//! - [`ServerConnection`] reads requests and writes responses for one server connection.
//! - [`ClientConnection`] writes requests and reads responses for one client connection.
//!
//! Both are fed bytes with `handle_data`, hand back parsed messages with `poll_event` and
//! bytes to send with `poll_transmit`. The `send_*` methods and `finish` queue an outgoing
//! message. Everything a peer can send is bounded by [`Limits`]; a peer's bytes never make
//! a core panic, only return an [`Error`](crate::Error) after which the connection is done.
//!
//! Message heads use the [`http`] crate's types (`Method`, `Uri`, `StatusCode`, `HeaderMap`),
//! parsed by `httparse`; the framing rules around them (RFC 9112 §6, §7) are this module's.
//!
//! # What a server refuses
//!
//! A request is refused, and the connection closed after the error response, whenever two
//! HTTP implementations could disagree on where it ends (request smuggling):
//!
//! - `Content-Length` together with `Transfer-Encoding` (RFC 9112 §6.3 lets a server
//!   reject it; it does), and `Transfer-Encoding` in an HTTP/1.0 request (§6.1);
//! - `Transfer-Encoding` other than exactly one `chunked` as the final coding (400; a
//!   coding before `chunked`, such as `gzip, chunked`, is 501 since it is not decoded);
//! - a `Content-Length` that is not `1*DIGIT` (`+5`, `-1`, `0x10`, `5 5`, overflow), or
//!   several that differ. The same value repeated (`5, 5`, or two `Content-Length: 5`
//!   lines) is accepted as that value, which RFC 9110 §8.6 allows and no reading can
//!   disagree with;
//! - a chunk size that is not `1*HEXDIG` (no sign, `0x`, `_` or surrounding spaces, the
//!   shapes of Twisted's CVE-2022-24801), that overflows 64 bits, or chunk extensions
//!   outside the RFC 9112 §7.1.1 grammar; chunk data not followed by CRLF;
//! - a bare LF as line ending anywhere in a request (RFC 9112 §2.2 permits accepting it,
//!   which is exactly how front and back ends come to disagree), obs-fold continuation
//!   lines (§5.2), whitespace between a field name and its colon (§5.1), and a missing or
//!   repeated `Host` (§3.2).
//!
//! Responses are read a little more leniently (bare LF in the head is accepted), since a
//! client has no one behind it to smuggle to; their chunked framing is as strict.

mod body;
mod client;
mod date;
mod head;
mod server;

pub use client::{ClientConnection, ResponseEvent, ResponseHead};
pub use date::{DateCache, SERVER, http_date};
pub(crate) use server::DefaultFields;
pub use server::{Phase, RequestEvent, RequestHead, ServerConnection};

/// Bounds on what a peer may send. The defaults suit a public server.
///
/// Each bound, when exceeded, ends the connection with the error (and, on a server, the
/// status) named on its field.
///
/// ```
/// let mut limits = twistor_http::proto::Limits::default();
/// limits.max_body_size = 10 << 20; // 10 MiB uploads
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest request line, without its CRLF (default 8 KiB). Beyond it:
    /// [`Error::RequestLineTooLong`](crate::Error::RequestLineTooLong), status 414.
    pub max_request_line: usize,
    /// Largest header section, start line and final empty line included (default 64 KiB).
    /// The same bound applies to a chunked body's trailer section. Beyond it:
    /// [`Error::HeadTooLarge`](crate::Error::HeadTooLarge), status 431.
    pub max_head_size: usize,
    /// Most header fields in one header section, and in one trailer section (default 100).
    /// Beyond it: [`Error::TooManyHeaders`](crate::Error::TooManyHeaders), status 431.
    pub max_headers: usize,
    /// Largest body, counted after chunked decoding (default 1 GiB). A `Content-Length` above
    /// it is refused before any body byte is read. Beyond it:
    /// [`Error::BodyTooLarge`](crate::Error::BodyTooLarge), status 413. Bodies are streamed,
    /// never held whole, so this bounds what the application agrees to take, not memory.
    pub max_body_size: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8 * 1024,
            max_head_size: 64 * 1024,
            max_headers: 100,
            max_body_size: 1 << 30,
        }
    }
}

/// How the body of a received message is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Framing {
    /// No body: a request without `Content-Length` or `Transfer-Encoding`, `Content-Length: 0`,
    /// or a response that cannot have one (to `HEAD`, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs until the server closes the connection (responses only).
    UntilClose,
}

/// The size of a body about to be sent, which decides its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// No body. A response says `Content-Length: 0`; a request says it only for methods
    /// that expect content (e.g. `POST`), as RFC 9112 §6.3 suggests.
    Empty,
    /// Exactly this many bytes: sent with `Content-Length`.
    Length(u64),
    /// Not known in advance: sent chunked, or for a response to an HTTP/1.0 request,
    /// delimited by closing the connection.
    Unknown,
}
