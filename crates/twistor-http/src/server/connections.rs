//! The live connections of a [`Site`](super::Site), so it can drain them for a graceful
//! shutdown.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Weak;

use twistor::defer::Deferred;

use super::channel::Channel;

/// The site's connections, by address, and who waits for them all to be gone.
#[derive(Default)]
pub(crate) struct Connections {
    live: RefCell<HashMap<usize, Weak<Channel>>>,
    draining: Cell<bool>,
    waiters: RefCell<Vec<Deferred<()>>>,
}

impl Connections {
    pub(crate) fn add(&self, channel: &Weak<Channel>) {
        self.live
            .borrow_mut()
            .insert(channel.as_ptr() as usize, channel.clone());
    }

    /// Forgets a connection (it may be gone already); fires the drain's Deferreds when it
    /// was the last.
    pub(crate) fn remove(&self, channel: &Weak<Channel>) {
        let empty = {
            let mut live = self.live.borrow_mut();
            live.remove(&(channel.as_ptr() as usize));
            live.is_empty()
        };
        if empty && self.draining.get() {
            self.fire();
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.live.borrow().len()
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining every connection; the Deferred fires once none is left.
    pub(crate) fn drain(&self) -> Deferred<()> {
        self.draining.set(true);
        let d = Deferred::new();
        self.waiters.borrow_mut().push(d.clone());
        // Drained outside the borrow: a connection that closes at once removes itself.
        let channels: Vec<Weak<Channel>> = self.live.borrow().values().cloned().collect();
        for channel in channels {
            if let Some(channel) = channel.upgrade() {
                channel.drain();
            }
        }
        if self.live.borrow().values().all(|c| c.strong_count() == 0) {
            self.live.borrow_mut().clear();
            self.fire();
        }
        d
    }

    fn fire(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for d in waiters {
            let _ = d.callback(());
        }
    }
}
