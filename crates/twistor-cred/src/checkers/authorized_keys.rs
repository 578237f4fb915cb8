//! [`AuthorizedKeys`]: SSH public keys listed in per-user `authorized_keys` files.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ring::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA512, RsaPublicKeyComponents,
};
use signature::Verifier;
use ssh_key::authorized_keys::Entry;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, PublicKey, Signature};
use twistor::Reactor;
use twistor::defer::Deferred;
use twistor::reactor::WeakReactor;

use crate::checkers::Checker;
use crate::credentials::{AvatarId, CredentialKind, Credentials};
use crate::error::LoginError;

/// The largest `authorized_keys` file read (a user may be able to write their own).
const MAX_FILE_SIZE: u64 = 1 << 20;

/// Checks SSH public keys against the user's `authorized_keys` file (Twisted conch's
/// `SSHPublicKeyChecker` over `UNIXAuthorizedKeysFiles`), in OpenSSH's format: one key per
/// line, `ALGORITHM BASE64 [COMMENT]`; blank lines and lines starting with `#` are skipped.
///
/// - **Keys accepted**: `ssh-ed25519`, `ecdsa-sha2-nistp256`, and `ssh-rsa` keys of 2048
///   to 8192 bits signing with `rsa-sha2-256` or `rsa-sha2-512` (RFC 8332; SHA-1
///   `ssh-rsa` signatures are refused, as OpenSSH does by default). Other keys listed are
///   never accepted.
/// - **Entries with options are skipped, with a warning** (fail closed): this checker
///   cannot enforce `from=`, `command=`, `restrict`, `no-pty` and the like, and a key an
///   administrator restricted must not log in unrestricted.
/// - **Without a signature**, a listed key answers [`LoginError::KeyAcceptable`] (the peer
///   may sign with it), an unlisted one [`LoginError::Unauthorized`]. **With one**, the
///   signature over `signed_data` must verify with the listed key, in the algorithm the
///   request named.
/// - **User names that could leave the directory** (empty, `.`, `..`, containing `/`, NUL
///   or other control characters) are refused before any file is opened. A missing file
///   means no keys.
///
/// The file is read, and the signature verified, on the reactor's thread pool. It is read
/// at each login, so changes apply at once; a file above 1 MiB is refused.
pub struct AuthorizedKeys {
    reactor: WeakReactor,
    paths: Box<dyn Fn(&str) -> PathBuf>,
}

impl AuthorizedKeys {
    /// Keys of user `u` from the file `template` names with `%u` replaced by the user name
    /// (`%%` is a `%`): `AuthorizedKeys::new(&reactor, "/etc/twistor/keys/%u")`. A template
    /// without `%u` is one file for every user, as in OpenSSH: then every key in it logs in
    /// as *any* user name the peer asks for, so the realm must refuse names it does not
    /// know.
    pub fn new(reactor: &Reactor, template: impl Into<String>) -> Rc<AuthorizedKeys> {
        let template = template.into();
        AuthorizedKeys::with_paths(reactor, move |user| PathBuf::from(expand(&template, user)))
    }

    /// Keys of each user from the file `paths` names for them. `paths` only ever sees user
    /// names that [`username_is_safe`] accepts.
    pub fn with_paths(
        reactor: &Reactor,
        paths: impl Fn(&str) -> PathBuf + 'static,
    ) -> Rc<AuthorizedKeys> {
        Rc::new(AuthorizedKeys {
            reactor: reactor.downgrade(),
            paths: Box::new(paths),
        })
    }
}

/// Whether `username` is safe to put in a path: not empty, not `.` or `..`, and without
/// `/`, NUL or other control characters.
pub fn username_is_safe(username: &str) -> bool {
    !username.is_empty()
        && username != "."
        && username != ".."
        && !username.chars().any(|c| c == '/' || c.is_control())
}

impl Checker for AuthorizedKeys {
    fn kinds(&self) -> &[CredentialKind] {
        &[CredentialKind::SshPublicKey]
    }

    fn check(&self, credentials: &Credentials) -> Deferred<AvatarId> {
        let Credentials::SshPublicKey {
            username,
            algorithm,
            key_blob,
            signed_data,
            signature,
        } = credentials
        else {
            return Deferred::failed(LoginError::Unhandled);
        };
        if !username_is_safe(username) {
            tracing::debug!("refusing key login for unsafe user name {username:?}");
            return Deferred::failed(LoginError::Unauthorized);
        }
        let Some(reactor) = self.reactor.upgrade() else {
            return Deferred::failed(LoginError::Unavailable("the reactor is gone".into()));
        };
        let offer = Offer {
            algorithm: algorithm.clone(),
            key_blob: key_blob.clone(),
            signed_data: signed_data.clone(),
            signature: signature.clone(),
        };
        let path = (self.paths)(username);
        let user = AvatarId::user(username.clone());
        reactor.try_defer_to_thread(move || check_offer(&path, &offer).map(|()| user))
    }
}

impl fmt::Debug for AuthorizedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizedKeys").finish_non_exhaustive()
    }
}

/// `template` with `%u` replaced by `user` and `%%` by `%`.
fn expand(template: &str, user: &str) -> String {
    let mut out = String::with_capacity(template.len() + user.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(user),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The key credentials, owned, to move to a pool thread.
struct Offer {
    algorithm: String,
    key_blob: Vec<u8>,
    signed_data: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
}

/// Runs on a pool thread: is the offered key listed in `path`, and does its signature (if
/// any) verify?
fn check_offer(path: &Path, offer: &Offer) -> Result<(), LoginError> {
    let key = PublicKey::from_bytes(&offer.key_blob).map_err(|_| LoginError::Unauthorized)?;
    if !signature_algorithms(key.key_data()).contains(&offer.algorithm.as_str()) {
        return Err(LoginError::Unauthorized);
    }
    let text = match read_limited(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(LoginError::Unauthorized);
        }
        Err(error) => {
            tracing::warn!("{}: {error}", path.display());
            return Err(LoginError::Unavailable(format!(
                "{}: {error}",
                path.display()
            )));
        }
    };
    if !listed_keys(path, &text).any(|listed| listed.key_data() == key.key_data()) {
        return Err(LoginError::Unauthorized);
    }
    match (&offer.signed_data, &offer.signature) {
        (None, None) => Err(LoginError::KeyAcceptable),
        (Some(data), Some(signature)) => {
            if verify(key.key_data(), &offer.algorithm, data, signature) {
                Ok(())
            } else {
                Err(LoginError::Unauthorized)
            }
        }
        _ => Err(LoginError::Unauthorized),
    }
}

/// The signature algorithms this checker verifies for `key`; none for keys it does not
/// accept.
fn signature_algorithms(key: &KeyData) -> &'static [&'static str] {
    match key {
        KeyData::Ed25519(_) => &["ssh-ed25519"],
        KeyData::Ecdsa(ecdsa) if ecdsa.curve() == EcdsaCurve::NistP256 => &["ecdsa-sha2-nistp256"],
        // ring verifies moduli of 2048 to 8192 bits.
        KeyData::Rsa(rsa) if rsa_bits(rsa).is_some_and(|bits| (2048..=8192).contains(&bits)) => {
            &["rsa-sha2-256", "rsa-sha2-512"]
        }
        _ => &[],
    }
}

fn rsa_bits(rsa: &ssh_key::public::RsaPublicKey) -> Option<usize> {
    let n = rsa.n.as_positive_bytes()?;
    let top = *n.first()?;
    Some(n.len() * 8 - top.leading_zeros() as usize)
}

/// Whether `signature_blob` (`string algorithm, string signature`) is `key`'s signature
/// of `data` in `algorithm`.
fn verify(key: &KeyData, algorithm: &str, data: &[u8], signature_blob: &[u8]) -> bool {
    let Ok(signature) = Signature::try_from(signature_blob) else {
        return false;
    };
    if signature.algorithm().as_str() != algorithm {
        return false;
    }
    match (key, signature.algorithm()) {
        (KeyData::Rsa(rsa), Algorithm::Rsa { hash: Some(hash) }) => {
            let (Some(n), Some(e)) = (rsa.n.as_positive_bytes(), rsa.e.as_positive_bytes()) else {
                return false;
            };
            let params = match hash {
                HashAlg::Sha256 => &RSA_PKCS1_2048_8192_SHA256,
                HashAlg::Sha512 => &RSA_PKCS1_2048_8192_SHA512,
                _ => return false,
            };
            // RFC 8332 section 3: a signature shorter than the modulus is padded with
            // leading zeros before verifying (as OpenSSH does).
            let mut sig = signature.as_bytes().to_vec();
            if sig.len() < n.len() {
                sig.splice(0..0, std::iter::repeat_n(0, n.len() - sig.len()));
            }
            RsaPublicKeyComponents { n, e }
                .verify(params, data, &sig)
                .is_ok()
        }
        (KeyData::Rsa(_), _) => false,
        (key, _) => key.verify(data, &signature).is_ok(),
    }
}

/// Reads `path` as text, refusing one above [`MAX_FILE_SIZE`], and anything but a regular
/// file (a FIFO would block the pool thread until someone writes to it).
fn read_limited(path: &Path) -> io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_FILE_SIZE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(io::Error::other("larger than 1 MiB"));
    }
    Ok(text)
}

/// The keys listed in `text` without options. Entries with options, and lines that are
/// not keys, are skipped with a warning naming `path:line`.
fn listed_keys<'a>(path: &'a Path, text: &'a str) -> impl Iterator<Item = PublicKey> + 'a {
    text.lines().enumerate().filter_map(move |(index, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let where_ = format!("{}:{}", path.display(), index + 1);
        match line.parse::<Entry>() {
            Ok(entry) if entry.config_opts().is_empty() => Some(entry.public_key().clone()),
            Ok(entry) => {
                tracing::warn!(
                    "{where_}: key with options {:?} skipped: this checker cannot enforce options",
                    entry.config_opts().as_str()
                );
                None
            }
            Err(error) => {
                // ssh-key reads "OPTIONS KEY" only when a comment follows; say which it is.
                let has_options = line
                    .split_once(char::is_whitespace)
                    .is_some_and(|(_, rest)| PublicKey::from_openssh(rest.trim_start()).is_ok());
                if has_options {
                    tracing::warn!(
                        "{where_}: key with options skipped: this checker cannot enforce options"
                    );
                } else {
                    tracing::warn!("{where_}: not a public key ({error}); skipped");
                }
                None
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_u_and_percent() {
        assert_eq!(expand("/keys/%u", "alice"), "/keys/alice");
        assert_eq!(expand("/k/%u/%%u/%x%", "bob"), "/k/bob/%u/%x%");
    }

    #[test]
    fn unsafe_user_names_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "a\0b", "a\nb"] {
            assert!(!username_is_safe(bad), "{bad:?}");
        }
        for good in ["alice", "a.b", "a..b", "_x-y@z"] {
            assert!(username_is_safe(good), "{good:?}");
        }
    }
}
