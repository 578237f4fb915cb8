//! The crate's errors: [`LoginError`] (why a login failed), [`FileError`] (why a password
//! file could not be loaded) and [`HashError`] (why a string is not a password hash this
//! crate verifies).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a login failed: the error a [`Portal::login`](crate::Portal::login) Deferred fails
/// with when a checker refuses (Twisted's `UnauthorizedLogin`, `UnhandledCredentials` and
/// conch's `ValidPublicKey`). Find it in a `Failure` with
/// `failure.find::<LoginError>()`.
///
/// Only [`Unauthorized`](LoginError::Unauthorized)'s text is meant for the peer; the
/// others are for the server's log and its choice of reply.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginError {
    /// The credentials were refused. One value and one message for a wrong password, an
    /// unknown user, an unlisted key and a bad signature alike, so a peer cannot learn
    /// which names exist.
    Unauthorized,
    /// No checker is registered for this kind of credentials.
    Unhandled,
    /// The public key is authorized for this user but no signature came with it: the peer
    /// may now sign with it (the SSH server answers `SSH_MSG_USERAUTH_PK_OK`). Not a
    /// failed login, so it is neither delayed nor counted.
    KeyAcceptable,
    /// The check could not be made: a file could not be read, the reactor is gone. The
    /// text says why, for the log.
    Unavailable(String),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::Unauthorized => f.write_str("authentication failed"),
            LoginError::Unhandled => f.write_str("no checker for these credentials"),
            LoginError::KeyAcceptable => {
                f.write_str("public key acceptable: sign with it to log in")
            }
            LoginError::Unavailable(why) => write!(f, "login unavailable: {why}"),
        }
    }
}

impl std::error::Error for LoginError {}

/// Why a password file could not be loaded. Its text names the file, and the line when
/// the fault is on one: `users.txt:3: expected USER:HASH`.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },
    /// A line is not what the format allows.
    Line {
        /// The file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What was expected there.
        reason: String,
    },
}

impl FileError {
    /// The file at fault.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. } | FileError::Line { path, .. } => path,
        }
    }

    /// The line at fault (from 1), if the fault is on one.
    pub fn line(&self) -> Option<usize> {
        match self {
            FileError::Io { .. } => None,
            FileError::Line { line, .. } => Some(*line),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            FileError::Line { path, line, reason } => {
                write!(f, "{}:{line}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io { error, .. } => Some(error),
            FileError::Line { .. } => None,
        }
    }
}

/// Why a string is not a password hash this crate verifies.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashError {
    /// Not one of the accepted schemes (`$6$`, `$2b$`/`$2y$`/`$2a$`, `$argon2id$`); the
    /// text says what it looks like and how to make an accepted one.
    Unsupported(String),
    /// One of the accepted schemes, but malformed; the text says how.
    Malformed(String),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::Unsupported(why) | HashError::Malformed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for HashError {}
