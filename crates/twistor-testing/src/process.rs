//! Child processes for tests that drive real programs: always stopped, with their output
//! read line by line, and peers that must exist under CI.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long [`ChildGuard`] waits for a line or an exit before failing the test.
const PATIENCE: Duration = Duration::from_secs(30);

/// A child process that is killed and reaped when dropped, so no test leaves one behind.
/// Its stdout and stderr are read line by line on threads.
pub struct ChildGuard {
    child: Child,
    stdout: Option<mpsc::Receiver<String>>,
    stderr: Option<mpsc::Receiver<String>>,
}

impl ChildGuard {
    /// Starts `command` with stdin closed and stdout and stderr piped.
    pub fn spawn(mut command: Command) -> ChildGuard {
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = line_channel(child.stdout.take().expect("piped"));
        let stderr = line_channel(child.stderr.take().expect("piped"));
        ChildGuard {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next line of standard output.
    pub fn line(&mut self) -> String {
        next_line(self.stdout.as_ref(), "stdout")
    }

    /// The next line of standard error.
    pub fn err_line(&mut self) -> String {
        next_line(self.stderr.as_ref(), "stderr")
    }

    /// Reads stdout lines until one contains `needle`; returns it. Fails after 30 s
    /// without one, however many other lines came.
    pub fn line_containing(&mut self, needle: &str) -> String {
        line_containing(self.stdout.as_ref(), "stdout", needle)
    }

    /// Reads stderr lines until one contains `needle`; returns it. Fails after 30 s
    /// without one, however many other lines came.
    pub fn err_line_containing(&mut self, needle: &str) -> String {
        line_containing(self.stderr.as_ref(), "stderr", needle)
    }

    /// [`try_err_line_containing`](Self::try_err_line_containing) for stdout.
    pub fn try_line_containing(&mut self, needle: &str) -> Result<String, String> {
        seek_line(self.stdout.as_ref(), "stdout", needle)
    }

    /// Reads stderr lines until one contains `needle`; returns it, or, if the child closed
    /// its stderr (it exited) or 30 s passed first, why and the last lines it read (for a
    /// test that tries again, or shows a server's log when it does not start).
    pub fn try_err_line_containing(&mut self, needle: &str) -> Result<String, String> {
        seek_line(self.stderr.as_ref(), "stderr", needle)
    }

    /// The number at the end of the next stdout line (the examples print their port so).
    pub fn port(&mut self) -> u16 {
        let line = self.line();
        trailing_number(&line).unwrap_or_else(|| panic!("no port in {line:?}"))
    }

    /// Starts `python3 -m http.server` on a port the OS picks, serving `dir`; returns the
    /// guard and the port (read from its "Serving HTTP on 127.0.0.1 port N ..." line).
    pub fn python_http_server(dir: &std::path::Path) -> (ChildGuard, u16) {
        let mut cmd = Command::new("python3");
        cmd.args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .current_dir(dir);
        let mut server = ChildGuard::spawn(cmd);
        let line = server.line_containing("Serving HTTP");
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        (server, port)
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the child to exit; returns its status and the rest of its stdout.
    pub fn wait(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let rest = self
                    .stdout
                    .take()
                    .map(|rx| rx.iter().collect())
                    .unwrap_or_default();
                return (status, rest);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("child {} did not exit", self.child.id());
    }

    /// The rest of standard error, up to its end: call it after [`wait`](ChildGuard::wait).
    pub fn rest_of_stderr(&mut self) -> Vec<String> {
        self.stderr
            .take()
            .map(|rx| rx.iter().collect())
            .unwrap_or_default()
    }

    /// CPU time the child has used so far (user + system), from `/proc/PID/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/PID/stat");
        // Fields after the parenthesised command name; utime and stime are the 12th and
        // 13th of them (14th and 15th of the line).
        let after = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn next_line(rx: Option<&mpsc::Receiver<String>>, which: &str) -> String {
    rx.expect("output still open")
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("child printed no {which} line in time: {e}"))
}

fn line_containing(rx: Option<&mpsc::Receiver<String>>, which: &str, needle: &str) -> String {
    seek_line(rx, which, needle).unwrap_or_else(|e| panic!("{e}"))
}

/// How many of the lines read before giving up [`seek_line`] reports.
const LINES_SHOWN: usize = 40;

fn seek_line(
    rx: Option<&mpsc::Receiver<String>>,
    which: &str,
    needle: &str,
) -> Result<String, String> {
    let rx = rx.expect("output still open");
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut seen = std::collections::VecDeque::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(line) => {
                if seen.len() == LINES_SHOWN {
                    seen.pop_front();
                }
                seen.push_back(line);
            }
            Err(e) => {
                let seen: Vec<String> = seen.into();
                return Err(format!(
                    "child printed no {which} line containing {needle:?} in time: {e}; \
                     its last {which} lines:\n{}",
                    seen.join("\n")
                ));
            }
        }
    }
}

fn line_channel(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
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

/// Whether a peer program runs (`program check...` exits 0). Missing under `CI=true` is a
/// failure, not a skip, so a broken CI setup cannot pass silently.
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

/// A command running one of the calling crate's examples (cargo builds them beside the
/// test binary, in `target/<profile>/examples`, for `cargo test`).
pub fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} is not built", path.display());
    Command::new(path)
}

/// A local TCP port nothing listens on (bound, noted, closed), for refused connections.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Waits until 127.0.0.1:`port` refuses connections (a server closed its listener); fails
/// after 30 s.
pub fn wait_until_refused(port: u16) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "127.0.0.1:{port} is still listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether Python with Twisted is available (same CI rule as [`have`]).
pub fn have_twisted() -> bool {
    have("python3", &["-c", "import twisted"])
}

/// Runs a command to completion with `input` on stdin; returns its stdout.
pub fn run_with_input(mut command: Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut out)
        .expect("read stdout");
    child.wait().expect("wait");
    writer.join().expect("writer").expect("write stdin");
    out
}

/// Raises this process's open-file limit to at least `wanted` (up to the hard limit), so
/// tests with thousands of sockets run; children inherit it. Returns the new soft limit.
pub fn raise_fd_limit(wanted: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < wanted {
            lim.rlim_cur = wanted.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        lim.rlim_cur
    }
}
