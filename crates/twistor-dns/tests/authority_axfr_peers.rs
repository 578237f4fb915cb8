//! Zone transfers from `Catalog` checked by real clients: BIND's `dig` and Knot's `kdig`
//! transfer a zone big enough to span several messages, signed with TSIG, and verify every
//! message's signature; without the key (and outside the ACL) they are refused.
//!
//! The test serves TCP itself with std sockets on a thread (the reactor adapter is not
//! under test here): two-byte length, message, and the catalog's outcome written back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use twistor_dns::proto::authority::{Catalog, Outcome, Request, Via};
use twistor_dns::proto::zone::Zone;
use twistor_dns::proto::zonefile::parse_zone_str;
use twistor_dns::wire::rr::rdata::tsig::TsigAlgorithm;
use twistor_dns::wire::rr::{Name, TSigner};
use twistor_testing::process::have;

/// base64 of the 32-byte key below.
const SECRET_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const HOSTS: usize = 3000;

fn catalog() -> Catalog {
    let mut text = String::from(
        "$ORIGIN example.com.\n$TTL 300\n@ SOA ns hostmaster 7 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n",
    );
    for i in 0..HOSTS {
        text.push_str(&format!(
            "host{i} A 10.0.{}.{}\n  TXT \"host number {i} with some padding to fill the messages\"\n",
            i / 256,
            i % 256
        ));
    }
    let mut c = Catalog::new();
    c.insert(Zone::new(parse_zone_str(&text, "big", None).unwrap()).unwrap());
    let key = TSigner::new(
        SECRET.to_vec(),
        TsigAlgorithm::HmacSha256,
        Name::from_ascii("xfr-key.").unwrap(),
        300,
    )
    .unwrap();
    c.add_tsig_key(key);
    c
}

fn serve_one(catalog: &Catalog, mut conn: TcpStream) {
    let peer = conn.peer_addr().unwrap().ip();
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if conn.read_exact(&mut msg).is_err() {
            return;
        }
        let replies = match catalog.respond(&Request {
            message: &msg,
            source: peer,
            via: Via::Tcp,
        }) {
            Outcome::Reply(r) => vec![r],
            Outcome::Stream(s) => s,
            Outcome::Notified { reply, .. } => vec![reply],
            Outcome::Recurse(_) | Outcome::Drop => return,
        };
        for r in replies {
            let framed = [&(r.len() as u16).to_be_bytes()[..], &r].concat();
            if conn.write_all(&framed).is_err() {
                return;
            }
        }
    }
}

fn serve() -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    std::thread::spawn(move || {
        let catalog = catalog();
        for conn in listener.incoming() {
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(conn) = conn {
                serve_one(&catalog, conn);
            }
        }
    });
    (port, stop)
}

fn transfer(program: &str, port: u16, key: bool) -> String {
    let mut cmd = Command::new(program);
    cmd.arg("@127.0.0.1").arg("-p").arg(port.to_string());
    if key {
        cmd.arg("-y")
            .arg(format!("hmac-sha256:xfr-key:{SECRET_B64}"));
    }
    cmd.args(["example.com", "AXFR"]);
    if program == "kdig" {
        cmd.args(["+timeout=5", "+retry=0"]);
    } else {
        cmd.args(["+time=5", "+tries=1"]);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn records_in(output: &str) -> usize {
    output
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains("\tIN\t") || l.contains(" IN "))
        .filter(|l| !l.starts_with(';'))
        .count()
}

#[test]
fn dig_and_kdig_verify_signed_transfers() {
    let peers: Vec<&str> = [("dig", "-v"), ("kdig", "-V")]
        .into_iter()
        .filter(|(p, check)| have(p, &[check]))
        .map(|(p, _)| p)
        .collect();
    if peers.is_empty() {
        return;
    }
    let (port, stop) = serve();
    // SOA first and last, NS, glue, and two records per host.
    let expected = 2 + 2 + HOSTS * 2;
    for peer in peers {
        let refused = transfer(peer, port, false);
        assert!(
            // dig says "Transfer failed"; kdig names the code.
            refused.contains("REFUSED") || refused.contains("Transfer failed"),
            "{peer} without a key: {refused}"
        );
        let signed = transfer(peer, port, true);
        let lower = signed.to_lowercase();
        assert!(
            !lower.contains("tsig verify failure")
                && !lower.contains("couldn't verify")
                && !lower.contains("failed")
                && !lower.contains("badsig"),
            "{peer}: {}",
            &signed[signed.len().saturating_sub(2000)..]
        );
        assert_eq!(
            records_in(&signed),
            expected,
            "{peer} transferred {signed:.2000}"
        );
        // Each client printed the last message's TSIG after checking it.
        assert!(
            signed.contains("TSIG\thmac-sha256."),
            "{peer}: no TSIG shown"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(("127.0.0.1", port));
}
