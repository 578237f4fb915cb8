//! Cancelling Deferreds (with and without cancellers, forwarded to the Deferred waited
//! on) and timeouts, on the deterministic test clock.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use twistor::defer::{Deferred, DeferredError, Failure, succeed};
use twistor_testing::Clock;

fn error_of<T>(d: &Deferred<T>) -> DeferredError {
    let failure = d.try_result().expect("finished").err().expect("failed");
    failure
        .downcast_ref::<DeferredError>()
        .cloned()
        .unwrap_or_else(|| panic!("not a DeferredError: {failure}"))
}

#[test]
fn cancelling_without_a_canceller_fails_with_cancelled_and_ignores_the_source() {
    let d: Deferred<i32> = Deferred::new();
    d.cancel();
    assert_eq!(error_of(&d), DeferredError::Cancelled);
    // The source did not know; its late firing is silently dropped, once.
    assert_eq!(d.callback(1), Ok(()));
    assert_eq!(d.callback(2), Err(DeferredError::AlreadyCalled));
}

#[test]
fn a_canceller_that_fires_the_deferred_decides_the_result() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let d: Deferred<&str> = Deferred::with_canceller(move |d| {
        c.set(c.get() + 1);
        d.callback("stopped politely").unwrap();
    });
    d.cancel();
    d.cancel();
    assert_eq!(calls.get(), 1);
    assert_eq!(d.try_result().unwrap().unwrap(), "stopped politely");
}

#[test]
fn a_canceller_that_does_not_fire_leads_to_cancelled_and_late_firing_is_an_error() {
    let called = Rc::new(Cell::new(false));
    let c = called.clone();
    let d: Deferred<i32> = Deferred::with_canceller(move |_| c.set(true));
    d.cancel();
    assert!(called.get());
    // Unlike the no-canceller case, the source was told; firing now is a bug.
    assert_eq!(d.callback(1), Err(DeferredError::AlreadyCalled));
    assert_eq!(error_of(&d), DeferredError::Cancelled);
}

#[test]
fn cancelling_a_fired_deferred_does_nothing() {
    let cancelled = Rc::new(Cell::new(false));
    let c = cancelled.clone();
    let d = Deferred::with_canceller(move |_| c.set(true));
    d.callback(5).unwrap();
    d.cancel();
    assert!(!cancelled.get());
    assert_eq!(d.try_result().unwrap().unwrap(), 5);
}

#[test]
fn cancelling_a_deferred_waiting_on_another_cancels_the_inner_one() {
    let inner_cancelled = Rc::new(Cell::new(false));
    let c = inner_cancelled.clone();
    let inner: Deferred<i32> = Deferred::with_canceller(move |_| c.set(true));
    let outer = succeed(0);
    let i = inner.clone();
    outer.add_callback_deferred(move |_| i.clone());
    assert!(outer.paused());
    outer.cancel();
    assert!(inner_cancelled.get());
    assert!(!outer.paused());
    assert_eq!(error_of(&outer), DeferredError::Cancelled);
}

#[test]
fn cancel_forwarding_follows_a_chain_of_waits() {
    let innermost_cancelled = Rc::new(Cell::new(false));
    let c = innermost_cancelled.clone();
    let innermost: Deferred<i32> = Deferred::with_canceller(move |_| c.set(true));
    let middle = succeed(0);
    let i = innermost.clone();
    middle.add_callback_deferred(move |_| i.clone());
    let outer = succeed(0);
    let m = middle.clone();
    outer.add_callback_deferred(move |_| m.clone());
    outer.cancel();
    assert!(innermost_cancelled.get());
    assert_eq!(error_of(&outer), DeferredError::Cancelled);
}

#[test]
fn cancelling_a_mapped_deferred_cancels_its_source() {
    let source_cancelled = Rc::new(Cell::new(false));
    let c = source_cancelled.clone();
    let source: Deferred<i32> = Deferred::with_canceller(move |_| c.set(true));
    let mapped = source.map(|n| n.to_string());
    mapped.cancel();
    assert!(source_cancelled.get());
    assert_eq!(error_of(&mapped), DeferredError::Cancelled);
}

#[test]
fn a_timeout_fails_with_timed_out_after_the_time_has_passed() {
    let clock = Clock::new();
    let cancelled = Rc::new(Cell::new(false));
    let c = cancelled.clone();
    let d: Deferred<i32> = Deferred::with_canceller(move |_| c.set(true));
    let seen_before = Rc::new(Cell::new(false));
    let s = seen_before.clone();
    d.add_errback(move |f| {
        // Links added before the timeout see the cancellation itself.
        s.set(f.is_cancelled());
        Err(f)
    });
    d.add_timeout(Duration::from_secs(5), &clock);
    clock.advance(Duration::from_secs(4));
    assert!(!d.called());
    clock.advance(Duration::from_secs(1));
    assert!(cancelled.get());
    assert!(seen_before.get());
    assert_eq!(
        error_of(&d),
        DeferredError::TimedOut(Duration::from_secs(5))
    );
}

#[test]
fn firing_in_time_cancels_the_timer() {
    let clock = Clock::new();
    let d: Deferred<i32> = Deferred::new();
    d.add_timeout(Duration::from_secs(5), &clock);
    assert_eq!(clock.delayed_calls().len(), 1);
    clock.advance(Duration::from_secs(1));
    d.callback(3).unwrap();
    assert!(clock.delayed_calls().is_empty());
    clock.advance(Duration::from_secs(10));
    assert_eq!(d.try_result().unwrap().unwrap(), 3);
}

#[test]
fn a_failure_in_time_is_not_turned_into_a_timeout() {
    let clock = Clock::new();
    let d: Deferred<i32> = Deferred::new();
    d.add_timeout(Duration::from_secs(5), &clock);
    d.errback(Failure::msg("real error")).unwrap();
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        d.try_result().unwrap().unwrap_err().to_string(),
        "real error"
    );
}

#[test]
fn a_timeout_on_a_deferred_waiting_on_another_cancels_the_inner_one() {
    let clock = Clock::new();
    let inner_cancelled = Rc::new(Cell::new(false));
    let c = inner_cancelled.clone();
    let inner: Deferred<i32> = Deferred::with_canceller(move |_| c.set(true));
    let outer = Deferred::new();
    let i = inner.clone();
    outer.add_callback_deferred(move |_: i32| i.clone());
    outer.add_timeout(Duration::from_millis(250), &clock);
    outer.callback(0).unwrap();
    clock.advance(Duration::from_millis(250));
    assert!(inner_cancelled.get());
    assert_eq!(
        error_of(&outer),
        DeferredError::TimedOut(Duration::from_millis(250))
    );
}

#[test]
fn timeouts_work_through_the_clock_trait_object() {
    let clock = Clock::new();
    let time = clock.as_time();
    let d: Deferred<()> = Deferred::new();
    d.add_timeout(Duration::from_millis(10), &*time);
    clock.advance(Duration::from_millis(10));
    assert_eq!(
        error_of(&d),
        DeferredError::TimedOut(Duration::from_millis(10))
    );
}
