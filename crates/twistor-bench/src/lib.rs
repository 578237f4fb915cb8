//! twistor-bench: load generators and comparison peers for twistor.
//!
//! The `twistor-bench` binary measures twistor's echo server side by side with tokio
//! (`current_thread` and `multi_thread`), a minimal C epoll loop and Twisted on CPython, and
//! twistor-http's hello world beside hyper, a C responder and `twisted.web`, and twistor's
//! DNS server beside NSD, Knot DNS and Twisted's (`dns`, loaded by `dnsperf`), in the same run
//! on the same pinned core, and reports ratios. See the crate's README for the
//! commands and how to read their output. These are benchmarks, not tests: CI may build them
//! but never times them.
//!
//! The pieces are usable on their own, e.g. a one-connection ping-pong against a server:
//!
//! ```no_run
//! use std::time::Duration;
//! use twistor_bench::load::{ping_pong, Limit};
//!
//! let addr = "127.0.0.1:8000".parse()?;
//! let limit = Limit::Time { warmup: Duration::from_millis(200), measure: Duration::from_secs(1) };
//! let result = ping_pong(addr, 1, 64, limit, None)?;
//! println!("{:.0} round trips/s, p99 {} ns", result.rate(), result.latency.p99_ns);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod counts;
pub mod dns;
pub mod echo;
pub mod http;
pub mod load;
pub mod micro;
pub mod peers;
pub mod procfs;
pub mod report;
pub mod server;
pub mod stats;
pub mod suite;
