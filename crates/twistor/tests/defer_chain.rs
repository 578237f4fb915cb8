//! Twisted's documented Deferred behaviour, case by case: the callback chain, switching
//! between the callback and errback paths, late callbacks, firing twice, nested Deferreds.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use twistor::defer::{Deferred, DeferredError, Failure, fail, succeed};

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(log: &Log, entry: impl Into<String>) {
    log.borrow_mut().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

#[test]
fn callbacks_run_in_order_each_getting_the_previous_result() {
    let d = Deferred::new();
    d.add_callback(|s: String| Ok(s + " world"))
        .add_callback(|s| Ok(s.to_uppercase()));
    assert!(!d.called());
    d.callback("hello".to_string()).unwrap();
    assert!(d.called());
    assert_eq!(d.try_result().unwrap().unwrap(), "HELLO WORLD");
}

#[test]
fn a_failing_callback_switches_to_the_errback_path_and_a_recovering_errback_back() {
    let log = log();
    let d: Deferred<i32> = Deferred::new();
    let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
    d.add_callback(move |n| {
        push(&l1, format!("cb1 {n}"));
        Err(io::Error::other("boom"))?
    })
    .add_callback(move |n| {
        push(&l2, format!("cb2 {n} (skipped)"));
        Ok(n)
    })
    .add_errback(move |f| {
        push(&l3, format!("eb1 {f}"));
        Ok(7)
    })
    .add_errback(move |f| {
        push(&l4, format!("eb2 {f} (skipped)"));
        Err(f)
    })
    .add_callback(|n| Ok(n * 6));
    d.callback(1).unwrap();
    assert_eq!(entries(&log), ["cb1 1", "eb1 boom"]);
    assert_eq!(d.try_result().unwrap().unwrap(), 42);
}

#[test]
fn errback_can_pass_the_failure_on_and_check_its_type() {
    let d: Deferred<()> = Deferred::new();
    let checked = Rc::new(Cell::new(false));
    let c = checked.clone();
    d.add_errback(|f| Err(f.context("while testing")))
        .add_errback(move |f| {
            c.set(f.check::<io::Error>() && !f.check::<DeferredError>());
            Err(f)
        });
    d.errback(io::Error::new(io::ErrorKind::NotFound, "gone"))
        .unwrap();
    assert!(checked.get());
    let failure = d.try_result().unwrap().unwrap_err();
    assert_eq!(failure.to_string(), "while testing: gone");
    assert_eq!(
        failure.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn add_callbacks_runs_exactly_one_and_its_errback_does_not_see_its_callbacks_failure() {
    let log = log();
    let d: Deferred<i32> = Deferred::new();
    let (l1, l2) = (log.clone(), log.clone());
    d.add_callbacks(
        move |_| {
            push(&l1, "callback");
            Err(Failure::msg("from callback"))
        },
        move |f| {
            push(&l2, format!("errback {f}"));
            Ok(0)
        },
    );
    d.callback(1).unwrap();
    assert_eq!(entries(&log), ["callback"]);
    assert_eq!(
        d.try_result().unwrap().unwrap_err().to_string(),
        "from callback"
    );
}

#[test]
fn add_both_sees_values_and_failures() {
    let ok = succeed(2);
    ok.add_both(|r| r.map(|n| n + 1));
    assert_eq!(ok.try_result().unwrap().unwrap(), 3);

    let bad: Deferred<i32> = fail(Failure::msg("nope"));
    bad.add_both(|r| match r {
        Ok(n) => Ok(n),
        Err(f) => Ok(f.to_string().len() as i32),
    });
    assert_eq!(bad.try_result().unwrap().unwrap(), 4);
}

#[test]
fn callbacks_added_after_firing_run_at_once() {
    let d = Deferred::new();
    d.callback(10).unwrap();
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    d.add_callback(move |n| {
        s.set(n);
        Ok(n + 1)
    });
    assert_eq!(seen.get(), 10, "ran inside add_callback");
    d.add_callback(|n| Ok(n * 2));
    assert_eq!(d.try_result().unwrap().unwrap(), 22);
}

#[test]
fn firing_twice_is_an_already_called_error() {
    let d = Deferred::new();
    d.callback(1).unwrap();
    assert_eq!(d.callback(2), Err(DeferredError::AlreadyCalled));
    assert_eq!(
        d.errback(Failure::msg("late")),
        Err(DeferredError::AlreadyCalled)
    );
    assert_eq!(d.try_result().unwrap().unwrap(), 1, "first result kept");

    let e: Deferred<()> = Deferred::new();
    e.errback(Failure::msg("first")).unwrap();
    assert_eq!(e.callback(()), Err(DeferredError::AlreadyCalled));
    e.add_errback(|_| Ok(()));
}

#[test]
fn a_callback_returning_a_deferred_pauses_the_chain_until_it_fires() {
    let log = log();
    let outer = Deferred::new();
    let inner: Deferred<i32> = Deferred::new();
    let inner2 = inner.clone();
    let (l1, l2) = (log.clone(), log.clone());
    outer
        .add_callback_deferred(move |n: i32| {
            push(&l1, format!("returning inner for {n}"));
            inner2.clone()
        })
        .add_callback(move |n| {
            push(&l2, format!("after inner: {n}"));
            Ok(n + 1)
        });
    outer.callback(1).unwrap();
    assert!(outer.called());
    assert!(outer.paused(), "waiting on inner");
    assert_eq!(entries(&log), ["returning inner for 1"]);
    assert!(outer.try_result().is_none());

    inner.callback(41).unwrap();
    assert!(!outer.paused());
    assert_eq!(entries(&log), ["returning inner for 1", "after inner: 41"]);
    assert_eq!(outer.try_result().unwrap().unwrap(), 42);
}

#[test]
fn an_already_fired_inner_deferred_is_used_at_once() {
    let d = succeed(1);
    d.add_callback_deferred(|n| succeed(n + 1))
        .add_callback_deferred(|n| succeed(n * 10));
    assert_eq!(d.try_result().unwrap().unwrap(), 20);
}

#[test]
fn an_inner_failure_switches_the_outer_chain_to_errbacks() {
    let outer: Deferred<i32> = Deferred::new();
    let inner: Deferred<i32> = Deferred::new();
    let i = inner.clone();
    outer
        .add_callback_deferred(move |_| i.clone())
        .add_callback(|_| panic!("skipped"))
        .add_errback(|f| Ok(f.to_string().len() as i32));
    outer.callback(0).unwrap();
    inner.errback(Failure::msg("inner broke")).unwrap();
    assert_eq!(outer.try_result().unwrap().unwrap(), 11);
}

#[test]
fn errbacks_may_return_deferreds_too() {
    let d: Deferred<&str> = fail(Failure::msg("x"));
    let retry = Deferred::new();
    let r = retry.clone();
    d.add_errback_deferred(move |_| r.clone());
    assert!(d.paused());
    retry.callback("second try").unwrap();
    assert_eq!(d.try_result().unwrap().unwrap(), "second try");
}

#[test]
fn the_inner_result_is_handed_to_the_outer_chain() {
    let inner = Deferred::new();
    let outer = succeed(());
    let i = inner.clone();
    outer.add_callback_deferred(move |()| i.clone());
    inner.callback(()).unwrap();
    assert!(outer.try_result().unwrap().is_ok());
    // As in Twisted (where the inner Deferred's result becomes None), nothing is left.
    let failure = inner.try_result();
    assert!(failure.is_none(), "result moved out");
    inner.add_errback(|f| {
        assert!(matches!(
            f.downcast_ref(),
            Some(DeferredError::ResultConsumed)
        ));
        Ok(())
    });
}

#[test]
fn a_callback_returning_its_own_deferred_is_an_error() {
    let d: Deferred<i32> = Deferred::new();
    let me = d.clone();
    d.add_callback_deferred(move |_| me.clone());
    d.callback(1).unwrap();
    let failure = d.try_result().unwrap().unwrap_err();
    assert!(matches!(
        failure.downcast_ref(),
        Some(DeferredError::ChainedToItself)
    ));
}

#[test]
fn callbacks_may_add_callbacks_to_their_own_deferred() {
    let log = log();
    let d = Deferred::new();
    let (me, l) = (d.clone(), log.clone());
    d.add_callback(move |n: i32| {
        push(&l, "first");
        let l2 = l.clone();
        me.add_callback(move |n| {
            push(&l2, "added by first");
            Ok(n * 100)
        });
        Ok(n + 1)
    });
    let l = log.clone();
    d.add_callback(move |n| {
        push(&l, "second");
        Ok(n)
    });
    d.callback(1).unwrap();
    assert_eq!(entries(&log), ["first", "second", "added by first"]);
    assert_eq!(d.try_result().unwrap().unwrap(), 200);
}

#[test]
fn callbacks_may_fire_and_inspect_other_deferreds_and_themselves() {
    let a = Deferred::new();
    let b = Deferred::new();
    let b2 = b.clone();
    let a2 = a.clone();
    a.add_callback(move |n: i32| {
        b2.callback(n * 2).unwrap();
        // Its own state while running: fired, not finished, no result to take.
        assert!(a2.called());
        assert!(!a2.is_finished());
        assert!(a2.try_result().is_none());
        assert_eq!(a2.callback(0), Err(DeferredError::AlreadyCalled));
        a2.cancel(); // fired and not waiting: nothing to do
        Ok(n)
    });
    a.callback(4).unwrap();
    assert_eq!(b.try_result().unwrap().unwrap(), 8);
    assert_eq!(a.try_result().unwrap().unwrap(), 4);
}

#[test]
fn a_panicking_callback_becomes_a_failure() {
    let d = succeed(1);
    d.add_callback(|_| panic!("kaboom"))
        .add_callback(|_| unreachable!());
    let failure = d.try_result().unwrap().unwrap_err();
    assert_eq!(
        failure.downcast_ref::<DeferredError>(),
        Some(&DeferredError::Panicked("kaboom".into()))
    );
    // Panics in queued links are caught too, and the chain goes on.
    let e: Deferred<i32> = Deferred::new();
    e.add_callback(|_| panic!("queued"))
        .add_errback(|f| Ok(f.to_string().len() as i32));
    e.callback(0).unwrap();
    assert_eq!(e.try_result().unwrap().unwrap(), 25); // "callback panicked: queued"
}

#[test]
fn map_and_then_change_the_type_and_move_the_result() {
    let d: Deferred<u32> = Deferred::new();
    let text = d.map(|n| n.to_string());
    let len = text.and_then(|s| Ok(s.len()));
    let both = len.then(|r| Ok::<_, Failure>(r.is_ok()));
    d.callback(12345).unwrap();
    assert!(both.try_result().unwrap().unwrap());

    let e: Deferred<u32> = Deferred::new();
    let mapped = e.map(|n| n + 1);
    e.errback(Failure::msg("bad")).unwrap();
    assert_eq!(mapped.try_result().unwrap().unwrap_err().to_string(), "bad");
}

#[test]
fn and_then_deferred_waits_for_the_returned_deferred() {
    let d = succeed(3);
    let later: Deferred<String> = Deferred::new();
    let l = later.clone();
    let out = d.and_then_deferred(move |n| {
        let l = l.clone();
        l.add_callback(move |s| Ok(format!("{s}{n}")));
        l
    });
    // Fired, but waiting on the inner Deferred (Twisted: called, result is a Deferred).
    assert!(out.called() && out.paused() && !out.is_finished());
    later.callback("n=".into()).unwrap();
    assert_eq!(out.try_result().unwrap().unwrap(), "n=3");
}

#[test]
fn consume_takes_the_result_and_later_links_learn_it_is_gone() {
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    let d: Deferred<i32> = fail(Failure::msg("handled here"));
    d.consume(move |r| *g.borrow_mut() = Some(r.is_err()));
    assert_eq!(*got.borrow(), Some(true));
    let seen = Rc::new(Cell::new(false));
    let s = seen.clone();
    d.add_errback(move |f| {
        s.set(f.check::<DeferredError>());
        Ok(0)
    });
    assert!(seen.get());
}

#[test]
fn chain_deferred_forwards_the_result() {
    let a = Deferred::new();
    let b = Deferred::new();
    a.add_callback(|n: i32| Ok(n + 1)).chain_deferred(&b);
    b.add_callback(|n| Ok(n * 2));
    a.callback(1).unwrap();
    assert_eq!(b.try_result().unwrap().unwrap(), 4);

    // Into a Deferred that has already fired: an AlreadyCalled failure on the sender.
    let c = succeed(1);
    let fired = succeed(2);
    c.chain_deferred(&fired);
    let failure = c.try_result().unwrap().unwrap_err();
    assert!(matches!(
        failure.downcast_ref(),
        Some(DeferredError::AlreadyCalled)
    ));
}

#[test]
fn pause_holds_the_chain_until_unpause() {
    let d = Deferred::new();
    d.pause();
    d.callback(1).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    d.add_callback(move |n| {
        r.set(true);
        Ok(n)
    });
    assert!(!ran.get());
    d.pause();
    d.unpause();
    assert!(!ran.get(), "pauses nest");
    d.unpause();
    assert!(ran.get());
}

#[test]
fn a_callback_may_pause_its_own_deferred() {
    let d = Deferred::new();
    let me = d.clone();
    d.add_callback(move |n: i32| {
        me.pause();
        Ok(n + 1)
    })
    .add_callback(|n| Ok(n * 10));
    d.callback(1).unwrap();
    assert!(d.try_result().is_none());
    d.unpause();
    assert_eq!(d.try_result().unwrap().unwrap(), 20);
}

// ---- depth: nothing here may grow the thread's stack with the chain -------------------

const DEPTH: usize = 100_000;

#[test]
fn a_hundred_thousand_nested_deferreds_fire_without_recursion() {
    // d[0] waits on d[1], which waits on d[2]...; the innermost fires last.
    let ds: Vec<Deferred<u64>> = (0..=DEPTH).map(|_| Deferred::new()).collect();
    for i in 0..DEPTH {
        let next = ds[i + 1].clone();
        ds[i]
            .add_callback_deferred(move |_| next)
            .add_callback(|n| Ok(n + 1));
    }
    for d in &ds[..DEPTH] {
        d.callback(0).unwrap();
    }
    assert!(ds[0].paused());
    ds[DEPTH].callback(0).unwrap();
    assert_eq!(ds[0].try_result().unwrap().unwrap(), DEPTH as u64);
}

#[test]
fn a_hundred_thousand_links_returning_pending_deferreds_fire_in_turn() {
    // One Deferred, 100,000 callbacks that each return a not-yet-fired Deferred; firing
    // them from the last created to the first unwinds the whole chain at once.
    let d = Deferred::new();
    let inners: Rc<RefCell<Vec<Deferred<u64>>>> = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..DEPTH {
        let inners = inners.clone();
        d.add_callback_deferred(move |n: u64| {
            let inner = Deferred::new();
            inner.add_callback(move |m: u64| Ok(m + n));
            inners.borrow_mut().push(inner.clone());
            inner
        });
    }
    d.callback(0).unwrap();
    let mut fired = 0;
    loop {
        let next = inners.borrow_mut().pop();
        let Some(inner) = next else { break };
        inner.callback(1).unwrap();
        fired += 1;
    }
    assert_eq!(fired, DEPTH);
    assert_eq!(d.try_result().unwrap().unwrap(), DEPTH as u64);
}

#[test]
fn a_hundred_thousand_maps_fire_without_recursion() {
    let first: Deferred<u64> = Deferred::new();
    let mut last = first.clone();
    for _ in 0..DEPTH {
        last = last.map(|n| n + 1);
    }
    first.callback(0).unwrap();
    assert_eq!(last.try_result().unwrap().unwrap(), DEPTH as u64);
}

#[test]
fn a_hundred_thousand_pending_nested_deferreds_drop_without_recursion() {
    let ds: Vec<Deferred<u64>> = (0..=DEPTH).map(|_| Deferred::new()).collect();
    for i in 0..DEPTH {
        let next = ds[i + 1].clone();
        ds[i].add_callback_deferred(move |_| next);
        ds[i].callback(0).unwrap();
    }
    // Only the innermost is left; it owns the whole chain through its links.
    let innermost = ds[DEPTH].clone();
    drop(ds);
    drop(innermost);

    let mut chain = Deferred::<u64>::new();
    let head = chain.clone();
    for _ in 0..DEPTH {
        chain = chain.map(|n| n);
    }
    drop(chain);
    drop(head);
}

#[test]
fn debug_output_names_the_state() {
    let d: Deferred<i32> = Deferred::new();
    assert!(format!("{d:?}").contains("pending"));
    d.callback(1).unwrap();
    assert!(format!("{d:?}").contains("succeeded"));
}
