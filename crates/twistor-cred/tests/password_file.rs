//! PasswordFile on a real reactor: logins, unknown users on the same code path as wrong
//! passwords, reloading, and errors naming file and line. (The hashes below were made
//! with `htpasswd -nbB`, `openssl passwd -6` and `argon2`; `tests/hashes.rs` makes fresh
//! ones with each tool.)

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use support::{TempDir, wait};
use twistor::Reactor;
use twistor_cred::checkers::{Checker, PasswordFile};
use twistor_cred::{AvatarId, Credentials, FileError, LoginError};

/// `htpasswd -nbB -C 4 alice 'first password'`
const FIRST: &str = "$2y$04$K0cH5DqYqQnGOWYLDTE6kOsq8WJ3ubmqFvWvHTHwp7i4f1fktdNdO";
/// `openssl passwd -6 -salt reloadsalt 'second password'`
const SECOND: &str = "$6$reloadsalt$/zRvQH5feMc33pKPlQdhLnjodRNAzfNu9T9q.g.jwM5fu7niwujaIptc6gH1pO0bCQS3kfK1aGQCk6QFZfQiO/";
/// `printf 'argon password' | argon2 argonsaltsalt -id -t 1 -k 1024 -e`
const ARGON: &str =
    "$argon2id$v=19$m=1024,t=1,p=1$YXJnb25zYWx0c2FsdA$u00G8zG/e+I/mjxX2Pw1IrdvfvF2lLRyxYR2plfppsU";

fn check(
    reactor: &Reactor,
    file: &PasswordFile,
    user: &str,
    password: &str,
) -> Result<AvatarId, LoginError> {
    let d = file.check(&Credentials::username_password(user, password));
    wait(reactor, &d).map_err(|f| f.find::<LoginError>().expect("a LoginError").clone())
}

#[test]
fn each_scheme_logs_in_with_its_password_only() {
    let dir = TempDir::new("schemes");
    let path = dir.write(
        "users",
        format!("# test users\nalice:{FIRST}\n\nbob:{SECOND}\ncarol:{ARGON}\n"),
    );
    let reactor = twistor_testing::reactor();
    let file = PasswordFile::open(&reactor, &path).unwrap();
    assert_eq!(file.users(), 3);
    assert_eq!(
        check(&reactor, &file, "alice", "first password"),
        Ok(AvatarId::user("alice"))
    );
    assert_eq!(
        check(&reactor, &file, "bob", "second password"),
        Ok(AvatarId::user("bob"))
    );
    assert_eq!(
        check(&reactor, &file, "carol", "argon password"),
        Ok(AvatarId::user("carol"))
    );
    assert_eq!(
        check(&reactor, &file, "alice", "second password"),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(
        check(&reactor, &file, "carol", "argon passwort"),
        Err(LoginError::Unauthorized)
    );
}

#[test]
fn an_unknown_user_is_verified_and_refused_like_a_wrong_password() {
    let dir = TempDir::new("unknown");
    let path = dir.write("users", format!("alice:{FIRST}\n"));
    let reactor = twistor_testing::reactor();
    let file = PasswordFile::open(&reactor, &path).unwrap();

    assert_eq!(file.verifications(), 0);
    let wrong = check(&reactor, &file, "alice", "guess");
    assert_eq!(file.verifications(), 1);
    let unknown = check(&reactor, &file, "mallory", "guess");
    // The unknown user's password went through a hash verification too (the decoy).
    assert_eq!(file.verifications(), 2);
    assert_eq!(wrong, Err(LoginError::Unauthorized));
    assert_eq!(unknown, wrong);
    assert_eq!(unknown.unwrap_err().to_string(), "authentication failed");

    // Even with the first user's password: the decoy never lets anyone in.
    assert_eq!(
        check(&reactor, &file, "mallory", "first password"),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(file.verifications(), 3);
}

#[test]
fn an_empty_file_refuses_everyone_after_verifying() {
    let dir = TempDir::new("empty");
    let path = dir.write("users", "# nobody yet\n");
    let reactor = twistor_testing::reactor();
    let file = PasswordFile::open(&reactor, &path).unwrap();
    assert_eq!(file.users(), 0);
    assert_eq!(
        check(&reactor, &file, "alice", ""),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(file.verifications(), 1);
}

/// Moves the file's modification time forward, as a later write would.
fn bump_mtime(path: &std::path::Path, by: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    let later = SystemTime::now() + Duration::from_secs(by);
    file.set_modified(later).unwrap();
}

/// Collects what `tracing` logs on this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_users() {
    let dir = TempDir::new("reload");
    let path = dir.write("users", format!("alice:{FIRST}\n"));
    let reactor = twistor_testing::reactor();
    let file = PasswordFile::open(&reactor, &path).unwrap();
    assert!(check(&reactor, &file, "alice", "first password").is_ok());

    // A new password, and a new user.
    std::fs::write(&path, format!("alice:{SECOND}\ncarol:{ARGON}\n")).unwrap();
    bump_mtime(&path, 10);
    assert!(check(&reactor, &file, "alice", "second password").is_ok());
    assert_eq!(
        check(&reactor, &file, "alice", "first password"),
        Err(LoginError::Unauthorized)
    );
    assert!(check(&reactor, &file, "carol", "argon password").is_ok());

    // A broken rewrite: logged with file and line, and the users before stay.
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        std::fs::write(&path, format!("alice:{FIRST}\ncarol\n")).unwrap();
        bump_mtime(&path, 20);
        assert!(check(&reactor, &file, "alice", "second password").is_ok());
        assert_eq!(
            check(&reactor, &file, "alice", "first password"),
            Err(LoginError::Unauthorized)
        );
        assert!(check(&reactor, &file, "carol", "argon password").is_ok());
    });
    let logged = logs.text();
    let expected = format!(
        "{}:2: expected USER:HASH; keeping the 2 users loaded before",
        path.display()
    );
    assert!(
        logged.contains("WARN") && logged.contains(&expected),
        "{logged}"
    );
    assert_eq!(
        logged.matches("expected USER:HASH").count(),
        1,
        "warned once, not per login: {logged}"
    );

    // Fixed: the fixed version applies.
    std::fs::write(&path, format!("alice:{FIRST}\n")).unwrap();
    bump_mtime(&path, 30);
    assert!(check(&reactor, &file, "alice", "first password").is_ok());
    assert_eq!(
        check(&reactor, &file, "carol", "argon password"),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(file.users(), 1);

    // Removed: the users before stay.
    std::fs::remove_file(&path).unwrap();
    assert!(check(&reactor, &file, "alice", "first password").is_ok());
}

#[test]
fn a_file_replaced_by_rename_is_reloaded_even_with_the_same_size_and_mtime() {
    let dir = TempDir::new("rename");
    let path = dir.write("users", format!("alice:{FIRST}\n"));
    let reactor = twistor_testing::reactor();
    let file = PasswordFile::open(&reactor, &path).unwrap();
    let old_mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    // Same length, same modification time; only the inode tells.
    let same_len = format!("bobby:{FIRST}\n");
    let next = dir.write("users.new", &same_len);
    std::fs::File::options()
        .write(true)
        .open(&next)
        .unwrap()
        .set_modified(old_mtime)
        .unwrap();
    std::fs::rename(&next, &path).unwrap();
    assert!(check(&reactor, &file, "bobby", "first password").is_ok());
    assert_eq!(
        check(&reactor, &file, "alice", "first password"),
        Err(LoginError::Unauthorized)
    );
}

#[test]
fn open_errors_name_the_file_and_line() {
    let dir = TempDir::new("errors");
    let reactor = twistor_testing::reactor();
    let open = |name: &str, text: &str| -> FileError {
        let path = dir.write(name, text);
        PasswordFile::open(&reactor, &path).unwrap_err()
    };
    let p = |name: &str| dir.path().join(name).display().to_string();

    let err = open("no-colon", &format!("alice:{FIRST}\n# ok\nbob {SECOND}\n"));
    assert_eq!(
        err.to_string(),
        format!("{}:3: expected USER:HASH", p("no-colon"))
    );
    assert_eq!(err.line(), Some(3));

    let err = open("twice", &format!("alice:{FIRST}\nalice:{SECOND}\n"));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: user alice is listed twice (first on line 1)",
            p("twice")
        )
    );

    let err = open("apr1", "alice:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n");
    assert!(
        err.to_string().starts_with(&format!(
            "{}:1: user alice: an Apache MD5 ($apr1$) hash",
            p("apr1")
        )),
        "{err}"
    );

    let err = open("cut", &format!("alice:{}\n", &SECOND[..40]));
    assert!(
        err.to_string()
            .starts_with(&format!("{}:1: user alice: malformed $6$", p("cut"))),
        "{err}"
    );

    let missing = dir.path().join("missing");
    let err = PasswordFile::open(&reactor, &missing).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", missing.display())),
        "{err}"
    );
    assert_eq!(err.line(), None);
}

#[test]
fn a_login_after_the_reactor_is_gone_is_unavailable() {
    let dir = TempDir::new("gone");
    let path = dir.write("users", format!("alice:{FIRST}\n"));
    let reactor = Reactor::new().unwrap();
    let file = PasswordFile::open(&reactor, &path).unwrap();
    drop(reactor);
    let d = file.check(&Credentials::username_password("alice", "first password"));
    let failure = d.try_result().unwrap().expect_err("refused");
    assert!(
        matches!(
            failure.find::<LoginError>(),
            Some(LoginError::Unavailable(_))
        ),
        "{failure}"
    );
}

#[test]
fn the_example_in_the_users_file_documentation_loads_and_verifies() {
    let doc = include_str!("../../../docs/users-file.md");
    let start = doc.find("```text\n").expect("an example file") + "```text\n".len();
    let example = &doc[start..start + doc[start..].find("```").unwrap()];
    let dir = TempDir::new("doc");
    let path = dir.write("users", example);
    let reactor = twistor_testing::reactor();
    let file = PasswordFile::open(&reactor, &path).unwrap();
    assert_eq!(file.users(), 3);
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            check(&reactor, &file, user, "not a real password"),
            Ok(AvatarId::user(user))
        );
    }
}

#[test]
fn a_password_longer_than_anyone_types_is_refused_without_hashing() {
    let dir = TempDir::new("long");
    let path = dir.write("users", format!("bob:{SECOND}\n"));
    let reactor = twistor_testing::reactor();
    let file = PasswordFile::open(&reactor, &path).unwrap();
    let long = "x".repeat(twistor_cred::checkers::MAX_PASSWORD_LEN + 1);
    assert_eq!(
        check(&reactor, &file, "bob", &long),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(
        check(&reactor, &file, "nobody", &long),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(file.verifications(), 0, "no hashing for either");
    let longest = "x".repeat(twistor_cred::checkers::MAX_PASSWORD_LEN);
    assert_eq!(
        check(&reactor, &file, "bob", &longest),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(file.verifications(), 1, "up to the limit, checked as usual");
}
