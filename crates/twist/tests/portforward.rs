//! `twist portforward` in front of `twist echo`: many echoes across many connections, and
//! command-line errors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use twistor_testing::process::ChildGuard;

fn twist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_twist"))
}

/// Starts `twist ARGS... --listen tcp:0:interface=127.0.0.1`; returns it and its port.
fn start(args: &[&str]) -> (ChildGuard, u16) {
    let mut cmd = twist();
    cmd.args(args)
        .args(["--listen", "tcp:0:interface=127.0.0.1"]);
    let mut child = ChildGuard::spawn(cmd);
    let line = child.err_line_containing("starting on");
    let digits: String = line
        .chars()
        .rev()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let port = digits.chars().rev().collect::<String>().parse().unwrap();
    (child, port)
}

#[test]
fn ten_thousand_echoes_across_a_hundred_connections_through_portforward() {
    let (_echo, echo_port) = start(&["echo"]);
    let dest = format!("127.0.0.1:{echo_port}");
    let (_forward, port) = start(&["portforward", "--dest", &dest]);
    let mut conns: Vec<TcpStream> = (0..100)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s
        })
        .collect();
    for round in 0..100 {
        for (i, c) in conns.iter_mut().enumerate() {
            c.write_all(format!("{i:03}:{round:03}|").as_bytes())
                .unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let mut back = [0u8; 8];
            c.read_exact(&mut back).unwrap();
            assert_eq!(&back, format!("{i:03}:{round:03}|").as_bytes());
        }
    }
}

#[test]
fn bad_destination_is_a_usage_error() {
    for dest in ["nowhere", "host:http", "host:0"] {
        let out = twist()
            .args(["portforward", "--dest", dest])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{dest}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--dest"));
    }
    let out = twist().args(["portforward"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--dest is required");
}

#[test]
fn curl_through_portforward_to_python_http_server() {
    use twistor_testing::process::have;
    if !have("curl", &["--version"]) || !have("python3", &["--version"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("twist-pf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.join("index.txt"), &body).unwrap();
    let (_http, http_port) = ChildGuard::python_http_server(&dir);
    let dest = format!("127.0.0.1:{http_port}");
    let (_forward, port) = start(&["portforward", "--dest", &dest]);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .arg(format!("http://127.0.0.1:{port}/index.txt"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), body);
}

/// How many sockets process `pid` has open (the listening socket and both ends of each
/// forwarded connection; pipes and the like, opened as the reactor starts, are not counted).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Opens `n` connections to `port` and writes to each until the kernel takes no more (the
/// path behind it is backed up), reading nothing; returns them.
fn clients_that_write_without_reading(port: u16, n: usize) -> Vec<TcpStream> {
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let chunk = vec![b'x'; 64 * 1024];
    let mut refused_in_a_row = vec![0u32; n];
    // A few refusals in a row, a little apart, say the whole path is full, not just our
    // socket's buffer at one instant.
    while refused_in_a_row.iter().any(|&r| r < 20) {
        for (c, refused) in conns.iter_mut().zip(&mut refused_in_a_row) {
            match c.write(&chunk) {
                Ok(_) => *refused = 0,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => *refused += 1,
                Err(e) => panic!("write failed: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    conns
}

/// Waits (up to `limit`) until `pid` has `fds` sockets open; returns how long it took.
fn wait_for_fds(pid: u32, fds: usize, limit: Duration) -> Result<Duration, usize> {
    let start = std::time::Instant::now();
    loop {
        let now = open_fds(pid);
        if now <= fds {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(now);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn clients_that_wrote_without_reading_and_died_leave_no_connection_behind() {
    // Through an echo: once the clients are gone the forwarder reads (and drops) what the
    // echo sends back, so the echo reads again and the queue to it drains, long before the
    // drain timeout.
    let (_echo, echo_port) = start(&["echo"]);
    let dest = format!("127.0.0.1:{echo_port}");
    let (forward, port) = start(&["portforward", "--dest", &dest, "--drain-timeout", "60"]);
    let baseline = open_fds(forward.id());
    let clients = clients_that_write_without_reading(port, 20);
    assert!(
        open_fds(forward.id()) >= baseline + 40,
        "both sides of each are open"
    );
    drop(clients);
    let took = wait_for_fds(forward.id(), baseline, Duration::from_secs(30))
        .unwrap_or_else(|left| panic!("{left} sockets still open (baseline {baseline})"));
    assert!(took < Duration::from_secs(10), "closed after {took:?}");

    // To a destination that never reads (its connections wait in the listen backlog):
    // what is queued for it can never go, so the drain timeout cuts it.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dest = format!("127.0.0.1:{}", sink.local_addr().unwrap().port());
    let (forward, port) = start(&["portforward", "--dest", &dest, "--drain-timeout", "1"]);
    let baseline = open_fds(forward.id());
    let clients = clients_that_write_without_reading(port, 20);
    // They die with a reset, as a process killed with unread data does (here nothing came
    // back to leave unread, so the reset is asked for).
    for c in &clients {
        socket2::SockRef::from(c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    drop(clients);
    let took = wait_for_fds(forward.id(), baseline, Duration::from_secs(30))
        .unwrap_or_else(|left| panic!("{left} sockets still open (baseline {baseline})"));
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
}
