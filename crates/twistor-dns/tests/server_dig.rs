//! The server against real clients: BIND's `dig` and Knot's `kdig` ask for every record
//! kind, negative answers, refusals, wildcards, delegations, truncation then TCP, EDNS and
//! zone transfers. One server per test binary (and one that allows transfers).

mod common;

use std::net::UdpSocket;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Running, dig, example_catalog, kdig, serve};
use twistor_dns::server::ServerOptions;

fn have_dig() -> bool {
    twistor_testing::process::have("dig", &["-v"])
}

fn have_kdig() -> bool {
    twistor_testing::process::have("kdig", &["--version"])
}

/// The shared server: the example zones, no rate limit, no transfers allowed.
fn server() -> &'static Running {
    static SERVER: OnceLock<Running> = OnceLock::new();
    SERVER.get_or_init(|| serve(example_catalog, options()))
}

fn options() -> ServerOptions {
    ServerOptions {
        rate_limit: 0,
        ..ServerOptions::default()
    }
}

/// The header's status (NOERROR, NXDOMAIN…).
fn status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in:\n{out}"))
}

/// The header's flags (`qr`, `aa`, `tc`…).
fn flags(out: &str) -> Vec<&str> {
    out.lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|l| l.split(';').next())
        .unwrap_or_else(|| panic!("no flags in:\n{out}"))
        .split_whitespace()
        .collect()
}

/// The records of one section (`ANSWER`, `AUTHORITY`, `ADDITIONAL`), whitespace-normalised.
fn section(out: &str, name: &str) -> Vec<String> {
    let header = format!(";; {name} SECTION:");
    out.lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn every_record_kind_answers_authoritatively() {
    if !have_dig() {
        return;
    }
    let s = server();
    for (qname, qtype, want) in [
        (
            "www.example.test",
            "A",
            "www.example.test. 3600 IN A 192.0.2.10",
        ),
        (
            "www.example.test",
            "AAAA",
            "www.example.test. 3600 IN AAAA 2001:db8::10",
        ),
        (
            "example.test",
            "MX",
            "example.test. 3600 IN MX 10 mail.example.test.",
        ),
        (
            "text.example.test",
            "TXT",
            "text.example.test. 3600 IN TXT \"hello world\" \"second string\"",
        ),
        (
            "_sip._udp.example.test",
            "SRV",
            "_sip._udp.example.test. 3600 IN SRV 10 60 5060 sip.example.test.",
        ),
        (
            "example.test",
            "NS",
            "example.test. 3600 IN NS ns1.example.test.",
        ),
        (
            "example.test",
            "SOA",
            "example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 2026120301 7200 900 1209600 300",
        ),
        (
            "alias.example.test",
            "CNAME",
            "alias.example.test. 3600 IN CNAME www.example.test.",
        ),
        (
            "10.2.0.192.in-addr.arpa",
            "PTR",
            "10.2.0.192.in-addr.arpa. 3600 IN PTR www.example.test.",
        ),
    ] {
        let out = dig(s, &[qname, qtype]);
        assert_eq!(status(&out), "NOERROR", "{qname} {qtype}:\n{out}");
        assert!(flags(&out).contains(&"aa"), "{qname} {qtype}:\n{out}");
        assert!(
            section(&out, "ANSWER").contains(&want.to_string()),
            "{qname} {qtype}:\n{out}"
        );
    }
}

#[test]
fn additional_records_and_cname_chasing() {
    if !have_dig() {
        return;
    }
    let s = server();
    let out = dig(s, &["example.test", "MX"]);
    assert!(
        section(&out, "ADDITIONAL")
            .contains(&"mail.example.test. 3600 IN A 192.0.2.25".to_string()),
        "{out}"
    );
    // A CNAME is followed within the zone: the alias, then the target's address.
    let out = dig(s, &["alias.example.test", "A"]);
    assert_eq!(
        section(&out, "ANSWER"),
        [
            "alias.example.test. 3600 IN CNAME www.example.test.",
            "www.example.test. 3600 IN A 192.0.2.10"
        ],
        "{out}"
    );
}

#[test]
fn nxdomain_and_nodata_carry_the_soa_and_outside_names_are_refused() {
    if !have_dig() {
        return;
    }
    let s = server();
    let out = dig(s, &["nope.example.test", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert!(flags(&out).contains(&"aa"), "{out}");
    let authority = section(&out, "AUTHORITY");
    assert!(
        authority.len() == 1 && authority[0].contains("IN SOA ns1.example.test."),
        "{out}"
    );
    // RFC 2308: the negative TTL is min(SOA TTL, SOA minimum).
    assert!(
        authority[0].starts_with("example.test. 300 IN SOA"),
        "{out}"
    );
    let out = dig(s, &["www.example.test", "MX"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(section(&out, "ANSWER").is_empty(), "{out}");
    assert!(section(&out, "AUTHORITY")[0].contains("IN SOA"), "{out}");
    let out = dig(s, &["www.example.org", "A"]);
    assert_eq!(status(&out), "REFUSED", "{out}");
}

#[test]
fn wildcards_and_delegations() {
    if !have_dig() {
        return;
    }
    let s = server();
    let out = dig(s, &["anything.wild.example.test", "A"]);
    assert_eq!(
        section(&out, "ANSWER"),
        ["anything.wild.example.test. 3600 IN A 192.0.2.99"],
        "{out}"
    );
    let out = dig(s, &["host.sub.example.test", "A"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(
        !flags(&out).contains(&"aa"),
        "a referral is not authoritative:\n{out}"
    );
    assert!(section(&out, "ANSWER").is_empty(), "{out}");
    assert_eq!(
        section(&out, "AUTHORITY"),
        ["sub.example.test. 3600 IN NS ns.sub.example.test."],
        "{out}"
    );
    assert!(
        section(&out, "ADDITIONAL")
            .contains(&"ns.sub.example.test. 3600 IN A 192.0.2.53".to_string()),
        "glue:\n{out}"
    );
}

#[test]
fn the_question_keeps_its_case() {
    if !have_dig() {
        return;
    }
    let out = dig(server(), &["WwW.ExAmPlE.TeSt", "A"]);
    assert!(out.contains(";WwW.ExAmPlE.TeSt.\t\tIN\tA"), "{out}");
    assert_eq!(status(&out), "NOERROR", "{out}");
}

#[test]
fn a_big_answer_is_truncated_over_udp_and_whole_over_tcp() {
    if !have_dig() {
        return;
    }
    let s = server();
    let out = dig(s, &["+ignore", "+bufsize=1232", "big.example.test", "TXT"]);
    assert!(flags(&out).contains(&"tc"), "{out}");
    // Without +ignore, dig retries over TCP and gets every record.
    let out = dig(s, &["big.example.test", "TXT"]);
    assert!(!flags(&out).contains(&"tc"), "{out}");
    assert_eq!(section(&out, "ANSWER").len(), 40, "{out}");
    // No EDNS: 512 bytes at most.
    let out = dig(s, &["+ignore", "+noedns", "big.example.test", "TXT"]);
    assert!(flags(&out).contains(&"tc"), "{out}");
    assert!(out.contains("MSG SIZE  rcvd: "), "{out}");
    let size: usize = out
        .split("MSG SIZE  rcvd: ")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    assert!(size <= 512, "{size} bytes without EDNS:\n{out}");
}

#[test]
fn edns_is_echoed_and_unknown_versions_get_badvers() {
    if !have_dig() {
        return;
    }
    let s = server();
    let out = dig(s, &["+edns=0", "www.example.test", "A"]);
    assert!(out.contains("; EDNS: version: 0"), "{out}");
    let out = dig(
        s,
        &["+edns=1", "+noednsnegotiation", "www.example.test", "A"],
    );
    assert_eq!(status(&out), "BADVERS", "{out}");
    let out = dig(s, &["+noedns", "www.example.test", "A"]);
    assert!(!out.contains("OPT PSEUDOSECTION"), "{out}");
}

#[test]
fn tcp_carries_several_queries_per_connection() {
    if !have_kdig() {
        return;
    }
    // kdig sends each query on its own connection; dig's +keepopen sends both on one.
    if !have_dig() {
        return;
    }
    let out = dig(
        server(),
        &[
            "+tcp",
            "+keepopen",
            "www.example.test",
            "A",
            "mail.example.test",
            "A",
        ],
    );
    assert!(
        out.contains("192.0.2.10") && out.contains("192.0.2.25"),
        "{out}"
    );
}

#[test]
fn kdig_agrees() {
    if !have_kdig() {
        return;
    }
    let s = server();
    for (args, want) in [
        (vec!["www.example.test", "AAAA"], "2001:db8::10"),
        (vec!["+tcp", "example.test", "MX"], "10 mail.example.test."),
        (
            vec!["_sip._udp.example.test", "SRV"],
            "10 60 5060 sip.example.test.",
        ),
        (vec!["nope.example.test", "A"], "NXDOMAIN"),
        (vec!["www.example.org", "A"], "REFUSED"),
    ] {
        let out = kdig(s, &args);
        assert!(out.contains(want), "{args:?}:\n{out}");
    }
}

#[test]
fn axfr_is_refused_unless_allowed() {
    if !have_dig() {
        return;
    }
    let out = dig(server(), &["example.test", "AXFR"]);
    assert!(out.contains("Transfer failed"), "{out}");
    let allowed = serve(
        || {
            let mut catalog = example_catalog();
            catalog.allow_axfr("127.0.0.1/32".parse().unwrap());
            catalog
        },
        options(),
    );
    let out = dig(&allowed, &["example.test", "AXFR"]);
    let records: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    assert!(records.first().is_some_and(|r| r.contains("SOA")), "{out}");
    assert!(records.last().is_some_and(|r| r.contains("SOA")), "{out}");
    // Every record of the zone, the SOA twice: 15 + 40 big TXT + the closing SOA.
    assert!(records.len() >= 55, "{} records:\n{out}", records.len());
}

#[test]
fn garbage_is_survived() {
    if !have_dig() {
        return;
    }
    let s = server();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for junk in [&b""[..], b"\x00", b"\x12\x34\x01\x00\x00\x01", &[0xff; 600]] {
        socket.send_to(junk, s.addr()).unwrap();
    }
    // A header with a question count the message does not have: FORMERR, same id.
    socket
        .send_to(
            b"\xab\xcd\x01\x00\x00\x05\x00\x00\x00\x00\x00\x00\x03www",
            s.addr(),
        )
        .unwrap();
    let mut buf = [0u8; 512];
    let mut formerr = false;
    while let Ok(n) = socket.recv(&mut buf) {
        if n >= 4 && buf[..2] == [0xab, 0xcd] {
            formerr = buf[3] & 0x0f == 1;
        }
    }
    assert!(formerr, "no FORMERR for a short question section");
    let out = dig(s, &["www.example.test", "A"]);
    assert_eq!(status(&out), "NOERROR", "the server goes on:\n{out}");
}
