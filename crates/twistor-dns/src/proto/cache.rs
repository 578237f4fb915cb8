//! The resolver's cache.
