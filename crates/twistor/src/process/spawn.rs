//! Starting and reaping a child: a [`ProcessCommand`] turned into the descriptors the child
//! gets, over the calls in `sys::process`.
//!
//! Contract: [`spawn`] returns a running child's pid, our ends of its pipes (non-blocking is
//! left to the caller, close-on-exec is set) and, where the kernel has them, a pidfd; every
//! descriptor it opens for the child is closed here once the child has it. [`try_wait`]
//! reaps exactly that pid, without blocking.

use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};

use super::{ChildFd, ProcessCommand, ProcessStatus};
use crate::sys::fd::{dev_null, dup_above_stdio, pipe};

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
        let (master, slave) = crate::sys::process::open_pty()?;
        for slot in &mut standard {
            *slot = Some(dup_above_stdio(slave.as_fd())?);
        }
        pipes.push((0, ParentEnd::Write(dup_above_stdio(master.as_fd())?)));
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
                let (read, write) = pipe(false)?;
                pipes.push((fd, ParentEnd::Write(write)));
                read
            }
            ChildFd::FromChild => {
                let (read, write) = pipe(false)?;
                pipes.push((fd, ParentEnd::Read(read)));
                write
            }
            // The caller names one of its own descriptors (see `ChildFd::Inherit`).
            ChildFd::Inherit(raw) => dup_above_stdio(crate::sys::fd::borrow_inherited(raw)?)?,
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

    let pid = crate::sys::process::spawn(cmd, command.use_pty, extra)?;
    Ok(Spawned {
        pid,
        pidfd: pidfd_open(pid),
        pipes,
    })
}

/// Reaps `pid` if it has exited.
pub(super) fn try_wait(pid: u32) -> io::Result<Option<ProcessStatus>> {
    Ok(crate::sys::process::try_wait(pid)?.map(ProcessStatus::from_wait_status))
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
    match crate::sys::process::pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(err) => {
            tracing::debug!("pidfd_open: {err}");
            None
        }
    }
}
