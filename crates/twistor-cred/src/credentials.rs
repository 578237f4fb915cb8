//! What a peer presents to log in ([`Credentials`]), their [`CredentialKind`], and the
//! [`AvatarId`] a checker answers with once it accepts them.

use std::fmt;

use zeroize::Zeroizing;

/// The kinds of [`Credentials`], by which a [`Portal`](crate::Portal) picks a checker
/// (Twisted's credential interfaces: `IUsernamePassword`, `ISSHPrivateKey`, `IAnonymous`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// [`Credentials::UsernamePassword`].
    UsernamePassword,
    /// [`Credentials::SshPublicKey`].
    SshPublicKey,
    /// [`Credentials::Anonymous`].
    Anonymous,
}

/// What a peer presents to log in.
///
/// `Debug` never shows a password (nor signature bytes), so credentials may be logged.
///
/// ```
/// use twistor_cred::{CredentialKind, Credentials};
///
/// let creds = Credentials::username_password("alice", "s3cret");
/// assert_eq!(creds.kind(), CredentialKind::UsernamePassword);
/// assert!(!format!("{creds:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// A user name and a password (Twisted's `UsernamePassword`). The password is wiped
    /// from memory when dropped.
    UsernamePassword {
        /// The user name.
        username: String,
        /// The password.
        password: Zeroizing<String>,
    },
    /// An SSH public key, with or without a signature made by its private key (Twisted's
    /// `SSHPrivateKey`; RFC 4252 section 7). Without a signature the peer asks whether the
    /// key would be accepted ([`LoginError::KeyAcceptable`](crate::LoginError::KeyAcceptable)
    /// answers yes); with one it logs in if the signature over `signed_data` verifies.
    SshPublicKey {
        /// The user name.
        username: String,
        /// The public key algorithm named in the request (`ssh-ed25519`,
        /// `ecdsa-sha2-nistp256`, `rsa-sha2-256`, `rsa-sha2-512`).
        algorithm: String,
        /// The public key in SSH wire encoding (RFC 4253 section 6.6).
        key_blob: Vec<u8>,
        /// The bytes the signature covers (for SSH: the session identifier and the
        /// request, as RFC 4252 section 7 lists them).
        signed_data: Option<Vec<u8>>,
        /// The signature blob in SSH wire encoding: `string algorithm, string signature`.
        /// Given without `signed_data` (or the other way round), the login is refused.
        signature: Option<Vec<u8>>,
    },
    /// No credentials: an anonymous login (Twisted's `Anonymous`).
    Anonymous,
}

impl Credentials {
    /// A user name and password.
    pub fn username_password(
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Credentials {
        Credentials::UsernamePassword {
            username: username.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    /// An SSH public key offered without a signature: "would this key do?"
    pub fn ssh_public_key(
        username: impl Into<String>,
        algorithm: impl Into<String>,
        key_blob: impl Into<Vec<u8>>,
    ) -> Credentials {
        Credentials::SshPublicKey {
            username: username.into(),
            algorithm: algorithm.into(),
            key_blob: key_blob.into(),
            signed_data: None,
            signature: None,
        }
    }

    /// An SSH public key with a signature blob over `signed_data`.
    pub fn ssh_public_key_signed(
        username: impl Into<String>,
        algorithm: impl Into<String>,
        key_blob: impl Into<Vec<u8>>,
        signed_data: impl Into<Vec<u8>>,
        signature: impl Into<Vec<u8>>,
    ) -> Credentials {
        Credentials::SshPublicKey {
            username: username.into(),
            algorithm: algorithm.into(),
            key_blob: key_blob.into(),
            signed_data: Some(signed_data.into()),
            signature: Some(signature.into()),
        }
    }

    /// Which kind these are.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Credentials::UsernamePassword { .. } => CredentialKind::UsernamePassword,
            Credentials::SshPublicKey { .. } => CredentialKind::SshPublicKey,
            Credentials::Anonymous => CredentialKind::Anonymous,
        }
    }

    /// The user name they claim, if any.
    pub fn username(&self) -> Option<&str> {
        match self {
            Credentials::UsernamePassword { username, .. }
            | Credentials::SshPublicKey { username, .. } => Some(username),
            Credentials::Anonymous => None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::UsernamePassword { username, .. } => f
                .debug_struct("UsernamePassword")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::SshPublicKey {
                username,
                algorithm,
                key_blob,
                signed_data,
                signature,
            } => f
                .debug_struct("SshPublicKey")
                .field("username", username)
                .field("algorithm", algorithm)
                .field("key_blob_len", &key_blob.len())
                .field("signed_data_len", &signed_data.as_ref().map(Vec::len))
                .field("signature_len", &signature.as_ref().map(Vec::len))
                .finish(),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Who a checker says the peer is: the key a [`Realm`](crate::Realm) looks an avatar up by
/// (Twisted's avatar id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AvatarId {
    /// A named user.
    User(String),
    /// The anonymous user.
    Anonymous,
}

impl AvatarId {
    /// The id of the user `name`.
    pub fn user(name: impl Into<String>) -> AvatarId {
        AvatarId::User(name.into())
    }

    /// The user name, unless anonymous.
    pub fn username(&self) -> Option<&str> {
        match self {
            AvatarId::User(name) => Some(name),
            AvatarId::Anonymous => None,
        }
    }
}

impl fmt::Display for AvatarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AvatarId::User(name) => f.write_str(name),
            AvatarId::Anonymous => f.write_str("(anonymous)"),
        }
    }
}
