//! Protocols, factories and close reasons: the application's side of a connection.
//!
//! A [`Protocol`] is a per-connection state machine: the reactor calls
//! [`connection_made`](Protocol::connection_made) once, then
//! [`data_received`](Protocol::data_received) for each chunk of bytes read (chunks follow no
//! message boundaries), then [`connection_lost`](Protocol::connection_lost) once. A
//! [`Factory`] builds a protocol for each new connection; a [`ClientFactory`] also hears how
//! outgoing connection attempts end.

use std::any::{Any, type_name};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use crate::address::Address;
use crate::connector::Connector;
use crate::datagram::DatagramTransport;
use crate::error::Error;
use crate::guard::{Delivery, Kind};
use crate::transport::{ProtocolCall, Transport};

/// Why a connection ended, as given to [`Protocol::connection_lost`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseReason {
    /// Closed cleanly: by `lose_connection` after everything was sent, or by the peer
    /// closing its side (Twisted's `ConnectionDone`).
    Done,
    /// Lost in a non-clean fashion: reset by the peer, an I/O error, a protocol callback
    /// that panicked, or the reactor shutting down (Twisted's `ConnectionLost`).
    Lost(Error),
    /// Closed locally by `abort_connection`, discarding unsent data (Twisted's
    /// `ConnectionAborted`).
    Aborted,
}

impl CloseReason {
    /// Whether the connection ended cleanly ([`CloseReason::Done`]).
    pub fn is_clean(&self) -> bool {
        matches!(self, CloseReason::Done)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Done => f.write_str("Connection was closed cleanly."),
            CloseReason::Lost(err) => write!(
                f,
                "Connection to the other side was lost in a non-clean fashion: {err}."
            ),
            CloseReason::Aborted => f.write_str("Connection was aborted locally."),
        }
    }
}

/// The application's handler for one connection.
///
/// Every callback runs on the reactor thread. The transport passed in may be cloned and kept,
/// for writing later (from a timer, or on behalf of another connection); a timer that
/// needs the protocol itself is [`Transport::call_later`].
pub trait Protocol: Any {
    /// Attaches the protocol to its transport. The default just calls
    /// [`connection_made`](Protocol::connection_made); wrappers override it.
    fn make_connection(&mut self, transport: &Transport) {
        self.connection_made(transport)
    }

    /// The connection is up. Send a greeting here if the protocol has one.
    fn connection_made(&mut self, _transport: &Transport) {}

    /// Bytes arrived. They follow no message boundaries: a message may arrive in several
    /// calls and one call may hold several messages.
    fn data_received(&mut self, transport: &Transport, data: &[u8]);

    /// The connection is gone; called exactly once, after which the protocol is dropped.
    fn connection_lost(&mut self, _reason: &CloseReason) {}

    /// The peer closed its sending side (half-close). The default closes our side too, after
    /// sending what is queued; override it to keep writing.
    fn read_connection_lost(&mut self, transport: &Transport) {
        transport.lose_connection()
    }

    /// Our sending side has been shut down after `lose_write_connection`.
    fn write_connection_lost(&mut self, _transport: &Transport) {}

    /// A file descriptor arrived over a Unix socket (before the bytes sent with it). The
    /// default closes it.
    fn file_descriptor_received(&mut self, _transport: &Transport, fd: OwnedFd) {
        tracing::debug!("closing unexpected file descriptor {fd:?}");
    }

    /// The TLS handshake on this connection has completed (Twisted's
    /// `IHandshakeListener.handshakeCompleted`); only TLS transports call it. The
    /// negotiated details are on the transport: downcast it to
    /// [`TlsTransport`](crate::tls::TlsTransport).
    fn handshake_completed(&mut self, _transport: &Transport) {}

    /// The protocol this one wraps, for a wrapper that passes every callback on to another
    /// protocol (as [`ClientService`](crate::application::ClientService) does to watch its
    /// connection). [`Transport::call_later`] and `downcast_mut` look through it to find
    /// the application's protocol. The default: `None`, this is no wrapper.
    fn wrapped_protocol(&mut self) -> Option<&mut dyn Protocol> {
        None
    }
}

impl<P: Protocol + ?Sized> Protocol for Box<P> {
    fn make_connection(&mut self, transport: &Transport) {
        (**self).make_connection(transport)
    }
    fn connection_made(&mut self, transport: &Transport) {
        (**self).connection_made(transport)
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        (**self).data_received(transport, data)
    }
    fn connection_lost(&mut self, reason: &CloseReason) {
        (**self).connection_lost(reason)
    }
    fn read_connection_lost(&mut self, transport: &Transport) {
        (**self).read_connection_lost(transport)
    }
    fn write_connection_lost(&mut self, transport: &Transport) {
        (**self).write_connection_lost(transport)
    }
    fn file_descriptor_received(&mut self, transport: &Transport, fd: OwnedFd) {
        (**self).file_descriptor_received(transport, fd)
    }
    fn handshake_completed(&mut self, transport: &Transport) {
        (**self).handshake_completed(transport)
    }
    fn wrapped_protocol(&mut self) -> Option<&mut dyn Protocol> {
        (**self).wrapped_protocol()
    }
}

impl dyn Protocol {
    /// The protocol as a `P`, if it is one (looking through a `Box<dyn Protocol>` that
    /// holds one, and through wrappers that say what they wrap with
    /// [`Protocol::wrapped_protocol`]).
    pub fn downcast_mut<P: Protocol>(&mut self) -> Option<&mut P> {
        let is = |p: &dyn Protocol, id: std::any::TypeId| (p as &dyn Any).type_id() == id;
        if is(self, std::any::TypeId::of::<P>()) {
            return (self as &mut dyn Any).downcast_mut::<P>();
        }
        if is(self, std::any::TypeId::of::<Box<dyn Protocol>>()) {
            let inner = (self as &mut dyn Any).downcast_mut::<Box<dyn Protocol>>()?;
            return (**inner).downcast_mut::<P>();
        }
        self.wrapped_protocol()?.downcast_mut::<P>()
    }
}

/// A protocol wrapped to hear when its connection is made and when it is lost, every
/// callback passed on: how an endpoint fires its Deferred once connected, and how a
/// `ClientService` notices its connection went. `Transport::call_later` and
/// `downcast_mut` look through it.
pub(crate) struct Watched {
    inner: Box<dyn Protocol>,
    on_made: Option<OnMade>,
    on_lost: Option<OnLost>,
}

/// What a [`Watched`] runs once the connection is made.
type OnMade = Box<dyn FnOnce(&Transport)>;
/// What a [`Watched`] runs once the connection is lost.
type OnLost = Box<dyn FnOnce(&CloseReason)>;

impl Watched {
    /// Wraps `inner`, calling `on_made` after its `make_connection`.
    pub(crate) fn on_made(inner: Box<dyn Protocol>, f: impl FnOnce(&Transport) + 'static) -> Self {
        Watched {
            inner,
            on_made: Some(Box::new(f)),
            on_lost: None,
        }
    }

    /// Wraps `inner`, calling `on_lost` after its `connection_lost`.
    pub(crate) fn on_lost(
        inner: Box<dyn Protocol>,
        f: impl FnOnce(&CloseReason) + 'static,
    ) -> Self {
        Watched {
            inner,
            on_made: None,
            on_lost: Some(Box::new(f)),
        }
    }
}

impl Protocol for Watched {
    fn make_connection(&mut self, transport: &Transport) {
        self.inner.make_connection(transport);
        if let Some(f) = self.on_made.take() {
            f(transport);
        }
    }
    fn connection_made(&mut self, transport: &Transport) {
        self.inner.connection_made(transport)
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.inner.data_received(transport, data)
    }
    fn connection_lost(&mut self, reason: &CloseReason) {
        self.inner.connection_lost(reason);
        if let Some(f) = self.on_lost.take() {
            f(reason);
        }
    }
    fn read_connection_lost(&mut self, transport: &Transport) {
        self.inner.read_connection_lost(transport)
    }
    fn write_connection_lost(&mut self, transport: &Transport) {
        self.inner.write_connection_lost(transport)
    }
    fn file_descriptor_received(&mut self, transport: &Transport, fd: OwnedFd) {
        self.inner.file_descriptor_received(transport, fd)
    }
    fn handshake_completed(&mut self, transport: &Transport) {
        self.inner.handshake_completed(transport)
    }
    fn wrapped_protocol(&mut self) -> Option<&mut dyn Protocol> {
        Some(&mut *self.inner)
    }
}

/// The application's handler for a datagram socket (UDP, Unix datagrams): Twisted's
/// `DatagramProtocol`. There is no connection: each datagram arrives whole, with the address
/// it came from.
pub trait DatagramProtocol: 'static {
    /// The socket is ready (listening has started).
    fn start_protocol(&mut self, _transport: &DatagramTransport) {}

    /// The socket is closing.
    fn stop_protocol(&mut self) {}

    /// One datagram arrived from `addr` (truncated to the port's maximum packet size).
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], addr: &Address);

    /// On a connected socket: the peer said nothing listens there (ICMP port
    /// unreachable).
    fn connection_refused(&mut self, _transport: &DatagramTransport) {}
}

/// Builds a protocol for each connection.
///
/// One factory may serve several listening ports; [`start_factory`](Factory::start_factory)
/// runs when the first of them starts and [`stop_factory`](Factory::stop_factory) after the
/// last one stops, as in Twisted.
pub trait Factory: 'static {
    /// Builds the protocol for a new connection from `addr`, or refuses it with `None`
    /// (the connection is closed at once).
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>>;

    /// Called before the first port or connector using this factory starts.
    fn start_factory(&self) {}

    /// Called after the last port or connector using this factory stops.
    fn stop_factory(&self) {}

    /// A name for this factory in log messages.
    fn log_prefix(&self) -> &str {
        short_type_name(type_name::<Self>())
    }

    /// Whether starting and stopping this factory is logged.
    fn noisy(&self) -> bool {
        true
    }
}

/// A factory for outgoing connections: it also hears how each attempt ends.
pub trait ClientFactory: Factory {
    /// A connection attempt has started.
    fn started_connecting(&self, _connector: &Connector) {}

    /// The attempt failed: refused, timed out, the name did not resolve...
    fn client_connection_failed(&self, _connector: &Connector, _reason: &Error) {}

    /// An established connection ended (after the protocol's `connection_lost`).
    fn client_connection_lost(&self, _connector: &Connector, _reason: &CloseReason) {}
}

/// A factory made from a closure that builds each protocol.
///
/// ```
/// use twistor::protocol::{factory, Protocol};
/// use twistor::Transport;
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
///         transport.write(data);
///     }
/// }
/// let echo_factory = factory(|_addr| Echo);
/// ```
pub struct FnFactory<F, P> {
    build: F,
    _protocol: PhantomData<fn() -> P>,
}

/// Makes a factory (server or client) that builds each protocol with `build`.
pub fn factory<F, P>(build: F) -> Rc<FnFactory<F, P>>
where
    F: Fn(&Address) -> P + 'static,
    P: Protocol,
{
    Rc::new(FnFactory {
        build,
        _protocol: PhantomData,
    })
}

impl<F, P> Factory for FnFactory<F, P>
where
    F: Fn(&Address) -> P + 'static,
    P: Protocol,
{
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new((self.build)(addr)))
    }

    fn log_prefix(&self) -> &str {
        short_type_name(type_name::<P>())
    }
}

impl<F, P> ClientFactory for FnFactory<F, P>
where
    F: Fn(&Address) -> P + 'static,
    P: Protocol,
{
}

/// A shared factory is a factory (so wrappers such as the reconnecting factory can hold an
/// `Rc` the application also keeps).
impl<F: Factory + ?Sized> Factory for Rc<F> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        (**self).build_protocol(addr)
    }
    fn start_factory(&self) {
        (**self).start_factory()
    }
    fn stop_factory(&self) {
        (**self).stop_factory()
    }
    fn log_prefix(&self) -> &str {
        (**self).log_prefix()
    }
    fn noisy(&self) -> bool {
        (**self).noisy()
    }
}

impl<F: ClientFactory + ?Sized> ClientFactory for Rc<F> {
    fn started_connecting(&self, connector: &Connector) {
        (**self).started_connecting(connector)
    }
    fn client_connection_failed(&self, connector: &Connector, reason: &Error) {
        (**self).client_connection_failed(connector, reason)
    }
    fn client_connection_lost(&self, connector: &Connector, reason: &CloseReason) {
        (**self).client_connection_lost(connector, reason)
    }
}

/// A connection protocol's callbacks, as the engine's guard delivers (and queues) them.
pub(crate) enum ConnEvent {
    Make,
    Data(Vec<u8>),
    ReadLost,
    WriteLost,
    Fd(OwnedFd),
    Handshake,
    /// A per-connection timer (`Transport::call_later`).
    Call(ProtocolCall),
    Lost(CloseReason),
}

/// The guard's [`Kind`] for [`Protocol`]s (streams, TLS, standard I/O).
pub(crate) struct Conn;

impl Kind for Conn {
    type Protocol = dyn Protocol;
    type Transport = Transport;
    type Event = ConnEvent;

    fn deliver(p: &mut dyn Protocol, t: &Transport, event: ConnEvent) {
        match event {
            ConnEvent::Make => p.make_connection(t),
            ConnEvent::Data(data) => p.data_received(t, &data),
            ConnEvent::ReadLost => p.read_connection_lost(t),
            ConnEvent::WriteLost => p.write_connection_lost(t),
            ConnEvent::Fd(fd) => p.file_descriptor_received(t, fd),
            ConnEvent::Handshake => p.handshake_completed(t),
            ConnEvent::Call(call) => call(p, t),
            ConnEvent::Lost(reason) => p.connection_lost(&reason),
        }
    }
}

impl Delivery<Conn> for ConnEvent {
    fn call(self, p: &mut dyn Protocol, t: &Transport) {
        Conn::deliver(p, t, self)
    }

    fn keep(self) -> ConnEvent {
        self
    }
}

/// `data_received` with bytes borrowed from a read buffer (copied only if kept).
pub(crate) struct Received<'a>(pub(crate) &'a [u8]);

impl Delivery<Conn> for Received<'_> {
    #[inline(always)]
    fn call(self, p: &mut dyn Protocol, t: &Transport) {
        p.data_received(t, self.0)
    }

    fn keep(self) -> ConnEvent {
        ConnEvent::Data(self.0.to_vec())
    }
}

thread_local! {
    /// How many ports and connectors use each factory, keyed by its address: Twisted keeps
    /// this count (`numPorts`) on the factory object itself.
    static FACTORY_USERS: RefCell<HashMap<usize, usize>> = RefCell::new(HashMap::new());
}

fn factory_key<F: ?Sized>(factory: &Rc<F>) -> usize {
    Rc::as_ptr(factory) as *const () as usize
}

/// Counts one more user of `factory`, calling `start_factory` for the first (Twisted's
/// `doStart`).
pub(crate) fn do_start<F: Factory + ?Sized>(factory: &Rc<F>) {
    let first = FACTORY_USERS.with(|users| {
        let mut users = users.borrow_mut();
        let count = users.entry(factory_key(factory)).or_insert(0);
        *count += 1;
        *count == 1
    });
    if first {
        if factory.noisy() {
            tracing::info!("Starting factory {}", factory.log_prefix());
        }
        factory.start_factory();
    }
}

/// Counts one user of `factory` fewer, calling `stop_factory` after the last (Twisted's
/// `doStop`). Extra calls are ignored.
pub(crate) fn do_stop<F: Factory + ?Sized>(factory: &Rc<F>) {
    let last = FACTORY_USERS.with(|users| {
        let mut users = users.borrow_mut();
        let key = factory_key(factory);
        match users.get_mut(&key) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                users.remove(&key);
                true
            }
            None => false,
        }
    });
    if last {
        if factory.noisy() {
            tracing::info!("Stopping factory {}", factory.log_prefix());
        }
        factory.stop_factory();
    }
}

/// `my_crate::module::Type<Args>` → `Type<Args>`.
fn short_type_name(name: &str) -> &str {
    let end = name.find('<').unwrap_or(name.len());
    match name[..end].rfind("::") {
        Some(i) => &name[i + 2..],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Counting {
        starts: Cell<u32>,
        stops: Cell<u32>,
    }

    impl Factory for Counting {
        fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
            None
        }
        fn start_factory(&self) {
            self.starts.set(self.starts.get() + 1);
        }
        fn stop_factory(&self) {
            self.stops.set(self.stops.get() + 1);
        }
    }

    #[test]
    fn start_once_stop_after_last_user() {
        let f = Rc::new(Counting {
            starts: Cell::new(0),
            stops: Cell::new(0),
        });
        do_start(&f);
        do_start(&f);
        assert_eq!((f.starts.get(), f.stops.get()), (1, 0));
        do_stop(&f);
        assert_eq!(f.stops.get(), 0);
        do_stop(&f);
        assert_eq!(f.stops.get(), 1);
        do_stop(&f); // extra stop is ignored
        assert_eq!(f.stops.get(), 1);
        do_start(&f);
        assert_eq!(f.starts.get(), 2);
        do_stop(&f);
    }

    #[test]
    fn short_names() {
        assert_eq!(short_type_name("a::b::Echo"), "Echo");
        assert_eq!(short_type_name("a::Wrap<b::C>"), "Wrap<b::C>");
        assert_eq!(short_type_name("Plain"), "Plain");
    }
}
