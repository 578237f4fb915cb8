//! Connectors: handles on outgoing connections, given to client factories.

use std::any::Any;
use std::fmt;
use std::rc::Rc;

use crate::address::Address;
use crate::error::Error;

/// Where a connector is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorState {
    /// Not connected and not trying (before the first attempt, after a failure or loss).
    Disconnected,
    /// An attempt is under way (name lookup or TCP handshake).
    Connecting,
    /// Connected; the protocol is running.
    Connected,
}

/// What each kind of connector (TCP, Unix...) implements; used through [`Connector`].
pub trait ConnectorImpl {
    /// Starts a new attempt (after a failure or a loss; reconnecting factories call this).
    fn connect(&self);
    /// Cancels the attempt under way; the factory hears `client_connection_failed` with
    /// [`Error::UserCancelledConnect`].
    fn stop_connecting(&self) -> Result<(), Error>;
    /// Cancels the attempt under way, or closes the connection if connected.
    fn disconnect(&self);
    /// Where this connector connects to.
    fn destination(&self) -> Address;
    /// Where the connector is in its life.
    fn state(&self) -> ConnectorState;
    /// The concrete connector.
    fn as_any(&self) -> &dyn Any;
}

/// A handle on an outgoing connection and its later re-attempts. Cloning it is cheap.
#[derive(Clone)]
pub struct Connector {
    inner: Rc<dyn ConnectorImpl>,
}

impl Connector {
    /// Wraps a connector implementation in a handle.
    pub fn new(inner: Rc<dyn ConnectorImpl>) -> Connector {
        Connector { inner }
    }

    /// Starts a new connection attempt.
    pub fn connect(&self) {
        self.inner.connect()
    }

    /// Cancels the attempt under way; an error if none is.
    pub fn stop_connecting(&self) -> Result<(), Error> {
        self.inner.stop_connecting()
    }

    /// Cancels the attempt, or closes the connection.
    pub fn disconnect(&self) {
        self.inner.disconnect()
    }

    /// Where this connector connects to.
    pub fn destination(&self) -> Address {
        self.inner.destination()
    }

    /// Where the connector is in its life.
    pub fn state(&self) -> ConnectorState {
        self.inner.state()
    }

    /// The concrete connector, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.inner.as_any().downcast_ref::<T>()
    }

    /// Whether two handles name the same connector.
    pub fn ptr_eq(&self, other: &Connector) -> bool {
        std::ptr::addr_eq(Rc::as_ptr(&self.inner), Rc::as_ptr(&other.inner))
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("destination", &self.destination())
            .field("state", &self.state())
            .finish()
    }
}
