//! `twist dns` judged by Zonemaster (`zonemaster-cli`: 70 test cases): a
//! DNSSEC-signed zone served by two `twist dns` on 127.0.0.2:53 and 127.0.0.3:53, below a
//! lab root served by a third on 127.0.0.4:53 (the root hints given to Zonemaster, so it
//! never looks past this machine). Run both undelegated (`--ns`, `--ds`) and delegated
//! (through the lab root). Every finding at NOTICE or above must be in the allow-list.
//!
//! A long test: it binds port 53 (needs root) and runs only with `TWISTOR_LONG=1`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use twistor_testing::TempDir;
use twistor_testing::process::{ChildGuard, have};

/// The zone under test, before signing: sane SOA timers (Zonemaster's ZONE02–06), two name
/// servers with in-zone addresses, mail, a web name with IPv4 and IPv6, a CNAME.
const ZONE: &str = r#"$ORIGIN example.test.
$TTL 3600
@       IN SOA  ns1 hostmaster ( 2026120301 14400 3600 1209600 3600 )
        IN NS   ns1
        IN NS   ns2
        IN MX   10 mail
        IN MX   20 mail2
        IN TXT  "v=spf1 mx -all"
        IN A    192.0.2.80
ns1     IN A    127.0.0.2
ns2     IN A    127.0.0.3
mail    IN A    192.0.2.25
mail2   IN A    198.51.100.25
www     IN A    192.0.2.80
        IN AAAA 2001:db8::80
ftp     IN CNAME www
_dmarc  IN TXT  "v=DMARC1; p=reject"
"#;

/// The lab root: the delegation of example.test with glue and (appended) its DS, and PTR
/// records for the name servers' addresses (Zonemaster's ADDRESS02/03 look them up).
const ROOT: &str = r#"$ORIGIN .
$TTL 86400
@                       IN SOA a.root-lab. hostmaster.root-lab. ( 2026120301 1800 900 604800 86400 )
@                       IN NS  a.root-lab.
a.root-lab.             IN A   127.0.0.4
example.test.           IN NS  ns1.example.test.
example.test.           IN NS  ns2.example.test.
ns1.example.test.       IN A   127.0.0.2
ns2.example.test.       IN A   127.0.0.3
2.0.0.127.in-addr.arpa. IN PTR ns1.example.test.
3.0.0.127.in-addr.arpa. IN PTR ns2.example.test.
"#;

const HINTS: &str = ".           3600000 IN NS a.root-lab.\na.root-lab. 3600000 IN A  127.0.0.4\n";

/// Findings (module, tag) at NOTICE or above that a one-machine lab must produce.
const ALLOWED: &[(&str, &str)] = &[
    // ERROR: the name servers are on 127.0.0.0/8; no other address may be used here.
    ("ADDRESS", "NAMESERVER_IP_PRIVATE_NETWORK"),
    // NOTICE: no IPv6 name servers: there is one IPv6 loopback address, and we run --no-ipv6.
    ("DELEGATION", "NO_IPV6_NS_CHILD"),
    // NOTICE: the same, for the delegation's name servers.
    ("DELEGATION", "NO_IPV6_NS_DEL"),
];

/// One line of `zonemaster-cli --raw --show-module --show-testcase` output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    level: String,
    module: String,
    testcase: String,
    tag: String,
}

fn parse(output: &str) -> Vec<Finding> {
    const LEVELS: &[&str] = &["DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"];
    output
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _time = f.next()?;
            let level = f.next().filter(|l| LEVELS.contains(l))?;
            Some(Finding {
                level: level.to_string(),
                module: f.next()?.to_string(),
                testcase: f.next()?.to_string(),
                tag: f.next()?.to_string(),
            })
        })
        .collect()
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

/// `twist dns` on ADDRESS port 53 serving a zone file.
fn serve(address: &str, zone: &Path) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twist"));
    cmd.args(["dns", "--port", "53", "--interface", address, "--zone"])
        .arg(zone);
    let mut child = ChildGuard::spawn(cmd);
    let line = child.err_line_containing("DNS over UDP and TCP");
    assert!(line.ends_with(&format!("on {address} port 53")), "{line}");
    child
}

/// Runs zonemaster-cli with ARGS on example.test; returns its findings (DEBUG and up).
fn zonemaster(dir: &Path, args: &[&str]) -> Vec<Finding> {
    let mut all = vec![
        "--no-ipv6",
        "--hints",
        "hints",
        "--level",
        "DEBUG",
        "--raw",
        "--show-module",
        "--show-testcase",
        "--no-progress",
    ];
    all.extend_from_slice(args);
    all.push("example.test");
    let output = run("zonemaster-cli", &all, dir);
    eprintln!("zonemaster-cli {args:?}:");
    for line in output.lines().filter(|l| !l.contains(" DEBUG ")) {
        eprintln!("{line}");
    }
    parse(&output)
}

/// Checks one run: every test case of the profile ran, the expected passes are there, and
/// every finding at NOTICE or above is allow-listed.
fn check(findings: &[Finding]) {
    let cases: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f.tag == "TEST_CASE_START")
        .map(|f| f.testcase.as_str())
        .collect();
    // 70 with zonemaster-cli 5.0.2 (engine 4.6.2): BASIC00-02, then the 67 of the default
    // profile but BASIC03 (run only when BASIC02 fails); DNSSEC01-18 only for a signed zone.
    assert!(
        cases.len() >= 60,
        "only {} test cases ran: {cases:?}",
        cases.len()
    );
    for case in [
        "DNSSEC01",
        "DNSSEC02",
        "DNSSEC03",
        "DNSSEC10",
        "NAMESERVER10",
    ] {
        assert!(cases.contains(case), "{case} did not run: {cases:?}");
    }
    let tags: BTreeSet<&str> = findings.iter().map(|f| f.tag.as_str()).collect();
    for tag in [
        "ONE_SOA_SERIAL",
        "ARE_AUTHORITATIVE",
        "EDNS0_SUPPORT",
        "NO_RECURSOR",
        "AXFR_FAILURE",
        "QNAME_CASE_SENSITIVE",
        "CASE_QUERIES_RESULTS_OK",
        "NAMESERVERS_IP_WITH_REVERSE",
        "DS10_HAS_NSEC3",
        "ALGORITHM_OK",
    ] {
        assert!(tags.contains(tag), "no {tag}");
    }
    let bad: Vec<&Finding> = findings
        .iter()
        .filter(|f| ["NOTICE", "WARNING", "ERROR", "CRITICAL"].contains(&f.level.as_str()))
        .filter(|f| {
            !ALLOWED
                .iter()
                .any(|(module, tag)| f.module == *module && f.tag == *tag)
        })
        .collect();
    assert!(bad.is_empty(), "findings not allow-listed: {bad:#?}");
}

#[test]
fn zonemaster_finds_nothing_wrong_with_a_signed_zone() {
    if std::env::var("TWISTOR_LONG").as_deref() != Ok("1") {
        eprintln!("skipped: a long test (TWISTOR_LONG=1 runs it)");
        return;
    }
    if !have("zonemaster-cli", &["--version"])
        || !have("dnssec-keygen", &["-V"])
        || !have("dnssec-signzone", &["-V"])
    {
        return;
    }
    let dir = TempDir::new("twist-zonemaster");
    let path = dir.path();
    dir.write("hints", HINTS);
    // Sign the zone: ECDSA P-256 KSK and ZSK, NSEC3 without salt.
    let mut zone = ZONE.to_string();
    for flags in [&["-f", "KSK"][..], &[]] {
        let mut args = vec!["-q", "-a", "ECDSAP256SHA256", "-n", "ZONE"];
        args.extend_from_slice(flags);
        args.push("example.test");
        let key = run("dnssec-keygen", &args, path);
        zone.push_str(&format!("$INCLUDE {}.key\n", key.trim()));
    }
    dir.write("example.zone", zone);
    run(
        "dnssec-signzone",
        &[
            "-q",
            "-S",
            "-K",
            ".",
            "-3",
            "-",
            "-o",
            "example.test",
            "-f",
            "example.zone.signed",
            "example.zone",
        ],
        path,
    );
    let dsset = std::fs::read_to_string(dir.join("dsset-example.test.")).unwrap();
    // "example.test. IN DS 61040 13 2 3F46…A144A661499 BBA032AE"
    let ds: Vec<&str> = dsset.split_whitespace().skip(3).collect();
    assert!(ds.len() >= 4, "{dsset}");
    let ds_arg = format!("{},{},{},{}", ds[0], ds[1], ds[2], ds[3..].concat());
    let root = dir.write("root.zone", format!("{ROOT}{dsset}"));

    let signed = dir.join("example.zone.signed");
    let _root = serve("127.0.0.4", &root);
    let _ns1 = serve("127.0.0.2", &signed);
    let _ns2 = serve("127.0.0.3", &signed);

    // Undelegated: the name servers and DS given on the command line.
    check(&zonemaster(
        path,
        &[
            "--ns",
            "ns1.example.test/127.0.0.2",
            "--ns",
            "ns2.example.test/127.0.0.3",
            "--ds",
            &ds_arg,
        ],
    ));
    // Delegated: found through the lab root.
    check(&zonemaster(path, &[]));
}

#[test]
fn parses_zonemaster_raw_lines() {
    let out = "   0.05 ERROR     ADDRESS      ADDRESS01      NAMESERVER_IP_PRIVATE_NETWORK   name=Loopback; ns_ip=127.0.0.2\n\
               Looks OK.\n   0.06 INFO      ADDRESS      ADDRESS02      NAMESERVERS_IP_WITH_REVERSE   \n";
    assert_eq!(
        parse(out),
        [
            Finding {
                level: "ERROR".into(),
                module: "ADDRESS".into(),
                testcase: "ADDRESS01".into(),
                tag: "NAMESERVER_IP_PRIVATE_NETWORK".into(),
            },
            Finding {
                level: "INFO".into(),
                module: "ADDRESS".into(),
                testcase: "ADDRESS02".into(),
                tag: "NAMESERVERS_IP_WITH_REVERSE".into(),
            },
        ]
    );
}
