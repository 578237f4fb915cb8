//! A transport that records what a protocol does to it (Twisted's `StringTransport`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use twistor::transport::{Producer, TransportImpl};
use twistor::{Address, Error, Transport};

/// Whether the transport, as a producer of data for its protocol, is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerState {
    /// Reading (the initial state).
    Producing,
    /// `pause_producing` was called.
    Paused,
    /// `stop_producing` was called.
    Stopped,
}

/// A transport for unit tests: writes are collected in memory, and closing, aborting and
/// producer calls are recorded, not acted on. Nothing is ever sent, and `connection_lost` is
/// never called on the protocol — the test calls it when it wants to.
///
/// ```
/// use twistor::protocol::Protocol;
/// use twistor::Transport;
/// use twistor_testing::StringTransport;
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
///         transport.write(data);
///     }
/// }
///
/// let st = StringTransport::new();
/// let transport = st.transport();
/// let mut echo = Echo;
/// echo.make_connection(&transport);
/// echo.data_received(&transport, b"hi");
/// assert_eq!(st.value(), b"hi");
/// ```
#[derive(Clone)]
pub struct StringTransport {
    inner: Rc<Inner>,
}

struct Inner {
    written: RefCell<Vec<u8>>,
    disconnecting: Cell<bool>,
    aborted: Cell<bool>,
    write_closed: Cell<bool>,
    state: Cell<ProducerState>,
    producer: RefCell<Option<(Rc<dyn Producer>, bool)>>,
    peer: RefCell<Address>,
    host: RefCell<Address>,
    high_water: Cell<usize>,
    buffered: Cell<usize>,
}

impl Default for StringTransport {
    fn default() -> Self {
        StringTransport::new()
    }
}

impl StringTransport {
    /// A transport with a made-up peer (`192.168.1.1:54321`) and host (`10.0.0.1:80`).
    pub fn new() -> StringTransport {
        StringTransport {
            inner: Rc::new(Inner {
                written: RefCell::new(Vec::new()),
                disconnecting: Cell::new(false),
                aborted: Cell::new(false),
                write_closed: Cell::new(false),
                state: Cell::new(ProducerState::Producing),
                producer: RefCell::new(None),
                peer: RefCell::new(Address::Tcp("192.168.1.1:54321".parse().unwrap())),
                host: RefCell::new(Address::Tcp("10.0.0.1:80".parse().unwrap())),
                high_water: Cell::new(twistor::transport::DEFAULT_HIGH_WATER_MARK),
                buffered: Cell::new(0),
            }),
        }
    }

    /// A transport with the given peer and host addresses.
    pub fn with_addresses(peer: Address, host: Address) -> StringTransport {
        let st = StringTransport::new();
        *st.inner.peer.borrow_mut() = peer;
        *st.inner.host.borrow_mut() = host;
        st
    }

    /// Makes the transport say `bytes` are queued but unsent (its `buffered()`), as a real
    /// connection to a slow reader would; 0 by default.
    pub fn set_buffered(&self, bytes: usize) {
        self.inner.buffered.set(bytes);
    }

    /// The handle to give the protocol.
    pub fn transport(&self) -> Transport {
        Transport::new(self.inner.clone())
    }

    /// Everything written so far.
    pub fn value(&self) -> Vec<u8> {
        self.inner.written.borrow().clone()
    }

    /// Everything written so far, as (lossy) UTF-8.
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.inner.written.borrow()).into_owned()
    }

    /// Forgets what was written.
    pub fn clear(&self) {
        self.inner.written.borrow_mut().clear();
    }

    /// Returns what was written and forgets it.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.inner.written.borrow_mut())
    }

    /// Whether `lose_connection` (or `abort_connection`) was called.
    pub fn disconnecting(&self) -> bool {
        self.inner.disconnecting.get()
    }

    /// Whether `abort_connection` was called.
    pub fn aborted(&self) -> bool {
        self.inner.aborted.get()
    }

    /// Whether `lose_write_connection` was called.
    pub fn write_closed(&self) -> bool {
        self.inner.write_closed.get()
    }

    /// The transport's own reading state.
    pub fn producer_state(&self) -> ProducerState {
        self.inner.state.get()
    }

    /// Whether a producer is registered, and if so whether it is streaming.
    pub fn registered_producer(&self) -> Option<bool> {
        self.inner
            .producer
            .borrow()
            .as_ref()
            .map(|(_, streaming)| *streaming)
    }

    /// The registered producer, to drive it by hand as a consumer would.
    pub fn producer(&self) -> Option<Rc<dyn Producer>> {
        self.inner
            .producer
            .borrow()
            .as_ref()
            .map(|(p, _)| p.clone())
    }
}

impl TransportImpl for Inner {
    fn write(&self, data: &[u8]) {
        if self.write_closed.get() || self.aborted.get() {
            return;
        }
        self.written.borrow_mut().extend_from_slice(data);
    }

    fn lose_connection(&self) {
        self.disconnecting.set(true);
    }

    fn abort_connection(&self) {
        self.aborted.set(true);
        self.disconnecting.set(true);
    }

    fn lose_write_connection(&self) {
        self.write_closed.set(true);
    }

    fn peer(&self) -> Address {
        self.peer.borrow().clone()
    }

    fn host(&self) -> Address {
        self.host.borrow().clone()
    }

    fn disconnecting(&self) -> bool {
        self.disconnecting.get()
    }

    fn buffered(&self) -> usize {
        self.buffered.get()
    }

    fn pause_producing(&self) {
        if self.state.get() != ProducerState::Stopped {
            self.state.set(ProducerState::Paused);
        }
    }

    fn resume_producing(&self) {
        if self.state.get() != ProducerState::Stopped {
            self.state.set(ProducerState::Producing);
        }
    }

    fn stop_producing(&self) {
        self.state.set(ProducerState::Stopped);
    }

    fn register_producer(&self, producer: Box<dyn Producer>, streaming: bool) -> Result<(), Error> {
        let mut slot = self.producer.borrow_mut();
        if slot.is_some() {
            return Err(Error::ProducerAlreadyRegistered);
        }
        *slot = Some((Rc::from(producer), streaming));
        Ok(())
    }

    fn unregister_producer(&self) {
        self.producer.borrow_mut().take();
    }

    fn set_high_water_mark(&self, bytes: usize) {
        self.high_water.set(bytes);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl fmt::Debug for StringTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringTransport")
            .field("written", &self.inner.written.borrow().len())
            .field("disconnecting", &self.inner.disconnecting.get())
            .finish()
    }
}
