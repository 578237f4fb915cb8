//! Adopting sockets made elsewhere.

mod common;

use common::Echo;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use twistor::protocol::factory;
use twistor::{Address, DatagramProtocol, DatagramTransport, Error};

#[test]
fn adopted_listening_socket_accepts() {
    let reactor = twistor_testing::reactor();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let port = reactor
        .adopt_stream_port(listener.as_fd(), factory(|_| Echo))
        .unwrap();
    drop(listener); // ours is a duplicate
    assert_eq!(port.host(), Address::Tcp(addr));
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"adopted").unwrap();
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).unwrap();
        handle.call_from_thread(|r| r.stop()).unwrap();
        buf
    });
    reactor.run().unwrap();
    assert_eq!(&client.join().unwrap(), b"adopted");
}

#[test]
fn adopted_connection_runs_a_protocol_and_wrong_kinds_are_refused() {
    let reactor = twistor_testing::reactor();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    reactor
        .adopt_stream_connection(ours.as_fd(), factory(|_| Echo))
        .unwrap();
    drop(ours);
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        theirs.write_all(b"pair").unwrap();
        let mut buf = [0u8; 4];
        theirs.read_exact(&mut buf).unwrap();
        handle.call_from_thread(|r| r.stop()).unwrap();
        buf
    });
    reactor.run().unwrap();
    assert_eq!(&client.join().unwrap(), b"pair");
    // A connected socket is not a listening port, nor a datagram socket.
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(matches!(
        reactor.adopt_stream_port(a.as_fd(), factory(|_| Echo)),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        reactor.adopt_datagram_port(a.as_fd(), Quiet, 100),
        Err(Error::Unsupported(_))
    ));
}

struct Quiet;
impl DatagramProtocol for Quiet {
    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: &Address) {}
}

#[test]
fn adopted_datagram_socket_receives() {
    let reactor = twistor_testing::reactor();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    struct Back;
    impl DatagramProtocol for Back {
        fn datagram_received(&mut self, t: &DatagramTransport, d: &[u8], a: &Address) {
            t.write_to(d, a).unwrap();
        }
    }
    let t = reactor
        .adopt_datagram_port(sock.as_fd(), Back, 8192)
        .unwrap();
    drop(sock);
    assert_eq!(t.host(), Address::Udp(addr));
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.send_to(b"udp adopted", addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        handle.call_from_thread(|r| r.stop()).unwrap();
        buf[..n].to_vec()
    });
    reactor.run().unwrap();
    assert_eq!(client.join().unwrap(), b"udp adopted");
}
