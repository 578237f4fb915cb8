//! The answering hot path on a 100k-name zone: answers are right, and the rate is printed
//! (run with `--release --nocapture` for figures; nothing here depends on speed).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use twistor_dns::proto::authority::{Catalog, Outcome, Request, Via};
use twistor_dns::proto::zone::Zone;
use twistor_dns::proto::zonefile::parse_zone_str;
use twistor_dns::wire::op::{Edns, Message, Query, ResponseCode};
use twistor_dns::wire::rr::{Name, RecordType};

#[test]
fn answers_a_100k_name_zone() {
    let mut text = String::from(
        "$ORIGIN example.com.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n",
    );
    for i in 0..100_000u32 {
        text.push_str(&format!(
            "h{i} A 10.{}.{}.{}\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ));
    }
    let start = Instant::now();
    let zone = Zone::new(parse_zone_str(&text, "big", None).unwrap()).unwrap();
    let loaded = start.elapsed();
    let mut catalog = Catalog::new();
    catalog.insert(zone);

    let queries: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let mut m = Message::query();
            m.metadata.id = i as u16;
            let name = if i % 10 == 9 {
                format!("nx{i}.example.com.")
            } else {
                format!("h{}.example.com.", i * 97)
            };
            m.add_query(Query::query(
                Name::from_ascii(&name).unwrap(),
                RecordType::A,
            ));
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
            m.to_vec().unwrap()
        })
        .collect();
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let rounds = 50;
    let start = Instant::now();
    let mut answered = 0usize;
    for _ in 0..rounds {
        for (i, q) in queries.iter().enumerate() {
            let Outcome::Reply(r) = catalog.respond(&Request {
                message: q,
                source,
                via: Via::Udp,
            }) else {
                panic!("a reply");
            };
            if i == 0 || i == 9 {
                let m = Message::from_vec(&r).unwrap();
                let want = if i == 9 {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::NoError
                };
                assert_eq!(m.response_code, want);
            }
            answered += r.len().min(1);
        }
    }
    let spent = start.elapsed();
    assert_eq!(answered, rounds * queries.len());
    eprintln!(
        "load {loaded:?}; {} queries in {spent:?}: {:.0} ns/query",
        answered,
        spent.as_nanos() as f64 / answered as f64
    );
}
