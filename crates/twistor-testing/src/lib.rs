//! Test kit for twistor, after Twisted's own: a deterministic [`Clock`], a
//! [`StringTransport`] that records what a protocol does, a [`MemoryReactor`] that records
//! listen and connect calls, and a [`ConnectedPair`] that joins two protocols in memory. With
//! them, protocols and anything that schedules work are tested without sockets or sleeping.
//! Tests that do need a real reactor take it from [`reactor()`]: a panic in any of its
//! callbacks, or a hang, fails the test.

mod clock;
pub mod dns;
mod memory_reactor;
mod pair;
pub mod process;
mod reactor;
mod string_transport;
mod tempdir;

pub use clock::Clock;
pub use memory_reactor::{FakeConnector, FakePort, MemoryReactor, TcpClientCall, TcpServerCall};
pub use pair::{ConnectedPair, MemoryTransport};
pub use reactor::{TEST_TIMEOUT, reactor, reactor_with_timeout};
pub use string_transport::{ProducerState, StringTransport};
pub use tempdir::TempDir;
