//! Line framing with a raw mode and pausing: Twisted's `LineReceiver`.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::ops::Range;
use std::rc::Rc;

use memchr::memmem::Finder;
use twistor::transport::Producer;
use twistor::{CloseReason, Protocol, Transport};

/// The longest line accepted by default, in bytes, without its delimiter (Twisted's
/// `LineReceiver.MAX_LENGTH`).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 16_384;

/// The default line delimiter.
pub const DEFAULT_DELIMITER: &[u8] = b"\r\n";

/// What a [`LineReceiver`] delivers; every method but
/// [`line_received`](LineHandler::line_received) has a default.
///
/// Each callback gets a [`Lines`] context: it writes (`send_line`), switches between line and
/// raw mode, and pauses or resumes delivery.
pub trait LineHandler: 'static {
    /// The connection is up.
    fn connection_made(&mut self, _lines: &mut Lines<'_>) {}

    /// One line arrived, without its delimiter.
    fn line_received(&mut self, lines: &mut Lines<'_>, line: &[u8]);

    /// Bytes arrived in raw mode (see [`Lines::set_raw_mode`]). By default they are dropped
    /// with a debug log.
    fn raw_data_received(&mut self, _lines: &mut Lines<'_>, data: &[u8]) {
        tracing::debug!("{} raw bytes dropped: no raw_data_received", data.len());
    }

    /// A line longer than the maximum arrived (or the buffer outgrew it without a
    /// delimiter). `data` is the long line, its delimiter and everything buffered after it,
    /// which is dropped. By default the connection is closed (Twisted's
    /// `lineLengthExceeded`).
    fn line_length_exceeded(&mut self, lines: &mut Lines<'_>, data: &[u8]) {
        tracing::info!(
            "line of more than {} bytes from {}; closing the connection",
            data.len().min(lines.max_length() + 1),
            lines.transport().peer()
        );
        lines.transport().lose_connection();
    }

    /// The connection is gone.
    fn connection_lost(&mut self, _reason: &CloseReason) {}
}

/// A handler's view of its [`LineReceiver`] during a callback.
pub struct Lines<'a> {
    transport: &'a Transport,
    delimiter: &'a [u8],
    max_length: usize,
    control: &'a LineControl,
    requests: &'a mut Requests,
}

#[derive(Default)]
struct Requests {
    raw: Option<bool>,
    extra: Vec<u8>,
    delimiter: Option<Vec<u8>>,
    max_length: Option<usize>,
}

impl Lines<'_> {
    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        self.transport
    }

    /// Writes `line` followed by the delimiter.
    pub fn send_line(&self, line: &[u8]) {
        let delimiter = self.requests.delimiter.as_deref().unwrap_or(self.delimiter);
        self.transport.write_sequence(&[line, delimiter]);
    }

    /// From the next byte on, deliver everything to
    /// [`raw_data_received`](LineHandler::raw_data_received) instead of splitting lines.
    pub fn set_raw_mode(&mut self) {
        self.requests.raw = Some(true);
    }

    /// Back to splitting lines; `extra` is parsed as if it had just arrived (after anything
    /// still buffered), as in Twisted's `setLineMode(extra)`.
    pub fn set_line_mode(&mut self, extra: &[u8]) {
        self.requests.raw = Some(false);
        self.requests.extra.extend_from_slice(extra);
    }

    /// Changes the delimiter for the lines after this one.
    pub fn set_delimiter(&mut self, delimiter: &[u8]) {
        if !delimiter.is_empty() {
            self.requests.delimiter = Some(delimiter.to_vec());
        }
    }

    /// The longest line accepted.
    pub fn max_length(&self) -> usize {
        self.requests.max_length.unwrap_or(self.max_length)
    }

    /// Changes the longest line accepted.
    pub fn set_max_length(&mut self, max: usize) {
        self.requests.max_length = Some(max);
    }

    /// Stops delivering lines (and stops reading) until resumed; what is already buffered
    /// is held. See [`LineControl`].
    pub fn pause_producing(&self) {
        self.control.pause_producing();
    }

    /// Resumes delivery after [`pause_producing`](Lines::pause_producing).
    pub fn resume_producing(&self) {
        self.control.resume_producing();
    }

    /// A handle to pause and resume this receiver later, from outside its callbacks (a
    /// timer, another connection, a Deferred).
    pub fn control(&self) -> LineControl {
        self.control.clone()
    }

    /// A handle that sends lines on this connection from anywhere: another connection's
    /// callback (a chat server's broadcast), a timer, a Deferred. It adds the delimiter in
    /// force when it sends.
    pub fn sender(&self) -> LineSender {
        LineSender {
            transport: self.transport.clone(),
            control: self.control.clone(),
        }
    }
}

/// Sends lines on one [`LineReceiver`]'s connection, delimiter included, from outside its
/// callbacks; made by [`Lines::sender`]. Cheap to clone. Once the connection is gone,
/// sending does nothing.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use twistor::Protocol;
/// use twistor_protocols::basic::{LineHandler, LineReceiver, LineSender, Lines};
/// use twistor_testing::StringTransport;
///
/// /// Sends every line it gets to everyone in the room (itself included).
/// struct Member(Rc<RefCell<Vec<LineSender>>>);
///
/// impl LineHandler for Member {
///     fn connection_made(&mut self, lines: &mut Lines<'_>) {
///         self.0.borrow_mut().push(lines.sender());
///     }
///     fn line_received(&mut self, _lines: &mut Lines<'_>, line: &[u8]) {
///         for member in self.0.borrow().iter() {
///             member.send_line(line);
///         }
///     }
/// }
///
/// let room = Rc::new(RefCell::new(Vec::new()));
/// let (alice, bob) = (StringTransport::new(), StringTransport::new());
/// let mut a = LineReceiver::new(Member(room.clone()));
/// let mut b = LineReceiver::new(Member(room.clone()));
/// a.make_connection(&alice.transport());
/// b.make_connection(&bob.transport());
/// a.data_received(&alice.transport(), b"hi bob\r\n");
/// assert_eq!(bob.value(), b"hi bob\r\n");
/// ```
#[derive(Clone)]
pub struct LineSender {
    transport: Transport,
    control: LineControl,
}

impl LineSender {
    /// Writes `line` followed by the connection's delimiter.
    pub fn send_line(&self, line: &[u8]) {
        // Copied, not borrowed across the write: on an in-memory transport the write may
        // run the peer, and through it this connection's handler, which may change the
        // delimiter.
        let delimiter = self.control.state.delimiter.borrow().clone();
        self.transport.write_sequence(&[line, &delimiter]);
    }

    /// The connection's transport (to close it, or write raw bytes).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Whether both name the same connection.
    pub fn same_connection(&self, other: &LineSender) -> bool {
        self.transport.ptr_eq(&other.transport)
    }
}

impl std::fmt::Debug for LineSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineSender")
            .field("peer", &self.transport.peer())
            .finish()
    }
}

/// Splits received bytes into lines, or hands them over raw: the sans-IO core of
/// [`LineReceiver`].
///
/// Drive it with [`feed`](LineBuffer::feed), then call [`poll_frame`](LineBuffer::poll_frame) until
/// it returns `None`; each [`Frame`]'s bytes are [`slice`](LineBuffer::slice)d out before
/// the next `feed`.
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out.
    pos: usize,
    /// Where the next delimiter search starts (bytes before it hold no delimiter start).
    scanned: usize,
    delimiter: Vec<u8>,
    finder: Finder<'static>,
    max_length: usize,
    raw: bool,
}

/// One thing a [`LineBuffer`] hands out: what it is, and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A line (the range excludes the delimiter).
    Line(Range<usize>),
    /// Raw-mode bytes.
    Raw(Range<usize>),
    /// A line over the limit: the line, its delimiter and everything buffered after it.
    TooLong(Range<usize>),
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer::new(DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH)
    }
}

impl LineBuffer {
    /// A buffer in line mode. An empty delimiter is replaced by the default.
    pub fn new(delimiter: &[u8], max_length: usize) -> LineBuffer {
        let delimiter = if delimiter.is_empty() {
            DEFAULT_DELIMITER.to_vec()
        } else {
            delimiter.to_vec()
        };
        LineBuffer {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            finder: Finder::new(&delimiter).into_owned(),
            delimiter,
            max_length,
            raw: false,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.scanned -= self.pos;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next line, raw chunk or overflow, if the buffer holds one.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        let end = self.buf.len();
        if self.pos == end {
            return None;
        }
        if self.raw {
            let range = self.pos..end;
            self.consume_all();
            return Some(Frame::Raw(range));
        }
        let from = self.scanned.max(self.pos);
        match self.finder.find(&self.buf[from..]) {
            Some(i) => {
                let at = from + i;
                if at - self.pos > self.max_length {
                    let range = self.pos..end;
                    self.consume_all();
                    return Some(Frame::TooLong(range));
                }
                let range = self.pos..at;
                self.pos = at + self.delimiter.len();
                self.scanned = self.pos;
                Some(Frame::Line(range))
            }
            None => {
                // A delimiter may still start in the last len-1 bytes.
                self.scanned = end.saturating_sub(self.delimiter.len() - 1).max(self.pos);
                if end - self.pos >= self.max_length + self.delimiter.len() {
                    let range = self.pos..end;
                    self.consume_all();
                    return Some(Frame::TooLong(range));
                }
                None
            }
        }
    }

    /// The bytes of a frame just returned by [`poll_frame`](LineBuffer::poll_frame).
    pub fn slice(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Switches to raw mode (`true`) or line mode.
    pub fn set_raw(&mut self, raw: bool) {
        self.raw = raw;
    }

    /// Whether the buffer is in raw mode.
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        &self.delimiter
    }

    /// Changes the delimiter (an empty one is ignored).
    pub fn set_delimiter(&mut self, delimiter: &[u8]) {
        if delimiter.is_empty() {
            return;
        }
        self.delimiter = delimiter.to_vec();
        self.finder = Finder::new(&self.delimiter).into_owned();
        self.scanned = self.pos;
    }

    /// The longest line accepted.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Changes the longest line accepted.
    pub fn set_max_length(&mut self, max: usize) {
        self.max_length = max;
    }

    /// Bytes received but not yet handed out.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Drops everything not yet handed out and returns it (Twisted's `clearLineBuffer`).
    pub fn clear(&mut self) -> Vec<u8> {
        let rest = self.buf[self.pos..].to_vec();
        self.buf.clear();
        self.pos = 0;
        self.scanned = 0;
        rest
    }

    fn consume_all(&mut self) {
        self.pos = self.buf.len();
        self.scanned = self.pos;
    }
}

/// A protocol that splits its input into lines for a [`LineHandler`] (Twisted's
/// `LineReceiver`).
///
/// Lines end with the delimiter (default `\r\n`) and may be at most
/// [`DEFAULT_MAX_LINE_LENGTH`] bytes long. The handler may switch to raw mode and back
/// (leftover bytes are re-parsed in the new mode), and may pause delivery: while paused the
/// transport stops reading and buffered lines are held, to be delivered on resume.
///
/// ```
/// use twistor::Protocol;
/// use twistor_protocols::basic::{LineHandler, LineReceiver, Lines};
/// use twistor_testing::StringTransport;
///
/// struct Shout;
/// impl LineHandler for Shout {
///     fn line_received(&mut self, lines: &mut Lines<'_>, line: &[u8]) {
///         lines.send_line(&line.to_ascii_uppercase());
///     }
/// }
///
/// let st = StringTransport::new();
/// let mut proto = LineReceiver::new(Shout);
/// proto.make_connection(&st.transport());
/// proto.data_received(&st.transport(), b"hello\r\nwor");
/// proto.data_received(&st.transport(), b"ld\r\n");
/// assert_eq!(st.value(), b"HELLO\r\nWORLD\r\n");
/// ```
pub struct LineReceiver<H: LineHandler> {
    shared: Rc<Shared<H>>,
}

struct Shared<H> {
    core: RefCell<Core<H>>,
    /// Bytes that arrived while the core was busy (re-entrant delivery).
    stash: RefCell<Vec<u8>>,
    control: LineControl,
}

struct Core<H> {
    buffer: LineBuffer,
    handler: H,
}

/// Pauses and resumes a [`LineReceiver`]'s delivery of lines: it is a [`Producer`], so it
/// can be registered with another transport (the receiver then slows down when that
/// transport's peer reads slowly).
///
/// Pausing stops the transport reading and holds lines already buffered; resuming delivers
/// them, then reads again.
#[derive(Clone)]
pub struct LineControl {
    state: Rc<ControlState>,
}

struct ControlState {
    paused: Cell<bool>,
    /// The delimiter in force, for [`LineSender`]s (the buffer has its own copy).
    delimiter: RefCell<Rc<[u8]>>,
    transport: RefCell<Option<Transport>>,
    /// Runs the receiver's delivery loop (set once the receiver exists).
    pump: RefCell<Option<std::rc::Weak<dyn Pump>>>,
}

trait Pump {
    fn pump(&self);
}

impl LineControl {
    /// Whether delivery is paused.
    pub fn paused(&self) -> bool {
        self.state.paused.get()
    }

    fn transport(&self) -> Option<Transport> {
        self.state.transport.borrow().clone()
    }
}

impl Producer for LineControl {
    fn pause_producing(&self) {
        self.state.paused.set(true);
        if let Some(t) = self.transport() {
            t.pause_producing();
        }
    }

    fn resume_producing(&self) {
        if !self.state.paused.replace(false) {
            return;
        }
        let pump = self.state.pump.borrow().as_ref().and_then(|w| w.upgrade());
        if let Some(pump) = pump {
            pump.pump();
        }
        // Delivering held lines may have paused again.
        if !self.state.paused.get()
            && let Some(t) = self.transport()
        {
            t.resume_producing();
        }
    }

    fn stop_producing(&self) {
        self.state.paused.set(true);
        if let Some(t) = self.transport() {
            t.stop_producing();
        }
    }
}

impl<H: LineHandler> LineReceiver<H> {
    /// A receiver with the default delimiter and maximum line length.
    pub fn new(handler: H) -> LineReceiver<H> {
        LineReceiver::with_buffer(handler, LineBuffer::default())
    }

    /// A receiver splitting lines at `delimiter`, with lines of at most `max_length` bytes.
    pub fn with_delimiter(handler: H, delimiter: &[u8], max_length: usize) -> LineReceiver<H> {
        LineReceiver::with_buffer(handler, LineBuffer::new(delimiter, max_length))
    }

    fn with_buffer(handler: H, buffer: LineBuffer) -> LineReceiver<H> {
        let control = LineControl {
            state: Rc::new(ControlState {
                paused: Cell::new(false),
                delimiter: RefCell::new(Rc::from(buffer.delimiter())),
                transport: RefCell::new(None),
                pump: RefCell::new(None),
            }),
        };
        let shared = Rc::new(Shared {
            core: RefCell::new(Core { buffer, handler }),
            stash: RefCell::new(Vec::new()),
            control,
        });
        let weak: std::rc::Weak<dyn Pump> = Rc::downgrade(&(shared.clone() as Rc<dyn Pump>));
        *shared.control.state.pump.borrow_mut() = Some(weak);
        LineReceiver { shared }
    }

    /// The handler. Do not hold the borrow across a callback of this receiver.
    pub fn handler(&self) -> Ref<'_, H> {
        Ref::map(self.shared.core.borrow(), |c| &c.handler)
    }

    /// The handler, mutably.
    pub fn handler_mut(&self) -> RefMut<'_, H> {
        RefMut::map(self.shared.core.borrow_mut(), |c| &mut c.handler)
    }

    /// The handle that pauses and resumes delivery.
    pub fn control(&self) -> LineControl {
        self.shared.control.clone()
    }

    /// Bytes received but not yet delivered.
    pub fn pending(&self) -> Vec<u8> {
        self.shared.core.borrow().buffer.pending().to_vec()
    }
}

impl<H: LineHandler> Shared<H> {
    /// Delivers what the buffer holds until it runs out, delivery is paused, or the
    /// connection is closing.
    fn deliver(&self) {
        let Some(transport) = self.control.transport() else {
            return;
        };
        let Ok(mut core) = self.core.try_borrow_mut() else {
            // Already delivering further up the stack: that loop picks the bytes up.
            return;
        };
        let core = &mut *core;
        loop {
            let stashed = std::mem::take(&mut *self.stash.borrow_mut());
            if !stashed.is_empty() {
                core.buffer.feed(&stashed);
            }
            if self.control.paused() || transport.disconnecting() {
                return;
            }
            let Some(frame) = core.buffer.poll_frame() else {
                return;
            };
            let mut requests = Requests::default();
            let mut lines = Lines {
                transport: &transport,
                delimiter: core.buffer.delimiter(),
                max_length: core.buffer.max_length(),
                control: &self.control,
                requests: &mut requests,
            };
            let too_long = match frame {
                Frame::Line(r) => {
                    let line = &core.buffer.buf[r];
                    core.handler.line_received(&mut lines, line);
                    false
                }
                Frame::Raw(r) => {
                    let data = &core.buffer.buf[r];
                    core.handler.raw_data_received(&mut lines, data);
                    false
                }
                Frame::TooLong(r) => {
                    let data = &core.buffer.buf[r];
                    core.handler.line_length_exceeded(&mut lines, data);
                    true
                }
            };
            apply(&mut core.buffer, requests, &self.control);
            if too_long && transport.disconnecting() {
                return;
            }
        }
    }
}

fn apply(buffer: &mut LineBuffer, requests: Requests, control: &LineControl) {
    if let Some(delimiter) = requests.delimiter {
        buffer.set_delimiter(&delimiter);
        *control.state.delimiter.borrow_mut() = Rc::from(buffer.delimiter());
    }
    if let Some(max) = requests.max_length {
        buffer.set_max_length(max);
    }
    if let Some(raw) = requests.raw {
        buffer.set_raw(raw);
    }
    if !requests.extra.is_empty() {
        buffer.feed(&requests.extra);
    }
}

impl<H: LineHandler> Pump for Shared<H> {
    fn pump(&self) {
        self.deliver();
    }
}

impl<H: LineHandler> Protocol for LineReceiver<H> {
    fn connection_made(&mut self, transport: &Transport) {
        *self.shared.control.state.transport.borrow_mut() = Some(transport.clone());
        let mut requests = Requests::default();
        {
            let mut core = self.shared.core.borrow_mut();
            let core = &mut *core;
            let mut lines = Lines {
                transport,
                delimiter: core.buffer.delimiter(),
                max_length: core.buffer.max_length(),
                control: &self.shared.control,
                requests: &mut requests,
            };
            core.handler.connection_made(&mut lines);
            apply(&mut core.buffer, requests, &self.shared.control);
        }
        self.shared.deliver();
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        match self.shared.core.try_borrow_mut() {
            Ok(mut core) => core.buffer.feed(data),
            Err(_) => {
                self.shared.stash.borrow_mut().extend_from_slice(data);
                return;
            }
        }
        self.shared.deliver();
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.shared.control.state.transport.borrow_mut().take();
        if let Ok(mut core) = self.shared.core.try_borrow_mut() {
            core.handler.connection_lost(reason);
        }
    }
}
