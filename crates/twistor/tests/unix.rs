//! Unix stream sockets: echo through socat, file modes, lock files, abstract names, and
//! descriptor passing.

mod common;

use common::Echo;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::rc::Rc;
use std::thread;

use twistor::address::UnixAddress;
use twistor::protocol::{ClientFactory, CloseReason, Factory, Protocol, factory};
use twistor::unix::UnixListenOptions;
use twistor::{Address, Connector, Error, Reactor, Transport};
use twistor_testing::process::{have, run_with_input};

use twistor_testing::TempDir;

#[test]
fn unix_echo_through_socat_and_cleanup() {
    if !have("socat", &["-V"]) {
        return;
    }
    let dir = TempDir::new("socat");
    let path = dir.join("echo.sock");
    let reactor = twistor_testing::reactor();
    let port = reactor
        .listen_unix_with(
            path.as_path(),
            factory(|_| Echo),
            UnixListenOptions::default().mode(0o600),
        )
        .unwrap();
    assert_eq!(port.host(), Address::Unix(UnixAddress::Path(path.clone())));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let handle = reactor.handle();
    let p = path.clone();
    let client = thread::spawn(move || {
        let mut socat = Command::new("socat");
        socat.args(["-", &format!("UNIX-CONNECT:{}", p.display())]);
        let out = run_with_input(socat, b"through a unix socket\n");
        handle.call_from_thread(|r| r.stop()).unwrap();
        out
    });
    reactor.run().unwrap();
    assert_eq!(client.join().unwrap(), b"through a unix socket\n");
    // run() ended with the shutdown, which closed the port and removed its file.
    assert!(!path.exists(), "socket file removed when the port closed");
}

#[test]
fn an_existing_socket_is_not_stolen_but_a_dead_owners_is_reclaimed() {
    let dir = TempDir::new("lock");
    let path = dir.join("s.sock");
    let reactor = twistor_testing::reactor();
    let first = reactor
        .listen_unix_with(
            path.as_path(),
            factory(|_| Echo),
            UnixListenOptions::default().lockfile(true),
        )
        .unwrap();
    let lock = dir.join("s.sock.lock");
    assert_eq!(
        std::fs::read_link(&lock).unwrap().to_str().unwrap(),
        std::process::id().to_string()
    );
    // A second listener: without a lock file, the address is in use.
    let err = reactor
        .listen_unix(path.as_path(), factory(|_| Echo))
        .unwrap_err()
        .to_string();
    assert!(err.contains("s.sock") && err.contains("in use"), "{err}");
    // With one, a live owner (us) holds the lock.
    let err = reactor
        .listen_unix_with(
            path.as_path(),
            factory(|_| Echo),
            UnixListenOptions::default().lockfile(true),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("held by process"), "{err}");
    first.stop_listening();
    assert!(!path.exists() && !lock.exists());
    // A stale lock (a dead pid) and a stale socket file are reclaimed.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    std::os::unix::fs::symlink("999999999", &lock).unwrap();
    let again = reactor
        .listen_unix_with(
            path.as_path(),
            factory(|_| Echo),
            UnixListenOptions::default().lockfile(true),
        )
        .unwrap();
    again.stop_listening();
}

struct Collect {
    log: Rc<RefCell<Vec<String>>>,
    reactor: Reactor,
}
impl Factory for Collect {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        self.log.borrow_mut().push(format!("peer {addr}"));
        struct Say(Rc<RefCell<Vec<String>>>);
        impl Protocol for Say {
            fn connection_made(&mut self, t: &Transport) {
                t.write(b"hi");
            }
            fn data_received(&mut self, t: &Transport, data: &[u8]) {
                self.0
                    .borrow_mut()
                    .push(String::from_utf8_lossy(data).into_owned());
                t.lose_connection();
            }
        }
        Some(Box::new(Say(self.log.clone())))
    }
}
impl ClientFactory for Collect {
    fn client_connection_failed(&self, _: &Connector, reason: &Error) {
        self.log.borrow_mut().push(format!("failed: {reason}"));
        self.reactor.stop();
    }
    fn client_connection_lost(&self, _: &Connector, _: &CloseReason) {
        self.reactor.stop();
    }
}

#[test]
fn abstract_namespace_listen_and_connect() {
    let reactor = twistor_testing::reactor();
    let name = format!("twistor-test-{}", std::process::id()).into_bytes();
    let address = UnixAddress::Abstract(name.clone());
    let port = reactor
        .listen_unix(address.clone(), factory(|_| Echo))
        .unwrap();
    assert_eq!(port.host(), Address::Unix(address.clone()));
    let log = Rc::new(RefCell::new(Vec::new()));
    let connector = reactor.connect_unix(
        address.clone(),
        Rc::new(Collect {
            log: log.clone(),
            reactor: reactor.clone(),
        }),
    );
    assert_eq!(connector.destination(), Address::Unix(address));
    reactor.run().unwrap();
    let log = log.borrow();
    assert_eq!(log[1], "hi", "{log:?}");
}

#[test]
fn connecting_to_a_missing_socket_fails_cleanly() {
    let dir = TempDir::new("missing");
    let reactor = twistor_testing::reactor();
    let log = Rc::new(RefCell::new(Vec::new()));
    reactor.connect_unix(
        dir.join("nobody.sock").as_path(),
        Rc::new(Collect {
            log: log.clone(),
            reactor: reactor.clone(),
        }),
    );
    reactor.run().unwrap();
    let log = log.borrow();
    assert!(log[0].starts_with("failed: connection to"), "{log:?}");
    assert!(log[0].contains("nobody.sock"), "{log:?}");
}

/// Receives descriptors and reads what each one holds.
struct Receiver {
    got: Rc<RefCell<Vec<String>>>,
    fds: Vec<OwnedFd>,
}
impl Protocol for Receiver {
    fn file_descriptor_received(&mut self, _: &Transport, fd: OwnedFd) {
        self.fds.push(fd);
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        for fd in self.fds.drain(..) {
            let mut file = std::fs::File::from(fd);
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            self.got.borrow_mut().push(format!(
                "{} with {:?}",
                text.trim(),
                String::from_utf8_lossy(data)
            ));
        }
        t.write(b"thanks");
    }
}

#[test]
fn descriptors_from_another_process_arrive_before_their_bytes() {
    if !have("python3", &["--version"]) {
        return;
    }
    let dir = TempDir::new("fds");
    let path = dir.join("fd.sock");
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "the contents of secret.txt\n").unwrap();
    let reactor = twistor_testing::reactor();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    reactor
        .listen_unix(
            path.as_path(),
            factory(move |_| Receiver {
                got: g.clone(),
                fds: Vec::new(),
            }),
        )
        .unwrap();
    let handle = reactor.handle();
    let (p, s) = (path.clone(), secret.clone());
    let child = thread::spawn(move || {
        let script = "import socket, sys\n\
                      s = socket.socket(socket.AF_UNIX)\n\
                      s.connect(sys.argv[1])\n\
                      f = open(sys.argv[2])\n\
                      socket.send_fds(s, [b'x'], [f.fileno()])\n\
                      print(s.recv(6).decode())\n";
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(&p)
            .arg(&s)
            .output()
            .unwrap();
        handle.call_from_thread(|r| r.stop()).unwrap();
        String::from_utf8(out.stdout).unwrap()
    });
    reactor.run().unwrap();
    assert_eq!(child.join().unwrap().trim(), "thanks");
    assert_eq!(*got.borrow(), ["the contents of secret.txt with \"x\""]);
}

#[test]
fn twistor_passes_descriptors_to_twistor() {
    let dir = TempDir::new("fds2");
    let path = dir.join("fd.sock");
    let reactor = twistor_testing::reactor();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    reactor
        .listen_unix(
            path.as_path(),
            factory(move |_| Receiver {
                got: g.clone(),
                fds: Vec::new(),
            }),
        )
        .unwrap();
    // The client sends the read ends of two pipes, each with one byte of a message.
    struct Sender;
    impl Protocol for Sender {
        fn connection_made(&mut self, t: &Transport) {
            for text in ["first pipe", "second pipe"] {
                let (read, mut write) = std::io::pipe().unwrap();
                write.write_all(text.as_bytes()).unwrap();
                drop(write);
                t.send_file_descriptor(read.as_fd()).unwrap();
            }
            t.write(b"ab");
        }
        fn data_received(&mut self, t: &Transport, _: &[u8]) {
            t.lose_connection();
        }
    }
    struct Once(Reactor);
    impl Factory for Once {
        fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
            Some(Box::new(Sender))
        }
    }
    impl ClientFactory for Once {
        fn client_connection_lost(&self, _: &Connector, _: &CloseReason) {
            self.0.stop();
        }
    }
    reactor.connect_unix(path.as_path(), Rc::new(Once(reactor.clone())));
    reactor.run().unwrap();
    // Both descriptors rode on the first byte: both are read when it arrives.
    let got = got.borrow();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("first pipe with \"a"), "{got:?}");
    assert!(got[1].starts_with("second pipe with \"a"), "{got:?}");
    // A transport that is not a Unix socket says it cannot.
    let (a, _b) = UnixStream::pair().unwrap();
    let st = twistor_testing::StringTransport::new();
    assert!(matches!(
        st.transport().send_file_descriptor(a.as_fd()),
        Err(Error::Unsupported(_))
    ));
}
