//! twistor-protocols: the building blocks most protocols are made of, after Twisted's
//! `twisted.protocols`.
//!
//! - [`basic`]: framing — lines ([`LineReceiver`](basic::LineReceiver)), netstrings,
//!   length-prefixed strings — and [`FileSender`](basic::FileSender);
//! - [`policies`]: wrappers around a factory's protocols — idle timeouts, throttling,
//!   connection limits, traffic logging;
//! - [`portforward`]: a TCP proxy;
//! - [`haproxy`]: the PROXY protocol (v1 and v2) so a service behind a load balancer sees
//!   its real clients;
//! - [`amp`]: the Asynchronous Messaging Protocol, wire-compatible with Twisted's.
//!
//! ```
//! use twistor::Protocol;
//! use twistor_protocols::basic::{LineHandler, LineReceiver, Lines};
//! use twistor_testing::StringTransport;
//!
//! struct Greeter;
//! impl LineHandler for Greeter {
//!     fn line_received(&mut self, lines: &mut Lines<'_>, name: &[u8]) {
//!         lines.send_line(&[b"hello, ", name].concat());
//!     }
//! }
//!
//! let st = StringTransport::new();
//! let mut proto = LineReceiver::new(Greeter);
//! proto.make_connection(&st.transport());
//! proto.data_received(&st.transport(), b"world\r\n");
//! assert_eq!(st.value(), b"hello, world\r\n");
//! ```

pub mod amp;
pub mod basic;
pub mod error;
pub mod haproxy;
pub mod policies;
pub mod portforward;

pub use error::Error;
