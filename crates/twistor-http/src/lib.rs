//! HTTP/1.1 for twistor.
//!
//! Today this crate holds the foundation: [`proto`], a sans-IO HTTP/1.1 core that parses
//! and writes messages for a server ([`proto::ServerConnection`]) and a client
//! ([`proto::ClientConnection`]) without touching a socket or a clock. The server (`Site`,
//! resources) and client (`Agent`) built on the twistor reactor come on top of it.
//!
//! A server connection is fed the bytes it receives, yields request events in order, and
//! queues the bytes of its responses:
//!
//! ```
//! use twistor_http::http::Response;
//! use twistor_http::proto::{BodySize, Limits, RequestEvent, ServerConnection};
//!
//! let mut conn = ServerConnection::new(Limits::default());
//! conn.handle_data(b"GET /hello HTTP/1.1\r\nHost: example.com\r\n\r\n");
//! while let Some(event) = conn.poll_event()? {
//!     match event {
//!         RequestEvent::Head(head) => assert_eq!(head.uri.path(), "/hello"),
//!         RequestEvent::Data(_) => {}
//!         RequestEvent::End(_trailers) => {
//!             conn.send_response(Response::new(()), BodySize::Length(6))?;
//!             conn.send_data(b"hello\n")?;
//!             conn.finish(None)?;
//!         }
//!     }
//! }
//! let sent = conn.poll_transmit().expect("a response");
//! assert_eq!(&sent[..], b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhello\n");
//! # Ok::<(), twistor_http::Error>(())
//! ```
//!
//! A peer that breaks the rules gets the status it earned (400, 413, 414, 431…) and a
//! closed connection; see [`Error`].

pub mod body;
pub mod client;
pub mod error;
pub mod proto;
pub mod proxy;
pub mod server;
mod sink;
pub mod static_files;

pub use error::Error;

/// The `http` crate this one speaks, re-exported so callers use the same version.
pub use http;

/// The `bytes` crate's `Bytes`, in which body pieces are handed out.
pub use bytes::Bytes;
