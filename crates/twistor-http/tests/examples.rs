//! The examples, driven as child processes against real peers: Python's `http.server`
//! for the `Agent` fetches, curl for the resource tree.

use std::path::PathBuf;
use std::process::{Command, Output};

use twistor_testing::process::{ChildGuard, closed_port, example, have};

/// SIGTERM's number on Linux (this crate's tests do not depend on libc).
const SIGTERM: i32 = 15;

fn have_python() -> bool {
    let present = have("python3", &["--version"]);
    assert!(
        present || std::env::var_os("CI").is_none(),
        "python3 is missing"
    );
    present
}

/// A directory with one file in it.
fn site_dir(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "twistor-http-examples-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("page.txt"), body).unwrap();
    dir
}

fn run(mut command: Command) -> Output {
    command.output().expect("the example runs")
}

#[test]
fn agent_examples_fetch_a_page_from_python() {
    if !have_python() {
        return;
    }
    let dir = site_dir("agent", "fetched by twistor\n");
    let (_server, port) = ChildGuard::python_http_server(&dir);
    for name in ["agent_callbacks", "agent_async"] {
        let mut c = example(name);
        c.arg(format!("http://127.0.0.1:{port}/page.txt"));
        let out = run(c);
        assert!(out.status.success(), "{name}: {out:?}");
        assert_eq!(out.stdout, b"fetched by twistor\n", "{name}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "200 OK\n", "{name}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn agent_examples_say_why_a_fetch_failed_and_exit_1() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    for name in ["agent_callbacks", "agent_async"] {
        let mut c = example(name);
        c.arg(&url);
        let out = run(c);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("connection refused"), "{name}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn web_tree_serves_get_post_and_static_files_to_curl() {
    if !have("curl", &["--version"]) {
        assert!(std::env::var_os("CI").is_none(), "curl is missing");
        return;
    }
    let dir = site_dir("tree", "a static file\n");
    let mut server = ChildGuard::spawn({
        let mut c = example("web_tree");
        c.arg("0").arg(&dir);
        c
    });
    let base = format!("http://127.0.0.1:{}", server.port());
    let curl = |args: &[&str]| {
        let out = Command::new("curl").arg("-s").args(args).output().unwrap();
        assert!(out.status.success(), "curl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(curl(&[&format!("{base}/hello")]), "Hello, world!\n");
    assert_eq!(
        curl(&["--data-binary", "ping", &format!("{base}/echo")]),
        "ping"
    );
    assert_eq!(
        curl(&[&format!("{base}/static/page.txt")]),
        "a static file\n"
    );
    let status = |args: &[&str]| curl(&[&["-o", "/dev/null", "-w", "%{http_code}"], args].concat());
    assert_eq!(
        status(&[&format!("{base}/echo")]),
        "405",
        "GET on a POST-only resource"
    );
    assert_eq!(status(&[&format!("{base}/nothing")]), "404");
    server.signal(SIGTERM);
    assert!(server.wait().0.success());
    std::fs::remove_dir_all(dir).unwrap();
}
