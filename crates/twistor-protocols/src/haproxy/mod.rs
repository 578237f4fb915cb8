//! The PROXY protocol (versions 1 and 2) on the server side: a service behind HAProxy,
//! nginx or Envoy sees its real clients (Twisted's `twisted.protocols.haproxy`).
//!
//! [`HAProxyWrappingFactory`] reads the header the load balancer sends first, then builds
//! the wrapped factory's protocol for the *original* client address and shows that protocol
//! the original addresses in `peer()` and `host()`. A connection whose header is missing or
//! malformed is closed, with the reason logged. The endpoint type `haproxy:` (added by
//! [`register`]) wraps any server endpoint: `haproxy:tcp:8080`.
//!
//! ```
//! use twistor::endpoints::server_from_string;
//! use twistor::Reactor;
//!
//! twistor_protocols::haproxy::register();
//! let reactor = Reactor::new().unwrap();
//! let endpoint = server_from_string(&reactor, "haproxy:tcp:0:interface=127.0.0.1").unwrap();
//! assert_eq!(endpoint.describe(), "haproxy:tcp:0:interface=127.0.0.1");
//! ```

mod endpoint;
mod header;
mod wrapper;

pub use endpoint::{HAProxyServerEndpoint, register};
pub use header::{ProxyInfo, V1_MAX_LENGTH, V2_SIGNATURE, parse};
pub use wrapper::HAProxyWrappingFactory;
