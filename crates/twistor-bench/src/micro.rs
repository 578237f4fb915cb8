//! In-process microbenchmarks of the engine: timers and Deferred chains.

use std::future::Future;
use std::hint::black_box;
use std::io;
use std::path::Path;
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

/// Time per callback of one Deferred implementation and chain shape.
#[derive(Debug, Clone)]
pub struct ChainResult {
    /// Implementation and shape, e.g. `twistor, added then fired`.
    pub name: String,
    /// CPU nanoseconds per callback.
    pub ns_per_callback: f64,
}

/// Builds `chains` Deferreds of `callbacks` callbacks each and fires them, two ways: the
/// callbacks added and then the Deferred fired, and the Deferred fired first with the
/// callbacks running as they are added. CPU time per callback, for twistor's `Deferred` and,
/// through `python` running `script`, for Twisted's (skipped with a note if that fails).
pub fn deferred_chains(
    chains: usize,
    callbacks: usize,
    twisted: Option<(&Path, &Path)>,
) -> Vec<ChainResult> {
    use twistor::defer::Deferred;
    let per_callback = |f: &dyn Fn() -> u64| {
        let warm = black_box(f());
        let start = thread_cpu_ns();
        black_box(f().wrapping_add(warm));
        (thread_cpu_ns() - start) as f64 / (chains * callbacks).max(1) as f64
    };
    let added_then_fired = || {
        let mut total = 0u64;
        for i in 0..chains as u64 {
            let d: Deferred<u64> = Deferred::new();
            for _ in 0..callbacks {
                d.add_callback(|x| Ok(black_box(x) + 1));
            }
            let _ = d.callback(i);
            if let Some(Ok(v)) = d.try_result() {
                total = total.wrapping_add(v);
            }
        }
        total
    };
    let fired_then_added = || {
        let mut total = 0u64;
        for i in 0..chains as u64 {
            let d: Deferred<u64> = Deferred::succeeded(i);
            for _ in 0..callbacks {
                d.add_callback(|x| Ok(black_box(x) + 1));
            }
            if let Some(Ok(v)) = d.try_result() {
                total = total.wrapping_add(v);
            }
        }
        total
    };
    let mut out = vec![
        ChainResult {
            name: "twistor, added then fired".into(),
            ns_per_callback: per_callback(&added_then_fired),
        },
        ChainResult {
            name: "twistor, fired then added".into(),
            ns_per_callback: per_callback(&fired_then_added),
        },
    ];
    match twisted {
        None => eprintln!("deferred: Twisted skipped (no python3 with Twisted)"),
        Some((python, script)) => {
            // CPython is ~50x slower: a tenth of the chains keeps the run short.
            let py_chains = (chains / 10).max(1000);
            let run = std::process::Command::new(python)
                .arg(script)
                .arg(py_chains.to_string())
                .arg(callbacks.to_string())
                .output();
            match run {
                Ok(o) if o.status.success() => {
                    for line in String::from_utf8_lossy(&o.stdout).lines() {
                        let mut parts = line.split_whitespace();
                        if let (Some(shape), Some(ns)) = (parts.next(), parts.next())
                            && let Ok(ns) = ns.parse::<f64>()
                        {
                            out.push(ChainResult {
                                name: format!("Twisted, {}", shape.replace('-', " ")),
                                ns_per_callback: ns,
                            });
                        }
                    }
                }
                Ok(o) => eprintln!(
                    "deferred: Twisted run failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => eprintln!("deferred: Twisted skipped: {e}"),
            }
        }
    }
    out
}

/// CPU time used by this thread so far, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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
