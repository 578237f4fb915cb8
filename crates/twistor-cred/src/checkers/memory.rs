//! [`InMemoryChecker`]: users and passwords held in memory.

use std::collections::HashMap;
use std::fmt;

use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;
use twistor::defer::Deferred;
use zeroize::Zeroizing;

use crate::checkers::Checker;
use crate::credentials::{AvatarId, CredentialKind, Credentials};
use crate::error::{HashError, LoginError};
use crate::hash::PasswordHash;

/// User names and passwords (plain, or as hashes) held in memory (Twisted's
/// `InMemoryUsernamePasswordDatabaseDontUse`): for tests, examples and passwords made at
/// run time. Servers read a [`PasswordFile`](crate::checkers::PasswordFile) instead.
///
/// Plain passwords are compared in constant time (as SHA-256 digests, so their lengths
/// do not show either). Hashed entries are verified **on the calling thread**: fine for
/// tests; a slow hash (bcrypt, argon2) would stall the reactor, which is why
/// `PasswordFile` verifies on the thread pool. An unknown user is checked against the
/// first entry's secret all the same, and refused with the same
/// [`LoginError::Unauthorized`].
///
/// ```
/// use twistor_cred::checkers::{Checker, InMemoryChecker};
/// use twistor_cred::{AvatarId, Credentials};
///
/// let checker = InMemoryChecker::new().with_user("alice", "wonderland");
/// let d = checker.check(&Credentials::username_password("alice", "wonderland"));
/// assert_eq!(d.try_result().unwrap().unwrap(), AvatarId::user("alice"));
/// ```
#[derive(Default)]
pub struct InMemoryChecker {
    users: HashMap<String, Secret>,
    /// What an unknown user's password is checked against: the first entry's secret.
    decoy: Option<Secret>,
}

#[derive(Clone)]
enum Secret {
    Plain(Zeroizing<String>),
    Hashed(PasswordHash),
}

impl Secret {
    fn matches(&self, password: &str) -> bool {
        match self {
            Secret::Plain(expected) => {
                let (a, b) = (
                    digest(&SHA256, expected.as_bytes()),
                    digest(&SHA256, password.as_bytes()),
                );
                a.as_ref().ct_eq(b.as_ref()).into()
            }
            Secret::Hashed(hash) => hash.verify(password.as_bytes()),
        }
    }
}

impl InMemoryChecker {
    /// A checker with no users.
    pub fn new() -> InMemoryChecker {
        InMemoryChecker::default()
    }

    /// Adds (or replaces) `username` with a plain `password`.
    pub fn add_user(&mut self, username: impl Into<String>, password: impl Into<String>) {
        self.insert(
            username.into(),
            Secret::Plain(Zeroizing::new(password.into())),
        );
    }

    /// Adds (or replaces) `username` with a password `hash` in one of the schemes of
    /// [`hash`](crate::hash).
    pub fn add_hashed_user(
        &mut self,
        username: impl Into<String>,
        hash: &str,
    ) -> Result<(), HashError> {
        let hash = PasswordHash::parse(hash)?;
        self.insert(username.into(), Secret::Hashed(hash));
        Ok(())
    }

    /// [`add_user`](InMemoryChecker::add_user), as a builder.
    pub fn with_user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.add_user(username, password);
        self
    }

    fn insert(&mut self, username: String, secret: Secret) {
        if self.decoy.is_none() {
            self.decoy = Some(secret.clone());
        }
        self.users.insert(username, secret);
    }
}

impl Checker for InMemoryChecker {
    fn kinds(&self) -> &[CredentialKind] {
        &[CredentialKind::UsernamePassword]
    }

    fn check(&self, credentials: &Credentials) -> Deferred<AvatarId> {
        let Credentials::UsernamePassword { username, password } = credentials else {
            return Deferred::failed(LoginError::Unhandled);
        };
        // An unknown user costs the same comparison as a known one.
        let (secret, known) = match self.users.get(username) {
            Some(secret) => (Some(secret), true),
            None => (self.decoy.as_ref(), false),
        };
        let matched = secret.is_some_and(|s| s.matches(password));
        if matched && known {
            Deferred::succeeded(AvatarId::user(username.clone()))
        } else {
            Deferred::failed(LoginError::Unauthorized)
        }
    }
}

impl fmt::Debug for InMemoryChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryChecker")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}
