//! FileSender: pull-producer semantics on a test transport, and back-pressure end to end:
//! a 1 GiB sparse file sent to a reader that has paused keeps the sender's memory flat,
//! and arrives intact once the reader resumes.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{Cursor, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use twistor::defer::Failure;
use twistor::protocol::factory;
use twistor::tcp::ListenOptions;
use twistor::{Protocol, Reactor, Transport};
use twistor_protocols::basic::{CHUNK_SIZE, FileSender};
use twistor_testing::StringTransport;

#[test]
fn sends_chunks_on_demand_and_fires_with_the_last_byte() {
    let st = StringTransport::new();
    let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let d = FileSender::begin_file_transfer(Cursor::new(data.clone()), &st.transport(), None);
    assert_eq!(st.registered_producer(), Some(false), "a pull producer");
    let producer = st.producer().unwrap();
    producer.resume_producing();
    assert_eq!(st.value().len(), CHUNK_SIZE);
    producer.resume_producing();
    producer.resume_producing();
    assert_eq!(st.value(), data);
    assert!(d.try_result().is_none(), "not done until EOF is read");
    producer.resume_producing();
    assert_eq!(
        d.try_result().unwrap().unwrap(),
        Some(*data.last().unwrap())
    );
    assert_eq!(st.registered_producer(), None, "unregistered at the end");
}

#[test]
fn empty_file_transform_and_stop() {
    let st = StringTransport::new();
    let d = FileSender::begin_file_transfer(Cursor::new(Vec::new()), &st.transport(), None);
    st.producer().unwrap().resume_producing();
    assert_eq!(d.try_result().unwrap().unwrap(), None);

    let st = StringTransport::new();
    let upper = Box::new(|chunk: &[u8]| chunk.to_ascii_uppercase());
    let d =
        FileSender::begin_file_transfer(Cursor::new(b"abc".to_vec()), &st.transport(), Some(upper));
    let p = st.producer().unwrap();
    p.resume_producing();
    p.resume_producing();
    assert_eq!(st.value(), b"ABC");
    assert_eq!(d.try_result().unwrap().unwrap(), Some(b'C'));

    let st = StringTransport::new();
    let d = FileSender::begin_file_transfer(Cursor::new(vec![1; 100_000]), &st.transport(), None);
    let p = st.producer().unwrap();
    p.resume_producing();
    p.stop_producing();
    let err = d.try_result().unwrap().unwrap_err();
    assert!(err.to_string().contains("stop producing"), "{err}");
}

const GIB: u64 = 1 << 30;
/// The bound this test states: while the reader is paused, the process's resident memory
/// grows by less than this over its level before the transfer (the sender holds at most
/// one 16 KiB chunk and one partly sent buffer; the rest waits in the kernel's socket
/// buffers, which are not in RSS).
const RSS_BOUND_KIB: u64 = 2 * 1024;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A 1 GiB sparse file with non-zero marks every 64 MiB and a non-zero last byte, removed
/// on drop.
struct SparseFile(PathBuf);

impl SparseFile {
    fn create() -> SparseFile {
        let path = std::env::temp_dir().join(format!(
            "twistor-filesender-{}-{:?}.bin",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut f = File::create(&path).unwrap();
        f.set_len(GIB).unwrap();
        let mark: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 1) as u8).collect();
        for k in 0..16u64 {
            f.write_all_at(&mark, k * (64 << 20) + 12_345).unwrap();
        }
        f.write_all_at(b"!", GIB - 1).unwrap();
        f.flush().unwrap();
        SparseFile(path)
    }
}

impl Drop for SparseFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Default)]
struct Shared {
    server: RefCell<Option<Transport>>,
    client: RefCell<Option<Transport>>,
    received: Cell<u64>,
    mismatch: Cell<Option<u64>>,
    done: RefCell<Option<Result<Option<u8>, Failure>>>,
    lost: Cell<bool>,
}

struct Reader {
    shared: Rc<Shared>,
    file: File,
    expected: Vec<u8>,
}

impl Protocol for Reader {
    fn connection_made(&mut self, transport: &Transport) {
        // The reader is slow: it reads nothing until told to.
        transport.pause_producing();
        *self.shared.client.borrow_mut() = Some(transport.clone());
    }

    fn data_received(&mut self, _t: &Transport, data: &[u8]) {
        let at = self.shared.received.get();
        self.expected.resize(data.len(), 0);
        self.file.read_exact_at(&mut self.expected, at).unwrap();
        if self.expected != data && self.shared.mismatch.get().is_none() {
            self.shared.mismatch.set(Some(at));
        }
        self.shared.received.set(at + data.len() as u64);
    }

    fn connection_lost(&mut self, _reason: &twistor::CloseReason) {
        self.shared.lost.set(true);
    }
}

#[test]
fn one_gib_to_a_paused_reader_keeps_memory_flat_then_arrives_intact() {
    let file = SparseFile::create();
    let reactor = twistor_testing::reactor();
    let shared = Rc::new(Shared::default());

    let (s, path) = (shared.clone(), file.0.clone());
    let server = factory(move |_| SendFile {
        shared: s.clone(),
        path: path.clone(),
    });
    let port = reactor
        .listen_tcp_with(
            0,
            server,
            ListenOptions::default().interface([127, 0, 0, 1].into()),
        )
        .unwrap()
        .port();

    let baseline = rss_kib();
    let (s, path) = (shared.clone(), file.0.clone());
    let client = factory(move |_| Reader {
        shared: s.clone(),
        file: File::open(&path).unwrap(),
        expected: Vec::new(),
    });
    reactor.connect_tcp("127.0.0.1", port, client);

    // Watch the sender: once its buffer is non-empty and unchanged for 10 ticks, the
    // socket is full and the producer is no longer asked for chunks.
    let report = Rc::new(RefCell::new(String::new()));
    let ticks = Rc::new(Cell::new(0u32));
    let last = Rc::new(Cell::new(usize::MAX));
    let peak = Rc::new(Cell::new(0u64));
    watch(
        &reactor,
        shared.clone(),
        ticks,
        last,
        peak.clone(),
        baseline,
        report.clone(),
    );
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(300), move || r.stop());
    reactor.run().unwrap();

    eprintln!("{}", report.borrow());
    eprintln!(
        "after the transfer: {} bytes received; peak RSS {} KiB over the whole run (+{} KiB)",
        shared.received.get(),
        peak.get(),
        peak.get().saturating_sub(baseline)
    );
    let growth = peak.get().saturating_sub(baseline);
    assert!(
        growth < RSS_BOUND_KIB,
        "RSS grew by {growth} KiB during the transfer (bound {RSS_BOUND_KIB} KiB)"
    );
    assert!(shared.lost.get(), "transfer did not finish in time");
    assert_eq!(shared.received.get(), GIB);
    assert_eq!(shared.mismatch.get(), None, "bytes differ at this offset");
    let done = shared.done.borrow_mut().take().unwrap();
    assert_eq!(done.unwrap(), Some(b'!'));
}

struct SendFile {
    shared: Rc<Shared>,
    path: PathBuf,
}

impl Protocol for SendFile {
    fn connection_made(&mut self, transport: &Transport) {
        *self.shared.server.borrow_mut() = Some(transport.clone());
        let file = File::open(&self.path).unwrap();
        let (s, t) = (self.shared.clone(), transport.clone());
        FileSender::begin_file_transfer(file, transport, None).consume(move |result| {
            *s.done.borrow_mut() = Some(result);
            t.lose_connection();
        });
    }

    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

fn watch(
    reactor: &Reactor,
    shared: Rc<Shared>,
    ticks: Rc<Cell<u32>>,
    last: Rc<Cell<usize>>,
    peak: Rc<Cell<u64>>,
    baseline: u64,
    report: Rc<RefCell<String>>,
) {
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(20), move || {
        if shared.lost.get() {
            r.stop();
            return;
        }
        peak.set(peak.get().max(rss_kib()));
        let paused = report.borrow().is_empty();
        if paused {
            let buffered = shared.server.borrow().as_ref().map_or(0, |t| t.buffered());
            if buffered > 0 && buffered == last.get() {
                ticks.set(ticks.get() + 1);
            } else {
                ticks.set(0);
            }
            last.set(buffered);
            if ticks.get() >= 10 {
                *report.borrow_mut() = format!(
                    "reader paused: sender blocked with {buffered} bytes buffered; RSS {} KiB \
                     before the transfer, peak {} KiB so far (bound +{RSS_BOUND_KIB} KiB)",
                    baseline,
                    peak.get()
                );
                if let Some(client) = shared.client.borrow().as_ref() {
                    client.resume_producing();
                }
            }
        }
        watch(&r, shared, ticks, last, peak, baseline, report);
    });
}
