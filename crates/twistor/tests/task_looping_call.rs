//! LoopingCall on the test clock: interval boundaries, skipped intervals, waiting for a
//! returned Deferred, errors, stop and restart, counting.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use twistor::defer::{Deferred, DeferredError, Failure};
use twistor::task::LoopingCall;
use twistor_testing::Clock;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A loop that records the clock time of each run.
fn recording(clock: &Clock) -> (LoopingCall, Rc<RefCell<Vec<f64>>>) {
    let times = Rc::new(RefCell::new(Vec::new()));
    let (t, c) = (times.clone(), clock.clone());
    let lc = LoopingCall::new(clock.clone(), move || t.borrow_mut().push(c.seconds()));
    (lc, times)
}

#[test]
fn runs_at_once_then_on_every_interval_and_stop_fires_the_deferred() {
    let clock = Clock::new();
    let (lc, times) = recording(&clock);
    let done = lc.start(secs(1.0), true).unwrap();
    assert_eq!(*times.borrow(), [0.0]);
    clock.pump(&[secs(1.0), secs(1.0), secs(0.5)]);
    assert_eq!(*times.borrow(), [0.0, 1.0, 2.0]);
    assert!(lc.running());
    assert!(!done.called());
    lc.stop().unwrap();
    assert!(!lc.running());
    assert!(done.try_result().unwrap().is_ok());
    assert!(clock.delayed_calls().is_empty());
    clock.advance(secs(5.0));
    assert_eq!(times.borrow().len(), 3);
}

#[test]
fn without_now_the_first_run_is_one_interval_later() {
    let clock = Clock::new();
    let (lc, times) = recording(&clock);
    lc.start(secs(2.0), false).unwrap();
    assert!(times.borrow().is_empty());
    clock.advance(secs(2.0));
    assert_eq!(*times.borrow(), [2.0]);
    lc.stop().unwrap();
}

#[test]
fn missed_intervals_are_skipped_not_run_late() {
    let clock = Clock::new();
    let (lc, times) = recording(&clock);
    lc.start(secs(1.0), true).unwrap();
    // The process was busy for 3.5 intervals: one late run, then back on the boundaries.
    clock.advance(secs(3.5));
    assert_eq!(*times.borrow(), [0.0, 3.5]);
    clock.advance(secs(0.5));
    assert_eq!(*times.borrow(), [0.0, 3.5, 4.0]);
    lc.stop().unwrap();
}

#[test]
fn runs_stay_on_boundaries_counted_from_start() {
    let clock = Clock::new();
    clock.advance(secs(0.25));
    let (lc, times) = recording(&clock);
    lc.start(secs(1.0), false).unwrap();
    let next = |clock: &Clock| clock.delayed_calls()[0].time();
    assert_eq!(next(&clock), 1.25);
    // The clock jumps past the boundary (time moves first, then due calls run)...
    clock.advance(secs(1.2));
    assert_eq!(*times.borrow(), [1.45]);
    // ...and the next run is still on a boundary counted from the start.
    assert_eq!(next(&clock), 2.25);
    clock.advance(secs(1.2));
    assert_eq!(next(&clock), 3.25);
    lc.stop().unwrap();
}

#[test]
fn a_returned_deferred_is_waited_for_before_the_next_run() {
    let clock = Clock::new();
    let pending: Rc<RefCell<Vec<Deferred<()>>>> = Rc::new(RefCell::new(Vec::new()));
    let (p, c) = (pending.clone(), clock.clone());
    let times = Rc::new(RefCell::new(Vec::new()));
    let t = times.clone();
    let lc = LoopingCall::new(clock.clone(), move || {
        t.borrow_mut().push(c.seconds());
        let d = Deferred::new();
        p.borrow_mut().push(d.clone());
        d
    });
    lc.start(secs(1.0), true).unwrap();
    clock.advance(secs(2.5));
    assert_eq!(
        *times.borrow(),
        [0.0],
        "still waiting for the first run's Deferred"
    );
    let first = pending.borrow_mut().remove(0);
    first.callback(()).unwrap();
    // Done at 2.5: the next run is on the next boundary, 3.0.
    clock.advance(secs(0.5));
    assert_eq!(*times.borrow(), [0.0, 3.0]);
    lc.stop().unwrap();
    let second = pending.borrow_mut().remove(0);
    second.callback(()).unwrap();
}

#[test]
fn stopping_while_a_returned_deferred_is_pending_fires_when_it_does() {
    let clock = Clock::new();
    let work = Deferred::new();
    let w = work.clone();
    let lc = LoopingCall::new(clock.clone(), move || w.clone());
    let done = lc.start(secs(1.0), true).unwrap();
    lc.stop().unwrap();
    assert!(!done.called());
    work.callback(()).unwrap();
    assert!(done.try_result().unwrap().is_ok());
}

#[test]
fn an_error_stops_the_loop_and_fails_its_deferred() {
    let clock = Clock::new();
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let lc = LoopingCall::new(clock.clone(), move || {
        r.set(r.get() + 1);
        if r.get() == 3 {
            Err(Failure::msg("third run failed"))
        } else {
            Ok(())
        }
    });
    let done = lc.start(secs(1.0), true).unwrap();
    clock.pump(&[secs(1.0); 5]);
    assert_eq!(runs.get(), 3);
    assert!(!lc.running());
    assert_eq!(
        done.try_result().unwrap().unwrap_err().to_string(),
        "third run failed"
    );
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn a_failing_returned_deferred_stops_the_loop() {
    let clock = Clock::new();
    let lc = LoopingCall::new(clock.clone(), || {
        Deferred::<i32>::failed(Failure::msg("async failure"))
    });
    let done = lc.start(secs(1.0), true).unwrap();
    assert!(!lc.running());
    assert!(done.try_result().unwrap().is_err());
}

#[test]
fn a_panicking_function_stops_the_loop_with_a_failure() {
    let clock = Clock::new();
    let lc = LoopingCall::new(clock.clone(), || -> () { panic!("oops") });
    let done = lc.start(secs(1.0), true).unwrap();
    assert!(matches!(
        done.try_result().unwrap().unwrap_err().downcast_ref(),
        Some(DeferredError::Panicked(_))
    ));
}

#[test]
fn stop_from_inside_the_function_fires_after_it_returns() {
    let clock = Clock::new();
    let me: Rc<RefCell<Option<LoopingCall>>> = Rc::new(RefCell::new(None));
    let m = me.clone();
    let lc = LoopingCall::new(clock.clone(), move || {
        if let Some(lc) = m.borrow().as_ref() {
            lc.stop().unwrap();
        }
    });
    *me.borrow_mut() = Some(lc.clone());
    let done = lc.start(secs(1.0), false).unwrap();
    clock.advance(secs(1.0));
    assert!(done.try_result().unwrap().is_ok());
    assert!(!lc.running());
    me.borrow_mut().take();
}

#[test]
fn start_and_stop_misuse_are_errors_and_it_can_restart() {
    let clock = Clock::new();
    let (lc, times) = recording(&clock);
    assert_eq!(lc.stop(), Err(DeferredError::NotRunning));
    lc.start(secs(1.0), false).unwrap();
    assert_eq!(
        lc.start(secs(1.0), false).map(|_| ()),
        Err(DeferredError::AlreadyRunning)
    );
    lc.stop().unwrap();
    lc.start(secs(0.5), true).unwrap();
    assert_eq!(lc.interval(), secs(0.5));
    clock.advance(secs(0.5));
    assert_eq!(*times.borrow(), [0.0, 0.5]);
    lc.stop().unwrap();
}

#[test]
fn reset_counts_afresh_from_now() {
    let clock = Clock::new();
    let (lc, times) = recording(&clock);
    lc.start(secs(1.0), false).unwrap();
    clock.advance(secs(0.75));
    lc.reset().unwrap();
    clock.advance(secs(0.75));
    assert!(times.borrow().is_empty());
    clock.advance(secs(0.25));
    assert_eq!(*times.borrow(), [1.75]);
    lc.stop().unwrap();
}

#[test]
fn a_zero_interval_runs_once_per_reactor_turn() {
    // (On the test Clock a zero interval would be due again at once, forever: `advance`
    // runs calls scheduled for "now" by the calls it runs.)
    let reactor = twistor_testing::reactor();
    let runs = Rc::new(Cell::new(0));
    let me: Rc<RefCell<Option<LoopingCall>>> = Rc::new(RefCell::new(None));
    let (r, m) = (runs.clone(), me.clone());
    let lc = LoopingCall::new(reactor.clone(), move || {
        r.set(r.get() + 1);
        if r.get() == 5
            && let Some(lc) = m.borrow_mut().take()
        {
            lc.stop().unwrap();
        }
    });
    *me.borrow_mut() = Some(lc.clone());
    let stop = reactor.clone();
    lc.start(Duration::ZERO, true)
        .unwrap()
        .consume(move |_| stop.stop());
    reactor.run().unwrap();
    assert_eq!(runs.get(), 5);
}

#[test]
fn with_count_reports_the_intervals_that_passed() {
    let clock = Clock::new();
    let counts = Rc::new(RefCell::new(Vec::new()));
    let c = counts.clone();
    let lc = LoopingCall::with_count(clock.clone(), move |n| c.borrow_mut().push(n));
    lc.start(secs(1.0), true).unwrap();
    clock.advance(secs(1.0));
    clock.advance(secs(3.0)); // busy: three boundaries passed
    clock.advance(secs(1.0));
    assert_eq!(*counts.borrow(), [1, 1, 3, 1]);
    lc.stop().unwrap();
}

#[test]
fn with_count_without_now_starts_counting_at_start() {
    let clock = Clock::new();
    let counts = Rc::new(RefCell::new(Vec::new()));
    let c = counts.clone();
    let lc = LoopingCall::with_count(clock.clone(), move |n| c.borrow_mut().push(n));
    lc.start(secs(2.0), false).unwrap();
    clock.advance(secs(5.0));
    clock.advance(secs(1.0));
    assert_eq!(*counts.borrow(), [2, 1]);
    lc.stop().unwrap();
}

#[test]
fn with_count_counts_across_a_slow_deferred() {
    let clock = Clock::new();
    let counts = Rc::new(RefCell::new(Vec::new()));
    let pending: Rc<RefCell<Option<Deferred<()>>>> = Rc::new(RefCell::new(None));
    let (c, p) = (counts.clone(), pending.clone());
    let lc = LoopingCall::with_count(clock.clone(), move |n| {
        c.borrow_mut().push(n);
        let d = Deferred::new();
        *p.borrow_mut() = Some(d.clone());
        d
    });
    lc.start(secs(1.0), true).unwrap();
    clock.advance(secs(2.5));
    let slow = pending.borrow_mut().take().unwrap();
    slow.callback(()).unwrap();
    clock.advance(secs(0.5));
    assert_eq!(*counts.borrow(), [1, 3]);
    lc.stop().unwrap();
    let last = pending.borrow_mut().take().unwrap();
    last.callback(()).unwrap();
}
