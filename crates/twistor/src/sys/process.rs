//! Child processes: descriptors moved into place between `fork` and `exec`, pseudo-terminals,
//! pidfds and `waitpid`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::fs::{Mode, OFlags};
use rustix::process::{PidfdFlags, WaitOptions};
use rustix::pty::OpenptFlags;

use super::fd::above_stdio;

/// Starts `command` (whose stdin, stdout and stderr are already set) and returns the child's
/// pid. In the child, before `exec`: with `pty`, it starts a new session whose controlling
/// terminal is its stdin; then each `(descriptor, number)` of `moves` is put at that number.
/// The descriptors in `command` and `moves` are closed here once the child has them.
pub(crate) fn spawn(
    mut command: Command,
    pty: bool,
    moves: Vec<(OwnedFd, RawFd)>,
) -> io::Result<u32> {
    if pty || !moves.is_empty() {
        let plan: Vec<(RawFd, RawFd)> = moves.iter().map(|(f, to)| (f.as_raw_fd(), *to)).collect();
        let mut parked: Vec<RawFd> = vec![-1; plan.len()];
        let above = plan.iter().map(|m| m.1).max().unwrap_or(2).max(2) + 1;
        let after_fork = move || -> io::Result<()> {
            // Only async-signal-safe calls from here to exec: no allocation, no locks.
            // SAFETY: setsid, ioctl, fcntl and dup2 on descriptors of this (forked) process:
            // the sources in `plan` are open here, since `moves` keeps them open in the parent
            // until `spawn` below has returned.
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
                for (i, (source, _)) in plan.iter().enumerate() {
                    let fd = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, above);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    parked[i] = fd;
                }
                // dup2 clears close-on-exec on the target; the parked copies close at exec.
                for (i, (_, target)) in plan.iter().enumerate() {
                    if libc::dup2(parked[i], *target) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        };
        // SAFETY: the closure makes only async-signal-safe calls (see above), and the
        // command is spawned once, below, while `moves` is alive.
        unsafe { command.pre_exec(after_fork) };
    }
    let child = command.spawn()?;
    let pid = child.id();
    // Dropping `Child` neither waits nor kills; the caller reaps the pid itself.
    drop(child);
    // Close the child's ends here, now that it has them.
    drop(command);
    drop(moves);
    Ok(pid)
}

/// A pidfd for `pid` (close-on-exec), if the kernel has them (Linux 5.3).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = super::pid_of(pid)?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Reaps `pid` if it has exited, without blocking: its raw wait status, or `None` if it is
/// still running.
pub(crate) fn try_wait(pid: u32) -> io::Result<Option<libc::c_int>> {
    let pid = super::pid_of(pid)?;
    let reaped = super::retry(|| rustix::process::waitpid(Some(pid), WaitOptions::NOHANG))?;
    Ok(reaped.map(|(_, status)| status.as_raw()))
}

/// A new pseudo-terminal: (master, slave), both close-on-exec, the master numbered above 2.
pub(crate) fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok((above_stdio(master)?, slave))
}
