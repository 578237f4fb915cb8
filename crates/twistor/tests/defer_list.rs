//! DeferredList and its flags, gather_results and race.

use std::cell::Cell;
use std::rc::Rc;

use twistor::defer::{
    Deferred, DeferredError, DeferredList, Failure, FailureGroup, FirstError, ListOutcome, fail,
    gather_results, race, succeed,
};

fn cancel_counter() -> (Rc<Cell<u32>>, impl Fn() -> Deferred<i32>) {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let make = move || {
        let c = c.clone();
        Deferred::with_canceller(move |_| c.set(c.get() + 1))
    };
    (count, make)
}

fn all<T>(d: &Deferred<ListOutcome<T>>) -> Vec<Result<T, Failure>> {
    match d.try_result().expect("fired").expect("succeeded") {
        ListOutcome::All(results) => results,
        ListOutcome::First { .. } => panic!("expected all results"),
    }
}

#[test]
fn waits_for_all_and_reports_every_result_in_list_order() {
    let a = Deferred::new();
    let b = Deferred::new();
    let c = Deferred::new();
    let list = DeferredList::new([a.clone(), b.clone(), c.clone()]).into_deferred();
    c.callback(3).unwrap();
    a.callback(1).unwrap();
    assert!(!list.called());
    b.errback(Failure::msg("b failed")).unwrap();
    let results = all(&list);
    assert_eq!(results.len(), 3);
    assert_eq!(*results[0].as_ref().unwrap(), 1);
    assert_eq!(results[1].as_ref().unwrap_err().to_string(), "b failed");
    assert_eq!(*results[2].as_ref().unwrap(), 3);
    // Without consume_errors the failure stays on b's own chain too.
    let still_there = Rc::new(Cell::new(false));
    let s = still_there.clone();
    b.add_errback(move |_| {
        s.set(true);
        Ok(0)
    });
    assert!(still_there.get());
}

#[test]
fn consume_errors_takes_failures_off_their_chains() {
    let b: Deferred<i32> = Deferred::new();
    let list = DeferredList::new([succeed(1), b.clone()])
        .consume_errors(true)
        .into_deferred();
    b.errback(Failure::msg("eaten")).unwrap();
    assert!(all(&list)[1].is_err());
    let left = Rc::new(Cell::new(false));
    let l = left.clone();
    b.add_errback(move |f| {
        l.set(matches!(
            f.downcast_ref(),
            Some(DeferredError::ResultConsumed)
        ));
        Ok(0)
    });
    assert!(left.get(), "b's failure was consumed by the list");
}

#[test]
fn fire_on_one_callback_fires_with_the_first_value_and_its_index() {
    let a: Deferred<&str> = Deferred::new();
    let b = Deferred::new();
    let list = DeferredList::new([a.clone(), b.clone()])
        .fire_on_one_callback(true)
        .into_deferred();
    a.errback(Failure::msg("a failed")).unwrap();
    assert!(!list.called());
    b.callback("b won").unwrap();
    match list.try_result().unwrap().unwrap() {
        ListOutcome::First { index, value } => assert_eq!((index, value), (1, "b won")),
        ListOutcome::All(_) => panic!("expected the first value"),
    }
    a.add_errback(|_| Ok("handled"));
}

#[test]
fn fire_on_one_callback_with_every_deferred_failing_reports_them_all() {
    let list = DeferredList::new([fail::<i32>(Failure::msg("x")), fail(Failure::msg("y"))])
        .fire_on_one_callback(true)
        .consume_errors(true)
        .into_deferred();
    let results = all(&list);
    assert!(results.iter().all(Result::is_err));
}

#[test]
fn a_value_arriving_after_the_list_fired_stays_on_its_deferred() {
    let a = Deferred::new();
    let b = Deferred::new();
    let list = DeferredList::new([a.clone(), b.clone()])
        .fire_on_one_callback(true)
        .into_deferred();
    a.callback(1).unwrap();
    assert!(list.called());
    b.callback(2).unwrap();
    assert_eq!(b.try_result().unwrap().unwrap(), 2);
}

#[test]
fn fire_on_one_errback_fails_with_first_error() {
    let a = Deferred::new();
    let b: Deferred<i32> = Deferred::new();
    let list = DeferredList::new([a.clone(), b.clone()])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .into_deferred();
    a.callback(1).unwrap();
    b.errback(Failure::msg("second one broke")).unwrap();
    let failure = list.try_result().unwrap().unwrap_err();
    let first = failure.downcast_ref::<FirstError>().expect("a FirstError");
    assert_eq!(first.index, 1);
    assert_eq!(first.failure.to_string(), "second one broke");
    assert_eq!(failure.to_string(), "Deferred #1 failed: second one broke");
}

#[test]
fn an_empty_list_fires_at_once_with_no_results() {
    let list = DeferredList::<i32>::new([]).into_deferred();
    assert!(all(&list).is_empty());
    let never = DeferredList::<i32>::new([])
        .fire_on_one_callback(true)
        .into_deferred();
    assert!(!never.called());
}

#[test]
fn cancelling_the_list_cancels_every_deferred_in_it() {
    let (count, make) = cancel_counter();
    let ds = [make(), make(), make()];
    let list = DeferredList::new(ds.clone())
        .consume_errors(true)
        .into_deferred();
    list.cancel();
    assert_eq!(count.get(), 3);
    assert!(
        all(&list)
            .iter()
            .all(|r| r.as_ref().unwrap_err().is_cancelled())
    );
}

#[test]
fn gather_results_collects_values_in_order() {
    let a = Deferred::new();
    let b = Deferred::new();
    let gathered = gather_results([a.clone(), b.clone(), succeed(3)], false);
    b.callback(2).unwrap();
    a.callback(1).unwrap();
    assert_eq!(gathered.try_result().unwrap().unwrap(), [1, 2, 3]);
}

#[test]
fn gather_results_fails_with_the_first_failure() {
    let a: Deferred<i32> = Deferred::new();
    let gathered = gather_results([a.clone(), Deferred::new()], true);
    a.errback(Failure::msg("nope")).unwrap();
    let failure = gathered.try_result().unwrap().unwrap_err();
    assert_eq!(failure.downcast_ref::<FirstError>().unwrap().index, 0);
    assert!(failure.to_string().ends_with("nope"));
}

#[test]
fn race_fires_with_the_first_success_and_cancels_the_rest() {
    let (count, make) = cancel_counter();
    let (a, b, c) = (make(), make(), make());
    let raced = race([a.clone(), b.clone(), c.clone()]);
    a.errback(Failure::msg("a lost early")).unwrap();
    assert!(!raced.called());
    b.callback(20).unwrap();
    assert_eq!(raced.try_result().unwrap().unwrap(), (1, 20));
    assert_eq!(
        count.get(),
        1,
        "only c was still pending, and got cancelled"
    );
    assert!(c.called());
}

#[test]
fn race_fails_with_every_failure_when_all_fail() {
    let a: Deferred<()> = Deferred::new();
    let b = Deferred::new();
    let raced = race([a.clone(), b.clone()]);
    b.errback(Failure::msg("b")).unwrap();
    a.errback(Failure::msg("a")).unwrap();
    let failure = raced.try_result().unwrap().unwrap_err();
    let group = failure
        .downcast_ref::<FailureGroup>()
        .expect("a FailureGroup");
    let texts: Vec<String> = group.failures.iter().map(ToString::to_string).collect();
    assert_eq!(texts, ["a", "b"], "in list order");

    let empty = race(Vec::<Deferred<()>>::new());
    assert!(
        empty
            .try_result()
            .unwrap()
            .unwrap_err()
            .check::<FailureGroup>()
    );
}

#[test]
fn cancelling_a_race_cancels_every_contender() {
    let (count, make) = cancel_counter();
    // Whoever will fire the contenders holds them (the race itself holds them weakly).
    let contenders = [make(), make()];
    let raced = race(contenders.clone());
    raced.cancel();
    assert_eq!(count.get(), 2);
    assert!(
        raced
            .try_result()
            .unwrap()
            .unwrap_err()
            .check::<FailureGroup>()
    );
}
