//! Why a TLS connection failed, as a value a caller can match.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use rustls::{AlertDescription, CertificateError};

/// Why a TLS connection failed (the engine's [`Error::Tls`](crate::Error::Tls)).
///
/// ```
/// use twistor::tls::{CertificateError, TlsError};
/// use twistor::{CloseReason, Error};
///
/// fn explain(reason: &CloseReason) -> &'static str {
///     match reason {
///         CloseReason::Lost(Error::Tls(TlsError::Certificate(CertificateError::UnknownIssuer))) => {
///             "the server's certificate is not from a CA we trust"
///         }
///         CloseReason::Lost(Error::Tls(tls)) if tls.is_expired_certificate() => {
///             "the certificate has expired"
///         }
///         CloseReason::Lost(Error::Tls(TlsError::HandshakeTimeout { .. })) => "too slow",
///         _ => "something else",
///     }
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TlsError {
    /// The peer's certificate was refused: expired, from an unknown issuer, for another
    /// name, revoked... (checked on our side).
    Certificate(CertificateError),
    /// The peer sent a fatal alert: it refused our certificate, our versions, our
    /// ciphers...
    AlertReceived(AlertDescription),
    /// Another failure rustls reported: a malformed record, a handshake message out of
    /// order, no version or cipher in common...
    Protocol(rustls::Error),
    /// The peer closed the connection before the handshake completed.
    ClosedDuringHandshake,
    /// The peer closed the connection without TLS `close_notify`, so the data may have
    /// been cut short.
    Truncated,
    /// The handshake did not complete within the configured time
    /// ([`ServerTlsConfig::with_handshake_timeout`](super::ServerTlsConfig::with_handshake_timeout)).
    HandshakeTimeout {
        /// The time it had.
        after: Duration,
    },
    /// Moving bytes through the TLS layer failed.
    Io(Arc<io::Error>),
}

impl TlsError {
    /// Whether the peer's certificate was refused because it has expired.
    pub fn is_expired_certificate(&self) -> bool {
        matches!(
            self,
            TlsError::Certificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        )
    }

    /// Whether the peer's certificate was refused because its issuer is not trusted.
    pub fn is_unknown_issuer(&self) -> bool {
        matches!(self, TlsError::Certificate(CertificateError::UnknownIssuer))
    }

    /// The certificate problem, if the peer's certificate was refused.
    pub fn certificate_error(&self) -> Option<&CertificateError> {
        match self {
            TlsError::Certificate(err) => Some(err),
            _ => None,
        }
    }

    /// Sorts a rustls error into the variant a caller matches.
    pub(crate) fn from_rustls(err: rustls::Error) -> TlsError {
        match err {
            rustls::Error::InvalidCertificate(cert) => TlsError::Certificate(cert),
            rustls::Error::AlertReceived(alert) => TlsError::AlertReceived(alert),
            other => TlsError::Protocol(other),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Certificate(err) => write!(f, "certificate verification failed: {err}"),
            TlsError::AlertReceived(alert) => write!(f, "the peer sent a TLS alert: {alert:?}"),
            TlsError::Protocol(err) => err.fmt(f),
            TlsError::ClosedDuringHandshake => {
                f.write_str("the peer closed the connection during the TLS handshake")
            }
            TlsError::Truncated => {
                f.write_str("the peer closed the connection without sending TLS close_notify")
            }
            TlsError::HandshakeTimeout { after } => {
                write!(f, "the TLS handshake did not complete in {after:?}")
            }
            TlsError::Io(err) => write!(f, "cannot move TLS records: {err}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Protocol(err) => Some(err),
            TlsError::Io(err) => Some(&**err),
            _ => None,
        }
    }
}
