//! Helpers shared by the integration tests: temporary directories, real tools, and running
//! a Deferred to completion on a real reactor.

#![allow(dead_code)]

use std::process::{Command, Stdio};

use twistor::Reactor;
use twistor::defer::{Deferred, Failure};

#[allow(unused_imports)] // not every test binary uses it
pub use twistor_testing::TempDir;

/// Whether `tool` is installed, checked by the shell command `check` (stdin closed).
/// Missing under `CI=true` fails the test, as `twistor_testing::process::have` does.
pub fn have_tool(tool: &str, check: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", check])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is missing; .ci/run should install it");
        }
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

/// Runs `program args` with `input` on stdin; returns its stdout, failing the test if it
/// fails.
pub fn run(program: &str, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `reactor` until `d` fires; returns its result.
pub fn wait<T: 'static>(reactor: &Reactor, d: &Deferred<T>) -> Result<T, Failure> {
    if !d.called() {
        let r = reactor.clone();
        d.add_both(move |result| {
            r.stop();
            result
        });
        reactor.run().expect("the reactor ran");
    }
    d.try_result().expect("fired")
}
