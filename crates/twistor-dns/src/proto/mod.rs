//! The sans-IO core: no sockets, no clock (time comes in as an argument), no reactor.

pub mod answers;
pub mod authority;
pub mod cache;
pub mod expiring;
pub mod header;
pub mod iterate;
pub mod query;
pub mod rrl;
pub mod zone;
pub mod zonefile;
