//! A reactor dropped without `stop()` closes every descriptor it was watching: listening
//! ports are free again at once, peers see the connection end, and the process has no more
//! descriptors open than before. (Its own test binary: it counts this process's
//! descriptors, which other tests running in parallel would disturb.)

use std::cell::Cell;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::rc::Rc;
use std::time::{Duration, Instant};

use twistor::protocol::factory;
use twistor::tcp::ListenOptions;
use twistor::{Address, DatagramProtocol, DatagramTransport, Protocol, Reactor, Transport};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Keeps its transport, as most protocols do: a protocol ↔ transport cycle that the
/// reactor has to break when it goes away.
struct Keeper {
    transport: Option<Transport>,
    made: Rc<Cell<usize>>,
}

impl Protocol for Keeper {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.made.set(self.made.get() + 1);
    }

    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

/// The same for a datagram socket.
struct DatagramKeeper(Option<DatagramTransport>);

impl DatagramProtocol for DatagramKeeper {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        self.0 = Some(transport.clone());
    }

    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: &Address) {}
}

/// Turns the reactor until `done`, for at most ten seconds.
fn iterate_until(reactor: &Reactor, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting");
        reactor.iterate(Duration::from_millis(50));
    }
}

#[test]
fn a_reactor_dropped_without_stop_closes_all_its_descriptors() {
    let localhost = Ipv4Addr::LOCALHOST.into();
    // A port that listens but never accepts: a connection to it stays "connecting" for the
    // reactor as long as the reactor does not turn.
    let never = TcpListener::bind((localhost, 0)).unwrap();
    let never_port = never.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("twistor-owned-fds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let unix_path = dir.join("server.sock");
    let before = open_fds();

    let reactor = twistor_testing::reactor();
    let made = Rc::new(Cell::new(0));
    let m = made.clone();
    let tcp = reactor
        .listen_tcp_with(
            0,
            factory(move |_| Keeper {
                transport: None,
                made: m.clone(),
            }),
            ListenOptions::default().interface(localhost),
        )
        .unwrap();
    let tcp_port = tcp.host().socket_addr().unwrap().port();
    let udp = reactor.listen_udp(0, DatagramKeeper(None)).unwrap();
    let udp_port = udp.port();
    let unix = reactor
        .listen_unix(
            unix_path.as_path(),
            factory(|_| Keeper {
                transport: None,
                made: Rc::default(),
            }),
        )
        .unwrap();
    let mut client = TcpStream::connect((localhost, tcp_port)).unwrap();
    iterate_until(&reactor, || made.get() == 1);
    let connecting = reactor.connect_tcp(
        "127.0.0.1",
        never_port,
        factory(|_| Keeper {
            transport: None,
            made: Rc::default(),
        }),
    );
    // epoll, its waker, three ports, the accepted connection, the connecting socket, and
    // our client.
    assert_eq!(open_fds(), before + 8);

    drop(reactor);
    // The handles the application still holds own no descriptor.
    assert_eq!(open_fds(), before + 1, "only our client is left");
    assert!(!unix_path.exists(), "the Unix socket's file is removed");
    TcpListener::bind((localhost, tcp_port)).expect("the TCP port is free again");
    UdpSocket::bind((localhost, udp_port)).expect("the UDP port is free again");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0; 16];
    assert_eq!(client.read(&mut buf).unwrap(), 0, "the peer sees the close");

    drop((tcp, udp, unix, connecting, client));
    assert_eq!(open_fds(), before);
    drop(never);
    let _ = std::fs::remove_dir_all(&dir);
}
