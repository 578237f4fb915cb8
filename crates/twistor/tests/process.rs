//! Child processes: pipes, exit statuses, signals, extra descriptors, spawn failures, the
//! pseudo-terminal option and the process endpoint, with real programs.

#[allow(unused_imports)] // Each test binary uses a different part of it.
mod common;

use std::cell::RefCell;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use twistor::Reactor;
use twistor::endpoints::ClientEndpoint;
use twistor::process::{
    ChildFd, ProcessCommand, ProcessEndpoint, ProcessProtocol, ProcessStatus, ProcessTransport,
    StderrBehavior,
};
use twistor::protocol::{CloseReason, Protocol, factory};
use twistor::reactor::UnhandledPanic;
use twistor::transport::Transport;

use twistor_testing::reactor;

/// Everything a process protocol heard.
#[derive(Default)]
struct Record {
    events: Vec<String>,
    out: Vec<u8>,
    err: Vec<u8>,
    other: Vec<(i32, Vec<u8>)>,
    exited: Option<ProcessStatus>,
    ended: Option<ProcessStatus>,
}

type OnMade = Box<dyn FnMut(&ProcessTransport)>;

/// Records what happens and stops the reactor at `process_ended`.
struct Recorder {
    record: Rc<RefCell<Record>>,
    reactor: Reactor,
    on_made: Option<OnMade>,
}

impl Recorder {
    fn new(reactor: &Reactor) -> (Recorder, Rc<RefCell<Record>>) {
        let record = Rc::new(RefCell::new(Record::default()));
        (
            Recorder {
                record: record.clone(),
                reactor: reactor.clone(),
                on_made: None,
            },
            record,
        )
    }

    fn on_made(mut self, f: impl FnMut(&ProcessTransport) + 'static) -> Recorder {
        self.on_made = Some(Box::new(f));
        self
    }
}

impl ProcessProtocol for Recorder {
    fn connection_made(&mut self, transport: &ProcessTransport) {
        self.record.borrow_mut().events.push("made".into());
        if let Some(f) = &mut self.on_made {
            f(transport);
        }
    }

    fn child_data_received(&mut self, _t: &ProcessTransport, fd: i32, data: &[u8]) {
        let mut r = self.record.borrow_mut();
        match fd {
            1 => r.out.extend_from_slice(data),
            2 => r.err.extend_from_slice(data),
            _ => match r.other.iter_mut().find(|(f, _)| *f == fd) {
                Some((_, bytes)) => bytes.extend_from_slice(data),
                None => r.other.push((fd, data.to_vec())),
            },
        }
    }

    fn child_connection_lost(&mut self, _t: &ProcessTransport, fd: i32) {
        self.record.borrow_mut().events.push(format!("lost {fd}"));
    }

    fn process_exited(&mut self, _t: &ProcessTransport, status: &ProcessStatus) {
        let mut r = self.record.borrow_mut();
        r.events.push("exited".into());
        r.exited = Some(status.clone());
    }

    fn process_ended(&mut self, status: &ProcessStatus) {
        let mut r = self.record.borrow_mut();
        r.events.push("ended".into());
        r.ended = Some(status.clone());
        self.reactor.stop();
    }
}

/// Runs `command` with a recorder to its end.
fn run(command: ProcessCommand, on_made: impl FnMut(&ProcessTransport) + 'static) -> Record {
    let reactor = reactor();
    let (protocol, record) = Recorder::new(&reactor);
    reactor.spawn_process(protocol.on_made(on_made), &command);
    reactor.run().unwrap();
    Rc::try_unwrap(record).ok().unwrap().into_inner()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

#[test]
fn cat_round_trips_ten_megabytes() {
    let input = pattern(10 * 1024 * 1024);
    let sent = input.clone();
    let record = run(ProcessCommand::new("cat"), move |t| {
        assert!(t.pid().is_some());
        t.write(&sent);
        t.close_stdin();
    });
    assert_eq!(record.out.len(), input.len());
    assert!(record.out == input, "cat changed the data");
    assert!(record.err.is_empty());
    assert!(record.ended.unwrap().success());
    assert_eq!(record.events.first().unwrap(), "made");
    assert_eq!(record.events.last().unwrap(), "ended");
    let mut lost: Vec<_> = record
        .events
        .iter()
        .filter(|e| e.starts_with("lost"))
        .collect();
    lost.sort();
    assert_eq!(lost, ["lost 0", "lost 1", "lost 2"]);
}

#[test]
fn exit_code_is_reported() {
    let record = run(ProcessCommand::new("sh").args(["-c", "exit 3"]), |_| {});
    let ended = record.ended.unwrap();
    assert_eq!(ended.code(), Some(3));
    assert_eq!(ended.signal(), None);
    assert!(!ended.success());
    assert_eq!(record.exited.unwrap().code(), Some(3));
    assert_eq!(ended.to_string(), "exited with code 3");
}

#[test]
fn term_signal_is_reported() {
    let handle = Rc::new(RefCell::new(None));
    let h = handle.clone();
    let record = run(ProcessCommand::new("sleep").arg("100"), move |t| {
        t.signal_process(libc::SIGTERM).unwrap();
        *h.borrow_mut() = Some(t.clone());
    });
    let ended = record.ended.unwrap();
    assert_eq!(ended.signal(), Some(libc::SIGTERM), "{ended}");
    assert_eq!(ended.code(), None);
    assert_eq!(ended.to_string(), "killed by SIGTERM");
    // Once reaped, the pid is no longer ours to signal.
    let t = handle.borrow_mut().take().unwrap();
    assert!(t.signal_process(libc::SIGKILL).is_err());
    assert!(t.status().is_some());
}

#[test]
fn kill_int_and_hup_are_reported() {
    for signal in [libc::SIGKILL, libc::SIGINT, libc::SIGHUP] {
        let record = run(ProcessCommand::new("sleep").arg("100"), move |t| {
            t.signal_process(signal).unwrap();
        });
        assert_eq!(record.ended.unwrap().signal(), Some(signal));
    }
}

#[test]
fn stderr_and_extra_descriptors_are_separate() {
    let command = ProcessCommand::new("sh")
        .args([
            "-c",
            "echo out; echo err >&2; echo three >&3; read line <&4; echo \"four said $line\" >&3",
        ])
        .child_fd(3, ChildFd::FromChild)
        .child_fd(4, ChildFd::ToChild);
    let record = run(command, |t| {
        t.write_to_child(4, b"hi\n");
        t.close_child_fd(4);
    });
    assert_eq!(record.out, b"out\n");
    assert_eq!(record.err, b"err\n");
    assert_eq!(record.other, [(3, b"three\nfour said hi\n".to_vec())]);
    assert!(record.ended.unwrap().success());
    for fd in ["lost 0", "lost 1", "lost 2", "lost 3", "lost 4"] {
        assert!(record.events.iter().any(|e| e == fd), "{fd} missing");
    }
}

#[test]
fn inherited_and_null_descriptors() {
    // The child's stdout is our pipe's write end, given as is; stdin is /dev/null.
    let (mut read, write) = std::io::pipe().unwrap();
    let command = ProcessCommand::new("sh")
        .args(["-c", "cat; echo inherited"])
        .child_fd(0, ChildFd::Null)
        .child_fd(1, ChildFd::Inherit(write.as_raw_fd()));
    let record = run(command, |_| {});
    assert!(record.ended.unwrap().success());
    assert!(record.out.is_empty());
    drop(write);
    let mut got = String::new();
    read.read_to_string(&mut got).unwrap();
    assert_eq!(got, "inherited\n");
}

#[test]
fn environment_and_directory() {
    let dir = std::env::temp_dir().canonicalize().unwrap();
    let command = ProcessCommand::new("/bin/sh")
        .args(["-c", "echo \"$FOO|$HOME\"; pwd"])
        .env_clear()
        .env("FOO", "bar")
        .cwd(&dir);
    let record = run(command, |_| {});
    let out = String::from_utf8(record.out).unwrap();
    assert_eq!(out, format!("bar|\n{}\n", dir.display()));
}

#[test]
fn missing_program_is_a_spawn_failure() {
    let handle = Rc::new(RefCell::new(None));
    let h = handle.clone();
    let reactor = reactor();
    let (protocol, record) = Recorder::new(&reactor);
    let t = reactor.spawn_process(
        protocol.on_made(move |_| panic!("connection_made for a missing program")),
        &ProcessCommand::new("/nonexistent/twistor-no-such-program"),
    );
    assert_eq!(t.pid(), None);
    *h.borrow_mut() = Some(t.clone());
    reactor.run().unwrap();
    let record = record.borrow();
    assert_eq!(record.events, ["ended"]);
    match record.ended.as_ref().unwrap() {
        ProcessStatus::SpawnFailed(err) => {
            let text = err.to_string();
            assert!(text.contains("twistor-no-such-program"), "{text}");
            let source = std::error::Error::source(err).unwrap();
            let io = source.downcast_ref::<std::io::Error>().unwrap();
            assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a spawn failure, got {other}"),
    }
    assert!(t.signal_process(libc::SIGTERM).is_err());
    t.write(b"ignored");
}

#[test]
fn process_exits_before_its_pipes_close() {
    // The shell exits at once; a background child keeps stdout open and writes later.
    let command = ProcessCommand::new("sh")
        .args(["-c", "(sleep 0.2; echo late) & exit 0"])
        .no_child_fd(0)
        .no_child_fd(2);
    let record = run(command, |_| {});
    assert_eq!(record.out, b"late\n");
    let exited = record.events.iter().position(|e| e == "exited").unwrap();
    let lost = record.events.iter().position(|e| e == "lost 1").unwrap();
    assert!(exited < lost, "{:?}", record.events);
    assert_eq!(record.events.last().unwrap(), "ended");
}

#[test]
fn closing_stdout_early_ends_the_child_by_sigpipe() {
    let record = run(ProcessCommand::new("yes"), |t| {
        t.close_stdout();
        t.close_stdin();
    });
    assert_eq!(record.ended.unwrap().signal(), Some(libc::SIGPIPE));
}

#[test]
fn lose_connection_closes_every_pipe() {
    let record = run(ProcessCommand::new("cat"), |t| {
        t.write(b"bye");
        t.lose_connection();
    });
    // cat got its input and EOF; its write to the closed stdout may or may not have
    // happened before we closed it, so it exits with 0 or by SIGPIPE.
    let ended = record.ended.unwrap();
    assert!(
        ended.success() || ended.signal() == Some(libc::SIGPIPE),
        "{ended}"
    );
}

#[test]
fn a_panicking_protocol_costs_only_its_pipes() {
    struct Panicky(Reactor, Rc<RefCell<Option<ProcessStatus>>>);
    impl ProcessProtocol for Panicky {
        fn out_received(&mut self, _t: &ProcessTransport, _data: &[u8]) {
            panic!("bad protocol");
        }
        fn process_ended(&mut self, status: &ProcessStatus) {
            *self.1.borrow_mut() = Some(status.clone());
            self.0.stop();
        }
    }
    let reactor = reactor();
    // Panics on purpose: the default mode, where a panic costs only what panicked.
    reactor.set_unhandled_panic(UnhandledPanic::Ignore);
    let ended = Rc::new(RefCell::new(None));
    reactor.spawn_process(
        Panicky(reactor.clone(), ended.clone()),
        &ProcessCommand::new("yes"),
    );
    reactor.run().unwrap();
    // The pipes were closed after the panic, so `yes` died writing to them.
    assert_eq!(
        ended.borrow().as_ref().unwrap().signal(),
        Some(libc::SIGPIPE)
    );
}

#[test]
fn pseudo_terminal() {
    let command = ProcessCommand::new("sh")
        .args([
            "-c",
            "test -t 0 && test -t 1 && echo on a tty; read x; echo \"read $x\"",
        ])
        .use_pty(true);
    let record = run(command, |t| {
        t.write(b"typed\n");
    });
    let out = String::from_utf8_lossy(&record.out).replace('\r', "");
    assert!(out.contains("on a tty\n"), "{out:?}");
    // The terminal echoes the input, then the child's answer follows.
    assert!(out.contains("read typed\n"), "{out:?}");
    assert!(record.ended.unwrap().success());
}

#[test]
fn pseudo_terminal_close_stdin_sends_eof() {
    let record = run(
        ProcessCommand::new("cat").use_pty(true),
        |t: &ProcessTransport| {
            t.write(b"abc\n");
            t.close_stdin();
        },
    );
    assert!(record.ended.unwrap().success());
    assert!(String::from_utf8_lossy(&record.out).contains("abc"));
}

#[test]
fn process_endpoint_connects_a_plain_protocol() {
    #[derive(Default)]
    struct Seen {
        data: Vec<u8>,
        lost: Option<String>,
        clean: bool,
    }
    struct Client(Rc<RefCell<Seen>>, Reactor);
    impl Protocol for Client {
        fn connection_made(&mut self, transport: &Transport) {
            assert!(transport.downcast_ref::<ProcessTransport>().is_some());
            transport.write(b"hello ");
            transport.write(b"process\n");
            transport.lose_write_connection();
        }
        fn data_received(&mut self, _t: &Transport, data: &[u8]) {
            self.0.borrow_mut().data.extend_from_slice(data);
        }
        fn read_connection_lost(&mut self, _t: &Transport) {}
        fn connection_lost(&mut self, reason: &CloseReason) {
            let mut seen = self.0.borrow_mut();
            seen.lost = Some(reason.to_string());
            seen.clean = reason.is_clean();
            self.1.stop();
        }
    }
    let reactor = reactor();
    let seen = Rc::new(RefCell::new(Seen::default()));
    let (s, r) = (seen.clone(), reactor.clone());
    let endpoint = ProcessEndpoint::new(
        &reactor,
        ProcessCommand::new("sh").args(["-c", "cat; echo oops >&2"]),
    )
    .stderr(StderrBehavior::Drop);
    // Through the ClientEndpoint trait, like any other endpoint.
    let connected =
        ClientEndpoint::connect(&endpoint, factory(move |_| Client(s.clone(), r.clone())));
    assert!(connected.try_result().unwrap().is_ok());
    reactor.run().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.data, b"hello process\n");
    assert!(seen.clean, "{:?}", seen.lost);

    // A failing child is a lost connection; a missing program fails to connect.
    let reactor = self::reactor();
    let lost = Rc::new(RefCell::new(None));
    struct Quiet(Rc<RefCell<Option<CloseReason>>>, Reactor);
    impl Protocol for Quiet {
        fn data_received(&mut self, _t: &Transport, _data: &[u8]) {}
        fn connection_lost(&mut self, reason: &CloseReason) {
            *self.0.borrow_mut() = Some(reason.clone());
            self.1.stop();
        }
    }
    let endpoint = ProcessEndpoint::new(&reactor, ProcessCommand::new("false"));
    endpoint
        .spawn_protocol(Box::new(Quiet(lost.clone(), reactor.clone())))
        .unwrap();
    reactor.run().unwrap();
    let reason = lost.borrow_mut().take().unwrap();
    assert!(!reason.is_clean());
    assert!(
        reason.to_string().contains("exited with code 1"),
        "{reason}"
    );

    let missing = ProcessEndpoint::new(&reactor, ProcessCommand::new("/nonexistent/x"));
    let err = missing
        .spawn_protocol(Box::new(Quiet(lost.clone(), reactor.clone())))
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x"), "{err}");
}

#[test]
fn stdin_producer_is_paused_and_resumed() {
    use std::cell::Cell;
    use twistor::transport::Producer;

    // A streaming producer on the child's stdin: it writes 64 KiB chunks until told to
    // pause, and the buffer never grows far past the high-water mark.
    struct Chunks {
        transport: ProcessTransport,
        paused: Cell<bool>,
        left: Cell<usize>,
        max_buffered: Rc<Cell<usize>>,
    }
    impl Chunks {
        fn pump(&self) {
            let chunk = vec![b'x'; 64 * 1024];
            while !self.paused.get() && self.left.get() > 0 {
                self.left.set(self.left.get() - 1);
                self.transport.write(&chunk);
                let b = self.transport.buffered();
                self.max_buffered.set(self.max_buffered.get().max(b));
            }
            if self.left.get() == 0 {
                self.transport.unregister_producer();
                self.transport.close_stdin();
            }
        }
    }
    impl Producer for Chunks {
        fn pause_producing(&self) {
            self.paused.set(true);
        }
        fn resume_producing(&self) {
            self.paused.set(false);
            self.pump();
        }
        fn stop_producing(&self) {
            self.left.set(0);
        }
    }
    let max_buffered = Rc::new(Cell::new(0));
    let m = max_buffered.clone();
    let command = ProcessCommand::new("sh").args(["-c", "wc -c"]);
    let record = run(command, move |t| {
        let chunks = Rc::new(Chunks {
            transport: t.clone(),
            paused: Cell::new(false),
            left: Cell::new(160),
            max_buffered: m.clone(),
        });
        t.register_producer(chunks.clone(), true).unwrap();
        chunks.pump();
    });
    let out = String::from_utf8(record.out).unwrap();
    assert_eq!(out.trim(), (160 * 64 * 1024).to_string());
    assert!(
        max_buffered.get() <= 2 * 64 * 1024 + 64 * 1024,
        "buffer grew to {}",
        max_buffered.get()
    );
}

#[test]
fn process_demo_prints_output_as_it_arrives_and_the_status() {
    let mut demo = common::ChildGuard::spawn(common::example("process_demo"));
    assert!(demo.line().starts_with("started pid "));
    // Each line is printed as it arrives, stdout and stderr told apart.
    assert_eq!(demo.line(), "[out] line 1");
    let (status, rest) = demo.wait();
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        rest,
        [
            "[out] line 2",
            "[out] line 3",
            "[err] oops",
            "process exited with code 2"
        ]
    );

    let mut missing = common::ChildGuard::spawn({
        let mut c = common::example("process_demo");
        c.arg("/nonexistent/program");
        c
    });
    let (status, rest) = missing.wait();
    assert_eq!(status.code(), Some(127));
    assert!(
        rest[0].starts_with("process could not start: cannot run"),
        "{rest:?}"
    );
}
