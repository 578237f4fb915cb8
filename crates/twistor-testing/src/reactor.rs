//! Reactors for tests: a panic fails the test, and so does a hang.

use std::time::Duration;

use twistor::Reactor;
use twistor::reactor::UnhandledPanic;

/// How long [`reactor`]'s watchdog lets a test run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A reactor for a test. A panic caught anywhere in it (a protocol callback, a factory, a
/// timer, a task, a call from a thread) stops it and makes [`Reactor::run`] and
/// [`Reactor::run_until`] return the error
/// ([`UnhandledPanic::StopReactor`]), so the test fails with the panic's message instead of
/// hanging; a watchdog fails it the same way if it is still running after
/// [`TEST_TIMEOUT`]. (A test that panics on purpose sets the mode back to
/// [`UnhandledPanic::Ignore`]; its watchdog then aborts the test process, as a hung test
/// must not wait for ever.)
///
/// ```
/// let reactor = twistor_testing::reactor();
/// reactor.call_soon(|| panic!("a bug"));
/// let err = reactor.run().unwrap_err();
/// assert!(err.to_string().contains("a bug"));
/// ```
pub fn reactor() -> Reactor {
    reactor_with_timeout(TEST_TIMEOUT)
}

/// Like [`reactor`], with a watchdog of `limit` for tests that take longer.
pub fn reactor_with_timeout(limit: Duration) -> Reactor {
    let reactor = Reactor::new().expect("a reactor (epoll, eventfd)");
    reactor.set_unhandled_panic(UnhandledPanic::StopReactor);
    let weak = reactor.downgrade();
    reactor.call_later(limit, move || {
        let stops = weak
            .upgrade()
            .is_some_and(|r| r.unhandled_panic() == UnhandledPanic::StopReactor);
        if !stops {
            eprintln!("test timed out after {limit:?}");
            std::process::abort();
        }
        panic!("test timed out after {limit:?}");
    });
    reactor
}
