//! Graceful shutdown, the same for every service: on SIGTERM or SIGINT the listeners close
//! at once, and the connections still open get a grace period (`--shutdown-timeout`) to
//! finish what they are doing before they are cut. A second signal cuts them at once.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use twistor::reactor::{Phase, SystemEvent};
use twistor::{ListeningPort, Reactor};

/// The grace period when `--shutdown-timeout` is not given.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How often a draining service counts its open connections.
const POLL: Duration = Duration::from_millis(50);

static GRACE: OnceLock<Duration> = OnceLock::new();

/// Counts what `reactor` still watches: once its ports are closed, every source left is a
/// connection (or one being made, or an outgoing one).
pub fn sources(reactor: &Reactor) -> impl Fn() -> usize + 'static {
    let weak = reactor.downgrade();
    move || weak.upgrade().map_or(0, |r| r.source_count())
}

/// Sets the grace period for the whole process (from `--shutdown-timeout`).
pub fn set_grace(grace: Duration) {
    let _ = GRACE.set(grace);
}

/// The grace period connections get at shutdown.
pub fn grace() -> Duration {
    GRACE.get().copied().unwrap_or(DEFAULT_GRACE)
}

/// Makes `reactor`'s shutdown graceful: before anything else, `ports` stop listening and
/// `begin` runs (a service that can tell idle connections from busy ones closes the idle
/// ones there); then the shutdown waits until `open()` says nothing is left, or the grace
/// period has passed, before the reactor drops what is left.
pub fn drain_on_shutdown(
    reactor: &Reactor,
    ports: Vec<ListeningPort>,
    begin: impl FnOnce() + 'static,
    open: impl Fn() -> usize + 'static,
) {
    let ports = RefCell::new(ports);
    let open: Rc<dyn Fn() -> usize> = Rc::new(open);
    let begin = RefCell::new(Some(begin));
    let weak = reactor.downgrade();
    reactor.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
        let reactor = weak.upgrade()?;
        for port in ports.borrow_mut().drain(..) {
            let host = port.host();
            port.stop_listening().consume(move |result| {
                if let Err(failure) = result {
                    tracing::warn!("could not stop listening on {host}: {failure}");
                }
            });
        }
        if let Some(begin) = begin.borrow_mut().take() {
            begin();
        }
        let grace = grace();
        let open = Rc::clone(&open);
        let left = open();
        if left == 0 || grace.is_zero() {
            return None;
        }
        tracing::info!(
            "waiting up to {} s for {left} connection(s) to finish \
             (signal again to close them now)",
            grace.as_secs_f64()
        );
        Some(Box::pin(async move {
            let deadline = reactor.seconds() + grace.as_secs_f64();
            loop {
                let left = open();
                if left == 0 {
                    return;
                }
                if reactor.seconds() >= deadline {
                    tracing::warn!(
                        "closing {left} connection(s) still open after {} s",
                        grace.as_secs_f64()
                    );
                    return;
                }
                let _ = twistor::task::sleep(&reactor, POLL).await;
            }
        }))
    });
}
