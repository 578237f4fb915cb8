//! A Deferred chain with a thread and a timeout: a blocking job runs on the reactor's
//! thread pool, its result goes down a chain of callbacks, and the whole is given up if it
//! takes longer than the timeout.
//!
//! `cargo run --example thread_timeout -- [WORK_MS] [TIMEOUT_MS]` (default 100, 1000).

use std::time::Duration;

use twistor::Reactor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let work_ms: u64 = args.next().map_or(Ok(100), |a| a.parse())?;
    let timeout_ms: u64 = args.next().map_or(Ok(1000), |a| a.parse())?;
    let reactor = Reactor::new()?;
    let d = reactor.defer_to_thread(move || {
        std::thread::sleep(Duration::from_millis(work_ms)); // a blocking job
        21
    });
    d.add_callback(|n| Ok(n * 2))
        .add_timeout(Duration::from_millis(timeout_ms), &reactor);
    match reactor.run_until(d)? {
        Ok(answer) => println!("answer: {answer}"),
        Err(failure) if failure.is_timed_out() => println!("timed out after {timeout_ms} ms"),
        Err(failure) => return Err(failure.into()),
    }
    Ok(())
}
