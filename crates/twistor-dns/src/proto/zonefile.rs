//! BIND-format zone files.
