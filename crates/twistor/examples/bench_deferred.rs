//! Deferred chain throughput: a chain of 10 callbacks, built and fired 1,000,000 times.
//!
//! `cargo run --release -p twistor --example bench_deferred [ROUNDS]`
//!
//! Prints callbacks per second, by wall clock and by the thread's CPU time (the latter is
//! the steadier figure on a busy machine). Twisted on CPython runs on the order of a million; the
//! same shape of test there is `d = Deferred(); [d.addCallback(f) for _ in range(10)];
//! d.callback(0)`.

use std::hint::black_box;
use std::time::Instant;

use twistor::defer::Deferred;

const CHAIN: usize = 10;

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(1_000_000);

    // Warm up the allocator and caches.
    run(rounds / 10);

    let callbacks = rounds * CHAIN as u64;
    println!("{rounds} chains x {CHAIN} callbacks = {callbacks} callbacks");
    measure("callbacks added, then fired", callbacks, || run(rounds));
    // The same with the value fired first and callbacks running as they are added.
    measure("fired, then callbacks added", callbacks, || {
        run_fired_first(rounds)
    });
}

fn measure(name: &str, callbacks: u64, f: impl FnOnce() -> u64) {
    let (wall, cpu) = (Instant::now(), thread_cpu_seconds());
    let checksum = f();
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu);
    println!(
        "{name}: {:.1} M callbacks/s wall ({:.1} ns each), {:.1} M callbacks/s CPU ({:.1} ns each) [checksum {checksum}]",
        callbacks as f64 / wall / 1e6,
        wall * 1e9 / callbacks as f64,
        callbacks as f64 / cpu / 1e6,
        cpu * 1e9 / callbacks as f64,
    );
}

/// CPU time used by this thread so far.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Builds a chain of `CHAIN` callbacks, fires it, takes the result; `rounds` times.
fn run(rounds: u64) -> u64 {
    let mut total = 0u64;
    for i in 0..rounds {
        let d: Deferred<u64> = Deferred::new();
        for _ in 0..CHAIN {
            d.add_callback(|x| Ok(black_box(x) + 1));
        }
        let _ = d.callback(i);
        if let Some(Ok(v)) = d.try_result() {
            total = total.wrapping_add(v);
        }
    }
    total
}

fn run_fired_first(rounds: u64) -> u64 {
    let mut total = 0u64;
    for i in 0..rounds {
        let d: Deferred<u64> = Deferred::succeeded(i);
        for _ in 0..CHAIN {
            d.add_callback(|x| Ok(black_box(x) + 1));
        }
        if let Some(Ok(v)) = d.try_result() {
            total = total.wrapping_add(v);
        }
    }
    total
}
