//! The inotify calls (reading events is [`fd::read`](super::fd::read)).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};

/// A new inotify descriptor, non-blocking and close-on-exec.
pub(crate) fn init() -> io::Result<OwnedFd> {
    Ok(inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?)
}

/// Adds or replaces the watch on `path` for the `IN_*` bits of `mask`; returns its watch
/// descriptor.
pub(crate) fn add_watch(fd: BorrowedFd<'_>, path: &Path, mask: u32) -> io::Result<i32> {
    Ok(inotify::add_watch(
        fd,
        path,
        WatchFlags::from_bits_retain(mask),
    )?)
}

/// Removes watch `wd` (one already gone is `EINVAL`).
pub(crate) fn remove_watch(fd: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    Ok(inotify::remove_watch(fd, wd)?)
}
