//! DNS for twistor, in the model of Twisted's `twisted.names`: a resolver with a cache, and
//! an authoritative, secondary and forwarding server.
//!
//! Messages, record types, EDNS, TSIG and DNSSEC record data come from
//! [`hickory-proto`](hickory_proto) (re-exported as [`wire`]); everything that decides —
//! query state machines, zone lookups, caching — lives in the sans-IO core under [`proto`],
//! which knows nothing of sockets or clocks. The reactor adapters are thin:
//!
//! - [`client`]: the [`Resolver`](client::Resolver) and its cache, answering as Deferreds (and
//!   so as futures); it also implements the engine's
//!   [`Resolver`](twistor::endpoints::Resolver) trait, so `connect_tcp` and the endpoints can
//!   look names up through it instead of a `getaddrinfo` thread.
//! - [`server`]: UDP and TCP listeners answering from a [`Catalog`](proto::authority::Catalog)
//!   of zones.
//!
//! Modules:
//!
//! | module | what |
//! |---|---|
//! | [`proto::zonefile`] | BIND-format zone files, with file and line in every error |
//! | [`proto::zone`] | one zone's records and the lookups an authoritative server makes |
//! | [`proto::authority`] | the server's answering logic over a catalog of zones |
//! | [`proto::query`] | the client's query state machine (ids, retries, TCP on truncation) |
//! | [`proto::iterate`] | the recursive resolver's judgement of replies (referrals, glue, lameness) and its delegation cache |
//! | [`proto::cache`] | the resolver's cache (TTLs, negative caching per RFC 2308) |
//! | [`system`] | `/etc/resolv.conf` and `/etc/hosts` |
//! | [`client`] | resolvers on the reactor |
//! | [`recursive`] | the recursive resolver on the reactor, from the root hints down |
//! | [`server`] | the server on the reactor |
//! | [`error`] | errors |

pub mod client;
pub mod error;
mod flight;
pub mod forward;
pub mod notify;
pub mod proto;
pub mod recursive;
pub mod secondary;
pub mod server;
pub mod system;

/// The DNS message types this crate speaks in (`hickory-proto`, re-exported so users name
/// the same version).
pub use hickory_proto as wire;

pub use error::Error;
