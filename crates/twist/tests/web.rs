//! `twist web` from the outside: files and the access log, the reverse proxy, several
//! workers on one port, command-line errors, and a directory listing rendered by headless
//! Chromium.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use twistor_testing::process::{ChildGuard, have, wait_until_refused};

fn twist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_twist"))
}

use twistor_testing::TempDir;

/// Starts `twist web` with `args` on an OS-chosen port; returns it and the port.
fn start(args: &[&str]) -> (ChildGuard, u16) {
    let mut cmd = twist();
    cmd.args(["web", "--listen", "tcp:0:interface=127.0.0.1"])
        .args(args);
    let mut child = ChildGuard::spawn(cmd);
    let line = child.err_line_containing("starting on");
    let port = line.rsplit(' ').next().unwrap().parse().unwrap();
    (child, port)
}

/// One request on a new connection; the whole response.
fn fetch(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nUser-Agent: web-test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_files_and_logs_each_request_to_stdout() {
    let dir = TempDir::new("files");
    dir.write("hello.txt", b"hello from twist web\n");
    let (mut child, port) = start(&["--path", dir.path().to_str().unwrap()]);
    let response = fetch(port, "/hello.txt");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello from twist web\n"));
    let line = child.line();
    assert!(
        line.starts_with("127.0.0.1 - - ["),
        "combined log format: {line}"
    );
    assert!(
        line.ends_with("] \"GET /hello.txt HTTP/1.1\" 200 21 \"-\" \"web-test\""),
        "{line}"
    );
    let response = fetch(port, "/missing");
    assert!(response.starts_with("HTTP/1.1 404 "));
    assert!(child.line().contains("\"GET /missing HTTP/1.1\" 404 "));
}

#[test]
fn reverse_proxy_to_another_twist_web() {
    let dir = TempDir::new("upstream");
    dir.write("up.txt", b"from upstream");
    let (_upstream, up_port) = start(&["--path", dir.path().to_str().unwrap(), "--no-access-log"]);
    let (_proxy, port) = start(&["--proxy", &format!("http://127.0.0.1:{up_port}/")]);
    let response = fetch(port, "/up.txt");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nfrom upstream"));
}

#[test]
fn workers_share_one_port() {
    let dir = TempDir::new("workers");
    dir.write("w.txt", b"w");
    let (mut child, port) = start(&["--path", dir.path().to_str().unwrap(), "--workers", "3"]);
    child.err_line_containing("serving with 3 workers");
    let threads = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .count();
    assert!(threads >= 3, "{threads} threads");
    // Many connections at once; the kernel spreads them over the three listeners.
    let handles: Vec<_> = (0..24)
        .map(|_| std::thread::spawn(move || fetch(port, "/w.txt")))
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert!(
            r.starts_with("HTTP/1.1 200 OK") && r.ends_with("\r\n\r\nw"),
            "{r}"
        );
    }
}

#[test]
fn command_line_errors_exit_2() {
    for args in [
        &["web", "--workers", "0"][..],
        &["web", "--workers", "2", "--listen", "unix:/tmp/x.sock"],
        &["web", "--path", "/no/such/dir/anywhere"],
        &["web", "--proxy", "ftp://x/"],
        &["web", "--path", ".", "--proxy", "http://x/"],
        &["web", "--listen", "tcp:eighty"],
    ] {
        let out = twist().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn chromium_renders_the_directory_listing() {
    if !have("chromium", &["--version"]) {
        return;
    }
    let dir = TempDir::new("chromium");
    dir.write("listing/alpha-report.txt", b"a");
    dir.write("listing/<b>bold & \"more\".txt", b"bb");
    dir.write("listing/Überraschung.pdf", b"ccc");
    dir.write("listing/nested/inner.txt", b"d");
    let (_child, port) = start(&["--path", dir.path().to_str().unwrap(), "--no-access-log"]);
    let url = format!("http://127.0.0.1:{port}/listing/");
    let shot = std::env::temp_dir().join(format!("twist-web-listing-{}.png", std::process::id()));
    let profile = dir.join("chromium-profile");
    let base = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    };
    // The DOM as Chromium built it: each name is a link's text, markup in names is text.
    let mut cmd = Command::new("chromium");
    base(&mut cmd);
    let dom = cmd.arg("--dump-dom").arg(&url).output().unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for expected in [
        ">alpha-report.txt</a>",
        ">&lt;b&gt;bold &amp; \"more\".txt</a>",
        ">Überraschung.pdf</a>",
        ">nested/</a>",
    ] {
        assert!(dom.contains(expected), "{expected:?} not in {dom}");
    }
    assert!(!dom.contains("<b>bold"), "a name became markup");
    // And a picture of it, to look at.
    let mut cmd = Command::new("chromium");
    base(&mut cmd);
    let status = cmd
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=900,500")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000,
        "{} bytes",
        png.len()
    );
    keep_screenshot(&shot);
}

/// Leaves the screenshot where a person can look at it (target/ when run by cargo).
fn keep_screenshot(shot: &Path) {
    let dest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/twist-web-listing.png");
    let _ = std::fs::copy(shot, dest);
    let _ = std::fs::remove_file(shot);
}

/// A throwaway authority and a certificate it signed for `localhost`, in `dir`:
/// (key, cert, authority) paths.
fn certificate(dir: &Path) -> (String, String, String) {
    let p = |name: &str| dir.join(name).display().to_string();
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("key.pem"),
        p("leaf.csr"),
        p("cert.pem"),
        p("leaf.ext"),
    );
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    for line in [
        format!("req -x509 {ec} -days 2 -subj /CN=test-CA -keyout {ca_key} -out {ca}"),
        format!("req {ec} -subj /CN=localhost -keyout {key} -out {csr}"),
        format!(
            "x509 -req -days 2 -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -extfile {ext} -out {cert}"
        ),
    ] {
        let out = Command::new("openssl")
            .args(line.split(' '))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (key, cert, ca)
}

#[test]
fn https_listeners_offer_http11_with_one_or_several_workers() {
    if !have("openssl", &["version"]) || !have("curl", &["--version"]) {
        return;
    }
    let dir = TempDir::new("https");
    dir.write("s.txt", b"over tls");
    let (key, cert, ca) = certificate(dir.path());
    for workers in ["1", "2"] {
        let mut cmd = twist();
        cmd.args(["web", "--no-access-log", "--workers", workers, "--path"])
            .arg(dir.path())
            .arg("--listen")
            .arg(format!(
                "ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
            ));
        let mut child = ChildGuard::spawn(cmd);
        let line = child.err_line_containing("starting on");
        let port: u16 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let out = Command::new("curl")
            .args(["-sv", "--max-time", "10", "--cacert", &ca])
            .arg(format!("https://localhost:{port}/s.txt"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "over tls", "{err}");
        assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
    }
}

/// The child's resident memory, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Most the server may grow by while one client pipelines 3 MB of requests for a directory
/// listing and reads none of it. Measured: 360 KiB. Before the output was bounded it grew
/// by 17 MiB in the first second, and on for as long as it had requests.
const UNREAD_PIPELINE_BOUND_KIB: u64 = 4 * 1024;

#[test]
fn an_unread_pipeline_does_not_grow_the_server_and_others_are_served_until_dropped() {
    let dir = TempDir::new("pipeline");
    for i in 0..200 {
        dir.write(format!("a-file-with-a-fairly-long-name-{i:04}.txt"), b"x");
    }
    let path = dir.path().to_str().unwrap();
    let (child, port) = start(&["--path", path, "--no-access-log", "--send-timeout", "1"]);
    let pid = child.id();
    let listing = fetch(port, "/");
    assert!(listing.starts_with("HTTP/1.1 200 OK\r\n"), "{listing}");
    assert!(listing.len() > 20_000, "{} bytes a listing", listing.len());
    let before = rss_kib(pid);

    let mut attacker = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Shorter than the send timeout, so a blocked write ends before the server drops us.
    attacker
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let requests = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(64 * 1024 / 27);
    let mut sent = 0;
    let mut grown = 0;
    while sent < 3 << 20 && grown < UNREAD_PIPELINE_BOUND_KIB {
        match attacker.write(&requests) {
            Ok(n) => sent += n,
            // The server stopped reading: the kernel's buffers are full.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            // Dropped already (a slow machine took longer than the send timeout to get
            // here): what follows still holds.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                break;
            }
            Err(e) => panic!("{e}"),
        }
        grown = rss_kib(pid).saturating_sub(before);
    }
    // The server has had time to do what it was going to with what it read.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        grown = grown.max(rss_kib(pid).saturating_sub(before));
    }
    eprintln!("sent {sent} bytes of requests; the server grew by {grown} KiB");
    assert!(sent >= 64 * 1024, "the server read some: {sent}");
    assert!(
        grown < UNREAD_PIPELINE_BOUND_KIB,
        "grew by {grown} KiB after {sent} bytes of unread requests"
    );
    // Another client is served meanwhile, whole.
    let other = fetch(port, "/");
    assert!(other.starts_with("HTTP/1.1 200 OK\r\n"), "{other}");
    assert_eq!(other.len(), listing.len());
    // The client that reads nothing is dropped after the send timeout (1 s here).
    let started = std::time::Instant::now();
    let dropped = loop {
        match attacker.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n") {
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break Some(e),
            _ if started.elapsed() > Duration::from_secs(10) => break None,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(dropped.is_some(), "still connected after 10 s");
}

/// Reads an HTTP/1.1 response head from `s`; returns it and the body bytes read past it.
fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the head: {got:?}");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end + 4]).into_owned();
            return (head, got[end + 4..].to_vec());
        }
    }
}

#[test]
fn sigterm_lets_a_download_in_flight_finish_and_closes_idle_connections() {
    const SIZE: usize = 32 << 20;
    let dir = TempDir::new("drain");
    dir.write("big.bin", vec![7u8; SIZE]);
    let (mut child, port) = start(&["--path", dir.path().to_str().unwrap(), "--no-access-log"]);
    // A keep-alive connection that has had its response and sits idle.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (head, _) = read_head(&mut idle);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // A download under way, its reader slower than the server.
    let mut download = TcpStream::connect(("127.0.0.1", port)).unwrap();
    download
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    download
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (head, mut body) = read_head(&mut download);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {SIZE}\r\n")),
        "{head}"
    );

    child.signal(libc::SIGTERM);
    wait_until_refused(port);
    // The idle connection is closed at once (the read times out after 10 s otherwise).
    let mut buf = [0u8; 64];
    let idle_read = idle.read(&mut buf);
    let timed_out = matches!(&idle_read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(
        matches!(idle_read, Ok(0) | Err(_)) && !timed_out,
        "idle connection still open: {idle_read:?}"
    );
    // The download runs to its end, then that connection closes too.
    let mut rest = Vec::new();
    download.read_to_end(&mut rest).unwrap();
    body.extend_from_slice(&rest);
    assert_eq!(body.len(), SIZE, "the whole body arrived");
    let (status, _) = child.wait();
    assert!(status.success(), "{status}");
}

#[test]
fn workers_drain_and_exit_on_sigterm() {
    let dir = TempDir::new("workers-drain");
    dir.write("w.txt", b"w");
    let (mut child, port) = start(&["--path", dir.path().to_str().unwrap(), "--workers", "2"]);
    child.err_line_containing("serving with 2 workers");
    assert!(fetch(port, "/w.txt").ends_with("\r\n\r\nw"));
    child.signal(libc::SIGTERM);
    let (status, _) = child.wait();
    assert!(status.success(), "{status}");
}
