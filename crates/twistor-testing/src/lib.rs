//! Test kit for twistor: a deterministic [`Clock`], and (as they land) `StringTransport`,
//! `MemoryReactor` and in-memory connected pairs, so protocols and anything that schedules
//! work can be tested without sockets or sleeping.

mod clock;

pub use clock::Clock;
