//! The Cooperator: round-robin time slices, pause/resume/stop, Deferred steps, errors, and
//! interleaving with the reactor's timers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use twistor::defer::{Deferred, DeferredError, Failure};
use twistor::task::{Cooperator, CooperatorOptions, TimeSlice, cooperate};
use twistor_testing::Clock;

type Log = Rc<RefCell<Vec<String>>>;

fn steps(log: &Log, name: &'static str, n: usize) -> impl Iterator<Item = ()> + 'static {
    let log = log.clone();
    (0..n).map(move |i| log.borrow_mut().push(format!("{name}{i}")))
}

const PAUSE: Duration = Duration::from_millis(1);

/// A cooperator running `steps` steps per slice, a slice per `tick`.
fn cooperator(clock: &Clock, steps: usize) -> Cooperator {
    let options = CooperatorOptions::default()
        .slice(TimeSlice::Steps(steps))
        .pause(PAUSE);
    Cooperator::with_options(clock.clone(), options)
}

/// Lets one slice run.
fn tick(clock: &Clock) {
    clock.advance(PAUSE);
}

#[test]
fn tasks_take_turns_a_slice_at_a_time() {
    let clock = Clock::new();
    let coop = cooperator(&clock, 3);
    let log: Log = Rc::default();
    let a = coop.cooperate(steps(&log, "a", 3));
    let b = coop.cooperate(steps(&log, "b", 2));
    assert!(
        log.borrow().is_empty(),
        "nothing runs until the clock turns"
    );
    tick(&clock);
    assert_eq!(*log.borrow(), ["a0", "b0", "a1"]);
    tick(&clock);
    assert_eq!(*log.borrow(), ["a0", "b0", "a1", "b1", "a2"]);
    let (a_done, b_done) = (a.when_done(), b.when_done());
    tick(&clock); // both iterators report exhaustion
    assert!(a_done.try_result().unwrap().is_ok());
    assert!(b_done.try_result().unwrap().is_ok());
    assert_eq!(coop.active_tasks(), 0);
    assert!(
        clock.delayed_calls().is_empty(),
        "idle cooperators schedule nothing"
    );
}

#[test]
fn when_done_after_the_end_fires_at_once() {
    let clock = Clock::new();
    let coop = cooperator(&clock, 100);
    let task = coop.cooperate(std::iter::empty::<()>());
    tick(&clock);
    assert!(task.is_done());
    assert!(task.when_done().try_result().unwrap().is_ok());
}

#[test]
fn pause_and_resume() {
    let clock = Clock::new();
    let coop = cooperator(&clock, 1);
    let log: Log = Rc::default();
    let task = coop.cooperate(steps(&log, "t", 3));
    tick(&clock);
    task.pause().unwrap();
    task.pause().unwrap();
    tick(&clock);
    task.resume().unwrap();
    tick(&clock);
    assert_eq!(log.borrow().len(), 1, "pauses nest");
    task.resume().unwrap();
    assert_eq!(task.resume(), Err(DeferredError::NotPaused));
    tick(&clock);
    assert_eq!(log.borrow().len(), 2);
}

#[test]
fn stop_ends_the_task_with_task_stopped() {
    let clock = Clock::new();
    let coop = cooperator(&clock, 1);
    let log: Log = Rc::default();
    let task = coop.cooperate(steps(&log, "t", 10));
    let done = task.when_done();
    tick(&clock);
    task.stop().unwrap();
    tick(&clock);
    assert_eq!(log.borrow().len(), 1);
    assert_eq!(
        done.try_result().unwrap().unwrap_err().downcast_ref(),
        Some(&DeferredError::TaskStopped)
    );
    assert_eq!(task.stop(), Err(DeferredError::TaskStopped));
    assert_eq!(task.pause(), Err(DeferredError::TaskStopped));
}

#[test]
fn a_finished_task_cannot_be_paused() {
    let clock = Clock::new();
    let coop = cooperator(&clock, 10);
    let task = coop.cooperate([(), ()]);
    tick(&clock);
    assert_eq!(task.pause(), Err(DeferredError::TaskFinished));
}

#[test]
fn a_deferred_step_pauses_the_task_until_it_fires() {
    let clock = Clock::new();
    let coop = cooperator(&clock, 10);
    let gate = Deferred::<()>::new();
    let g = gate.clone();
    let log: Log = Rc::default();
    let l = log.clone();
    let task = coop.cooperate((0..3).map(move |i| {
        l.borrow_mut().push(format!("step{i}"));
        if i == 0 { Some(g.clone()) } else { None }
    }));
    tick(&clock);
    tick(&clock);
    assert_eq!(*log.borrow(), ["step0"]);
    gate.callback(()).unwrap();
    let done = task.when_done();
    tick(&clock);
    assert_eq!(*log.borrow(), ["step0", "step1", "step2"]);
    assert!(done.try_result().unwrap().is_ok());
}

#[test]
fn a_failing_step_or_deferred_fails_the_task() {
    let clock = Clock::new();
    let coop = cooperator(&clock, 10);
    let task = coop.cooperate((0..5).map(|i| {
        if i == 2 {
            Err(Failure::msg("step 2 broke"))
        } else {
            Ok(())
        }
    }));
    let done = task.when_done();
    tick(&clock);
    assert_eq!(
        done.try_result().unwrap().unwrap_err().to_string(),
        "step 2 broke"
    );
    assert_eq!(task.pause(), Err(DeferredError::TaskFailed));

    let later = coop.cooperate([Deferred::<()>::failed(Failure::msg("async"))]);
    let done = later.when_done();
    tick(&clock);
    assert_eq!(done.try_result().unwrap().unwrap_err().to_string(), "async");
}

#[test]
fn stopping_the_cooperator_stops_its_tasks() {
    let clock = Clock::new();
    let coop = cooperator(&clock, 1);
    let task = coop.cooperate(std::iter::repeat(()));
    let done = task.when_done();
    tick(&clock);
    coop.stop();
    assert!(!coop.running());
    assert_eq!(
        done.try_result().unwrap().unwrap_err().downcast_ref(),
        Some(&DeferredError::SchedulerStopped)
    );
    let late = coop.coiterate([()]);
    assert_eq!(
        late.try_result().unwrap().unwrap_err().downcast_ref(),
        Some(&DeferredError::SchedulerStopped)
    );
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn without_a_pause_one_advance_runs_slice_after_slice() {
    let clock = Clock::new();
    let options = CooperatorOptions::default().slice(TimeSlice::Steps(1));
    let coop = Cooperator::with_options(clock.clone(), options);
    let log: Log = Rc::default();
    let done = coop.coiterate(steps(&log, "s", 5));
    clock.advance(Duration::ZERO);
    assert_eq!(log.borrow().len(), 5);
    assert!(done.try_result().unwrap().is_ok());
}

#[test]
fn cooperate_interleaves_a_busy_iterator_with_the_reactors_timers() {
    // An endless iterator of busy steps, on the reactor's own cooperator (10 ms slices):
    // a timer still runs, and stops it.
    let reactor = twistor_testing::reactor();
    let timer_ran = Rc::new(Cell::new(false));
    let steps_done = Rc::new(Cell::new(0u64));
    let (flag, count) = (timer_ran.clone(), steps_done.clone());
    let started = Instant::now();
    let task = cooperate(
        &reactor,
        std::iter::from_fn(move || {
            count.set(count.get() + 1);
            // About a microsecond of work per step; give up after 10 s if never preempted.
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_micros(1) {}
            (!flag.get() && started.elapsed() < Duration::from_secs(10)).then_some(())
        }),
    );
    let flag = timer_ran.clone();
    reactor.call_later(Duration::from_millis(30), move || flag.set(true));
    let stop = reactor.clone();
    task.when_done().consume(move |r| {
        r.unwrap();
        stop.stop();
    });
    reactor.run().unwrap();
    assert!(timer_ran.get());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timer got its turn"
    );
    assert!(steps_done.get() > 100);
}
