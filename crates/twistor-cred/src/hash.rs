//! Password hashes: the three one-way schemes a users file may hold, checked for form when
//! loaded ([`PasswordHash::parse`]) and verified by the RustCrypto and `bcrypt` crates.
//!
//! | prefix | scheme | made by |
//! |---|---|---|
//! | `$6$` | SHA-512-crypt | `openssl passwd -6`, `mkpasswd -m sha-512` |
//! | `$2b$` `$2y$` `$2a$` | bcrypt | `htpasswd -nB user`, Python's `bcrypt` |
//! | `$argon2id$` | Argon2id | the `argon2` command, Python's `argon2-cffi` |
//!
//! Verification is slow on purpose (that is what makes guessing expensive): run it off the
//! reactor thread, as [`PasswordFile`](crate::checkers::PasswordFile) does.
//!
//! ```
//! use twistor_cred::hash::verify;
//!
//! // `openssl passwd -6 -salt saltsalt hunter2`
//! let hash = "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";
//! assert!(verify("hunter2", hash)?);
//! assert!(!verify("hunter3", hash)?);
//! assert!(verify("hunter2", "$apr1$x$y").is_err()); // not an accepted scheme
//! # Ok::<(), twistor_cred::HashError>(())
//! ```

use std::fmt;
use std::str::FromStr;

// argon2 and sha-crypt share password-hash's `PasswordVerifier`.
use argon2::PasswordVerifier as _;

use crate::error::HashError;

/// The most memory an Argon2 hash may ask for, in KiB (1 GiB). Each verification allocates
/// it, up to one per pool thread, so a file cannot make the server allocate without bound.
pub const ARGON2_MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// Which scheme a [`PasswordHash`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashKind {
    /// SHA-512-crypt, `$6$`.
    Sha512Crypt,
    /// bcrypt, `$2b$`, `$2y$` or `$2a$`.
    Bcrypt,
    /// Argon2id, `$argon2id$`.
    Argon2id,
}

/// A password hash whose form has been checked: verifying it can only answer yes or no.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    kind: HashKind,
    text: String,
}

impl PasswordHash {
    /// Checks `text`'s form (cheap: no hashing) and keeps it.
    pub fn parse(text: &str) -> Result<PasswordHash, HashError> {
        let kind = if text.starts_with("$6$") {
            check_sha512_crypt(text)?;
            HashKind::Sha512Crypt
        } else if text.starts_with("$2") {
            check_bcrypt(text)?;
            HashKind::Bcrypt
        } else if text.starts_with("$argon2") {
            check_argon2id(text)?;
            HashKind::Argon2id
        } else {
            return Err(HashError::Unsupported(unsupported_reason(text)));
        };
        Ok(PasswordHash {
            kind,
            text: text.to_string(),
        })
    }

    /// The scheme.
    pub fn kind(&self) -> HashKind {
        self.kind
    }

    /// The hash as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `password` hashes to this (slow, by design; compared in constant time by the
    /// scheme's crate). bcrypt uses only a password's first 72 bytes, as every bcrypt does.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self.kind {
            HashKind::Sha512Crypt => sha_crypt::ShaCrypt::default()
                .verify_password(password, self.text.as_str())
                .is_ok(),
            HashKind::Bcrypt => bcrypt::verify(password, &self.text).unwrap_or(false),
            HashKind::Argon2id => argon2::PasswordHash::new(&self.text).is_ok_and(|hash| {
                argon2::Argon2::default()
                    .verify_password(password, &hash)
                    .is_ok()
            }),
        }
    }
}

impl FromStr for PasswordHash {
    type Err = HashError;

    fn from_str(text: &str) -> Result<PasswordHash, HashError> {
        PasswordHash::parse(text)
    }
}

impl fmt::Debug for PasswordHash {
    /// The scheme only: a hash is not secret, but it is what an attacker would like to read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Whether `password` matches `hash` (any accepted scheme); an error if `hash` is not one.
pub fn verify(password: &str, hash: &str) -> Result<bool, HashError> {
    Ok(PasswordHash::parse(hash)?.verify(password.as_bytes()))
}

/// `$6$[rounds=N$]SALT$HASH` with a 64-byte hash, as sha-crypt reads it.
fn check_sha512_crypt(text: &str) -> Result<(), HashError> {
    let malformed =
        |why: &str| HashError::Malformed(format!("malformed $6$ (SHA-512-crypt) hash: {why}"));
    let hash = mcf::PasswordHashRef::new(text).map_err(|_| malformed("bad field syntax"))?;
    let mut fields = hash.fields();
    let mut next = fields.next().ok_or_else(|| malformed("no salt"))?;
    if next.as_str().starts_with("rounds=") {
        sha_crypt::Params::from_str(next.as_str())
            .map_err(|_| malformed("rounds must be a number from 1000 to 999999999"))?;
        next = fields.next().ok_or_else(|| malformed("no salt"))?;
    }
    if next.as_str().is_empty() {
        return Err(malformed("empty salt"));
    }
    let mut digest = [0u8; sha_crypt::BLOCK_SIZE_SHA512];
    let decoded = fields
        .next()
        .ok_or_else(|| malformed("no hash after the salt"))?
        .decode_base64_into(mcf::Base64::Crypt, &mut digest)
        .map_err(|_| malformed("the hash is not 86 characters of crypt base64"))?;
    if decoded.len() != sha_crypt::BLOCK_SIZE_SHA512 {
        return Err(malformed("the hash is not 86 characters of crypt base64"));
    }
    if fields.next().is_some() {
        return Err(malformed("extra fields after the hash"));
    }
    Ok(())
}

/// `$2b$NN$` + 53 characters; `$2x$` (the marker for hashes made by a buggy 2011
/// implementation) is refused.
fn check_bcrypt(text: &str) -> Result<(), HashError> {
    if !(text.starts_with("$2b$") || text.starts_with("$2y$") || text.starts_with("$2a$")) {
        return Err(HashError::Unsupported(format!(
            "{} is not an accepted bcrypt variant: use $2b$, $2y$ or $2a$ (htpasswd -nB USER)",
            text.get(..4).unwrap_or(text)
        )));
    }
    let parts = bcrypt::HashParts::from_str(text)
        .map_err(|e| HashError::Malformed(format!("malformed bcrypt hash: {e}")))?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(HashError::Malformed(format!(
            "malformed bcrypt hash: cost {cost} is not from 4 to 31"
        )));
    }
    Ok(())
}

/// A PHC string `$argon2id$v=19$m=..,t=..,p=..$SALT$HASH` that argon2 accepts, with at most
/// [`ARGON2_MAX_MEMORY_KIB`] of memory.
fn check_argon2id(text: &str) -> Result<(), HashError> {
    let malformed = |why: String| HashError::Malformed(format!("malformed $argon2id$ hash: {why}"));
    let hash = argon2::PasswordHash::new(text).map_err(|e| malformed(e.to_string()))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(HashError::Unsupported(format!(
            "${}$ hashes are not accepted: use argon2id (argon2 SALT -id -e)",
            hash.algorithm
        )));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(malformed("no salt or no hash".into()));
    }
    if let Some(version) = hash.version {
        argon2::Version::try_from(version).map_err(|e| malformed(e.to_string()))?;
    }
    let params = argon2::Params::try_from(&hash).map_err(|e| malformed(e.to_string()))?;
    if params.m_cost() > ARGON2_MAX_MEMORY_KIB {
        return Err(malformed(format!(
            "memory cost m={} KiB is above the limit of {ARGON2_MAX_MEMORY_KIB} KiB",
            params.m_cost()
        )));
    }
    Ok(())
}

/// What an unaccepted hash looks like, and how to make an accepted one.
fn unsupported_reason(text: &str) -> String {
    let what = if text.starts_with("$apr1$") {
        "an Apache MD5 ($apr1$) hash, which is not accepted: make a bcrypt one with htpasswd -nB USER"
    } else if text.starts_with("$1$") {
        "an MD5-crypt ($1$) hash, which is not accepted: use openssl passwd -6"
    } else if text.starts_with("$5$") {
        "a SHA-256-crypt ($5$) hash, which is not accepted: use openssl passwd -6"
    } else if text.starts_with("$y$") || text.starts_with("$7$") || text.starts_with("$gy$") {
        "a yescrypt/scrypt hash, which is not accepted: use openssl passwd -6 or htpasswd -nB USER"
    } else if text.starts_with("{SHA}") || text.starts_with("{SSHA}") {
        "a SHA-1 ({SHA}) hash, which is not accepted: make a bcrypt one with htpasswd -nB USER"
    } else if text.is_empty() {
        "an empty hash: every user needs one ($6$, $2b$, $2y$, $2a$ or $argon2id$)"
    } else {
        "not a password hash this server accepts: expected one starting with $6$, $2b$, $2y$, $2a$ or $argon2id$ (plain passwords are not accepted)"
    };
    what.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl passwd -6 -salt saltsalt hunter2`
    const SHA512: &str = "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";

    #[test]
    fn parse_sorts_by_scheme_and_checks_form() {
        assert_eq!(
            PasswordHash::parse(SHA512).unwrap().kind(),
            HashKind::Sha512Crypt
        );
        let cut = &SHA512[..SHA512.len() - 1];
        assert!(matches!(
            PasswordHash::parse(cut),
            Err(HashError::Malformed(_))
        ));
        let rounds = "$6$rounds=10$salt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";
        let err = PasswordHash::parse(rounds).unwrap_err();
        assert!(err.to_string().contains("rounds"), "{err}");
        let err =
            PasswordHash::parse("$2x$05$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234")
                .unwrap_err();
        assert!(err.to_string().contains("$2x$"), "{err}");
        let err = PasswordHash::parse("$2b$05$short").unwrap_err();
        assert!(matches!(err, HashError::Malformed(_)), "{err}");
        let err = PasswordHash::parse(
            "$argon2i$v=19$m=4096,t=3,p=1$c29tZXNhbHQ$0Qnq2w7zJ8I3xz12F+3WnEApJIWtZqXFbLYeggWl+J0",
        )
        .unwrap_err();
        assert!(err.to_string().contains("argon2id"), "{err}");
        let err = PasswordHash::parse("$apr1$abc$def").unwrap_err();
        assert!(err.to_string().contains("htpasswd -nB"), "{err}");
        let err = PasswordHash::parse("hunter2").unwrap_err();
        assert!(err.to_string().contains("plain passwords"), "{err}");
    }

    #[test]
    fn argon2_memory_is_bounded() {
        let huge = "$argon2id$v=19$m=2097152,t=1,p=1$c29tZXNhbHQ$6N7lbaPVRHQNDcwG/VJmDLNHm8NtaQq8+e3eGhoqFH0";
        let err = PasswordHash::parse(huge).unwrap_err();
        assert!(err.to_string().contains("memory cost"), "{err}");
    }

    #[test]
    fn debug_hides_the_hash() {
        let hash = PasswordHash::parse(SHA512).unwrap();
        assert!(!format!("{hash:?}").contains("saltsalt"));
    }
}
