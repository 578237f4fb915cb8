//! `twist dns` from the outside: serving a zone file to dig, command-line and zone-file
//! errors, a port in use, SIGTERM; a secondary of NSD, NSD as a secondary of ours; forwarding
//! to NSD with a cache; a hosts file.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;

use twistor_testing::TempDir;
use twistor_testing::dns::{Nsd, NsdZone};
use twistor_testing::process::{ChildGuard, have};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

const ZONE: &str = r#"$ORIGIN example.test.
$TTL 300
@     IN SOA ns1 hostmaster ( 7 3600 600 86400 60 )
      IN NS ns1
      IN MX 10 mail
ns1   IN A 192.0.2.1
www   IN A 192.0.2.10
mail  IN A 192.0.2.25
"#;

fn twist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_twist"))
}

/// Starts `twist dns --port 0 --interface 127.0.0.1` with more arguments; returns it and
/// its port (from its log).
fn start(args: &[&str]) -> (ChildGuard, u16) {
    let mut cmd = twist();
    cmd.args([
        "dns",
        "--port",
        "0",
        "--interface",
        "127.0.0.1",
        "--rate-limit",
        "0",
    ]);
    cmd.args(args);
    let mut child = ChildGuard::spawn(cmd);
    let line = child.err_line_containing("DNS over UDP and TCP");
    let port = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    (child, port)
}

/// `dig @127.0.0.1 -p PORT +short args…`, its output lines.
fn dig_short(port: u16, args: &[&str]) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+time=2",
            "+tries=2",
            "+short",
        ])
        .args(args)
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Full `dig` output.
fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn serves_a_zone_file_and_stops_on_sigterm() {
    if !have("dig", &["-v"]) {
        return;
    }
    let dir = TempDir::new("twist-dns");
    let zone = dir.write("example.test.zone", ZONE);
    let (mut child, port) = start(&["--zone", zone.to_str().unwrap()]);
    assert_eq!(dig_short(port, &["www.example.test", "A"]), ["192.0.2.10"]);
    assert_eq!(
        dig_short(port, &["+tcp", "example.test", "MX"]),
        ["10 mail.example.test."]
    );
    let out = dig(port, &["nope.example.test", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    // Outside names are refused: no --forward.
    let out = dig(port, &["example.org", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    child.signal(libc::SIGTERM);
    let (status, _) = child.wait();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_malformed_zone_file_exits_2_naming_file_and_line() {
    let dir = TempDir::new("twist-dns-bad");
    let zone = dir.write("bad.zone", format!("{ZONE}broken IN A 192.0.2.300\n"));
    let out = twist()
        .args(["dns", "--port", "0", "--zone", zone.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:9:", zone.display())), "{err}");
    let out = twist()
        .args(["dns", "--port", "0", "--zone", "/nonexistent/zone"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/zone"));
    for bad in [
        vec!["--allow-axfr", "nonsense"],
        vec!["--secondary", "example.test"],
        vec!["--secondary", "example.test@host.example:53"],
    ] {
        let out = twist().arg("dns").args(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("expected"), "{bad:?}: {err}");
    }
}

#[test]
fn a_port_in_use_exits_1_naming_the_address() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let out = twist()
        .args([
            "dns",
            "--interface",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn a_secondary_of_nsd_and_nsd_a_secondary_of_ours() {
    if !have("dig", &["-v"]) {
        return;
    }
    // NSD as the primary, allowing us to transfer.
    let Some(primary) = Nsd::start(
        LOCALHOST,
        &[NsdZone::primary("example.test", ZONE).with("provide-xfr: 127.0.0.1 NOKEY")],
    ) else {
        return;
    };
    let source = format!("example.test@{}", primary.addr());
    let (mut ours, port) = start(&["--secondary", &source, "--allow-axfr", "127.0.0.1/32"]);
    ours.err_line_containing("transferred example.test");
    assert_eq!(dig_short(port, &["www.example.test", "A"]), ["192.0.2.10"]);
    // NSD transfers the zone from us in turn.
    let Some(mut secondary) = Nsd::start(
        LOCALHOST,
        &[NsdZone {
            name: "example.test".into(),
            text: String::new(),
            options: vec![
                format!("request-xfr: AXFR 127.0.0.1@{port} NOKEY"),
                "allow-notify: 127.0.0.1 NOKEY".into(),
            ],
        }],
    ) else {
        return;
    };
    secondary.log_line_containing("serial 7");
    let out = dig(secondary.addr().port(), &["www.example.test", "A"]);
    assert!(out.contains("192.0.2.10") && out.contains(" aa"), "{out}");
}

#[test]
fn forwards_to_nsd_with_a_cache_and_answers_from_a_hosts_file() {
    if !have("dig", &["-v"]) {
        return;
    }
    let Some(upstream) = Nsd::start(LOCALHOST, &[NsdZone::primary("example.test", ZONE)]) else {
        return;
    };
    let dir = TempDir::new("twist-dns-hosts");
    let hosts = dir.write(
        "hosts",
        "192.0.2.77 printer.lan printer\n2001:db8::77 printer.lan\n",
    );
    let (_child, port) = start(&[
        "--forward",
        &upstream.addr().to_string(),
        "--cache",
        "--hosts",
        hosts.to_str().unwrap(),
    ]);
    let out = dig(port, &["www.example.test", "A"]);
    assert!(out.contains("192.0.2.10"), "{out}");
    assert!(out.contains(" ra"), "recursion available:\n{out}");
    assert!(
        !out.contains(" aa"),
        "a forwarded answer is not authoritative:\n{out}"
    );
    let out = dig(port, &["nope.example.test", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert_eq!(dig_short(port, &["printer.lan", "A"]), ["192.0.2.77"]);
    assert_eq!(dig_short(port, &["printer.lan", "AAAA"]), ["2001:db8::77"]);
    // The cache answers once the upstream is gone.
    drop(upstream);
    assert_eq!(dig_short(port, &["www.example.test", "A"]), ["192.0.2.10"]);
}

#[test]
fn transfers_go_to_tsig_signed_requests_and_bad_keys_are_usage_errors() {
    if !have("dig", &["-v"]) {
        return;
    }
    let dir = TempDir::new("twist-dns-tsig");
    let zone = dir.write("example.test.zone", ZONE);
    let key = "hmac-sha256:transfer:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";
    let (_child, port) = start(&["--zone", zone.to_str().unwrap(), "--tsig-key", key]);
    let signed = dig(port, &["-y", key, "example.test", "AXFR"]);
    assert!(
        signed.contains("www.example.test.\t300\tIN\tA\t192.0.2.10"),
        "{signed}"
    );
    assert!(
        signed.contains("TSIG\thmac-sha256.") && !signed.contains("failed"),
        "{signed}"
    );
    let wrong = "hmac-sha256:transfer:d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmch";
    for args in [
        vec!["example.test", "AXFR"],
        vec!["-y", wrong, "example.test", "AXFR"],
    ] {
        let out = dig(port, &args);
        assert!(!out.contains("192.0.2.10"), "{args:?}:\n{out}");
    }
    for bad in ["transfer", "md5:transfer:c2VjcmV0", "transfer:not base64!"] {
        let out = twist()
            .args(["dns", "--port", "0", "--tsig-key", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("expected [ALGORITHM:]NAME"));
    }
}

#[test]
fn sighup_reloads_a_newer_serial_and_notifies_nsd_which_transfers_it() {
    if !have("dig", &["-v"]) || !have("nsd", &["-v"]) {
        return;
    }
    let dir = TempDir::new("twist-dns-notify");
    let zone = dir.write("example.test.zone", ZONE);
    let port = twistor_testing::dns::free_dns_port(LOCALHOST);
    // NSD is started second (it needs our port); it listens on a port picked now.
    let nsd_port = twistor_testing::dns::free_dns_port(LOCALHOST);
    let mut cmd = twist();
    cmd.args([
        "dns",
        "--interface",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]);
    cmd.args([
        "--zone",
        zone.to_str().unwrap(),
        "--allow-axfr",
        "127.0.0.1/32",
    ]);
    cmd.args(["--notify", &format!("127.0.0.1:{nsd_port}")]);
    let mut ours = ChildGuard::spawn(cmd);
    ours.err_line_containing("DNS over UDP and TCP");
    let Some(mut nsd) = Nsd::on(LOCALHOST)
        .port(nsd_port)
        .zone(NsdZone {
            name: "example.test".into(),
            text: String::new(),
            options: vec![
                format!("request-xfr: AXFR 127.0.0.1@{port} NOKEY"),
                "allow-notify: 127.0.0.1 NOKEY".into(),
            ],
        })
        .start()
    else {
        return;
    };
    nsd.log_line_containing("serial 7");
    // A new serial in the file; SIGHUP: reloaded, NOTIFY sent, NSD transfers it.
    std::fs::write(
        &zone,
        ZONE.replace("( 7 ", "( 8 ")
            .replace("192.0.2.10", "192.0.2.11"),
    )
    .unwrap();
    ours.signal(libc::SIGHUP);
    ours.err_line_containing("reloaded");
    ours.err_line_containing("acknowledged by");
    nsd.log_line_containing("updated to 8");
    // NSD's transfer daemon logs the new serial before its server processes have loaded
    // it: ask until they answer with it (each dig waits for its own answer).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer = dig_short(nsd.addr().port(), &["www.example.test", "A"]);
        if answer == ["192.0.2.11"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "NSD still answers {answer:?}"
        );
    }
    // An unchanged serial is not reloaded.
    std::fs::write(&zone, ZONE.replace("( 7 ", "( 8 ")).unwrap();
    ours.signal(libc::SIGHUP);
    ours.err_line_containing("is not newer than 8");
    assert_eq!(dig_short(port, &["www.example.test", "A"]), ["192.0.2.11"]);
}
