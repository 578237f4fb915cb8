//! The DNS server on the reactor.
