//! Helpers shared by the integration tests: child processes that are always stopped,
//! finding the example binaries, and real peers that must exist under CI.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A child process that is killed and reaped when dropped, so no test leaves one behind.
pub struct ChildGuard {
    pub child: Child,
    lines: Option<mpsc::Receiver<String>>,
}

impl ChildGuard {
    /// Starts `command` with stdout piped; its lines are read on a thread.
    pub fn spawn(mut command: Command) -> ChildGuard {
        command.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        ChildGuard {
            child,
            lines: Some(line_channel(stdout)),
        }
    }

    /// The next line of output, waiting up to 20 s.
    pub fn line(&mut self) -> String {
        self.lines
            .as_ref()
            .expect("stdout piped")
            .recv_timeout(Duration::from_secs(20))
            .expect("child printed a line in time")
    }

    /// Reads lines until one contains `needle`; returns it.
    pub fn line_containing(&mut self, needle: &str) -> String {
        loop {
            let line = self.line();
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The number at the end of the next line (the examples print their port that way).
    pub fn port(&mut self) -> u16 {
        let line = self.line();
        trailing_number(&line).unwrap_or_else(|| panic!("no port in {line:?}"))
    }

    /// Sends a signal.
    pub fn signal(&self, signal: libc::c_int) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits up to 20 s for the child to exit; returns its status and remaining output.
    pub fn wait(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        for _ in 0..2000 {
            if let Some(status) = self.child.try_wait().unwrap() {
                let rest = self
                    .lines
                    .take()
                    .map(|rx| rx.iter().collect())
                    .unwrap_or_default();
                return (status, rest);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("child {} did not exit", self.child.id());
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn line_channel(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn trailing_number(line: &str) -> Option<u16> {
    let digits: String = line
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

/// The directory cargo puts this test's sibling binaries in (`target/<profile>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A command running one of this crate's examples (cargo builds them for `cargo test`).
pub fn example(name: &str) -> Command {
    let path = target_dir().join("examples").join(name);
    assert!(path.exists(), "{} is not built", path.display());
    Command::new(path)
}

/// Whether a peer program exists. Missing under `CI=true` is a failure, not a skip, so a
/// broken CI setup cannot pass silently.
pub fn have(program: &str, check: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(check)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("peer {program} is missing; .ci/run should install it");
        }
        eprintln!("skipping: peer {program} is not installed");
    }
    ok
}

/// Whether Python with Twisted is available (same CI rule as [`have`]).
pub fn have_twisted() -> bool {
    have("python3", &["-c", "import twisted"])
}

/// The path of a peer script in `tests/peers`.
pub fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// Runs a command to completion with `input` on stdin; returns stdout.
pub fn run_with_input(mut command: Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("spawn");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.wait().unwrap();
    out
}
