//! The reactor: one event loop per thread, dispatching socket, timer, signal, task and
//! cross-thread events to callbacks.
//!
//! Each turn of the loop runs, in order: the timers that are due, the calls posted from
//! other threads, the calls queued with `call_soon`, the futures that were woken, a flush of
//! every connection with queued output; then it waits in `epoll_wait` (for no longer than the
//! next timer) and dispatches what the kernel reports, and flushes again.
//!
//! ```
//! use std::time::Duration;
//! use twistor::Reactor;
//!
//! let reactor = Reactor::new().unwrap();
//! let r = reactor.clone();
//! reactor.call_later(Duration::from_millis(1), move || r.stop());
//! reactor.run().unwrap();
//! ```

mod executor;
mod handle;
mod panics;
mod signals;
pub(crate) mod source;
pub(crate) mod timer;
mod triggers;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};

pub use executor::TaskHandle;
pub use handle::ReactorHandle;
pub use panics::UnhandledPanic;
pub(crate) use panics::report_panic;
pub use timer::{DelayedCall, ReactorTime};
pub use triggers::{PendingWork, Phase, SystemEvent, TriggerId};

use crate::error::Error;
use crate::sys;
pub(crate) use source::{Readiness, Source};
pub(crate) use timer::{TimerQueue, nanos_to_seconds};

use executor::Executor;
use handle::{Queued, Shared};
use signals::SignalPipe;
use source::Slab;
use triggers::Triggers;

/// Size of the one read buffer every connection on a reactor reads into.
pub const READ_BUFFER_SIZE: usize = 64 * 1024;

/// A user callback for one signal.
type SignalHandler = Rc<dyn Fn()>;

const WAKER_TOKEN: Token = Token(usize::MAX - 1);
const SIGNAL_TOKEN: Token = Token(usize::MAX - 2);

/// How many rounds of flushing one turn does before it goes back to polling, so a pull
/// producer on a fast socket cannot starve everyone else.
const MAX_FLUSH_ROUNDS: usize = 16;

/// An event loop. Cheap to clone (an `Rc` inside); not `Send`: use
/// [`handle`](Reactor::handle) to reach it from other threads.
///
/// A reactor can be run, stopped and run again, and several can live in one process, one
/// per thread.
#[derive(Clone)]
pub struct Reactor {
    pub(crate) inner: Rc<Inner>,
}

pub(crate) struct Inner {
    poll: RefCell<mio::Poll>,
    events: RefCell<Events>,
    sources: RefCell<Slab>,
    timers: TimerQueue,
    soon: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    dirty: RefCell<Vec<Rc<dyn Source>>>,
    dirty_spare: RefCell<Vec<Rc<dyn Source>>>,
    io: Rc<IoBuffers>,
    shared: Arc<Shared>,
    remote_scratch: RefCell<Queued>,
    pub(crate) executor: Executor,
    triggers: Triggers,
    /// Inside `run()`.
    in_run: Cell<bool>,
    /// Startup has completed and shutdown has not begun (Twisted's `reactor.running`).
    running: Cell<bool>,
    /// Startup triggers are under way (`run` has begun, `running` is not yet true).
    starting: Cell<bool>,
    /// `stop()` was called before or during startup: shut down as soon as startup ends.
    stop_requested: Cell<bool>,
    stopping: Cell<bool>,
    exit: Cell<bool>,
    signals: RefCell<Option<SignalPipe>>,
    signal_handlers: RefCell<HashMap<libc::c_int, Vec<SignalHandler>>>,
    /// Set by `stop_now`: the shutdown stops waiting for `before` work.
    cut: Rc<Cut>,
    /// What to do with the panics the reactor catches.
    panic_mode: Cell<UnhandledPanic>,
    /// The first panic that stopped the reactor (`UnhandledPanic::StopReactor`), for `run`
    /// to return.
    panicked: RefCell<Option<Error>>,
    /// The name resolver installed in place of the `getaddrinfo` thread, if any.
    resolver: RefCell<Option<Rc<dyn crate::endpoints::Resolver>>>,
}

impl Drop for Inner {
    /// A reactor dropped without `stop()` still closes everything it watches: each source
    /// drops its descriptor and what it holds (its protocol may hold a transport, which
    /// holds the source: a cycle the slab alone would not break).
    fn drop(&mut self) {
        self.shared.close();
        self.executor.clear();
        let sources = self.sources.get_mut().take_all();
        for source in &sources {
            source.reactor_dropped();
        }
        drop(sources);
        self.dirty.get_mut().clear();
        self.resolver.get_mut().take();
    }
}

impl Reactor {
    /// A new reactor, not yet running.
    pub fn new() -> io::Result<Reactor> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let shared = Arc::new(Shared::new(waker));
        let origin = sys::time::monotonic_nanos();
        let inner = Rc::new(Inner {
            poll: RefCell::new(poll),
            events: RefCell::new(Events::with_capacity(1024)),
            sources: RefCell::new(Slab::new()),
            timers: TimerQueue::new(move || sys::time::monotonic_nanos().saturating_sub(origin)),
            soon: RefCell::new(VecDeque::new()),
            dirty: RefCell::new(Vec::new()),
            dirty_spare: RefCell::new(Vec::new()),
            io: Rc::new(IoBuffers::new()),
            executor: Executor::new(shared.clone()),
            shared,
            remote_scratch: RefCell::new(Queued::default()),
            triggers: Triggers::default(),
            in_run: Cell::new(false),
            running: Cell::new(false),
            starting: Cell::new(false),
            stop_requested: Cell::new(false),
            stopping: Cell::new(false),
            exit: Cell::new(false),
            signals: RefCell::new(None),
            signal_handlers: RefCell::new(HashMap::new()),
            cut: Rc::new(Cut::default()),
            panic_mode: Cell::new(UnhandledPanic::Ignore),
            panicked: RefCell::new(None),
            resolver: RefCell::new(None),
        });
        let reactor = Reactor { inner };
        reactor.add_system_event_trigger(Phase::During, SystemEvent::Shutdown, {
            let weak = reactor.downgrade();
            move || {
                if let Some(r) = weak.upgrade() {
                    r.disconnect_all();
                }
                None
            }
        });
        Ok(reactor)
    }

    /// Runs the loop until [`stop`](Reactor::stop) and the shutdown triggers complete.
    ///
    /// The startup triggers run first; a `stop()` made before `run` (or during startup) is
    /// honoured once they have: the reactor then shuts down at once, as Twisted's does.
    /// On the main thread, SIGINT and SIGTERM are handled for the duration: they stop the
    /// reactor gracefully. Fails if this reactor is already running, and with
    /// [`Error::UnhandledPanic`] if a panic stopped it (see
    /// [`set_unhandled_panic`](Reactor::set_unhandled_panic)).
    pub fn run(&self) -> Result<(), Error> {
        let inner = &*self.inner;
        if inner.in_run.get() {
            return Err(Error::AlreadyRunning);
        }
        // A panic caught while the loop was driven by `iterate` (which cannot stop it).
        if let Some(err) = self.take_panic() {
            return Err(err);
        }
        inner.in_run.set(true);
        let _current = panics::Current::enter(&self.inner);
        inner.stopping.set(false);
        inner.exit.set(false);
        inner.cut.reset();
        inner.starting.set(true);
        let installed = std::thread::current().name() == Some("main")
            && inner.signals.borrow().is_none()
            && match self.install_signal_handlers() {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!("could not install signal handlers: {err}");
                    false
                }
            };
        let this = self.clone();
        self.call_soon(move || {
            this.fire_system_event(SystemEvent::Startup, |r| {
                r.inner.running.set(true);
                r.inner.starting.set(false);
                if r.inner.stop_requested.replace(false) {
                    r.stop();
                }
            })
        });
        while !inner.exit.get() {
            self.turn(None);
        }
        inner.running.set(false);
        inner.starting.set(false);
        inner.in_run.set(false);
        if installed {
            self.uninstall_signal_handlers();
        }
        match self.take_panic() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Runs the loop until `future` completes, then stops the reactor and returns the
    /// future's output (the reactor can be run again afterwards). A [`Deferred`] is a
    /// future: its output is its `Result<T, Failure>`, hence `run_until(d)??` in a `main`
    /// that returns `Result<_, Box<dyn Error>>`.
    ///
    /// The future is first polled once the reactor is running (after the startup
    /// triggers). When it completes the reactor stops as [`stop`](Reactor::stop) does:
    /// the shutdown triggers run, listening ports close and connections still open are
    /// dropped (their protocols get `connection_lost` with
    /// [`Error::ShuttingDown`]), so nothing started for the future outlives the call. If
    /// the reactor is stopped first (`stop()`, Ctrl-C), the future is dropped when
    /// shutdown begins and this returns [`Error::ShuttingDown`]. Fails with
    /// [`Error::AlreadyRunning`] inside a running reactor: `await` there instead.
    ///
    /// ```
    /// use std::time::Duration;
    /// use twistor::Reactor;
    /// use twistor::task::defer_later;
    ///
    /// let reactor = Reactor::new()?;
    /// let answer = defer_later(&reactor, Duration::from_millis(1), || Ok(42));
    /// assert_eq!(reactor.run_until(answer)??, 42);
    /// // Any future will do, and the reactor runs again.
    /// let sum = reactor.run_until(async { 20 + 22 })?;
    /// assert_eq!(sum, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`Deferred`]: crate::defer::Deferred
    pub fn run_until<F>(&self, future: F) -> Result<F::Output, Error>
    where
        F: IntoFuture,
        F::IntoFuture: 'static,
        F::Output: 'static,
    {
        if self.inner.in_run.get() {
            return Err(Error::AlreadyRunning);
        }
        let output: Rc<RefCell<Option<F::Output>>> = Rc::new(RefCell::new(None));
        let task: Rc<RefCell<Option<TaskHandle>>> = Rc::new(RefCell::new(None));
        let future = future.into_future();
        let (this, slot, handle) = (self.clone(), output.clone(), task.clone());
        self.call_when_running(move || {
            let stopper = this.clone();
            let spawned = this.spawn_task(async move {
                let value = future.await;
                *slot.borrow_mut() = Some(value);
                stopper.stop();
            });
            *handle.borrow_mut() = Some(spawned);
        });
        // Stopped from elsewhere: drop the future before connections close under it.
        let abort = task.clone();
        let trigger =
            self.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
                if let Some(task) = abort.borrow_mut().take() {
                    task.abort();
                }
                None
            });
        let ran = self.run();
        self.remove_system_event_trigger(trigger);
        if let Some(task) = task.borrow_mut().take() {
            task.abort();
        }
        ran?;
        let value = output.borrow_mut().take();
        value.ok_or(Error::ShuttingDown)
    }

    /// Stops the reactor: the shutdown triggers run (`before` work is waited for, `during`
    /// closes ports and connections), then [`run`](Reactor::run) returns. Called before
    /// `run` or during startup, it takes effect once startup completes (so `run` starts up
    /// and shuts down at once). Calling it when the reactor is already stopping does
    /// nothing.
    pub fn stop(&self) {
        let inner = &*self.inner;
        if !inner.in_run.get() || inner.starting.get() {
            inner.stop_requested.set(true);
            return;
        }
        if inner.stopping.replace(true) {
            tracing::debug!("stop() ignored: the reactor is already stopping");
            return;
        }
        let this = self.clone();
        self.call_soon(move || {
            this.fire_system_event(SystemEvent::Shutdown, |r| {
                r.inner.running.set(false);
                r.inner.exit.set(true);
            })
        });
    }

    /// Stops the reactor without waiting: like [`stop`](Reactor::stop), but work that
    /// `before` shutdown triggers handed back (a grace period for connections to finish,
    /// say) is no longer waited for, and connections are dropped at once. A second SIGINT
    /// or SIGTERM during a shutdown does this.
    pub fn stop_now(&self) {
        if !self.inner.in_run.get() {
            return;
        }
        self.stop();
        self.inner.cut.fire();
    }

    /// Whether the reactor has started up and is not shutting down.
    pub fn running(&self) -> bool {
        self.inner.running.get()
    }

    /// Runs `f` once the reactor is running: now if it already is, else after startup.
    pub fn call_when_running(&self, f: impl FnOnce() + 'static) {
        if self.inner.running.get() {
            f();
            return;
        }
        let mut f = Some(f);
        self.inner.triggers.add(
            Phase::After,
            SystemEvent::Startup,
            true,
            Box::new(move || {
                if let Some(f) = f.take() {
                    f();
                }
                None
            }),
        );
    }

    /// Adds a trigger run at each firing of `event`, in `phase`. A `Before` trigger may
    /// return [`PendingWork`]; the later phases wait until all such work completes (so a
    /// `Before`/`Shutdown` trigger can delay shutdown until, say, connections have drained).
    pub fn add_system_event_trigger(
        &self,
        phase: Phase,
        event: SystemEvent,
        f: impl FnMut() -> Option<PendingWork> + 'static,
    ) -> TriggerId {
        self.inner.triggers.add(phase, event, false, Box::new(f))
    }

    /// Removes a trigger; false if it was not registered.
    pub fn remove_system_event_trigger(&self, id: TriggerId) -> bool {
        self.inner.triggers.remove(id)
    }

    /// Runs `f` once, `delay` from now.
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
        self.inner.timers.schedule(delay, Box::new(f))
    }

    /// Seconds on the reactor's monotonic clock (origin unspecified).
    pub fn seconds(&self) -> f64 {
        nanos_to_seconds(self.inner.timers.now())
    }

    /// Installs `resolver` for the host names this reactor's TCP connections and hostname
    /// endpoints look up (Twisted's `installNameResolver`), in place of the default: a
    /// thread running the system's `getaddrinfo` per lookup. `twistor-dns`'s `Resolver`
    /// implements the trait. The reactor keeps it until another is installed or the reactor
    /// is dropped; a resolver should hold the reactor weakly ([`Reactor::downgrade`]), or the
    /// two keep each other alive.
    pub fn install_resolver(&self, resolver: Rc<dyn crate::endpoints::Resolver>) {
        *self.inner.resolver.borrow_mut() = Some(resolver);
    }

    /// The resolver installed by [`install_resolver`](Reactor::install_resolver), if any
    /// (`None`: lookups run `getaddrinfo` on a thread).
    pub fn installed_resolver(&self) -> Option<Rc<dyn crate::endpoints::Resolver>> {
        self.inner.resolver.borrow().clone()
    }

    /// The calls scheduled with `call_later` that have not run, earliest first.
    pub fn delayed_calls(&self) -> Vec<DelayedCall> {
        self.inner.timers.pending()
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle {
            shared: self.inner.shared.clone(),
        }
    }

    /// Runs `f` on the reactor thread at the start of the next turn, before any I/O
    /// (cheaper than a zero-delay `call_later`). Calls run in the order queued.
    pub fn call_soon(&self, f: impl FnOnce() + 'static) {
        self.inner.soon.borrow_mut().push_back(Box::new(f));
    }

    /// Spawns a future on the reactor thread. It is polled from the loop whenever it is
    /// woken; a panic in it is logged and ends only that task.
    pub fn spawn_task(&self, future: impl Future<Output = ()> + 'static) -> TaskHandle {
        self.inner.executor.spawn(&self.inner, Box::pin(future))
    }

    /// Calls `f` on the reactor thread for each delivery of `signal` (SIGHUP, SIGUSR1...),
    /// once signal handlers are installed ([`install_signal_handlers`], or `run` on the main
    /// thread). SIGINT and SIGTERM also stop the reactor, after their handlers run.
    ///
    /// [`install_signal_handlers`]: Reactor::install_signal_handlers
    pub fn add_signal_handler(
        &self,
        signal: libc::c_int,
        f: impl Fn() + 'static,
    ) -> io::Result<()> {
        self.inner
            .signal_handlers
            .borrow_mut()
            .entry(signal)
            .or_default()
            .push(Rc::new(f));
        if let Some(pipe) = self.inner.signals.borrow_mut().as_mut() {
            pipe.add(signal)?;
        }
        Ok(())
    }

    /// Makes this reactor the owner of the process's signal handlers: SIGINT and SIGTERM
    /// stop it, and handlers added with [`add_signal_handler`](Reactor::add_signal_handler)
    /// run. `run` does this by itself on the main thread.
    pub fn install_signal_handlers(&self) -> io::Result<()> {
        if self.inner.signals.borrow().is_some() {
            return Ok(());
        }
        let mut wanted = vec![libc::SIGINT, libc::SIGTERM];
        wanted.extend(self.inner.signal_handlers.borrow().keys().copied());
        wanted.sort_unstable();
        wanted.dedup();
        let pipe = SignalPipe::install(&wanted)?;
        self.inner.poll.borrow().registry().register(
            &mut SourceFd(&pipe.read_fd().as_raw_fd()),
            SIGNAL_TOKEN,
            Interest::READABLE,
        )?;
        *self.inner.signals.borrow_mut() = Some(pipe);
        Ok(())
    }

    fn uninstall_signal_handlers(&self) {
        if let Some(pipe) = self.inner.signals.borrow_mut().take() {
            let _ = self
                .inner
                .poll
                .borrow()
                .registry()
                .deregister(&mut SourceFd(&pipe.read_fd().as_raw_fd()));
        }
    }

    /// How many sources are registered (listening ports, connections...).
    pub fn source_count(&self) -> usize {
        self.inner.sources.borrow().len()
    }

    /// Lends `f` a buffer of `len` bytes for a batch of datagrams (grown on first use, kept
    /// for the next batch; a fresh one if it is already lent).
    #[inline]
    pub(crate) fn with_datagram_buffer<R>(&self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.inner.io.with_datagram_buffer(len, f)
    }

    /// The buffers the reactor's connections share.
    pub(crate) fn io_buffers(&self) -> Rc<IoBuffers> {
        self.inner.io.clone()
    }

    /// A weak handle, for objects the reactor owns that need to reach it back.
    pub fn downgrade(&self) -> WeakReactor {
        WeakReactor {
            inner: Rc::downgrade(&self.inner),
        }
    }

    /// Whether two handles name the same reactor.
    pub fn ptr_eq(&self, other: &Reactor) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    fn fire_system_event(&self, event: SystemEvent, done: impl FnOnce(&Reactor) + 'static) {
        let pending = self.inner.triggers.fire(event, Phase::Before);
        let this = self.clone();
        let rest = move || {
            if event == SystemEvent::Startup {
                // Twisted's `running` turns true during startup, so `call_when_running`
                // from a `During` trigger runs at once.
                this.inner.running.set(true);
            }
            this.inner.triggers.fire(event, Phase::During);
            this.inner.triggers.fire(event, Phase::After);
            done(&this);
        };
        if pending.is_empty() {
            rest();
        } else {
            let cut = (event == SystemEvent::Shutdown).then(|| self.inner.cut.clone());
            self.spawn_task(async move {
                JoinAll { pending, cut }.await;
                rest();
            });
        }
    }

    fn disconnect_all(&self) {
        let all = self.inner.sources.borrow().all();
        for source in all {
            source.shutdown(self);
        }
    }

    /// Runs one turn of the loop without [`run`](Reactor::run) (Twisted's `iterate`):
    /// due timers and queued calls, then I/O, waiting for it no longer than `delay` (nor
    /// past the next timer). For driving the reactor from a loop it does not own, and for
    /// tests; startup and shutdown triggers do not run.
    pub fn iterate(&self, delay: Duration) {
        let _current = panics::Current::enter(&self.inner);
        self.turn(Some(delay));
    }

    /// One turn of the loop, waiting for I/O at most `max_wait` (`None`: until the next
    /// timer, or for ever).
    fn turn(&self, max_wait: Option<Duration>) {
        let inner = &*self.inner;
        self.run_timers();
        self.run_remote();
        self.run_soon();
        inner.executor.run_ready();
        self.flush_dirty();
        if inner.exit.get() {
            return;
        }
        let timeout = match (self.poll_timeout(), max_wait) {
            (Some(t), Some(max)) => Some(t.min(max)),
            (t, max) => t.or(max),
        };
        let mut events = inner.events.borrow_mut();
        if let Err(err) = inner.poll.borrow_mut().poll(&mut events, timeout) {
            if err.kind() != io::ErrorKind::Interrupted {
                crate::log::report_error!("epoll_wait failed: {err}");
            }
            return;
        }
        for event in events.iter() {
            let token = event.token();
            if token == WAKER_TOKEN {
                continue;
            }
            if token == SIGNAL_TOKEN {
                self.handle_signals();
                continue;
            }
            let source = inner.sources.borrow().get(token.0).cloned();
            if let Some(source) = source {
                let readiness = Readiness {
                    readable: event.is_readable(),
                    writable: event.is_writable(),
                    read_closed: event.is_read_closed(),
                    write_closed: event.is_write_closed(),
                    error: event.is_error(),
                };
                // On a panic the source is looked up again by its token: cloning the
                // handle on every event would cost the hot path.
                let recover = || inner.sources.borrow().get(token.0).cloned();
                self.guarded(source, recover, |s| s.ready(self, readiness));
            }
        }
        drop(events);
        self.flush_dirty();
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let inner = &*self.inner;
        if !inner.soon.borrow().is_empty()
            || inner.executor.has_ready()
            || inner.shared.has_pending()
            || !inner.dirty.borrow().is_empty()
        {
            return Some(Duration::ZERO);
        }
        let deadline = inner.timers.next_deadline()?;
        Some(Duration::from_nanos(
            deadline.saturating_sub(inner.timers.now()),
        ))
    }

    fn run_timers(&self) {
        let timers = &self.inner.timers;
        if timers.is_empty() {
            return;
        }
        let now = timers.now();
        let limit = timers.next_seq();
        while let Some(f) = timers.pop_due(now, Some(limit)) {
            run_guarded("delayed call", f);
        }
    }

    fn run_remote(&self) {
        let inner = &*self.inner;
        if !inner.shared.has_pending() {
            return;
        }
        let mut queued = std::mem::take(&mut *inner.remote_scratch.borrow_mut());
        inner.shared.take(&mut queued);
        inner.executor.enqueue(queued.tasks.drain(..));
        for call in queued.calls.drain(..) {
            run_guarded("call from thread", move || call(self));
        }
        *inner.remote_scratch.borrow_mut() = queued;
    }

    fn run_soon(&self) {
        let count = self.inner.soon.borrow().len();
        for _ in 0..count {
            let Some(f) = self.inner.soon.borrow_mut().pop_front() else {
                break;
            };
            run_guarded("soon call", f);
        }
    }

    fn flush_dirty(&self) {
        let inner = &*self.inner;
        if inner.dirty.borrow().is_empty() {
            return;
        }
        for _ in 0..MAX_FLUSH_ROUNDS {
            let mut batch = std::mem::take(&mut *inner.dirty_spare.borrow_mut());
            std::mem::swap(&mut batch, &mut *inner.dirty.borrow_mut());
            if batch.is_empty() {
                *inner.dirty_spare.borrow_mut() = batch;
                return;
            }
            for source in batch.drain(..) {
                let again = source.clone();
                self.guarded(source, move || Some(again), |s| s.flush(self));
            }
            *inner.dirty_spare.borrow_mut() = batch;
        }
    }

    /// Runs one of `source`'s entry points. Protocol callbacks catch their own panics (the
    /// guard); this catches the rest — a producer's or a client factory's callback run by
    /// the source — so it costs only that source, which is shut down.
    /// `recover` finds the source again for that.
    #[inline]
    fn guarded(
        &self,
        source: Rc<dyn Source>,
        recover: impl FnOnce() -> Option<Rc<dyn Source>>,
        f: impl FnOnce(Rc<dyn Source>),
    ) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(move || f(source))) {
            report_panic(
                format_args!("a callback of an event source (a producer, a client factory)"),
                &panic_message(&*panic),
            );
            if let Some(source) = recover() {
                source.shutdown(self);
            }
        }
    }

    fn handle_signals(&self) {
        let received = match self.inner.signals.borrow().as_ref() {
            Some(pipe) => pipe.drain(),
            None => return,
        };
        for signal in received {
            let handlers: Vec<SignalHandler> = self
                .inner
                .signal_handlers
                .borrow()
                .get(&signal)
                .cloned()
                .unwrap_or_default();
            for handler in handlers {
                run_guarded("signal handler", || handler());
            }
            if signal == libc::SIGINT || signal == libc::SIGTERM {
                if self.inner.stopping.get() {
                    tracing::info!(
                        "Received {} again, closing every connection now.",
                        signal_name(signal)
                    );
                    self.stop_now();
                } else {
                    tracing::info!("Received {}, shutting down.", signal_name(signal));
                    self.stop();
                }
            }
        }
    }
}

impl crate::unstable::ReactorInternals for Reactor {
    fn register(
        &self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        source: Rc<dyn Source>,
    ) -> io::Result<usize> {
        let token = self.inner.sources.borrow_mut().insert(source);
        let result = self.inner.poll.borrow().registry().register(
            &mut SourceFd(&fd.as_raw_fd()),
            Token(token),
            interest,
        );
        match result {
            Ok(()) => Ok(token),
            Err(err) => {
                self.inner.sources.borrow_mut().remove(token);
                Err(err)
            }
        }
    }

    fn deregister(&self, token: usize, fd: Option<BorrowedFd<'_>>) {
        self.inner.sources.borrow_mut().remove(token);
        if let Some(fd) = fd {
            let _ = self
                .inner
                .poll
                .borrow()
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
    }

    fn replace_source(&self, token: usize, source: Rc<dyn Source>) -> bool {
        self.inner.sources.borrow_mut().replace(token, source)
    }

    fn mark_dirty(&self, source: Rc<dyn Source>) {
        self.inner.dirty.borrow_mut().push(source);
    }
}

impl ReactorTime for Reactor {
    fn seconds(&self) -> f64 {
        Reactor::seconds(self)
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.inner.timers.schedule(delay, f)
    }
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("running", &self.running())
            .field("sources", &self.source_count())
            .field("delayed_calls", &self.inner.timers.len())
            .field("tasks", &self.inner.executor.live())
            .finish()
    }
}

/// A weak handle on a reactor (does not keep it alive).
#[derive(Clone)]
pub struct WeakReactor {
    inner: Weak<Inner>,
}

impl WeakReactor {
    /// The reactor, if it still exists.
    pub fn upgrade(&self) -> Option<Reactor> {
        self.inner.upgrade().map(|inner| Reactor { inner })
    }
}

/// Buffers shared by all the connections of one reactor: the one read buffer, and the
/// staging buffer where a connection's replies wait while its protocol runs.
pub(crate) struct IoBuffers {
    pub(crate) read: RefCell<Vec<u8>>,
    /// Output written by a connection while its own protocol runs, sent when the callback
    /// returns. It keeps its capacity, so the common turn — a request read, a reply written
    /// and sent — allocates nothing.
    pub(crate) staging: RefCell<Vec<u8>>,
    /// The connection whose bytes `staging` holds (an address used only for comparison;
    /// null when empty).
    pub(crate) staging_owner: Cell<*const ()>,
    /// Where datagram sockets receive a batch of datagrams (`recvmmsg`): empty until the first
    /// UDP read, then as large as the largest batch (bounded by the datagram module).
    pub(crate) datagrams: RefCell<Vec<u8>>,
}

impl IoBuffers {
    fn new() -> IoBuffers {
        IoBuffers {
            read: RefCell::new(vec![0; READ_BUFFER_SIZE]),
            staging: RefCell::new(Vec::new()),
            staging_owner: Cell::new(std::ptr::null()),
            datagrams: RefCell::new(Vec::new()),
        }
    }

    /// Lends `len` bytes of the datagram buffer to `f` (or a fresh one, if it is already
    /// lent).
    #[inline]
    fn with_datagram_buffer<R>(&self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        match self.datagrams.try_borrow_mut() {
            Ok(mut buf) => {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                f(&mut buf[..len])
            }
            Err(_) => f(&mut vec![0; len]),
        }
    }
}

/// Waits for every future in `pending`, or until `cut` fires.
struct JoinAll {
    pending: Vec<PendingWork>,
    cut: Option<Rc<Cut>>,
}

impl Future for JoinAll {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(cut) = &self.cut {
            if cut.fired.get() {
                // The work is abandoned: dropped here, with whatever it holds.
                self.pending.clear();
                return Poll::Ready(());
            }
            *cut.waker.borrow_mut() = Some(cx.waker().clone());
        }
        self.pending
            .retain_mut(|work| work.as_mut().poll(cx).is_pending());
        if self.pending.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// `stop_now`'s signal to a shutdown waiting for `before` work.
#[derive(Default)]
struct Cut {
    fired: Cell<bool>,
    waker: RefCell<Option<std::task::Waker>>,
}

impl Cut {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn reset(&self) {
        self.fired.set(false);
        self.waker.borrow_mut().take();
    }
}

/// Runs a callback from the loop, reporting a panic instead of unwinding through the
/// reactor.
fn run_guarded(what: &str, f: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        report_panic(format_args!("a {what}"), &panic_message(&*panic));
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGCHLD => "SIGCHLD",
        _ => "a signal",
    }
}
