//! Running a reactor until a result is there (`run_until`), and a `stop()` made before
//! `run()` or during startup being honoured rather than hanging the process.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use common::Echo;
use twistor::defer::{Deferred, Failure, succeed};
use twistor::protocol::factory;
use twistor::reactor::{Phase, SystemEvent};
use twistor::task::{defer_later, sleep};
use twistor::{Error, Reactor};

/// Runs `f` on a thread of its own and fails the test if it has not returned within 10 s
/// (the bug these tests guard against is a `run()` that never returns).
fn returns_in_time<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("run() returned (it hung before stop-before-run was honoured)")
}

type Log = Rc<RefCell<Vec<&'static str>>>;

/// Logs each phase of both system events.
fn log_triggers(reactor: &Reactor) -> Log {
    let log: Log = Rc::default();
    for (phase, event, name) in [
        (Phase::Before, SystemEvent::Startup, "startup before"),
        (Phase::During, SystemEvent::Startup, "startup during"),
        (Phase::After, SystemEvent::Startup, "startup after"),
        (Phase::Before, SystemEvent::Shutdown, "shutdown before"),
        (Phase::During, SystemEvent::Shutdown, "shutdown during"),
        (Phase::After, SystemEvent::Shutdown, "shutdown after"),
    ] {
        let l = log.clone();
        reactor.add_system_event_trigger(phase, event, move || {
            l.borrow_mut().push(name);
            None
        });
    }
    log
}

const EVERY_PHASE: [&str; 6] = [
    "startup before",
    "startup during",
    "startup after",
    "shutdown before",
    "shutdown during",
    "shutdown after",
];

#[test]
fn a_stop_from_a_callback_that_ran_before_run_is_honoured() {
    let log = returns_in_time(|| {
        let reactor = twistor_testing::reactor();
        let log = log_triggers(&reactor);
        let r = reactor.clone();
        // Already fired: the callback, and its stop(), run right here, before run().
        succeed(42).add_callback(move |n| {
            r.stop();
            Ok(n)
        });
        reactor.run().unwrap();
        log.take()
    });
    assert_eq!(log, EVERY_PHASE, "starts up, then shuts down at once");
}

#[test]
fn a_stop_during_startup_waits_for_startup_to_finish() {
    let log = returns_in_time(|| {
        let reactor = twistor_testing::reactor();
        let log = log_triggers(&reactor);
        let r = reactor.clone();
        // Startup waits for this work; the stop comes meanwhile.
        reactor.add_system_event_trigger(Phase::Before, SystemEvent::Startup, move || {
            r.stop();
            let wait = sleep(&r, Duration::from_millis(5));
            Some(Box::pin(async move {
                let _ = wait.await;
            }))
        });
        reactor.run().unwrap();
        log.take()
    });
    assert_eq!(log, EVERY_PHASE);
}

#[test]
fn a_reactor_stopped_before_run_runs_normally_the_time_after() {
    let ticks = returns_in_time(|| {
        let reactor = twistor_testing::reactor();
        reactor.stop();
        reactor.run().unwrap();
        // The request was used up: this run lasts until its own stop.
        let ticks = Rc::new(RefCell::new(0));
        let (r, t) = (reactor.clone(), ticks.clone());
        reactor.call_later(Duration::from_millis(5), move || {
            *t.borrow_mut() += 1;
            r.stop();
        });
        reactor.run().unwrap();
        ticks.take()
    });
    assert_eq!(ticks, 1);
}

#[test]
fn run_until_returns_a_deferreds_result_and_runs_again() {
    let reactor = twistor_testing::reactor();
    let d = defer_later(&reactor, Duration::from_millis(1), || Ok(21)).map(|n| n * 2);
    assert_eq!(reactor.run_until(d).unwrap().unwrap(), 42);
    assert!(!reactor.running());
    let failed: Deferred<u8> = defer_later(&reactor, Duration::ZERO, || Err(Failure::msg("nope")));
    let failure = reactor.run_until(failed).unwrap().unwrap_err();
    assert_eq!(failure.to_string(), "nope");
}

#[test]
fn run_until_takes_any_future() {
    let reactor = twistor_testing::reactor();
    let r = reactor.clone();
    let n = reactor
        .run_until(async move {
            sleep(&r, Duration::from_millis(1)).await.unwrap();
            7
        })
        .unwrap();
    assert_eq!(n, 7);
}

#[test]
fn run_until_with_a_result_already_there_still_starts_and_stops() {
    let reactor = twistor_testing::reactor();
    let log = log_triggers(&reactor);
    assert_eq!(reactor.run_until(succeed("now")).unwrap().unwrap(), "now");
    assert_eq!(log.take(), EVERY_PHASE);
}

#[test]
fn run_until_closes_what_is_still_open_when_it_returns() {
    let reactor = twistor_testing::reactor();
    let port = reactor.listen_tcp_local(0, factory(|_| Echo)).unwrap();
    let addr = ("127.0.0.1", port.port());
    let got = reactor
        .run_until(defer_later(&reactor, Duration::ZERO, || Ok(())))
        .unwrap();
    assert!(got.is_ok());
    assert_eq!(reactor.source_count(), 0, "the listening port was closed");
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn run_until_stopped_early_drops_the_future_and_says_so() {
    struct Dropped(Rc<RefCell<bool>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            *self.0.borrow_mut() = true;
        }
    }
    let reactor = twistor_testing::reactor();
    let dropped = Rc::new(RefCell::new(false));
    let guard = Dropped(dropped.clone());
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(5), move || r.stop());
    let never: Deferred<()> = Deferred::new();
    let result = reactor.run_until(async move {
        let _guard = guard;
        never.await
    });
    assert!(matches!(result, Err(Error::ShuttingDown)), "{result:?}");
    assert!(*dropped.borrow(), "the future was dropped");
}

#[test]
fn run_until_inside_a_running_reactor_is_an_error() {
    let reactor = twistor_testing::reactor();
    let r = reactor.clone();
    let inner = reactor
        .run_until(async move { matches!(r.run_until(async {}), Err(Error::AlreadyRunning)) })
        .unwrap();
    assert!(inner);
}
