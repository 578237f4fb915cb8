//! `twist echo` from the outside: command-line errors, many connections, and running out of
//! file descriptors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use twistor_testing::process::{
    ChildGuard, have, raise_fd_limit, run_with_input, wait_until_refused,
};

fn twist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_twist"))
}

/// Starts `twist echo` on an OS-chosen port with extra description options; returns it
/// and its port (read from its log).
fn start_echo(options: &str, setup: impl FnOnce(&mut Command)) -> (ChildGuard, u16) {
    start_echo_with(&format!("tcp:0:interface=127.0.0.1{options}"), setup)
}

/// Starts `twist echo --listen DESCRIPTION`; returns it and its port.
fn start_echo_on(description: &str) -> (ChildGuard, u16) {
    start_echo_with(description, |_| {})
}

fn start_echo_with(description: &str, setup: impl FnOnce(&mut Command)) -> (ChildGuard, u16) {
    let mut cmd = twist();
    cmd.args(["echo", "--listen", description]);
    setup(&mut cmd);
    let mut child = ChildGuard::spawn(cmd);
    let line = child.err_line_containing("starting on");
    let port = line.rsplit(' ').next().unwrap().parse().unwrap();
    (child, port)
}

#[test]
fn malformed_description_exits_2_saying_what_was_expected() {
    let out = twist()
        .args(["echo", "--listen", "tcp:eighty"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"tcp:eighty\""), "{err}");
    assert!(
        err.contains("port must be a number from 0 to 65535"),
        "{err}"
    );
    let out = twist()
        .args(["echo", "--listen", "carrier-pigeon:80"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected one of"));
}

#[test]
fn unknown_flag_exits_2_with_usage() {
    let out = twist()
        .args(["echo", "--lisen", "tcp:80"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--lisen") && err.contains("Usage"), "{err}");
    let out = twist().arg("no-such-service").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = twist()
        .args([
            "echo",
            "--listen",
            &format!("tcp:{port}:interface=127.0.0.1"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("Address already in use"), "{err}");
}

#[test]
fn echoes_and_stops_on_sigterm() {
    let (mut server, port) = start_echo("", |_| {});
    if have("nc", &["-h"]) {
        let mut nc = Command::new("nc");
        nc.args(["-N", "127.0.0.1", &port.to_string()]);
        assert_eq!(run_with_input(nc, b"ping\n"), b"ping\n");
    }
    server.signal(libc::SIGTERM);
    let (status, _) = server.wait();
    assert!(status.success(), "{status}");
}

/// A connected client with a read timeout, that has had one echo back (so the server has
/// accepted it and is serving it).
fn echoing_client(port: u16) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    c
}

#[test]
fn sigterm_closes_the_listener_and_lets_open_connections_finish() {
    let (mut server, port) = start_echo("", |_| {});
    let mut open = echoing_client(port);
    server.signal(libc::SIGTERM);
    let line = server.err_line_containing("waiting up to");
    assert!(line.contains("10 s for 1 connection"), "{line}");
    wait_until_refused(port);
    // The connection that was open is still served...
    open.write_all(b"still here").unwrap();
    let mut back = [0u8; 10];
    open.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still here");
    // ...and once it closes, the server is done.
    drop(open);
    let (status, _) = server.wait();
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_sigterm_closes_open_connections_at_once() {
    let (mut server, port) = start_echo("", |_| {});
    let mut open = echoing_client(port);
    server.signal(libc::SIGTERM);
    wait_until_refused(port);
    server.signal(libc::SIGTERM);
    let mut buf = [0u8; 16];
    assert!(
        matches!(open.read(&mut buf), Ok(0) | Err(_)),
        "the open connection is closed"
    );
    let (status, _) = server.wait();
    assert!(status.success(), "{status}");
}

#[test]
fn open_connections_are_closed_when_the_shutdown_timeout_passes() {
    let (mut server, port) = start_echo("", |cmd| {
        cmd.args(["--shutdown-timeout", "0.5"]);
    });
    let mut open = echoing_client(port);
    let start = std::time::Instant::now();
    server.signal(libc::SIGTERM);
    let mut buf = [0u8; 16];
    assert!(
        matches!(open.read(&mut buf), Ok(0) | Err(_)),
        "the open connection is closed"
    );
    let (status, _) = server.wait();
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "closed after {:?}",
        start.elapsed()
    );
}

#[test]
fn ten_thousand_concurrent_connections_each_get_their_echo() {
    const N: usize = 10_000;
    let limit = raise_fd_limit(2 * N as u64 + 200);
    assert!(
        limit >= N as u64 + 100,
        "need {N}+ file descriptors, have {limit}"
    );
    let (_server, port) = start_echo(":backlog=4096", |_| {});
    // All connections first, so they are open at once; then every message; then every echo.
    let mut conns: Vec<TcpStream> = (0..N)
        .map(|i| {
            let s = TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s
        })
        .collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(format!("message {i:05}").as_bytes()).unwrap();
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let mut buf = [0u8; 13];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, *format!("message {i:05}").as_bytes());
    }
}

#[test]
fn running_out_of_descriptors_neither_spins_nor_stops_the_server() {
    const LIMIT: u64 = 32;
    const CLIENTS: usize = 60;
    let (server, port) = start_echo(":backlog=128", |cmd| unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    });
    let mut conns: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"x").unwrap();
            s
        })
        .collect();
    // Some are served at once; the rest wait in the backlog.
    let mut served = 0;
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).is_ok() {
            served += 1;
        }
    }
    assert!(
        served > 10 && served < CLIENTS,
        "served {served} of {CLIENTS}"
    );
    // While starved, the server must not spin: little CPU over a second.
    let before = server.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let used = server.cpu_time() - before;
    assert!(
        used < Duration::from_millis(200),
        "server used {used:?} of CPU while starved"
    );
    // Free descriptors: close the served connections; the others are accepted and echoed.
    let (done, waiting): (Vec<_>, Vec<_>) = conns
        .into_iter()
        .enumerate()
        .partition(|(i, _)| *i < served);
    drop(done);
    for (i, mut s) in waiting {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("connection {i} never served: {e}"));
        assert_eq!(&b, b"x");
    }
}

#[test]
fn listens_on_unix_sockets() {
    let dir = std::env::temp_dir().join(format!("twist-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let mut cmd = twist();
    cmd.args([
        "echo",
        "--listen",
        &format!("unix:{}:mode=600", path.display()),
    ]);
    let mut server = ChildGuard::spawn(cmd);
    server.err_line_containing("starting on");
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.write_all(b"over unix").unwrap();
    let mut buf = [0u8; 9];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"over unix");
    if have("socat", &["-V"]) {
        let mut socat = Command::new("socat");
        socat.args(["-", &format!("UNIX-CONNECT:{}", path.display())]);
        assert_eq!(run_with_input(socat, b"socat too\n"), b"socat too\n");
    }
    // Closed first, or the shutdown would give it its grace period.
    drop(s);
    server.signal(libc::SIGTERM);
    let (status, _) = server.wait();
    assert!(status.success());
    assert!(!path.exists(), "the socket file is removed on shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn takes_a_socket_from_systemd_socket_activation() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    // systemd's protocol: the socket at fd 3, LISTEN_FDS=1, LISTEN_PID=the service's pid
    // (the shell's `$$` is kept across `exec`).
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" echo --listen systemd:domain=INET:index=0",
        env!("CARGO_BIN_EXE_twist"),
    ]);
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec, so clear the flag in that case.
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, 3) == 3
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = ChildGuard::spawn(cmd);
    server.err_line_containing("starting on");
    drop(listener);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"activated").unwrap();
    let mut buf = [0u8; 9];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"activated");
    // Without the environment, the description is refused with the reason.
    let out = twist()
        .args(["echo", "--listen", "systemd:domain=INET:index=0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LISTEN_PID"));
}

#[test]
fn echoes_standard_input_and_exits() {
    let mut cmd = twist();
    cmd.args(["--log-level", "warn", "echo", "--listen", "stdio:"]);
    assert_eq!(run_with_input(cmd, b"hi\n"), b"hi\n");
    // More than a pipe holds, so the echo must wait for its reader.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let mut cmd = twist();
    cmd.args(["--log-level", "warn", "echo", "--listen", "stdio:"]);
    assert!(
        run_with_input(cmd, &big) == big,
        "3 MB through stdin and back"
    );
}

/// Makes a key and a self-signed certificate for `localhost` in `dir` with openssl.
fn self_signed_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (key, cert)
}

#[test]
fn a_client_stalled_mid_handshake_is_cut_at_the_handshake_timeout() {
    if !have("openssl", &["version"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("twist-ssl-stall-{}", std::process::id()));
    let (key, cert) = self_signed_certificate(&dir);
    let (_server, port) = start_echo_on(&format!(
        "ssl:0:privateKey={}:certKey={}:interface=127.0.0.1:handshakeTimeout=1",
        key.display(),
        cert.display()
    ));
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The start of a ClientHello record, then nothing.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let closed = match stalled.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(n) => panic!("{n} bytes from a server that should have hung up"),
    };
    let waited = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(closed, "the server hung up");
    assert!(
        waited < Duration::from_secs(10),
        "cut after {waited:?}, not at the 1 s handshake timeout"
    );
}

#[test]
fn serves_tls_to_openssl_s_client() {
    if !have("openssl", &["version"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("twist-ssl-{}", std::process::id()));
    let (key, cert) = self_signed_certificate(&dir);
    let (_server, port) = start_echo_on(&format!(
        "ssl:0:privateKey={}:certKey={}:interface=127.0.0.1",
        key.display(),
        cert.display()
    ));
    for version in ["-tls1_2", "-tls1_3"] {
        // s_client stops at the end of its input, so keep its stdin open until the echo is
        // back.
        let mut client = Command::new("openssl")
            .args(["s_client", version, "-quiet", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = client.stdin.take().unwrap();
        stdin.write_all(b"echo over tls\n").unwrap();
        let mut stdout = std::io::BufReader::new(client.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        let _ = client.kill();
        let _ = client.wait();
        assert_eq!(line, "echo over tls\n", "openssl s_client {version}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
