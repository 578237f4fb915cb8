//! The sans-IO core: no sockets, no clock (time comes in as an argument), no reactor.

pub mod authority;
pub mod cache;
pub mod query;
pub mod zone;
pub mod zonefile;
