//! DeferredLock, DeferredSemaphore and DeferredQueue, with cancellable waits.

use std::cell::RefCell;
use std::rc::Rc;

use twistor::defer::{
    Deferred, DeferredError, DeferredLock, DeferredQueue, DeferredSemaphore, Failure, succeed,
};

#[test]
fn a_lock_serves_waiters_first_come_first_served() {
    let lock = DeferredLock::new();
    let order = Rc::new(RefCell::new(Vec::new()));
    let mut acquisitions = Vec::new();
    for i in 0..3 {
        let d = lock.acquire();
        let o = order.clone();
        d.add_callback(move |()| {
            o.borrow_mut().push(i);
            Ok(())
        });
        acquisitions.push(d);
    }
    assert!(lock.locked());
    assert_eq!(*order.borrow(), [0]);
    assert_eq!(lock.waiting(), 2);
    lock.release().unwrap();
    assert_eq!(*order.borrow(), [0, 1]);
    lock.release().unwrap();
    lock.release().unwrap();
    assert_eq!(*order.borrow(), [0, 1, 2]);
    assert!(!lock.locked());
    assert_eq!(lock.release(), Err(DeferredError::NotAcquired));
}

#[test]
fn cancelling_a_waiting_acquire_takes_it_out_of_line() {
    let lock = DeferredLock::new();
    let _held = lock.acquire();
    let second = lock.acquire();
    let third = lock.acquire();
    second.cancel();
    assert!(second.try_result().unwrap().unwrap_err().is_cancelled());
    assert_eq!(lock.waiting(), 1);
    lock.release().unwrap();
    assert!(third.try_result().unwrap().is_ok());
    assert!(lock.locked(), "third holds it now");
}

#[test]
fn run_holds_the_lock_until_the_returned_deferred_fires() {
    let lock = DeferredLock::new();
    let work = Deferred::new();
    let w = work.clone();
    let first = lock.run(move || w);
    let second = lock.run(|| succeed("second"));
    assert!(lock.locked());
    assert!(!second.called());
    work.callback("first").unwrap();
    assert_eq!(first.try_result().unwrap().unwrap(), "first");
    assert_eq!(second.try_result().unwrap().unwrap(), "second");
    assert!(!lock.locked());
}

#[test]
fn run_releases_on_failure_and_on_panic() {
    let lock = DeferredLock::new();
    let failed = lock.run(|| Deferred::<()>::failed(Failure::msg("bad")));
    assert!(failed.try_result().unwrap().is_err());
    assert!(!lock.locked());
    let panicked = lock.run(|| -> Deferred<()> { panic!("worse") });
    assert!(matches!(
        panicked.try_result().unwrap().unwrap_err().downcast_ref(),
        Some(DeferredError::Panicked(_))
    ));
    assert!(!lock.locked());
}

#[test]
fn a_semaphore_admits_up_to_its_limit() {
    let sem = DeferredSemaphore::new(2);
    let a = sem.acquire();
    let b = sem.acquire();
    let c = sem.acquire();
    assert!(a.called() && b.called() && !c.called());
    assert_eq!((sem.tokens(), sem.waiting(), sem.limit()), (0, 1, 2));
    sem.release().unwrap();
    assert!(c.called());
    sem.release().unwrap();
    sem.release().unwrap();
    assert_eq!(sem.tokens(), 2);
    assert_eq!(sem.release(), Err(DeferredError::NotAcquired));
}

#[test]
fn a_semaphore_limits_concurrent_runs() {
    let sem = DeferredSemaphore::new(2);
    let running = Rc::new(RefCell::new(0usize));
    let peak = Rc::new(RefCell::new(0usize));
    let mut jobs = Vec::new();
    let mut results = Vec::new();
    for i in 0..5 {
        let job = Deferred::new();
        let (j, r, p) = (job.clone(), running.clone(), peak.clone());
        let result = sem.run(move || {
            *r.borrow_mut() += 1;
            let now = *r.borrow();
            let mut peak = p.borrow_mut();
            *peak = (*peak).max(now);
            let r = r.clone();
            j.add_callback(move |v| {
                *r.borrow_mut() -= 1;
                Ok(v)
            });
            j
        });
        jobs.push(job);
        results.push((i, result));
    }
    for job in &jobs {
        job.callback(()).unwrap_or(());
    }
    assert_eq!(*peak.borrow(), 2);
    assert!(results.iter().all(|(_, r)| r.try_result().unwrap().is_ok()));
}

#[test]
fn a_queue_hands_items_to_waiting_getters_in_order() {
    let queue = DeferredQueue::new();
    let first = queue.get().unwrap();
    let second = queue.get().unwrap();
    assert_eq!(queue.waiting(), 2);
    queue.put(1).unwrap();
    queue.put(2).unwrap();
    queue.put(3).unwrap();
    assert_eq!(first.try_result().unwrap().unwrap(), 1);
    assert_eq!(second.try_result().unwrap().unwrap(), 2);
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.get().unwrap().try_result().unwrap().unwrap(), 3);
    assert!(queue.is_empty());
}

#[test]
fn a_full_queue_overflows_and_a_long_backlog_underflows() {
    let queue = DeferredQueue::with_limits(Some(2), Some(1));
    queue.put("a").unwrap();
    queue.put("b").unwrap();
    assert!(queue.is_full());
    assert_eq!(queue.put("c"), Err(DeferredError::QueueOverflow));
    assert_eq!(queue.len(), 2);

    let empty: DeferredQueue<&str> = DeferredQueue::with_limits(None, Some(1));
    let _waiting = empty.get().unwrap();
    assert_eq!(empty.get().map(|_| ()), Err(DeferredError::QueueUnderflow));
}

#[test]
fn cancelling_a_get_leaves_the_item_for_the_next_getter() {
    let queue = DeferredQueue::new();
    let cancelled = queue.get().unwrap();
    let next = queue.get().unwrap();
    cancelled.cancel();
    assert!(cancelled.try_result().unwrap().unwrap_err().is_cancelled());
    assert_eq!(queue.waiting(), 1);
    queue.put("item").unwrap();
    assert_eq!(next.try_result().unwrap().unwrap(), "item");
}

#[test]
fn a_getter_may_put_from_its_callback() {
    let queue = DeferredQueue::new();
    let q = queue.clone();
    let got = queue.get().unwrap();
    got.add_callback(move |n: i32| {
        q.put(n + 1).unwrap();
        Ok(n)
    });
    queue.put(1).unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.get().unwrap().try_result().unwrap().unwrap(), 2);
}
