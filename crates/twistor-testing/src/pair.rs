//! Two protocols connected in memory, with a pump that moves bytes between them (Twisted's
//! `iosim.connectedServerAndClient` and `IOPump`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use twistor::transport::{DEFAULT_HIGH_WATER_MARK, Producer, TransportImpl};
use twistor::{Address, CloseReason, Error, Protocol, Transport};

/// A server and a client protocol joined by two in-memory transports.
///
/// Nothing moves until [`pump`](ConnectedPair::pump) is called: it delivers what each side
/// wrote to the other, in order, until neither has anything left to say, and carries
/// closes across (`lose_connection` gives both sides `connection_lost` with
/// [`CloseReason::Done`] once the closing side's data is delivered; `abort_connection` gives
/// the aborting side [`CloseReason::Aborted`] and the other a lost connection). A side that
/// paused reading receives nothing until it resumes.
///
/// ```
/// use twistor::protocol::Protocol;
/// use twistor::Transport;
/// use twistor_testing::ConnectedPair;
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, data: &[u8]) { t.write(data) }
/// }
/// #[derive(Default)]
/// struct Collect(Vec<u8>);
/// impl Protocol for Collect {
///     fn connection_made(&mut self, t: &Transport) { t.write(b"ping") }
///     fn data_received(&mut self, _: &Transport, data: &[u8]) { self.0.extend(data) }
/// }
///
/// let mut pair = ConnectedPair::new(Echo, Collect::default());
/// pair.pump();
/// assert_eq!(pair.client().0, b"ping");
/// ```
pub struct ConnectedPair<S: Protocol, C: Protocol> {
    server: S,
    client: C,
    server_side: Rc<MemoryTransport>,
    client_side: Rc<MemoryTransport>,
}

impl<S: Protocol, C: Protocol> ConnectedPair<S, C> {
    /// Connects `server` and `client`: both get `make_connection` (server first), nothing is
    /// delivered yet.
    pub fn new(server: S, client: C) -> ConnectedPair<S, C> {
        let server_addr = Address::Memory("server".into());
        let client_addr = Address::Memory("client".into());
        let server_side = MemoryTransport::new(client_addr.clone(), server_addr.clone());
        let client_side = MemoryTransport::new(server_addr, client_addr);
        let mut pair = ConnectedPair {
            server,
            client,
            server_side,
            client_side,
        };
        let (st, ct) = (pair.server_transport(), pair.client_transport());
        pair.server.make_connection(&st);
        pair.client.make_connection(&ct);
        pair
    }

    /// The server protocol.
    pub fn server(&self) -> &S {
        &self.server
    }

    /// The server protocol, mutably.
    pub fn server_mut(&mut self) -> &mut S {
        &mut self.server
    }

    /// The client protocol.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// The client protocol, mutably.
    pub fn client_mut(&mut self) -> &mut C {
        &mut self.client
    }

    /// The server's transport (what the server writes to).
    pub fn server_transport(&self) -> Transport {
        Transport::new(self.server_side.clone())
    }

    /// The client's transport.
    pub fn client_transport(&self) -> Transport {
        Transport::new(self.client_side.clone())
    }

    /// Whether the connection has been closed.
    pub fn closed(&self) -> bool {
        self.server_side.closed.get()
    }

    /// Delivers bytes and closes until nothing changes. Returns whether anything moved.
    pub fn pump(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut moved = false;
            moved |= deliver(&self.server_side, &self.client_side, &mut self.client);
            moved |= deliver(&self.client_side, &self.server_side, &mut self.server);
            moved |= self.carry_closes();
            if !moved {
                return any;
            }
            any = true;
        }
    }

    fn carry_closes(&mut self) -> bool {
        if self.server_side.closed.get() {
            return false;
        }
        let (st, ct) = (self.server_transport(), self.client_transport());
        let reasons = if self.server_side.aborted.get() {
            Some((CloseReason::Aborted, lost()))
        } else if self.client_side.aborted.get() {
            Some((lost(), CloseReason::Aborted))
        } else if self.server_side.ready_to_close() || self.client_side.ready_to_close() {
            Some((CloseReason::Done, CloseReason::Done))
        } else {
            None
        };
        if let Some((server_reason, client_reason)) = reasons {
            for side in [&self.server_side, &self.client_side] {
                side.closed.set(true);
                side.outgoing.borrow_mut().clear();
                if let Some((producer, _)) = side.producer.borrow_mut().take() {
                    producer.stop_producing();
                }
            }
            self.server.connection_lost(&server_reason);
            self.client.connection_lost(&client_reason);
            return true;
        }
        let mut moved = false;
        if self.server_side.ready_to_shut_write() {
            self.server_side.write_shut.set(true);
            self.server.write_connection_lost(&st);
            self.client.read_connection_lost(&ct);
            moved = true;
        }
        if self.client_side.ready_to_shut_write() {
            self.client_side.write_shut.set(true);
            self.client.write_connection_lost(&ct);
            self.server.read_connection_lost(&st);
            moved = true;
        }
        moved
    }
}

fn lost() -> CloseReason {
    CloseReason::Lost(Error::io(std::io::Error::from(
        std::io::ErrorKind::ConnectionReset,
    )))
}

/// Moves `from`'s outgoing bytes into `to_protocol` (unless `to` paused reading), then lets
/// `from`'s producer refill the buffer.
fn deliver<P: Protocol>(
    from: &Rc<MemoryTransport>,
    to: &Rc<MemoryTransport>,
    to_protocol: &mut P,
) -> bool {
    if from.closed.get() {
        return false;
    }
    let mut moved = false;
    if !to.read_paused.get() {
        let bytes = std::mem::take(&mut *from.outgoing.borrow_mut());
        if !bytes.is_empty() {
            to_protocol.data_received(&Transport::new(to.clone()), &bytes);
            moved = true;
        }
    }
    moved |= from.run_producer();
    moved
}

/// One side of a [`ConnectedPair`].
pub struct MemoryTransport {
    outgoing: RefCell<Vec<u8>>,
    peer: Address,
    host: Address,
    disconnecting: Cell<bool>,
    aborted: Cell<bool>,
    write_shut_requested: Cell<bool>,
    write_shut: Cell<bool>,
    read_paused: Cell<bool>,
    closed: Cell<bool>,
    producer: RefCell<Option<(Rc<dyn Producer>, bool)>>,
    producer_paused: Cell<bool>,
    high_water: Cell<usize>,
}

impl MemoryTransport {
    fn new(peer: Address, host: Address) -> Rc<MemoryTransport> {
        Rc::new(MemoryTransport {
            outgoing: RefCell::new(Vec::new()),
            peer,
            host,
            disconnecting: Cell::new(false),
            aborted: Cell::new(false),
            write_shut_requested: Cell::new(false),
            write_shut: Cell::new(false),
            read_paused: Cell::new(false),
            closed: Cell::new(false),
            producer: RefCell::new(None),
            producer_paused: Cell::new(false),
            high_water: Cell::new(DEFAULT_HIGH_WATER_MARK),
        })
    }

    fn ready_to_close(&self) -> bool {
        self.disconnecting.get()
            && self.outgoing.borrow().is_empty()
            && self.producer.borrow().is_none()
    }

    fn ready_to_shut_write(&self) -> bool {
        self.write_shut_requested.get()
            && !self.write_shut.get()
            && self.outgoing.borrow().is_empty()
    }

    /// Resumes a paused streaming producer, or asks a pull producer for more, once the
    /// buffer is empty. Returns whether the producer wrote anything.
    fn run_producer(&self) -> bool {
        if !self.outgoing.borrow().is_empty() {
            return false;
        }
        let producer = match self.producer.borrow().as_ref() {
            Some((p, streaming)) if !*streaming || self.producer_paused.get() => p.clone(),
            _ => return false,
        };
        self.producer_paused.set(false);
        producer.resume_producing();
        !self.outgoing.borrow().is_empty()
    }
}

impl TransportImpl for MemoryTransport {
    fn write(&self, data: &[u8]) {
        if self.closed.get() || self.aborted.get() || self.write_shut.get() {
            return;
        }
        let len = {
            let mut out = self.outgoing.borrow_mut();
            out.extend_from_slice(data);
            out.len()
        };
        if len > self.high_water.get() && !self.producer_paused.get() {
            let producer = match self.producer.borrow().as_ref() {
                Some((p, true)) => Some(p.clone()),
                _ => None,
            };
            if let Some(p) = producer {
                self.producer_paused.set(true);
                p.pause_producing();
            }
        }
    }

    fn lose_connection(&self) {
        self.disconnecting.set(true);
    }

    fn abort_connection(&self) {
        self.aborted.set(true);
        self.disconnecting.set(true);
        self.outgoing.borrow_mut().clear();
    }

    fn lose_write_connection(&self) {
        self.write_shut_requested.set(true);
    }

    fn peer(&self) -> Address {
        self.peer.clone()
    }

    fn host(&self) -> Address {
        self.host.clone()
    }

    fn disconnecting(&self) -> bool {
        self.disconnecting.get() || self.closed.get()
    }

    fn buffered(&self) -> usize {
        self.outgoing.borrow().len()
    }

    fn pause_producing(&self) {
        self.read_paused.set(true);
    }

    fn resume_producing(&self) {
        self.read_paused.set(false);
    }

    fn register_producer(&self, producer: Box<dyn Producer>, streaming: bool) -> Result<(), Error> {
        if self.producer.borrow().is_some() {
            return Err(Error::ProducerAlreadyRegistered);
        }
        *self.producer.borrow_mut() = Some((Rc::from(producer), streaming));
        self.producer_paused.set(false);
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
