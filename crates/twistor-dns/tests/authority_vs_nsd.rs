//! The answering logic against NSD: the same zone files (one plain, one signed with NSEC and
//! one with NSEC3 by `ldns-signzone`) loaded by both, the same queries asked of both, and the replies compared:
//! response code, AA, answer and authority sections (as sets of records), and the additional
//! section of referrals (glue). NSD runs with `minimal-responses: yes`, as we answer.
//!
//! Our side is asked through `Catalog::respond_at` directly (no sockets); NSD over UDP.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use twistor_dns::proto::authority::{Catalog, Outcome, Request, Via};
use twistor_dns::proto::zone::Zone;
use twistor_dns::proto::zonefile::parse_zone_file;
use twistor_dns::wire::op::{Edns, Message, Query};
use twistor_dns::wire::rr::{Name, Record, RecordType};
use twistor_testing::TempDir;
use twistor_testing::dns::{Nsd, NsdZone};
use twistor_testing::process::have;

const PLAIN: &str = "$ORIGIN example.com.\n$TTL 300\n\
    @ SOA ns hostmaster 42 3600 600 86400 60\n@ NS ns\n@ MX 10 mail\nns A 192.0.2.1\n\
    mail A 192.0.2.2\nmail AAAA 2001:db8::2\nwww A 192.0.2.3\nalias CNAME www\nchain CNAME alias\n\
    out CNAME www.example.net.\n*.wild A 192.0.2.9\n*.wild TXT \"wild\"\nsub NS ns.sub\nsub NS ns.other.net.\n\
    ns.sub A 192.0.2.10\na.b.c TXT \"deep\"\n_sip._tcp SRV 0 0 5060 mail\n";

const SIGNED: &str = "$ORIGIN example.org.\n$TTL 300\n\
    @ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\n@ MX 10 mail\nns A 192.0.2.1\n\
    mail A 192.0.2.2\nwww A 192.0.2.3\nalias CNAME www\n*.wild A 192.0.2.9\nsub NS ns.sub\n\
    sub DS 12345 13 2 4D9A3C4F5E6B7A8C9D0E1F2A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E\n\
    ns.sub A 192.0.2.10\ninsecure NS ns.elsewhere.net.\na.b.c TXT \"deep\"\n";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Signs `file` for `origin` (NSEC, or NSEC3 with `nsec3`), giving `file.signed`.
fn sign(dir: &Path, origin: &str, file: &str, nsec3: bool) {
    let key = run(Command::new("ldns-keygen")
        .args(["-a", "ECDSAP256SHA256", "-k", origin])
        .current_dir(dir));
    let mut cmd = Command::new("ldns-signzone");
    if nsec3 {
        cmd.args(["-n", "-s", "cafe", "-t", "3"]);
    }
    run(cmd
        .args(["-e", "20400101000000", file, key.trim()])
        .current_dir(dir));
}

/// NSD answering minimally, as we do, from the zone files in `dir`, and allowing
/// transfers to 127.0.0.1.
fn start_nsd(dir: &Path, zones: &[(&str, &str)]) -> Option<Nsd> {
    let mut nsd = Nsd::on(IpAddr::V4(Ipv4Addr::LOCALHOST)).option("minimal-responses: yes");
    for (name, file) in zones {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        nsd = nsd.zone(NsdZone::primary(name, &text).with("provide-xfr: 127.0.0.1 NOKEY"));
    }
    nsd.start()
}

fn query(name: &str, rtype: RecordType, dnssec: bool, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(dnssec);
    m.set_edns(e);
    m.to_vec().unwrap()
}

fn ask_nsd(socket: &UdpSocket, nsd: SocketAddr, q: &[u8], deadline: Instant) -> Option<Message> {
    let mut buf = [0u8; 65_535];
    loop {
        socket.send_to(q, nsd).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let m = Message::from_vec(&buf[..n]).unwrap();
            if m.id == u16::from_be_bytes([q[0], q[1]]) {
                return Some(m);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
    }
}

fn set(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.name.to_lowercase(),
                r.ttl,
                r.record_type(),
                r.data
            )
        })
        .collect()
}

/// The records of an AXFR from NSD over TCP, until the second SOA.
fn axfr_from_nsd(nsd: SocketAddr, zone: &str) -> Vec<Record> {
    let mut conn = TcpStream::connect(nsd).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let q = query(zone, RecordType::AXFR, false, 7);
    conn.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q].concat())
        .unwrap();
    let mut records = Vec::new();
    let mut soas = 0;
    while soas < 2 {
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut msg).unwrap();
        let m = Message::from_vec(&msg).unwrap();
        assert!(!m.answers.is_empty(), "NSD refused the transfer of {zone}");
        for r in m.answers {
            soas += usize::from(r.record_type() == RecordType::SOA);
            records.push(r);
        }
    }
    records
}

#[test]
fn same_answers_as_nsd() {
    if !have("nsd", &["-v"]) || !have("ldns-signzone", &["-v"]) {
        return;
    }
    let dir = TempDir::new("dns-vs-nsd");
    std::fs::write(dir.path().join("com.zone"), PLAIN).unwrap();
    std::fs::write(dir.path().join("org.zone"), SIGNED).unwrap();
    sign(dir.path(), "example.org", "org.zone", false);
    let info = SIGNED.replace("example.org.", "example.info.");
    std::fs::write(dir.path().join("info.zone"), info).unwrap();
    sign(dir.path(), "example.info", "info.zone", true);

    let zones = [
        ("example.com.", "com.zone"),
        ("example.org.", "org.zone.signed"),
        ("example.info.", "info.zone.signed"),
    ];
    let mut catalog = Catalog::new();
    for (origin, file) in zones {
        let origin = Name::from_ascii(origin).unwrap();
        let data = parse_zone_file(&dir.path().join(file), Some(&origin)).unwrap();
        catalog.insert(Zone::new(data).unwrap());
    }

    let Some(nsd) = start_nsd(dir.path(), &zones) else {
        return;
    };
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let signed_cases: &[(&str, RecordType)] = &[
        ("example.org.", RecordType::SOA),
        ("example.org.", RecordType::DNSKEY),
        ("www.example.org.", RecordType::A),
        ("www.example.org.", RecordType::TXT),
        ("nope.example.org.", RecordType::A),
        ("zzz.example.org.", RecordType::A),
        ("a.nope.example.org.", RecordType::A),
        ("alias.example.org.", RecordType::A),
        ("x.wild.example.org.", RecordType::A),
        ("x.y.wild.example.org.", RecordType::A),
        ("x.wild.example.org.", RecordType::TXT),
        ("host.sub.example.org.", RecordType::A),
        ("sub.example.org.", RecordType::DS),
        ("host.insecure.example.org.", RecordType::A),
        ("insecure.example.org.", RecordType::DS),
        ("b.c.example.org.", RecordType::A),
        ("x.b.c.example.org.", RecordType::A),
    ];
    let mut cases: Vec<(String, RecordType)> = Vec::new();
    for zone in ["example.org.", "example.info."] {
        for (name, rtype) in signed_cases {
            cases.push((name.replace("example.org.", zone), *rtype));
        }
    }
    cases.push(("www.example.org.".into(), RecordType::NSEC));
    cases.push(("mail.example.org.".into(), RecordType::RRSIG));
    let plain_cases: &[(&str, RecordType)] = &[
        ("example.com.", RecordType::SOA),
        ("example.com.", RecordType::NS),
        ("example.com.", RecordType::MX),
        ("www.example.com.", RecordType::A),
        ("www.example.com.", RecordType::AAAA),
        ("nope.example.com.", RecordType::A),
        ("alias.example.com.", RecordType::A),
        ("chain.example.com.", RecordType::A),
        ("alias.example.com.", RecordType::CNAME),
        ("out.example.com.", RecordType::A),
        ("x.wild.example.com.", RecordType::A),
        ("x.y.wild.example.com.", RecordType::TXT),
        ("x.wild.example.com.", RecordType::MX),
        ("sub.example.com.", RecordType::A),
        ("host.sub.example.com.", RecordType::A),
        ("ns.sub.example.com.", RecordType::A),
        ("b.c.example.com.", RecordType::A),
        ("c.example.com.", RecordType::TXT),
        ("_sip._tcp.example.com.", RecordType::SRV),
    ];
    cases.extend(plain_cases.iter().map(|(n, t)| (n.to_string(), *t)));
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut nsec_proofs = 0;
    let mut nsec3_proofs = 0;
    let mut id = 100u16;
    for (name, rtype) in &cases {
        let (name, rtype) = (name.as_str(), *rtype);
        for dnssec in [false, true] {
            id += 1;
            let q = query(name, rtype, dnssec, id);
            let theirs = ask_nsd(
                &socket,
                nsd.addr(),
                &q,
                Instant::now() + Duration::from_secs(10),
            )
            .unwrap_or_else(|| panic!("NSD did not answer {name} {rtype}"));
            let Outcome::Reply(ours) = catalog.respond(&Request {
                message: &q,
                source: IpAddr::V4(Ipv4Addr::LOCALHOST),
                via: Via::Udp,
            }) else {
                panic!("no reply for {name} {rtype}");
            };
            let ours = Message::from_vec(&ours).unwrap();
            let what = format!("{name} {rtype} DO={dnssec}");
            compared += 1;
            if theirs
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::NSEC)
            {
                nsec_proofs += 1;
            }
            if theirs
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::NSEC3)
            {
                nsec3_proofs += 1;
            }
            let referral = !theirs.authoritative && theirs.answers.is_empty();
            let mut diffs = Vec::new();
            if ours.response_code != theirs.response_code {
                diffs.push(format!(
                    "rcode {} vs NSD {}",
                    ours.response_code, theirs.response_code
                ));
            }
            if ours.authoritative != theirs.authoritative {
                diffs.push(format!(
                    "AA {} vs NSD {}",
                    ours.authoritative, theirs.authoritative
                ));
            }
            let mut sections = vec![
                ("answer", set(&ours.answers), set(&theirs.answers)),
                (
                    "authority",
                    set(&ours.authorities),
                    set(&theirs.authorities),
                ),
            ];
            if referral {
                sections.push((
                    "additional",
                    set(&ours.additionals),
                    set(&theirs.additionals),
                ));
            }
            for (section, a, b) in sections {
                if a != b {
                    diffs.push(format!(
                        "{section}: only ours {:#?}, only NSD's {:#?}",
                        a.difference(&b).collect::<Vec<_>>(),
                        b.difference(&a).collect::<Vec<_>>()
                    ));
                }
            }
            if !diffs.is_empty() {
                failures.push(format!("{what}:\n  {}", diffs.join("\n  ")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(compared, cases.len() * 2);

    // Zone transfers: the same records, SOA first and last.
    catalog.allow_axfr("127.0.0.1/32".parse().unwrap());
    for zone in ["example.com.", "example.org.", "example.info."] {
        let theirs = axfr_from_nsd(nsd.addr(), zone);
        let Outcome::Stream(msgs) = catalog.respond(&Request {
            message: &query(zone, RecordType::AXFR, false, 8),
            source: IpAddr::V4(Ipv4Addr::LOCALHOST),
            via: Via::Tcp,
        }) else {
            panic!("no transfer of {zone}");
        };
        let ours: Vec<Record> = msgs
            .iter()
            .flat_map(|m| Message::from_vec(m).unwrap().answers)
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{zone}");
        assert_eq!(set(&ours), set(&theirs), "{zone}");
        for records in [&ours, &theirs] {
            assert_eq!(records.first().unwrap().record_type(), RecordType::SOA);
            assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);
        }
    }
    // The signed zone's negative answers were compared with their proofs.
    assert!(
        nsec_proofs >= 9,
        "only {nsec_proofs} replies with NSEC proofs"
    );
    assert!(
        nsec3_proofs >= 9,
        "only {nsec3_proofs} replies with NSEC3 proofs"
    );
    eprintln!(
        "{compared} replies identical to NSD's: {nsec_proofs} with NSEC proofs, {nsec3_proofs} with NSEC3 proofs"
    );
}
