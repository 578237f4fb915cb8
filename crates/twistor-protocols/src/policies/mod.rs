//! Policies: wrappers around a factory's protocols that watch or limit what passes
//! (Twisted's `twisted.protocols.policies`).
//!
//! A [`WrappingFactory`] builds each connection's protocol with the factory it wraps and
//! puts a [`ProtocolWrapper`] around it that reports to a [`Policy`]: [`IdleTimeout`],
//! [`Throttling`], [`LimitTotalConnections`], [`LimitConnectionsByPeer`] or
//! [`TrafficLogging`]. Wrapping factories nest, so policies combine. [`TimeoutMixin`] is
//! the idle timer a protocol can also embed directly.

mod limits;
mod logging;
mod throttling;
mod timeout;
mod wrapper;

pub use limits::{LimitConnectionsByPeer, LimitTotalConnections, OverflowBuilder};
pub use logging::TrafficLogging;
pub use throttling::{Throttling, ThrottlingOptions};
pub use timeout::{IdleTimeout, TimeoutMixin};
pub use wrapper::{Admission, Connection, Policy, ProtocolWrapper, WrappingFactory};
