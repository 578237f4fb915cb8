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
