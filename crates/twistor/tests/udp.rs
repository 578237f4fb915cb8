//! UDP: echo with real clients, connected sockets, multicast, Unix datagrams.

mod common;

use std::cell::RefCell;
use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use common::{ChildGuard, example, have, run_with_input};
use twistor::address::UnixAddress;
use twistor::reactor::UnhandledPanic;
use twistor::udp::UdpOptions;
use twistor::{Address, DatagramProtocol, DatagramTransport, Error, Reactor};

#[test]
fn udp_echo_server_answers_nc_and_socat() {
    let mut server = ChildGuard::spawn({
        let mut c = example("udp_echo_server");
        c.arg("0");
        c
    });
    let port = server.port();
    if have("socat", &["-V"]) {
        let mut socat = Command::new("socat");
        socat.args(["-T", "1", "-", &format!("UDP:127.0.0.1:{port}")]);
        assert_eq!(
            run_with_input(socat, b"datagram via socat\n"),
            b"datagram via socat\n"
        );
    }
    if have("nc", &["-h"]) {
        let mut nc = Command::new("nc");
        nc.args(["-u", "-w", "1", "127.0.0.1", &port.to_string()]);
        assert_eq!(
            run_with_input(nc, b"datagram via nc\n"),
            b"datagram via nc\n"
        );
    }
    // And from std, checking each datagram comes back whole and separately.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for msg in [&b"one"[..], b"two two", &[7u8; 1400]] {
        sock.send_to(msg, ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg);
    }
}

type Log = Rc<RefCell<Vec<String>>>;

struct Record(Log, Option<Reactor>);
impl DatagramProtocol for Record {
    fn start_protocol(&mut self, t: &DatagramTransport) {
        self.0.borrow_mut().push(format!("start {}", t.host()));
    }
    fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], addr: &Address) {
        self.0
            .borrow_mut()
            .push(format!("{} from {addr}", String::from_utf8_lossy(data)));
        if let Some(r) = &self.1 {
            r.stop();
        }
    }
    fn connection_refused(&mut self, _: &DatagramTransport) {
        self.0.borrow_mut().push("refused".into());
        if let Some(r) = &self.1 {
            r.stop();
        }
    }
    fn stop_protocol(&mut self) {
        self.0.borrow_mut().push("stop".into());
    }
}

#[test]
fn connected_udp_hears_refusals() {
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    let t = reactor
        .listen_udp_with(
            0,
            Record(log.clone(), Some(reactor.clone())),
            UdpOptions::default().interface("127.0.0.1".parse().unwrap()),
        )
        .unwrap();
    assert!(matches!(t.write(b"x"), Err(Error::Unsupported(_))));
    // A port nothing listens on.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    t.connect(&Address::Udp(closed)).unwrap();
    assert_eq!(t.peer(), Some(Address::Udp(closed)));
    t.write(b"anyone?").unwrap();
    reactor.run().unwrap();
    // Then the shutdown stops the protocol.
    assert_eq!(log.borrow()[1..], ["refused", "stop"]);
}

#[test]
fn oversized_datagrams_are_an_error_and_long_ones_are_truncated() {
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    let t = reactor
        .listen_udp_with(
            0,
            Record(log.clone(), Some(reactor.clone())),
            UdpOptions::default()
                .interface("127.0.0.1".parse().unwrap())
                .max_packet_size(4),
        )
        .unwrap();
    let too_big = vec![0u8; 70_000];
    let err = t.write_to(&too_big, &t.host()).unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLong { size: 70_000 }),
        "{err}"
    );
    t.write_to(b"truncated", &t.host()).unwrap();
    reactor.run().unwrap();
    let log = log.borrow();
    assert!(log[1].starts_with("trun from udp:127.0.0.1:"), "{log:?}");
}

#[test]
fn two_multicast_listeners_share_a_port_and_both_hear_the_group() {
    let reactor = twistor_testing::reactor();
    let group: IpAddr = "239.255.43.21".parse().unwrap();
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let logs: Vec<Log> = vec![Rc::default(), Rc::default()];
    let first = reactor
        .listen_multicast(0, Record(logs[0].clone(), None), true)
        .unwrap();
    let port = first.port();
    let second = reactor
        .listen_multicast(port, Record(logs[1].clone(), None), true)
        .unwrap();
    for t in [&first, &second] {
        t.join_group(group, Some(lo)).unwrap();
    }
    let sender = reactor.listen_udp(0, Record(Rc::default(), None)).unwrap();
    sender.set_outgoing_interface(lo).unwrap();
    sender.set_loopback_mode(true).unwrap();
    sender.set_ttl(1).unwrap();
    sender
        .write_to(b"to the group", &Address::Udp((group, port).into()))
        .unwrap();
    let r = reactor.clone();
    let l = logs.clone();
    let f = first.clone();
    // Poll until both heard it (or the watchdog fires), then leave the group and close.
    fn wait(r: Reactor, l: Vec<Log>, f: DatagramTransport, group: IpAddr, lo: IpAddr) {
        if l.iter().all(|log| log.borrow().len() >= 2) {
            f.leave_group(group, Some(lo)).unwrap();
            f.stop_listening();
            r.stop();
        } else {
            let r2 = r.clone();
            r.call_later(Duration::from_millis(5), move || wait(r2, l, f, group, lo));
        }
    }
    reactor.call_when_running(move || wait(r, l, f, group, lo));
    reactor.run().unwrap();
    for log in &logs {
        assert!(
            log.borrow()[1].starts_with("to the group from udp:"),
            "{:?}",
            log.borrow()
        );
    }
    assert_eq!(logs[0].borrow().last().unwrap(), "stop");
    // Closed (by `stop_listening`), so options can no longer be set.
    assert!(first.leave_group(group, Some(lo)).is_err());
    assert!(first.with_fd(|_| ()).is_none());
    assert!(second.with_fd(|_| ()).is_none(), "closed at shutdown");
}

#[test]
fn unix_datagrams_both_ways() {
    let dir = std::env::temp_dir().join(format!("twistor-udgram-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server_path = dir.join("server.sock");
    let client_path = dir.join("client.sock");
    let reactor = twistor_testing::reactor();
    struct Answer;
    impl DatagramProtocol for Answer {
        fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], addr: &Address) {
            t.write_to(&data.to_ascii_uppercase(), addr).unwrap();
        }
    }
    let server = reactor
        .listen_unix_datagram(server_path.as_path(), Answer, 0o600)
        .unwrap();
    assert_eq!(
        server.host(),
        Address::Unix(UnixAddress::Path(server_path.clone()))
    );
    let log: Log = Rc::default();
    let client = reactor
        .connect_unix_datagram(
            server_path.as_path(),
            Record(log.clone(), Some(reactor.clone())),
            Some(UnixAddress::Path(client_path.clone())),
        )
        .unwrap();
    client.write(b"quiet words").unwrap();
    reactor.run().unwrap();
    assert!(
        !server_path.exists() && !client_path.exists(),
        "files removed on close"
    );
    assert_eq!(
        log.borrow()[1],
        format!("QUIET WORDS from unix:{}", server_path.display())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A datagram protocol that panics has its socket closed (it hears `stop_protocol`), as a
/// panicking connection is aborted; it used to go on receiving.
#[test]
fn a_panicking_datagram_protocol_has_its_socket_closed() {
    struct Fragile(Log, Reactor);
    impl DatagramProtocol for Fragile {
        fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], _: &Address) {
            self.0
                .borrow_mut()
                .push(String::from_utf8_lossy(data).into_owned());
            if data == b"boom" {
                panic!("datagram bug");
            }
        }
        fn stop_protocol(&mut self) {
            self.0.borrow_mut().push("stop".into());
            self.1.stop();
        }
    }
    let reactor = twistor_testing::reactor();
    // Panics on purpose: the default mode, where a panic costs only what panicked.
    reactor.set_unhandled_panic(UnhandledPanic::Ignore);
    let log: Log = Rc::default();
    let t = reactor
        .listen_udp_with(
            0,
            Fragile(log.clone(), reactor.clone()),
            UdpOptions::default().interface("127.0.0.1".parse().unwrap()),
        )
        .unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = t.port();
    sender.send_to(b"boom", ("127.0.0.1", port)).unwrap();
    sender.send_to(b"after", ("127.0.0.1", port)).unwrap();
    // Closing the socket stops the reactor.
    reactor.run().unwrap();
    assert!(!t.listening());
    assert_eq!(*log.borrow(), ["boom", "stop"]);
}
