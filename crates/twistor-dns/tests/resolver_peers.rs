//! The resolver against real servers: NSD serving zones (authoritative, so the resolver
//! also follows CNAMEs out of a zone itself), and `ldns-testns` scripted to misbehave
//! (truncated replies, wrong ids, wrong questions, SERVFAIL, no case preservation).
//!
//! Each test starts its own server on a port the OS picked and stops it when done
//! (`ChildGuard`); NSD starts in about 50 ms.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use twistor::defer::{Deferred, Failure};
use twistor::endpoints::{ClientEndpoint, HostnameEndpoint};
use twistor::protocol::{Protocol, factory};
use twistor::{Reactor, Transport};
use twistor_dns::Error;
use twistor_dns::client::{Resolver, ResolverConfig};
use twistor_dns::wire::op::{Message, ResponseCode};
use twistor_dns::wire::rr::{Name, RData, RecordType};
use twistor_testing::TempDir;
use twistor_testing::dns::{Nsd, NsdZone, free_dns_port};
use twistor_testing::process::{ChildGuard, have};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

// ---- peers -----------------------------------------------------------------------------

const EXAMPLE_ZONE: &str = r#"$ORIGIN example.test.
$TTL 300
@        IN SOA ns1 hostmaster 1 3600 600 86400 30
@        NS    ns1
ns1      A     127.0.0.1
www      A     192.0.2.10
www      AAAA  2001:db8::10
local    A     127.0.0.1
@        MX    10 mail
@        MX    5 mx0
mail     A     192.0.2.25
mx0      A     192.0.2.26
@        TXT   "v=spf1 -all"
txt      TXT   "hello" "world"
_sip._tcp SRV  10 20 5061 sip2
_sip._tcp SRV  10 60 5060 sip
_sip._tcp SRV  5 0 5062 sip3
alias    CNAME www
outside  CNAME host.other.test.
host.corp A    192.0.2.77
"#;

const OTHER_ZONE: &str = "$ORIGIN other.test.
$TTL 300
@    IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 30
@    NS ns1.example.test.
host A 192.0.2.88
";

const REVERSE_ZONE: &str = "$ORIGIN 2.0.192.in-addr.arpa.
$TTL 300
@    IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 30
@    NS ns1.example.test.
10   PTR www.example.test.
";

/// NSD serving example.test (with a TXT record too big for UDP), other.test and
/// 2.0.192.in-addr.arpa on 127.0.0.1.
fn start_nsd() -> Option<Nsd> {
    let mut big = String::from("$ORIGIN example.test.\n");
    // Twelve 200-byte strings: about 2.5 KB, beyond the 1232-byte EDNS buffer.
    for i in 0..12 {
        big.push_str(&format!("big TXT \"{}{i:03}\"\n", "x".repeat(200)));
    }
    Nsd::start(
        LOCALHOST,
        &[
            NsdZone::primary("example.test", &format!("{EXAMPLE_ZONE}{big}")),
            NsdZone::primary("other.test", OTHER_ZONE),
            NsdZone::primary("2.0.192.in-addr.arpa", REVERSE_ZONE),
        ],
    )
}

/// Unbound as a recursive server in front of NSD (stub zones for NSD's zones, nothing
/// else).
struct Unbound {
    _guard: ChildGuard,
    _dir: TempDir,
    addr: SocketAddr,
}

impl Unbound {
    fn start(nsd: SocketAddr) -> Option<Unbound> {
        if !have("unbound", &["-V"]) {
            return None;
        }
        let dir = TempDir::new("dns-unbound");
        let port = free_dns_port(LOCALHOST);
        let d = dir.path().display();
        let upstream = format!("{}@{}", nsd.ip(), nsd.port());
        let mut conf = format!(
            r#"server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  chroot: ""
  username: ""
  directory: "{d}"
  pidfile: "{d}/unbound.pid"
  do-daemonize: no
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  qname-minimisation: no
  local-zone: "test." nodefault
  local-zone: "2.0.192.in-addr.arpa." nodefault
  domain-insecure: "test."
  domain-insecure: "2.0.192.in-addr.arpa."
remote-control:
  control-enable: no
"#
        );
        for zone in ["example.test", "other.test", "2.0.192.in-addr.arpa"] {
            conf.push_str(&format!(
                "stub-zone:\n  name: \"{zone}.\"\n  stub-addr: {upstream}\n"
            ));
        }
        let path = dir.write("unbound.conf", conf);
        let mut cmd = Command::new("unbound");
        cmd.arg("-d").arg("-c").arg(&path);
        let mut guard = ChildGuard::spawn(cmd);
        guard.err_line_containing("start of service");
        Some(Unbound {
            _guard: guard,
            _dir: dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

/// `ldns-testns` answering from a script; returns it, its directory and its address.
fn testns(script: &str) -> Option<(ChildGuard, TempDir, SocketAddr)> {
    // ldns-testns has no option that exits 0; look for it on the PATH.
    if !have("sh", &["-c", "command -v ldns-testns"]) {
        return None;
    }
    let dir = TempDir::new("dns-testns");
    let path = dir.write("data", script);
    // Its own `-r` (a random port) gives up when the port it drew is taken (a TIME_WAIT
    // from another test will do): pick one free for UDP and TCP, and try again if need be.
    let mut why = String::new();
    for _ in 0..5 {
        let port = free_dns_port([127, 0, 0, 1].into());
        let mut cmd = Command::new("ldns-testns");
        cmd.arg("-p").arg(port.to_string()).arg(&path);
        let mut guard = ChildGuard::spawn(cmd);
        match guard.try_line_containing("Listening on port") {
            Ok(_) => return Some((guard, dir, SocketAddr::from(([127, 0, 0, 1], port)))),
            Err(e) => why = e,
        }
    }
    panic!("ldns-testns did not start: {why}");
}

/// A UDP relay in front of a server that counts the queries going through it.
struct Relay {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(upstream).unwrap();
        back.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let addr = front.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (queries.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while !halt.load(Ordering::Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                back.send(&buf[..n]).unwrap();
                if let Ok(n) = back.recv(&mut buf) {
                    let _ = front.send_to(&buf[..n], client);
                }
            }
        });
        Relay {
            addr,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- helpers ---------------------------------------------------------------------------

fn config(servers: &[SocketAddr]) -> ResolverConfig {
    let mut config = ResolverConfig::new(servers.to_vec());
    config.timeout = Duration::from_secs(2);
    config.attempts = 1;
    config
}

fn run<T: 'static>(reactor: &Reactor, d: Deferred<T>) -> Result<T, Failure> {
    reactor.run_until(d).expect("the reactor ran")
}

fn dns_error(failure: Failure) -> Error {
    failure
        .downcast_ref::<Error>()
        .cloned()
        .unwrap_or_else(|| panic!("not a DNS error: {failure}"))
}

fn names(v: &[Name]) -> Vec<String> {
    v.iter().map(|n| n.to_ascii()).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// ---- against NSD -----------------------------------------------------------------------

#[test]
fn every_record_kind_from_nsd() {
    let Some(nsd) = start_nsd() else { return };
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[nsd.addr()]));

    let addresses = run(&reactor, resolver.lookup_ip("www.example.test")).unwrap();
    assert_eq!(addresses, [ip("192.0.2.10"), ip("2001:db8::10")]);

    let a = run(&reactor, resolver.lookup("www.example.test", RecordType::A)).unwrap();
    assert_eq!(a.len(), 1);
    assert!(matches!(&a[0].data, RData::A(x) if x.0 == std::net::Ipv4Addr::new(192, 0, 2, 10)));

    let aaaa = run(
        &reactor,
        resolver.lookup("www.example.test.", RecordType::AAAA),
    )
    .unwrap();
    assert!(matches!(&aaaa[0].data, RData::AAAA(x) if x.0 == ip("2001:db8::10")));

    let mx = run(&reactor, resolver.lookup_mx("example.test")).unwrap();
    let mx: Vec<(u16, String)> = mx
        .iter()
        .map(|m| (m.preference, m.exchange.to_ascii()))
        .collect();
    assert_eq!(
        mx,
        [
            (5, "mx0.example.test.".to_string()),
            (10, "mail.example.test.".to_string())
        ]
    );

    let txt = run(&reactor, resolver.lookup_txt("txt.example.test")).unwrap();
    assert_eq!(txt.len(), 1);
    let strings: Vec<&[u8]> = txt[0].txt_data.iter().map(|s| &s[..]).collect();
    assert_eq!(strings, [&b"hello"[..], b"world"]);

    let srv = run(&reactor, resolver.lookup_srv("_sip._tcp.example.test")).unwrap();
    let srv: Vec<(u16, u16, u16)> = srv.iter().map(|s| (s.priority, s.weight, s.port)).collect();
    assert_eq!(srv, [(5, 0, 5062), (10, 60, 5060), (10, 20, 5061)]);

    let ns = run(&reactor, resolver.lookup_ns("example.test")).unwrap();
    assert_eq!(names(&ns), ["ns1.example.test."]);

    let soa = run(&reactor, resolver.lookup_soa("example.test")).unwrap();
    assert_eq!(soa.mname.to_ascii(), "ns1.example.test.");
    assert_eq!(soa.minimum, 30);

    let ptr = run(&reactor, resolver.lookup_ptr(ip("192.0.2.10"))).unwrap();
    assert_eq!(names(&ptr), ["www.example.test."]);

    let cname = run(&reactor, resolver.lookup_cname("alias.example.test")).unwrap();
    assert_eq!(cname.to_ascii(), "www.example.test.");

    // Through a CNAME inside the zone (NSD adds the target) ...
    let via = run(&reactor, resolver.lookup_ip("alias.example.test")).unwrap();
    assert_eq!(via, [ip("192.0.2.10"), ip("2001:db8::10")]);
    // ... and out of it (NSD stops at the zone's edge: the resolver asks again).
    let via = run(
        &reactor,
        resolver.lookup("outside.example.test", RecordType::A),
    )
    .unwrap();
    assert_eq!(via[0].name.to_ascii(), "host.other.test.");
    assert!(matches!(&via[0].data, RData::A(x) if x.0 == std::net::Ipv4Addr::new(192, 0, 2, 88)));

    // The whole response.
    let response = run(&reactor, resolver.query("www.example.test", RecordType::A)).unwrap();
    assert!(response.metadata.authoritative);
    assert_eq!(response.answers.len(), 1);
    assert_eq!(response.queries[0].name().to_ascii(), "www.example.test.");
}

#[test]
fn nxdomain_and_nodata_are_errors() {
    let Some(nsd) = start_nsd() else { return };
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[nsd.addr()]));

    let failure = run(&reactor, resolver.lookup_ip("nope.example.test")).unwrap_err();
    assert_eq!(
        dns_error(failure),
        Error::NoSuchName {
            name: "nope.example.test".into()
        }
    );
    let failure = run(&reactor, resolver.lookup_mx("www.example.test")).unwrap_err();
    assert_eq!(
        dns_error(failure),
        Error::NoRecords {
            name: "www.example.test".into(),
            record_type: "MX".into()
        }
    );
    let failure = run(&reactor, resolver.lookup_ip("mail.example.test")).unwrap();
    assert_eq!(failure, [ip("192.0.2.25")], "NODATA for AAAA, A found");

    // query() hands back the negative response itself, with the SOA for caching.
    let response = run(&reactor, resolver.query("nope.example.test", RecordType::A)).unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        response
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA)
    );
    // NSD refuses names outside its zones: every server refused.
    let failure = run(&reactor, resolver.lookup_ip("example.org")).unwrap_err();
    assert!(matches!(dns_error(failure), Error::Server { code, .. } if code.contains("Refused")),);
}

#[test]
fn truncated_answers_are_fetched_over_tcp() {
    let Some(nsd) = start_nsd() else { return };
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[nsd.addr()]));
    let txt = run(&reactor, resolver.lookup_txt("big.example.test")).unwrap();
    assert_eq!(txt.len(), 12);
    let total: usize = txt.iter().map(|t| t.txt_data[0].len()).sum();
    assert_eq!(total, 12 * 203);
}

#[test]
fn search_list_and_ndots() {
    let Some(nsd) = start_nsd() else { return };
    let reactor = Reactor::new().unwrap();
    let mut cfg = config(&[nsd.addr()]);
    cfg.search = vec!["nowhere.test".into(), "example.test".into()];
    let resolver = Resolver::new(&reactor, cfg.clone());
    // "www" has no dot: search domains first (nowhere.test is refused, then found).
    assert_eq!(
        run(&reactor, resolver.lookup("www", RecordType::A)).unwrap()[0]
            .name
            .to_ascii(),
        "www.example.test."
    );
    // "host.corp" has one dot (>= ndots 1): tried as is (refused), then searched.
    assert_eq!(
        run(&reactor, resolver.lookup_ip("host.corp")).unwrap(),
        [ip("192.0.2.77")]
    );
    // A trailing dot: no search.
    assert!(run(&reactor, resolver.lookup_ip("www.")).is_err());
}

#[test]
fn mixed_case_queries_with_a_case_preserving_server() {
    let Some(nsd) = start_nsd() else { return };
    let reactor = Reactor::new().unwrap();
    let mut cfg = config(&[nsd.addr()]);
    cfg.use_0x20 = true;
    let resolver = Resolver::new(&reactor, cfg);
    let name = "www.example.test";
    let response = run(&reactor, resolver.query(name, RecordType::A)).unwrap();
    assert_eq!(response.answers.len(), 1);
    assert_eq!(response.queries[0].name().to_ascii(), "www.example.test.");
}

#[test]
fn the_cache_answers_without_asking_again() {
    let Some(nsd) = start_nsd() else { return };
    let relay = Relay::start(nsd.addr());
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[relay.addr])).with_cache(100);

    let first = run(&reactor, resolver.query("www.example.test", RecordType::A)).unwrap();
    assert_eq!(relay.queries(), 1);
    let second = run(&reactor, resolver.query("WWW.example.test", RecordType::A)).unwrap();
    assert_eq!(relay.queries(), 1, "served from the cache");
    assert_eq!(
        second.answers,
        first
            .answers
            .iter()
            .map(|r| {
                // The TTL may have aged by a second at most.
                let mut r = r.clone();
                r.ttl = second.answers[0].ttl;
                r
            })
            .collect::<Vec<_>>()
    );
    assert!(second.answers[0].ttl <= 300 && second.answers[0].ttl >= 299);

    // A negative answer is cached too (the SOA MINIMUM is 30 s).
    for _ in 0..2 {
        let failure = run(&reactor, resolver.lookup_ip("nope.example.test")).unwrap_err();
        assert!(matches!(dns_error(failure), Error::NoSuchName { .. }));
    }
    assert_eq!(relay.queries(), 3, "A and AAAA once each");
    assert_eq!(resolver.cache_len(), 3);

    // Without a cache, every lookup asks.
    let plain = Resolver::new(&reactor, config(&[relay.addr]));
    run(&reactor, plain.query("www.example.test", RecordType::A)).unwrap();
    run(&reactor, plain.query("www.example.test", RecordType::A)).unwrap();
    assert_eq!(relay.queries(), 5);
}

#[test]
fn identical_questions_in_flight_share_one_exchange() {
    let Some(nsd) = start_nsd() else { return };
    let relay = Relay::start(nsd.addr());
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[relay.addr]));
    let one = resolver.query("www.example.test", RecordType::A);
    let two = resolver.query("www.example.test", RecordType::A);
    let both = twistor::defer::gather_results(vec![one, two], true);
    let responses = run(&reactor, both).unwrap();
    assert_eq!(responses.len(), 2);
    assert_eq!(relay.queries(), 1);
}

#[test]
fn hostname_endpoint_connects_through_the_resolver() {
    let Some(nsd) = start_nsd() else { return };
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[nsd.addr()]));

    struct Hello;
    impl Protocol for Hello {
        fn connection_made(&mut self, transport: &Transport) {
            transport.write(b"hi");
            transport.lose_connection();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let port = reactor
        .listen_tcp_local(0, factory(|_| Hello))
        .unwrap()
        .port();
    let endpoint = HostnameEndpoint::with_parts(
        Rc::new(reactor.clone()),
        reactor.clone(),
        Rc::new(resolver),
        "local.example.test",
        port,
    );
    struct Client(Rc<Cell<bool>>);
    impl Protocol for Client {
        fn data_received(&mut self, _: &Transport, data: &[u8]) {
            self.0.set(data == b"hi");
        }
    }
    let heard = Rc::new(Cell::new(false));
    let h = heard.clone();
    let transport = run(
        &reactor,
        endpoint.connect(factory(move |_| Client(h.clone()))),
    )
    .unwrap();
    assert_eq!(
        transport.peer().socket_addr().unwrap(),
        SocketAddr::from(([127, 0, 0, 1], port))
    );
}

// ---- against Unbound ------------------------------------------------------------------

#[test]
fn through_a_recursive_server() {
    let Some(nsd) = start_nsd() else { return };
    let Some(unbound) = Unbound::start(nsd.addr()) else {
        return;
    };
    let reactor = Reactor::new().unwrap();
    let mut cfg = config(&[unbound.addr]);
    cfg.use_0x20 = true;
    let resolver = Resolver::new(&reactor, cfg).with_cache(100);

    // Unbound follows the CNAME out of the zone itself (RA set): one response.
    let response = run(
        &reactor,
        resolver.query("outside.example.test", RecordType::A),
    )
    .unwrap();
    assert!(response.metadata.recursion_available);
    assert_eq!(response.answers.len(), 2);
    let via = run(
        &reactor,
        resolver.lookup("outside.example.test", RecordType::A),
    )
    .unwrap();
    assert_eq!(via[0].name.to_ascii(), "host.other.test.");

    assert_eq!(
        run(&reactor, resolver.lookup_ip("www.example.test")).unwrap(),
        [ip("192.0.2.10"), ip("2001:db8::10")]
    );
    let ptr = run(&reactor, resolver.lookup_ptr(ip("192.0.2.10"))).unwrap();
    assert_eq!(names(&ptr), ["www.example.test."]);
    let txt = run(&reactor, resolver.lookup_txt("big.example.test")).unwrap();
    assert_eq!(txt.len(), 12, "truncated over UDP, whole over TCP");
    let failure = run(&reactor, resolver.lookup_ip("nope.example.test")).unwrap_err();
    assert!(matches!(dns_error(failure), Error::NoSuchName { .. }));
    let failure = run(&reactor, resolver.lookup_mx("www.example.test")).unwrap_err();
    assert!(matches!(dns_error(failure), Error::NoRecords { .. }));
    assert!(resolver.cache_len() >= 6);
}

// ---- against ldns-testns ---------------------------------------------------------------

#[test]
fn truncation_from_a_scripted_server_moves_to_tcp() {
    let Some((_guard, _dir, addr)) = testns(
        "$ORIGIN test.
$TTL 60
ENTRY_BEGIN
MATCH opcode qtype qname
MATCH UDP
ADJUST copy_id
REPLY QR AA TC NOERROR
SECTION QUESTION
big.test. IN A
ENTRY_END
ENTRY_BEGIN
MATCH opcode qtype qname
MATCH TCP
ADJUST copy_id
REPLY QR AA NOERROR
SECTION QUESTION
big.test. IN A
SECTION ANSWER
big.test. IN A 192.0.2.1
big.test. IN A 192.0.2.2
ENTRY_END
",
    ) else {
        return;
    };
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[addr]));
    let addresses = run(&reactor, resolver.lookup("big.test", RecordType::A)).unwrap();
    assert_eq!(addresses.len(), 2, "the TCP answer, not the truncated one");
}

/// A reply to `spoof.test. A` with the id 0xdead (hex, for ldns-testns).
fn wrong_id_hex() -> String {
    let mut m = Message::response(0xdead, twistor_dns::wire::op::OpCode::Query);
    m.metadata.authoritative = true;
    let name = Name::from_ascii("spoof.test.").unwrap();
    m.add_query(twistor_dns::wire::op::Query::query(
        name.clone(),
        RecordType::A,
    ));
    m.add_answer(twistor_dns::wire::rr::Record::from_rdata(
        name,
        60,
        RData::A(twistor_dns::wire::rr::rdata::A::new(6, 6, 6, 6)),
    ));
    m.to_vec()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn wrong_ids_and_wrong_questions_are_ignored() {
    // The first server answers only with a wrong id (no copy_id): ignored, so it times
    // out. The second answers first with another question, then rightly.
    let Some((_g1, _d1, liar)) = testns(&format!(
        "ENTRY_BEGIN
MATCH opcode qtype qname
REPLY QR AA NOERROR
SECTION QUESTION
spoof.test. IN A
HEX_ANSWER_BEGIN
{}
HEX_ANSWER_END
ENTRY_END
",
        wrong_id_hex()
    )) else {
        return;
    };
    let Some((_g2, _d2, honest)) = testns(
        "$ORIGIN test.
$TTL 60
ENTRY_BEGIN
MATCH opcode qtype
ADJUST copy_id
REPLY QR AA NOERROR
SECTION QUESTION
other.test. IN A
SECTION ANSWER
other.test. IN A 6.6.6.7
EXTRA_PACKET
REPLY QR AA NOERROR
SECTION QUESTION
spoof.test. IN A
SECTION ANSWER
spoof.test. IN A 192.0.2.53
ENTRY_END
",
    ) else {
        return;
    };
    let reactor = Reactor::new().unwrap();
    let mut cfg = config(&[liar, honest]);
    cfg.timeout = Duration::from_millis(500);
    let resolver = Resolver::new(&reactor, cfg);
    let records = run(&reactor, resolver.lookup("spoof.test", RecordType::A)).unwrap();
    assert_eq!(records.len(), 1);
    assert!(
        matches!(&records[0].data, RData::A(x) if x.0 == std::net::Ipv4Addr::new(192, 0, 2, 53))
    );
}

#[test]
fn servfail_moves_to_the_next_server() {
    let Some((_guard, _dir, failing)) = testns(
        "ENTRY_BEGIN
MATCH opcode
ADJUST copy_id
REPLY QR SERVFAIL
SECTION QUESTION
www.example.test. IN A
ENTRY_END
",
    ) else {
        return;
    };
    let Some(nsd) = start_nsd() else { return };
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[failing, nsd.addr()]));
    let a = run(&reactor, resolver.lookup("www.example.test", RecordType::A)).unwrap();
    assert_eq!(a.len(), 1);
    // Only failing servers: the SERVFAIL is the error.
    let resolver = Resolver::new(&reactor, config(&[failing]));
    let failure = run(&reactor, resolver.lookup("www.example.test", RecordType::A)).unwrap_err();
    assert!(matches!(dns_error(failure), Error::Server { .. }));
}

#[test]
fn a_server_that_lowercases_gets_asked_without_0x20() {
    let Some((_guard, _dir, addr)) = testns(
        "$ORIGIN test.
$TTL 60
ENTRY_BEGIN
MATCH opcode qtype qname
ADJUST copy_id
REPLY QR AA NOERROR
SECTION QUESTION
abcdefghijklmnopqrstuvwxyz.test. IN A
SECTION ANSWER
abcdefghijklmnopqrstuvwxyz.test. IN A 192.0.2.26
ENTRY_END
",
    ) else {
        return;
    };
    let reactor = Reactor::new().unwrap();
    let mut cfg = config(&[addr]);
    cfg.use_0x20 = true;
    let resolver = Resolver::new(&reactor, cfg);
    let name = "abcdefghijklmnopqrstuvwxyz.test";
    // The script echoes the name in lower case: that reply is not taken, the server is
    // asked again at once without 0x20, and that reply is.
    let records = run(&reactor, resolver.lookup(name, RecordType::A)).unwrap();
    assert!(
        matches!(&records[0].data, RData::A(x) if x.0 == std::net::Ipv4Addr::new(192, 0, 2, 26))
    );
}

// ---- scripted in Rust ----------------------------------------------------------------

/// A server on one port: over UDP it answers every query truncated; over TCP (one
/// connection) it sends, a byte at a time, a frame of garbage, a reply with a wrong id,
/// then the right reply.
fn dribbling_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let (tcp, udp) = loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            break (tcp, udp);
        }
    };
    let addr = tcp.local_addr().unwrap();
    let answer = |query: &Message, id: u16| {
        let mut m = Message::response(id, query.metadata.op_code);
        m.add_queries(query.queries.iter().cloned());
        m
    };
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (n, client) = udp.recv_from(&mut buf).unwrap();
        let query = Message::from_vec(&buf[..n]).unwrap();
        let mut tc = answer(&query, query.metadata.id);
        tc.metadata.truncation = true;
        udp.send_to(&tc.to_vec().unwrap(), client).unwrap();

        let (mut stream, _) = tcp.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut data = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut data).unwrap();
        let query = Message::from_vec(&data).unwrap();
        let mut frames: Vec<Vec<u8>> = vec![b"\x12\x34not dns at all".to_vec()];
        let wrong = answer(&query, query.metadata.id.wrapping_add(1));
        frames.push(wrong.to_vec().unwrap());
        let mut right = answer(&query, query.metadata.id);
        for last in 1..=3 {
            right.add_answer(twistor_dns::wire::rr::Record::from_rdata(
                query.queries[0].name().clone(),
                60,
                RData::A(twistor_dns::wire::rr::rdata::A::new(192, 0, 2, last)),
            ));
        }
        frames.push(right.to_vec().unwrap());
        for frame in frames {
            let mut framed = (frame.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&frame);
            for byte in framed {
                if stream.write_all(&[byte]).is_err() {
                    return;
                }
            }
        }
        // Wait for the client to hang up.
        let _ = stream.read(&mut buf);
    });
    (addr, thread)
}

#[test]
fn tcp_replies_dribbled_byte_by_byte_after_garbage_and_a_wrong_id() {
    let (addr, server) = dribbling_server();
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[addr]));
    let records = run(&reactor, resolver.lookup("dribble.test", RecordType::A)).unwrap();
    assert_eq!(records.len(), 3);
    server.join().unwrap();
}

// ---- without servers -------------------------------------------------------------------

#[test]
fn a_silent_server_times_out() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let reactor = Reactor::new().unwrap();
    let mut cfg = config(&[silent.local_addr().unwrap()]);
    cfg.timeout = Duration::from_millis(100);
    cfg.attempts = 2;
    let resolver = Resolver::new(&reactor, cfg);
    let failure = run(&reactor, resolver.query("www.example.test", RecordType::A)).unwrap_err();
    assert!(matches!(dns_error(failure), Error::Timeout { .. }));
    assert_eq!(reactor.source_count(), 0, "every socket closed");
}

#[test]
fn a_refusing_port_fails_fast() {
    let closed = twistor_testing::process::closed_port();
    let reactor = Reactor::new().unwrap();
    let mut cfg = config(&[SocketAddr::from(([127, 0, 0, 1], closed))]);
    cfg.timeout = Duration::from_secs(30);
    let resolver = Resolver::new(&reactor, cfg);
    let started = std::time::Instant::now();
    let failure = run(&reactor, resolver.query("www.example.test", RecordType::A)).unwrap_err();
    assert!(matches!(dns_error(failure), Error::Timeout { .. }));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ICMP refusal heard"
    );
}

#[test]
fn stopping_or_dropping_the_reactor_under_a_query() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[silent.local_addr().unwrap()]));
    let pending = resolver.query("www.example.test", RecordType::A);
    let looked_up = resolver.lookup_ip("www.example.test");
    // Run a little, then stop: the query's socket is closed under it.
    let nap = twistor::task::defer_later(&reactor, Duration::from_millis(50), || Ok(()));
    run(&reactor, nap).unwrap();
    let failure = pending
        .try_result()
        .expect("failed at shutdown")
        .unwrap_err();
    assert!(
        failure.downcast_ref::<twistor::Error>().is_some(),
        "{failure}"
    );
    assert_eq!(reactor.source_count(), 0);
    // The lookups' tasks notice on the next run.
    assert!(run(&reactor, looked_up).is_err());
    // Dropping a reactor with a query in flight is quiet too.
    let another = resolver.query("www.example.test", RecordType::A);
    drop(reactor);
    assert!(another.try_result().is_none());
    // The resolver outlives its reactor: it fails at once.
    assert!(
        resolver
            .query("x.test", RecordType::A)
            .try_result()
            .unwrap()
            .is_err()
    );
}

#[test]
fn cancelling_a_query_closes_its_socket() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[silent.local_addr().unwrap()]));
    let before = reactor.source_count();
    let pending = resolver.query("www.example.test", RecordType::A);
    assert!(reactor.source_count() > before);
    pending.cancel();
    assert!(pending.try_result().unwrap().unwrap_err().is_cancelled());
    assert_eq!(reactor.source_count(), before);
}

#[test]
fn forwarding_a_clients_request() {
    let Some(nsd) = start_nsd() else { return };
    let relay = Relay::start(nsd.addr());
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[relay.addr])).with_cache(10);
    let mut request = Message::new(
        4321,
        twistor_dns::wire::op::MessageType::Query,
        twistor_dns::wire::op::OpCode::Query,
    );
    request.metadata.recursion_desired = true;
    request.add_query(twistor_dns::wire::op::Query::query(
        Name::from_ascii("Www.Example.Test.").unwrap(),
        RecordType::AAAA,
    ));
    request.set_edns(twistor_dns::wire::op::Edns::new());
    for expected_queries in [1, 1] {
        let response = run(&reactor, resolver.forward(&request)).unwrap();
        assert_eq!(response.metadata.id, 4321);
        assert_eq!(
            response.queries[0].name().to_ascii(),
            "Www.Example.Test.",
            "the client's question, case and all"
        );
        assert_eq!(response.answers.len(), 1);
        assert!(response.edns.is_none(), "the forwarder adds its own OPT");
        assert_eq!(
            relay.queries(),
            expected_queries,
            "the second from the cache"
        );
    }
    // With the DO bit, the cache is bypassed and the bit goes upstream.
    request.edns.as_mut().unwrap().set_dnssec_ok(true);
    let response = run(&reactor, resolver.forward(&request)).unwrap();
    assert_eq!(response.metadata.id, 4321);
    assert_eq!(relay.queries(), 2);
    // NXDOMAIN comes back as a response, not a failure.
    request.queries[0].set_name(Name::from_ascii("nope.example.test.").unwrap());
    let response = run(&reactor, resolver.forward(&request)).unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn cancelling_a_forwarded_request_closes_its_socket() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let reactor = Reactor::new().unwrap();
    let resolver = Resolver::new(&reactor, config(&[silent.local_addr().unwrap()]));
    let before = reactor.source_count();
    for dnssec_ok in [false, true] {
        let mut request = Message::query();
        request.add_query(twistor_dns::wire::op::Query::query(
            Name::from_ascii("www.example.test.").unwrap(),
            RecordType::A,
        ));
        let mut edns = twistor_dns::wire::op::Edns::new();
        edns.set_dnssec_ok(dnssec_ok);
        request.set_edns(edns);
        let pending = resolver.forward(&request);
        assert!(reactor.source_count() > before);
        pending.cancel();
        assert!(pending.try_result().unwrap().unwrap_err().is_cancelled());
        assert_eq!(reactor.source_count(), before, "DO bit {dnssec_ok}");
    }
}
