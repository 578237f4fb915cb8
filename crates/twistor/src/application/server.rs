//! `StreamServerEndpointService`: listen on an endpoint while the service runs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::defer::{Deferred, Failure};
use crate::endpoints::ServerEndpoint;
use crate::port::ListeningPort;
use crate::protocol::Factory;

use super::Service;

/// Listens on an endpoint when started and stops listening when stopped (Twisted's
/// `StreamServerEndpointService`). Connections already accepted are not touched by the
/// stop: a [`DrainService`](super::DrainService) started before it waits for them.
///
/// Most endpoints listen at once; then an error (a port in use, which names the address)
/// is returned by [`start_service`](Service::start_service). An endpoint that listens later
/// (`systemd:` waits for nothing, but a plugin may) reports a late failure in the log and
/// through [`when_listening`](Self::when_listening).
///
/// ```no_run
/// use std::rc::Rc;
/// use twistor::application::{self, StreamServerEndpointService};
/// use twistor::endpoints::server_from_string;
/// use twistor::protocol::{factory, Protocol};
/// use twistor::{Reactor, Transport};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, data: &[u8]) {
///         t.write(data);
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let endpoint = server_from_string(&reactor, "tcp:8000")?;
/// let service = StreamServerEndpointService::new(endpoint, factory(|_| Echo));
/// application::run(&reactor, Rc::new(service))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamServerEndpointService {
    endpoint: Box<dyn ServerEndpoint>,
    factory: Rc<dyn Factory>,
    running: Cell<bool>,
    state: Rc<RefCell<State>>,
}

/// Where the listening stands.
#[derive(Default)]
struct State {
    /// The port, once listening (until stopped).
    port: Option<ListeningPort>,
    /// A listen still under way.
    pending: Option<Deferred<ListeningPort>>,
    /// Those waiting in [`when_listening`](StreamServerEndpointService::when_listening).
    waiting: Vec<Deferred<ListeningPort>>,
}

impl State {
    /// Records the outcome of a listen and tells those waiting.
    fn settle(cell: &RefCell<State>, result: Result<ListeningPort, Failure>) {
        let waiting = {
            let mut st = cell.borrow_mut();
            st.pending = None;
            st.port = result.as_ref().ok().cloned();
            std::mem::take(&mut st.waiting)
        };
        for d in waiting {
            let _ = d.resolve(result.clone());
        }
    }
}

impl StreamServerEndpointService {
    /// A service that will listen on `endpoint` with `factory`.
    pub fn new(endpoint: Box<dyn ServerEndpoint>, factory: Rc<dyn Factory>) -> Self {
        StreamServerEndpointService {
            endpoint,
            factory,
            running: Cell::new(false),
            state: Rc::default(),
        }
    }

    /// The endpoint's description (e.g. `TCP port 8000`).
    pub fn describe(&self) -> String {
        self.endpoint.describe()
    }

    /// The port, once listening (for its address: a port 0 picked by the system).
    pub fn port(&self) -> Option<ListeningPort> {
        self.state.borrow().port.clone()
    }

    /// A Deferred that fires with the port once the service listens, or fails with why it
    /// could not; when it is not running, with the outcome of its next start.
    pub fn when_listening(&self) -> Deferred<ListeningPort> {
        if let Some(port) = self.port() {
            return Deferred::succeeded(port);
        }
        let d = Deferred::new();
        self.state.borrow_mut().waiting.push(d.clone());
        d
    }
}

impl Service for StreamServerEndpointService {
    fn start_service(&self) -> Result<(), Failure> {
        if self.running.replace(true) {
            return Ok(());
        }
        let listening = self.endpoint.listen(self.factory.clone());
        if let Some(result) = listening.try_result() {
            // Listening completed at once: a failure is the start's error.
            State::settle(&self.state, result.clone());
            return result.map(|_| ()).inspect_err(|_| self.running.set(false));
        }
        self.state.borrow_mut().pending = Some(listening.clone());
        let state = Rc::downgrade(&self.state);
        let description = self.endpoint.describe();
        listening.consume(move |result| {
            if let Err(failure) = &result
                && !failure.is_cancelled()
            {
                tracing::error!("could not listen on {description}: {failure}");
            }
            if let Some(state) = state.upgrade() {
                State::settle(&state, result);
            }
        });
        Ok(())
    }

    /// Stops listening; a listen still under way is cancelled. Fires once the port is
    /// closed.
    fn stop_service(&self) -> Deferred<()> {
        if !self.running.replace(false) {
            return Deferred::succeeded(());
        }
        let (port, pending) = {
            let mut st = self.state.borrow_mut();
            (st.port.take(), st.pending.take())
        };
        if let Some(pending) = pending {
            pending.cancel();
        }
        match port {
            Some(port) => port.stop_listening(),
            None => Deferred::succeeded(()),
        }
    }

    fn running(&self) -> bool {
        self.running.get()
    }
}
