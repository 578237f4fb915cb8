//! The monotonic clock.

use rustix::time::{ClockId, clock_gettime};

/// The monotonic clock (the one `Instant` reads) in nanoseconds. The reactor reads it for
/// every `seconds()` and loop turn; reading it directly skips `Instant`'s checked
/// subtraction and 128-bit conversion, a third of the cost.
#[inline]
pub(crate) fn monotonic_nanos() -> u64 {
    let ts = clock_gettime(ClockId::Monotonic);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}
