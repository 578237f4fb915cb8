//! Child processes as transports (Twisted's `reactor.spawnProcess` and `ProcessProtocol`).
//!
//! [`spawn_process`] starts a program with pipes on the descriptors its [`ProcessCommand`]
//! names (by default: stdin, stdout and stderr) and drives a [`ProcessProtocol`] from the
//! reactor: output arrives in [`out_received`](ProcessProtocol::out_received) and
//! [`err_received`](ProcessProtocol::err_received) (other descriptors in
//! [`child_data_received`](ProcessProtocol::child_data_received)), each closed pipe is
//! reported by [`child_connection_lost`](ProcessProtocol::child_connection_lost), the exit by
//! [`process_exited`](ProcessProtocol::process_exited), and once the child has exited *and*
//! every pipe is closed, [`process_ended`](ProcessProtocol::process_ended).
//!
//! ```no_run
//! use twistor::process::{ProcessCommand, ProcessProtocol, ProcessStatus, ProcessTransport};
//! use twistor::Reactor;
//!
//! struct Show(Reactor);
//!
//! impl ProcessProtocol for Show {
//!     fn out_received(&mut self, _t: &ProcessTransport, data: &[u8]) {
//!         print!("{}", String::from_utf8_lossy(data));
//!     }
//!     fn process_ended(&mut self, status: &ProcessStatus) {
//!         println!("{status}");
//!         self.0.stop();
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! reactor.spawn_process(Show(reactor.clone()), &ProcessCommand::new("ls").arg("-l"));
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! - **Starting.** `std::process::Command` forks and execs, with every descriptor of ours
//!   close-on-exec; extra child descriptors (3 and up) are moved into place after the fork
//!   with `fcntl`/`dup2` only (async-signal-safe). An exec failure (no such program, not
//!   executable) comes back from the child over std's error pipe and is delivered as
//!   `process_ended` with [`ProcessStatus::SpawnFailed`], never a panic.
//! - **Reaping.** Each child gets a pidfd (`pidfd_open`, Linux ≥ 5.3) registered with the
//!   reactor; it turns readable when the child exits, and the reactor reaps that one pid with
//!   `waitpid(pid, WNOHANG)`. No process-wide `SIGCHLD` handler is needed, so children work
//!   on any reactor on any thread. Where pidfds are unavailable, each child is polled with
//!   `waitpid(pid, WNOHANG)` every [`REAP_POLL_INTERVAL`]. Nothing here ever waits for
//!   `-1`, so children started by other code are left alone.
//! - **Back-pressure.** The transport is a producer of the child's output:
//!   [`pause_producing`](ProcessTransport::pause_producing) stops reading the pipes, the pipe
//!   fills, and the child blocks in `write`. Nothing is buffered on our side.
//! - **Pseudo-terminal.** With [`use_pty`](ProcessCommand::use_pty) the child's stdin, stdout
//!   and stderr are one terminal (the child is a session leader with it as controlling
//!   terminal); its output arrives as fd 1 and `close_stdin` sends the terminal's EOF
//!   character (`^D`).
//!
//! The reactor shutting down closes the pipes (the protocol hears `child_connection_lost`)
//! but neither kills nor forgets the child: a reactor run again still reaps it. A reactor
//! dropped while a child still runs leaves it running.
//!
//! # Signals
//!
//! [`ProcessTransport::signal_process`] signals a child. For signals sent to *this*
//! process (SIGHUP to reload, SIGUSR1/SIGUSR2...), register callbacks with
//! [`Reactor::add_signal_handler`]: they run on the reactor thread once the reactor owns
//! the process's signal handlers (`run` on the main thread, or
//! [`Reactor::install_signal_handlers`] elsewhere). Child processes need no signal handler
//! at all (see reaping above).

mod endpoint;
mod spawn;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use mio::Interest;

use crate::address::Address;
use crate::error::Error;
use crate::guard::{Delivery, Guard, Kind, Panicked};
use crate::pipe::{PipeOwner, PipeReader, PipeWriter};
use crate::protocol::CloseReason;
use crate::reactor::{Reactor, Readiness, Source};
use crate::transport::{Producer, Transport, TransportImpl};
use crate::unstable::ReactorInternals;

pub use endpoint::{ProcessEndpoint, StderrBehavior};
#[doc(hidden)]
pub use spawn::force_reap_polling;

/// How often a child is polled for its exit where pidfds are unavailable (Linux < 5.3).
pub const REAP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The application's handler for one child process (Twisted's `ProcessProtocol`).
///
/// Every callback runs on the reactor thread. The order is: `connection_made`; then data and
/// `child_connection_lost` for each pipe, with `process_exited` somewhere among them; then
/// `process_ended`, once, last. A process that could not be started gets only
/// `process_ended` with [`ProcessStatus::SpawnFailed`].
pub trait ProcessProtocol: 'static {
    /// Attaches the protocol to its transport. The default calls
    /// [`connection_made`](ProcessProtocol::connection_made); wrappers override it.
    fn make_connection(&mut self, transport: &ProcessTransport) {
        self.connection_made(transport)
    }

    /// The child is running and its pipes are open.
    fn connection_made(&mut self, _transport: &ProcessTransport) {}

    /// Bytes arrived on child descriptor `fd`. The default hands stdout to
    /// [`out_received`](ProcessProtocol::out_received), stderr to
    /// [`err_received`](ProcessProtocol::err_received), and drops the rest.
    fn child_data_received(&mut self, transport: &ProcessTransport, fd: i32, data: &[u8]) {
        match fd {
            1 => self.out_received(transport, data),
            2 => self.err_received(transport, data),
            _ => {}
        }
    }

    /// Bytes arrived on the child's stdout.
    fn out_received(&mut self, _transport: &ProcessTransport, _data: &[u8]) {}

    /// Bytes arrived on the child's stderr.
    fn err_received(&mut self, _transport: &ProcessTransport, _data: &[u8]) {}

    /// The pipe on child descriptor `fd` closed (the child closed it or exited, or we closed
    /// it). The default calls the `in_`/`out_`/`err_connection_lost` method for 0, 1 and 2.
    fn child_connection_lost(&mut self, transport: &ProcessTransport, fd: i32) {
        match fd {
            0 => self.in_connection_lost(transport),
            1 => self.out_connection_lost(transport),
            2 => self.err_connection_lost(transport),
            _ => {}
        }
    }

    /// The child's stdin pipe closed.
    fn in_connection_lost(&mut self, _transport: &ProcessTransport) {}

    /// The child's stdout pipe closed.
    fn out_connection_lost(&mut self, _transport: &ProcessTransport) {}

    /// The child's stderr pipe closed.
    fn err_connection_lost(&mut self, _transport: &ProcessTransport) {}

    /// The child exited (its pipes may still be open, held by its own children).
    fn process_exited(&mut self, _transport: &ProcessTransport, _status: &ProcessStatus) {}

    /// The child exited and all its pipes are closed, or it never started; called once,
    /// last.
    fn process_ended(&mut self, _status: &ProcessStatus) {}
}

impl<P: ProcessProtocol + ?Sized> ProcessProtocol for Box<P> {
    fn make_connection(&mut self, transport: &ProcessTransport) {
        (**self).make_connection(transport)
    }
    fn connection_made(&mut self, transport: &ProcessTransport) {
        (**self).connection_made(transport)
    }
    fn child_data_received(&mut self, transport: &ProcessTransport, fd: i32, data: &[u8]) {
        (**self).child_data_received(transport, fd, data)
    }
    fn out_received(&mut self, transport: &ProcessTransport, data: &[u8]) {
        (**self).out_received(transport, data)
    }
    fn err_received(&mut self, transport: &ProcessTransport, data: &[u8]) {
        (**self).err_received(transport, data)
    }
    fn child_connection_lost(&mut self, transport: &ProcessTransport, fd: i32) {
        (**self).child_connection_lost(transport, fd)
    }
    fn in_connection_lost(&mut self, transport: &ProcessTransport) {
        (**self).in_connection_lost(transport)
    }
    fn out_connection_lost(&mut self, transport: &ProcessTransport) {
        (**self).out_connection_lost(transport)
    }
    fn err_connection_lost(&mut self, transport: &ProcessTransport) {
        (**self).err_connection_lost(transport)
    }
    fn process_exited(&mut self, transport: &ProcessTransport, status: &ProcessStatus) {
        (**self).process_exited(transport, status)
    }
    fn process_ended(&mut self, status: &ProcessStatus) {
        (**self).process_ended(status)
    }
}

/// How a child process ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProcessStatus {
    /// It exited by itself with this code (0 is success).
    Exited(i32),
    /// A signal killed it.
    Signaled {
        /// The signal's number (`libc::SIGTERM`...).
        signal: libc::c_int,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// It could not be started: no such program, not executable, out of descriptors...
    SpawnFailed(Error),
    /// Something else in this process reaped it (a `waitpid(-1)` elsewhere), so its status
    /// is unknown.
    Unknown,
}

impl ProcessStatus {
    /// Whether the child exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, ProcessStatus::Exited(0))
    }

    /// The exit code, if it exited by itself.
    pub fn code(&self) -> Option<i32> {
        match self {
            ProcessStatus::Exited(code) => Some(*code),
            _ => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<libc::c_int> {
        match self {
            ProcessStatus::Signaled { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// Decodes a `waitpid` status word.
    pub fn from_wait_status(status: libc::c_int) -> ProcessStatus {
        if libc::WIFSIGNALED(status) {
            ProcessStatus::Signaled {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else {
            ProcessStatus::Exited(libc::WEXITSTATUS(status))
        }
    }
}

impl fmt::Display for ProcessStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessStatus::Exited(code) => write!(f, "exited with code {code}"),
            ProcessStatus::Signaled {
                signal,
                core_dumped,
            } => {
                match signal_name(*signal) {
                    Some(name) => write!(f, "killed by {name}")?,
                    None => write!(f, "killed by signal {signal}")?,
                }
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            ProcessStatus::SpawnFailed(err) => write!(f, "could not start: {err}"),
            ProcessStatus::Unknown => f.write_str("exited with an unknown status"),
        }
    }
}

/// The name of a common signal (`"SIGTERM"`), if it has one here.
pub fn signal_name(signal: libc::c_int) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        _ => return None,
    })
}

/// What one of the child's descriptors is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildFd {
    /// A pipe the parent writes and the child reads (stdin, by default).
    ToChild,
    /// A pipe the child writes and the parent reads (stdout and stderr, by default).
    FromChild,
    /// A descriptor of this process, given to the child as is (it stays open here too:
    /// keep it open until the process has started; the child gets a duplicate).
    Inherit(RawFd),
    /// `/dev/null`.
    Null,
}

/// What to run, and how: program, arguments, environment, directory and descriptors.
///
/// ```
/// use twistor::process::{ChildFd, ProcessCommand};
///
/// let command = ProcessCommand::new("sh")
///     .args(["-c", "echo to fd 3 >&3"])
///     .env("LANG", "C")
///     .child_fd(3, ChildFd::FromChild);
/// ```
#[derive(Debug, Clone)]
pub struct ProcessCommand {
    program: OsString,
    args: Vec<OsString>,
    env_clear: bool,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    child_fds: BTreeMap<i32, ChildFd>,
    use_pty: bool,
}

impl ProcessCommand {
    /// Runs `program` (looked up in `PATH` if it has no slash), with no arguments, this
    /// process's environment and directory, and stdin, stdout and stderr piped.
    pub fn new(program: impl Into<OsString>) -> ProcessCommand {
        ProcessCommand {
            program: program.into(),
            args: Vec::new(),
            env_clear: false,
            env: Vec::new(),
            cwd: None,
            child_fds: BTreeMap::from([
                (0, ChildFd::ToChild),
                (1, ChildFd::FromChild),
                (2, ChildFd::FromChild),
            ]),
            use_pty: false,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> ProcessCommand {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> ProcessCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> ProcessCommand {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable for the child.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> ProcessCommand {
        self.env.push((key.into(), None));
        self
    }

    /// Starts the child with an empty environment (Twisted's default), forgetting variables
    /// set so far; [`env`](Self::env) calls after this one add to it.
    pub fn env_clear(mut self) -> ProcessCommand {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Runs the child in `dir`.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> ProcessCommand {
        self.cwd = Some(dir.into());
        self
    }

    /// Connects child descriptor `fd` to `what`. Of 0, 1 and 2, those left out (see
    /// [`no_child_fd`](Self::no_child_fd)) are `/dev/null` in the child; others are closed.
    pub fn child_fd(mut self, fd: i32, what: ChildFd) -> ProcessCommand {
        self.child_fds.insert(fd, what);
        self
    }

    /// Leaves child descriptor `fd` unconnected (`/dev/null` for 0, 1 and 2).
    pub fn no_child_fd(mut self, fd: i32) -> ProcessCommand {
        self.child_fds.remove(&fd);
        self
    }

    /// Runs the child on a new pseudo-terminal (its stdin, stdout and stderr), for programs
    /// that behave differently on a terminal. Output arrives as fd 1.
    pub fn use_pty(mut self, enabled: bool) -> ProcessCommand {
        self.use_pty = enabled;
        self
    }

    /// The program to run.
    pub fn program(&self) -> &std::ffi::OsStr {
        &self.program
    }
}

/// Starts `command` and connects `protocol` to it; see the [module docs](self).
///
/// The protocol's `connection_made` runs before this returns. If the program cannot be
/// started, the protocol gets `process_ended` with [`ProcessStatus::SpawnFailed`] from the
/// reactor (not from inside this call), and the transport has no pid.
pub fn spawn_process(
    reactor: &Reactor,
    protocol: impl ProcessProtocol,
    command: &ProcessCommand,
) -> ProcessTransport {
    let (transport, failure) = start_process(reactor, Box::new(protocol), command);
    if let Some(err) = failure {
        tracing::debug!("{err}");
        let failed = transport.inner.clone();
        reactor.call_soon(move || failed.spawn_failed(err));
    }
    transport
}

/// Starts `command` for `protocol`; on failure, returns the error without telling the
/// protocol.
fn start_process(
    reactor: &Reactor,
    protocol: Box<dyn ProcessProtocol>,
    command: &ProcessCommand,
) -> (ProcessTransport, Option<Error>) {
    let process = ProcessInner::new(protocol, command.use_pty);
    let transport = ProcessTransport {
        inner: process.clone(),
    };
    match process.start(reactor, command) {
        Ok(()) => {
            process.dispatch(ProcessEvent::Make);
            (transport, None)
        }
        Err(err) => (transport, Some(err)),
    }
}

impl Reactor {
    /// Starts a child process; see [`spawn_process`].
    pub fn spawn_process(
        &self,
        protocol: impl ProcessProtocol,
        command: &ProcessCommand,
    ) -> ProcessTransport {
        spawn_process(self, protocol, command)
    }
}

/// A handle on a child process: its pipes, its pid, signals. Cloning it is cheap.
#[derive(Clone)]
pub struct ProcessTransport {
    inner: Rc<ProcessInner>,
}

impl ProcessTransport {
    /// The child's process id; `None` if it could not be started. It stays set after the
    /// child exits (but is no longer that child's once [`status`](Self::status) is known).
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid.get()
    }

    /// How the child ended, once it has.
    pub fn status(&self) -> Option<ProcessStatus> {
        self.inner.status.borrow().clone()
    }

    /// Queues `data` for the child's stdin. Never drops data while the pipe is open.
    pub fn write(&self, data: &[u8]) {
        self.write_to_child(0, data)
    }

    /// Queues several buffers for the child's stdin, in order.
    pub fn write_sequence(&self, data: &[&[u8]]) {
        for chunk in data {
            self.write(chunk);
        }
    }

    /// Queues `data` for child descriptor `fd` (one made with [`ChildFd::ToChild`]).
    pub fn write_to_child(&self, fd: i32, data: &[u8]) {
        match self.inner.writer(fd) {
            Some(writer) => writer.write(data),
            None => tracing::debug!("write of {} bytes to closed child fd {fd}", data.len()),
        }
    }

    /// Closes the child's stdin after writing what is queued (the child reads end of file).
    pub fn close_stdin(&self) {
        self.close_child_fd(0)
    }

    /// Closes our end of the child's stdout.
    pub fn close_stdout(&self) {
        self.close_child_fd(1)
    }

    /// Closes our end of the child's stderr.
    pub fn close_stderr(&self) {
        self.close_child_fd(2)
    }

    /// Closes our end of the pipe on child descriptor `fd`: a pipe to the child after its
    /// queued data is written, a pipe from the child at once. The protocol hears
    /// `child_connection_lost(fd)` from the reactor.
    pub fn close_child_fd(&self, fd: i32) {
        if self.inner.pty && fd == 0 {
            // A terminal has one descriptor for both directions: end the input instead.
            if let Some(writer) = self.inner.writer(0) {
                writer.write(&[4]);
            }
            return;
        }
        if let Some(writer) = self.inner.writer(fd) {
            writer.lose();
        }
        if let Some(reader) = self.inner.reader(fd) {
            reader.lose();
        }
    }

    /// Closes every pipe: stdin after its queued data is written (Twisted's
    /// `loseConnection`). The child keeps running until it notices.
    pub fn lose_connection(&self) {
        self.inner.lose_all(false);
    }

    /// Sends `signal` (`libc::SIGTERM`, `SIGKILL`, `SIGINT`, `SIGHUP`...) to the child.
    /// Fails once the child has been reaped (its pid may belong to another process by then)
    /// or if it never started.
    pub fn signal_process(&self, signal: libc::c_int) -> Result<(), Error> {
        if self.inner.status.borrow().is_some() {
            return Err(Error::io(io::Error::new(
                io::ErrorKind::NotFound,
                "the process has already exited",
            )));
        }
        let Some(pid) = self.inner.pid.get() else {
            return Err(Error::io(io::Error::new(
                io::ErrorKind::NotFound,
                "the process never started",
            )));
        };
        // Our own unreaped child: its pid cannot have been reused.
        crate::sys::signal::kill(pid, signal).map_err(Error::io)
    }

    /// Stops reading the child's output: it blocks once the pipes fill.
    pub fn pause_producing(&self) {
        for reader in self.inner.readers.borrow().values() {
            reader.pause();
        }
    }

    /// Reads the child's output again.
    pub fn resume_producing(&self) {
        let readers: Vec<_> = self.inner.readers.borrow().values().cloned().collect();
        for reader in readers {
            reader.resume();
        }
    }

    /// Bytes queued for the child's stdin but not yet written.
    pub fn buffered(&self) -> usize {
        self.inner.writer(0).map_or(0, |w| w.buffered())
    }

    /// Sets the high-water mark of the child's stdin buffer.
    pub fn set_high_water_mark(&self, bytes: usize) {
        if let Some(writer) = self.inner.writer(0) {
            writer.set_high_water_mark(bytes);
        }
    }

    /// Registers a producer of the child's stdin (see
    /// [`TransportImpl::register_producer`]).
    pub fn register_producer(
        &self,
        producer: impl Producer + 'static,
        streaming: bool,
    ) -> Result<(), Error> {
        self.register_boxed_producer(Box::new(producer), streaming)
    }

    fn register_boxed_producer(
        &self,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), Error> {
        match self.inner.writer(0) {
            Some(writer) => writer.register_producer(producer, streaming),
            None => {
                producer.stop_producing();
                Ok(())
            }
        }
    }

    /// Forgets the producer of the child's stdin.
    pub fn unregister_producer(&self) {
        if let Some(writer) = self.inner.writer(0) {
            writer.unregister_producer();
        }
    }

    /// This process as a plain [`Transport`]: writes go to stdin, pausing stops reading
    /// stdout, `lose_connection` closes the pipes. `downcast_ref::<ProcessTransport>()` on it
    /// gives this handle back.
    pub fn transport(&self) -> Transport {
        Transport::new(Rc::new(self.clone()))
    }

    /// Whether two handles name the same process.
    pub fn ptr_eq(&self, other: &ProcessTransport) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for ProcessTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessTransport")
            .field("pid", &self.pid())
            .field("status", &self.status())
            .finish()
    }
}

impl TransportImpl for ProcessTransport {
    fn write(&self, data: &[u8]) {
        ProcessTransport::write(self, data)
    }

    fn lose_connection(&self) {
        self.inner.lose_all(false);
    }

    fn abort_connection(&self) {
        self.inner.lose_all(true);
    }

    fn lose_write_connection(&self) {
        self.close_stdin();
    }

    fn peer(&self) -> Address {
        Address::Pipe
    }

    fn host(&self) -> Address {
        Address::Pipe
    }

    fn disconnecting(&self) -> bool {
        self.inner.losing.get() || self.inner.ended.get()
    }

    fn buffered(&self) -> usize {
        ProcessTransport::buffered(self)
    }

    fn pause_producing(&self) {
        ProcessTransport::pause_producing(self)
    }

    fn resume_producing(&self) {
        ProcessTransport::resume_producing(self)
    }

    fn register_producer(&self, producer: Box<dyn Producer>, streaming: bool) -> Result<(), Error> {
        self.register_boxed_producer(producer, streaming)
    }

    fn unregister_producer(&self) {
        ProcessTransport::unregister_producer(self)
    }

    fn set_high_water_mark(&self, bytes: usize) {
        ProcessTransport::set_high_water_mark(self, bytes)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One child process and its protocol.
struct ProcessInner {
    pid: Cell<Option<u32>>,
    status: RefCell<Option<ProcessStatus>>,
    protocol: Guard<Processes>,
    readers: RefCell<BTreeMap<i32, Rc<PipeReader>>>,
    writers: RefCell<BTreeMap<i32, Rc<PipeWriter>>>,
    pty: bool,
    /// `lose_connection` was called.
    losing: Cell<bool>,
    /// `process_ended` has been delivered.
    ended: Cell<bool>,
    me: Weak<ProcessInner>,
}

impl ProcessInner {
    fn new(protocol: Box<dyn ProcessProtocol>, pty: bool) -> Rc<ProcessInner> {
        Rc::new_cyclic(|me| ProcessInner {
            pid: Cell::new(None),
            status: RefCell::new(None),
            protocol: Guard::new(protocol),
            readers: RefCell::new(BTreeMap::new()),
            writers: RefCell::new(BTreeMap::new()),
            pty,
            losing: Cell::new(false),
            ended: Cell::new(false),
            me: me.clone(),
        })
    }

    /// Forks, execs, and registers the pipes and the reaper.
    fn start(self: &Rc<Self>, reactor: &Reactor, command: &ProcessCommand) -> Result<(), Error> {
        let spawned = spawn::spawn(command).map_err(|err| {
            Error::io(io::Error::new(
                err.kind(),
                format!("cannot run {:?}: {err}", command.program),
            ))
        })?;
        self.pid.set(Some(spawned.pid));
        // The child is running: from here on, failures must not lose track of it.
        Reaper::start(reactor, self.clone(), spawned.pid, spawned.pidfd);
        let owner: Rc<dyn PipeOwner> = self.clone();
        let mut failure = None;
        for (fd, end) in spawned.pipes {
            let result = match end {
                spawn::ParentEnd::Read(end) => PipeReader::open(reactor, end, fd, owner.clone())
                    .map(|reader| {
                        self.readers.borrow_mut().insert(fd, reader);
                    }),
                spawn::ParentEnd::Write(end) => PipeWriter::open(reactor, end, fd, owner.clone())
                    .map(|writer| {
                        self.writers.borrow_mut().insert(fd, writer);
                    }),
            };
            if let Err(err) = result {
                failure.get_or_insert(err);
            }
        }
        if let Some(err) = failure {
            // Registering a pipe failed (out of memory for epoll?): the child cannot be
            // driven, so stop it; the reaper reports how it ended.
            tracing::error!("cannot watch the pipes of child {}: {err}", spawned.pid);
            let _ = crate::sys::signal::kill(spawned.pid, libc::SIGKILL);
            self.lose_all(true);
        }
        Ok(())
    }

    fn spawn_failed(self: &Rc<Self>, err: Error) {
        *self.status.borrow_mut() = Some(ProcessStatus::SpawnFailed(err));
        self.maybe_end();
    }

    fn writer(&self, fd: i32) -> Option<Rc<PipeWriter>> {
        self.writers.borrow().get(&fd).cloned()
    }

    fn reader(&self, fd: i32) -> Option<Rc<PipeReader>> {
        self.readers.borrow().get(&fd).cloned()
    }

    /// Closes every pipe: writers after flushing (or at once, with `abort`).
    fn lose_all(&self, abort: bool) {
        self.losing.set(true);
        let writers: Vec<_> = self.writers.borrow().values().cloned().collect();
        for writer in writers {
            if abort {
                writer.abort();
            } else {
                writer.lose();
            }
        }
        let readers: Vec<_> = self.readers.borrow().values().cloned().collect();
        for reader in readers {
            reader.lose();
        }
    }

    /// Runs one protocol callback under the guard; a panic closes the pipes.
    fn dispatch(&self, event: impl Delivery<Processes>) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let transport = ProcessTransport { inner: me };
        if let Err(panicked) = self.protocol.deliver(&transport, event) {
            self.panicked(panicked);
        }
    }

    #[cold]
    fn panicked(&self, panicked: Panicked) {
        let _ = panicked.report(format_args!(
            "the protocol of child process {:?} (closing its pipes)",
            self.pid.get()
        ));
        self.lose_all(true);
    }

    /// The child was reaped.
    fn exited(&self, status: ProcessStatus) {
        tracing::debug!("child {:?} {status}", self.pid.get());
        *self.status.borrow_mut() = Some(status.clone());
        if self.pty {
            // Nothing reads the terminal's input any more.
            if let Some(writer) = self.writer(0) {
                writer.abort();
            }
        }
        self.dispatch(ProcessEvent::Exited(status));
        self.maybe_end();
    }

    /// Delivers `process_ended` once the child is reaped and every pipe is closed.
    fn maybe_end(&self) {
        if self.ended.get() || !self.readers.borrow().is_empty() {
            return;
        }
        if !self.writers.borrow().is_empty() {
            return;
        }
        let Some(status) = self.status.borrow().clone() else {
            return;
        };
        self.ended.set(true);
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let transport = ProcessTransport { inner: me };
        if let Err(panicked) = self
            .protocol
            .finish(&transport, ProcessEvent::Ended(status))
        {
            let _ = panicked.report(format_args!("process_ended"));
        }
    }
}

impl PipeOwner for ProcessInner {
    fn pipe_data(&self, id: i32, data: &[u8]) {
        self.dispatch(Received(id, data));
    }

    fn pipe_closed(&self, id: i32, reason: CloseReason) {
        if !reason.is_clean() {
            tracing::debug!("child {:?} fd {id}: {reason}", self.pid.get());
        }
        let reader = self.readers.borrow_mut().remove(&id);
        let writer = self.writers.borrow_mut().remove(&id);
        // Keep the pipe alive until its callback has run (it is the caller).
        let _keep = (reader, writer);
        // The pty's one terminal appears as fd 0 (writer) and fd 1 (reader); report its end
        // once, as stdout's.
        if !(self.pty && id == 0) {
            self.dispatch(ProcessEvent::ChildLost(id));
        }
        self.maybe_end();
    }
}

/// A process protocol's callbacks, as the guard delivers (and queues) them.
enum ProcessEvent {
    Make,
    Data(i32, Vec<u8>),
    ChildLost(i32),
    Exited(ProcessStatus),
    Ended(ProcessStatus),
}

/// The guard's [`Kind`] for [`ProcessProtocol`]s.
struct Processes;

impl Kind for Processes {
    type Protocol = dyn ProcessProtocol;
    type Transport = ProcessTransport;
    type Event = ProcessEvent;

    fn deliver(p: &mut dyn ProcessProtocol, t: &ProcessTransport, event: ProcessEvent) {
        match event {
            ProcessEvent::Make => p.make_connection(t),
            ProcessEvent::Data(fd, data) => p.child_data_received(t, fd, &data),
            ProcessEvent::ChildLost(fd) => p.child_connection_lost(t, fd),
            ProcessEvent::Exited(status) => p.process_exited(t, &status),
            ProcessEvent::Ended(status) => p.process_ended(&status),
        }
    }
}

impl Delivery<Processes> for ProcessEvent {
    fn call(self, p: &mut dyn ProcessProtocol, t: &ProcessTransport) {
        Processes::deliver(p, t, self)
    }

    fn keep(self) -> ProcessEvent {
        self
    }
}

/// Bytes read from child descriptor `.0` (copied only if kept).
struct Received<'a>(i32, &'a [u8]);

impl Delivery<Processes> for Received<'_> {
    fn call(self, p: &mut dyn ProcessProtocol, t: &ProcessTransport) {
        p.child_data_received(t, self.0, self.1)
    }

    fn keep(self) -> ProcessEvent {
        ProcessEvent::Data(self.0, self.1.to_vec())
    }
}

/// Watches one child for its exit: a registered pidfd, or a polling timer.
struct Reaper {
    process: RefCell<Option<Rc<ProcessInner>>>,
    pid: u32,
    pidfd: Option<OwnedFd>,
    token: Cell<Option<usize>>,
}

impl Reaper {
    fn start(reactor: &Reactor, process: Rc<ProcessInner>, pid: u32, pidfd: Option<OwnedFd>) {
        let reaper = Rc::new(Reaper {
            process: RefCell::new(Some(process)),
            pid,
            pidfd,
            token: Cell::new(None),
        });
        if let Some(fd) = &reaper.pidfd {
            match reactor.register(fd.as_fd(), Interest::READABLE, reaper.clone()) {
                Ok(token) => {
                    // A child that exited already is reported too: epoll checks readiness
                    // when a descriptor is added. (Reaping here would run `process_exited`
                    // before `connection_made`.)
                    reaper.token.set(Some(token));
                    return;
                }
                Err(err) => tracing::debug!("cannot watch a pidfd ({err}); polling instead"),
            }
        }
        Reaper::poll_later(reactor, reaper);
    }

    fn poll_later(reactor: &Reactor, reaper: Rc<Reaper>) {
        let weak = reactor.downgrade();
        reactor.call_later(REAP_POLL_INTERVAL, move || {
            let Some(reactor) = weak.upgrade() else {
                return;
            };
            if !reaper.try_reap(&reactor) {
                Reaper::poll_later(&reactor, reaper);
            }
        });
    }

    /// Reaps the child if it has exited; returns whether it has.
    fn try_reap(&self, reactor: &Reactor) -> bool {
        if self.process.borrow().is_none() {
            return true;
        }
        let status = match spawn::try_wait(self.pid) {
            Ok(Some(status)) => status,
            Ok(None) => return false,
            Err(err) => {
                tracing::warn!("waitpid({}) failed: {err}", self.pid);
                ProcessStatus::Unknown
            }
        };
        if let Some(token) = self.token.take() {
            reactor.deregister(token, None);
        }
        let process = self.process.borrow_mut().take();
        if let Some(process) = process {
            process.exited(status);
        }
        true
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // The reactor is gone with the child unreaped: reap it if it has exited already, so
        // it is not left a zombie. (One still running is left to run.)
        if self.process.get_mut().is_some() {
            let _ = spawn::try_wait(self.pid);
        }
    }
}

impl Source for Reaper {
    fn ready(self: Rc<Self>, reactor: &Reactor, _readiness: Readiness) {
        self.try_reap(reactor);
    }

    // A reactor shutting down keeps watching its children, to reap them if it runs again.
    fn shutdown(self: Rc<Self>, _reactor: &Reactor) {}

    fn reactor_dropped(&self) {
        // Reap the child if it has exited already, so it is not left a zombie (one still
        // running is left to run), and let go of the process (its pipes close with it).
        let process = self.process.borrow_mut().take();
        if process.is_some() {
            let _ = spawn::try_wait(self.pid);
        }
        drop(process);
    }
}

/// An error value shared by the process module's callers.
pub(crate) fn exit_error(status: &ProcessStatus) -> Error {
    match status {
        ProcessStatus::SpawnFailed(err) => err.clone(),
        other => Error::Io(Arc::new(io::Error::other(format!("process {other}")))),
    }
}
