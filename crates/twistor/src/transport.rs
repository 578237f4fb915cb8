//! The `Transport` handle that protocols write to, and the producer/consumer interfaces.
//!
//! A [`Transport`] is a cheap clonable handle (`Rc` inside) to one connection. Protocols get
//! one in every callback and may keep a clone, so a chat server can write to other clients'
//! transports from any callback on the reactor thread.
//!
//! Kinds of transport (TCP, Unix, TLS, process pipes, the test kit's `StringTransport`) each
//! implement [`TransportImpl`]; [`Transport`] is the uniform face they show to protocols.

use std::any::{Any, type_name};
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::time::Duration;

use crate::address::Address;
use crate::error::Error;
use crate::protocol::Protocol;
use crate::reactor::{DelayedCall, Reactor};

/// Default high-water mark for a transport's outgoing buffer, in bytes (Twisted's
/// `FileDescriptor.bufferSize`): a streaming producer is paused above it.
pub const DEFAULT_HIGH_WATER_MARK: usize = 64 * 1024;

/// Turns a connection's protocol into another that wraps it (TLS started mid-connection, a
/// framing layer added later). See [`TransportImpl::wrap_protocol`].
pub type ProtocolWrapper = Box<dyn FnOnce(Box<dyn Protocol>) -> Box<dyn Protocol>>;

/// A call made later with a connection's protocol and transport; see
/// [`Transport::call_later`].
pub type ProtocolCall = Box<dyn FnOnce(&mut dyn Protocol, &Transport)>;

/// Something that produces data for a consumer (a transport) and can be told to slow down.
///
/// A *streaming* producer writes on its own schedule and is paused when the consumer's buffer
/// is full and resumed when it drains. A *pull* (non-streaming) producer writes only when
/// asked: the consumer calls [`resume_producing`](Producer::resume_producing) each time its
/// buffer empties.
///
/// The consumer calls these methods from inside its own `write` (Twisted does the same), so
/// keep the producer's state in `Cell`s or take care not to hold a `RefCell` borrow while
/// writing.
pub trait Producer {
    /// Stop producing until `resume_producing` is called.
    fn pause_producing(&self);
    /// Produce again (streaming), or produce the next chunk (pull).
    fn resume_producing(&self);
    /// Stop for good: the consumer is gone.
    fn stop_producing(&self);

    /// The transport this producer is, if it is one. A transport registered as its own
    /// producer (an echo that reads no faster than its peer reads) is then handled with a
    /// flag instead of bookkeeping.
    fn as_transport(&self) -> Option<&Transport> {
        None
    }
}

/// What every kind of transport implements; protocols use it through [`Transport`].
///
/// Methods take `&self`: implementations keep their state in `Cell`/`RefCell`, because a
/// transport is shared between the reactor, its protocol and any other code holding a handle.
/// None of these methods may call back into the transport's own protocol synchronously
/// (closing, for one, reports `connection_lost` later, from the reactor).
pub trait TransportImpl {
    /// Queues `data` to be sent, in order, without blocking. Never drops data; after the
    /// connection is closed or closing, writes are ignored with a debug log.
    fn write(&self, data: &[u8]);

    /// Queues several buffers, as if written one after another (sent with one vectored
    /// write where the transport can).
    fn write_sequence(&self, data: &[&[u8]]) {
        for chunk in data {
            self.write(chunk);
        }
    }

    /// Sends everything queued, then closes; the protocol then gets `connection_lost` with
    /// [`CloseReason::Done`](crate::protocol::CloseReason::Done).
    fn lose_connection(&self);

    /// Closes at once, discarding anything queued; the protocol then gets `connection_lost`
    /// with [`CloseReason::Aborted`](crate::protocol::CloseReason::Aborted).
    fn abort_connection(&self);

    /// Half-close: sends everything queued, then shuts down the sending side only. The
    /// protocol keeps receiving data and gets `write_connection_lost`.
    fn lose_write_connection(&self) {
        self.lose_connection();
    }

    /// The address of the other end.
    fn peer(&self) -> Address;

    /// The address of this end.
    fn host(&self) -> Address;

    /// Whether `lose_connection` or `abort_connection` has been called, or the connection is
    /// gone.
    fn disconnecting(&self) -> bool;

    /// Bytes queued but not yet handed to the OS.
    fn buffered(&self) -> usize;

    /// Stops reading from the connection (the transport as a producer for its protocol).
    fn pause_producing(&self);

    /// Starts reading again after `pause_producing`.
    fn resume_producing(&self);

    /// Stops reading for good and closes the connection.
    fn stop_producing(&self) {
        self.lose_connection();
    }

    /// Registers `producer` as the source of this transport's data. A streaming producer is
    /// paused while the outgoing buffer holds more than the high-water mark and resumed when
    /// it drains below it; a pull producer is resumed every time the buffer empties.
    fn register_producer(&self, producer: Box<dyn Producer>, streaming: bool) -> Result<(), Error>;

    /// Forgets the registered producer.
    fn unregister_producer(&self);

    /// Sets the outgoing high-water mark (default [`DEFAULT_HIGH_WATER_MARK`]).
    fn set_high_water_mark(&self, _bytes: usize) {}

    /// Turns Nagle's algorithm off (`true`) or on, for TCP transports.
    fn set_tcp_nodelay(&self, _enabled: bool) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "not a TCP transport",
        ))
    }

    /// Turns TCP keepalive probes on or off, for TCP transports.
    fn set_tcp_keepalive(&self, _enabled: bool) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "not a TCP transport",
        ))
    }

    /// Sends a copy of `fd` to the peer with the next byte written (Unix sockets only;
    /// Twisted's `sendFileDescriptor`). The peer's protocol gets it in
    /// [`Protocol::file_descriptor_received`] before the byte. The caller may close its own
    /// descriptor at once. Write at least one byte after it, or it is never sent.
    fn send_file_descriptor(&self, _fd: BorrowedFd<'_>) -> Result<(), Error> {
        Err(Error::Unsupported("descriptor passing needs a Unix socket"))
    }

    /// Replaces the connection's protocol with `wrap(protocol)`: from then on the wrapper
    /// receives the bytes (`start_tls` inserts TLS this way). If the protocol is running, the
    /// swap happens as soon as its callback returns. The wrapper gets no `make_connection`;
    /// the closure starts whatever it needs. Unsupported by default.
    fn wrap_protocol(&self, _wrap: ProtocolWrapper) -> Result<(), Error> {
        Err(Error::Unsupported("wrap_protocol"))
    }

    /// Runs `call` with the connection's protocol after `delay`, as one of its callbacks
    /// (after the running one, if the protocol is running); the call is cancelled when
    /// the connection is lost. A transport that gives its protocol a transport of its own
    /// (TLS, a wrapper) delivers to that protocol. Unsupported by default.
    fn call_later(&self, _delay: Duration, _call: ProtocolCall) -> Result<DelayedCall, Error> {
        Err(Error::Unsupported("call_later"))
    }

    /// The reactor the connection runs on, if it has one.
    fn reactor(&self) -> Option<Reactor> {
        None
    }

    /// The concrete transport, for features only some kinds have (TLS details, fd passing).
    fn as_any(&self) -> &dyn Any;
}

/// A handle to one connection, given to protocols. Cloning it is cheap.
#[derive(Clone)]
pub struct Transport {
    inner: Rc<dyn TransportImpl>,
}

impl Transport {
    /// Wraps a transport implementation in a handle.
    pub fn new(inner: Rc<dyn TransportImpl>) -> Transport {
        Transport { inner }
    }

    /// Queues `data` to be sent. See [`TransportImpl::write`].
    #[inline]
    pub fn write(&self, data: &[u8]) {
        self.inner.write(data)
    }

    /// Queues several buffers in order. See [`TransportImpl::write_sequence`].
    pub fn write_sequence(&self, data: &[&[u8]]) {
        self.inner.write_sequence(data)
    }

    /// Flushes, then closes. See [`TransportImpl::lose_connection`].
    pub fn lose_connection(&self) {
        self.inner.lose_connection()
    }

    /// Closes now, discarding queued data. See [`TransportImpl::abort_connection`].
    pub fn abort_connection(&self) {
        self.inner.abort_connection()
    }

    /// Half-closes the sending side after flushing. See
    /// [`TransportImpl::lose_write_connection`].
    pub fn lose_write_connection(&self) {
        self.inner.lose_write_connection()
    }

    /// The address of the other end.
    pub fn peer(&self) -> Address {
        self.inner.peer()
    }

    /// The address of this end.
    pub fn host(&self) -> Address {
        self.inner.host()
    }

    /// Whether the connection is closing or closed.
    pub fn disconnecting(&self) -> bool {
        self.inner.disconnecting()
    }

    /// Bytes queued but not yet handed to the OS.
    pub fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// Stops reading from the connection.
    pub fn pause_producing(&self) {
        self.inner.pause_producing()
    }

    /// Starts reading again.
    pub fn resume_producing(&self) {
        self.inner.resume_producing()
    }

    /// Stops reading for good and closes.
    pub fn stop_producing(&self) {
        self.inner.stop_producing()
    }

    /// Registers a producer for this transport's outgoing data. See
    /// [`TransportImpl::register_producer`].
    pub fn register_producer(
        &self,
        producer: impl Producer + 'static,
        streaming: bool,
    ) -> Result<(), Error> {
        self.inner.register_producer(Box::new(producer), streaming)
    }

    /// Forgets the registered producer.
    pub fn unregister_producer(&self) {
        self.inner.unregister_producer()
    }

    /// Sets the outgoing high-water mark, in bytes.
    pub fn set_high_water_mark(&self, bytes: usize) {
        self.inner.set_high_water_mark(bytes)
    }

    /// Turns Nagle's algorithm off (`true`) or on, for TCP transports.
    pub fn set_tcp_nodelay(&self, enabled: bool) -> io::Result<()> {
        self.inner.set_tcp_nodelay(enabled)
    }

    /// Turns TCP keepalive on or off, for TCP transports.
    pub fn set_tcp_keepalive(&self, enabled: bool) -> io::Result<()> {
        self.inner.set_tcp_keepalive(enabled)
    }

    /// Sends a copy of `fd` with the next byte written. See
    /// [`TransportImpl::send_file_descriptor`].
    pub fn send_file_descriptor(&self, fd: BorrowedFd<'_>) -> Result<(), Error> {
        self.inner.send_file_descriptor(fd)
    }

    /// Replaces the connection's protocol with a wrapper around it. See
    /// [`TransportImpl::wrap_protocol`].
    pub fn wrap_protocol(
        &self,
        wrap: impl FnOnce(Box<dyn Protocol>) -> Box<dyn Protocol> + 'static,
    ) -> Result<(), Error> {
        self.inner.wrap_protocol(Box::new(wrap))
    }

    /// Runs `f` with the connection's protocol after `delay` (Twisted's `self.callLater`
    /// inside a protocol): `f` gets the protocol, as the `P` it is, and its transport. The
    /// call is a callback of the protocol like the others (it waits for a running one to
    /// return, and a panic in it aborts the connection) and is cancelled when the
    /// connection is lost; cancel it sooner with the [`DelayedCall`]. Over TLS, or any
    /// layer that gives the protocol its own transport, call it on that transport (the
    /// one the protocol is given).
    ///
    /// Fails with [`Error::Unsupported`] on transports without a clock (the test kit's
    /// in-memory ones; TLS over them takes one with
    /// [`TlsProtocol::with_clock`](crate::tls::TlsProtocol::with_clock)), and if the
    /// connection is closed. If, when the time comes, the protocol is not a `P` (it was
    /// replaced), `f` is not called and the mismatch is logged.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use twistor::{Protocol, Transport};
    ///
    /// struct Idle {
    ///     heard: bool,
    /// }
    ///
    /// impl Protocol for Idle {
    ///     fn connection_made(&mut self, transport: &Transport) {
    ///         let timeout = Duration::from_secs(30);
    ///         let _ = transport.call_later(timeout, |me: &mut Idle, t: &Transport| {
    ///             if !me.heard {
    ///                 t.lose_connection();
    ///             }
    ///         });
    ///     }
    ///     fn data_received(&mut self, _: &Transport, _: &[u8]) {
    ///         self.heard = true;
    ///     }
    /// }
    /// ```
    pub fn call_later<P: Protocol>(
        &self,
        delay: Duration,
        f: impl FnOnce(&mut P, &Transport) + 'static,
    ) -> Result<DelayedCall, Error> {
        self.call_later_boxed(
            delay,
            Box::new(
                move |protocol, transport| match protocol.downcast_mut::<P>() {
                    Some(protocol) => f(protocol, transport),
                    None => crate::log::report_error!(
                        "a call_later for a {} was not made: the connection's protocol is another",
                        type_name::<P>()
                    ),
                },
            ),
        )
    }

    /// [`call_later`](Self::call_later) with the protocol as a `dyn Protocol` (for layers
    /// that pass calls on to the protocol they wrap).
    pub fn call_later_boxed(
        &self,
        delay: Duration,
        call: ProtocolCall,
    ) -> Result<DelayedCall, Error> {
        self.inner.call_later(delay, call)
    }

    /// The reactor the connection runs on (Twisted's `transport.reactor`), if it has one
    /// (the test kit's transports do not).
    pub fn reactor(&self) -> Option<Reactor> {
        self.inner.reactor()
    }

    /// The concrete transport, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.inner.as_any().downcast_ref::<T>()
    }

    /// The implementation behind this handle.
    pub(crate) fn inner(&self) -> &Rc<dyn TransportImpl> {
        &self.inner
    }

    /// Whether two handles name the same transport.
    pub fn ptr_eq(&self, other: &Transport) -> bool {
        std::ptr::addr_eq(Rc::as_ptr(&self.inner), Rc::as_ptr(&other.inner))
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("peer", &self.peer())
            .field("host", &self.host())
            .finish()
    }
}

/// A transport is itself a producer of the data it reads: pausing it stops reading. This is
/// what lets one transport throttle another (port forwarding).
impl Producer for Transport {
    fn pause_producing(&self) {
        Transport::pause_producing(self)
    }

    fn resume_producing(&self) {
        Transport::resume_producing(self)
    }

    fn stop_producing(&self) {
        Transport::stop_producing(self)
    }

    fn as_transport(&self) -> Option<&Transport> {
        Some(self)
    }
}

impl<P: Producer + ?Sized> Producer for Box<P> {
    fn pause_producing(&self) {
        (**self).pause_producing()
    }
    fn resume_producing(&self) {
        (**self).resume_producing()
    }
    fn stop_producing(&self) {
        (**self).stop_producing()
    }
    fn as_transport(&self) -> Option<&Transport> {
        (**self).as_transport()
    }
}

impl<P: Producer + ?Sized> Producer for Rc<P> {
    fn pause_producing(&self) {
        (**self).pause_producing()
    }

    fn resume_producing(&self) {
        (**self).resume_producing()
    }

    fn stop_producing(&self) {
        (**self).stop_producing()
    }

    fn as_transport(&self) -> Option<&Transport> {
        (**self).as_transport()
    }
}
