//! Datagrams in batches (`recvmmsg` / `sendmmsg`): bursts delivered in order with their
//! senders, replies written during a batch, closing in the middle of one, Unix datagram
//! sockets, and writes too long for the socket.
//!
//! Every test sends its whole burst before the reactor runs (a loopback send is queued at the
//! receiver when it returns), so the server reads it in full batches.

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixDatagram;
use std::rc::Rc;
use std::time::Duration;

use socket2::SockRef;
use twistor::address::UnixAddress;
use twistor::udp::UdpOptions;
use twistor::{Address, DatagramProtocol, DatagramTransport, Error, Reactor};
use twistor_testing::TempDir;

type Log = Rc<RefCell<Vec<(Vec<u8>, Address)>>>;

/// Records each datagram and its sender, answers it if `echo`, closes its socket after
/// `close_after` datagrams, and stops the reactor after `stop_after` (or when closed).
struct Server {
    log: Log,
    reactor: Reactor,
    echo: bool,
    close_after: Option<usize>,
    stop_after: usize,
}

impl Server {
    fn new(log: &Log, reactor: &Reactor, stop_after: usize) -> Server {
        Server {
            log: log.clone(),
            reactor: reactor.clone(),
            echo: false,
            close_after: None,
            stop_after,
        }
    }

    fn echo(mut self) -> Server {
        self.echo = true;
        self
    }
}

impl DatagramProtocol for Server {
    fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], addr: &Address) {
        self.log.borrow_mut().push((data.to_vec(), addr.clone()));
        if self.echo && *addr != Address::Unix(UnixAddress::Unnamed) {
            t.write_to(data, addr).unwrap();
        }
        let seen = self.log.borrow().len();
        if self.close_after == Some(seen) {
            t.stop_listening();
        }
        if seen == self.stop_after {
            self.reactor.stop();
        }
    }

    fn stop_protocol(&mut self) {
        self.reactor.stop();
    }
}

fn localhost() -> UdpOptions {
    UdpOptions::default().interface("127.0.0.1".parse().unwrap())
}

/// A client socket on loopback with room for a burst of replies.
fn client() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    roomy(SockRef::from(&sock));
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock
}

/// Asks for a receive buffer large enough for the bursts here (the kernel caps it at
/// `rmem_max`, 208 KiB by default, then doubles it).
fn roomy(sock: SockRef<'_>) {
    let _ = sock.set_recv_buffer_size(1 << 20);
}

fn payload(i: usize) -> Vec<u8> {
    format!("datagram {i}").into_bytes()
}

fn addr_of(sock: &UdpSocket) -> SocketAddr {
    sock.local_addr().unwrap()
}

/// More datagrams than one batch (32) and than one turn (256), from two senders in turn:
/// each is delivered once, in order, with its own sender.
#[test]
fn a_burst_is_delivered_in_order_with_each_sender() {
    const COUNT: usize = 300;
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    let server = reactor
        .listen_udp_with(0, Server::new(&log, &reactor, COUNT), localhost())
        .unwrap();
    server.with_fd(|fd| roomy(SockRef::from(&fd))).unwrap();
    let senders = [client(), client()];
    for i in 0..COUNT {
        senders[i % 2]
            .send_to(&payload(i), ("127.0.0.1", server.port()))
            .unwrap();
    }
    reactor.run().unwrap();
    let log = log.borrow();
    assert_eq!(log.len(), COUNT);
    for (i, (data, from)) in log.iter().enumerate() {
        assert_eq!(*data, payload(i), "datagram {i}");
        assert_eq!(
            *from,
            Address::Udp(addr_of(&senders[i % 2])),
            "datagram {i}"
        );
    }
}

/// Replies written while a batch is delivered (queued, then sent together) all arrive, in the
/// order written, including one too long to queue (sent at once, after those before it).
#[test]
fn replies_written_during_a_batch_all_arrive_in_order() {
    const COUNT: usize = 100;
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    let server = reactor
        .listen_udp_with(0, Server::new(&log, &reactor, COUNT).echo(), localhost())
        .unwrap();
    server.with_fd(|fd| roomy(SockRef::from(&fd))).unwrap();
    let sock = client();
    let message = |i: usize| match i {
        40 => vec![b'L'; 1400],
        _ => payload(i),
    };
    let host = server.host();
    for i in 0..COUNT {
        sock.send_to(&message(i), ("127.0.0.1", server.port()))
            .unwrap();
    }
    reactor.run().unwrap();
    assert_eq!(log.borrow().len(), COUNT);
    let mut buf = [0u8; 2048];
    for i in 0..COUNT {
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..n], message(i), "reply {i}");
        assert_eq!(Address::Udp(from), host);
    }
}

/// `stop_listening` from `datagram_received` stops the batch there: the rest are not
/// delivered, but the replies written before it (the closing callback's too) still go.
#[test]
fn stop_listening_in_the_middle_of_a_batch() {
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    let mut protocol = Server::new(&log, &reactor, usize::MAX).echo();
    protocol.close_after = Some(4);
    let server = reactor.listen_udp_with(0, protocol, localhost()).unwrap();
    let port = server.port();
    let sock = client();
    for i in 0..10 {
        sock.send_to(&payload(i), ("127.0.0.1", port)).unwrap();
    }
    reactor.run().unwrap();
    assert!(!server.listening());
    let delivered: Vec<Vec<u8>> = log.borrow().iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(delivered, (0..4).map(payload).collect::<Vec<_>>());
    let mut buf = [0u8; 64];
    for i in 0..4 {
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..n], payload(i));
    }
    sock.set_nonblocking(true).unwrap();
    let extra = sock.recv_from(&mut buf);
    assert!(extra.is_err(), "no reply after the close: {extra:?}");
}

/// A Unix datagram socket reads in batches too: senders have their path or abstract name,
/// unnamed ones are `Unnamed`, and replies (queued, to a path or a name) arrive in order.
#[test]
fn unix_datagrams_in_a_burst() {
    // A Unix datagram socket queues at most `net.unix.max_dgram_qlen` (10 by default)
    // datagrams: a blocking sender would wait for the eleventh.
    const COUNT: usize = 9;
    let dir = TempDir::new("udgram-batch");
    let server_path = dir.join("server.sock");
    let client_path = dir.join("client.sock");
    let reactor = twistor_testing::reactor();
    let log: Log = Rc::default();
    let server = reactor
        .listen_unix_datagram(
            server_path.as_path(),
            Server::new(&log, &reactor, COUNT + 2).echo(),
            0o600,
        )
        .unwrap();
    let named = UnixDatagram::bind(&client_path).unwrap();
    named
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let unnamed = UnixDatagram::unbound().unwrap();
    let name = format!("twistor-batch-{}", std::process::id()).into_bytes();
    let abstract_addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let abstract_client = UnixDatagram::bind_addr(&abstract_addr).unwrap();
    abstract_client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for i in 0..COUNT {
        named.send_to(&payload(i), &server_path).unwrap();
        if i == COUNT / 2 {
            unnamed.send_to(b"anonymous", &server_path).unwrap();
            abstract_client.send_to(b"abstract", &server_path).unwrap();
        }
    }
    reactor.run().unwrap();
    drop(server);
    let log = log.borrow();
    assert_eq!(log.len(), COUNT + 2);
    let client = Address::Unix(UnixAddress::Path(client_path.clone()));
    let mut expected: Vec<(Vec<u8>, Address)> =
        (0..COUNT).map(|i| (payload(i), client.clone())).collect();
    expected.insert(
        COUNT / 2 + 1,
        (b"anonymous".to_vec(), Address::Unix(UnixAddress::Unnamed)),
    );
    expected.insert(
        COUNT / 2 + 2,
        (
            b"abstract".to_vec(),
            Address::Unix(UnixAddress::Abstract(name)),
        ),
    );
    assert_eq!(*log, expected);
    let mut buf = [0u8; 64];
    let n = abstract_client.recv(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"abstract",
        "the reply to an abstract name arrived"
    );
    for i in 0..COUNT {
        let n = named.recv(&mut buf).unwrap();
        assert_eq!(buf[..n], payload(i));
    }
}

/// A write too long for the socket is still the caller's error when made during a batch
/// (it is not queued), and the replies around it still go.
#[test]
fn an_oversized_write_during_a_batch_is_an_error() {
    struct Oversize(Rc<RefCell<Vec<String>>>, Reactor);
    impl DatagramProtocol for Oversize {
        fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], addr: &Address) {
            t.write_to(b"before", addr).unwrap();
            let outcome = match t.write_to(&vec![0u8; 70_000], addr) {
                Err(Error::MessageTooLong { size }) => format!("too long: {size}"),
                other => format!("{other:?}"),
            };
            self.0.borrow_mut().push(outcome);
            t.write_to(data, addr).unwrap();
            self.1.stop();
        }
    }
    let reactor = twistor_testing::reactor();
    let log = Rc::new(RefCell::new(Vec::new()));
    let server = reactor
        .listen_udp_with(0, Oversize(log.clone(), reactor.clone()), localhost())
        .unwrap();
    let sock = client();
    sock.send_to(b"after", ("127.0.0.1", server.port()))
        .unwrap();
    reactor.run().unwrap();
    assert_eq!(*log.borrow(), ["too long: 70000"]);
    let mut buf = [0u8; 64];
    for expected in [&b"before"[..], b"after"] {
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], expected);
    }
}

/// A queued datagram the kernel refuses (here: one to port 0, `EINVAL`) is dropped alone,
/// with a log; the replies after it in the batch still go. An IPv6 destination for an IPv4
/// socket is refused at once, as before.
#[test]
fn a_refused_queued_datagram_does_not_drop_the_rest() {
    struct Misdirect(Reactor, Rc<RefCell<Vec<String>>>);
    impl DatagramProtocol for Misdirect {
        fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], addr: &Address) {
            let port_zero = Address::Udp("127.0.0.1:0".parse().unwrap());
            t.write_to(b"lost", &port_zero).unwrap();
            let v6 = t.write_to(b"lost", &Address::Udp("[::1]:9".parse().unwrap()));
            self.1.borrow_mut().push(match v6 {
                Err(Error::Io(err)) => format!("{:?}", err.raw_os_error()),
                other => format!("{other:?}"),
            });
            t.write_to(data, addr).unwrap();
            self.0.stop();
        }
    }
    let reactor = twistor_testing::reactor();
    let log = Rc::new(RefCell::new(Vec::new()));
    let server = reactor
        .listen_udp_with(0, Misdirect(reactor.clone(), log.clone()), localhost())
        .unwrap();
    let sock = client();
    sock.send_to(b"echo", ("127.0.0.1", server.port())).unwrap();
    reactor.run().unwrap();
    assert_eq!(*log.borrow(), [format!("{:?}", Some(libc::EAFNOSUPPORT))]);
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"echo");
}

/// On a connected socket, `write` during a batch queues too (to the connected peer), and the
/// replies arrive in order.
#[test]
fn writes_to_the_connected_peer_during_a_batch() {
    struct Answer(Reactor, usize);
    impl DatagramProtocol for Answer {
        fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], _: &Address) {
            t.write(&data.to_ascii_uppercase()).unwrap();
            self.1 += 1;
            if self.1 == 5 {
                self.0.stop();
            }
        }
    }
    let reactor = twistor_testing::reactor();
    let t = reactor
        .listen_udp_with(0, Answer(reactor.clone(), 0), localhost())
        .unwrap();
    let peer = client();
    t.connect(&Address::Udp(addr_of(&peer))).unwrap();
    for i in 0..5 {
        peer.send_to(&payload(i), ("127.0.0.1", t.port())).unwrap();
    }
    reactor.run().unwrap();
    let mut buf = [0u8; 64];
    for i in 0..5 {
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(buf[..n], payload(i).to_ascii_uppercase());
    }
}
