//! PROXY protocol: header parsing (v1 text, v2 bytes written here from the spec), the
//! wrapper fed in every chunking, bad and missing headers, the `haproxy:` endpoint, and a
//! real v1 header from `curl --haproxy-protocol`.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use common::ReactorThread;
use proptest::prelude::*;
use twistor::address::UnixAddress;
use twistor::endpoints::server_from_string;
use twistor::protocol::factory;
use twistor::{Address, Factory, Protocol, Transport};
use twistor_protocols::basic::{LineHandler, LineReceiver, Lines};
use twistor_protocols::haproxy::{self, HAProxyWrappingFactory, ProxyInfo, V2_SIGNATURE};
use twistor_testing::StringTransport;
use twistor_testing::process::have;

fn tcp(s: &str) -> Address {
    Address::Tcp(s.parse().unwrap())
}

fn parsed(buf: &[u8]) -> (ProxyInfo, usize) {
    haproxy::parse(buf).unwrap().unwrap()
}

fn err(buf: &[u8]) -> String {
    haproxy::parse(buf).unwrap_err().to_string()
}

/// A version 2 header: command PROXY (0x21), `fam`, then `body` (addresses and TLVs).
fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(ver_cmd);
    h.push(fam);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn v2_tcp4() -> Vec<u8> {
    // 192.0.2.10:56324 -> 198.51.100.1:443, then a TLV (PP2_TYPE_AUTHORITY "example.com").
    let mut body = vec![192, 0, 2, 10, 198, 51, 100, 1];
    body.extend_from_slice(&56324u16.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    body.extend_from_slice(&[0x02, 0x00, 0x0b]);
    body.extend_from_slice(b"example.com");
    v2(0x21, 0x11, &body)
}

#[test]
fn v1_headers() {
    let (info, n) = parsed(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /");
    assert_eq!(n, 45);
    assert_eq!(info.version, 1);
    assert_eq!(info.source, Some(tcp("192.0.2.1:56324")));
    assert_eq!(info.destination, Some(tcp("198.51.100.2:443")));
    let (info, _) = parsed(b"PROXY TCP6 2001:db8::1 2001:db8::2 4242 80\r\n");
    assert_eq!(info.source, Some(tcp("[2001:db8::1]:4242")));
    let (info, n) = parsed(b"PROXY UNKNOWN\r\n");
    assert_eq!((info.source, n), (None, 15));
    let (info, _) = parsed(b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 65535 65535\r\n");
    assert_eq!(info.source, None);
    // The longest legal header (107 bytes) parses.
    let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), 104);
    assert!(haproxy::parse(longest).unwrap().is_some());
    // Partial headers ask for more.
    for partial in [&b""[..], b"PRO", b"PROXY TCP4 1.2.3.4", b"\r\n\r\n\0"] {
        assert!(haproxy::parse(partial).unwrap().is_none(), "{partial:?}");
    }
}

#[test]
fn malformed_v1_headers_say_why() {
    assert!(err(b"GET / HTTP/1.1\r\n").contains("missing"));
    assert!(err(b"proxy TCP4").contains("missing"));
    assert!(err(b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n").contains("TCP4, TCP6 or UNKNOWN"));
    assert!(err(b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n").contains("6 fields"));
    assert!(err(b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n").contains("6 fields"));
    assert!(err(b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n").contains("not TCP4"));
    assert!(err(b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n").contains("not TCP6"));
    assert!(err(b"PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n").contains("bad address"));
    assert!(err(b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n").contains("bad port"));
    assert!(err(b"PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n").contains("bad port"));
    assert!(err(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n").contains("LF without CR"));
    assert!(err(&[b"PROXY ".as_slice(), &[b'x'; 110]].concat()).contains("107"));
}

#[test]
fn v2_headers_from_the_spec() {
    let h = v2_tcp4();
    let (info, n) = parsed(&[&h[..], b"payload"].concat());
    assert_eq!(n, h.len());
    assert_eq!(info.version, 2);
    assert_eq!(info.source, Some(tcp("192.0.2.10:56324")));
    assert_eq!(info.destination, Some(tcp("198.51.100.1:443")));

    let mut body = Vec::new();
    body.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    body.extend_from_slice(
        &"2001:db8::8"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    body.extend_from_slice(&[0x10, 0x92, 0x00, 0x50]);
    let (info, _) = parsed(&v2(0x21, 0x21, &body));
    assert_eq!(info.source, Some(tcp("[2001:db8::7]:4242")));
    assert_eq!(info.destination, Some(tcp("[2001:db8::8]:80")));
    // UDP over IPv6.
    let (info, _) = parsed(&v2(0x21, 0x22, &body));
    assert_eq!(
        info.source,
        Some(Address::Udp("[2001:db8::7]:4242".parse().unwrap()))
    );

    // Unix stream: two 108-byte sun_path fields.
    let mut unix = vec![0u8; 216];
    unix[..13].copy_from_slice(b"/run/lb.sock\0");
    unix[108..122].copy_from_slice(b"\0abstract-name");
    let (info, _) = parsed(&v2(0x21, 0x31, &unix));
    assert_eq!(
        info.source,
        Some(Address::Unix(UnixAddress::from("/run/lb.sock")))
    );
    assert_eq!(
        info.destination,
        Some(Address::Unix(UnixAddress::Abstract(
            b"abstract-name".to_vec()
        )))
    );

    // LOCAL (health checks) and UNSPEC keep the connection's own addresses.
    let (info, n) = parsed(&v2(0x20, 0x00, &[]));
    assert_eq!((info.source, n), (None, 16));
    let (info, _) = parsed(&v2(0x20, 0x11, &[0; 12]));
    assert_eq!(info.source, None);
    let (info, _) = parsed(&v2(0x21, 0x00, &[1, 2, 3]));
    assert_eq!(info.source, None);

    // Malformed.
    assert!(err(&v2(0x11, 0x11, &[0; 12])).contains("version 1"));
    assert!(err(&v2(0x22, 0x11, &[0; 12])).contains("command"));
    assert!(err(&v2(0x21, 0x41, &[0; 12])).contains("family"));
    assert!(err(&v2(0x21, 0x13, &[0; 12])).contains("transport"));
    assert!(err(&v2(0x21, 0x11, &[0; 11])).contains("12 bytes"));
    assert!(err(&v2(0x21, 0x21, &[0; 35])).contains("36 bytes"));
    // Truncated: ask for more.
    let h = v2_tcp4();
    for cut in 0..h.len() {
        assert!(haproxy::parse(&h[..cut]).unwrap().is_none(), "cut at {cut}");
    }
}

/// Records the addresses it sees and the bytes it gets.
#[derive(Default)]
struct Seen {
    peer: Option<Address>,
    host: Option<Address>,
    data: Vec<u8>,
    made: bool,
}

struct Record(Rc<RefCell<Seen>>);
impl Protocol for Record {
    fn connection_made(&mut self, t: &Transport) {
        let mut s = self.0.borrow_mut();
        s.made = true;
        s.peer = Some(t.peer());
        s.host = Some(t.host());
    }
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        self.0.borrow_mut().data.extend_from_slice(data);
    }
}

fn wrapped(seen: &Rc<RefCell<Seen>>) -> Rc<HAProxyWrappingFactory> {
    let s = seen.clone();
    HAProxyWrappingFactory::new(factory(move |_| Record(s.clone())))
}

fn feed_wrapper(input: &[u8], sizes: &[usize]) -> (StringTransport, Rc<RefCell<Seen>>) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let f = wrapped(&seen);
    let st = StringTransport::with_addresses(tcp("10.9.8.7:1111"), tcp("10.0.0.1:80"));
    let t = st.transport();
    let mut p = f.build_protocol(&t.peer()).unwrap();
    p.make_connection(&t);
    let (mut at, mut i) = (0, 0);
    while at < input.len() {
        let n = sizes[i % sizes.len()].max(1).min(input.len() - at);
        p.data_received(&t, &input[at..at + n]);
        at += n;
        i += 1;
    }
    (st, seen)
}

proptest! {
    #[test]
    fn wrapper_any_chunking(v1 in any::<bool>(), payload in prop::collection::vec(any::<u8>(), 0..200),
                            sizes in prop_oneof![Just(vec![1usize]), prop::collection::vec(1usize..30, 1..10)]) {
        let header = if v1 {
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec()
        } else {
            v2_tcp4()
        };
        let (st, seen) = feed_wrapper(&[&header[..], &payload[..]].concat(), &sizes);
        let seen = seen.borrow();
        prop_assert!(!st.disconnecting());
        prop_assert!(seen.made);
        let source = if v1 { "192.0.2.1:56324" } else { "192.0.2.10:56324" };
        prop_assert_eq!(seen.peer.clone(), Some(tcp(source)));
        prop_assert_eq!(&seen.data, &payload);
    }
}

#[test]
fn missing_or_malformed_headers_close_and_the_protocol_never_starts() {
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 nowhere 1 2\r\nhello",
        &v2(0x2f, 0x11, &[0; 12]),
    ] {
        let (st, seen) = feed_wrapper(bad, &[1]);
        assert!(st.aborted(), "{:?}", String::from_utf8_lossy(bad));
        assert!(!seen.borrow().made);
    }
    // LOCAL and UNKNOWN keep the real addresses.
    let (_, seen) = feed_wrapper(&[&v2(0x20, 0x00, &[])[..], b"x"].concat(), &[100]);
    assert_eq!(seen.borrow().peer, Some(tcp("10.9.8.7:1111")));
    let (_, seen) = feed_wrapper(b"PROXY UNKNOWN\r\ny", &[3]);
    assert_eq!(seen.borrow().peer, Some(tcp("10.9.8.7:1111")));
    assert_eq!(seen.borrow().data, b"y");
}

#[test]
fn endpoint_descriptions() {
    haproxy::register();
    let reactor = twistor_testing::reactor();
    let e = server_from_string(&reactor, "haproxy:tcp:8080:interface=127.0.0.1").unwrap();
    assert_eq!(e.describe(), "haproxy:tcp:8080:interface=127.0.0.1");
    let err = server_from_string(&reactor, "haproxy:")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("wrapped endpoint"), "{err}");
    let err = server_from_string(&reactor, "haproxy:tcp:http")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("port must be a number"), "{err}");
}

/// Answers one HTTP request with the peer and host it sees.
struct WhoAmI;
impl LineHandler for WhoAmI {
    fn line_received(&mut self, lines: &mut Lines<'_>, line: &[u8]) {
        if !line.is_empty() {
            return;
        }
        let t = lines.transport();
        let body = format!("peer={} host={}\n", t.peer(), t.host());
        t.write(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        t.lose_connection();
    }
}

/// A `haproxy:tcp:0` server answering with the peer it sees; returns its port.
fn whoami_server() -> (ReactorThread, u16) {
    ReactorThread::start(|reactor| {
        haproxy::register();
        let endpoint = server_from_string(reactor, "haproxy:tcp:0:interface=127.0.0.1").unwrap();
        let port = endpoint
            .listen(factory(|_| LineReceiver::new(WhoAmI)))
            .try_result()
            .unwrap()
            .unwrap();
        port.port()
    })
}

#[test]
fn curl_haproxy_protocol_v1_gives_the_real_peer() {
    if !have("curl", &["--version"]) {
        return;
    }
    let (_reactor, port) = whoami_server();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--haproxy-protocol"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = String::from_utf8(out.stdout).unwrap();
    // An answer at all means the header was parsed (a connection without one is closed
    // unanswered). curl sends its own connection's addresses: its ephemeral port as the
    // peer, the server's port as the host.
    assert!(body.starts_with("peer=tcp:127.0.0.1:"), "{body}");
    assert!(
        body.contains(&format!("host=tcp:127.0.0.1:{port}")),
        "{body}"
    );
    let peer_port: u16 = body["peer=tcp:127.0.0.1:".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(peer_port, port);
}

#[test]
fn v2_header_from_the_spec_over_tcp_gives_the_proxied_peer() {
    let (_reactor, port) = whoami_server();
    for (header, peer, host) in [
        (
            v2_tcp4(),
            "peer=tcp:192.0.2.10:56324",
            "host=tcp:198.51.100.1:443",
        ),
        (
            b"PROXY TCP6 2001:db8::1 2001:db8::2 4242 80\r\n".to_vec(),
            "peer=tcp:[2001:db8::1]:4242",
            "host=tcp:[2001:db8::2]:80",
        ),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&header).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.contains(&format!("{peer} {host}")), "{reply}");
    }
    // No header: closed without an answer.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.is_empty());
}
