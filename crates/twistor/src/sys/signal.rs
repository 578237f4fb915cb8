//! Signals: the handler that wakes the reactor, dispositions, `SIGPIPE`, `kill`.
//!
//! The handler may do almost nothing safely: it writes the signal's number to the *wake
//! descriptor* (the write end of a non-blocking pipe whose read end the reactor watches),
//! and keeps `errno` as it found it. Dispositions are process-wide, so one owner at a time
//! sets the wake descriptor.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end of the current owner's pipe, read by the handler; -1 when none.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe calls here: write(2), and errno kept for the interrupted code.
    // SAFETY: `__errno_location` is this thread's errno; WAKE_FD is open while it is set
    // (its owner swaps it back before closing it, see `set_wake_fd`), and a failed write
    // (a full pipe: enough bytes are already queued to wake the reactor) is harmless.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        let fd = WAKE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = signal as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *errno = saved;
    }
}

/// Makes the handler write to `fd` from now on; returns the descriptor it wrote to before
/// (-1 for none), to put back with [`restore_wake_fd`]. The caller keeps `fd` open until
/// then.
pub(crate) fn set_wake_fd(fd: BorrowedFd<'_>) -> RawFd {
    WAKE_FD.swap(fd.as_raw_fd(), Ordering::SeqCst)
}

/// Puts back the wake descriptor `set_wake_fd(ours)` replaced, if `ours` is still the
/// current one.
pub(crate) fn restore_wake_fd(ours: BorrowedFd<'_>, previous: RawFd) {
    let _ = WAKE_FD.compare_exchange(
        ours.as_raw_fd(),
        previous,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
}

/// A signal's disposition before we changed it.
pub(crate) struct Disposition(libc::sigaction);

/// Routes `signal` to the wake descriptor (with `SA_RESTART`); returns the disposition it
/// replaces.
pub(crate) fn catch(signal: libc::c_int) -> io::Result<Disposition> {
    // SAFETY: a zeroed sigaction is valid; we fill in the handler (an `extern "C"` function
    // that only makes async-signal-safe calls), flags and an empty mask, and sigaction
    // copies them, writing the old disposition into `old`.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, &action, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Disposition(old))
    }
}

/// Puts back a disposition [`catch`] replaced.
pub(crate) fn restore(signal: libc::c_int, old: &Disposition) {
    // SAFETY: `old.0` is a disposition sigaction gave us; sigaction only copies it.
    unsafe { libc::sigaction(signal, &old.0, std::ptr::null_mut()) };
}

/// Makes sure writing to a pipe whose reader is gone is an `EPIPE` error rather than a
/// `SIGPIPE` that kills the process. Rust programs ignore `SIGPIPE` already; a host that
/// left it at the default gets it ignored here (children still start with the default:
/// `std::process::Command` resets it).
pub(crate) fn ignore_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: querying and, if default, setting SIGPIPE's disposition with zeroed
        // (valid) sigaction structs; SIG_IGN runs no code of ours.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
            {
                tracing::debug!("ignoring SIGPIPE, so broken pipes are errors");
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
        }
    });
}

/// Sends `signal` to process `pid`.
pub(crate) fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = super::pid_of(pid)?;
    // SAFETY: kill(2) touches no memory of ours. (rustix's safe `kill_process` takes only
    // named signals; callers may send real-time ones.)
    if unsafe { libc::kill(pid.as_raw_nonzero().get(), signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether process `pid` exists (signal 0: ours to signal or not).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = super::pid_of(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(err) => err == rustix::io::Errno::PERM,
    }
}
