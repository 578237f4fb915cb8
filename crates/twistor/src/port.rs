//! Listening ports: the handle every `listen_*` call returns (Twisted's `IListeningPort`).

use std::any::Any;
use std::fmt;
use std::rc::Rc;

use crate::address::Address;
use crate::defer::Deferred;

/// What each kind of listening port (TCP, Unix...) implements; used through
/// [`ListeningPort`].
pub trait PortImpl {
    /// The address the port listens on.
    fn host(&self) -> Address;
    /// Stops accepting connections and closes the socket. Connections already accepted go
    /// on. Stopping twice does nothing.
    fn stop_listening(&self);
    /// Whether the port still accepts connections.
    fn listening(&self) -> bool;
    /// The concrete port.
    fn as_any(&self) -> &dyn Any;
}

/// A listening port. Cloning it is cheap.
#[derive(Clone)]
pub struct ListeningPort {
    inner: Rc<dyn PortImpl>,
}

impl ListeningPort {
    /// Wraps a port implementation in a handle.
    pub fn new(inner: Rc<dyn PortImpl>) -> ListeningPort {
        ListeningPort { inner }
    }

    /// The address the port listens on (with the port number the OS chose, if 0 was
    /// asked for).
    pub fn host(&self) -> Address {
        self.inner.host()
    }

    /// The port number, for TCP ports (0 for other kinds).
    pub fn port(&self) -> u16 {
        self.host().socket_addr().map_or(0, |a| a.port())
    }

    /// Stops accepting connections and closes the socket; connections already accepted go
    /// on. The factory's `stop_factory` runs if this was its last port. The Deferred fires
    /// once the port is closed (at once: closing a socket does not wait).
    pub fn stop_listening(&self) -> Deferred<()> {
        self.inner.stop_listening();
        Deferred::succeeded(())
    }

    /// Whether the port still accepts connections.
    pub fn listening(&self) -> bool {
        self.inner.listening()
    }

    /// The concrete port, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.inner.as_any().downcast_ref::<T>()
    }
}

impl fmt::Debug for ListeningPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<listening on {}>", self.host())
    }
}
