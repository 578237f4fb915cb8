//! Reactor lifecycle: running again, several reactors, threads, triggers, timers, signals.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use twistor::Error;
use twistor::reactor::UnhandledPanic;
use twistor::reactor::{Phase, SystemEvent};

type Log = Rc<RefCell<Vec<String>>>;

fn push(log: &Log, s: &str) {
    log.borrow_mut().push(s.to_string());
}

#[test]
fn a_stopped_reactor_runs_again() {
    let reactor = twistor_testing::reactor();
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
    let reactor = twistor_testing::reactor();
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
    let reactor = twistor_testing::reactor();
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
                let reactor = twistor_testing::reactor();
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
    let reactor = twistor_testing::reactor();
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
    let reactor = twistor_testing::reactor();
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
    let reactor = twistor_testing::reactor();
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
    let reactor = twistor_testing::reactor();
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
    let reactor = twistor_testing::reactor();
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
    // Four, and the test kit's watchdog.
    assert_eq!(reactor.delayed_calls().len(), 4 + 1);
    reactor.run().unwrap();
    assert_eq!(*log.borrow(), ["first", "moved", "late"]);
    assert!(reactor.seconds() - before >= 0.05);
    assert!(matches!(late.cancel(), Err(Error::AlreadyCalled)));
    assert!(late.called() && !late.active());
}

#[test]
fn a_panicking_timer_is_logged_and_the_loop_goes_on() {
    let reactor = twistor_testing::reactor();
    // Panics on purpose: the default mode, where a panic costs only what panicked.
    reactor.set_unhandled_panic(UnhandledPanic::Ignore);
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
    let reactor = twistor_testing::reactor();
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
    let reactor = twistor_testing::reactor();
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

/// Under `UnhandledPanic::StopReactor` (what `twistor_testing::reactor()` sets), a panic
/// caught anywhere in the loop stops the reactor and `run` returns it, whatever panicked;
/// the reactor then runs again.
#[test]
fn a_caught_panic_stops_the_reactor_and_run_returns_it() {
    type Trigger = Box<dyn Fn(&twistor::Reactor)>;
    let triggers: Vec<(&str, Trigger)> = vec![
        (
            "a delayed call",
            Box::new(|r| {
                r.call_later(Duration::ZERO, || panic!("bug"));
            }),
        ),
        ("a soon call", Box::new(|r| r.call_soon(|| panic!("bug")))),
        (
            "a task",
            Box::new(|r| {
                r.spawn_task(async { panic!("bug") });
            }),
        ),
        (
            "a call from thread",
            Box::new(|r| {
                let handle = r.handle();
                thread::spawn(move || handle.call_from_thread(|_| panic!("bug")).unwrap());
            }),
        ),
    ];
    for (what, trigger) in triggers {
        let reactor = twistor_testing::reactor();
        assert_eq!(reactor.unhandled_panic(), UnhandledPanic::StopReactor);
        let stopped = Rc::new(Cell::new(false));
        let s = stopped.clone();
        reactor.add_system_event_trigger(Phase::After, SystemEvent::Shutdown, move || {
            s.set(true);
            None
        });
        trigger(&reactor);
        match reactor.run() {
            Err(Error::UnhandledPanic { what: w, message }) => {
                assert_eq!((w.as_str(), message.as_str()), (what, "bug"));
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(stopped.get(), "{what}: the reactor shut down");
        // The panic is reported once; the reactor runs again.
        reactor.call_soon({
            let r = reactor.clone();
            move || r.stop()
        });
        reactor.run().unwrap();
    }
}

/// `run_until` returns the panic too, instead of waiting for a result that may never come.
#[test]
fn run_until_returns_a_panic_that_stopped_the_reactor() {
    let reactor = twistor_testing::reactor();
    reactor.call_later(Duration::from_millis(1), || panic!("a bug in a timer"));
    let never = std::future::pending::<()>();
    let err = reactor.run_until(never).unwrap_err();
    assert!(
        err.to_string()
            .contains("panic in a delayed call: a bug in a timer"),
        "{err}"
    );
}

/// A reactor driven by `iterate` cannot be stopped by a panic; its next `run` reports it
/// at once instead of running on until something else stops it.
#[test]
fn a_panic_caught_while_iterating_is_returned_by_the_next_run() {
    let reactor = twistor_testing::reactor();
    reactor.call_soon(|| panic!("bug in a soon call"));
    reactor.iterate(Duration::ZERO);
    match reactor.run() {
        Err(Error::UnhandledPanic { message, .. }) => assert!(message.contains("bug in a soon")),
        other => panic!("expected the panic, got {other:?}"),
    }
    // Reported once: the reactor runs normally afterwards.
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop());
    reactor.run().unwrap();
}
