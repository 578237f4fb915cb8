//! Filesystem events from Linux's inotify, delivered on the reactor thread (Twisted's
//! `twisted.internet.inotify`).
//!
//! ```no_run
//! use twistor::inotify::{Inotify, Mask};
//! use twistor::Reactor;
//!
//! let reactor = Reactor::new()?;
//! let notifier = Inotify::new(&reactor)?;
//! notifier.watch_recursive("/tmp/inbox", Mask::CREATE | Mask::MOVED_TO, |event| {
//!     println!("{} {}", event.mask, event.path.display());
//! })?;
//! reactor.run()?;
//! # Ok::<(), twistor::Error>(())
//! ```
//!
//! One inotify descriptor is registered with the reactor; when it turns readable, every
//! queued event is read, matched to its watch, and handed to that watch's callback with the
//! full path. A rename shows as `MOVED_FROM` then `MOVED_TO` with the same
//! [`cookie`](FsEvent::cookie).
//!
//! A *recursive* watch also watches every subdirectory, and adds a watch for each new one
//! (created or moved in). Files created in a new directory before its watch was added would
//! be missed, so after adding it the directory is listed and a `CREATE` is delivered for each
//! entry found (as Twisted does); a file may thus be reported twice. A subdirectory moved
//! out stops being watched.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::ops::{BitAnd, BitOr, BitOrAssign};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mio::Interest;

use crate::error::Error;
use crate::guard::{Delivery, Guard, Kind};
use crate::reactor::{Reactor, Readiness, Source};
use crate::sys::{self, FdCell};
use crate::unstable::ReactorInternals;

/// A set of inotify event kinds (`IN_*` bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mask(u32);

impl Mask {
    /// A file was read.
    pub const ACCESS: Mask = Mask(libc::IN_ACCESS);
    /// A file was written.
    pub const MODIFY: Mask = Mask(libc::IN_MODIFY);
    /// Metadata changed (permissions, timestamps, links...).
    pub const ATTRIB: Mask = Mask(libc::IN_ATTRIB);
    /// A file opened for writing was closed.
    pub const CLOSE_WRITE: Mask = Mask(libc::IN_CLOSE_WRITE);
    /// A file not opened for writing was closed.
    pub const CLOSE_NOWRITE: Mask = Mask(libc::IN_CLOSE_NOWRITE);
    /// A file was opened.
    pub const OPEN: Mask = Mask(libc::IN_OPEN);
    /// An entry was renamed away from the watched directory (first half of a rename).
    pub const MOVED_FROM: Mask = Mask(libc::IN_MOVED_FROM);
    /// An entry was renamed into the watched directory (second half of a rename).
    pub const MOVED_TO: Mask = Mask(libc::IN_MOVED_TO);
    /// An entry was created in the watched directory.
    pub const CREATE: Mask = Mask(libc::IN_CREATE);
    /// An entry was deleted from the watched directory.
    pub const DELETE: Mask = Mask(libc::IN_DELETE);
    /// The watched file or directory itself was deleted.
    pub const DELETE_SELF: Mask = Mask(libc::IN_DELETE_SELF);
    /// The watched file or directory itself was moved.
    pub const MOVE_SELF: Mask = Mask(libc::IN_MOVE_SELF);
    /// The filesystem holding the watched path was unmounted.
    pub const UNMOUNT: Mask = Mask(libc::IN_UNMOUNT);
    /// The kernel's event queue overflowed: events were lost.
    pub const Q_OVERFLOW: Mask = Mask(libc::IN_Q_OVERFLOW);
    /// The watch was removed (explicitly, or because its path is gone).
    pub const IGNORED: Mask = Mask(libc::IN_IGNORED);
    /// The event's subject is a directory.
    pub const ISDIR: Mask = Mask(libc::IN_ISDIR);
    /// Every event kind.
    pub const ALL_EVENTS: Mask = Mask(libc::IN_ALL_EVENTS);
    /// What changes a directory's contents or a file's data: create, modify, delete, and
    /// both halves of a rename.
    pub const CHANGES: Mask = Mask(
        libc::IN_CREATE
            | libc::IN_MODIFY
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_CLOSE_WRITE,
    );

    /// The raw `IN_*` bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// A mask from raw `IN_*` bits.
    pub fn from_bits(bits: u32) -> Mask {
        Mask(bits)
    }

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: Mask) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set here.
    pub fn intersects(self, other: Mask) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Mask {
    type Output = Mask;
    fn bitor(self, other: Mask) -> Mask {
        Mask(self.0 | other.0)
    }
}

impl BitOrAssign for Mask {
    fn bitor_assign(&mut self, other: Mask) {
        self.0 |= other.0;
    }
}

impl BitAnd for Mask {
    type Output = Mask;
    fn bitand(self, other: Mask) -> Mask {
        Mask(self.0 & other.0)
    }
}

const NAMES: [(Mask, &str); 16] = [
    (Mask::ACCESS, "ACCESS"),
    (Mask::MODIFY, "MODIFY"),
    (Mask::ATTRIB, "ATTRIB"),
    (Mask::CLOSE_WRITE, "CLOSE_WRITE"),
    (Mask::CLOSE_NOWRITE, "CLOSE_NOWRITE"),
    (Mask::OPEN, "OPEN"),
    (Mask::MOVED_FROM, "MOVED_FROM"),
    (Mask::MOVED_TO, "MOVED_TO"),
    (Mask::CREATE, "CREATE"),
    (Mask::DELETE, "DELETE"),
    (Mask::DELETE_SELF, "DELETE_SELF"),
    (Mask::MOVE_SELF, "MOVE_SELF"),
    (Mask::UNMOUNT, "UNMOUNT"),
    (Mask::Q_OVERFLOW, "Q_OVERFLOW"),
    (Mask::IGNORED, "IGNORED"),
    (Mask::ISDIR, "ISDIR"),
];

/// `CREATE|ISDIR`; unknown bits in hex.
impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut first = true;
        for (mask, name) in NAMES {
            if self.contains(mask) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !mask.0;
            }
        }
        if rest != 0 || first {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mask({self})")
    }
}

/// One filesystem event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsEvent {
    /// The full path of what the event is about: the watched path joined with the entry's
    /// name for events in a watched directory.
    pub path: PathBuf,
    /// What happened (one event kind, plus [`Mask::ISDIR`] for directories).
    pub mask: Mask,
    /// Ties the `MOVED_FROM` and `MOVED_TO` halves of one rename together; 0 otherwise.
    pub cookie: u32,
}

impl FsEvent {
    /// Whether the event is about a directory.
    pub fn is_dir(&self) -> bool {
        self.mask.contains(Mask::ISDIR)
    }
}

/// Identifies a watch added with [`Inotify::watch`] (the kernel's watch descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchId(i32);

/// A watch's callback, shared by the watches of a recursive one's subdirectories.
type Callback = Rc<Guard<Watcher>>;

/// The guard's [`Kind`] for watch callbacks.
struct Watcher;

impl Kind for Watcher {
    type Protocol = dyn FnMut(&FsEvent);
    type Transport = ();
    type Event = FsEvent;

    fn deliver(callback: &mut (dyn FnMut(&FsEvent) + 'static), _: &(), event: FsEvent) {
        callback(&event)
    }
}

impl Delivery<Watcher> for &FsEvent {
    fn call(self, callback: &mut (dyn FnMut(&FsEvent) + 'static), _: &()) {
        callback(self)
    }

    fn keep(self) -> FsEvent {
        self.clone()
    }
}

/// An inotify instance registered with a reactor. Cloning it is cheap; it closes with
/// [`close`](Inotify::close) or when the reactor shuts down.
#[derive(Clone)]
pub struct Inotify {
    inner: Rc<Notifier>,
}

impl Inotify {
    /// A new inotify descriptor, watched by `reactor`.
    pub fn new(reactor: &Reactor) -> Result<Inotify, Error> {
        let fd = sys::inotify::init().map_err(Error::io)?;
        let inner = Rc::new(Notifier {
            fd: FdCell::new(fd),
            token: Cell::new(None),
            watches: RefCell::new(HashMap::new()),
            by_path: RefCell::new(HashMap::new()),
            reactor: reactor.downgrade(),
        });
        let token = inner
            .fd
            .with(|fd| reactor.register(fd, Interest::READABLE, inner.clone()))
            .unwrap_or_else(|| Err(closed()))?;
        inner.token.set(Some(token));
        Ok(Inotify { inner })
    }

    /// Watches `path` (a file, or a directory and the entries in it) for the events in
    /// `mask`, calling `callback` on the reactor thread for each. Watching a path again
    /// replaces its mask and callback.
    pub fn watch(
        &self,
        path: impl AsRef<Path>,
        mask: Mask,
        callback: impl FnMut(&FsEvent) + 'static,
    ) -> Result<WatchId, Error> {
        let callback: Callback = Rc::new(Guard::new(Box::new(callback) as Box<_>));
        self.inner.add(path.as_ref(), mask, false, callback, None)
    }

    /// Like [`watch`](Self::watch) for a directory, and every directory below it, now and
    /// later: new subdirectories are watched as they appear.
    pub fn watch_recursive(
        &self,
        path: impl AsRef<Path>,
        mask: Mask,
        callback: impl FnMut(&FsEvent) + 'static,
    ) -> Result<WatchId, Error> {
        let callback: Callback = Rc::new(Guard::new(Box::new(callback) as Box<_>));
        let path = path.as_ref();
        let id = self.inner.add(path, mask, true, callback.clone(), None)?;
        self.inner.add_children(path, mask, &callback, id.0, false);
        Ok(id)
    }

    /// Stops watching `path` (and, for a recursive watch, the directories below it).
    /// Returns whether it was watched.
    pub fn ignore(&self, path: impl AsRef<Path>) -> bool {
        let wd = self.inner.by_path.borrow().get(path.as_ref()).copied();
        match wd {
            Some(wd) => {
                self.inner.remove_tree(wd);
                true
            }
            None => false,
        }
    }

    /// Whether `path` is watched.
    pub fn is_watched(&self, path: impl AsRef<Path>) -> bool {
        self.inner.by_path.borrow().contains_key(path.as_ref())
    }

    /// Closes the inotify descriptor; no more events are delivered.
    pub fn close(&self) {
        let reactor = self.inner.reactor.upgrade();
        self.inner.close(reactor.as_ref());
    }
}

impl fmt::Debug for Inotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inotify")
            .field("watches", &self.inner.watches.borrow().len())
            .finish()
    }
}

struct Watch {
    path: PathBuf,
    /// What the user asked for.
    mask: Mask,
    recursive: bool,
    callback: Callback,
    /// The watch the user added, of which this one is a subdirectory (itself, for that one).
    root: i32,
}

struct Notifier {
    fd: FdCell,
    token: Cell<Option<usize>>,
    watches: RefCell<HashMap<i32, Watch>>,
    by_path: RefCell<HashMap<PathBuf, i32>>,
    reactor: crate::reactor::WeakReactor,
}

/// Size of one event's fixed part (`struct inotify_event` without the name).
const EVENT_HEADER: usize = 16;

impl Notifier {
    /// Adds (or replaces) the kernel watch for `path`.
    fn add(
        &self,
        path: &Path,
        mask: Mask,
        recursive: bool,
        callback: Callback,
        root: Option<i32>,
    ) -> Result<WatchId, Error> {
        let mut kernel_mask = mask.0 & libc::IN_ALL_EVENTS;
        if recursive {
            // New subdirectories must be seen to be watched, and moved-out ones forgotten.
            kernel_mask |= libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM;
            kernel_mask |= libc::IN_ONLYDIR;
        }
        if root.is_some() {
            kernel_mask |= libc::IN_DONT_FOLLOW;
        }
        if path.as_os_str().as_bytes().contains(&0) {
            return Err(Error::io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path contains a NUL byte",
            )));
        }
        let added = self
            .fd
            .with(|fd| sys::inotify::add_watch(fd, path, kernel_mask))
            .unwrap_or_else(|| Err(closed()));
        let wd = added.map_err(|err| {
            Error::io(io::Error::new(
                err.kind(),
                format!("cannot watch {}: {err}", path.display()),
            ))
        })?;
        let watch = Watch {
            path: path.to_path_buf(),
            mask,
            recursive,
            callback,
            root: root.unwrap_or(wd),
        };
        if let Some(old) = self.watches.borrow_mut().insert(wd, watch)
            && old.path != path
        {
            // The same inode under another name (a hard link, or a directory moved):
            // the newest name wins.
            self.by_path.borrow_mut().remove(&old.path);
        }
        self.by_path.borrow_mut().insert(path.to_path_buf(), wd);
        Ok(WatchId(wd))
    }

    /// Watches the subdirectories of `dir`, recursively; with `announce`, also delivers a
    /// `CREATE` for each entry found (they may have appeared before the watch was added).
    fn add_children(&self, dir: &Path, mask: Mask, callback: &Callback, root: i32, announce: bool) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if announce && mask.contains(Mask::CREATE) {
                let kind = if is_dir {
                    Mask::CREATE | Mask::ISDIR
                } else {
                    Mask::CREATE
                };
                let event = FsEvent {
                    path: path.clone(),
                    mask: kind,
                    cookie: 0,
                };
                self.deliver(callback, root, &event);
            }
            if is_dir
                && self
                    .add(&path, mask, true, callback.clone(), Some(root))
                    .is_ok()
            {
                self.add_children(&path, mask, callback, root, announce);
            }
        }
    }

    /// Runs a watch's callback under the guard; a panic removes the watch (the one the
    /// user added, `root`, with the directories below it).
    fn deliver(&self, callback: &Callback, root: i32, event: &FsEvent) {
        if let Err(panicked) = callback.deliver(&(), event) {
            let path = self.watches.borrow().get(&root).map(|w| w.path.clone());
            let _ = panicked.report(format_args!(
                "the inotify callback for {} (removing the watch)",
                path.as_deref().unwrap_or(Path::new("?")).display()
            ));
            self.remove_tree(root);
        }
    }

    /// Removes watch `wd` and, if it is a recursive one, those of the directories below it.
    fn remove_tree(&self, wd: i32) {
        let Some(prefix) = self.watches.borrow().get(&wd).map(|w| w.path.clone()) else {
            return;
        };
        let doomed: Vec<i32> = self
            .watches
            .borrow()
            .iter()
            .filter(|(id, w)| **id == wd || (w.recursive && w.path.starts_with(&prefix)))
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            if let Some(watch) = self.watches.borrow_mut().remove(&id) {
                self.by_path.borrow_mut().remove(&watch.path);
            }
            // An already-gone watch is EINVAL, which is fine.
            let _ = self.fd.with(|fd| sys::inotify::remove_watch(fd, id));
        }
    }

    /// Closes the descriptor and forgets every watch (and so their callbacks).
    fn close(&self, reactor: Option<&Reactor>) {
        if let (Some(token), Some(reactor)) = (self.token.take(), reactor) {
            reactor.deregister(token, None);
        }
        self.fd.close();
        self.watches.borrow_mut().clear();
        self.by_path.borrow_mut().clear();
    }

    /// Reads every queued event.
    fn read_events(&self) -> Vec<(i32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        // Room for many events (each at most 16 + NAME_MAX + 1 bytes); `parse_events`
        // reads them unaligned.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.fd.with(|fd| sys::fd::read(fd, &mut buf)) {
                Some(Ok(Some(n))) if n > 0 => parse_events(&buf[..n], &mut out),
                Some(Err(err)) => {
                    tracing::warn!("reading inotify events failed: {err}");
                    break;
                }
                _ => break,
            }
        }
        out
    }

    fn handle(&self, wd: i32, mask: u32, cookie: u32, name: &[u8]) {
        let mask = Mask(mask);
        if mask.contains(Mask::Q_OVERFLOW) {
            tracing::warn!("inotify queue overflowed: events were lost");
            let roots: Vec<(i32, PathBuf, Callback)> = self
                .watches
                .borrow()
                .iter()
                .filter(|(id, w)| **id == w.root)
                .map(|(id, w)| (*id, w.path.clone(), w.callback.clone()))
                .collect();
            for (root, path, callback) in roots {
                let event = FsEvent {
                    path,
                    mask,
                    cookie: 0,
                };
                self.deliver(&callback, root, &event);
            }
            return;
        }
        let Some((dir, wanted, recursive, callback, root)) =
            self.watches.borrow().get(&wd).map(|w| {
                (
                    w.path.clone(),
                    w.mask,
                    w.recursive,
                    w.callback.clone(),
                    w.root,
                )
            })
        else {
            // A watch we removed; its last events may still be queued.
            return;
        };
        let path = if name.is_empty() {
            dir
        } else {
            dir.join(OsStr::from_bytes(name))
        };
        if mask.contains(Mask::IGNORED) {
            // The kernel dropped the watch (its path is gone).
            if let Some(watch) = self.watches.borrow_mut().remove(&wd) {
                let mut by_path = self.by_path.borrow_mut();
                if by_path.get(&watch.path) == Some(&wd) {
                    by_path.remove(&watch.path);
                }
            }
        }
        let event = FsEvent { path, mask, cookie };
        if wanted.intersects(mask & Mask(libc::IN_ALL_EVENTS | libc::IN_IGNORED)) {
            self.deliver(&callback, root, &event);
        }
        // (Unless the callback removed the watch, or panicked, which removes it.)
        if recursive && event.is_dir() && self.watches.borrow().contains_key(&root) {
            if mask.intersects(Mask::CREATE | Mask::MOVED_TO) {
                if self
                    .add(&event.path, wanted, true, callback.clone(), Some(root))
                    .is_ok()
                {
                    self.add_children(&event.path, wanted, &callback, root, true);
                }
            } else if mask.contains(Mask::MOVED_FROM) {
                let moved = self.by_path.borrow().get(&event.path).copied();
                if let Some(moved) = moved {
                    self.remove_tree(moved);
                }
            }
        }
    }
}

impl Source for Notifier {
    fn ready(self: Rc<Self>, _reactor: &Reactor, _readiness: Readiness) {
        for (wd, mask, cookie, name) in self.read_events() {
            self.handle(wd, mask, cookie, &name);
        }
    }

    fn shutdown(self: Rc<Self>, reactor: &Reactor) {
        self.close(Some(reactor));
    }

    fn reactor_dropped(&self) {
        self.close(None);
    }
}

/// The error for a call on a closed inotify instance.
fn closed() -> io::Error {
    io::Error::other("the inotify instance is closed")
}

/// Splits a buffer of `struct inotify_event`s into (wd, mask, cookie, name) without
/// trusting its lengths.
fn parse_events(mut bytes: &[u8], out: &mut Vec<(i32, u32, u32, Vec<u8>)>) {
    while bytes.len() >= EVENT_HEADER {
        let word =
            |i: usize| u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let wd = word(0) as i32;
        let mask = word(4);
        let cookie = word(8);
        let len = word(12) as usize;
        let Some(name) = bytes.get(EVENT_HEADER..EVENT_HEADER + len) else {
            tracing::warn!("truncated inotify event");
            return;
        };
        // The name is NUL-padded.
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        out.push((wd, mask, cookie, name[..end].to_vec()));
        bytes = &bytes[EVENT_HEADER + len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_rejects_truncation() {
        let mut raw = Vec::new();
        let events: [(i32, u32, u32, &[u8]); 2] =
            [(1, libc::IN_CREATE, 0, b"a\0\0\0"), (2, 4, 7, b"")];
        for (wd, mask, cookie, name) in events {
            raw.extend_from_slice(&wd.to_ne_bytes());
            raw.extend_from_slice(&mask.to_ne_bytes());
            raw.extend_from_slice(&cookie.to_ne_bytes());
            raw.extend_from_slice(&(name.len() as u32).to_ne_bytes());
            raw.extend_from_slice(name);
        }
        let mut out = Vec::new();
        parse_events(&raw, &mut out);
        assert_eq!(
            out,
            [
                (1, libc::IN_CREATE, 0, b"a".to_vec()),
                (2, 4, 7, Vec::new())
            ]
        );
        let mut out = Vec::new();
        let mut bad = raw[..16].to_vec();
        bad[12] = 200;
        parse_events(&bad, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn masks_print_their_names() {
        assert_eq!((Mask::CREATE | Mask::ISDIR).to_string(), "CREATE|ISDIR");
        assert_eq!(Mask::from_bits(0).to_string(), "0x0");
        assert!(Mask::CHANGES.contains(Mask::MOVED_TO));
    }
}
