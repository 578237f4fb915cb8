//! Checkers: what decides whether credentials are good (Twisted's `ICredentialsChecker`
//! and its implementations).
//!
//! | checker | credentials | users from |
//! |---|---|---|
//! | [`InMemoryChecker`] | user name and password | a table built in code (tests, examples) |
//! | [`PasswordFile`] | user name and password | a users file of one-way hashes, reloaded when it changes |
//! | [`AuthorizedKeys`] | SSH public key | one `authorized_keys` file per user |
//! | [`AllowAnonymous`] | anonymous | anyone |

mod anonymous;
mod authorized_keys;
mod memory;
mod password_file;

pub use anonymous::AllowAnonymous;
pub use authorized_keys::{AuthorizedKeys, username_is_safe};
pub use memory::InMemoryChecker;
pub use password_file::{MAX_PASSWORD_LEN, PasswordFile};

use twistor::defer::Deferred;

use crate::credentials::{AvatarId, CredentialKind, Credentials};

/// Decides whether credentials are good, and whose they are (Twisted's
/// `ICredentialsChecker`). Register checkers with a [`Portal`](crate::Portal).
pub trait Checker {
    /// The kinds of credentials this checker handles.
    fn kinds(&self) -> &[CredentialKind];

    /// Checks `credentials`: fires with the avatar id they prove, or fails with a
    /// [`LoginError`](crate::LoginError) (`Unauthorized` for every kind of "no", so a peer
    /// cannot tell a wrong password from an unknown user).
    fn check(&self, credentials: &Credentials) -> Deferred<AvatarId>;
}
