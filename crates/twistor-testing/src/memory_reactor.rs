//! A reactor that records `listen_tcp` and `connect_tcp` calls instead of making sockets
//! (Twisted's `MemoryReactorClock`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use twistor::connector::{ConnectorImpl, ConnectorState};
use twistor::port::{ListeningPort, PortImpl};
use twistor::reactor::{DelayedCall, ReactorTime};
use twistor::tcp::{ConnectOptions, ListenOptions, ReactorTcp};
use twistor::{Address, ClientFactory, Connector, Error, Factory};

use crate::Clock;

/// A recorded `listen_tcp` call.
#[derive(Clone)]
pub struct TcpServerCall {
    /// The port asked for.
    pub port: u16,
    /// The factory given.
    pub factory: Rc<dyn Factory>,
    /// The options given.
    pub options: ListenOptions,
    /// The fake port returned.
    pub listening: ListeningPort,
}

/// A recorded `connect_tcp` call.
#[derive(Clone)]
pub struct TcpClientCall {
    /// The host asked for.
    pub host: String,
    /// The port asked for.
    pub port: u16,
    /// The factory given.
    pub factory: Rc<dyn ClientFactory>,
    /// The options given.
    pub options: ConnectOptions,
    /// The fake connector returned.
    pub connector: Connector,
}

/// A fake reactor for unit tests: it implements [`ReactorTcp`] by recording calls, and
/// [`ReactorTime`] with a deterministic [`Clock`]. Nothing touches the network.
#[derive(Clone, Default)]
pub struct MemoryReactor {
    clock: Clock,
    servers: Rc<RefCell<Vec<TcpServerCall>>>,
    clients: Rc<RefCell<Vec<TcpClientCall>>>,
}

impl MemoryReactor {
    /// A fresh fake reactor at time 0.
    pub fn new() -> MemoryReactor {
        MemoryReactor::default()
    }

    /// The clock behind [`ReactorTime`].
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Moves the clock forward (see [`Clock::advance`]).
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by)
    }

    /// The `listen_tcp` calls so far.
    pub fn tcp_servers(&self) -> Vec<TcpServerCall> {
        self.servers.borrow().clone()
    }

    /// The `connect_tcp` calls so far.
    pub fn tcp_clients(&self) -> Vec<TcpClientCall> {
        self.clients.borrow().clone()
    }
}

impl ReactorTcp for MemoryReactor {
    fn listen_tcp_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        options: ListenOptions,
    ) -> Result<ListeningPort, Error> {
        let listening = ListeningPort::new(Rc::new(FakePort {
            addr: SocketAddr::new(options.interface, port),
            listening: Cell::new(true),
        }));
        self.servers.borrow_mut().push(TcpServerCall {
            port,
            factory,
            options,
            listening: listening.clone(),
        });
        Ok(listening)
    }

    fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        options: ConnectOptions,
    ) -> Connector {
        let destination = Address::tcp_host(host, port);
        let connector = Connector::new(Rc::new(FakeConnector {
            destination,
            state: Cell::new(ConnectorState::Connecting),
            connects: Cell::new(1),
            stop_connecting_calls: Cell::new(0),
            disconnect_calls: Cell::new(0),
        }));
        self.clients.borrow_mut().push(TcpClientCall {
            host: host.to_string(),
            port,
            factory,
            options,
            connector: connector.clone(),
        });
        connector
    }
}

impl ReactorTime for MemoryReactor {
    fn seconds(&self) -> f64 {
        self.clock.seconds()
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.clock.call_later_boxed(delay, f)
    }
}

/// The port [`MemoryReactor`] hands out.
pub struct FakePort {
    addr: SocketAddr,
    listening: Cell<bool>,
}

impl PortImpl for FakePort {
    fn host(&self) -> Address {
        Address::Tcp(self.addr)
    }

    fn stop_listening(&self) {
        self.listening.set(false);
    }

    fn listening(&self) -> bool {
        self.listening.get()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The connector [`MemoryReactor`] hands out: it records calls and changes state, nothing
/// more. Downcast a [`Connector`] to it to inspect.
pub struct FakeConnector {
    destination: Address,
    state: Cell<ConnectorState>,
    connects: Cell<u32>,
    stop_connecting_calls: Cell<u32>,
    disconnect_calls: Cell<u32>,
}

impl FakeConnector {
    /// How many times `connect` ran (the first by `connect_tcp` itself).
    pub fn connects(&self) -> u32 {
        self.connects.get()
    }

    /// How many times `stop_connecting` was called.
    pub fn stop_connecting_calls(&self) -> u32 {
        self.stop_connecting_calls.get()
    }

    /// How many times `disconnect` was called.
    pub fn disconnect_calls(&self) -> u32 {
        self.disconnect_calls.get()
    }

    /// Sets the state, as if the connection had been made or lost.
    pub fn set_state(&self, state: ConnectorState) {
        self.state.set(state);
    }
}

impl ConnectorImpl for FakeConnector {
    fn connect(&self) {
        self.connects.set(self.connects.get() + 1);
        self.state.set(ConnectorState::Connecting);
    }

    fn stop_connecting(&self) -> Result<(), Error> {
        self.stop_connecting_calls
            .set(self.stop_connecting_calls.get() + 1);
        if self.state.get() != ConnectorState::Connecting {
            return Err(Error::NotConnecting);
        }
        self.state.set(ConnectorState::Disconnected);
        Ok(())
    }

    fn disconnect(&self) {
        self.disconnect_calls.set(self.disconnect_calls.get() + 1);
        self.state.set(ConnectorState::Disconnected);
    }

    fn destination(&self) -> Address {
        self.destination.clone()
    }

    fn state(&self) -> ConnectorState {
        self.state.get()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
