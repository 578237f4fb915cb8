//! The recursive resolver against a real hierarchy of NSD servers on loopback, all on one
//! port P (the OS picks it), each on its own address:
//!
//! - 127.0.0.2 serves the root `.`: `test.` → 127.0.0.3 (glue `ns.test.`); `loop1.` and
//!   `loop2.` delegated to each other's name servers without glue; `sink.` → 127.0.0.9.
//! - 127.0.0.3 serves `test.`: `example.test.` → `ns.example.test.` 127.0.0.4 (glue),
//!   `other.test.` → `ns.example.test.` (out of its bailiwick: resolved separately),
//!   `lame.test.` → four servers of which only the last works, `dead.test.` → the three
//!   others, `fan.test.` → twenty name servers under `sink.`, none reachable.
//! - 127.0.0.4 serves `example.test.`, `other.test.`, `lame.test.` and `moving.test.`.
//! - 127.0.0.5 serves `elsewhere.` (it REFUSEs questions about `lame.test.`) and
//!   `moving.test.`, which test. delegates to it (until a test moves it).
//! - Nothing listens on 127.0.0.9 (ICMP port unreachable: a fast failure).
//!
//! Each test starts its own hierarchy (NSD starts in about 50 ms) and stops it.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::rc::Rc;

use twistor::Reactor;
use twistor::defer::{Deferred, Failure, gather_results};
use twistor_dns::Error;
use twistor_dns::forward::{Forwarder, Upstream};
use twistor_dns::proto::authority::Catalog;
use twistor_dns::recursive::{Limits, Recursive};
use twistor_dns::server::{DnsServer, ServerOptions};
use twistor_dns::system::Hosts;
use twistor_dns::wire::op::{Message, Query, ResponseCode};
use twistor_dns::wire::rr::{Name, RData, RecordType};
use twistor_testing::dns::{Nsd, NsdZone, free_dns_port_on};
use twistor_testing::process::have;

const ROOT_ZONE: &str = "$ORIGIN .
$TTL 3600
.            SOA   rootns. hostmaster.rootns. 1 3600 600 86400 60
.            NS    rootns.
rootns.      A     127.0.0.2
test.        NS    ns.test.
ns.test.     A     127.0.0.3
loop1.       NS    ns.loop2.
loop2.       NS    ns.loop1.
sink.        NS    ns.sink.
ns.sink.     A     127.0.0.9
";

const TEST_ZONE: &str = "$ORIGIN test.
$TTL 3600
@            SOA   ns hostmaster 1 3600 600 86400 60
@            NS    ns
ns           A     127.0.0.3
example      NS    ns.example
ns.example   A     127.0.0.4
other        NS    ns.example.test.
lame         NS    ns1.lame
lame         NS    ns2.lame
lame         NS    ns3.lame
lame         NS    ns4.lame
ns1.lame     A     127.0.0.9
ns2.lame     A     127.0.0.5
ns3.lame     A     127.0.0.3
ns4.lame     A     127.0.0.4
dead         NS    ns1.lame
dead         NS    ns2.lame
dead         NS    ns3.lame
";

const EXAMPLE_ZONE: &str = "$ORIGIN example.test.
$TTL 300
@            SOA   ns hostmaster 1 3600 600 86400 30
@            NS    ns
ns           A     127.0.0.4
www          A     192.0.2.10
www          AAAA  2001:db8::10
@            MX    10 mail
mail         A     192.0.2.25
alias        CNAME www.other.test.
chain        CNAME alias
dangling     CNAME nowhere.other.test.
loopa        CNAME loopb.other.test.
a.ent        A     192.0.2.40
";

/// Twelve 200-byte strings: about 2.5 KB, beyond the 1232-byte EDNS buffer (so TCP).
fn big_txt() -> String {
    (0..12)
        .map(|i| format!("big TXT \"{}{i:03}\"\n", "x".repeat(200)))
        .collect()
}

const OTHER_ZONE: &str = "$ORIGIN other.test.
$TTL 300
@            SOA   ns.example.test. hostmaster.example.test. 1 3600 600 86400 30
@            NS    ns.example.test.
www          A     192.0.2.20
loopb        CNAME loopa.example.test.
";

const LAME_ZONE: &str = "$ORIGIN lame.test.
$TTL 300
@            SOA   ns4 hostmaster 1 3600 600 86400 30
@            NS    ns1
@            NS    ns2
@            NS    ns3
@            NS    ns4
ns1          A     127.0.0.9
ns2          A     127.0.0.5
ns3          A     127.0.0.3
ns4          A     127.0.0.4
www          A     192.0.2.30
";

const ELSEWHERE_ZONE: &str = "$ORIGIN elsewhere.
$TTL 300
@            SOA   ns hostmaster 1 3600 600 86400 30
@            NS    ns
ns           A     127.0.0.5
";

/// The four NSD servers, sharing a port.
struct Hierarchy {
    /// 127.0.0.2, .3, .4 and .5, in order; `None` once stopped.
    servers: Vec<Option<Nsd>>,
    port: u16,
}

impl Hierarchy {
    fn start() -> Option<Hierarchy> {
        if !Nsd::installed() {
            return None;
        }
        let example_zone = format!("{EXAMPLE_ZONE}{}", big_txt());
        let servers: [(u8, Vec<NsdZone>); 4] = [
            (2, vec![NsdZone::primary(".", ROOT_ZONE)]),
            (3, vec![NsdZone::primary("test", &test_zone(5))]),
            (
                4,
                vec![
                    NsdZone::primary("example.test", &example_zone),
                    NsdZone::primary("other.test", OTHER_ZONE),
                    NsdZone::primary("lame.test", LAME_ZONE),
                    NsdZone::primary("moving.test", &moving_zone(4)),
                ],
            ),
            (
                5,
                vec![
                    NsdZone::primary("elsewhere", ELSEWHERE_ZONE),
                    NsdZone::primary("moving.test", &moving_zone(5)),
                ],
            ),
        ];
        let ips: Vec<IpAddr> = servers
            .iter()
            .map(|(last, _)| IpAddr::from([127, 0, 0, *last]))
            .collect();
        // Another test (or program) may take the port between our probe and NSD's bind:
        // start again on another.
        let mut why = String::new();
        for _ in 0..5 {
            let port = free_dns_port_on(&ips);
            let started: Result<Vec<Option<Nsd>>, String> = servers
                .iter()
                .zip(&ips)
                .map(|((_, zones), ip)| Nsd::on(*ip).port(port).zones(zones).try_start().map(Some))
                .collect();
            match started {
                Ok(servers) => return Some(Hierarchy { servers, port }),
                Err(log) => why = log,
            }
        }
        panic!("NSD did not start on five ports: {why}");
    }

    /// Stops the server on 127.0.0.`last`.
    fn stop(&mut self, last: u8) {
        self.servers[usize::from(last - 2)] = None;
    }

    /// Rewrites test.'s zone so that `moving.test.` is served from 127.0.0.`last`, and has
    /// its server reload it.
    fn move_zone(&mut self, last: u8) {
        let Some(nsd) = self.servers[1].as_mut() else {
            panic!("test.'s server is stopped");
        };
        nsd.reload_zone("test", &test_zone(last));
        // The old server process may answer a little longer, sharing the socket with the
        // new one: wait until twenty answers in a row carry the new glue.
        let ask = UdpSocket::bind("127.0.0.1:0").unwrap();
        ask.set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        let want = IpAddr::from([127, 0, 0, last]);
        let mut in_a_row = 0;
        for _ in 0..500 {
            let query = request("www.moving.test.", RecordType::A).to_vec().unwrap();
            ask.send_to(&query, (IpAddr::from([127, 0, 0, 3]), self.port))
                .unwrap();
            let mut buf = [0u8; 4096];
            let Ok(n) = ask.recv(&mut buf) else { continue };
            let Ok(reply) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let new = reply
                .additionals
                .iter()
                .any(|r| matches!(&r.data, RData::A(a) if IpAddr::V4(a.0) == want));
            in_a_row = if new { in_a_row + 1 } else { 0 };
            if in_a_row == 20 {
                return;
            }
        }
        panic!("test.'s server still serves the old delegation");
    }

    fn resolver(&self, reactor: &Reactor) -> Recursive {
        Recursive::new(reactor, vec![SocketAddr::from(([127, 0, 0, 2], self.port))])
            .with_port(self.port)
    }
}

/// `moving.test.`'s zone as served from 127.0.0.`last`.
fn moving_zone(last: u8) -> String {
    format!(
        "$ORIGIN moving.test.
$TTL 300
@            SOA   ns hostmaster 1 3600 600 86400 30
@            NS    ns
ns           A     127.0.0.{last}
www          A     192.0.2.50
www2         A     192.0.2.51
"
    )
}

/// test.'s zone, delegating `fan.test.` to twenty servers under `sink.` and
/// `moving.test.` to 127.0.0.`last`.
fn test_zone(last: u8) -> String {
    let mut zone = String::from(TEST_ZONE);
    for i in 0..20 {
        zone.push_str(&format!("fan NS ns{i}.sink.\n"));
    }
    zone.push_str(&format!(
        "moving NS ns.moving\nns.moving A 127.0.0.{last}\n"
    ));
    zone
}

fn request(name: &str, record_type: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    m
}

fn run<T: 'static>(reactor: &Reactor, d: Deferred<T>) -> Result<T, Failure> {
    reactor.run_until(d).expect("the reactor ran")
}

fn resolve(reactor: &Reactor, r: &Recursive, name: &str, record_type: RecordType) -> Message {
    let asked = request(name, record_type);
    let response =
        run(reactor, r.resolve(&asked)).unwrap_or_else(|f| panic!("{name} {record_type}: {f}"));
    assert_eq!(response.metadata.id, 4242);
    assert_eq!(response.queries, asked.queries);
    assert!(response.metadata.recursion_available);
    assert!(response.edns.is_none());
    response
}

fn failure(reactor: &Reactor, r: &Recursive, name: &str, record_type: RecordType) -> Error {
    let failure = run(reactor, r.resolve(&request(name, record_type)))
        .err()
        .unwrap_or_else(|| panic!("{name} {record_type} resolved"));
    failure
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a DNS error: {failure}"))
        .clone()
}

/// The answer section as `owner type data` lines.
fn answers(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

#[test]
fn answers_from_the_root_down() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    let r = h.resolver(&reactor);

    let m = resolve(&reactor, &r, "www.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&m), ["www.example.test. A 192.0.2.10"]);
    // The root, test., example.test.
    assert_eq!(r.queries_sent(), 3);

    // The answer comes in the case asked.
    let m = resolve(&reactor, &r, "WWW.Example.TEST", RecordType::AAAA);
    assert_eq!(answers(&m), ["WWW.Example.TEST. AAAA 2001:db8::10"]);
    let m = resolve(&reactor, &r, "example.test.", RecordType::MX);
    assert_eq!(answers(&m), ["example.test. MX 10 mail.example.test."]);
    // The delegation to example.test. was remembered: one query each.
    assert_eq!(r.queries_sent(), 5);
    // Too big for UDP: the same server again over TCP (one exchange).
    let m = resolve(&reactor, &r, "big.example.test.", RecordType::TXT);
    assert_eq!(m.answers.len(), 12);
    assert_eq!(r.queries_sent(), 6);
    assert!(r.delegations_len() >= 2);
}

#[test]
fn name_servers_without_glue_are_resolved_and_cnames_followed_across_zones() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    let r = h.resolver(&reactor);

    // other.test. is served by ns.example.test., whose address test. may not vouch for
    // (it is outside other.test.): taking test.'s address for it would take 3 queries,
    // not 5.
    let m = resolve(&reactor, &r, "www.other.test.", RecordType::A);
    assert_eq!(answers(&m), ["www.other.test. A 192.0.2.20"]);
    // root, test. (referral to other.test.), then ns.example.test. A (test., example.test.),
    // then other.test.
    assert_eq!(r.queries_sent(), 5);

    let m = resolve(&reactor, &r, "chain.example.test.", RecordType::A);
    assert_eq!(
        answers(&m),
        [
            "chain.example.test. CNAME alias.example.test.",
            "alias.example.test. CNAME www.other.test.",
            "www.other.test. A 192.0.2.20",
        ]
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);

    // Asking for the CNAME itself does not follow it.
    let m = resolve(&reactor, &r, "alias.example.test.", RecordType::CNAME);
    assert_eq!(answers(&m), ["alias.example.test. CNAME www.other.test."]);

    // A chain into a name that does not exist: NXDOMAIN, with the chain and the SOA of
    // the zone that says so.
    let m = resolve(&reactor, &r, "dangling.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        answers(&m),
        ["dangling.example.test. CNAME nowhere.other.test."]
    );
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(
        m.authorities[0].name,
        Name::from_ascii("other.test.").unwrap()
    );

    // A loop across two zones fails.
    assert!(matches!(
        failure(&reactor, &r, "loopa.example.test.", RecordType::A),
        Error::Recursion { .. }
    ));
}

#[test]
fn nxdomain_and_nodata_come_with_the_soa() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    let r = h.resolver(&reactor);

    let m = resolve(&reactor, &r, "nowhere.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    let [soa] = m.authorities.as_slice() else {
        panic!("not one SOA: {:?}", m.authorities);
    };
    assert_eq!(soa.name, Name::from_ascii("example.test.").unwrap());
    assert!(matches!(soa.data, RData::SOA(_)));

    let m = resolve(&reactor, &r, "www.example.test.", RecordType::MX);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);

    // DS records are asked of the parent, even with the child's servers known.
    let m = resolve(&reactor, &r, "example.test.", RecordType::DS);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].name, Name::from_ascii("test.").unwrap());

    // A name the root says does not exist.
    let m = resolve(&reactor, &r, "nowhere.invalid.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].name, Name::root());
}

#[test]
fn lame_servers_are_skipped() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    let mut limits = Limits::default();
    // Long enough that a slow machine cannot make the failure expire within the test.
    limits.failure_ttl = std::time::Duration::from_secs(300);
    let r = h.resolver(&reactor).with_limits(limits);

    // lame.test.'s servers in order: nothing listening, REFUSED, a referral back to
    // itself (the parent's server), and the real one.
    let m = resolve(&reactor, &r, "www.lame.test.", RecordType::A);
    assert_eq!(answers(&m), ["www.lame.test. A 192.0.2.30"]);
    assert_eq!(r.queries_sent(), 6, "root, test., then the four servers");
    // The failed servers are asked last from now on (there is no answer cache here).
    let m = resolve(&reactor, &r, "www.lame.test.", RecordType::A);
    assert_eq!(answers(&m), ["www.lame.test. A 192.0.2.30"]);
    let m = resolve(&reactor, &r, "nowhere.lame.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.queries_sent(), 8);
    // A zone whose every server is lame fails; asked again at once, it fails without a
    // query (RFC 9520).
    assert!(matches!(
        failure(&reactor, &r, "www.dead.test.", RecordType::A),
        Error::Recursion { .. }
    ));
    let after = r.queries_sent();
    assert!(after > 8);
    assert!(matches!(
        failure(&reactor, &r, "WWW.dead.test.", RecordType::A),
        Error::Recursion { .. }
    ));
    assert_eq!(r.queries_sent(), after);
}

#[test]
fn answers_and_delegations_are_cached() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    let r = h.resolver(&reactor).with_cache(100);

    resolve(&reactor, &r, "chain.example.test.", RecordType::A);
    let first = r.queries_sent();
    assert!(first >= 5, "{first} queries");
    // Again, in another case: no query at all.
    let m = resolve(&reactor, &r, "CHAIN.example.test.", RecordType::A);
    assert_eq!(answers(&m).len(), 3);
    assert_eq!(r.queries_sent(), first);
    // A negative answer is cached too.
    resolve(&reactor, &r, "nowhere.other.test.", RecordType::A);
    let after = r.queries_sent();
    assert_eq!(after, first + 1, "other.test.'s servers were known");
    let m = resolve(&reactor, &r, "nowhere.other.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.queries_sent(), after);
    assert!(r.cache_len() > 0);

    r.clear_cache();
    resolve(&reactor, &r, "www.example.test.", RecordType::A);
    assert_eq!(r.queries_sent(), after + 3);
}

#[test]
fn delegation_loops_and_fan_outs_end_within_the_budget() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    let r = h.resolver(&reactor);

    // loop1. is served by ns.loop2., loop2. by ns.loop1.: no address can ever be found.
    assert!(matches!(
        failure(&reactor, &r, "www.loop1.", RecordType::A),
        Error::Recursion { .. }
    ));
    let loop_queries = r.queries_sent();
    assert!(loop_queries <= 30, "{loop_queries} queries");

    // fan.test. has twenty name servers under sink., whose server never answers: the
    // budget runs out before they are all tried.
    let err = failure(&reactor, &r, "www.fan.test.", RecordType::A);
    assert!(matches!(err, Error::Recursion { .. }), "{err}");
    let fan_queries = r.queries_sent() - loop_queries;
    assert_eq!(fan_queries, 30, "{err}");

    // A smaller budget is honoured too.
    let small = h.resolver(&reactor).with_limits({
        let mut limits = Limits::default();
        limits.max_queries = 4;
        limits
    });
    assert!(matches!(
        failure(&reactor, &small, "www.fan.test.", RecordType::A),
        Error::Recursion { .. }
    ));
    assert_eq!(small.queries_sent(), 4);
}

#[test]
fn resolutions_run_side_by_side() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    let r = h.resolver(&reactor).with_cache(100);
    let names = [
        "www.example.test.",
        "www.other.test.",
        "chain.example.test.",
        "www.lame.test.",
    ];
    // All asked at once, on one run of the reactor.
    let all = gather_results(
        names
            .iter()
            .map(|name| r.resolve(&request(name, RecordType::A))),
        true,
    );
    let responses = run(&reactor, all).unwrap_or_else(|f| panic!("{f}"));
    for (name, m) in names.iter().zip(responses) {
        let last = m.answers.last().expect("an answer");
        assert_eq!(last.record_type(), RecordType::A, "{name}");
        assert_eq!(m.queries[0].name(), &Name::from_ascii(name).unwrap());
    }
}

#[test]
fn identical_questions_share_one_resolution() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    // No answer cache: only the sharing saves queries.
    let r = h.resolver(&reactor);
    let mut first = request("www.example.test.", RecordType::A);
    first.metadata.id = 1;
    let mut second = request("WWW.EXAMPLE.TEST.", RecordType::A);
    second.metadata.id = 2;
    let cancelled = r.resolve(&request("www.example.test.", RecordType::A));
    let both = gather_results([r.resolve(&first), r.resolve(&second)], true);
    // One of three leaving does not stop the others' resolution.
    cancelled.cancel();
    let responses = run(&reactor, both).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(r.queries_sent(), 3);
    let ids: Vec<u16> = responses.iter().map(|m| m.metadata.id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(responses[1].queries, second.queries);
    assert_eq!(answers(&responses[1]).len(), 1);
    assert!(run(&reactor, cancelled).unwrap_err().is_cancelled());
}

#[test]
fn qname_minimisation_asks_one_label_at_a_time() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    let on = h.resolver(&reactor);
    let off = h.resolver(&reactor).with_qname_minimisation(false);
    let cost = |r: &Recursive, name: &str| {
        let before = r.queries_sent();
        let m = resolve(&reactor, r, name, RecordType::A);
        (
            m.metadata.response_code,
            answers(&m),
            r.queries_sent() - before,
        )
    };
    // The root hears "test.", test. hears "example.test.": as many queries either way.
    let (code, records, queries) = cost(&on, "www.example.test.");
    assert_eq!((code, queries), (ResponseCode::NoError, 3));
    assert_eq!(records, ["www.example.test. A 192.0.2.10"]);
    assert_eq!(cost(&off, "www.example.test.").2, 3);
    // An empty non-terminal (ent.example.test.) costs one more question.
    let (code, records, queries) = cost(&on, "a.ent.example.test.");
    assert_eq!((code, queries), (ResponseCode::NoError, 2));
    assert_eq!(records, ["a.ent.example.test. A 192.0.2.40"]);
    assert_eq!(cost(&off, "a.ent.example.test.").2, 1);
    // An NXDOMAIN for a shortened name is checked with the whole name (relaxed mode).
    let (code, _, queries) = cost(&on, "x.y.nowhere.example.test.");
    assert_eq!((code, queries), (ResponseCode::NXDomain, 2));
    assert_eq!(cost(&off, "x.y.nowhere.example.test.").2, 1);
    // Sub-resolutions and chains minimise too.
    let (_, records, _) = cost(&on, "chain.example.test.");
    assert_eq!(records.len(), 3);
}

#[test]
fn a_remembered_delegation_that_fails_is_asked_of_the_parent_again() {
    let Some(mut h) = Hierarchy::start() else {
        return;
    };
    let reactor = Reactor::new().unwrap();
    let r = h.resolver(&reactor);
    let m = resolve(&reactor, &r, "www.moving.test.", RecordType::A);
    assert_eq!(answers(&m), ["www.moving.test. A 192.0.2.50"]);
    // moving.test. moves from 127.0.0.5 to 127.0.0.4; the old server goes away, while
    // the resolver still remembers it.
    h.stop(5);
    h.move_zone(4);
    let before = r.queries_sent();
    let m = resolve(&reactor, &r, "www2.moving.test.", RecordType::A);
    assert_eq!(answers(&m), ["www2.moving.test. A 192.0.2.51"]);
    // The old server, test. (the new referral), the new server.
    assert_eq!(r.queries_sent() - before, 3);
}

#[test]
fn a_cancelled_resolution_stops_asking() {
    let Some(h) = Hierarchy::start() else { return };
    let reactor = Reactor::new().unwrap();
    let r = h.resolver(&reactor);
    let d = r.resolve(&request("www.example.test.", RecordType::A));
    d.cancel();
    assert!(run(&reactor, d).unwrap_err().is_cancelled());
    // Let the reactor run a whole resolution of another resolver meanwhile.
    let other = h.resolver(&reactor);
    resolve(&reactor, &other, "www.other.test.", RecordType::A);
    assert!(r.queries_sent() <= 1, "{} queries", r.queries_sent());
    // The cancelled question is not remembered as failed.
    resolve(&reactor, &r, "www.example.test.", RecordType::A);
}

/// `twist dns --recursive` in small: a twistor server with no zones of its own, answering
/// through the forwarder and this resolver, queried with dig.
#[test]
fn a_server_answers_dig_through_the_recursive_resolver() {
    let Some(h) = Hierarchy::start() else { return };
    if !have("dig", &["-v"]) {
        return;
    }
    let hint = SocketAddr::from(([127, 0, 0, 2], h.port));
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let reactor = Reactor::new().unwrap();
        let mut catalog = Catalog::new();
        catalog.set_recursion(true);
        let server = DnsServer::new(
            &reactor,
            Rc::new(RefCell::new(catalog)),
            ServerOptions::default(),
        );
        let resolver = Recursive::new(&reactor, vec![hint])
            .with_port(hint.port())
            .with_cache(100);
        let upstream: Rc<dyn Upstream> = Rc::new(resolver);
        server.set_recursor(Rc::new(Forwarder::new(Hosts::new(), Some(upstream))));
        let listening = server.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        tx.send((listening.port(), reactor.handle())).unwrap();
        reactor.run().unwrap();
    });
    let (port, handle) = rx.recv().unwrap();
    let dig = |args: &[&str]| {
        let port = port.to_string();
        let mut all = vec!["@127.0.0.1", "-p", &port, "+time=5", "+tries=1"];
        all.extend_from_slice(args);
        let out = Command::new("dig").args(&all).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = |out: &str| {
        out.split("status: ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or("")
            .to_string()
    };
    let out = dig(&["chain.example.test", "A"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(out.contains("flags: qr rd ra;"), "{out}");
    for line in [
        "chain.example.test.\t300\tIN\tCNAME\talias.example.test.",
        "alias.example.test.\t300\tIN\tCNAME\twww.other.test.",
        "www.other.test.\t\t300\tIN\tA\t192.0.2.20",
    ] {
        assert!(out.contains(line), "{line:?} not in {out}");
    }
    let out = dig(&["nowhere.other.test", "AAAA"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert!(out.contains("AUTHORITY: 1"), "{out}");
    assert!(
        out.contains("other.test.\t\t30\tIN\tSOA\tns.example.test."),
        "{out}"
    );
    let out = dig(&["www.loop1", "A"]);
    assert_eq!(status(&out), "SERVFAIL", "{out}");
    // Over TCP too, with the answer from the cache.
    let out = dig(&["+tcp", "chain.example.test", "A"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    handle.call_from_thread(|r| r.stop()).unwrap();
    thread.join().unwrap();
}
