//! twistor: an event-driven networking engine in the model of Python's Twisted.
//!
//! A [`Reactor`] waits on sockets, timers, signals and other threads, and dispatches each
//! event to a callback. A [`Protocol`] handles one connection: it is
//! told when the connection is made, receives bytes, and answers through its
//! [`Transport`]. A [`Factory`] builds a protocol for each connection.
//!
//! Coming from Twisted? `docs/guide.md` (the `twistor-guide` crate's documentation) maps
//! each Twisted idiom to its twistor counterpart, with examples that are compiled and run.
//! [`log::init`] sets up logging in one line.
//!
//! ```no_run
//! use twistor::protocol::{factory, Protocol};
//! use twistor::{Reactor, Transport};
//!
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
//!         transport.write(data);
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! reactor.listen_tcp(8000, factory(|_addr| Echo))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod address;
mod adopt;
pub mod application;
pub mod connector;
pub mod datagram;
pub mod defer;
pub mod endpoints;
pub mod error;
pub mod inotify;
pub mod log;
pub mod port;
pub mod process;
pub mod protocol;
pub mod reactor;
pub mod reconnect;
pub mod stdio;
pub mod task;
pub mod tcp;
pub mod threads;
pub mod tls;
pub mod transport;
pub mod udp;
pub mod unix;
pub mod unstable;

mod connecting;
mod flags;
mod guard;
mod listener;
mod outbuf;
mod pipe;
mod resolve;
mod stream;
mod sys;

pub use resolve::resolve;

pub use address::Address;
pub use connector::Connector;
pub use datagram::DatagramTransport;
pub use error::Error;
pub use port::ListeningPort;
pub use protocol::{ClientFactory, CloseReason, DatagramProtocol, Factory, Protocol};
pub use reactor::{DelayedCall, Reactor, ReactorHandle, ReactorTime};
pub use transport::{Producer, Transport};
