//! Bit flags in a `Cell<u32>`, the way the engine's sources keep their state.

use std::cell::Cell;

/// A type whose state is a set of bit flags in a `Cell<u32>`.
pub(crate) trait Flags {
    /// The flags.
    fn flags(&self) -> &Cell<u32>;

    /// Whether any of `flag`'s bits is set.
    #[inline]
    fn has(&self, flag: u32) -> bool {
        self.flags().get() & flag != 0
    }

    /// Sets `flag`'s bits.
    #[inline]
    fn set(&self, flag: u32) {
        self.flags().set(self.flags().get() | flag);
    }

    /// Clears `flag`'s bits.
    #[inline]
    fn unset(&self, flag: u32) {
        self.flags().set(self.flags().get() & !flag);
    }
}
