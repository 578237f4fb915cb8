//! Deferreds: results that arrive later, with Twisted's semantics and Rust's types.
//!
//! A [`Deferred<T>`] stands for a `Result<T, Failure>` that is not there yet. Whoever
//! produces it fires it once, with [`callback`](Deferred::callback) or
//! [`errback`](Deferred::errback); whoever consumes it adds a chain of callbacks and
//! errbacks, or `.await`s it.
//!
//! ```
//! use twistor::defer::{Deferred, Failure};
//!
//! let d: Deferred<u32> = Deferred::new();
//! d.add_callback(|n| Ok(n * 2))
//!     .add_callback(|n| Err(Failure::msg(format!("{n} is not welcome"))))
//!     .add_callback(|_| unreachable!("a failure skips callbacks"))
//!     .add_errback(|failure| {
//!         assert_eq!(failure.to_string(), "42 is not welcome");
//!         Ok(0) // recovered: back on the callback path
//!     });
//! d.callback(21).unwrap();
//! assert_eq!(d.try_result().unwrap().unwrap(), 0);
//! ```
//!
//! # Design
//!
//! **One typed chain per Deferred.** Twisted's chain passes any Python object from link to
//! link. Here every link of a `Deferred<T>` takes and gives a `Result<T, Failure>`:
//! [`add_callback`](Deferred::add_callback) takes `FnOnce(T) -> Result<T, Failure>`,
//! [`add_errback`](Deferred::add_errback) takes `FnOnce(Failure) -> Result<T, Failure>`,
//! [`add_both`](Deferred::add_both) takes the whole result. Returning `Err` moves the
//! chain to the errback path, an errback returning `Ok` moves it back: Twisted's switching
//! rules, with `?` working inside callbacks because any `std::error::Error` converts into a
//! [`Failure`]. To change the type, [`map`](Deferred::map), [`and_then`](Deferred::and_then)
//! and [`then`](Deferred::then) return a *new* `Deferred<U>` fed by this one; the value
//! moves into it (and cancelling the new one cancels this one).
//!
//! **Nested Deferreds without recursion.** A link that returns another Deferred
//! ([`add_callback_deferred`](Deferred::add_callback_deferred),
//! [`and_then_deferred`](Deferred::and_then_deferred)) pauses the chain until that one
//! fires. When it does, its chain does not call back into the waiting one: it hands its
//! result over and returns the waiting Deferred to a runner that keeps the Deferreds still
//! to run on a heap stack (Twisted's `_runCallbacks` does the same). Chains of 100,000
//! nested Deferreds fire, and are dropped, without deepening the thread's stack.
//!
//! **Results move.** A value is not `Clone` in general, so when a result leaves a Deferred
//! (handed to an outer Deferred, a `map`, an `.await`, [`consume`](Deferred::consume), a
//! combinator) it is gone from it; a link added afterwards receives a
//! [`DeferredError::ResultConsumed`] failure. ([`Failure`] is cheap to clone, so
//! combinators such as [`DeferredList`] leave failures on their chains as Twisted does.)
//!
//! **Re-entrancy.** State lives in a `RefCell` that is never borrowed while user code
//! runs. A callback may add links to its own Deferred (they run after it, in order), fire
//! other Deferreds, or cancel. Firing twice is an error value
//! ([`DeferredError::AlreadyCalled`]), never a panic, and a panic inside a callback
//! becomes a [`DeferredError::Panicked`] failure on the chain.
//!
//! **Cheap links.** Every kind of link is one boxed closure of the whole result, so a
//! link is a fat pointer (closures that capture nothing allocate nothing) and running it is
//! one indirect call; the first four links live inside the Deferred, and a link added to a
//! fired, idle Deferred runs at once without being queued. `examples/bench_deferred.rs`
//! measures chain throughput.
//!
//! **Unhandled failures.** A Deferred dropped while holding a failure logs
//! "Unhandled error in Deferred" with the failure, through `tracing::error!`.
//!
//! **Futures.** `Deferred<T>` is a `Future<Output = Result<T, Failure>>`; awaiting takes
//! the result where the chain stands. [`Reactor::spawn`](crate::Reactor::spawn) (or
//! [`ensure_deferred`]) runs a future on the reactor and returns a Deferred for its output;
//! cancelling that Deferred drops the future.
//!
//! **Time is a parameter.** Timeouts ([`add_timeout`](Deferred::add_timeout)),
//! [`sleep`](crate::task::sleep) and [`defer_later`](crate::task::defer_later) take any
//! [`ReactorTime`](crate::ReactorTime), so tests run them on the test kit's `Clock`.

mod deferred;
mod failure;
mod future;
mod links;
mod list;
pub(crate) mod local;
mod lock;
mod queue;

pub use deferred::{Deferred, WeakDeferred, fail, succeed};
pub use failure::{DeferredError, Failure, FailureError, FailureGroup, FirstError};
pub use future::ensure_deferred;
pub use list::{DeferredList, ListOutcome, ListOutcomeIter, gather_results, race};
pub use lock::{DeferredLock, DeferredSemaphore};
pub use queue::DeferredQueue;
