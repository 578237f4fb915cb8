//! Each accepted hash scheme, verified against hashes made by the real tools at test time:
//! `openssl passwd -6`, `htpasswd -B` (apache2-utils), the `argon2` command and Python's
//! argon2-cffi. Right password accepted, wrong refused.

mod support;

use support::{have_tool, run};
use twistor_cred::hash::{HashKind, PasswordHash, verify};

const PASSWORD: &str = "correct horse battery staple";

fn assert_verifies(hash: &str, kind: HashKind) {
    let parsed = PasswordHash::parse(hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
    assert_eq!(parsed.kind(), kind, "{hash}");
    assert!(
        verify(PASSWORD, hash).unwrap(),
        "right password refused by {hash}"
    );
    assert!(
        !verify("correct horse battery stapler", hash).unwrap(),
        "wrong password accepted by {hash}"
    );
    assert!(!verify("", hash).unwrap());
}

#[test]
fn openssl_passwd_6() {
    if !have_tool("openssl", "openssl version") {
        return;
    }
    // -stdin: the password is read from standard input, one per line.
    let hash = run(
        "openssl",
        &["passwd", "-6", "-stdin"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    let hash = hash.trim();
    assert!(hash.starts_with("$6$"), "{hash}");
    assert_verifies(hash, HashKind::Sha512Crypt);
}

#[test]
fn openssl_passwd_6_with_a_long_salt() {
    if !have_tool("openssl", "openssl version") {
        return;
    }
    // SHA-512-crypt uses at most 16 characters of salt; openssl truncates a longer one.
    let hash = run(
        "openssl",
        &[
            "passwd",
            "-6",
            "-salt",
            "abcdefghijklmnopqrstuvwxyz",
            "-stdin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_verifies(hash.trim(), HashKind::Sha512Crypt);
}

#[test]
fn glibc_crypt_with_rounds() {
    // glibc's crypt(3) (libxcrypt) through perl, for the `rounds=N$` field that openssl
    // never writes (perl-base is part of every Debian system).
    if !have_tool("perl", "perl -e 1") {
        return;
    }
    let script = "$p = <STDIN>; print crypt($p, q($6$rounds=7000$saltsaltsalt$))";
    let hash = run("perl", &["-e", script], PASSWORD.as_bytes());
    assert!(hash.starts_with("$6$rounds=7000$saltsaltsalt$"), "{hash}");
    assert_verifies(&hash, HashKind::Sha512Crypt);
}

#[test]
fn htpasswd_bcrypt() {
    if !have_tool("htpasswd", "htpasswd -nbB x y") {
        return;
    }
    let line = run("htpasswd", &["-nbB", "-C", "5", "user", PASSWORD], b"");
    let hash = line.trim().strip_prefix("user:").expect("user:HASH");
    assert!(hash.starts_with("$2y$05$"), "{hash}");
    assert_verifies(hash, HashKind::Bcrypt);
    // $2b$ (OpenBSD, Python's bcrypt) and $2a$ name the same function as $2y$ for
    // passwords under 255 bytes: the same hash under each prefix must verify.
    for prefix in ["$2b$", "$2a$"] {
        assert_verifies(&format!("{prefix}{}", &hash[4..]), HashKind::Bcrypt);
    }
}

#[test]
fn argon2_command() {
    if !have_tool("argon2", "printf x | argon2 saltsalt -id -e") {
        return;
    }
    // The password is read from stdin, without a newline.
    let hash = run(
        "argon2",
        &["saltysaltsalt", "-id", "-t", "2", "-k", "8192", "-e"],
        PASSWORD.as_bytes(),
    );
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$v=19$m=8192,t=2,p=1$"), "{hash}");
    assert_verifies(hash, HashKind::Argon2id);
}

#[test]
fn python_argon2_cffi() {
    if !have_tool("python3 argon2-cffi", "python3 -c 'import argon2'") {
        return;
    }
    let script = "import argon2, sys; \
                  print(argon2.PasswordHasher(time_cost=2, memory_cost=8192, parallelism=2).hash(sys.stdin.read()))";
    let hash = run("python3", &["-c", script], PASSWORD.as_bytes());
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$v=19$m=8192,t=2,p=2$"), "{hash}");
    assert_verifies(hash, HashKind::Argon2id);
}
