//! The zone-file parser on arbitrary text: it must never panic, and a zone it accepts must
//! build and answer lookups for every name in it without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use twistor_dns::proto::zone::Zone;
use twistor_dns::proto::zonefile::parse_zone_str;
use twistor_dns::wire::rr::{Name, RecordType};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let origin = Name::from_ascii("example.com.").unwrap();
    // With and without an origin given: the parser must cope with both.
    for given in [Some(&origin), None] {
        let Ok(parsed) = parse_zone_str(&text, "fuzz", given) else {
            continue;
        };
        let names: Vec<Name> = parsed.records.iter().map(|r| r.name.clone()).collect();
        let Ok(zone) = Zone::new(parsed) else {
            continue;
        };
        for name in &names {
            for qtype in [
                RecordType::A,
                RecordType::ANY,
                RecordType::RRSIG,
                RecordType::DS,
            ] {
                let lookup = zone.lookup(name, qtype);
                let _ = zone.nsec_proof(name, &lookup);
            }
            if let Ok(below) = name.prepend_label("nx") {
                let lookup = zone.lookup(&below, RecordType::A);
                let _ = zone.nsec_proof(&below, &lookup);
            }
        }
        assert_eq!(zone.axfr_records().count(), zone.len() + 1);
    }
});
