//! The wrapping factory and protocol wrapper every policy is built on (Twisted's
//! `WrappingFactory` and `ProtocolWrapper`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::rc::{Rc, Weak};
use std::time::Duration;

use twistor::transport::{Producer, ProtocolCall, ProtocolWrapper as WrapFn, TransportImpl};
use twistor::{Address, CloseReason, DelayedCall, Error, Factory, Protocol, Reactor, Transport};

/// What a [`WrappingFactory`] does around each connection. Every method has a
/// pass-through default; a policy overrides the ones it needs.
///
/// Callbacks run on the reactor thread, in this order for a connection: `admit` (while
/// the factory builds the protocol), `connection_made`, then `data_received` and
/// `data_written` as bytes move, then `connection_lost`.
pub trait Policy: 'static {
    /// Decides what to do with a new connection from `addr`, given how many of this
    /// factory's connections are `live`. By default, accept.
    fn admit(&self, _addr: &Address, _live: usize) -> Admission {
        Admission::Accept
    }

    /// The connection is up (before the wrapped protocol hears of it).
    fn connection_made(&self, _conn: &Connection) {}

    /// Bytes arrived (before the wrapped protocol gets them).
    fn data_received(&self, _conn: &Connection, _data: &[u8]) {}

    /// The wrapped protocol wrote bytes (before they go to the transport).
    fn data_written(&self, _conn: &Connection, _data: &[u8]) {}

    /// The connection is gone (after the wrapped protocol heard of it).
    fn connection_lost(&self, _conn: &Connection, _reason: &CloseReason) {}

    /// The factory starts (its first port started listening).
    fn start(&self) {}

    /// The factory stops (its last port stopped).
    fn stop(&self) {}
}

/// What a [`Policy`] decides about a new connection.
pub enum Admission {
    /// Build the wrapped factory's protocol.
    Accept,
    /// Close the connection at once.
    Refuse,
    /// Serve the connection with this protocol instead (a "server busy" message).
    Overflow(Box<dyn Protocol>),
}

/// A factory that builds each protocol with the wrapped factory and wraps it in a
/// [`ProtocolWrapper`] that calls the [`Policy`].
///
/// ```
/// use twistor::protocol::factory;
/// use twistor::{Protocol, Transport};
/// use twistor_protocols::policies::{LimitTotalConnections, WrappingFactory};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, data: &[u8]) { t.write(data) }
/// }
/// // At most 100 connections at once; the 101st is closed at once.
/// let limited = WrappingFactory::new(factory(|_| Echo), LimitTotalConnections::new(100));
/// assert_eq!(limited.connection_count(), 0);
/// ```
pub struct WrappingFactory<P: Policy> {
    wrapped: Rc<dyn Factory>,
    policy: Rc<P>,
    live: Rc<Cell<usize>>,
    next_id: Cell<u64>,
}

impl<P: Policy> WrappingFactory<P> {
    /// Wraps `wrapped`'s protocols with `policy`.
    pub fn new(wrapped: Rc<dyn Factory>, policy: P) -> Rc<WrappingFactory<P>> {
        Rc::new(WrappingFactory {
            wrapped,
            policy: Rc::new(policy),
            live: Rc::new(Cell::new(0)),
            next_id: Cell::new(0),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The wrapped factory.
    pub fn wrapped(&self) -> &Rc<dyn Factory> {
        &self.wrapped
    }

    /// How many connections are up.
    pub fn connection_count(&self) -> usize {
        self.live.get()
    }
}

impl<P: Policy> Factory for WrappingFactory<P> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let (inner, overflow) = match self.policy.admit(addr, self.live.get()) {
            Admission::Accept => (self.wrapped.build_protocol(addr)?, false),
            Admission::Refuse => return None,
            Admission::Overflow(p) => (p, true),
        };
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let policy: Rc<dyn Policy> = self.policy.clone();
        let conn = Connection::new(id, addr.clone(), overflow, policy);
        Some(Box::new(ProtocolWrapper {
            inner,
            conn,
            live: Some(self.live.clone()),
            made: false,
        }))
    }

    fn start_factory(&self) {
        twistor::unstable::do_start(&self.wrapped);
        self.policy.start();
    }

    fn stop_factory(&self) {
        self.policy.stop();
        twistor::unstable::do_stop(&self.wrapped);
    }

    fn log_prefix(&self) -> &str {
        self.wrapped.log_prefix()
    }

    fn noisy(&self) -> bool {
        self.wrapped.noisy()
    }
}

/// A protocol that wraps another, presenting it a [`Connection`]'s transport and telling a
/// [`Policy`] what passes (Twisted's `ProtocolWrapper`).
pub struct ProtocolWrapper {
    inner: Box<dyn Protocol>,
    conn: Connection,
    live: Option<Rc<Cell<usize>>>,
    made: bool,
}

impl ProtocolWrapper {
    /// Wraps `inner` for one connection, with `policy` and no factory to count it.
    pub fn new(inner: Box<dyn Protocol>, addr: Address, policy: Rc<dyn Policy>) -> Self {
        ProtocolWrapper {
            inner,
            conn: Connection::new(0, addr, false, policy),
            live: None,
            made: false,
        }
    }

    /// The connection handle.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl Protocol for ProtocolWrapper {
    fn make_connection(&mut self, transport: &Transport) {
        *self.conn.state.real.borrow_mut() = Some(transport.clone());
        self.made = true;
        if let Some(live) = &self.live {
            live.set(live.get() + 1);
        }
        self.conn.state.policy.connection_made(&self.conn);
        let wrapped = self.conn.transport();
        self.inner.make_connection(&wrapped);
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.conn.state.policy.data_received(&self.conn, data);
        let wrapped = self.conn.transport();
        self.inner.data_received(&wrapped, data);
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.inner.connection_lost(reason);
        self.finish(reason);
    }

    fn read_connection_lost(&mut self, _transport: &Transport) {
        let wrapped = self.conn.transport();
        self.inner.read_connection_lost(&wrapped);
    }

    fn write_connection_lost(&mut self, _transport: &Transport) {
        let wrapped = self.conn.transport();
        self.inner.write_connection_lost(&wrapped);
    }

    fn file_descriptor_received(&mut self, _transport: &Transport, fd: OwnedFd) {
        let wrapped = self.conn.transport();
        self.inner.file_descriptor_received(&wrapped, fd);
    }
}

impl ProtocolWrapper {
    fn finish(&mut self, reason: &CloseReason) {
        if !std::mem::take(&mut self.made) {
            return;
        }
        if let Some(live) = &self.live {
            live.set(live.get().saturating_sub(1));
        }
        self.conn.state.policy.connection_lost(&self.conn, reason);
        self.conn.state.real.borrow_mut().take();
        self.conn.state.gate.borrow_mut().take();
    }
}

impl Drop for ProtocolWrapper {
    fn drop(&mut self) {
        // Dropped without `connection_lost` (the reactor went away): still count it out.
        let reason = CloseReason::Lost(Error::ShuttingDown);
        self.finish(&reason);
    }
}

/// One wrapped connection, as a policy sees it: the real transport, the transport the
/// wrapped protocol sees, and switches to hold its reading and writing. Cloning is cheap.
#[derive(Clone)]
pub struct Connection {
    state: Rc<ConnState>,
}

struct ConnState {
    id: u64,
    addr: Address,
    overflow: bool,
    policy: Rc<dyn Policy>,
    real: RefCell<Option<Transport>>,
    peer: RefCell<Option<Address>>,
    host: RefCell<Option<Address>>,
    /// The wrapped protocol paused reading itself.
    inner_paused: Cell<bool>,
    /// A policy holds reading (throttling).
    read_held: Cell<bool>,
    /// A policy holds the wrapped protocol's producer (throttling).
    write_held: Cell<bool>,
    gate: RefCell<Option<Rc<Gate>>>,
    me: Weak<ConnState>,
}

impl Connection {
    fn new(id: u64, addr: Address, overflow: bool, policy: Rc<dyn Policy>) -> Connection {
        Connection {
            state: Rc::new_cyclic(|me| ConnState {
                me: me.clone(),
                id,
                addr,
                overflow,
                policy,
                real: RefCell::new(None),
                peer: RefCell::new(None),
                host: RefCell::new(None),
                inner_paused: Cell::new(false),
                read_held: Cell::new(false),
                write_held: Cell::new(false),
                gate: RefCell::new(None),
            }),
        }
    }

    /// A number for this connection, unique within its factory (from 1).
    pub fn id(&self) -> u64 {
        self.state.id
    }

    /// The address the connection came from, as given to `build_protocol`.
    pub fn addr(&self) -> &Address {
        &self.state.addr
    }

    /// Whether the connection is served by an overflow protocol.
    pub fn is_overflow(&self) -> bool {
        self.state.overflow
    }

    /// The real transport, while the connection is up.
    pub fn real_transport(&self) -> Option<Transport> {
        self.state.real.borrow().clone()
    }

    /// The transport the wrapped protocol sees.
    pub fn transport(&self) -> Transport {
        Transport::new(self.state.clone())
    }

    /// Makes the wrapped protocol see `peer` (and `host`, if given) instead of the real
    /// addresses: what the PROXY protocol does.
    pub fn set_addresses(&self, peer: Option<Address>, host: Option<Address>) {
        *self.state.peer.borrow_mut() = peer;
        *self.state.host.borrow_mut() = host;
    }

    /// Holds (`true`) or releases reading from the connection, independently of the
    /// wrapped protocol's own pausing: reading resumes only when neither holds it.
    pub fn hold_reading(&self, hold: bool) {
        if self.state.read_held.replace(hold) == hold {
            return;
        }
        let Some(real) = self.real_transport() else {
            return;
        };
        if hold {
            real.pause_producing();
        } else if !self.state.inner_paused.get() {
            real.resume_producing();
        }
    }

    /// Holds (`true`) or releases the producer the wrapped protocol registered, if any
    /// (Twisted's `throttleWrites`): a streaming producer is paused, a pull producer is not
    /// asked for more. Writes made without a producer cannot be held.
    pub fn hold_writing(&self, hold: bool) {
        if self.state.write_held.replace(hold) == hold {
            return;
        }
        let gate = self.state.gate.borrow().clone();
        if let Some(gate) = gate {
            gate.hold(hold);
        }
    }

    /// Whether reading is held by a policy.
    pub fn reading_held(&self) -> bool {
        self.state.read_held.get()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.state.id)
            .field("addr", &self.state.addr)
            .finish()
    }
}

impl ConnState {
    fn real(&self) -> Option<Transport> {
        self.real.borrow().clone()
    }

    /// Tells the policy what the wrapped protocol wrote.
    fn written(&self, data: &[u8]) {
        if let Some(state) = self.me.upgrade() {
            self.policy.data_written(&Connection { state }, data);
        }
    }
}

impl TransportImpl for ConnState {
    fn write(&self, data: &[u8]) {
        self.written(data);
        if let Some(real) = self.real() {
            real.write(data);
        }
    }

    fn write_sequence(&self, data: &[&[u8]]) {
        for chunk in data {
            self.written(chunk);
        }
        if let Some(real) = self.real() {
            real.write_sequence(data);
        }
    }

    fn lose_connection(&self) {
        if let Some(real) = self.real() {
            real.lose_connection();
        }
    }

    fn abort_connection(&self) {
        if let Some(real) = self.real() {
            real.abort_connection();
        }
    }

    fn lose_write_connection(&self) {
        if let Some(real) = self.real() {
            real.lose_write_connection();
        }
    }

    fn peer(&self) -> Address {
        if let Some(peer) = self.peer.borrow().clone() {
            return peer;
        }
        self.real().map_or_else(|| self.addr.clone(), |t| t.peer())
    }

    fn host(&self) -> Address {
        if let Some(host) = self.host.borrow().clone() {
            return host;
        }
        self.real()
            .map_or_else(|| Address::Memory("closed".into()), |t| t.host())
    }

    fn disconnecting(&self) -> bool {
        self.real().is_none_or(|t| t.disconnecting())
    }

    fn buffered(&self) -> usize {
        self.real().map_or(0, |t| t.buffered())
    }

    fn pause_producing(&self) {
        self.inner_paused.set(true);
        if let Some(real) = self.real() {
            real.pause_producing();
        }
    }

    fn resume_producing(&self) {
        self.inner_paused.set(false);
        if self.read_held.get() {
            return;
        }
        if let Some(real) = self.real() {
            real.resume_producing();
        }
    }

    fn stop_producing(&self) {
        if let Some(real) = self.real() {
            real.stop_producing();
        }
    }

    fn register_producer(&self, producer: Box<dyn Producer>, streaming: bool) -> Result<(), Error> {
        let Some(real) = self.real() else {
            producer.stop_producing();
            return Ok(());
        };
        if self.gate.borrow().is_some() {
            return Err(Error::ProducerAlreadyRegistered);
        }
        let gate = Rc::new(Gate {
            inner: Rc::from(producer),
            streaming,
            consumer_paused: Cell::new(false),
            held: Cell::new(self.write_held.get()),
            pull_pending: Cell::new(false),
        });
        *self.gate.borrow_mut() = Some(gate.clone());
        let result = real.register_producer(gate, streaming);
        if result.is_err() {
            self.gate.borrow_mut().take();
        }
        result
    }

    fn unregister_producer(&self) {
        self.gate.borrow_mut().take();
        if let Some(real) = self.real() {
            real.unregister_producer();
        }
    }

    fn set_high_water_mark(&self, bytes: usize) {
        if let Some(real) = self.real() {
            real.set_high_water_mark(bytes);
        }
    }

    fn set_tcp_nodelay(&self, enabled: bool) -> io::Result<()> {
        match self.real() {
            Some(real) => real.set_tcp_nodelay(enabled),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn set_tcp_keepalive(&self, enabled: bool) -> io::Result<()> {
        match self.real() {
            Some(real) => real.set_tcp_keepalive(enabled),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn send_file_descriptor(&self, fd: BorrowedFd<'_>) -> Result<(), Error> {
        match self.real() {
            Some(real) => real.send_file_descriptor(fd),
            None => Err(Error::io(io::Error::from(io::ErrorKind::NotConnected))),
        }
    }

    fn wrap_protocol(&self, _wrap: WrapFn) -> Result<(), Error> {
        Err(Error::Unsupported("wrap_protocol under a policy wrapper"))
    }

    /// Scheduled on the real transport, whose protocol is the wrapper: the call reaches the
    /// wrapped protocol through it.
    fn call_later(&self, delay: Duration, call: ProtocolCall) -> Result<DelayedCall, Error> {
        let real = self
            .real()
            .ok_or(Error::io(io::Error::from(io::ErrorKind::NotConnected)))?;
        real.call_later_boxed(
            delay,
            Box::new(move |protocol, _real| {
                if let Some(wrapper) = protocol.downcast_mut::<ProtocolWrapper>() {
                    let wrapped = wrapper.conn.transport();
                    call(&mut *wrapper.inner, &wrapped);
                }
            }),
        )
    }

    fn reactor(&self) -> Option<Reactor> {
        self.real().and_then(|t| t.reactor())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Stands between the real transport and the wrapped protocol's producer, so a policy's
/// hold and the transport's own back-pressure combine: the producer runs only when
/// neither holds it.
struct Gate {
    inner: Rc<dyn Producer>,
    streaming: bool,
    consumer_paused: Cell<bool>,
    held: Cell<bool>,
    /// A pull producer was asked for more while held: ask it once released.
    pull_pending: Cell<bool>,
}

impl Gate {
    fn hold(&self, hold: bool) {
        if self.held.replace(hold) == hold {
            return;
        }
        if self.streaming {
            if self.consumer_paused.get() {
                return;
            }
            if hold {
                self.inner.pause_producing();
            } else {
                self.inner.resume_producing();
            }
        } else if !hold && self.pull_pending.take() {
            self.inner.resume_producing();
        }
    }
}

impl Producer for Gate {
    fn pause_producing(&self) {
        self.consumer_paused.set(true);
        if !self.held.get() {
            self.inner.pause_producing();
        }
    }

    fn resume_producing(&self) {
        self.consumer_paused.set(false);
        if self.held.get() {
            if !self.streaming {
                self.pull_pending.set(true);
            }
            return;
        }
        self.inner.resume_producing();
    }

    fn stop_producing(&self) {
        self.inner.stop_producing();
    }
}
