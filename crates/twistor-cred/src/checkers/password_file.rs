//! [`PasswordFile`]: users and password hashes read from a users file (the `--users FILE`
//! of every `twist` service), reloaded when the file changes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use twistor::Reactor;
use twistor::defer::{Deferred, Failure};
use twistor::reactor::WeakReactor;

use crate::checkers::Checker;
use crate::credentials::{AvatarId, CredentialKind, Credentials};
use crate::error::{FileError, LoginError};
use crate::hash::PasswordHash;

/// What an unknown user's password is verified against when the file lists nobody:
/// `openssl passwd -6` of a password no one is told.
const EMPTY_FILE_DECOY: &str = "$6$decoydecoydecoy$A7pvAgMWIuECcHm2/QCkH8rbQXjg/6L0g0bLaXgt97iov3FGA/oR7WtSKFP0cWERwFHd5Wgsd/mmvumFixjG31";

/// A users file: `user:HASH` lines, as [`users_file`](crate::users_file)
/// describes (Twisted's `FilePasswordDB`, with one-way hashes only).
///
/// - **Off the reactor.** Each password is verified on the reactor's thread pool
///   ([`Reactor::defer_to_thread`]), so a bcrypt of cost 12 (a quarter of a second of
///   CPU) never stalls the reactor.
/// - **No user enumeration.** An unknown user's password is verified against a decoy
///   (the file's first hash, so the same scheme and cost as the rest when the file is
///   uniform) and refused with the same [`LoginError::Unauthorized`] as a wrong password:
///   the same code path, the same work, the same answer.
/// - **Reloaded when changed.** Each login first looks at the file's identity (a `stat`:
///   device, inode, size, modification and change times) and re-reads it when that
///   differs. A rewrite that does not parse is logged as a warning naming `file:line`,
///   and the users loaded before stay in force; so does a file that disappears.
///
/// The checker keeps only a weak handle on the reactor, so it does not keep the reactor
/// alive; a login after the reactor is gone fails with [`LoginError::Unavailable`].
pub struct PasswordFile {
    path: PathBuf,
    reactor: WeakReactor,
    users: RefCell<Users>,
    /// The file's identity when last looked at; `None` if it could not be looked at.
    seen: Cell<Option<Stamp>>,
    verifications: Arc<AtomicU64>,
}

/// The parsed file.
struct Users {
    by_name: HashMap<String, Arc<PasswordHash>>,
    decoy: Arc<PasswordHash>,
}

/// What tells one version of the file from another without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl PasswordFile {
    /// Reads the users file at `path`. The error names the file, and the line at fault:
    /// `users.txt:3: expected USER:HASH`.
    pub fn open(reactor: &Reactor, path: impl AsRef<Path>) -> Result<Rc<PasswordFile>, FileError> {
        let path = path.as_ref().to_path_buf();
        let (users, stamp) = load(&path)?;
        if users.by_name.is_empty() {
            tracing::warn!("{}: no users: every login will be refused", path.display());
        }
        Ok(Rc::new(PasswordFile {
            path,
            reactor: reactor.downgrade(),
            users: RefCell::new(users),
            seen: Cell::new(Some(stamp)),
            verifications: Arc::new(AtomicU64::new(0)),
        }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many users are loaded.
    pub fn users(&self) -> usize {
        self.users.borrow().by_name.len()
    }

    /// How many password verifications have started, for monitoring: an unknown user's
    /// login counts too, since it is verified against the decoy.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Re-reads the file if it changed since it was last looked at.
    fn refresh(&self) {
        let stamp = match fs::metadata(&self.path) {
            Ok(meta) => Stamp::of(&meta),
            Err(error) => {
                if self.seen.replace(None).is_some() {
                    tracing::warn!(
                        "{}: {error}; keeping the {} users loaded before",
                        self.path.display(),
                        self.users()
                    );
                }
                return;
            }
        };
        if self.seen.get() == Some(stamp) {
            return;
        }
        match load(&self.path) {
            Ok((users, stamp)) => {
                self.seen.set(Some(stamp));
                tracing::info!(
                    "{}: reloaded, {} users",
                    self.path.display(),
                    users.by_name.len()
                );
                *self.users.borrow_mut() = users;
            }
            Err(error) => {
                // Not re-read on every login: only once it changes again.
                self.seen.set(Some(stamp));
                tracing::warn!("{error}; keeping the {} users loaded before", self.users());
            }
        }
    }
}

impl Checker for PasswordFile {
    fn kinds(&self) -> &[CredentialKind] {
        &[CredentialKind::UsernamePassword]
    }

    fn check(&self, credentials: &Credentials) -> Deferred<AvatarId> {
        let Credentials::UsernamePassword { username, password } = credentials else {
            return Deferred::failed(LoginError::Unhandled);
        };
        let Some(reactor) = self.reactor.upgrade() else {
            return Deferred::failed(LoginError::Unavailable("the reactor is gone".into()));
        };
        // Hashing work grows with the password's length (SHA-512-crypt's does, over 5000
        // rounds): a password longer than anyone types is refused without any, for every
        // user alike.
        if password.len() > MAX_PASSWORD_LEN {
            return Deferred::failed(LoginError::Unauthorized);
        }
        self.refresh();
        let (hash, known) = {
            let users = self.users.borrow();
            match users.by_name.get(username) {
                Some(hash) => (hash.clone(), true),
                None => (users.decoy.clone(), false),
            }
        };
        let password = password.clone();
        let verifications = self.verifications.clone();
        let username = username.clone();
        reactor
            .defer_to_thread(move || {
                verifications.fetch_add(1, Ordering::Relaxed);
                hash.verify(password.as_bytes())
            })
            .and_then(move |matched| {
                if matched && known {
                    Ok(AvatarId::User(username))
                } else {
                    Err(Failure::new(LoginError::Unauthorized))
                }
            })
    }
}

/// The longest password checked, in bytes (bcrypt reads only the first 72 anyway).
pub const MAX_PASSWORD_LEN: usize = 1024;

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("path", &self.path)
            .field("users", &self.users())
            .finish_non_exhaustive()
    }
}

/// Reads and parses the file, noting its identity before reading (so a change made while
/// reading is seen at the next look).
fn load(path: &Path) -> Result<(Users, Stamp), FileError> {
    let io = |error| FileError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = File::open(path).map_err(io)?;
    let stamp = Stamp::of(&file.metadata().map_err(io)?);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    let entries = parse(path, &bytes)?;
    let decoy = match entries.first() {
        Some((_, hash)) => hash.clone(),
        None => Arc::new(PasswordHash::parse(EMPTY_FILE_DECOY).expect("a valid $6$ hash")),
    };
    Ok((
        Users {
            by_name: entries.into_iter().collect(),
            decoy,
        },
        stamp,
    ))
}

/// The file's entries in order. Blank lines and lines starting with `#` are skipped.
fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Arc<PasswordHash>)>, FileError> {
    let mut entries = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let fault = |reason: String| FileError::Line {
            path: path.to_path_buf(),
            line: line_no,
            reason,
        };
        let line = std::str::from_utf8(raw)
            .map_err(|_| fault("expected UTF-8 text".into()))?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(fault("expected USER:HASH".into()));
        };
        let (user, hash) = (user.trim(), hash.trim());
        if user.is_empty() {
            return Err(fault("expected a user name before ':'".into()));
        }
        if user.chars().any(char::is_control) {
            return Err(fault(
                "expected a user name without control characters".into(),
            ));
        }
        let hash = PasswordHash::parse(hash).map_err(|e| fault(format!("user {user}: {e}")))?;
        if let Some(first) = first_line.insert(user.to_string(), line_no) {
            return Err(fault(format!(
                "user {user} is listed twice (first on line {first})"
            )));
        }
        entries.push((user.to_string(), Arc::new(hash)));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";

    fn error_of(text: &str) -> String {
        parse(Path::new("users.txt"), text.as_bytes())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_fine() {
        let text = format!("# users\n\n  \nalice:{HASH}\r\nbob : {HASH}  \n");
        let entries = parse(Path::new("u"), text.as_bytes()).unwrap();
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
    }

    #[test]
    fn faults_name_file_and_line() {
        assert_eq!(error_of("# x\nalice\n"), "users.txt:2: expected USER:HASH");
        assert_eq!(
            error_of(&format!(":{HASH}")),
            "users.txt:1: expected a user name before ':'"
        );
        let twice = format!("alice:{HASH}\n\nalice:{HASH}\n");
        assert_eq!(
            error_of(&twice),
            "users.txt:3: user alice is listed twice (first on line 1)"
        );
        let plain = error_of("\n\nalice:hunter2\n");
        assert!(
            plain.starts_with("users.txt:3: user alice: not a password hash"),
            "{plain}"
        );
        let apr1 = error_of("alice:$apr1$abcdefgh$0123456789abcdefghijkl\n");
        assert!(apr1.contains("htpasswd -nB"), "{apr1}");
        assert_eq!(error_of("alice:\u{ff}\n").split(':').nth(1), Some("1"));
        let bytes = b"alice:\xff\n";
        let err = parse(Path::new("users.txt"), bytes).unwrap_err();
        assert_eq!(err.to_string(), "users.txt:1: expected UTF-8 text");
        assert_eq!(err.line(), Some(1));
    }

    #[test]
    fn the_empty_file_decoy_is_a_valid_hash() {
        assert!(PasswordHash::parse(EMPTY_FILE_DECOY).is_ok());
    }
}
