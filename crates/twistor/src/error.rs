//! The engine's error type.

use std::fmt;
use std::io;
use std::sync::Arc;

/// Everything that can go wrong inside the engine.
///
/// Errors are cheap to clone (I/O errors are shared behind an `Arc`), so one error can be
/// handed to a protocol, its factory and a `Deferred` alike.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// Binding or listening on an address failed; `addr` says which.
    CannotListen {
        /// The address that could not be listened on, e.g. `0.0.0.0:8000`.
        addr: String,
        /// What the OS said.
        source: Arc<io::Error>,
    },
    /// The peer refused the connection (nothing listens there).
    ConnectionRefused {
        /// The address that refused.
        addr: String,
    },
    /// A connection attempt did not complete in time.
    ConnectTimeout {
        /// The address being connected to.
        addr: String,
    },
    /// Looking up a host name failed.
    DnsLookup {
        /// The name that was looked up.
        host: String,
        /// Why the lookup failed.
        reason: String,
    },
    /// A connection attempt failed for another reason (unreachable network, bad bind address…).
    ConnectFailed {
        /// The address being connected to.
        addr: String,
        /// What the OS said.
        source: Arc<io::Error>,
    },
    /// A connection attempt was cancelled by `stop_connecting`.
    UserCancelledConnect,
    /// A `DelayedCall` was cancelled or reset after it had already run.
    AlreadyCalled,
    /// A `DelayedCall` was cancelled or reset after it had already been cancelled.
    AlreadyCancelled,
    /// The operation needs a running reactor, or a reactor that still exists.
    ReactorNotRunning,
    /// `run` was called on a reactor that is already running.
    AlreadyRunning,
    /// The reactor is shutting down; connections are dropped and attempts abandoned.
    ShuttingDown,
    /// `stop_connecting` was called on a connector that is not connecting.
    NotConnecting,
    /// The factory refused the connection (`build_protocol` returned `None`).
    FactoryRefused,
    /// A datagram was larger than the socket can send in one packet.
    MessageTooLong {
        /// Its size in bytes.
        size: usize,
    },
    /// An endpoint description string is malformed or names something unknown.
    BadDescription {
        /// The description as given.
        description: String,
        /// What is wrong with it, and what was expected.
        problem: String,
    },
    /// A producer was registered on a transport that already has one.
    ProducerAlreadyRegistered,
    /// A protocol callback panicked; the message is the panic's payload.
    ProtocolPanicked(String),
    /// A panic stopped the reactor: `run` returns this under
    /// [`UnhandledPanic::StopReactor`](crate::reactor::UnhandledPanic::StopReactor).
    UnhandledPanic {
        /// What panicked: "a delayed call", "the protocol of the connection from …".
        what: String,
        /// The panic's message.
        message: String,
    },
    /// The operation is not supported by this transport.
    Unsupported(&'static str),
    /// A TLS connection failed: a refused certificate, an alert from the peer, a malformed
    /// record, a handshake that timed out, a connection closed without `close_notify`...
    /// [`TlsError`](crate::tls::TlsError) says which.
    Tls(crate::tls::TlsError),
    /// A TLS configuration could not be built: no usable key or certificate, a key that
    /// does not match its certificate, an invalid server name, no versions enabled...
    TlsConfig(String),
    /// A key, certificate or trust-root file could not be used; `path` says which.
    TlsFile {
        /// The file (or directory) that was being loaded.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Any other I/O error.
    Io(Arc<io::Error>),
}

impl Error {
    /// Wraps an I/O error.
    pub fn io(err: io::Error) -> Error {
        Error::Io(Arc::new(err))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CannotListen { addr, source } => {
                write!(f, "couldn't listen on {addr}: {source}")
            }
            Error::ConnectionRefused { addr } => write!(f, "connection refused by {addr}"),
            Error::ConnectTimeout { addr } => write!(f, "connection to {addr} timed out"),
            Error::DnsLookup { host, reason } => {
                write!(f, "DNS lookup of {host:?} failed: {reason}")
            }
            Error::ConnectFailed { addr, source } => {
                write!(f, "connection to {addr} failed: {source}")
            }
            Error::UserCancelledConnect => f.write_str("connection attempt cancelled"),
            Error::AlreadyCalled => f.write_str("the delayed call has already run"),
            Error::AlreadyCancelled => f.write_str("the delayed call has already been cancelled"),
            Error::ReactorNotRunning => f.write_str("the reactor is not running"),
            Error::AlreadyRunning => f.write_str("the reactor is already running"),
            Error::ShuttingDown => f.write_str("the reactor is shutting down"),
            Error::NotConnecting => f.write_str("the connector is not connecting"),
            Error::FactoryRefused => f.write_str("the factory refused the connection"),
            Error::MessageTooLong { size } => {
                write!(f, "a datagram of {size} bytes is too long to send")
            }
            Error::BadDescription {
                description,
                problem,
            } => write!(f, "invalid endpoint description {description:?}: {problem}"),
            Error::ProducerAlreadyRegistered => {
                f.write_str("a producer is already registered on this transport")
            }
            Error::ProtocolPanicked(msg) => write!(f, "protocol callback panicked: {msg}"),
            Error::UnhandledPanic { what, message } => {
                write!(f, "unhandled panic in {what}: {message}")
            }
            Error::Unsupported(what) => write!(f, "not supported by this transport: {what}"),
            Error::Tls(err) => write!(f, "TLS error: {err}"),
            Error::TlsConfig(problem) => write!(f, "TLS configuration error: {problem}"),
            Error::TlsFile { path, problem } => write!(f, "{}: {problem}", path.display()),
            Error::Io(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::CannotListen { source, .. } | Error::ConnectFailed { source, .. } => {
                Some(&**source)
            }
            Error::Io(err) => Some(&**err),
            Error::Tls(err) => Some(err),
            _ => None,
        }
    }
}

impl From<crate::tls::TlsError> for Error {
    fn from(err: crate::tls::TlsError) -> Error {
        Error::Tls(err)
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        Error::io(err)
    }
}
