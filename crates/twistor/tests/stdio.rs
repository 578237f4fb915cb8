//! Standard I/O as a transport: the `stdio_echo` example over pipes, files and `/dev/null`,
//! and in-process over pipes, checking that shared descriptors are left as they were.

#[allow(unused_imports)] // Each test binary uses a different part of it.
mod common;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

use common::{example, run_with_input};
use twistor::protocol::Protocol;
use twistor::stdio::{StandardIO, standard_io_fds};
use twistor::{CloseReason, Reactor, Transport};

#[test]
fn echo_hi_prints_hi() {
    assert_eq!(run_with_input(example("stdio_echo"), b"hi\n"), b"hi\n");
}

#[test]
fn echo_many_megabytes_through_pipes() {
    let input: Vec<u8> = (0..5_000_000).map(|i| (i % 251) as u8).collect();
    let output = run_with_input(example("stdio_echo"), &input);
    assert_eq!(output.len(), input.len());
    assert!(output == input);
}

#[test]
fn files_and_dev_null() {
    // Regular files cannot be watched with epoll: they are read and written directly.
    let dir = std::env::temp_dir().join(format!("twistor-stdio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input: Vec<u8> = (0..1_000_000).map(|i| (i % 241) as u8).collect();
    std::fs::write(dir.join("in"), &input).unwrap();
    let status = example("stdio_echo")
        .stdin(File::open(dir.join("in")).unwrap())
        .stdout(File::create(dir.join("out")).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(dir.join("out")).unwrap() == input);

    let output = example("stdio_echo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(output.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_reader_that_goes_away_is_an_error_not_a_crash() {
    // Stdout's reader closes at once; the echo gets EPIPE, reports it and exits normally.
    let mut child = example("stdio_echo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    // Writing may itself fail once the echo has exited.
    let _ = stdin.write_all(&vec![b'x'; 1 << 20]);
    drop(stdin);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("Broken pipe"), "{err}");
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let (read, write) = std::io::pipe().unwrap();
    (read.into(), write.into())
}

fn nonblocking(fd: RawFd) -> bool {
    unsafe { libc::fcntl(fd, libc::F_GETFL) & libc::O_NONBLOCK != 0 }
}

/// Echoes, answers end of input with "bye" and a half-close, and records how it ended.
struct Polite {
    reactor: Reactor,
    lost: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Polite {
    fn connection_made(&mut self, transport: &Transport) {
        assert!(transport.downcast_ref::<StandardIO>().is_some());
        transport.write(b"hello\n");
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }

    fn read_connection_lost(&mut self, transport: &Transport) {
        self.lost.borrow_mut().push("read".into());
        transport.write(b"bye\n");
        transport.lose_write_connection();
    }

    fn write_connection_lost(&mut self, _transport: &Transport) {
        self.lost.borrow_mut().push("write".into());
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.lost.borrow_mut().push(reason.to_string());
        self.reactor.stop();
    }
}

#[test]
fn in_process_over_pipes_leaves_shared_descriptors_blocking() {
    let reactor = twistor_testing::reactor();
    let (in_read, in_write) = pipe();
    let (out_read, out_write) = pipe();
    let lost = Rc::new(RefCell::new(Vec::new()));
    standard_io_fds(
        &reactor,
        Polite {
            reactor: reactor.clone(),
            lost: lost.clone(),
        },
        in_read.as_raw_fd(),
        out_write.as_raw_fd(),
    )
    .unwrap();
    // The transport reads and writes its own descriptions of the pipes: the shared ones
    // stay blocking.
    assert!(!nonblocking(in_read.as_raw_fd()));
    assert!(!nonblocking(out_write.as_raw_fd()));

    let writer = std::thread::spawn(move || {
        let mut input = File::from(in_write);
        input.write_all(b"one\ntwo\n").unwrap();
    });
    let reader = std::thread::spawn(move || {
        let mut output = Vec::new();
        File::from(out_read).read_to_end(&mut output).unwrap();
        output
    });
    reactor.run().unwrap();
    writer.join().unwrap();
    // The output reaches end of file although `out_write` is still open here: closing
    // pointed it at /dev/null.
    let output = reader.join().unwrap();
    assert_eq!(output, b"hello\none\ntwo\nbye\n");
    assert_eq!(
        *lost.borrow(),
        ["read", "Connection was closed cleanly."],
        "the write side closing after the read side ends the connection"
    );
    assert!(!nonblocking(in_read.as_raw_fd()));
}

#[test]
fn a_shared_socket_gets_its_flags_back() {
    // Sockets cannot be reopened: O_NONBLOCK is set on the shared description while the
    // transport lives and put back when it closes.
    let reactor = twistor_testing::reactor();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    // Another descriptor of the same description, which closing leaves alone.
    let probe = ours.try_clone().unwrap();
    let lost = Rc::new(RefCell::new(Vec::new()));
    let transport = standard_io_fds(
        &reactor,
        Polite {
            reactor: reactor.clone(),
            lost: lost.clone(),
        },
        ours.as_raw_fd(),
        ours.as_raw_fd(),
    )
    .unwrap();
    assert!(nonblocking(probe.as_raw_fd()));
    let peer = std::thread::spawn(move || {
        let mut theirs = theirs;
        theirs.write_all(b"ping\n").unwrap();
        theirs.shutdown(std::net::Shutdown::Write).unwrap();
        // Not to end of file: `probe` keeps the socket open.
        let mut got = vec![0; b"hello\nping\nbye\n".len()];
        theirs.read_exact(&mut got).unwrap();
        got
    });
    reactor.run().unwrap();
    drop(transport);
    assert_eq!(peer.join().unwrap(), b"hello\nping\nbye\n");
    assert!(!nonblocking(probe.as_raw_fd()));
}

/// The writer closes while reading is paused: after resuming, the rest of the data and then
/// the end of file arrive (epoll reports the hang-up only once).
#[test]
fn end_of_input_while_paused_is_seen_after_resume() {
    let (input_read, mut input_write) = std::io::pipe().unwrap();
    let (_output_read, output_write) = std::io::pipe().unwrap();
    // More than one read's worth, then the end, all before the reactor looks (the pipe is
    // made big enough to hold it all).
    let size = unsafe { libc::fcntl(input_write.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 18) };
    assert!(size >= 100_000, "F_SETPIPE_SZ failed");
    input_write.write_all(&vec![7u8; 100_000]).unwrap();
    drop(input_write);

    struct PauseOnce {
        got: Rc<Cell<usize>>,
        ended: Rc<Cell<bool>>,
        reactor: Reactor,
        paused: bool,
    }
    impl Protocol for PauseOnce {
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            self.got.set(self.got.get() + data.len());
            if !self.paused {
                self.paused = true;
                t.pause_producing();
                let t = t.clone();
                self.reactor.call_soon(move || t.resume_producing());
            }
        }
        fn read_connection_lost(&mut self, t: &Transport) {
            self.ended.set(true);
            t.lose_connection();
            self.reactor.stop();
        }
    }
    let reactor = twistor_testing::reactor();
    reactor.call_later(Duration::from_secs(30), || {
        eprintln!("end of input never seen");
        std::process::abort();
    });
    let (got, ended) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
    standard_io_fds(
        &reactor,
        PauseOnce {
            got: got.clone(),
            ended: ended.clone(),
            reactor: reactor.clone(),
            paused: false,
        },
        input_read.as_raw_fd(),
        output_write.as_raw_fd(),
    )
    .unwrap();
    reactor.run().unwrap();
    assert_eq!(got.get(), 100_000);
    assert!(ended.get());
}
