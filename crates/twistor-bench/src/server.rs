//! The echo servers under test: how to start each one, and a guard that kills it.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The C epoll echo server's source, compiled at run time with the system's C compiler.
pub const EPOLL_ECHO_C: &str = include_str!("../c/epoll_echo.c");
/// The epoll loop both C servers include, written next to their source before compiling.
pub const EPOLL_LOOP_H: &str = include_str!("../c/epoll_loop.h");
/// Twisted's echo server, run with the system's `python3`.
pub const TWISTED_ECHO_PY: &str = include_str!("../py/twisted_echo.py");

/// How one server of a suite is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The twistor command (`--twistor-cmd`, else the suite's default).
    Twistor,
    /// This binary's `serve NAME PORT`.
    BuiltIn(&'static str),
    /// The suite's C program, compiled at run time.
    C,
    /// The suite's Twisted script, run with the system's Python.
    Twisted,
}

/// The servers one suite compares: what [`Launcher`] needs to know to start them.
pub trait ServerSet: Copy + Eq + Ord + fmt::Debug + fmt::Display + 'static {
    /// Every server, in the order tables list them.
    const ALL: &'static [Self];
    /// twistor's server, the base of every ratio.
    const TWISTOR: Self;
    /// The C program: its name (of the executable, and with `.c` of the source) and source.
    const C_PROGRAM: (&'static str, &'static str);
    /// The Twisted script: its file name and text.
    const TWISTED_SCRIPT: (&'static str, &'static str);

    /// The short name used on the command line and in tables.
    fn name(self) -> &'static str;

    /// How this server is started.
    fn start(self) -> Start;

    /// The twistor command when none is given, `{port}` standing for the port.
    fn default_twistor_cmd(self_exe: &Path) -> Vec<String>;

    /// Looks a server up by its short name.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// One of the echo servers the suite compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerKind {
    /// twistor's echo server (`twist echo`, or this binary's copy of the echo example).
    Twistor,
    /// tokio on a `current_thread` runtime, a 4 KiB buffer per connection.
    TokioCt,
    /// tokio on the default `multi_thread` runtime (one worker per CPU), pinned like the rest.
    TokioMt,
    /// The minimal C epoll loop in `c/epoll_echo.c`: the ceiling.
    C,
    /// Twisted's echo on CPython.
    Twisted,
}

impl ServerSet for ServerKind {
    const ALL: &'static [ServerKind] = &[
        ServerKind::Twistor,
        ServerKind::TokioCt,
        ServerKind::TokioMt,
        ServerKind::C,
        ServerKind::Twisted,
    ];
    const TWISTOR: ServerKind = ServerKind::Twistor;
    const C_PROGRAM: (&'static str, &'static str) = ("epoll_echo", EPOLL_ECHO_C);
    const TWISTED_SCRIPT: (&'static str, &'static str) = ("twisted_echo.py", TWISTED_ECHO_PY);

    fn name(self) -> &'static str {
        match self {
            ServerKind::Twistor => "twistor",
            ServerKind::TokioCt => "tokio-ct",
            ServerKind::TokioMt => "tokio-mt",
            ServerKind::C => "c-epoll",
            ServerKind::Twisted => "twisted",
        }
    }

    fn start(self) -> Start {
        match self {
            ServerKind::Twistor => Start::Twistor,
            ServerKind::TokioCt => Start::BuiltIn("tokio-ct"),
            ServerKind::TokioMt => Start::BuiltIn("tokio-mt"),
            ServerKind::C => Start::C,
            ServerKind::Twisted => Start::Twisted,
        }
    }

    /// `twist echo` next to this binary if built, else this binary's `serve twistor`.
    fn default_twistor_cmd(self_exe: &Path) -> Vec<String> {
        if let Some(dir) = self_exe.parent() {
            let twist = dir.join("twist");
            if twist.is_file() {
                return vec![
                    twist.display().to_string(),
                    "echo".into(),
                    "--listen".into(),
                    "tcp:{port}".into(),
                ];
            }
        }
        vec![
            self_exe.display().to_string(),
            "serve".into(),
            "twistor".into(),
            "{port}".into(),
        ]
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to start each server of a suite: resolved once per run (compiling the C server,
/// finding Python).
#[derive(Debug, Clone)]
pub struct Launcher<K: ServerSet> {
    /// The twistor server command, `{port}` standing for the port.
    pub twistor_cmd: Vec<String>,
    /// This benchmark binary, for the servers it carries.
    pub self_exe: PathBuf,
    /// The compiled C server, or why there is none.
    pub c_exe: Result<PathBuf, String>,
    /// `python3` and the Twisted script, or why Twisted is skipped.
    pub twisted: Result<(PathBuf, PathBuf), String>,
    /// The CPU servers are pinned to, if any.
    pub server_core: Option<usize>,
    kinds: PhantomData<K>,
}

impl<K: ServerSet> Launcher<K> {
    /// Prepares every server: compiles the C one and writes the Twisted script under
    /// `work_dir`, and picks the twistor command (`twistor_cmd` if given, else the suite's
    /// default, [`ServerSet::default_twistor_cmd`]).
    pub fn prepare(
        work_dir: &Path,
        twistor_cmd: Option<&str>,
        server_core: Option<usize>,
    ) -> io::Result<Launcher<K>> {
        std::fs::create_dir_all(work_dir)?;
        let self_exe = std::env::current_exe()?;
        let twistor_cmd = match twistor_cmd {
            Some(cmd) => cmd.split_whitespace().map(str::to_owned).collect(),
            None => K::default_twistor_cmd(&self_exe),
        };
        let (c_name, c_source) = K::C_PROGRAM;
        let (script_name, script_text) = K::TWISTED_SCRIPT;
        Ok(Launcher {
            twistor_cmd,
            c_exe: compile_c(work_dir, c_name, c_source),
            twisted: find_twisted(work_dir, script_name, script_text),
            self_exe,
            server_core,
            kinds: PhantomData,
        })
    }

    /// The twistor command as reports show it: the program by file name only.
    pub fn twistor_cmd_display(&self) -> String {
        let mut args = self.twistor_cmd.clone();
        if let Some(name) = args
            .first()
            .and_then(|p| Path::new(p).file_name())
            .map(|n| n.to_string_lossy().into_owned())
        {
            args[0] = name;
        }
        args.join(" ")
    }

    /// Why `kind` cannot run here, if it cannot.
    pub fn unavailable(&self, kind: K) -> Option<String> {
        match kind.start() {
            Start::C => self.c_exe.as_ref().err().cloned(),
            Start::Twisted => self.twisted.as_ref().err().cloned(),
            Start::Twistor | Start::BuiltIn(_) => None,
        }
    }

    /// Splits `kinds` into those that can run here, in order, and the reasons the others
    /// cannot (each also printed as a note).
    pub fn available(&self, kinds: &[K]) -> (Vec<K>, Vec<String>) {
        let mut servers = Vec::new();
        let mut notes = Vec::new();
        for &kind in kinds {
            match self.unavailable(kind) {
                Some(why) => {
                    eprintln!("note: {why}");
                    notes.push(why);
                }
                None => servers.push(kind),
            }
        }
        (servers, notes)
    }

    /// The command line (program first) that runs `kind` on `port`.
    pub fn command_line(&self, kind: K, port: u16) -> io::Result<Vec<String>> {
        let unavailable = |why: &String| io::Error::new(io::ErrorKind::NotFound, why.clone());
        let exe = self.self_exe.display().to_string();
        let port = port.to_string();
        Ok(match kind.start() {
            Start::Twistor => self
                .twistor_cmd
                .iter()
                .map(|a| a.replace("{port}", &port))
                .collect(),
            Start::BuiltIn(name) => vec![exe, "serve".into(), name.into(), port],
            Start::C => {
                let c = self.c_exe.as_ref().map_err(unavailable)?;
                vec![c.display().to_string(), port]
            }
            Start::Twisted => {
                let (python, script) = self.twisted.as_ref().map_err(unavailable)?;
                vec![
                    python.display().to_string(),
                    script.display().to_string(),
                    port,
                ]
            }
        })
    }

    /// Starts `kind` on a free port, pinned to the server core, and waits until it accepts.
    pub fn start(&self, kind: K) -> io::Result<Server> {
        self.start_wrapped(kind, &[], Duration::from_secs(20))
    }

    /// Starts `kind` under a wrapper such as `valgrind --tool=callgrind` or `strace -c -f`
    /// (`wrapper` is the wrapper's command line, the server's follows it), waiting up to
    /// `ready_timeout` for the server to accept.
    pub fn start_wrapped(
        &self,
        kind: K,
        wrapper: &[String],
        ready_timeout: Duration,
    ) -> io::Result<Server> {
        let port = free_port()?;
        let mut argv: Vec<String> = wrapper.to_vec();
        argv.extend(self.command_line(kind, port)?);
        Server::spawn(kind.name(), &argv, port, self.server_core, ready_timeout)
    }
}

/// A running server process. Dropping it kills the process, so no server outlives a run,
/// even when the run fails.
#[derive(Debug)]
pub struct Server {
    /// Which server this is, by its short name.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    /// Runs `argv` (program first), pinned to `core` if given, and waits up to
    /// `ready_timeout` until it accepts connections on `port` of 127.0.0.1. Its standard
    /// output is discarded; its standard error is this process's.
    pub fn spawn(
        name: &'static str,
        argv: &[String],
        port: u16,
        core: Option<usize>,
        ready_timeout: Duration,
    ) -> io::Result<Server> {
        let accepts = |addr: &SocketAddr| {
            TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
        };
        Server::spawn_probed(name, argv, port, core, ready_timeout, accepts)
    }

    /// Like [`Server::spawn`], but the server is ready when `ready(addr)` says so (for a
    /// UDP server, an answer to a query); `ready` should wait no more than a fraction of a
    /// second each time, as it is called again until `ready_timeout`.
    pub fn spawn_probed(
        name: &'static str,
        argv: &[String],
        port: u16,
        core: Option<usize>,
        ready_timeout: Duration,
        ready: impl FnMut(&SocketAddr) -> bool,
    ) -> io::Result<Server> {
        let Some((program, args)) = argv.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(core) = core {
            pin_command(&mut command, core);
        }
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", argv.join(" "))))?;
        let mut server = Server {
            name,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        };
        server.wait_ready(ready_timeout, ready)?;
        if let Some(core) = core {
            // Some servers pin their own threads once started (knot puts its UDP workers on
            // CPUs 0, 1, …): put every thread of the tree back on the server's core, or such a
            // server would share the load generator's.
            repin_tree(server.child.id(), core)?;
        }
        Ok(server)
    }

    /// The pid of the process started (the wrapper's, when wrapped).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to `pid` (the server or, when wrapped, a process under it).
    pub fn signal(pid: u32, signal: i32) -> io::Result<()> {
        // SAFETY: kill has no memory-safety preconditions.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Waits up to `timeout` for the process to exit by itself, true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut(&SocketAddr) -> bool,
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{} exited before listening ({status})",
                    self.name
                )));
            }
            if ready(&self.addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} did not listen on {} in time", self.name, self.addr),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A wrapper's children (strace's tracee) and a server's forked workers (NSD's)
            // would outlive it: kill them first.
            for pid in crate::procfs::descendants(self.child.id()) {
                let _ = Server::signal(pid, libc::SIGKILL);
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Pins the current thread (and the threads and processes it later starts) to `core`.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    set_affinity(core)
}

/// Makes `command`'s process start pinned to `core` (like `taskset -c CORE`, but the pid stays
/// the server's own).
fn pin_command(command: &mut Command, core: usize) {
    // SAFETY: the closure only makes the sched_setaffinity system call, which is
    // async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(move || set_affinity(core));
    }
}

/// Pins every thread of `pid` and of its descendants to `core`.
fn repin_tree(pid: u32, core: usize) -> io::Result<()> {
    let mut pids = vec![pid];
    pids.extend(crate::procfs::descendants(pid));
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue; // gone meanwhile
        };
        for task in tasks.flatten() {
            if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok())
                && let Err(err) = set_thread_affinity(tid, core)
                && err.raw_os_error() != Some(libc::ESRCH)
            {
                return Err(err);
            }
        }
    }
    Ok(())
}

fn set_affinity(core: usize) -> io::Result<()> {
    set_thread_affinity(0, core)
}

/// Pins thread `tid` (0: the calling one) to `core`.
fn set_thread_affinity(tid: libc::pid_t, core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it, and
    // sched_setaffinity reads size_of::<cpu_set_t>() bytes from it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raises this process's open-file limit to its hard limit (servers started later inherit
/// it), returning the new soft limit. The idle scenario needs two descriptors per connection
/// on this side and one on the server's.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// A port on 127.0.0.1 that was free a moment ago (bind port 0, read it, let it go).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The number of CPUs online (not only those this process is pinned to).
pub fn cpu_count() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}

/// Compiles the C program `source_text` as `work_dir/name` with `$CC` (else `cc`), with
/// the shared `epoll_loop.h` beside it, or says why it could not.
pub fn compile_c(work_dir: &Path, name: &str, source_text: &str) -> Result<PathBuf, String> {
    let source = work_dir.join(format!("{name}.c"));
    let exe = work_dir.join(name);
    std::fs::write(&source, source_text)
        .and_then(|()| std::fs::write(work_dir.join("epoll_loop.h"), EPOLL_LOOP_H))
        .map_err(|e| format!("writing C source: {e}"))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-O2", "-g", "-o"])
        .arg(&exe)
        .arg(&source)
        .status()
        .map_err(|e| format!("C server skipped: no C compiler `{cc}` ({e})"))?;
    if status.success() {
        Ok(exe)
    } else {
        Err(format!("C server skipped: `{cc}` failed ({status})"))
    }
}

/// Finds a Python with Twisted (`$PYTHON`, else `python3`) and writes `script_text` as
/// `work_dir/script_name`; returns the interpreter's real path and the script's, or says
/// why Twisted is skipped.
pub fn find_twisted(
    work_dir: &Path,
    script_name: &str,
    script_text: &str,
) -> Result<(PathBuf, PathBuf), String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    // Ask for the interpreter's real path: `python3` may be a shell shim (pyenv) that
    // valgrind would profile instead of Python.
    let probe = Command::new(&python)
        .args(["-c", "import sys, twisted; print(sys.executable)"])
        .stderr(Stdio::null())
        .output();
    let exe = match probe {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(_) => {
            return Err(format!(
                "Twisted skipped: `{python} -c 'import twisted'` failed (pip install twisted)"
            ));
        }
        Err(e) => return Err(format!("Twisted skipped: no `{python}` ({e})")),
    };
    let exe = if exe.is_empty() { python } else { exe };
    let script = work_dir.join(script_name);
    std::fs::write(&script, script_text).map_err(|e| format!("writing Twisted script: {e}"))?;
    Ok((PathBuf::from(exe), script))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &kind in ServerKind::ALL {
            assert_eq!(ServerKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ServerKind::from_name("nginx"), None);
    }
}
