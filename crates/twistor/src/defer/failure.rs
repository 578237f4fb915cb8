//! [`Failure`]: the error value a [`Deferred`](super::Deferred) carries down its errback
//! path, and the errors the Deferred machinery itself produces.

use std::error::Error as StdError;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

/// An error travelling down a Deferred's chain (Twisted's `Failure`).
///
/// It wraps any `std::error::Error + Send + Sync + 'static`, remembers where it was made
/// (the caller of [`Failure::new`], or the `?` that converted it), and carries a chain of
/// context messages added on the way up with [`context`](Failure::context). Cloning is
/// cheap (an `Arc` inside), and a `Failure` may cross threads, so a thread-pool job's error
/// can come back to the reactor as it is.
///
/// Like `anyhow::Error`, `Failure` does not itself implement `std::error::Error` (that would
/// forbid `From<E>` for every error type, which is what lets `?` work in callbacks). Convert
/// it with [`into_error`](Failure::into_error), or with `?` into a
/// `Box<dyn std::error::Error + Send + Sync>`.
///
/// ```
/// use twistor::defer::Failure;
///
/// let failure = Failure::new(std::io::Error::other("disk on fire")).context("saving the log");
/// assert!(failure.check::<std::io::Error>());
/// assert_eq!(failure.to_string(), "saving the log: disk on fire");
/// ```
#[derive(Clone)]
pub struct Failure {
    inner: Arc<Inner>,
}

struct Inner {
    error: Arc<dyn StdError + Send + Sync + 'static>,
    /// Innermost first.
    context: Vec<String>,
    location: &'static Location<'static>,
}

impl Failure {
    /// Wraps `error`, recording the caller's location.
    #[track_caller]
    pub fn new(error: impl StdError + Send + Sync + 'static) -> Failure {
        Failure::from_arc(Arc::new(error), Location::caller())
    }

    /// A failure whose error is just `message` (like `anyhow!`).
    #[track_caller]
    pub fn msg(message: impl fmt::Display) -> Failure {
        Failure::new(Message(message.to_string()))
    }

    /// Wraps an already boxed error.
    #[track_caller]
    pub fn from_boxed(error: Box<dyn StdError + Send + Sync + 'static>) -> Failure {
        Failure::from_arc(Arc::from(error), Location::caller())
    }

    fn from_arc(
        error: Arc<dyn StdError + Send + Sync + 'static>,
        location: &'static Location<'static>,
    ) -> Failure {
        Failure {
            inner: Arc::new(Inner {
                error,
                context: Vec::new(),
                location,
            }),
        }
    }

    /// The same failure with one more line of context on top ("while doing X").
    pub fn context(self, message: impl fmt::Display) -> Failure {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                error: shared.error.clone(),
                context: shared.context.clone(),
                location: shared.location,
            },
        };
        inner.context.push(message.to_string());
        Failure {
            inner: Arc::new(inner),
        }
    }

    /// The wrapped error.
    pub fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner.error
    }

    /// The context messages, outermost first.
    pub fn contexts(&self) -> impl Iterator<Item = &str> {
        self.inner.context.iter().rev().map(String::as_str)
    }

    /// Where the failure was made.
    pub fn location(&self) -> &'static Location<'static> {
        self.inner.location
    }

    /// Whether the wrapped error is an `E` (Twisted's `Failure.check`).
    pub fn check<E: StdError + 'static>(&self) -> bool {
        self.inner.error.is::<E>()
    }

    /// The wrapped error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.inner.error.downcast_ref::<E>()
    }

    /// The first error of type `E` in the wrapped error's `source()` chain (the wrapped error
    /// included).
    pub fn find<E: StdError + 'static>(&self) -> Option<&E> {
        self.chain().find_map(|err| err.downcast_ref::<E>())
    }

    /// The wrapped error followed by its sources.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        let first: &(dyn StdError + 'static) = &*self.inner.error;
        std::iter::successors(Some(first), |err: &&(dyn StdError + 'static)| {
            (*err).source()
        })
    }

    /// Whether this failure is a [`DeferredError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self.downcast_ref(), Some(DeferredError::Cancelled))
    }

    /// Whether this failure is a [`DeferredError::TimedOut`]: the Deferred did not fire
    /// within the time given to [`add_timeout`](super::Deferred::add_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use twistor::defer::Deferred;
    /// use twistor_testing::Clock;
    ///
    /// let clock = Clock::new();
    /// let d: Deferred<u32> = Deferred::new();
    /// d.add_timeout(Duration::from_secs(5), &clock);
    /// clock.advance(Duration::from_secs(5));
    /// let failure = d.try_result().unwrap().unwrap_err();
    /// assert!(failure.is_timed_out());
    /// assert!(!failure.is_cancelled());
    /// ```
    pub fn is_timed_out(&self) -> bool {
        matches!(self.downcast_ref(), Some(DeferredError::TimedOut(_)))
    }

    /// This failure as a standard error (display and source chain kept).
    pub fn into_error(self) -> FailureError {
        FailureError(self)
    }

    /// Whether two handles share one failure.
    pub fn ptr_eq(&self, other: &Failure) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for Failure {
    #[track_caller]
    fn from(error: E) -> Failure {
        Failure::new(error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for context in self.contexts() {
            write!(f, "{context}: ")?;
        }
        fmt::Display::fmt(&self.inner.error, f)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("error", &self.inner.error)
            .field("context", &self.contexts().collect::<Vec<_>>())
            .field("at", &format_args!("{}", self.inner.location))
            .finish()
    }
}

/// A [`Failure`] as a `std::error::Error` (see [`Failure::into_error`]).
///
/// Its `Debug` output is the message and where the failure was made, so a `main` that
/// returns one with `?` prints `Error: <message>` and the place, not a struct dump (`{:#?}`
/// gives the structure).
#[derive(Clone)]
pub struct FailureError(pub Failure);

impl fmt::Debug for FailureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f.debug_tuple("FailureError").field(&self.0).finish();
        }
        write!(f, "{}\n  at {}", self.0, self.0.location())
    }
}

impl fmt::Display for FailureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for FailureError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.inner.error.source()
    }
}

impl From<Failure> for Box<dyn StdError + Send + Sync + 'static> {
    fn from(failure: Failure) -> Self {
        Box::new(FailureError(failure))
    }
}

impl From<Failure> for Box<dyn StdError + 'static> {
    fn from(failure: Failure) -> Self {
        Box::new(FailureError(failure))
    }
}

/// A plain message used as an error ([`Failure::msg`]).
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Message {}

/// What goes wrong in the Deferred machinery, the task helpers and the thread pool.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeferredError {
    /// A Deferred was fired (callback or errback) after it had already fired (Twisted's
    /// `AlreadyCalledError`).
    AlreadyCalled,
    /// The Deferred was cancelled (Twisted's `CancelledError`).
    Cancelled,
    /// The Deferred did not fire within the time given to `add_timeout` (Twisted's
    /// `TimeoutError`).
    TimedOut(Duration),
    /// The Deferred's result had already been handed on (to an outer Deferred, a `then`,
    /// an `await` or a combinator) when a callback was added or it was awaited again.
    ResultConsumed,
    /// A callback returned the very Deferred it was attached to.
    ChainedToItself,
    /// A callback, errback or task panicked; the message is the panic's payload.
    Panicked(String),
    /// `DeferredQueue::put` on a queue holding `size` items already.
    QueueOverflow,
    /// `DeferredQueue::get` with `backlog` getters already waiting.
    QueueUnderflow,
    /// `release` on a lock or semaphore that is not held.
    NotAcquired,
    /// `start` on a `LoopingCall` that is running.
    AlreadyRunning,
    /// `stop` on a `LoopingCall` that is not running.
    NotRunning,
    /// `resume` on a cooperative task that is not paused (Twisted's `NotPaused`).
    NotPaused,
    /// The cooperative task ran to completion (Twisted's `TaskFinished`).
    TaskFinished,
    /// The cooperative task was stopped (Twisted's `TaskStopped`).
    TaskStopped,
    /// The cooperative task failed (Twisted's `TaskFailed`).
    TaskFailed,
    /// The cooperator was stopped with the task still in it (Twisted's `SchedulerStopped`).
    SchedulerStopped,
    /// `blocking_call_from_thread` was called on the reactor thread, where it would wait
    /// for itself forever.
    WouldDeadlock,
    /// The reactor went away before answering.
    ReactorGone,
}

impl fmt::Display for DeferredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeferredError::AlreadyCalled => f.write_str("the Deferred has already been fired"),
            DeferredError::Cancelled => f.write_str("the Deferred was cancelled"),
            DeferredError::TimedOut(after) => write!(f, "timed out after {after:?}"),
            DeferredError::ResultConsumed => {
                f.write_str("the Deferred's result has already been handed on")
            }
            DeferredError::ChainedToItself => {
                f.write_str("a callback returned the Deferred it was added to")
            }
            DeferredError::Panicked(msg) => write!(f, "callback panicked: {msg}"),
            DeferredError::QueueOverflow => f.write_str("the queue is full"),
            DeferredError::QueueUnderflow => f.write_str("too many getters are already waiting"),
            DeferredError::NotAcquired => f.write_str("released without being acquired"),
            DeferredError::AlreadyRunning => f.write_str("already running"),
            DeferredError::NotRunning => f.write_str("not running"),
            DeferredError::NotPaused => f.write_str("the task is not paused"),
            DeferredError::TaskFinished => f.write_str("the task has finished"),
            DeferredError::TaskStopped => f.write_str("the task was stopped"),
            DeferredError::TaskFailed => f.write_str("the task failed"),
            DeferredError::SchedulerStopped => f.write_str("the cooperator was stopped"),
            DeferredError::WouldDeadlock => {
                f.write_str("blocking call from the reactor thread would deadlock")
            }
            DeferredError::ReactorGone => f.write_str("the reactor went away"),
        }
    }
}

impl StdError for DeferredError {}

/// The first failure of a `DeferredList` built with `fire_on_one_errback` (or of
/// `gather_results`), and which Deferred it came from (Twisted's `FirstError`).
#[derive(Debug, Clone)]
pub struct FirstError {
    /// Position of the failed Deferred in the list.
    pub index: usize,
    /// Its failure.
    pub failure: Failure,
}

impl fmt::Display for FirstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deferred #{} failed: {}", self.index, self.failure)
    }
}

impl StdError for FirstError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.failure.error())
    }
}

/// Every Deferred given to `race` failed; here are their failures, in list order
/// (Twisted's `FailureGroup`).
#[derive(Debug, Clone)]
pub struct FailureGroup {
    /// One failure per Deferred raced.
    pub failures: Vec<Failure>,
}

impl fmt::Display for FailureGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {} Deferreds failed", self.failures.len())?;
        for (i, failure) in self.failures.iter().enumerate() {
            write!(f, "; #{i}: {failure}")?;
        }
        Ok(())
    }
}

impl StdError for FailureGroup {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn context_chain_and_checks() {
        let failure: Failure = io::Error::other("boom").into();
        let failure = failure.context("reading").context("loading config");
        assert_eq!(failure.to_string(), "loading config: reading: boom");
        assert!(failure.check::<io::Error>());
        assert!(!failure.check::<DeferredError>());
        assert!(failure.location().file().ends_with("failure.rs"));
    }

    #[test]
    fn find_walks_sources() {
        let inner = Failure::new(DeferredError::Cancelled);
        let first = Failure::new(FirstError {
            index: 2,
            failure: inner,
        });
        assert!(first.check::<FirstError>());
        assert_eq!(
            first.find::<DeferredError>(),
            Some(&DeferredError::Cancelled)
        );
    }

    #[test]
    fn context_on_shared_failure_leaves_the_other_alone() {
        let a = Failure::msg("x");
        let b = a.clone().context("ctx");
        assert_eq!(a.to_string(), "x");
        assert_eq!(b.to_string(), "ctx: x");
    }

    #[test]
    fn a_boxed_failure_debugs_as_its_message_and_place() {
        let boxed: Box<dyn StdError> = Failure::msg("refused").context("fetching").into();
        let shown = format!("{boxed:?}");
        assert!(shown.starts_with("fetching: refused\n  at "), "{shown}");
        assert!(shown.contains("failure.rs"), "{shown}");
    }

    #[test]
    fn converts_into_boxed_error() {
        fn run() -> Result<(), Box<dyn StdError + Send + Sync>> {
            Err(Failure::msg("nope").context("outer"))?;
            Ok(())
        }
        assert_eq!(run().unwrap_err().to_string(), "outer: nope");
    }
}
