//! Streaming a file to a transport as a pull producer: Twisted's `FileSender`.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;

use twistor::Transport;
use twistor::defer::{Deferred, Failure};
use twistor::transport::Producer;

/// How much [`FileSender`] reads and writes at a time (Twisted's `CHUNK_SIZE`, 16 KiB).
pub const CHUNK_SIZE: usize = 16 * 1024;

/// Changes each chunk before it is written (compression, encryption...).
pub type Transform = Box<dyn FnMut(&[u8]) -> Vec<u8>>;

/// Streams a reader (usually a file) to a transport, one [`CHUNK_SIZE`] chunk each time the
/// transport's buffer empties, so memory stays flat however large the file and however
/// slow the reader at the other end.
///
/// ```no_run
/// # fn demo(transport: &twistor::Transport) -> std::io::Result<()> {
/// use twistor_protocols::basic::FileSender;
///
/// let file = std::fs::File::open("/var/log/syslog")?;
/// FileSender::begin_file_transfer(file, transport, None).consume(|result| {
///     match result {
///         Ok(last) => println!("sent; last byte {last:?}"),
///         Err(failure) => println!("stopped: {failure}"),
///     }
/// });
/// # Ok(()) }
/// ```
pub struct FileSender;

impl FileSender {
    /// Registers a pull producer that sends `file` to `transport`, transformed by
    /// `transform` if given. The Deferred fires with the last byte sent (`None` for an
    /// empty file) once the whole file is written to the transport, or fails if reading
    /// fails or the transport stops the producer (the connection was lost).
    pub fn begin_file_transfer(
        file: impl Read + 'static,
        transport: &Transport,
        transform: Option<Transform>,
    ) -> Deferred<Option<u8>> {
        let done = Deferred::new();
        let sender = Rc::new(Sender {
            file: RefCell::new(Some(Box::new(file))),
            transform: RefCell::new(transform),
            transport: transport.clone(),
            done: done.clone(),
            last_sent: Cell::new(None),
            chunk: RefCell::new(vec![0; CHUNK_SIZE]),
        });
        if let Err(err) = transport.register_producer(sender.clone(), false) {
            sender.finish(Err(Failure::new(err)));
        }
        done
    }
}

struct Sender {
    file: RefCell<Option<Box<dyn Read>>>,
    transform: RefCell<Option<Transform>>,
    transport: Transport,
    done: Deferred<Option<u8>>,
    last_sent: Cell<Option<u8>>,
    /// One reusable chunk buffer: the sender allocates nothing per chunk.
    chunk: RefCell<Vec<u8>>,
}

impl Sender {
    fn finish(&self, result: Result<Option<u8>, Failure>) {
        self.file.borrow_mut().take();
        if !self.done.called() {
            let _ = self.done.resolve(result);
        }
    }

    /// Reads the next chunk; `Ok(0)` at the end of the file.
    fn read_chunk(&self) -> io::Result<usize> {
        let mut file = self.file.borrow_mut();
        let Some(file) = file.as_mut() else {
            return Ok(0);
        };
        let mut chunk = self.chunk.borrow_mut();
        loop {
            match file.read(&mut chunk[..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

impl Producer for Sender {
    fn pause_producing(&self) {}

    fn resume_producing(&self) {
        let n = match self.read_chunk() {
            Ok(n) => n,
            Err(err) => {
                self.transport.unregister_producer();
                self.finish(Err(Failure::new(err).context("reading the file to send")));
                return;
            }
        };
        if n == 0 {
            self.transport.unregister_producer();
            self.finish(Ok(self.last_sent.get()));
            return;
        }
        // No borrow is held while writing: the transport may call back into us.
        let transformed = self
            .transform
            .borrow_mut()
            .as_mut()
            .map(|t| t(&self.chunk.borrow()[..n]));
        match transformed {
            Some(data) => {
                if let Some(&b) = data.last() {
                    self.last_sent.set(Some(b));
                }
                self.transport.write(&data);
            }
            None => {
                let chunk = std::mem::take(&mut *self.chunk.borrow_mut());
                self.last_sent.set(Some(chunk[n - 1]));
                self.transport.write(&chunk[..n]);
                *self.chunk.borrow_mut() = chunk;
            }
        }
    }

    fn stop_producing(&self) {
        if self.file.borrow().is_some() {
            self.finish(Err(Failure::msg("Consumer asked us to stop producing")));
        }
    }
}
