//! The monotonic clock.

/// The monotonic clock (the one `Instant` reads) in nanoseconds. The reactor reads it for
/// every `seconds()` and loop turn; reading it directly skips `Instant`'s checked
/// subtraction and 128-bit conversion, a third of the cost.
///
/// Through libc, not rustix: rustix finds the vDSO by parsing the auxiliary vector itself,
/// which crashes under valgrind (the benchmark crate's `callgrind` runs the server so).
#[inline]
pub(crate) fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given, which lives on our stack.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}
