//! Deferreds as futures: awaiting them, running futures as Deferreds on the reactor
//! (`spawn`, `ensure_deferred`), cancelling a spawned future, `sleep`, `react`, and
//! awaiting a connection through an endpoint.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use twistor::Transport;
use twistor::defer::{Deferred, DeferredError, DeferredQueue, Failure, ensure_deferred, succeed};
use twistor::endpoints::{HostnameEndpoint, connect_protocol};
use twistor::protocol::{Protocol, factory};
use twistor::task::{SystemExit, defer_later, react_status, sleep};
use twistor_testing::Clock;

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

#[test]
fn a_deferred_is_a_future_woken_when_it_fires() {
    let clock = Clock::new();
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut d = sleep(&clock, Duration::from_secs(1)).map(|()| "slept");
    assert!(poll(&mut d, &waker).is_pending());
    assert!(poll(&mut d, &waker).is_pending(), "polling again is fine");
    clock.advance(Duration::from_secs(1));
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    match poll(&mut d, &waker) {
        Poll::Ready(r) => assert_eq!(r.unwrap(), "slept"),
        Poll::Pending => panic!("fired"),
    }
}

#[test]
fn awaiting_takes_the_result_where_the_chain_stands() {
    let waker = Waker::noop();
    let d: Deferred<i32> = Deferred::new();
    d.add_callback(|n| Ok(n + 1));
    let mut awaiting = d.clone();
    assert!(poll(&mut awaiting, waker).is_pending());
    d.callback(1).unwrap();
    assert!(matches!(poll(&mut awaiting, waker), Poll::Ready(Ok(2))));
    // The result has moved to the awaiter: a second await learns it is gone.
    let mut again = d.clone();
    match poll(&mut again, waker) {
        Poll::Ready(Err(f)) => assert_eq!(f.downcast_ref(), Some(&DeferredError::ResultConsumed)),
        other => panic!("expected ResultConsumed, got {other:?}"),
    }
    // A fired Deferred is ready on the first poll.
    let mut ready = succeed("now");
    assert!(matches!(poll(&mut ready, waker), Poll::Ready(Ok("now"))));
}

#[test]
fn spawn_runs_a_future_and_fires_with_its_output() {
    let reactor = twistor_testing::reactor();
    let r = reactor.clone();
    let d = reactor.spawn(async move {
        sleep(&r, Duration::from_millis(5)).await?;
        let later = defer_later(&r, Duration::from_millis(1), || Ok(20));
        let n = later.await?;
        Ok(n + succeed(1).await?)
    });
    assert!(!d.called(), "the future starts on the next turn");
    assert_eq!(reactor.run_until(d).unwrap().unwrap(), 21);
}

#[test]
fn a_failing_future_fails_its_deferred_and_question_mark_converts_errors() {
    let reactor = twistor_testing::reactor();
    let d = ensure_deferred(&reactor, async {
        let n: u32 = "not a number".parse()?;
        Ok(n)
    });
    let failure = reactor.run_until(d).unwrap().unwrap_err();
    assert!(failure.check::<std::num::ParseIntError>());
}

#[test]
fn cancelling_a_spawned_deferred_drops_the_future() {
    struct DropFlag(Rc<Cell<bool>>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let reactor = twistor_testing::reactor();
    let dropped = Rc::new(Cell::new(false));
    let reached_end = Rc::new(Cell::new(false));
    let (flag, end, r) = (
        DropFlag(dropped.clone()),
        reached_end.clone(),
        reactor.clone(),
    );
    let d = reactor.spawn(async move {
        let _flag = flag;
        sleep(&r, Duration::from_secs(3600)).await?;
        end.set(true);
        Ok(())
    });
    let victim = d.clone();
    reactor.call_later(Duration::from_millis(5), move || victim.cancel());
    let failure = reactor.run_until(d).unwrap().unwrap_err();
    assert!(failure.is_cancelled());
    assert!(dropped.get());
    assert!(!reached_end.get());
}

#[test]
fn react_status_reports_success_failure_and_exit_codes() {
    let ok = react_status(|reactor| async move {
        sleep(&reactor, Duration::from_millis(1)).await?;
        Ok(())
    });
    assert_eq!(ok, 0);
    let failed = react_status(|_| async { Err(Failure::msg("main failed")) });
    assert_eq!(failed, 1);
    let exit = react_status(|reactor| async move {
        defer_later(
            &reactor,
            Duration::from_millis(1),
            || -> Result<(), Failure> { Err(Failure::new(SystemExit(7))) },
        )
        .await
    });
    assert_eq!(exit, 7);
}

#[test]
fn react_status_is_zero_when_the_reactor_is_stopped_first() {
    let status = react_status(|reactor| async move {
        let r = reactor.clone();
        reactor.call_later(Duration::from_millis(2), move || r.stop());
        sleep(&reactor, Duration::from_secs(3600)).await?;
        Err(Failure::msg("not reached"))
    });
    assert_eq!(status, 0);
}

/// A protocol that queues what it receives, for `await`ing.
struct Inbox(DeferredQueue<Vec<u8>>);

impl Protocol for Inbox {
    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        let _ = self.0.put(data.to_vec());
    }
}

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

#[test]
fn connecting_is_awaitable() {
    let reactor = twistor_testing::reactor();
    let port = reactor.listen_tcp(0, factory(|_| Echo)).unwrap().port();
    let r = reactor.clone();
    let d = reactor.spawn(async move {
        let inbox = DeferredQueue::new();
        let server = HostnameEndpoint::new(&r, "127.0.0.1", port);
        let transport = connect_protocol(&server, Inbox(inbox.clone())).await?;
        transport.write(b"ping");
        let mut got = Vec::new();
        while got.len() < 4 {
            got.extend(inbox.get()?.await?);
        }
        transport.lose_connection();
        Ok(got)
    });
    assert_eq!(reactor.run_until(d).unwrap().unwrap(), b"ping");
}

#[test]
fn a_refused_connection_fails_the_deferred() {
    let reactor = twistor_testing::reactor();
    // A port that was just free: nothing listens there now.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let d = connect_protocol(&HostnameEndpoint::new(&reactor, "127.0.0.1", port), Echo);
    let failure = reactor.run_until(d).unwrap().unwrap_err();
    assert!(
        matches!(
            failure.downcast_ref(),
            Some(twistor::Error::ConnectionRefused { .. })
        ),
        "{failure}"
    );
}

#[test]
fn cancelling_a_connection_attempt_abandons_it() {
    let reactor = twistor_testing::reactor();
    let port = reactor.listen_tcp(0, factory(|_| Echo)).unwrap().port();
    let d = connect_protocol(&HostnameEndpoint::new(&reactor, "127.0.0.1", port), Echo);
    // Still connecting: the reactor has not run yet.
    d.cancel();
    let failure = d.try_result().unwrap().unwrap_err();
    assert!(failure.is_cancelled(), "{failure}");
    // Nothing fires it again later.
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(20), move || r.stop());
    reactor.run().unwrap();
}
