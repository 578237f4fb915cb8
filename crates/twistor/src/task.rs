//! Scheduling helpers on top of Deferreds (Twisted's `twisted.internet.task`):
//! [`sleep`] and [`defer_later`], [`LoopingCall`], the [`Cooperator`] that interleaves
//! long-running iterators with I/O, and [`react`], which runs an async main function.
//!
//! Everything that waits takes a [`ReactorTime`]: the [`Reactor`] in a program, the test
//! kit's `Clock` in tests.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::defer::local::reactor_local;
use crate::defer::{Deferred, DeferredError, Failure};
use crate::error::Error;
use crate::log::report_error;
use crate::reactor::{DelayedCall, Phase, Reactor, ReactorTime, SystemEvent, panic_message};

// ---- sleep, defer_later -----------------------------------------------------------------

/// A Deferred that fires with `()` after `delay` on `clock`. Cancelling it cancels the
/// timer (and fails it with `Cancelled`).
///
/// ```
/// use std::time::Duration;
/// use twistor::task::sleep;
/// use twistor_testing::Clock;
///
/// let clock = Clock::new();
/// let d = sleep(&clock, Duration::from_secs(1));
/// clock.advance(Duration::from_secs(1));
/// assert!(d.try_result().unwrap().is_ok());
/// ```
pub fn sleep(clock: &dyn ReactorTime, delay: Duration) -> Deferred<()> {
    defer_later(clock, delay, || Ok(()))
}

/// A Deferred that fires with the result of `f`, called after `delay` on `clock` (Twisted's
/// `deferLater`). Cancelling it before then cancels the call.
pub fn defer_later<T: 'static>(
    clock: &dyn ReactorTime,
    delay: Duration,
    f: impl FnOnce() -> Result<T, Failure> + 'static,
) -> Deferred<T> {
    let call: Rc<RefCell<Option<DelayedCall>>> = Rc::new(RefCell::new(None));
    let pending = call.clone();
    let d = Deferred::with_canceller(move |_| {
        if let Some(call) = pending.borrow_mut().take() {
            let _ = call.cancel();
        }
    });
    let fire = d.clone();
    let scheduled = clock.call_later_boxed(
        delay,
        Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
                Err(Failure::new(DeferredError::Panicked(panic_message(
                    &*panic,
                ))))
            });
            let _ = fire.resolve(result);
        }),
    );
    *call.borrow_mut() = Some(scheduled);
    d
}

// ---- what repeated work hands back ------------------------------------------------------

/// What a [`LoopingCall`]'s function or a cooperative iterator's step may return: `()`,
/// a `Result<(), E>` (an error stops the loop or task), or a [`Deferred`] (the next run
/// waits for it; a failure stops the loop or task).
pub trait TaskResult: 'static {
    /// `Ok(None)` to go on now, `Ok(Some(d))` to wait for `d`, `Err` to stop with it.
    fn into_wait(self) -> Result<Option<Deferred<()>>, Failure>;
}

impl TaskResult for () {
    fn into_wait(self) -> Result<Option<Deferred<()>>, Failure> {
        Ok(None)
    }
}

impl<E: Into<Failure> + 'static> TaskResult for Result<(), E> {
    fn into_wait(self) -> Result<Option<Deferred<()>>, Failure> {
        self.map(|()| None).map_err(Into::into)
    }
}

impl<T: 'static> TaskResult for Deferred<T> {
    fn into_wait(self) -> Result<Option<Deferred<()>>, Failure> {
        Ok(Some(self.map(|_| ())))
    }
}

impl<T: 'static> TaskResult for Option<Deferred<T>> {
    fn into_wait(self) -> Result<Option<Deferred<()>>, Failure> {
        Ok(self.map(|d| d.map(|_| ())))
    }
}

/// What one run or step asks for next: go on, wait for a Deferred, or stop with a failure.
type Wait = Result<Option<Deferred<()>>, Failure>;
type Step = Box<dyn FnMut(u64) -> Wait>;
/// A cooperative task's next step; `None` once its iterator is exhausted.
type TaskStep = Box<dyn FnMut() -> Option<Wait>>;

/// Calls a step function, turning a panic into a failure.
fn call_step(step: &mut Step, count: u64) -> Wait {
    catch_unwind(AssertUnwindSafe(|| step(count))).unwrap_or_else(|panic| {
        Err(Failure::new(DeferredError::Panicked(panic_message(
            &*panic,
        ))))
    })
}

// ---- LoopingCall ------------------------------------------------------------------------

/// Calls a function repeatedly, every `interval` (Twisted's `LoopingCall`).
///
/// Runs happen on interval boundaries counted from `start`: if a run (or the Deferred it
/// returned) takes longer than an interval, the boundaries missed are skipped, not run late
/// in a burst. A function returning a Deferred is not called again until it fires. The
/// Deferred that [`start`](LoopingCall::start) returns fires when the loop is stopped, or
/// fails with the error of a run that failed (which stops the loop).
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use twistor::task::LoopingCall;
/// use twistor_testing::Clock;
///
/// let clock = Clock::new();
/// let ticks = Rc::new(Cell::new(0));
/// let t = ticks.clone();
/// let lc = LoopingCall::new(clock.clone(), move || t.set(t.get() + 1));
/// let done = lc.start(Duration::from_secs(1), true).unwrap();
/// clock.pump(&[Duration::from_secs(1); 3]);
/// assert_eq!(ticks.get(), 4);
/// lc.stop().unwrap();
/// assert!(done.try_result().unwrap().is_ok());
/// ```
#[derive(Clone)]
pub struct LoopingCall {
    inner: Rc<LoopInner>,
}

struct LoopInner {
    clock: Rc<dyn ReactorTime>,
    step: RefCell<Step>,
    counted: bool,
    st: RefCell<LoopState>,
}

#[derive(Default)]
struct LoopState {
    running: bool,
    /// Nanoseconds.
    interval: u64,
    /// When `start` was called, in clock nanoseconds.
    start: u64,
    run_at_start: bool,
    /// When the counted function last ran.
    last: Option<u64>,
    call: Option<DelayedCall>,
    deferred: Option<Deferred<()>>,
}

impl LoopingCall {
    /// A loop that will call `f` on `clock` (not started yet).
    pub fn new<R: TaskResult>(
        clock: impl ReactorTime + 'static,
        mut f: impl FnMut() -> R + 'static,
    ) -> LoopingCall {
        LoopingCall::build(clock, false, Box::new(move |_| f().into_wait()))
    }

    /// A loop whose function is told how many intervals have passed since it last ran (1
    /// normally; more when runs were skipped because the process was busy) — Twisted's
    /// `LoopingCall.withCount`. If no interval has passed since the last run, it is not
    /// called.
    pub fn with_count<R: TaskResult>(
        clock: impl ReactorTime + 'static,
        mut f: impl FnMut(u64) -> R + 'static,
    ) -> LoopingCall {
        LoopingCall::build(clock, true, Box::new(move |count| f(count).into_wait()))
    }

    fn build(clock: impl ReactorTime + 'static, counted: bool, step: Step) -> LoopingCall {
        LoopingCall {
            inner: Rc::new(LoopInner {
                clock: Rc::new(clock),
                step: RefCell::new(step),
                counted,
                st: RefCell::new(LoopState::default()),
            }),
        }
    }

    /// Starts the loop: the function runs every `interval`, first at once if `now`, else
    /// after one interval. Fails with [`DeferredError::AlreadyRunning`] if it is running.
    /// An interval of zero runs the function again as soon as the clock lets it.
    pub fn start(&self, interval: Duration, now: bool) -> Result<Deferred<()>, DeferredError> {
        let inner = &self.inner;
        let d = Deferred::new();
        let start = {
            let mut st = inner.st.borrow_mut();
            if st.running {
                return Err(DeferredError::AlreadyRunning);
            }
            let start = inner.now();
            *st = LoopState {
                running: true,
                interval: crate::reactor::timer::duration_to_nanos(interval),
                start,
                run_at_start: now,
                last: None,
                call: None,
                deferred: Some(d.clone()),
            };
            start
        };
        if now {
            LoopInner::run(inner);
        } else {
            LoopInner::schedule_from(inner, start);
        }
        Ok(d)
    }

    /// Stops the loop; the Deferred from `start` fires (at once, or when a run under way
    /// finishes). Fails with [`DeferredError::NotRunning`] if it is not running.
    pub fn stop(&self) -> Result<(), DeferredError> {
        let fire = {
            let mut st = self.inner.st.borrow_mut();
            if !st.running {
                return Err(DeferredError::NotRunning);
            }
            st.running = false;
            match st.call.take() {
                Some(call) => {
                    let _ = call.cancel();
                    st.deferred.take()
                }
                // A run is under way; it fires the Deferred when it is done.
                None => None,
            }
        };
        if let Some(d) = fire {
            let _ = d.callback(());
        }
        Ok(())
    }

    /// Skips the wait under way and counts intervals afresh from now (Twisted's `reset`).
    /// Fails with [`DeferredError::NotRunning`] if it is not running.
    pub fn reset(&self) -> Result<(), DeferredError> {
        let now = {
            let mut st = self.inner.st.borrow_mut();
            if !st.running {
                return Err(DeferredError::NotRunning);
            }
            let Some(call) = st.call.take() else {
                // A run is under way; it schedules the next one itself.
                return Ok(());
            };
            let _ = call.cancel();
            let now = self.inner.now();
            st.start = now;
            now
        };
        LoopInner::schedule_from(&self.inner, now);
        Ok(())
    }

    /// Whether the loop is running.
    pub fn running(&self) -> bool {
        self.inner.st.borrow().running
    }

    /// The interval it was last started with.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.inner.st.borrow().interval)
    }
}

impl LoopInner {
    fn now(&self) -> u64 {
        seconds_to_nanos(self.clock.seconds())
    }

    /// One run of the function.
    fn run(inner: &Rc<LoopInner>) {
        let count = {
            let mut st = inner.st.borrow_mut();
            st.call = None;
            if inner.counted {
                let now = inner.now();
                let count = st.count(now);
                if count == 0 {
                    drop(st);
                    LoopInner::after_run(inner);
                    return;
                }
                st.last = Some(now);
                count
            } else {
                1
            }
        };
        let outcome = match inner.step.try_borrow_mut() {
            Ok(mut step) => call_step(&mut step, count),
            Err(_) => Err(Failure::msg("LoopingCall function re-entered")),
        };
        match outcome {
            Ok(None) => LoopInner::after_run(inner),
            Ok(Some(d)) => {
                let inner = inner.clone();
                d.consume(move |result| match result {
                    Ok(()) => LoopInner::after_run(&inner),
                    Err(failure) => LoopInner::fail(&inner, failure),
                });
            }
            Err(failure) => LoopInner::fail(inner, failure),
        }
    }

    fn after_run(inner: &Rc<LoopInner>) {
        let fire = {
            let mut st = inner.st.borrow_mut();
            if st.running { None } else { st.deferred.take() }
        };
        match fire {
            Some(d) => {
                let _ = d.callback(());
            }
            None => {
                if inner.st.borrow().running {
                    LoopInner::schedule_from(inner, inner.now());
                }
            }
        }
    }

    fn fail(inner: &Rc<LoopInner>, failure: Failure) {
        let d = {
            let mut st = inner.st.borrow_mut();
            st.running = false;
            if let Some(call) = st.call.take() {
                let _ = call.cancel();
            }
            st.deferred.take()
        };
        match d {
            Some(d) => {
                let _ = d.errback(failure);
            }
            None => report_error!("LoopingCall failed after it was stopped: {failure}"),
        }
    }

    /// Schedules the next run at the first interval boundary after `when`.
    fn schedule_from(inner: &Rc<LoopInner>, when: u64) {
        let delay = {
            let st = inner.st.borrow();
            if st.interval == 0 {
                0
            } else {
                let running_for = when.saturating_sub(st.start);
                st.interval - running_for % st.interval
            }
        };
        let me = inner.clone();
        let call = inner.clock.call_later_boxed(
            Duration::from_nanos(delay),
            Box::new(move || LoopInner::run(&me)),
        );
        inner.st.borrow_mut().call = Some(call);
    }
}

impl LoopState {
    /// How many interval boundaries have passed since the last run (Twisted's
    /// `withCount` counter).
    fn count(&self, now: u64) -> u64 {
        if self.interval == 0 {
            return 1;
        }
        let interval = i128::from(self.interval);
        let last = match self.last {
            Some(last) => i128::from(last),
            None if self.run_at_start => i128::from(self.start) - interval,
            None => i128::from(self.start),
        };
        let of = |t: i128| (t - i128::from(self.start)).div_euclid(interval);
        u64::try_from(of(i128::from(now)) - of(last)).unwrap_or(0)
    }
}

impl fmt::Debug for LoopingCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.st.borrow();
        f.debug_struct("LoopingCall")
            .field("running", &st.running)
            .field("interval", &Duration::from_nanos(st.interval))
            .finish()
    }
}

/// Clock seconds to whole nanoseconds (rounded: the clocks count in nanoseconds).
fn seconds_to_nanos(seconds: f64) -> u64 {
    (seconds * 1e9).round() as u64
}

// ---- Cooperator -------------------------------------------------------------------------

/// How long a [`Cooperator`] keeps running its tasks before it lets the reactor do I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeSlice {
    /// Run steps until this much real time has passed (Twisted uses 10 ms). This measures
    /// the CPU the steps take, so it reads the system's monotonic clock, not the reactor's.
    Time(Duration),
    /// Run this many steps per turn (deterministic, for tests).
    Steps(usize),
}

impl Default for TimeSlice {
    fn default() -> Self {
        TimeSlice::Time(Duration::from_millis(10))
    }
}

/// Tuning for a [`Cooperator`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CooperatorOptions {
    /// How long each turn runs steps (default: 10 ms of real time, as in Twisted).
    pub slice: TimeSlice,
    /// How long to wait between slices (default zero: the next turn of the reactor, after
    /// its I/O). On the test `Clock` a zero pause makes one `advance` run slice after
    /// slice until no task can go on; give a pause to step through slices one at a time.
    pub pause: Duration,
}

impl CooperatorOptions {
    /// Use this time slice.
    pub fn slice(mut self, slice: TimeSlice) -> Self {
        self.slice = slice;
        self
    }

    /// Wait this long between slices.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }
}

/// Runs many long-running iterators a little at a time, round-robin, in bounded time
/// slices between which the reactor does I/O (Twisted's `Cooperator`).
///
/// Each item an iterator yields is one step of work ([`TaskResult`]): `()` to go on, a
/// failure to stop the task, or a Deferred to pause the task until it fires.
///
/// ```
/// use std::time::Duration;
/// use twistor::task::{Cooperator, CooperatorOptions, TimeSlice};
/// use twistor_testing::Clock;
///
/// let clock = Clock::new();
/// let options = CooperatorOptions::default()
///     .slice(TimeSlice::Steps(10))
///     .pause(Duration::from_millis(1));
/// let coop = Cooperator::with_options(clock.clone(), options);
/// let task = coop.cooperate((0..25).map(|_| ()));
/// let done = task.when_done();
/// clock.advance(Duration::from_millis(1)); // 10 steps
/// clock.advance(Duration::from_millis(1)); // 20
/// assert!(!done.called());
/// clock.advance(Duration::from_millis(1)); // 25, and the end
/// assert!(done.try_result().unwrap().is_ok());
/// ```
#[derive(Clone)]
pub struct Cooperator {
    inner: Rc<CoopInner>,
}

struct CoopInner {
    clock: Rc<dyn ReactorTime>,
    options: CooperatorOptions,
    /// Tasks that are neither paused nor done.
    tasks: RefCell<Vec<Rc<TaskInner>>>,
    /// Where the round-robin goes on from.
    cursor: Cell<usize>,
    call: RefCell<Option<DelayedCall>>,
    stopped: Cell<bool>,
}

/// A task running on a [`Cooperator`] (Twisted's `CooperativeTask`).
#[derive(Clone)]
pub struct CooperativeTask {
    inner: Rc<TaskInner>,
}

struct TaskInner {
    coop: Rc<CoopInner>,
    step: RefCell<TaskStep>,
    pauses: Cell<u32>,
    completion: RefCell<Option<Completion>>,
    waiters: RefCell<Vec<Deferred<()>>>,
}

#[derive(Clone)]
enum Completion {
    Finished,
    Stopped,
    Failed(Failure),
    SchedulerStopped,
}

impl Completion {
    fn result(&self) -> Result<(), Failure> {
        match self {
            Completion::Finished => Ok(()),
            Completion::Stopped => Err(Failure::new(DeferredError::TaskStopped)),
            Completion::Failed(failure) => Err(failure.clone()),
            Completion::SchedulerStopped => Err(Failure::new(DeferredError::SchedulerStopped)),
        }
    }

    fn error(&self) -> DeferredError {
        match self {
            Completion::Finished => DeferredError::TaskFinished,
            Completion::Stopped => DeferredError::TaskStopped,
            Completion::Failed(_) => DeferredError::TaskFailed,
            Completion::SchedulerStopped => DeferredError::SchedulerStopped,
        }
    }
}

impl Cooperator {
    /// A cooperator scheduling on `clock`, with Twisted's 10 ms time slice.
    pub fn new(clock: impl ReactorTime + 'static) -> Cooperator {
        Cooperator::with_options(clock, CooperatorOptions::default())
    }

    /// A cooperator with the given slice and pause.
    pub fn with_options(
        clock: impl ReactorTime + 'static,
        options: CooperatorOptions,
    ) -> Cooperator {
        Cooperator {
            inner: Rc::new(CoopInner {
                clock: Rc::new(clock),
                options,
                tasks: RefCell::new(Vec::new()),
                cursor: Cell::new(0),
                call: RefCell::new(None),
                stopped: Cell::new(false),
            }),
        }
    }

    /// The reactor's own cooperator (created on first use, owned by the reactor), as
    /// Twisted's module-level `cooperate` uses.
    pub fn for_reactor(reactor: &Reactor) -> Cooperator {
        let inner = reactor_local(reactor, || {
            let coop = Cooperator::new(reactor.clone()).inner;
            // The reactor owns it through a trigger that holds it (and does nothing).
            let owned = coop.clone();
            reactor.add_system_event_trigger(Phase::After, SystemEvent::Shutdown, move || {
                let _ = &owned;
                None
            });
            coop
        });
        Cooperator { inner }
    }

    /// Starts running `iterator` a step at a time. A stopped cooperator stops the task at
    /// once ([`DeferredError::SchedulerStopped`]).
    pub fn cooperate<I>(&self, iterator: I) -> CooperativeTask
    where
        I: IntoIterator + 'static,
        I::Item: TaskResult,
    {
        let mut iterator = iterator.into_iter();
        let task = Rc::new(TaskInner {
            coop: self.inner.clone(),
            step: RefCell::new(Box::new(move || iterator.next().map(TaskResult::into_wait))),
            pauses: Cell::new(0),
            completion: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
        });
        CoopInner::add_task(&self.inner, task.clone());
        CooperativeTask { inner: task }
    }

    /// Runs `iterator` and returns a Deferred for its end (Twisted's `coiterate`).
    pub fn coiterate<I>(&self, iterator: I) -> Deferred<()>
    where
        I: IntoIterator + 'static,
        I::Item: TaskResult,
    {
        self.cooperate(iterator).when_done()
    }

    /// Stops every task with [`DeferredError::SchedulerStopped`] and runs no more; tasks
    /// added later are stopped at once.
    pub fn stop(&self) {
        self.inner.stopped.set(true);
        if let Some(call) = self.inner.call.borrow_mut().take() {
            let _ = call.cancel();
        }
        let tasks = std::mem::take(&mut *self.inner.tasks.borrow_mut());
        for task in tasks {
            TaskInner::complete(&task, Completion::SchedulerStopped);
        }
    }

    /// Whether the cooperator has not been stopped.
    pub fn running(&self) -> bool {
        !self.inner.stopped.get()
    }

    /// How many tasks are running (not paused, not done).
    pub fn active_tasks(&self) -> usize {
        self.inner.tasks.borrow().len()
    }
}

/// Runs `iterator` on the reactor's own cooperator (Twisted's `task.cooperate`).
pub fn cooperate<I>(reactor: &Reactor, iterator: I) -> CooperativeTask
where
    I: IntoIterator + 'static,
    I::Item: TaskResult,
{
    Cooperator::for_reactor(reactor).cooperate(iterator)
}

impl CoopInner {
    fn add_task(coop: &Rc<CoopInner>, task: Rc<TaskInner>) {
        if coop.stopped.get() {
            TaskInner::complete(&task, Completion::SchedulerStopped);
            return;
        }
        coop.tasks.borrow_mut().push(task);
        CoopInner::reschedule(coop);
    }

    fn remove_task(&self, task: &Rc<TaskInner>) {
        let mut tasks = self.tasks.borrow_mut();
        if let Some(index) = tasks.iter().position(|t| Rc::ptr_eq(t, task)) {
            tasks.remove(index);
            if index < self.cursor.get() {
                self.cursor.set(self.cursor.get() - 1);
            }
        }
    }

    fn reschedule(coop: &Rc<CoopInner>) {
        if coop.stopped.get() || coop.call.borrow().is_some() || coop.tasks.borrow().is_empty() {
            return;
        }
        let me = coop.clone();
        let call = coop
            .clock
            .call_later_boxed(coop.options.pause, Box::new(move || CoopInner::tick(&me)));
        *coop.call.borrow_mut() = Some(call);
    }

    /// One time slice: steps of the tasks in turn until the slice is used up or no task
    /// is left.
    fn tick(coop: &Rc<CoopInner>) {
        coop.call.borrow_mut().take();
        let deadline = match coop.options.slice {
            TimeSlice::Time(slice) => Some(Instant::now() + slice),
            TimeSlice::Steps(_) => None,
        };
        let mut steps = 0usize;
        loop {
            let task = {
                let tasks = coop.tasks.borrow();
                if tasks.is_empty() {
                    break;
                }
                let mut cursor = coop.cursor.get();
                if cursor >= tasks.len() {
                    cursor = 0;
                }
                coop.cursor.set(cursor + 1);
                tasks[cursor].clone()
            };
            TaskInner::one_step(&task);
            steps += 1;
            let used_up = match coop.options.slice {
                TimeSlice::Steps(limit) => steps >= limit,
                TimeSlice::Time(_) => deadline.is_some_and(|d| Instant::now() >= d),
            };
            if used_up || coop.stopped.get() {
                break;
            }
        }
        CoopInner::reschedule(coop);
    }
}

impl TaskInner {
    fn one_step(task: &Rc<TaskInner>) {
        let item = match task.step.try_borrow_mut() {
            Ok(mut step) => catch_unwind(AssertUnwindSafe(&mut *step)).unwrap_or_else(|panic| {
                Some(Err(Failure::new(DeferredError::Panicked(panic_message(
                    &*panic,
                )))))
            }),
            // Re-entered from its own step (it cannot be); skip this turn.
            Err(_) => return,
        };
        match item {
            None => TaskInner::complete(task, Completion::Finished),
            Some(Err(failure)) => TaskInner::complete(task, Completion::Failed(failure)),
            Some(Ok(None)) => {}
            Some(Ok(Some(d))) => {
                TaskInner::pause(task);
                let task = task.clone();
                d.consume(move |result| match result {
                    Ok(()) => {
                        let _ = TaskInner::resume(&task);
                    }
                    Err(failure) => TaskInner::complete(&task, Completion::Failed(failure)),
                });
            }
        }
    }

    fn pause(task: &Rc<TaskInner>) {
        task.pauses.set(task.pauses.get() + 1);
        if task.pauses.get() == 1 {
            task.coop.remove_task(task);
        }
    }

    fn resume(task: &Rc<TaskInner>) -> Result<(), DeferredError> {
        if task.pauses.get() == 0 {
            return Err(DeferredError::NotPaused);
        }
        task.pauses.set(task.pauses.get() - 1);
        if task.pauses.get() == 0 && task.completion.borrow().is_none() {
            CoopInner::add_task(&task.coop, task.clone());
        }
        Ok(())
    }

    fn complete(task: &Rc<TaskInner>, completion: Completion) {
        if task.completion.borrow().is_some() {
            return;
        }
        *task.completion.borrow_mut() = Some(completion.clone());
        if task.pauses.get() == 0 {
            task.coop.remove_task(task);
        }
        let waiters = std::mem::take(&mut *task.waiters.borrow_mut());
        for d in waiters {
            let _ = d.resolve(completion.result());
        }
    }

    fn check_unfinished(&self) -> Result<(), DeferredError> {
        match &*self.completion.borrow() {
            Some(completion) => Err(completion.error()),
            None => Ok(()),
        }
    }
}

impl CooperativeTask {
    /// A Deferred that fires when the task ends: with `()` when its iterator is exhausted,
    /// or failing with the error that stopped it ([`DeferredError::TaskStopped`],
    /// [`DeferredError::SchedulerStopped`], or the task's own failure). Each call gives a
    /// new Deferred.
    pub fn when_done(&self) -> Deferred<()> {
        if let Some(completion) = &*self.inner.completion.borrow() {
            return Deferred::resolved(completion.result());
        }
        let d = Deferred::new();
        self.inner.waiters.borrow_mut().push(d.clone());
        d
    }

    /// Stops running steps until [`resume`](CooperativeTask::resume) (pauses nest). Fails
    /// if the task has ended ([`DeferredError::TaskFinished`] and the like).
    pub fn pause(&self) -> Result<(), DeferredError> {
        self.inner.check_unfinished()?;
        TaskInner::pause(&self.inner);
        Ok(())
    }

    /// Undoes one pause; [`DeferredError::NotPaused`] if it is not paused.
    pub fn resume(&self) -> Result<(), DeferredError> {
        TaskInner::resume(&self.inner)
    }

    /// Ends the task: its `when_done` Deferreds fail with [`DeferredError::TaskStopped`].
    /// Fails if it has already ended.
    pub fn stop(&self) -> Result<(), DeferredError> {
        self.inner.check_unfinished()?;
        TaskInner::complete(&self.inner, Completion::Stopped);
        Ok(())
    }

    /// Whether the task has ended (finished, stopped or failed).
    pub fn is_done(&self) -> bool {
        self.inner.completion.borrow().is_some()
    }
}

impl fmt::Debug for CooperativeTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CooperativeTask")
            .field("paused", &(self.inner.pauses.get() > 0))
            .field("done", &self.is_done())
            .finish()
    }
}

impl fmt::Debug for Cooperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cooperator")
            .field("options", &self.inner.options)
            .field("tasks", &self.active_tasks())
            .field("running", &self.running())
            .finish()
    }
}

// ---- react ------------------------------------------------------------------------------

/// An error asking [`react`] to exit with this status (Twisted's `SystemExit`).
///
/// ```
/// use twistor::defer::Failure;
/// use twistor::task::{SystemExit, react_status};
///
/// let status = react_status(|_reactor| async { Err(Failure::new(SystemExit(3))) });
/// assert_eq!(status, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemExit(pub i32);

impl fmt::Display for SystemExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for SystemExit {}

/// Runs `main` on a new reactor and exits the process when it completes (Twisted's
/// `task.react`): with status 0 if it succeeded, the status of a [`SystemExit`] error, or
/// 1 after reporting any other failure (on standard error when no logging is set up; see
/// [`log`](crate::log)). If the reactor is stopped first (Ctrl-C), `main` is dropped and
/// the status is 0, as in Twisted.
///
/// ```no_run
/// use std::time::Duration;
/// use twistor::task::{react, sleep};
///
/// react(|reactor| async move {
///     sleep(&reactor, Duration::from_millis(100)).await?;
///     println!("done");
///     Ok(())
/// });
/// ```
pub fn react<F, Fut>(main: F) -> !
where
    F: FnOnce(Reactor) -> Fut + 'static,
    Fut: Future<Output = Result<(), Failure>> + 'static,
{
    std::process::exit(react_status(main))
}

/// Like [`react`], but returns the exit status instead of exiting.
pub fn react_status<F, Fut>(main: F) -> i32
where
    F: FnOnce(Reactor) -> Fut + 'static,
    Fut: Future<Output = Result<(), Failure>> + 'static,
{
    let reactor = match Reactor::new() {
        Ok(reactor) => reactor,
        Err(err) => {
            report_error!("could not create the reactor: {err}");
            return 1;
        }
    };
    let r = reactor.clone();
    // `main` itself is called once the reactor runs, as Twisted's `react` does.
    match reactor.run_until(async move { main(r).await }) {
        Ok(Ok(())) => 0,
        Ok(Err(failure)) => match failure.find::<SystemExit>() {
            Some(SystemExit(code)) => *code,
            None => {
                report_failure("main function failed", &failure);
                1
            }
        },
        // Stopped from outside before `main` completed.
        Err(Error::ShuttingDown) => 0,
        Err(err) => {
            report_error!("reactor failed: {err}");
            1
        }
    }
}

/// Reports `failure` at error level, with where it was made.
fn report_failure(what: &str, failure: &Failure) {
    if crate::log::unobserved() {
        crate::log::print(
            "error",
            format_args!("{what}: {failure}\n  at {}", failure.location()),
        );
    } else {
        tracing::error!(at = %failure.location(), "{what}: {failure}");
    }
}
