//! Helpers shared by the integration tests: temporary directories, real tools, and running
//! a Deferred to completion on a real reactor.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use twistor::Reactor;
use twistor::defer::{Deferred, Failure};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "twistor-cred-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in the directory; returns its path.
    pub fn write(&self, name: &str, data: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, data).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
