//! Length-framed strings: netstrings and big-endian length prefixes (Twisted's
//! `NetstringReceiver` and `Int8/16/32StringReceiver`).
//!
//! Both framings share the [`StringHandler`] trait; the decoders ([`NetstringDecoder`],
//! [`PrefixDecoder`]) are sans-IO cores that the receivers drive.

use std::ops::Range;

use twistor::{CloseReason, Protocol, Transport};

use crate::error::Error;

/// The longest string accepted by default (Twisted's `MAX_LENGTH` for both framings).
pub const DEFAULT_MAX_STRING_LENGTH: usize = 99_999;

/// What a [`NetstringReceiver`] or [`IntNStringReceiver`] delivers.
pub trait StringHandler: 'static {
    /// The connection is up.
    fn connection_made(&mut self, _strings: &Strings<'_>) {}

    /// One string arrived.
    fn string_received(&mut self, strings: &Strings<'_>, string: &[u8]);

    /// A length prefix announced a string over the limit; by default the connection is
    /// closed (Twisted's `lengthLimitExceeded`). Netstrings over the limit are a protocol
    /// error and always close.
    fn length_limit_exceeded(&mut self, strings: &Strings<'_>, length: u64) {
        tracing::info!(
            "{} announced a string of {length} bytes (limit {}); closing the connection",
            strings.transport().peer(),
            strings.max_length
        );
        strings.transport().lose_connection();
    }

    /// The connection is gone.
    fn connection_lost(&mut self, _reason: &CloseReason) {}
}

/// How strings are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `<decimal length>:<data>,`
    Netstring,
    /// A big-endian length prefix of this many bytes (1, 2 or 4).
    Prefix(usize),
}

impl Framing {
    /// The longest string this framing can carry at all.
    pub fn capacity(self) -> usize {
        match self {
            Framing::Netstring => usize::MAX,
            Framing::Prefix(n) if n >= std::mem::size_of::<usize>() => usize::MAX,
            Framing::Prefix(n) => (1usize << (8 * n)) - 1,
        }
    }

    /// Encodes `string`: an error if it is too long for the prefix, never a truncated frame.
    pub fn encode(self, string: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(string.len() + 12);
        self.encode_into(string, &mut out)?;
        Ok(out)
    }

    /// Appends the encoding of `string` to `out`.
    pub fn encode_into(self, string: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        match self {
            Framing::Netstring => {
                out.extend_from_slice(string.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(string);
                out.push(b',');
            }
            Framing::Prefix(n) => {
                if string.len() > self.capacity() {
                    return Err(Error::StringTooLong {
                        length: string.len(),
                        max: self.capacity(),
                    });
                }
                let len = (string.len() as u64).to_be_bytes();
                out.extend_from_slice(&len[8 - n..]);
                out.extend_from_slice(string);
            }
        }
        Ok(())
    }
}

/// A handler's view of its receiver during a callback: the transport, and a sender in the
/// receiver's framing.
pub struct Strings<'a> {
    transport: &'a Transport,
    framing: Framing,
    max_length: usize,
}

impl Strings<'_> {
    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        self.transport
    }

    /// Sends `string` framed; a string too long for the length prefix is an error and
    /// nothing is sent.
    pub fn send_string(&self, string: &[u8]) -> Result<(), Error> {
        match self.framing {
            Framing::Netstring => {
                let len = string.len().to_string();
                self.transport
                    .write_sequence(&[len.as_bytes(), b":", string, b","]);
            }
            Framing::Prefix(n) => {
                if string.len() > self.framing.capacity() {
                    return Err(Error::StringTooLong {
                        length: string.len(),
                        max: self.framing.capacity(),
                    });
                }
                let len = (string.len() as u64).to_be_bytes();
                self.transport.write_sequence(&[&len[8 - n..], string]);
            }
        }
        Ok(())
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }
}

/// What a decoder found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete string; its bytes are at this range of the decoder's buffer.
    String(Range<usize>),
    /// A length prefix announced a string over the limit (the decoder stops).
    TooLong(u64),
}

/// A reusable byte buffer with a read position.
#[derive(Default)]
struct Buffer {
    buf: Vec<u8>,
    pos: usize,
}

impl Buffer {
    fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }
}

/// Decodes netstrings (`12:hello world!,`): the sans-IO core of [`NetstringReceiver`].
///
/// Lengths are decimal without leading zeros (`0:,` is the empty string); a bad length,
/// a length over the limit or a missing comma is an error, after which the decoder
/// accepts nothing more.
pub struct NetstringDecoder {
    buffer: Buffer,
    max_length: usize,
    /// The length of the string being read, once its prefix is parsed.
    length: Option<usize>,
    broken: bool,
}

impl NetstringDecoder {
    /// A decoder accepting strings of at most `max_length` bytes.
    pub fn new(max_length: usize) -> NetstringDecoder {
        NetstringDecoder {
            buffer: Buffer::default(),
            max_length,
            length: None,
            broken: false,
        }
    }

    /// Appends received bytes (ignored once the decoder has failed).
    pub fn feed(&mut self, data: &[u8]) {
        if !self.broken {
            self.buffer.feed(data);
        }
    }

    /// The next string, `Ok(None)` if more bytes are needed, or the error that broke the
    /// stream.
    pub fn poll_string(&mut self) -> Result<Option<Range<usize>>, Error> {
        if self.broken {
            return Ok(None);
        }
        let result = self.next_inner();
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// The bytes of a string just returned.
    pub fn slice(&self, range: Range<usize>) -> &[u8] {
        &self.buffer.buf[range]
    }

    fn max_digits(&self) -> usize {
        self.max_length.checked_ilog10().unwrap_or(0) as usize + 1
    }

    fn next_inner(&mut self) -> Result<Option<Range<usize>>, Error> {
        let length = match self.length {
            Some(length) => length,
            None => {
                let rest = self.buffer.rest();
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                if digits > self.max_digits() {
                    return Err(Error::NetstringBadLength(format!(
                        "more than {} digits",
                        self.max_digits()
                    )));
                }
                if digits > 1 && rest[0] == b'0' {
                    return Err(Error::NetstringBadLength("leading zero".into()));
                }
                match rest.get(digits) {
                    None => return Ok(None),
                    Some(b':') if digits > 0 => {}
                    Some(&other) => {
                        return Err(Error::NetstringBadLength(format!(
                            "expected a digit or ':', got {:?}",
                            other as char
                        )));
                    }
                }
                // At most max_digits digits: this fits in a u64.
                let length: u64 = std::str::from_utf8(&rest[..digits])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                if length > self.max_length as u64 {
                    return Err(Error::NetstringTooLong {
                        length,
                        max: self.max_length,
                    });
                }
                self.buffer.pos += digits + 1;
                self.length = Some(length as usize);
                length as usize
            }
        };
        let rest = self.buffer.rest();
        if rest.len() <= length {
            return Ok(None);
        }
        if rest[length] != b',' {
            return Err(Error::NetstringMissingComma);
        }
        let start = self.buffer.pos;
        self.buffer.pos += length + 1;
        self.length = None;
        Ok(Some(start..start + length))
    }
}

/// Decodes strings with a big-endian length prefix of `N` bytes: the sans-IO core of
/// [`IntNStringReceiver`].
pub struct PrefixDecoder<const N: usize> {
    buffer: Buffer,
    max_length: usize,
    stopped: bool,
}

impl<const N: usize> PrefixDecoder<N> {
    /// A decoder accepting strings of at most `max_length` bytes.
    pub fn new(max_length: usize) -> Self {
        PrefixDecoder {
            buffer: Buffer::default(),
            max_length,
            stopped: false,
        }
    }

    /// Appends received bytes (ignored after a string over the limit).
    pub fn feed(&mut self, data: &[u8]) {
        if !self.stopped {
            self.buffer.feed(data);
        }
    }

    /// The next string, or `None` if more bytes are needed.
    pub fn poll_string(&mut self) -> Option<Decoded> {
        if self.stopped {
            return None;
        }
        let rest = self.buffer.rest();
        if rest.len() < N {
            return None;
        }
        let mut len = [0u8; 8];
        len[8 - N..].copy_from_slice(&rest[..N]);
        let length = u64::from_be_bytes(len);
        if length > self.max_length as u64 {
            self.stopped = true;
            return Some(Decoded::TooLong(length));
        }
        let length = length as usize;
        if rest.len() < N + length {
            return None;
        }
        let start = self.buffer.pos + N;
        self.buffer.pos = start + length;
        Some(Decoded::String(start..start + length))
    }

    /// The bytes of a string just returned.
    pub fn slice(&self, range: Range<usize>) -> &[u8] {
        &self.buffer.buf[range]
    }

    /// Changes the limit (AMP switches between key and value limits).
    pub fn set_max_length(&mut self, max: usize) {
        self.max_length = max;
    }
}

/// A protocol receiving netstrings (Twisted's `NetstringReceiver`): a malformed netstring
/// marks the peer broken; the connection is closed with the reason logged and later bytes
/// are ignored.
///
/// ```
/// use twistor::Protocol;
/// use twistor_protocols::basic::{NetstringReceiver, StringHandler, Strings};
/// use twistor_testing::StringTransport;
///
/// struct Echo;
/// impl StringHandler for Echo {
///     fn string_received(&mut self, strings: &Strings<'_>, s: &[u8]) {
///         strings.send_string(s).unwrap();
///     }
/// }
/// let st = StringTransport::new();
/// let mut proto = NetstringReceiver::new(Echo);
/// proto.make_connection(&st.transport());
/// proto.data_received(&st.transport(), b"5:hello,0:,");
/// assert_eq!(st.value(), b"5:hello,0:,");
/// ```
pub struct NetstringReceiver<H: StringHandler> {
    handler: H,
    decoder: NetstringDecoder,
    max_length: usize,
}

impl<H: StringHandler> NetstringReceiver<H> {
    /// A receiver accepting strings of up to [`DEFAULT_MAX_STRING_LENGTH`] bytes.
    pub fn new(handler: H) -> Self {
        NetstringReceiver::with_max_length(handler, DEFAULT_MAX_STRING_LENGTH)
    }

    /// A receiver accepting strings of up to `max_length` bytes.
    pub fn with_max_length(handler: H, max_length: usize) -> Self {
        NetstringReceiver {
            handler,
            decoder: NetstringDecoder::new(max_length),
            max_length,
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }
}

impl<H: StringHandler> Protocol for NetstringReceiver<H> {
    fn connection_made(&mut self, transport: &Transport) {
        let strings = Strings {
            transport,
            framing: Framing::Netstring,
            max_length: self.max_length,
        };
        self.handler.connection_made(&strings);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.decoder.feed(data);
        let strings = Strings {
            transport,
            framing: Framing::Netstring,
            max_length: self.max_length,
        };
        while !transport.disconnecting() {
            match self.decoder.poll_string() {
                Ok(Some(range)) => {
                    let string = &self.decoder.buffer.buf[range];
                    self.handler.string_received(&strings, string);
                }
                Ok(None) => return,
                Err(err) => {
                    tracing::info!(
                        "broken netstring peer {}: {err}; closing the connection",
                        transport.peer()
                    );
                    transport.lose_connection();
                    return;
                }
            }
        }
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.handler.connection_lost(reason);
    }
}

/// A protocol receiving strings with an `N`-byte big-endian length prefix (Twisted's
/// `IntNStringReceiver`); use the aliases [`Int8StringReceiver`], [`Int16StringReceiver`]
/// and [`Int32StringReceiver`].
///
/// ```
/// use twistor::Protocol;
/// use twistor_protocols::basic::{Int16StringReceiver, StringHandler, Strings};
/// use twistor_testing::StringTransport;
///
/// #[derive(Default)]
/// struct Collect(Vec<Vec<u8>>);
/// impl StringHandler for Collect {
///     fn string_received(&mut self, _: &Strings<'_>, s: &[u8]) { self.0.push(s.to_vec()) }
/// }
/// let st = StringTransport::new();
/// let mut proto = Int16StringReceiver::new(Collect::default());
/// proto.make_connection(&st.transport());
/// proto.data_received(&st.transport(), b"\x00\x02hi\x00\x00");
/// assert_eq!(proto.handler().0, [b"hi".to_vec(), vec![]]);
/// ```
pub struct IntNStringReceiver<H: StringHandler, const N: usize> {
    handler: H,
    decoder: PrefixDecoder<N>,
    max_length: usize,
}

/// Strings with a 1-byte length prefix.
pub type Int8StringReceiver<H> = IntNStringReceiver<H, 1>;
/// Strings with a 2-byte big-endian length prefix.
pub type Int16StringReceiver<H> = IntNStringReceiver<H, 2>;
/// Strings with a 4-byte big-endian length prefix.
pub type Int32StringReceiver<H> = IntNStringReceiver<H, 4>;

impl<H: StringHandler, const N: usize> IntNStringReceiver<H, N> {
    /// A receiver accepting strings of up to [`DEFAULT_MAX_STRING_LENGTH`] bytes.
    pub fn new(handler: H) -> Self {
        IntNStringReceiver::with_max_length(handler, DEFAULT_MAX_STRING_LENGTH)
    }

    /// A receiver accepting strings of up to `max_length` bytes.
    pub fn with_max_length(handler: H, max_length: usize) -> Self {
        IntNStringReceiver {
            handler,
            decoder: PrefixDecoder::new(max_length),
            max_length,
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    fn strings<'a>(&self, transport: &'a Transport) -> Strings<'a> {
        Strings {
            transport,
            framing: Framing::Prefix(N),
            max_length: self.max_length,
        }
    }
}

impl<H: StringHandler, const N: usize> Protocol for IntNStringReceiver<H, N> {
    fn connection_made(&mut self, transport: &Transport) {
        let strings = self.strings(transport);
        self.handler.connection_made(&strings);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.decoder.feed(data);
        let strings = self.strings(transport);
        while !transport.disconnecting() {
            match self.decoder.poll_string() {
                Some(Decoded::String(range)) => {
                    let string = &self.decoder.buffer.buf[range];
                    self.handler.string_received(&strings, string);
                }
                Some(Decoded::TooLong(length)) => {
                    self.handler.length_limit_exceeded(&strings, length);
                    return;
                }
                None => return,
            }
        }
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.handler.connection_lost(reason);
    }
}
