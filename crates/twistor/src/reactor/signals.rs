//! Unix signals, delivered to the reactor thread through a self-pipe.
//!
//! A signal handler may do almost nothing safely; ours writes the signal's number to a
//! non-blocking pipe whose other end the reactor reads like any socket. Only one reactor in a
//! process owns the signal handlers at a time (signal dispositions are process-wide).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end of the current owner's pipe, read by the handler; -1 when none.
static PIPE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// Serialises installing and restoring handlers.
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe calls here: write(2), and errno preserved for the
    // interrupted code.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        let fd = PIPE_WRITE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = signal as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *errno = saved;
    }
}

/// Signal handlers installed for one reactor; dropping it restores the previous ones.
pub(crate) struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
    previous: Vec<(libc::c_int, libc::sigaction)>,
    previous_fd: RawFd,
}

impl SignalPipe {
    /// Installs handlers for `signals`, all reported through one new pipe.
    pub(crate) fn install(signals: &[libc::c_int]) -> io::Result<SignalPipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 just returned these descriptors, owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let previous_fd = PIPE_WRITE_FD.swap(write.as_raw_fd(), Ordering::SeqCst);
        let mut pipe = SignalPipe {
            read,
            write,
            previous: Vec::new(),
            previous_fd,
        };
        for &signal in signals {
            pipe.previous.push((
                signal,
                set_handler(signal, on_signal as *const () as usize)?,
            ));
        }
        Ok(pipe)
    }

    /// Adds one more signal to this pipe (a user handler for SIGHUP, say).
    pub(crate) fn add(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.previous.iter().any(|(s, _)| *s == signal) {
            return Ok(());
        }
        let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        self.previous.push((
            signal,
            set_handler(signal, on_signal as *const () as usize)?,
        ));
        Ok(())
    }

    pub(crate) fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The signals received since the last call, in order.
    pub(crate) fn drain(&self) -> Vec<libc::c_int> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into a local buffer of the given length.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.extend(buf[..n as usize].iter().map(|&b| b as libc::c_int));
        }
        out
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for (signal, old) in self.previous.drain(..).rev() {
            // SAFETY: restoring a disposition that sigaction gave us.
            unsafe { libc::sigaction(signal, &old, std::ptr::null_mut()) };
        }
        let _ = PIPE_WRITE_FD.compare_exchange(
            self.write.as_raw_fd(),
            self.previous_fd,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

fn set_handler(signal: libc::c_int, handler: usize) -> io::Result<libc::sigaction> {
    // SAFETY: zeroed sigaction structs are valid; we fill in the handler, flags and an empty
    // mask, and sigaction copies them.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, &action, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}
