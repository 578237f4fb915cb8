//! In-process microbenchmarks of the engine: timers, and (hook) Deferred chains.

use std::future::Future;
use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use tokio_util::time::DelayQueue;

/// Time per operation of one timer implementation.
#[derive(Debug, Clone)]
pub struct TimerResult {
    /// What was measured, e.g. `twistor call_later`.
    pub name: &'static str,
    /// Nanoseconds per schedule.
    pub schedule_ns: f64,
    /// Nanoseconds per cancel (including dropping the handle).
    pub cancel_ns: f64,
}

/// Schedules `count` timers with delays spread over 1–100 s and cancels them all, with
/// twistor's `Reactor::call_later` / `DelayedCall::cancel`, tokio-util's `DelayQueue`
/// insert/remove, and tokio `sleep` futures polled once (registered) then dropped.
pub fn timers(count: usize) -> io::Result<Vec<TimerResult>> {
    let delays: Vec<Duration> = spread_delays(count);
    let mut out = Vec::new();

    {
        let reactor = twistor::Reactor::new()?;
        let t0 = Instant::now();
        let calls: Vec<twistor::DelayedCall> = delays
            .iter()
            .map(|&d| reactor.call_later(d, || {}))
            .collect();
        let t1 = Instant::now();
        for call in calls {
            // Every call is pending, so cancel cannot fail here.
            let _ = black_box(call.cancel());
        }
        let t2 = Instant::now();
        out.push(result("twistor call_later", count, t0, t1, t2));
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        let mut queue: DelayQueue<usize> = DelayQueue::new();
        let t0 = Instant::now();
        let keys: Vec<_> = delays
            .iter()
            .enumerate()
            .map(|(i, &d)| queue.insert(i, d))
            .collect();
        let t1 = Instant::now();
        for key in keys {
            black_box(queue.remove(&key));
        }
        let t2 = Instant::now();
        out.push(result("tokio-util DelayQueue", count, t0, t1, t2));
    });
    runtime.block_on(async {
        let mut cx = Context::from_waker(Waker::noop());
        let t0 = Instant::now();
        let sleeps: Vec<Pin<Box<tokio::time::Sleep>>> = delays
            .iter()
            .map(|&d| {
                let mut sleep = Box::pin(tokio::time::sleep(d));
                // A Sleep joins the timer wheel on its first poll.
                let _ = sleep.as_mut().poll(&mut cx);
                sleep
            })
            .collect();
        let t1 = Instant::now();
        for sleep in sleeps {
            drop(black_box(sleep));
        }
        let t2 = Instant::now();
        out.push(result("tokio sleep (poll, drop)", count, t0, t1, t2));
    });
    Ok(out)
}

/// HOOK for the Deferred-chain benchmark (issue 3, which brings twistor's `Deferred`): build
/// `chains` Deferreds with `callbacks` callbacks each, fire them, and time per callback,
/// next to the same chain of `async` closures awaited on tokio's `current_thread` runtime.
///
/// Returns `None` until the Deferred lands in the engine; `twistor-bench deferred` then
/// prints a note rather than a figure.
pub fn deferred_chains(_chains: usize, _callbacks: usize) -> Option<Vec<TimerResult>> {
    None
}

fn result(name: &'static str, count: usize, t0: Instant, t1: Instant, t2: Instant) -> TimerResult {
    let per = |d: Duration| d.as_nanos() as f64 / count.max(1) as f64;
    TimerResult {
        name,
        schedule_ns: per(t1 - t0),
        cancel_ns: per(t2 - t1),
    }
}

/// Delays spread over 1–100 s in a fixed pseudo-random order (a linear congruential
/// generator), the same for every implementation.
fn spread_delays(count: usize) -> Vec<Duration> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..count)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            Duration::from_millis(1_000 + (x >> 33) % 99_000)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_in_range_and_repeatable() {
        let a = spread_delays(1000);
        assert_eq!(a, spread_delays(1000));
        assert!(
            a.iter()
                .all(|d| *d >= Duration::from_secs(1) && *d < Duration::from_secs(100))
        );
    }
}
