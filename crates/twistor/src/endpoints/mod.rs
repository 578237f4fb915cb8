//! Endpoints: where to listen or connect, named by strings such as `tcp:8080` (Twisted's
//! `twisted.internet.endpoints`).
//!
//! ```
//! use twistor::endpoints::server_from_string;
//! use twistor::Reactor;
//!
//! let reactor = Reactor::new().unwrap();
//! let endpoint = server_from_string(&reactor, "tcp:0:interface=127.0.0.1").unwrap();
//! assert!(server_from_string(&reactor, "tcp:http").is_err());
//! ```

mod description;
mod server;

pub use description::Description;
pub use server::{ServerEndpoint, TcpServerEndpoint, server_from_string};
