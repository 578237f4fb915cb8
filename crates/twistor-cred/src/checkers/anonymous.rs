//! [`AllowAnonymous`]: lets anonymous logins in.

use twistor::defer::Deferred;

use crate::checkers::Checker;
use crate::credentials::{AvatarId, CredentialKind, Credentials};
use crate::error::LoginError;

/// Accepts [`Credentials::Anonymous`] as [`AvatarId::Anonymous`] (Twisted's
/// `AllowAnonymousAccess`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAnonymous;

impl Checker for AllowAnonymous {
    fn kinds(&self) -> &[CredentialKind] {
        &[CredentialKind::Anonymous]
    }

    fn check(&self, credentials: &Credentials) -> Deferred<AvatarId> {
        match credentials {
            Credentials::Anonymous => Deferred::succeeded(AvatarId::Anonymous),
            _ => Deferred::failed(LoginError::Unhandled),
        }
    }
}
