//! The server's answering logic over a catalog of zones.
