//! The crate's error type.

use std::fmt;

/// Everything that can go wrong in this crate's framings, wrappers and AMP.
///
/// Errors about bytes a peer sent close that peer's connection (with this error logged);
/// errors about what the local program asked to send are returned to it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A string is too long for the length prefix (or limit) of its framing; nothing was
    /// sent.
    StringTooLong {
        /// The string's length in bytes.
        length: usize,
        /// The longest string the framing can carry.
        max: usize,
    },
    /// A netstring's length is not a decimal number (`<digits>:`), has a leading zero, or
    /// has more digits than the length limit allows.
    NetstringBadLength(String),
    /// A netstring's length is over the receiver's limit.
    NetstringTooLong {
        /// The announced length.
        length: u64,
        /// The receiver's limit.
        max: usize,
    },
    /// A netstring's data is not followed by `,`.
    NetstringMissingComma,
    /// A PROXY protocol header is malformed or missing; the text says what was wrong.
    ProxyHeader(String),
    /// An AMP key is empty or longer than 255 bytes.
    AmpKeyTooLong {
        /// The key (lossily decoded).
        key: String,
        /// Its length in bytes.
        length: usize,
    },
    /// An AMP value is longer than 65,535 bytes.
    AmpValueTooLong {
        /// The key the value belongs to.
        key: String,
        /// The value's length in bytes.
        length: usize,
    },
    /// An AMP argument or response value is missing, of the wrong type, or does not parse.
    AmpBadArgument {
        /// The argument's name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An AMP box breaks the protocol (no `_ask`, `_answer` or `_error`, an unknown tag...).
    AmpProtocol(String),
    /// The peer answered an AMP command with an error: `code` is one the command declares
    /// (Twisted's mapped exception types).
    AmpRemote {
        /// The error code (e.g. `ZERO_DIVISION`).
        code: String,
        /// The peer's description.
        description: String,
    },
    /// The peer answered with an error code the command does not declare (Twisted's
    /// `UnknownRemoteError`).
    AmpUnknownRemote {
        /// The code the peer sent (`UNKNOWN` when its responder failed unexpectedly).
        code: String,
        /// The peer's description.
        description: String,
    },
    /// The peer has no responder for the command (Twisted's `UnhandledCommand`).
    AmpUnhandledCommand(String),
    /// The connection is not up, or was lost before the answer came.
    NotConnected,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::StringTooLong { length, max } => write!(
                f,
                "a string of {length} bytes is too long for this framing (at most {max})"
            ),
            Error::NetstringBadLength(why) => write!(f, "bad netstring length: {why}"),
            Error::NetstringTooLong { length, max } => {
                write!(f, "netstring of {length} bytes is over the limit of {max}")
            }
            Error::NetstringMissingComma => f.write_str("netstring data is not followed by ','"),
            Error::ProxyHeader(why) => write!(f, "bad PROXY protocol header: {why}"),
            Error::AmpKeyTooLong { key, length } => write!(
                f,
                "AMP key {key:?} is {length} bytes long (keys are 1 to 255 bytes)"
            ),
            Error::AmpValueTooLong { key, length } => write!(
                f,
                "AMP value for key {key:?} is {length} bytes long (at most 65535)"
            ),
            Error::AmpBadArgument { name, problem } => {
                write!(f, "AMP argument {name:?}: {problem}")
            }
            Error::AmpProtocol(why) => write!(f, "AMP protocol error: {why}"),
            Error::AmpRemote { code, description } => {
                write!(f, "remote error {code}: {description}")
            }
            Error::AmpUnknownRemote { code, description } => {
                write!(f, "unknown remote error {code}: {description}")
            }
            Error::AmpUnhandledCommand(description) => {
                write!(f, "the peer does not handle the command: {description}")
            }
            Error::NotConnected => f.write_str("not connected"),
        }
    }
}

impl std::error::Error for Error {}
