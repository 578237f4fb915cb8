//! The queue of a Deferred's links: the first few inline, the rest on the heap.
//!
//! Most chains are a handful of links, so keeping four in the Deferred itself saves an
//! allocation (and its growth) for each of them.

use std::collections::VecDeque;

const INLINE: usize = 4;
/// Capacity of the heap queue when the inline slots overflow.
const SPILL: usize = 16;

/// A FIFO queue with room for a few items inline.
pub(crate) struct LinkQueue<L> {
    repr: Repr<L>,
}

enum Repr<L> {
    /// A ring of `INLINE` slots: `len` items from `head`.
    Inline {
        slots: [Option<L>; INLINE],
        head: usize,
        len: usize,
    },
    Heap(VecDeque<L>),
}

impl<L> LinkQueue<L> {
    pub(crate) fn new() -> LinkQueue<L> {
        LinkQueue {
            repr: Repr::Inline {
                slots: std::array::from_fn(|_| None),
                head: 0,
                len: 0,
            },
        }
    }

    pub(crate) fn push_back(&mut self, item: L) {
        match &mut self.repr {
            Repr::Inline { slots, head, len } if *len < INLINE => {
                slots[(*head + *len) % INLINE] = Some(item);
                *len += 1;
            }
            Repr::Inline { .. } => {
                let mut heap = VecDeque::with_capacity(SPILL);
                while let Some(old) = self.pop_front() {
                    heap.push_back(old);
                }
                heap.push_back(item);
                self.repr = Repr::Heap(heap);
            }
            Repr::Heap(heap) => heap.push_back(item),
        }
    }

    pub(crate) fn pop_front(&mut self) -> Option<L> {
        match &mut self.repr {
            Repr::Inline { slots, head, len } => {
                if *len == 0 {
                    return None;
                }
                let item = slots[*head].take();
                *head = (*head + 1) % INLINE;
                *len -= 1;
                item
            }
            Repr::Heap(heap) => heap.pop_front(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match &self.repr {
            Repr::Inline { len, .. } => *len,
            Repr::Heap(heap) => heap.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts `front`'s items before this queue's.
    pub(crate) fn prepend(&mut self, mut front: LinkQueue<L>) {
        if front.is_empty() {
            return;
        }
        while let Some(item) = self.pop_front() {
            front.push_back(item);
        }
        *self = front;
    }
}

impl<L> Default for LinkQueue<L> {
    fn default() -> Self {
        LinkQueue::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_across_the_spill() {
        let mut q = LinkQueue::new();
        for i in 0..3 {
            q.push_back(i);
        }
        assert_eq!(q.pop_front(), Some(0));
        for i in 3..20 {
            q.push_back(i);
        }
        assert_eq!(q.len(), 19);
        let got: Vec<_> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(got, (1..20).collect::<Vec<_>>());
        assert!(q.is_empty());
    }

    #[test]
    fn prepend_keeps_order() {
        let mut back = LinkQueue::new();
        back.push_back(3);
        back.push_back(4);
        let mut front = LinkQueue::new();
        front.push_back(1);
        front.push_back(2);
        back.prepend(front);
        let got: Vec<_> = std::iter::from_fn(|| back.pop_front()).collect();
        assert_eq!(got, [1, 2, 3, 4]);
    }
}
