//! Reactor lifecycle: running again, several reactors, threads, triggers, timers, signals.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use twistor::reactor::{Phase, SystemEvent};
use twistor::{Error, Reactor};

type Log = Rc<RefCell<Vec<String>>>;

fn push(log: &Log, s: &str) {
    log.borrow_mut().push(s.to_string());
}

#[test]
fn a_stopped_reactor_runs_again() {
    let reactor = Reactor::new().unwrap();
    let runs = Rc::new(Cell::new(0));
    for _ in 0..3 {
        let (r, n) = (reactor.clone(), runs.clone());
        reactor.call_when_running(move || {
            n.set(n.get() + 1);
            r.stop();
        });
        reactor.run().unwrap();
        assert!(!reactor.running());
    }
    assert_eq!(runs.get(), 3);
}

#[test]
fn iterate_turns_the_loop_once_without_run() {
    let reactor = Reactor::new().unwrap();
    let log: Log = Rc::default();
    let l = log.clone();
    reactor.call_soon(move || push(&l, "soon"));
    let l = log.clone();
    reactor.call_when_running(move || push(&l, "running"));
    // Runs what is queued, then polls without waiting.
    reactor.iterate(Duration::ZERO);
    assert_eq!(*log.borrow(), ["soon"], "startup triggers do not run");
    assert!(!reactor.running());
}

#[test]
fn running_twice_at_once_is_an_error() {
    let reactor = Reactor::new().unwrap();
    let r = reactor.clone();
    let result = Rc::new(RefCell::new(None));
    let res = result.clone();
    reactor.call_when_running(move || {
        *res.borrow_mut() = Some(r.run());
        r.stop();
    });
    reactor.run().unwrap();
    assert!(matches!(*result.borrow(), Some(Err(Error::AlreadyRunning))));
}

#[test]
fn several_reactors_on_several_threads() {
    let threads: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                let reactor = Reactor::new().unwrap();
                let hits = Rc::new(Cell::new(0));
                for n in 0..10u64 {
                    let h = hits.clone();
                    reactor.call_later(Duration::from_millis(n), move || h.set(h.get() + 1));
                }
                let r = reactor.clone();
                reactor.call_later(Duration::from_millis(20), move || r.stop());
                reactor.run().unwrap();
                (i, hits.get())
            })
        })
        .collect();
    for t in threads {
        let (_, hits) = t.join().unwrap();
        assert_eq!(hits, 10);
    }
}

#[test]
fn call_from_thread_wakes_the_loop_and_keeps_order() {
    let reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    assert!(handle.is_reactor_thread());
    let worker = thread::spawn(move || {
        assert!(!handle.is_reactor_thread());
        thread::sleep(Duration::from_millis(30));
        for i in 0..100 {
            handle
                .call_from_thread(move |r| {
                    thread_local!(static SEEN: Cell<u32> = const { Cell::new(0) });
                    SEEN.with(|s| {
                        assert_eq!(s.get(), i, "calls run in the order posted");
                        s.set(i + 1);
                    });
                    if i == 99 {
                        r.stop();
                    }
                })
                .unwrap();
        }
        handle
    });
    reactor.run().unwrap();
    let handle = worker.join().unwrap();
    drop(reactor);
    assert!(matches!(
        handle.call_from_thread(|_| {}),
        Err(Error::ReactorNotRunning)
    ));
}

/// A future that completes when `done` is set (and its waker called).
struct Flag {
    done: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Future for Flag {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done.get() {
            Poll::Ready(())
        } else {
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[test]
fn before_shutdown_work_delays_the_rest_of_shutdown() {
    let reactor = Reactor::new().unwrap();
    let log: Log = Rc::default();
    let (l, r) = (log.clone(), reactor.clone());
    reactor.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
        push(&l, "before");
        let done = Rc::new(Cell::new(false));
        let waker: Rc<RefCell<Option<Waker>>> = Rc::default();
        let (d, w, l2) = (done.clone(), waker.clone(), l.clone());
        r.call_later(Duration::from_millis(30), move || {
            push(&l2, "work done");
            d.set(true);
            if let Some(w) = w.borrow_mut().take() {
                w.wake();
            }
        });
        Some(Box::pin(Flag { done, waker }))
    });
    for (phase, name) in [(Phase::During, "during"), (Phase::After, "after")] {
        let l = log.clone();
        reactor.add_system_event_trigger(phase, SystemEvent::Shutdown, move || {
            push(&l, name);
            None
        });
    }
    let l = log.clone();
    reactor.add_system_event_trigger(Phase::Before, SystemEvent::Startup, move || {
        push(&l, "starting");
        None
    });
    let (l, r) = (log.clone(), reactor.clone());
    reactor.call_when_running(move || {
        push(&l, "running");
        r.stop();
    });
    reactor.run().unwrap();
    assert_eq!(
        *log.borrow(),
        [
            "starting",
            "running",
            "before",
            "work done",
            "during",
            "after"
        ]
    );
}

#[test]
fn stop_now_abandons_before_shutdown_work() {
    let reactor = Reactor::new().unwrap();
    let log: Log = Rc::default();
    let (l, r) = (log.clone(), reactor.clone());
    reactor.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
        push(&l, "before");
        // Cut the shutdown on the next turn (as a second SIGTERM would).
        let (l, r2) = (l.clone(), r.clone());
        r.call_soon(move || {
            push(&l, "stop now");
            r2.stop_now();
        });
        // Work that never completes (a grace period for connections that never end).
        Some(Box::pin(std::future::pending::<()>()))
    });
    for (phase, name) in [(Phase::During, "during"), (Phase::After, "after")] {
        let l = log.clone();
        reactor.add_system_event_trigger(phase, SystemEvent::Shutdown, move || {
            push(&l, name);
            None
        });
    }
    // Twice: the second run waits for its before-shutdown work again, until cut again
    // (a cut left over from the first run would skip the wait: no "stop now").
    for _ in 0..2 {
        log.borrow_mut().clear();
        let r = reactor.clone();
        reactor.call_when_running(move || r.stop());
        reactor.run().unwrap();
        assert_eq!(*log.borrow(), ["before", "stop now", "during", "after"]);
    }
}

#[test]
fn triggers_can_be_removed() {
    let reactor = Reactor::new().unwrap();
    let hit = Rc::new(Cell::new(false));
    let h = hit.clone();
    let id = reactor.add_system_event_trigger(Phase::During, SystemEvent::Shutdown, move || {
        h.set(true);
        None
    });
    assert!(reactor.remove_system_event_trigger(id));
    assert!(!reactor.remove_system_event_trigger(id));
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop());
    reactor.run().unwrap();
    assert!(!hit.get());
}

#[test]
fn delayed_calls_on_the_real_clock() {
    let reactor = Reactor::new().unwrap();
    let log: Log = Rc::default();
    let l = log.clone();
    let late = reactor.call_later(Duration::from_millis(40), move || push(&l, "late"));
    let l = log.clone();
    let cancelled = reactor.call_later(Duration::from_millis(10), move || push(&l, "never"));
    let l = log.clone();
    let moved = reactor.call_later(Duration::from_millis(5), move || push(&l, "moved"));
    moved.reset(Duration::from_millis(20)).unwrap();
    let l = log.clone();
    reactor.call_later(Duration::ZERO, move || push(&l, "first"));
    cancelled.cancel().unwrap();
    assert!(matches!(cancelled.cancel(), Err(Error::AlreadyCancelled)));
    let before = reactor.seconds();
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(50), move || r.stop());
    assert_eq!(reactor.delayed_calls().len(), 4);
    reactor.run().unwrap();
    assert_eq!(*log.borrow(), ["first", "moved", "late"]);
    assert!(reactor.seconds() - before >= 0.05);
    assert!(matches!(late.cancel(), Err(Error::AlreadyCalled)));
    assert!(late.called() && !late.active());
}

#[test]
fn a_panicking_timer_is_logged_and_the_loop_goes_on() {
    let reactor = Reactor::new().unwrap();
    reactor.call_later(Duration::ZERO, || panic!("timer bug"));
    let hit = Rc::new(Cell::new(false));
    let (h, r) = (hit.clone(), reactor.clone());
    reactor.call_later(Duration::from_millis(1), move || {
        h.set(true);
        r.stop();
    });
    reactor.run().unwrap();
    assert!(hit.get());
}

#[test]
fn spawned_tasks_run_on_the_loop_and_can_be_aborted() {
    let reactor = Reactor::new().unwrap();
    let log: Log = Rc::default();
    let done = Rc::new(Cell::new(false));
    let waker: Rc<RefCell<Option<Waker>>> = Rc::default();
    let (l, d, w) = (log.clone(), done.clone(), waker.clone());
    let finished = reactor.spawn_task(async move {
        push(&l, "task start");
        Flag { done: d, waker: w }.await;
        push(&l, "task end");
    });
    let l = log.clone();
    let aborted = reactor.spawn_task(async move {
        std::future::pending::<()>().await;
        push(&l, "never");
    });
    let handle = reactor.handle();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        handle.call_from_thread(|_| {}).unwrap();
    });
    let (r, d, w, a) = (
        reactor.clone(),
        done.clone(),
        waker.clone(),
        aborted.clone(),
    );
    reactor.call_later(Duration::from_millis(10), move || {
        a.abort();
        d.set(true);
        // Wake from another thread: the waker must be Send and reach the loop.
        let waker = w.borrow_mut().take().unwrap();
        thread::spawn(move || waker.wake()).join().unwrap();
        let r2 = r.clone();
        r.call_later(Duration::from_millis(20), move || r2.stop());
    });
    reactor.run().unwrap();
    assert_eq!(*log.borrow(), ["task start", "task end"]);
    assert!(finished.is_finished() && aborted.is_finished());
}

#[test]
fn user_signal_handlers_run_on_the_reactor_thread() {
    let reactor = Reactor::new().unwrap();
    let hits = Rc::new(Cell::new(0));
    let (h, r) = (hits.clone(), reactor.clone());
    reactor
        .add_signal_handler(libc::SIGUSR2, move || {
            h.set(h.get() + 1);
            r.stop();
        })
        .unwrap();
    reactor.install_signal_handlers().unwrap();
    reactor.call_when_running(|| unsafe {
        libc::raise(libc::SIGUSR2);
    });
    reactor.run().unwrap();
    assert_eq!(hits.get(), 1);
}
