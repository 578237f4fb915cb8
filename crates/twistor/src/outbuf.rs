//! What socket and pipe transports share on their writing side: the output buffer and the
//! registered producer's slot.

use std::rc::Rc;

use crate::transport::Producer;

/// Bytes waiting to be sent. Holds no allocation while empty.
#[derive(Default)]
pub(crate) struct OutBuf {
    data: Vec<u8>,
    start: usize,
}

impl OutBuf {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.start
    }

    #[inline]
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.data.len() / 2 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    #[inline]
    pub(crate) fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.data.len() {
            self.clear();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.data = Vec::new();
        self.start = 0;
    }
}

/// A registered producer (Twisted's `registerProducer`) and whether it is paused.
pub(crate) struct ProducerSlot {
    pub(crate) producer: Rc<dyn Producer>,
    pub(crate) streaming: bool,
    pub(crate) paused: bool,
}

impl ProducerSlot {
    /// Marks a streaming producer paused and returns it, to be told outside any borrow;
    /// `None` if it is a pull producer or already paused.
    pub(crate) fn pause(&mut self) -> Option<Rc<dyn Producer>> {
        if self.streaming && !self.paused {
            self.paused = true;
            Some(self.producer.clone())
        } else {
            None
        }
    }

    /// The producer to resume now, given how many bytes are buffered: a paused streaming
    /// producer once the buffer has drained to half the high-water mark, a pull producer
    /// whenever the buffer is empty.
    pub(crate) fn resume_if_due(
        &mut self,
        buffered: usize,
        high_water: usize,
    ) -> Option<Rc<dyn Producer>> {
        let due = if self.streaming {
            self.paused && buffered <= high_water / 2
        } else {
            buffered == 0
        };
        if !due {
            return None;
        }
        self.paused = false;
        Some(self.producer.clone())
    }
}
