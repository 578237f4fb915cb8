//! Small statistics over benchmark samples: medians and latency percentiles.

/// The median of `values`, or `None` when there are none.
///
/// With an even count this is the mean of the two middle values. NaNs sort last.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// The `p`-th percentile (0.0–100.0) of `samples` by the nearest-rank method, or `None` when
/// there are none. Reorders `samples`.
pub fn percentile(samples: &mut [u32], p: f64) -> Option<u32> {
    if samples.is_empty() {
        return None;
    }
    let n = samples.len();
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let index = rank.clamp(1, n) - 1;
    let (_, value, _) = samples.select_nth_unstable(index);
    Some(*value)
}

/// Latency percentiles of one run, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// The median round trip.
    pub p50_ns: u32,
    /// The 99th percentile round trip.
    pub p99_ns: u32,
}

impl Latency {
    /// Computes p50 and p99 from raw samples (reordering them); zero when there are none.
    pub fn from_samples(samples: &mut [u32]) -> Latency {
        Latency {
            p50_ns: percentile(samples, 50.0).unwrap_or(0),
            p99_ns: percentile(samples, 99.0).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
    }

    #[test]
    fn percentile_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50));
        assert_eq!(percentile(&mut v, 99.0), Some(99));
        assert_eq!(percentile(&mut v, 100.0), Some(100));
        assert_eq!(percentile(&mut v, 0.0), Some(1));
        assert_eq!(percentile(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [5], 99.0), Some(5));
    }

    #[test]
    fn latency_from_samples() {
        let mut v = vec![10, 20, 30, 40];
        assert_eq!(
            Latency::from_samples(&mut v),
            Latency {
                p50_ns: 20,
                p99_ns: 40
            }
        );
        assert_eq!(Latency::from_samples(&mut []), Latency::default());
    }
}
