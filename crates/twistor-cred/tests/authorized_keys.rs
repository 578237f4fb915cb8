//! AuthorizedKeys on a real reactor: keys made by ssh-key's own generator and by
//! `ssh-keygen`, signatures made here with the private keys (ssh-key for ed25519 and
//! P-256, ring for RSA) and verified by the checker; everything that must be refused is.

mod support;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RSA_PKCS1_SHA512, RsaEncoding, RsaKeyPair};
use signature::Signer;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PublicKey, Signature};
use support::{TempDir, have_tool, run, wait};
use twistor::Reactor;
use twistor_cred::checkers::{AuthorizedKeys, Checker};
use twistor_cred::{AvatarId, Credentials, LoginError};

/// What the signatures cover (an SSH server passes the session id and the request).
const DATA: &[u8] = b"session id and userauth request";

/// A key that can sign, whichever library holds it.
enum Key {
    Ssh(PrivateKey),
    Rsa {
        /// None for keys ring refuses (under 2048 bits).
        pair: Option<RsaKeyPair>,
        public: PublicKey,
        /// The private key file, for openssl.
        pem: PathBuf,
    },
}

impl Key {
    fn generate(algorithm: Algorithm) -> Key {
        Key::Ssh(PrivateKey::random(&mut OsRng, algorithm).unwrap())
    }

    fn public(&self) -> &PublicKey {
        match self {
            Key::Ssh(key) => key.public_key(),
            Key::Rsa { public, .. } => public,
        }
    }

    fn blob(&self) -> Vec<u8> {
        self.public().to_bytes().unwrap()
    }

    fn line(&self) -> String {
        self.public().to_openssh().unwrap()
    }

    /// The algorithm name a client would send with this key.
    fn algorithm(&self) -> &'static str {
        match self {
            Key::Ssh(key) => match key.algorithm() {
                Algorithm::Ed25519 => "ssh-ed25519",
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256,
                } => "ecdsa-sha2-nistp256",
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP384,
                } => "ecdsa-sha2-nistp384",
                other => panic!("{other:?}"),
            },
            Key::Rsa { .. } => "rsa-sha2-256",
        }
    }

    /// The SSH signature blob (`string algorithm, string signature`) over `data`.
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        match self {
            // ssh-key here cannot sign with P-384 (its p384 feature is off, as in the
            // checker): a well-formed blob of the right shape stands in.
            Key::Ssh(_) if self.algorithm() == "ecdsa-sha2-nistp384" => {
                let (r, s) = ([0x11; 48], [0x22; 48]);
                ssh_string_pair(b"ecdsa-sha2-nistp384", &ssh_string_pair(&r, &s))
            }
            Key::Ssh(key) => Vec::try_from(key.try_sign(data).unwrap()).unwrap(),
            Key::Rsa { pair: None, .. } => self.sign_openssl("-sha256", b"rsa-sha2-256", data),
            Key::Rsa { .. } => self.sign_rsa(&RSA_PKCS1_SHA256, HashAlg::Sha256, data),
        }
    }

    fn sign_rsa(&self, padding: &'static dyn RsaEncoding, hash: HashAlg, data: &[u8]) -> Vec<u8> {
        let Key::Rsa {
            pair: Some(pair), ..
        } = self
        else {
            panic!("not RSA for ring")
        };
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(padding, &SystemRandom::new(), data, &mut sig)
            .unwrap();
        let sig = Signature::new(Algorithm::Rsa { hash: Some(hash) }, sig).unwrap();
        Vec::try_from(sig).unwrap()
    }

    /// An SSH-encoded RSA signature (PKCS#1 v1.5) with `digest` (`-sha1`, `-sha256`)
    /// labelled `label`, made by openssl (ring signs neither with SHA-1 nor with keys under
    /// 2048 bits).
    fn sign_openssl(&self, digest: &str, label: &[u8], data: &[u8]) -> Vec<u8> {
        let Key::Rsa { pem, .. } = self else {
            panic!("not RSA")
        };
        let data_path = pem.with_extension("data");
        let sig_path = pem.with_extension("sig");
        std::fs::write(&data_path, data).unwrap();
        let (pem, sig_out, data_in) = (
            pem.to_str().unwrap(),
            sig_path.to_str().unwrap(),
            data_path.to_str().unwrap(),
        );
        run(
            "openssl",
            &["dgst", digest, "-sign", pem, "-out", sig_out, data_in],
            b"",
        );
        ssh_string_pair(label, &std::fs::read(&sig_path).unwrap())
    }

    fn query(&self, user: &str) -> Credentials {
        Credentials::ssh_public_key(user, self.algorithm(), self.blob())
    }

    fn signed(&self, user: &str) -> Credentials {
        Credentials::ssh_public_key_signed(
            user,
            self.algorithm(),
            self.blob(),
            DATA,
            self.sign(DATA),
        )
    }
}

/// `string a, string b` in SSH wire encoding.
fn ssh_string_pair(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in [a, b] {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s);
    }
    out
}

/// A key directory and a checker reading `DIR/keys/%u`.
struct Setup {
    dir: TempDir,
    reactor: Reactor,
    checker: Rc<AuthorizedKeys>,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let dir = TempDir::new(tag);
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let reactor = twistor_testing::reactor();
        let template = format!("{}/keys/%u", dir.path().display());
        let checker = AuthorizedKeys::new(&reactor, template);
        Setup {
            dir,
            reactor,
            checker,
        }
    }

    fn keys_of(&self, user: &str, lines: &[String]) {
        let text = format!("# keys of {user}\n\n{}\n", lines.join("\n"));
        std::fs::write(self.dir.path().join("keys").join(user), text).unwrap();
    }

    fn check(&self, credentials: Credentials) -> Result<AvatarId, LoginError> {
        let d = self.checker.check(&credentials);
        wait(&self.reactor, &d).map_err(|f| f.find::<LoginError>().expect("a LoginError").clone())
    }
}

fn alice() -> Result<AvatarId, LoginError> {
    Ok(AvatarId::user("alice"))
}

/// Every way a listed key's login must go right or wrong, for one key.
fn exercise(setup: &Setup, key: &Key) {
    let stranger = Key::generate(Algorithm::Ed25519);
    setup.keys_of("alice", &[stranger.line(), key.line()]);

    assert_eq!(
        setup.check(key.query("alice")),
        Err(LoginError::KeyAcceptable)
    );
    assert_eq!(setup.check(key.signed("alice")), alice());

    let blob = key.blob();
    let alg = key.algorithm();
    let with = |data: &[u8], sig: Vec<u8>| {
        Credentials::ssh_public_key_signed("alice", alg, blob.clone(), data, sig)
    };
    // Signed data other than what is verified.
    assert_eq!(
        setup.check(with(b"another session", key.sign(DATA))),
        Err(LoginError::Unauthorized)
    );
    // A corrupted signature.
    let mut bad = key.sign(DATA);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(setup.check(with(DATA, bad)), Err(LoginError::Unauthorized));
    // Another key's signature.
    assert_eq!(
        setup.check(with(DATA, stranger.sign(DATA))),
        Err(LoginError::Unauthorized)
    );
    // Not a signature blob at all.
    assert_eq!(
        setup.check(with(DATA, b"junk".to_vec())),
        Err(LoginError::Unauthorized)
    );
    // A signature without the data it covers.
    let half = Credentials::SshPublicKey {
        username: "alice".into(),
        algorithm: alg.into(),
        key_blob: blob.clone(),
        signed_data: None,
        signature: Some(key.sign(DATA)),
    };
    assert_eq!(setup.check(half), Err(LoginError::Unauthorized));
    // The request names another algorithm than the key's.
    let other_alg = if alg == "ssh-ed25519" {
        "ecdsa-sha2-nistp256"
    } else {
        "ssh-ed25519"
    };
    let mislabelled =
        Credentials::ssh_public_key_signed("alice", other_alg, blob.clone(), DATA, key.sign(DATA));
    assert_eq!(setup.check(mislabelled), Err(LoginError::Unauthorized));

    // Unlisted: the same key for another user, and a key alice does not list.
    setup.keys_of("bob", &[stranger.line()]);
    assert_eq!(setup.check(key.query("bob")), Err(LoginError::Unauthorized));
    assert_eq!(
        setup.check(key.signed("bob")),
        Err(LoginError::Unauthorized)
    );
    let unlisted = Key::generate(Algorithm::Ed25519);
    assert_eq!(
        setup.check(unlisted.query("alice")),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(
        setup.check(unlisted.signed("alice")),
        Err(LoginError::Unauthorized)
    );
    // A user without a keys file.
    assert_eq!(
        setup.check(key.signed("carol")),
        Err(LoginError::Unauthorized)
    );
}

#[test]
fn ed25519_keys_made_by_ssh_key() {
    let setup = Setup::new("ed25519");
    exercise(&setup, &Key::generate(Algorithm::Ed25519));
}

#[test]
fn p256_keys_made_by_ssh_key() {
    let setup = Setup::new("p256");
    exercise(
        &setup,
        &Key::generate(Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        }),
    );
}

/// `ssh-keygen -t TYPE -b BITS` in `dir`; returns the private key's path.
fn ssh_keygen(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let path_str = path.to_str().unwrap();
    let mut all = vec!["-q", "-N", "", "-C", "test key", "-f", path_str];
    all.extend_from_slice(args);
    run("ssh-keygen", &all, b"");
    path
}

fn openssh_key(path: &Path) -> Key {
    Key::Ssh(PrivateKey::from_openssh(std::fs::read(path).unwrap()).unwrap())
}

/// An RSA key from ssh-keygen, its private half converted to PKCS#8 DER for ring.
fn rsa_key(dir: &Path, name: &str, bits: &str) -> Key {
    let path = ssh_keygen(dir, name, &["-t", "rsa", "-b", bits, "-m", "PKCS8"]);
    let der_path = dir.join(format!("{name}.der"));
    run(
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            path.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der_path.to_str().unwrap(),
        ],
        b"",
    );
    let der = std::fs::read(&der_path).unwrap();
    let public = PublicKey::read_openssh_file(&dir.join(format!("{name}.pub"))).unwrap();
    Key::Rsa {
        pair: RsaKeyPair::from_pkcs8(&der).ok(),
        public,
        pem: path,
    }
}

fn have_keygen() -> bool {
    have_tool("ssh-keygen", "command -v ssh-keygen") && have_tool("openssl", "openssl version")
}

#[test]
fn keys_made_by_ssh_keygen() {
    if !have_keygen() {
        return;
    }
    let setup = Setup::new("keygen");
    let dir = setup.dir.path();
    exercise(
        &setup,
        &openssh_key(&ssh_keygen(dir, "ed", &["-t", "ed25519"])),
    );
    exercise(
        &setup,
        &openssh_key(&ssh_keygen(dir, "ec", &["-t", "ecdsa", "-b", "256"])),
    );
    exercise(&setup, &rsa_key(dir, "rsa", "2048"));
}

#[test]
fn rsa_signs_with_sha2_256_or_512_but_not_sha1() {
    if !have_keygen() {
        return;
    }
    let setup = Setup::new("rsa");
    let key = rsa_key(setup.dir.path(), "rsa", "3072");
    setup.keys_of("alice", &[key.line()]);
    let blob = key.blob();
    let creds = |alg: &str, sig: Vec<u8>| {
        Credentials::ssh_public_key_signed("alice", alg, blob.clone(), DATA, sig)
    };

    let sha512 = key.sign_rsa(&RSA_PKCS1_SHA512, HashAlg::Sha512, DATA);
    assert_eq!(setup.check(creds("rsa-sha2-512", sha512.clone())), alice());
    assert_eq!(setup.check(creds("rsa-sha2-256", key.sign(DATA))), alice());
    // The signature's algorithm must be the one the request names.
    assert_eq!(
        setup.check(creds("rsa-sha2-256", sha512)),
        Err(LoginError::Unauthorized)
    );
    // SHA-1 (`ssh-rsa` signatures) is refused, even when valid.
    assert_eq!(
        setup.check(creds(
            "ssh-rsa",
            key.sign_openssl("-sha1", b"ssh-rsa", DATA)
        )),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(
        setup.check(Credentials::ssh_public_key(
            "alice",
            "ssh-rsa",
            blob.clone()
        )),
        Err(LoginError::Unauthorized)
    );
}

#[test]
fn keys_this_checker_cannot_verify_are_never_acceptable() {
    if !have_keygen() {
        return;
    }
    let setup = Setup::new("unsupported");
    let dir = setup.dir.path();
    // Listed, but of a kind this checker does not verify: refused even as a query, so the
    // peer is not invited to sign with it.
    let p384 = openssh_key(&ssh_keygen(dir, "p384", &["-t", "ecdsa", "-b", "384"]));
    let small_rsa = rsa_key(dir, "rsa1024", "1024");
    setup.keys_of("alice", &[p384.line(), small_rsa.line()]);
    assert_eq!(
        setup.check(p384.query("alice")),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(
        setup.check(p384.signed("alice")),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(
        setup.check(small_rsa.query("alice")),
        Err(LoginError::Unauthorized)
    );
    assert_eq!(
        setup.check(small_rsa.signed("alice")),
        Err(LoginError::Unauthorized)
    );
}

#[test]
fn keys_with_options_are_skipped() {
    let setup = Setup::new("options");
    let keys: Vec<Key> = (0..5).map(|_| Key::generate(Algorithm::Ed25519)).collect();
    let plain = Key::generate(Algorithm::Ed25519);
    setup.keys_of(
        "alice",
        &[
            format!("restrict {}", keys[0].line()),
            format!("from=\"10.0.0.1\" {}", keys[1].line()),
            format!(
                "command=\"/bin/date\",no-pty {} with a comment",
                keys[2].line()
            ),
            format!(
                "no-port-forwarding,permitopen=\"host:22\" {}",
                keys[3].line()
            ),
            format!("cert-authority {}", keys[4].line()),
            "not a key at all".to_string(),
            plain.line(),
        ],
    );
    for key in &keys {
        assert_eq!(
            setup.check(key.query("alice")),
            Err(LoginError::Unauthorized)
        );
        assert_eq!(
            setup.check(key.signed("alice")),
            Err(LoginError::Unauthorized)
        );
    }
    // The entry without options, after all those, still works.
    assert_eq!(setup.check(plain.signed("alice")), alice());
}

#[test]
fn user_names_that_could_leave_the_directory_are_refused_before_any_file_is_named() {
    let dir = TempDir::new("escape");
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let key = Key::generate(Algorithm::Ed25519);
    // A file outside the keys directory that lists the key.
    std::fs::write(dir.path().join("evil"), key.line()).unwrap();
    std::fs::write(dir.path().join("keys").join("alice"), key.line()).unwrap();
    let reactor = twistor_testing::reactor();
    let asked = Rc::new(RefCell::new(Vec::new()));
    let (a, keys_dir) = (asked.clone(), dir.path().join("keys"));
    let checker = AuthorizedKeys::with_paths(&reactor, move |user| {
        a.borrow_mut().push(user.to_string());
        keys_dir.join(user)
    });
    for user in [
        "../evil",
        "..",
        ".",
        "",
        "a/../../evil",
        "alice\0",
        "alice\n",
    ] {
        let d = checker.check(&key.signed(user));
        let failure = wait(&reactor, &d).expect_err("refused");
        assert_eq!(
            failure.find::<LoginError>(),
            Some(&LoginError::Unauthorized),
            "{user:?}"
        );
    }
    assert!(
        asked.borrow().is_empty(),
        "paths asked for {:?}",
        asked.borrow()
    );
    let d = checker.check(&key.signed("alice"));
    assert_eq!(wait(&reactor, &d).unwrap(), AvatarId::user("alice"));
    assert_eq!(*asked.borrow(), ["alice"]);
}

#[test]
fn a_keys_file_that_is_a_fifo_is_refused_without_blocking() {
    let setup = Setup::new("fifo");
    let fifo = setup.dir.path().join("keys").join("alice");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let key = Key::generate(Algorithm::Ed25519);
    // Opening a FIFO for reading would wait for a writer; the check must answer at once.
    let result = setup.check(key.signed("alice"));
    assert!(
        matches!(result, Err(LoginError::Unavailable(ref why)) if why.contains("not a regular file")),
        "{result:?}"
    );
}
