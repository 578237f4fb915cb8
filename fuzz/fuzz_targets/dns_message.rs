//! The authoritative answering logic on arbitrary request bytes: it must never panic, every
//! reply must decode, and a UDP reply must fit the size the request allows.
//!
//! The first byte picks UDP or TCP (bit 0), the source address inside or outside the
//! transfer ACL (bit 1), and whether the request is first signed with the catalog's TSIG
//! key (bit 2), so that the verified-TSIG paths are reached too; the rest is the request.
//! Besides an unsigned zone, the catalog holds two pre-signed ones (fuzz/zones: NSEC, and
//! NSEC3 with opt-out, signed by dnssec-signzone), for the DNSSEC answers and proofs.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use twistor_dns::proto::authority::{Catalog, Outcome, Request, Via};
use twistor_dns::proto::zone::Zone;
use twistor_dns::proto::zonefile::parse_zone_str;
use twistor_dns::wire::op::Message;
use twistor_dns::wire::rr::rdata::tsig::TsigAlgorithm;
use twistor_dns::wire::rr::{Name, TSigner};

/// The time TSIG is checked against (any fixed time: runs must be reproducible).
const NOW: u64 = 1_700_000_000;

const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n\
    @ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\n@ MX 10 mail\nns A 192.0.2.1\n\
    mail A 192.0.2.2\nmail AAAA 2001:db8::2\nwww A 192.0.2.3\nalias CNAME www\n\
    loop1 CNAME loop2\nloop2 CNAME loop1\n*.wild A 192.0.2.9\nsub NS ns.sub\n\
    ns.sub A 192.0.2.10\nbig TXT \"0123456789012345678901234567890123456789\"\n\
    big TXT \"abcdefghijabcdefghijabcdefghijabcdefghij\"\n";

const NSEC_ZONE: &str = include_str!("../zones/nsec.example.signed");
const NSEC3_ZONE: &str = include_str!("../zones/nsec3.example.signed");

fn key() -> TSigner {
    TSigner::new(
        b"0123456789abcdef0123456789abcdef".to_vec(),
        TsigAlgorithm::HmacSha256,
        Name::from_ascii("xfr-key.").unwrap(),
        300,
    )
    .unwrap()
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut c = Catalog::new();
        for text in [ZONE, NSEC_ZONE, NSEC3_ZONE] {
            c.insert(Zone::new(parse_zone_str(text, "fuzz", None).unwrap()).unwrap());
        }
        c.add_tsig_key(key());
        c.allow_axfr("127.0.0.0/8".parse().unwrap());
        c.set_recursion(true);
        c
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, message)) = data.split_first() else {
        return;
    };
    let via = if first & 1 == 0 { Via::Udp } else { Via::Tcp };
    let source = if first & 2 == 0 {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))
    };
    let signed;
    let message = if first & 4 != 0 {
        let Ok(mut m) = Message::from_vec(message) else {
            return;
        };
        if m.finalize(&key(), NOW).is_err() {
            return;
        }
        let Ok(bytes) = m.to_vec() else {
            return;
        };
        signed = bytes;
        &signed[..]
    } else {
        message
    };
    let outcome = catalog().respond_at(
        &Request {
            message,
            source,
            via,
        },
        NOW,
    );
    let limit = match (via, Message::from_vec(message)) {
        (Via::Tcp, _) => 65_535,
        (Via::Udp, Ok(m)) => usize::from(m.edns.as_ref().map_or(512, |e| e.max_payload()).max(512)),
        (Via::Udp, Err(_)) => 512,
    };
    match outcome {
        Outcome::Reply(r) => {
            assert!(
                r.len() <= limit,
                "{} bytes over a limit of {limit}",
                r.len()
            );
            Message::from_vec(&r).expect("our reply decodes");
        }
        Outcome::Notified { reply, .. } => {
            Message::from_vec(&reply).expect("our reply decodes");
        }
        Outcome::Stream(msgs) => {
            assert_eq!(via, Via::Tcp);
            for m in msgs {
                assert!(m.len() <= 65_535);
                Message::from_vec(&m).expect("our transfer decodes");
            }
        }
        Outcome::Recurse(_) | Outcome::Drop => {}
    }
});
