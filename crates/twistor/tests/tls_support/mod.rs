//! Test certificates made at test time (rcgen), in a temporary directory, and protocols that
//! record what happens to them.

#![allow(dead_code)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use twistor::tls::{ClientTlsConfig, Identity, ServerTlsConfig, TlsTransport};
use twistor::{CloseReason, Protocol, Transport};

pub use twistor_testing::TempDir;

/// A certificate authority, and the certificates it signs, as PEM files.
pub struct TestCa {
    pub dir: TempDir,
    pub name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, on disk and in memory.
pub struct Leaf {
    pub key_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_pem: String,
    pub cert_pem: String,
    pub der: Vec<u8>,
}

impl Leaf {
    pub fn identity(&self) -> Identity {
        Identity::from_pem_files(&self.key_path, Some(&self.cert_path), None).unwrap()
    }
}

impl TestCa {
    /// A new CA named `name`, its certificate in `ca.pem`.
    pub fn new(name: &str) -> TestCa {
        let dir = TempDir::new(name);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        TestCa {
            dir,
            name: name.to_string(),
            issuer,
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate with common name `cn` valid for `names`, in `FILE.key` and `FILE.crt`.
    pub fn leaf(&self, file: &str, cn: &str, names: &[&str]) -> Leaf {
        self.leaf_with(file, cn, names, |_| {})
    }

    /// A certificate for `localhost` that expired in 2001.
    pub fn expired_leaf(&self, file: &str) -> Leaf {
        self.leaf_with(file, "localhost", &["localhost"], |params| {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    fn leaf_with(
        &self,
        file: &str,
        cn: &str,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key_path = self.dir.path().join(format!("{file}.key"));
        let cert_path = self.dir.path().join(format!("{file}.crt"));
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        Leaf {
            key_path,
            cert_path,
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A client configuration for `name` trusting this CA only.
    pub fn client_config(&self, name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new(name)
            .unwrap()
            .with_trust_roots(self.ca_path())
            .unwrap()
    }

    /// A server configuration with a certificate for `localhost` and 127.0.0.1.
    pub fn server_config(&self) -> ServerTlsConfig {
        let leaf = self.leaf("server", "localhost", &["localhost", "127.0.0.1"]);
        ServerTlsConfig::new(leaf.identity())
    }
}

/// What happened to a [`Recorder`].
#[derive(Default)]
pub struct Log {
    pub made: bool,
    pub handshakes: u32,
    pub data: Vec<u8>,
    pub lost: Option<CloseReason>,
    pub read_lost: bool,
    pub transport: Option<Transport>,
    pub alpn: Option<Vec<u8>>,
    pub peer_certs: Option<Vec<Vec<u8>>>,
    pub server_name: Option<String>,
    pub version: Option<twistor::tls::TlsVersion>,
}

pub type SharedLog = Rc<RefCell<Log>>;

pub fn log() -> SharedLog {
    Rc::new(RefCell::new(Log::default()))
}

/// Records its events in a [`Log`]; writes `greeting` once connected; echoes if asked to.
pub struct Recorder {
    pub log: SharedLog,
    pub greeting: Vec<u8>,
    pub echo: bool,
    /// Closes the connection once this many bytes have arrived.
    pub close_after: Option<usize>,
}

impl Recorder {
    pub fn new(log: &SharedLog) -> Recorder {
        Recorder {
            log: log.clone(),
            greeting: Vec::new(),
            echo: false,
            close_after: None,
        }
    }

    pub fn greeting(mut self, greeting: &[u8]) -> Recorder {
        self.greeting = greeting.to_vec();
        self
    }

    pub fn echo(mut self) -> Recorder {
        self.echo = true;
        self
    }

    pub fn close_after(mut self, n: usize) -> Recorder {
        self.close_after = Some(n);
        self
    }
}

impl Protocol for Recorder {
    fn connection_made(&mut self, transport: &Transport) {
        let mut log = self.log.borrow_mut();
        log.made = true;
        log.transport = Some(transport.clone());
        if !self.greeting.is_empty() {
            transport.write(&self.greeting);
        }
    }

    fn handshake_completed(&mut self, transport: &Transport) {
        let tls = transport
            .downcast_ref::<TlsTransport>()
            .expect("a TLS transport");
        let mut log = self.log.borrow_mut();
        log.handshakes += 1;
        log.alpn = tls.negotiated_protocol();
        log.peer_certs = tls
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.to_vec()).collect());
        log.server_name = tls.server_name();
        log.version = tls.protocol_version();
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let total = {
            let mut log = self.log.borrow_mut();
            log.data.extend_from_slice(data);
            log.data.len()
        };
        if self.echo {
            transport.write(data);
        }
        if self.close_after.is_some_and(|n| total >= n) {
            transport.lose_connection();
        }
    }

    fn read_connection_lost(&mut self, transport: &Transport) {
        self.log.borrow_mut().read_lost = true;
        transport.lose_connection();
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.log.borrow_mut().lost = Some(reason.clone());
    }
}

/// The message of a `CloseReason::Lost(Error::Tls(_))`, or a panic saying what it was.
pub fn tls_error(reason: &Option<CloseReason>) -> String {
    tls_failure(reason).to_string()
}

/// The `TlsError` of a `CloseReason::Lost(Error::Tls(_))`, or a panic saying what it was.
pub fn tls_failure(reason: &Option<CloseReason>) -> twistor::tls::TlsError {
    match reason {
        Some(CloseReason::Lost(twistor::Error::Tls(err))) => err.clone(),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

/// A deterministic byte pattern.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A child process with stdin, stdout and stderr piped; stdout and stderr lines are read on
/// threads. Killed and reaped when dropped, so no test leaves one behind.
pub struct Peer {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line seen so far, stdout and stderr interleaved.
    pub seen: Vec<String>,
    /// Lines before this one have been matched by `wait_for`.
    cursor: usize,
}

impl Peer {
    pub fn spawn(program: &str, args: &[&str]) -> Peer {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err) as Box<dyn std::io::Read + Send>,
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Peer {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(data).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes the child's standard input.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Reads lines until one after the last line this matched contains `needle` (30 s at
    /// most); returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(i) = self.seen[self.cursor..]
                .iter()
                .position(|l| l.contains(needle))
            {
                self.cursor += i + 1;
                return self.seen[self.cursor - 1].clone();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line containing {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// Whether some line seen so far contains `needle`.
    pub fn saw(&self, needle: &str) -> bool {
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// Waits for the child to exit (30 s at most); returns whether it succeeded. Lines
    /// printed meanwhile are kept in `seen`.
    pub fn wait(&mut self) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(std::time::Duration::from_millis(50));
                while let Ok(line) = self.lines.try_recv() {
                    self.seen.push(line);
                }
                return status.success();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("child did not exit; saw {:#?}", self.seen);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number at the end of `line` (a port).
pub fn trailing_port(line: &str) -> u16 {
    let digits: String = line
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no port at the end of {line:?}"))
}

/// Where cargo put one of this crate's examples (it builds them for `cargo test`).
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join(name);
    assert!(path.exists(), "{} is not built", path.display());
    path
}
