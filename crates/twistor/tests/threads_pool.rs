//! The reactor's thread pool: lazy start, size limit, results and failures back on the
//! reactor thread, blocking calls into the reactor, and draining at shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use twistor::defer::{Deferred, DeferredError, Failure, gather_results};
use twistor::task::sleep;
use twistor::threads::{ThreadPool, blocking_call_from_thread};

/// A gate pool jobs wait at until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }

    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::yield_now();
    }
}

#[test]
fn defer_to_thread_runs_off_the_reactor_thread_and_answers_on_it() {
    let reactor = twistor_testing::reactor();
    let here = thread::current().id();
    let d = reactor
        .defer_to_thread(move || thread::current().id() != here)
        .map(move |off_thread| (off_thread, thread::current().id() == here));
    assert_eq!(reactor.run_until(d).unwrap().unwrap(), (true, true));
}

#[test]
fn failures_and_panics_in_jobs_fail_their_deferreds() {
    let reactor = twistor_testing::reactor();
    let failed = reactor.try_defer_to_thread(|| -> Result<(), std::io::Error> {
        Err(std::io::Error::other("disk unplugged"))
    });
    let panicked = reactor.defer_to_thread(|| -> u32 { panic!("job blew up") });
    let both = gather_results(
        [
            failed.then(|r| Ok(r.is_err())),
            panicked.then(|r| Ok(r.is_err())),
        ],
        true,
    );
    assert_eq!(reactor.run_until(both).unwrap().unwrap(), [true, true]);
    assert_eq!(
        failed.try_result().map(|r| r.is_err()),
        None,
        "the result moved on"
    );
}

#[test]
fn the_pool_starts_lazily_and_never_exceeds_its_size() {
    let reactor = twistor_testing::reactor();
    reactor.suggest_thread_pool_size(2);
    let pool = reactor.thread_pool();
    assert_eq!(pool.threads(), 0, "no thread before the first job");
    let gate = Gate::default();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let jobs: Vec<Deferred<()>> = (0..6)
        .map(|_| {
            let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
            reactor.defer_to_thread(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                gate.wait();
                running.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    eventually("two jobs running", || running.load(Ordering::SeqCst) == 2);
    assert_eq!(pool.threads(), 2);
    assert_eq!(pool.queued(), 4);
    gate.open();
    let all = gather_results(jobs, true);
    reactor.run_until(all).unwrap().unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

#[test]
fn call_in_thread_runs_jobs_in_order_on_a_single_thread_pool() {
    let pool = ThreadPool::new("test", 1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..5 {
        let seen = seen.clone();
        pool.call_in_thread(move || seen.lock().unwrap().push(i));
    }
    pool.stop();
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(pool.threads(), 0);
    // Usable again after stopping.
    let again = seen.clone();
    pool.call_in_thread(move || again.lock().unwrap().push(5));
    pool.stop();
    assert_eq!(seen.lock().unwrap().len(), 6);
}

#[test]
fn a_pool_thread_can_wait_for_the_reactor() {
    let reactor = twistor_testing::reactor();
    let handle = reactor.handle();
    let d = reactor.try_defer_to_thread(move || {
        // Ask the reactor for something that itself takes a while there.
        blocking_call_from_thread(&handle, |reactor| {
            sleep(reactor, Duration::from_millis(2)).map(|()| 41)
        })
        .map(|n| n + 1)
    });
    assert_eq!(reactor.run_until(d).unwrap().unwrap(), 42);
}

#[test]
fn blocking_call_from_the_reactor_thread_is_refused() {
    let reactor = twistor_testing::reactor();
    let result = blocking_call_from_thread(&reactor.handle(), |_| Deferred::succeeded(1));
    assert_eq!(
        result.unwrap_err().downcast_ref(),
        Some(&DeferredError::WouldDeadlock)
    );
}

#[test]
fn blocking_calls_carry_failures_back() {
    let reactor = twistor_testing::reactor();
    let handle = reactor.handle();
    let d = reactor.defer_to_thread(move || {
        blocking_call_from_thread(&handle, |_| Deferred::<()>::failed(Failure::msg("no")))
            .unwrap_err()
            .to_string()
    });
    assert_eq!(reactor.run_until(d).unwrap().unwrap(), "no");
}

#[test]
fn a_blocking_call_into_a_reactor_that_goes_away_fails() {
    let reactor = twistor_testing::reactor();
    let handle = reactor.handle();
    let waiter = thread::spawn(move || {
        blocking_call_from_thread(&handle, |_| Deferred::succeeded(1))
            .map_err(|f| f.downcast_ref::<DeferredError>().cloned())
    });
    // Whether the reactor is dropped before the call is posted (posting fails) or after
    // (the call is never run), the waiter must not hang. The pause makes the second, the
    // harder case, the likely one.
    thread::sleep(Duration::from_millis(20));
    drop(reactor);
    assert_eq!(
        waiter.join().unwrap(),
        Err(Some(DeferredError::ReactorGone))
    );
}

#[test]
fn shutdown_lets_queued_jobs_finish_then_joins_the_threads() {
    let reactor = twistor_testing::reactor();
    reactor.suggest_thread_pool_size(2);
    let done = Arc::new(AtomicUsize::new(0));
    let handle = reactor.handle();
    for _ in 0..10 {
        let (done, handle) = (done.clone(), handle.clone());
        reactor.call_in_thread(move || {
            // Jobs still reach the reactor while it shuts down.
            let answer = blocking_call_from_thread(&handle, |_| Deferred::succeeded(1));
            done.fetch_add(answer.unwrap_or(0), Ordering::SeqCst);
        });
    }
    let r = reactor.clone();
    reactor.call_soon(move || r.stop());
    reactor.run().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 10);
    assert_eq!(reactor.thread_pool().threads(), 0, "joined");
}

#[test]
fn the_pool_works_again_when_the_reactor_runs_again() {
    let reactor = twistor_testing::reactor();
    let first = reactor.defer_to_thread(|| 1);
    assert_eq!(reactor.run_until(first).unwrap().unwrap(), 1);
    let second = reactor.defer_to_thread(|| 2);
    assert_eq!(reactor.run_until(second).unwrap().unwrap(), 2);
}
