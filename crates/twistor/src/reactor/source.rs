//! Event sources: anything with a file descriptor that the reactor waits on.

use std::rc::Rc;

use super::Reactor;

/// What epoll said about a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Data can be read (or a connection accepted).
    pub readable: bool,
    /// Data can be written (or a connect finished).
    pub writable: bool,
    /// The peer closed its sending side: reading will reach end of stream.
    pub read_closed: bool,
    /// Our sending side is closed: writing will fail.
    pub write_closed: bool,
    /// An error is pending on the descriptor.
    pub error: bool,
}

/// An event source registered with the reactor (Twisted's `IReadDescriptor` /
/// `IWriteDescriptor`, in one).
///
/// Sources are registered once, edge-triggered, for both reading and writing; the reactor
/// calls [`ready`](Source::ready) whenever epoll reports a change. A source that has writes
/// to flush or reads to resume outside its own `ready` call asks for
/// [`flush`](Source::flush) with [`ReactorInternals::mark_dirty`](crate::unstable::ReactorInternals::mark_dirty).
pub trait Source {
    /// Epoll reported the source ready.
    fn ready(self: Rc<Self>, reactor: &Reactor, readiness: Readiness);

    /// Flush queued output or resume reading; called once per reactor turn after
    /// [`ReactorInternals::mark_dirty`](crate::unstable::ReactorInternals::mark_dirty).
    fn flush(self: Rc<Self>, _reactor: &Reactor) {}

    /// The reactor is shutting down: close now.
    fn shutdown(self: Rc<Self>, _reactor: &Reactor) {}

    /// The reactor is being dropped without having been stopped: close the descriptor now
    /// and let go of whatever may keep this source alive (its protocol, its owner), without
    /// running callbacks (the reactor they would reach is gone).
    fn reactor_dropped(&self) {}
}

/// Token bits: the low 32 bits index the slab, the high bits are the slot's generation, so an
/// event queued for a source that was removed is never delivered to the slot's next tenant.
const INDEX_BITS: u32 = 32;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;

/// The reactor's table of registered sources.
pub(crate) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
}

struct Slot {
    generation: u32,
    source: Option<Rc<dyn Source>>,
}

impl Slab {
    pub(crate) fn new() -> Slab {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn insert(&mut self, source: Rc<dyn Source>) -> usize {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.source = Some(source);
            return token_of(index, slot.generation);
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 0,
            source: Some(source),
        });
        token_of(index, 0)
    }

    #[inline]
    pub(crate) fn get(&self, token: usize) -> Option<&Rc<dyn Source>> {
        let slot = self.slots.get(token & INDEX_MASK)?;
        if (slot.generation as usize) != token >> INDEX_BITS {
            return None;
        }
        slot.source.as_ref()
    }

    pub(crate) fn replace(&mut self, token: usize, source: Rc<dyn Source>) -> bool {
        match self.slots.get_mut(token & INDEX_MASK) {
            Some(slot)
                if slot.generation as usize == token >> INDEX_BITS && slot.source.is_some() =>
            {
                slot.source = Some(source);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn remove(&mut self, token: usize) -> Option<Rc<dyn Source>> {
        let index = token & INDEX_MASK;
        let slot = self.slots.get_mut(index)?;
        if slot.generation as usize != token >> INDEX_BITS {
            return None;
        }
        let source = slot.source.take()?;
        slot.generation = slot.generation.wrapping_add(1) & (u32::MAX >> 1);
        self.free.push(index as u32);
        self.len -= 1;
        Some(source)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn all(&self) -> Vec<Rc<dyn Source>> {
        self.slots.iter().filter_map(|s| s.source.clone()).collect()
    }

    /// Removes every source.
    pub(crate) fn take_all(&mut self) -> Vec<Rc<dyn Source>> {
        self.free.clear();
        self.len = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .filter_map(|s| s.source)
            .collect()
    }
}

fn token_of(index: u32, generation: u32) -> usize {
    ((generation as usize) << INDEX_BITS) | index as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl Source for Nop {
        fn ready(self: Rc<Self>, _: &Reactor, _: Readiness) {}
    }

    #[test]
    fn stale_tokens_do_not_reach_new_tenants() {
        let mut slab = Slab::new();
        let a = slab.insert(Rc::new(Nop));
        assert!(slab.get(a).is_some());
        assert!(slab.remove(a).is_some());
        let b = slab.insert(Rc::new(Nop));
        assert_eq!(a & INDEX_MASK, b & INDEX_MASK, "slot reused");
        assert!(slab.get(a).is_none(), "old token is stale");
        assert!(slab.get(b).is_some());
        assert!(slab.remove(a).is_none());
        assert_eq!(slab.len(), 1);
    }
}
