//! Lines only, fast: Twisted's `LineOnlyReceiver`.

use memchr::memmem::Finder;
use twistor::{CloseReason, Protocol, Transport};

use super::line::{DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH};

/// What a [`LineOnlyReceiver`] delivers.
pub trait LineOnlyHandler: 'static {
    /// The connection is up.
    fn connection_made(&mut self, _lines: &LineWriter<'_>) {}

    /// One line arrived, without its delimiter.
    fn line_received(&mut self, lines: &LineWriter<'_>, line: &[u8]);

    /// A line longer than the maximum arrived; by default the connection is closed.
    fn line_length_exceeded(&mut self, lines: &LineWriter<'_>, line: &[u8]) {
        tracing::info!(
            "line of {} bytes from {} is over the limit; closing the connection",
            line.len(),
            lines.transport().peer()
        );
        lines.transport().lose_connection();
    }

    /// The connection is gone.
    fn connection_lost(&mut self, _reason: &CloseReason) {}
}

/// Writes lines to a transport with a receiver's delimiter.
pub struct LineWriter<'a> {
    transport: &'a Transport,
    delimiter: &'a [u8],
}

impl LineWriter<'_> {
    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        self.transport
    }

    /// Writes `line` followed by the delimiter.
    pub fn send_line(&self, line: &[u8]) {
        self.transport.write_sequence(&[line, self.delimiter]);
    }
}

/// A line-only protocol, without raw mode or pausing, that delivers lines straight from
/// each read when it can (no copy unless a line spans reads). Lines after one that closes
/// the connection are ignored, as in Twisted.
///
/// ```
/// use twistor::Protocol;
/// use twistor_protocols::basic::{LineOnlyHandler, LineOnlyReceiver, LineWriter};
/// use twistor_testing::StringTransport;
///
/// #[derive(Default)]
/// struct Count(usize);
/// impl LineOnlyHandler for Count {
///     fn line_received(&mut self, _: &LineWriter<'_>, _line: &[u8]) { self.0 += 1 }
/// }
///
/// let st = StringTransport::new();
/// let mut proto = LineOnlyReceiver::new(Count::default());
/// proto.make_connection(&st.transport());
/// proto.data_received(&st.transport(), b"a\r\nb\r\nc");
/// assert_eq!(proto.handler().0, 2);
/// ```
pub struct LineOnlyReceiver<H: LineOnlyHandler> {
    handler: H,
    buffer: Vec<u8>,
    delimiter: Vec<u8>,
    finder: Finder<'static>,
    max_length: usize,
}

impl<H: LineOnlyHandler> LineOnlyReceiver<H> {
    /// A receiver with `\r\n` lines of at most [`DEFAULT_MAX_LINE_LENGTH`] bytes.
    pub fn new(handler: H) -> Self {
        LineOnlyReceiver::with_delimiter(handler, DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH)
    }

    /// A receiver with the given delimiter (an empty one means the default) and limit.
    pub fn with_delimiter(handler: H, delimiter: &[u8], max_length: usize) -> Self {
        let delimiter = if delimiter.is_empty() {
            DEFAULT_DELIMITER
        } else {
            delimiter
        };
        LineOnlyReceiver {
            handler,
            buffer: Vec::new(),
            delimiter: delimiter.to_vec(),
            finder: Finder::new(delimiter).into_owned(),
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

    /// Delivers the complete lines of `data`; returns how many bytes it consumed, or
    /// `None` if delivery stopped (closing, or a line over the limit).
    fn deliver(&mut self, transport: &Transport, data: &[u8]) -> Option<usize> {
        let writer = LineWriter {
            transport,
            delimiter: &self.delimiter,
        };
        let mut start = 0;
        for at in self.finder.find_iter(data) {
            if at < start {
                continue; // overlapping match inside the previous delimiter
            }
            if transport.disconnecting() {
                return None;
            }
            let line = &data[start..at];
            start = at + self.delimiter.len();
            if line.len() > self.max_length {
                self.handler.line_length_exceeded(&writer, line);
                return None;
            }
            self.handler.line_received(&writer, line);
        }
        Some(start)
    }
}

impl<H: LineOnlyHandler> Protocol for LineOnlyReceiver<H> {
    fn connection_made(&mut self, transport: &Transport) {
        let writer = LineWriter {
            transport,
            delimiter: &self.delimiter,
        };
        self.handler.connection_made(&writer);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let rest = if self.buffer.is_empty() {
            match self.deliver(transport, data) {
                Some(used) => &data[used..],
                None => return,
            }
        } else {
            // A line spans reads: join them (only as far as the buffer goes).
            let mut joined = std::mem::take(&mut self.buffer);
            joined.extend_from_slice(data);
            match self.deliver(transport, &joined) {
                Some(used) => {
                    joined.drain(..used);
                    self.buffer = joined;
                }
                None => return,
            }
            &[][..]
        };
        self.buffer.extend_from_slice(rest);
        if self.buffer.len() > self.max_length + self.delimiter.len() - 1 {
            let line = std::mem::take(&mut self.buffer);
            let writer = LineWriter {
                transport,
                delimiter: &self.delimiter,
            };
            self.handler.line_length_exceeded(&writer, &line);
        }
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.handler.connection_lost(reason);
    }
}
