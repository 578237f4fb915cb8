//! Threads for blocking work: a [`ThreadPool`] owned by the reactor,
//! [`Reactor::defer_to_thread`] to run a blocking function there and get its result as a
//! Deferred, and [`blocking_call_from_thread`] for pool threads that need something from the
//! reactor (Twisted's `deferToThread`, `callInThread`, `blockingCallFromThread`).
//!
//! The reactor stays single-threaded: results come back through
//! [`ReactorHandle::call_from_thread`], and Deferreds are only touched on the reactor thread.
//!
//! The reactor's pool starts no thread until the first job, and grows (up to its size)
//! only while every thread is busy. When the reactor shuts down, a `Before`/`Shutdown`
//! trigger lets the pool finish the jobs already queued while the reactor keeps running
//! (so those jobs may still call into it), then joins the threads.
//!
//! ```
//! use twistor::Reactor;
//!
//! let reactor = Reactor::new().unwrap();
//! let d = reactor.defer_to_thread(|| (1..=10u64).product::<u64>());
//! let r = reactor.clone();
//! d.add_both(move |result| { r.stop(); result });
//! reactor.run().unwrap();
//! assert_eq!(d.try_result().unwrap().unwrap(), 3_628_800);
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::defer::local::reactor_local;
use crate::defer::{Deferred, DeferredError, Failure};
use crate::reactor::{Phase, Reactor, ReactorHandle, SystemEvent, panic_message};

/// Twisted's default reactor pool size.
pub const DEFAULT_POOL_SIZE: usize = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A pool of threads running blocking jobs, first come, first served.
///
/// Threads are started lazily, one more whenever a job arrives and none is idle, up to
/// the size. Cloning gives another handle on the same pool; it is `Send + Sync`.
#[derive(Clone)]
pub struct ThreadPool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    name: String,
    state: Mutex<PoolState>,
    work: Condvar,
}

struct PoolState {
    jobs: VecDeque<Job>,
    max_threads: usize,
    threads: usize,
    idle: usize,
    /// Workers exit once the queue is empty.
    stopping: bool,
    handles: Vec<JoinHandle<()>>,
    /// Called by the last worker to exit while stopping.
    on_drained: Option<Box<dyn FnOnce() + Send>>,
}

impl ThreadPool {
    /// A pool of at most `max_threads` threads (at least one) named `name-N`.
    pub fn new(name: &str, max_threads: usize) -> ThreadPool {
        ThreadPool {
            shared: Arc::new(PoolShared {
                name: name.to_string(),
                state: Mutex::new(PoolState {
                    jobs: VecDeque::new(),
                    max_threads: max_threads.max(1),
                    threads: 0,
                    idle: 0,
                    stopping: false,
                    handles: Vec::new(),
                    on_drained: None,
                }),
                work: Condvar::new(),
            }),
        }
    }

    /// Queues `job` to run on a pool thread (Twisted's `callInThread`). A panic in it is
    /// logged and costs only that job.
    pub fn call_in_thread(&self, job: impl FnOnce() + Send + 'static) {
        let mut st = self.shared.lock();
        st.jobs.push_back(Box::new(job));
        if st.idle >= st.jobs.len() {
            self.shared.work.notify_one();
        } else if st.threads < st.max_threads && !st.stopping {
            self.spawn_worker(&mut st);
        }
    }

    /// Changes the most threads the pool may run; extra threads exit as they become
    /// idle.
    pub fn set_max_threads(&self, max_threads: usize) {
        let mut st = self.shared.lock();
        st.max_threads = max_threads.max(1);
        while st.threads < st.max_threads && st.jobs.len() > st.idle && !st.stopping {
            self.spawn_worker(&mut st);
        }
        self.shared.work.notify_all();
    }

    /// The most threads the pool may run.
    pub fn max_threads(&self) -> usize {
        self.shared.lock().max_threads
    }

    /// Threads running now (busy or idle).
    pub fn threads(&self) -> usize {
        self.shared.lock().threads
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Finishes the jobs queued, then joins every thread. Blocks the caller meanwhile; the
    /// reactor's own pool is stopped without blocking the loop (see the module docs). The
    /// pool may be used again afterwards: threads start anew.
    pub fn stop(&self) {
        let handles = {
            let mut st = self.shared.lock();
            st.stopping = true;
            self.shared.work.notify_all();
            std::mem::take(&mut st.handles)
        };
        for handle in handles {
            if handle.thread().id() == thread::current().id() {
                continue;
            }
            let _ = handle.join();
        }
        let mut st = self.shared.lock();
        st.handles.retain(|h| !h.is_finished());
        st.stopping = false;
        while st.threads < st.max_threads && st.jobs.len() > st.idle {
            self.spawn_worker(&mut st);
        }
    }

    /// Starts stopping: threads exit once the queue is empty, and the last one to exit
    /// calls `drained` (at once if no thread is running).
    fn stop_then(&self, drained: impl FnOnce() + Send + 'static) {
        let mut st = self.shared.lock();
        st.stopping = true;
        self.shared.work.notify_all();
        if st.threads == 0 {
            drop(st);
            drained();
        } else {
            st.on_drained = Some(Box::new(drained));
        }
    }

    fn spawn_worker(&self, st: &mut PoolState) {
        let shared = self.shared.clone();
        let name = format!("{}-{}", self.shared.name, st.threads + st.handles.len());
        match thread::Builder::new()
            .name(name)
            .spawn(move || shared.worker())
        {
            Ok(handle) => {
                st.threads += 1;
                st.handles.push(handle);
            }
            Err(err) => tracing::error!("could not start a pool thread: {err}"),
        }
    }
}

impl PoolShared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn worker(&self) {
        loop {
            let job = {
                let mut st = self.lock();
                loop {
                    if st.threads > st.max_threads {
                        break None;
                    }
                    if let Some(job) = st.jobs.pop_front() {
                        break Some(job);
                    }
                    if st.stopping {
                        break None;
                    }
                    st.idle += 1;
                    st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.idle -= 1;
                }
            };
            match job {
                Some(job) => {
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(job)) {
                        tracing::error!("thread pool job panicked: {}", panic_message(&*panic));
                    }
                }
                None => break,
            }
        }
        let drained = {
            let mut st = self.lock();
            st.threads -= 1;
            if st.threads == 0 && st.stopping {
                st.on_drained.take()
            } else {
                None
            }
        };
        if let Some(drained) = drained {
            drained();
        }
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("ThreadPool")
            .field("name", &self.shared.name)
            .field("max_threads", &st.max_threads)
            .field("threads", &st.threads)
            .field("idle", &st.idle)
            .field("queued", &st.jobs.len())
            .finish()
    }
}

/// The reactor's pool, owned by the reactor through its shutdown triggers.
struct ReactorPool {
    pool: ThreadPool,
}

impl Drop for ReactorPool {
    /// The reactor is gone: let the threads finish what is queued and exit. (Not joined
    /// here: a job waiting on the dead reactor must not hang the thread dropping it.)
    fn drop(&mut self) {
        self.pool.stop_then(|| {});
    }
}

impl Reactor {
    /// The reactor's thread pool (created on first use with [`DEFAULT_POOL_SIZE`] threads at
    /// most; no thread starts until a job arrives).
    pub fn thread_pool(&self) -> ThreadPool {
        reactor_local(self, || {
            let owned = Rc::new(ReactorPool {
                pool: ThreadPool::new("twistor-pool", DEFAULT_POOL_SIZE),
            });
            let (before, handle) = (owned.clone(), self.handle());
            self.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
                // Let queued jobs finish while the reactor still runs (they may call into
                // it), then the `During` trigger joins the exited threads.
                let done: Deferred<()> = Deferred::new();
                let id = park(done.clone());
                let handle = handle.clone();
                before.pool.stop_then(move || {
                    let _ = handle.call_from_thread(move |_| {
                        if let Some(d) = unpark::<()>(id) {
                            let _ = d.callback(());
                        }
                    });
                });
                Some(Box::pin(async move {
                    let _ = done.await;
                }))
            });
            let during = owned.clone();
            self.add_system_event_trigger(Phase::During, SystemEvent::Shutdown, move || {
                during.pool.stop();
                None
            });
            owned
        })
        .pool
        .clone()
    }

    /// Sets the most threads the reactor's pool may run (Twisted's `suggestThreadPoolSize`).
    pub fn suggest_thread_pool_size(&self, max_threads: usize) {
        self.thread_pool().set_max_threads(max_threads);
    }

    /// Runs `job` on the reactor's thread pool (Twisted's `callInThread`).
    pub fn call_in_thread(&self, job: impl FnOnce() + Send + 'static) {
        self.thread_pool().call_in_thread(job);
    }

    /// Runs the blocking function `f` on the reactor's thread pool and returns a Deferred
    /// that fires, on the reactor thread, with what it returned (Twisted's `deferToThread`).
    /// A panic in `f` fails the Deferred with [`DeferredError::Panicked`].
    ///
    /// The job cannot be interrupted: cancelling the Deferred fails it with `Cancelled` at
    /// once and drops the result when it arrives.
    pub fn defer_to_thread<T, F>(&self, f: F) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.try_defer_to_thread(move || Ok::<T, Failure>(f()))
    }

    /// Like [`defer_to_thread`](Reactor::defer_to_thread) for a function that can fail: an
    /// `Err` fails the Deferred.
    pub fn try_defer_to_thread<T, E, F>(&self, f: F) -> Deferred<T>
    where
        T: Send + 'static,
        E: Into<Failure> + Send + 'static,
        F: FnOnce() -> Result<T, E> + Send + 'static,
    {
        let d = Deferred::new();
        let id = park(d.clone());
        let handle = self.handle();
        self.call_in_thread(move || {
            let result: Result<T, Failure> = match catch_unwind(AssertUnwindSafe(f)) {
                Ok(result) => result.map_err(Into::into),
                Err(panic) => Err(Failure::new(DeferredError::Panicked(panic_message(
                    &*panic,
                )))),
            };
            let _ = handle.call_from_thread(move |_| {
                if let Some(d) = unpark::<T>(id) {
                    let _ = d.resolve(result);
                }
            });
        });
        d
    }
}

/// Runs `f` on the reactor thread from another thread, waits for the Deferred it returns to
/// fire, and returns its result (Twisted's `blockingCallFromThread`). For code on a pool
/// thread that needs the reactor: to write to a transport, to wait for a network reply.
///
/// Fails with [`DeferredError::WouldDeadlock`] if called on the reactor thread itself, and
/// with [`DeferredError::ReactorGone`] if the reactor is dropped before answering.
pub fn blocking_call_from_thread<T, F>(handle: &ReactorHandle, f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&Reactor) -> Deferred<T> + Send + 'static,
{
    if handle.is_reactor_thread() {
        return Err(Failure::new(DeferredError::WouldDeadlock));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle
        .call_from_thread(move |reactor| {
            let d = match catch_unwind(AssertUnwindSafe(|| f(reactor))) {
                Ok(d) => d,
                Err(panic) => Deferred::failed(DeferredError::Panicked(panic_message(&*panic))),
            };
            d.consume(move |result| {
                let _ = tx.send(result);
            });
        })
        .map_err(|_| Failure::new(DeferredError::ReactorGone))?;
    loop {
        match rx.recv_timeout(REACTOR_PROBE_INTERVAL) {
            Ok(result) => return result,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Failure::new(DeferredError::ReactorGone));
            }
            // A call queued in a reactor that has since been dropped is never run (nor
            // dropped, which would disconnect us): check now and then that it is alive.
            Err(RecvTimeoutError::Timeout) => {
                if handle.call_from_thread(|_| {}).is_err() {
                    return Err(Failure::new(DeferredError::ReactorGone));
                }
            }
        }
    }
}

/// How often a thread blocked in `blocking_call_from_thread` checks the reactor still
/// exists.
const REACTOR_PROBE_INTERVAL: Duration = Duration::from_millis(250);

// Deferreds waiting for a pool thread's answer. They are `!Send`, so they stay here, on
// the reactor thread, and the answer comes back with just their number.

static NEXT_PARKED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static PARKED: RefCell<HashMap<u64, Box<dyn std::any::Any>>> = RefCell::new(HashMap::new());
}

fn park<T: 'static>(d: Deferred<T>) -> u64 {
    let id = NEXT_PARKED.fetch_add(1, Ordering::Relaxed);
    PARKED.with(|p| p.borrow_mut().insert(id, Box::new(d)));
    id
}

fn unpark<T: 'static>(id: u64) -> Option<Deferred<T>> {
    let parked = PARKED.with(|p| p.borrow_mut().remove(&id))?;
    parked.downcast::<Deferred<T>>().ok().map(|d| *d)
}
