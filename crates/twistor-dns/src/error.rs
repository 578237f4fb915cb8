//! Errors.

use std::fmt;

/// What went wrong in a DNS operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A zone, resolv.conf or hosts file is malformed: file, line and why.
    File {
        /// The file's path as given.
        path: String,
        /// Its 1-based line.
        line: usize,
        /// What was expected there.
        reason: String,
    },
    /// A file could not be read.
    Io {
        /// The file's path as given.
        path: String,
        /// The system's reason.
        reason: String,
    },
    /// No server answered in time, after every retry.
    Timeout {
        /// The name looked up.
        name: String,
    },
    /// The name does not exist (NXDOMAIN).
    NoSuchName {
        /// The name looked up.
        name: String,
    },
    /// The name exists but has no records of the type asked for (NODATA).
    NoRecords {
        /// The name looked up.
        name: String,
        /// The record type asked for.
        record_type: String,
    },
    /// A server answered with an error code (SERVFAIL, REFUSED, …).
    Server {
        /// The name looked up.
        name: String,
        /// The response code, as text.
        code: String,
    },
    /// A recursive resolution gave up: no server of a zone was usable, a CNAME chain
    /// looped or was too long, or the query budget or deadline was spent.
    Recursion {
        /// The name being resolved.
        name: String,
        /// Why it gave up.
        reason: String,
    },
    /// A message could not be decoded or encoded.
    Message(String),
    /// A name or argument is not valid DNS.
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::File { path, line, reason } => write!(f, "{path}:{line}: {reason}"),
            Error::Io { path, reason } => write!(f, "{path}: {reason}"),
            Error::Timeout { name } => write!(f, "no DNS server answered for {name}"),
            Error::NoSuchName { name } => write!(f, "{name}: no such name (NXDOMAIN)"),
            Error::NoRecords { name, record_type } => {
                write!(f, "{name}: no {record_type} records")
            }
            Error::Server { name, code } => write!(f, "{name}: the server answered {code}"),
            Error::Recursion { name, reason } => write!(f, "{name}: cannot resolve: {reason}"),
            Error::Message(why) => write!(f, "bad DNS message: {why}"),
            Error::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {}
