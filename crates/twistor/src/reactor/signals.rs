//! Unix signals, delivered to the reactor thread through a self-pipe.
//!
//! A signal handler may do almost nothing safely; ours (in `sys::signal`) writes the signal's
//! number to a non-blocking pipe whose other end the reactor reads like any socket. Only one
//! reactor in a process owns the signal handlers at a time (signal dispositions are
//! process-wide).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;

use crate::sys;

/// Serialises installing and restoring handlers.
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Signal handlers installed for one reactor; dropping it restores the previous ones.
pub(crate) struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
    previous: Vec<(libc::c_int, sys::signal::Disposition)>,
    previous_fd: RawFd,
}

impl SignalPipe {
    /// Installs handlers for `signals`, all reported through one new pipe.
    pub(crate) fn install(signals: &[libc::c_int]) -> io::Result<SignalPipe> {
        let (read, write) = sys::fd::pipe(true)?;
        let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let previous_fd = sys::signal::set_wake_fd(write.as_fd());
        let mut pipe = SignalPipe {
            read,
            write,
            previous: Vec::new(),
            previous_fd,
        };
        for &signal in signals {
            pipe.previous.push((signal, sys::signal::catch(signal)?));
        }
        Ok(pipe)
    }

    /// Adds one more signal to this pipe (a user handler for SIGHUP, say).
    pub(crate) fn add(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.previous.iter().any(|(s, _)| *s == signal) {
            return Ok(());
        }
        let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        self.previous.push((signal, sys::signal::catch(signal)?));
        Ok(())
    }

    /// The end the reactor watches.
    pub(crate) fn read_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// The signals received since the last call, in order.
    pub(crate) fn drain(&self) -> Vec<libc::c_int> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(Some(n)) = sys::fd::read(self.read.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            out.extend(buf[..n].iter().map(|&b| b as libc::c_int));
        }
        out
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for (signal, old) in self.previous.drain(..).rev() {
            sys::signal::restore(signal, &old);
        }
        // Before `write` closes (its fields drop after this), so the handler never writes
        // to a closed descriptor.
        sys::signal::restore_wake_fd(self.write.as_fd(), self.previous_fd);
    }
}
