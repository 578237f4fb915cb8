//! What starting, watching and reaping a child asks of the OS (Linux).
//!
//! Contract: [`spawn`] returns a running child's pid, our ends of its pipes (non-blocking is
//! left to the caller, close-on-exec is set) and, where the kernel has them, a pidfd; every
//! descriptor it opens for the child is closed here once the child has it. [`try_wait`]
//! reaps exactly that pid, without blocking.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::{ChildFd, ProcessCommand, ProcessStatus};
use crate::pipe::{dev_null, dup_above_stdio};

/// Our end of one of the child's pipes.
pub(super) enum ParentEnd {
    /// We read what the child writes.
    Read(OwnedFd),
    /// We write what the child reads.
    Write(OwnedFd),
}

/// A started child.
pub(super) struct Spawned {
    pub(super) pid: u32,
    pub(super) pidfd: Option<OwnedFd>,
    /// Our ends, by child descriptor number.
    pub(super) pipes: Vec<(i32, ParentEnd)>,
}

/// Starts `command`.
pub(super) fn spawn(command: &ProcessCommand) -> io::Result<Spawned> {
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args);
    if command.env_clear {
        cmd.env_clear();
    }
    for (key, value) in &command.env {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    if let Some(dir) = &command.cwd {
        cmd.current_dir(dir);
    }

    let mut pipes = Vec::new();
    // The child's ends: 0, 1 and 2 go through std, the rest we move into place ourselves.
    let mut standard: [Option<OwnedFd>; 3] = [None, None, None];
    let mut extra: Vec<(OwnedFd, RawFd)> = Vec::new();
    if command.use_pty {
        let (master, slave) = open_pty()?;
        for slot in &mut standard {
            *slot = Some(dup_above_stdio(slave.as_raw_fd())?);
        }
        pipes.push((0, ParentEnd::Write(dup_above_stdio(master.as_raw_fd())?)));
        pipes.push((1, ParentEnd::Read(master)));
    }
    for (&fd, &what) in &command.child_fds {
        if fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("child descriptor {fd} is negative"),
            ));
        }
        if command.use_pty && fd <= 2 {
            continue;
        }
        let child_end = match what {
            ChildFd::ToChild => {
                let (read, write) = pipe()?;
                pipes.push((fd, ParentEnd::Write(write)));
                read
            }
            ChildFd::FromChild => {
                let (read, write) = pipe()?;
                pipes.push((fd, ParentEnd::Read(read)));
                write
            }
            ChildFd::Inherit(raw) => dup_above_stdio(raw)?,
            ChildFd::Null => dev_null()?,
        };
        match usize::try_from(fd) {
            Ok(i) if i < 3 => standard[i] = Some(child_end),
            _ => extra.push((child_end, fd)),
        }
    }
    let [stdin, stdout, stderr] = standard;
    cmd.stdin(stdin.map_or_else(Stdio::null, Stdio::from));
    cmd.stdout(stdout.map_or_else(Stdio::null, Stdio::from));
    cmd.stderr(stderr.map_or_else(Stdio::null, Stdio::from));

    if command.use_pty || !extra.is_empty() {
        let moves: Vec<(RawFd, RawFd)> = extra.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
        let mut parked: Vec<RawFd> = vec![-1; moves.len()];
        let above = moves.iter().map(|m| m.1).max().unwrap_or(2).max(2) + 1;
        let pty = command.use_pty;
        let after_fork = move || -> io::Result<()> {
            // Only async-signal-safe calls from here to exec: no allocation, no locks.
            // SAFETY: setsid, ioctl, fcntl and dup2 on descriptors of this (forked) process.
            unsafe {
                if pty {
                    if libc::setsid() < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // First park every source above every target, so that putting one in place
                // cannot overwrite another that is still to be moved.
                for (i, (source, _)) in moves.iter().enumerate() {
                    let fd = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, above);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    parked[i] = fd;
                }
                // dup2 clears close-on-exec on the target; the parked copies close at exec.
                for (i, (_, target)) in moves.iter().enumerate() {
                    if libc::dup2(parked[i], *target) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        };
        // SAFETY: the closure makes only async-signal-safe calls (see above).
        unsafe { cmd.pre_exec(after_fork) };
    }

    let child = cmd.spawn()?;
    let pid = child.id();
    // Dropping `Child` neither waits nor kills; we reap the pid ourselves.
    drop(child);
    // Close the child's ends here, now that it has them.
    drop(cmd);
    drop(extra);
    Ok(Spawned {
        pid,
        pidfd: pidfd_open(pid),
        pipes,
    })
}

/// Reaps `pid` if it has exited.
pub(super) fn try_wait(pid: u32) -> io::Result<Option<ProcessStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child, into a local.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if r == 0 {
            return Ok(None);
        }
        if r > 0 {
            return Ok(Some(ProcessStatus::from_wait_status(status)));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Lets tests exercise the polling fallback; set by [`force_reap_polling`].
static FORCE_POLLING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes children started from now on be polled for their exit instead of watched with a
/// pidfd (as on kernels older than 5.3). For tests of the fallback.
#[doc(hidden)]
pub fn force_reap_polling(enabled: bool) {
    FORCE_POLLING.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// A pidfd for `pid` (close-on-exec), if the kernel has them.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    if FORCE_POLLING.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    // SAFETY: the pidfd_open syscall with a pid and no flags; it returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        tracing::debug!("pidfd_open: {}", io::Error::last_os_error());
        return None;
    }
    // SAFETY: the syscall just returned this descriptor, owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A pipe, both ends close-on-exec and numbered above 2 (so moving the child's standard
/// descriptors into place cannot overwrite them, even if this process has 0-2 closed).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these descriptors, owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(read)?, above_stdio(write)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    dup_above_stdio(fd.as_raw_fd())
}

/// A new pseudo-terminal: (master, slave), both close-on-exec.
fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: posix_openpt, grantpt, unlockpt and ptsname_r on the descriptor it returns,
    // with a local buffer of the given length.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if master < 0 {
            return Err(io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(master);
        if libc::grantpt(master.as_raw_fd()) != 0 || libc::unlockpt(master.as_raw_fd()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        let r = libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len());
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((above_stdio(master)?, OwnedFd::from_raw_fd(slave)))
    }
}
