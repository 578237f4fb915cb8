//! A twistor DNS server on its own thread, for tests that drive it with real clients.

#![allow(dead_code)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::Command;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use twistor::ReactorHandle;
use twistor_dns::proto::authority::Catalog;
use twistor_dns::proto::zone::Zone;
use twistor_dns::proto::zonefile::parse_zone_str;
use twistor_dns::server::{DnsServer, ServerOptions};
use twistor_dns::wire::rr::Name;

/// A zone with one of everything the tests ask for.
pub const EXAMPLE_ZONE: &str = r#"$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster (
                2026120301 ; serial
                7200       ; refresh
                900        ; retry
                1209600    ; expire
                300 )      ; negative TTL
        IN NS  ns1
        IN NS  ns2.elsewhere.test.
        IN MX  10 mail
ns1     IN A   192.0.2.1
www     IN A   192.0.2.10
        IN AAAA 2001:db8::10
mail    IN A   192.0.2.25
alias   IN CNAME www
text    IN TXT "hello world" "second string"
_sip._udp IN SRV 10 60 5060 sip
sip     IN A   192.0.2.50
*.wild  IN A   192.0.2.99
sub     IN NS  ns.sub
ns.sub  IN A   192.0.2.53
"#;

/// The reverse zone for 192.0.2.0/24.
pub const REVERSE_ZONE: &str = r#"$ORIGIN 2.0.192.in-addr.arpa.
$TTL 3600
@   IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 300
    IN NS  ns1.example.test.
10  IN PTR www.example.test.
"#;

/// A zone text with `count` TXT records of 100 bytes at `big.example.test.` appended:
/// several kilobytes, more than a UDP answer holds.
pub fn with_big_txt(zone: &str, count: usize) -> String {
    let mut text = zone.to_string();
    for i in 0..count {
        text.push_str(&format!("big IN TXT \"{i:03}{}\"\n", "x".repeat(97)));
    }
    text
}

/// Parses zone text into a zone.
pub fn zone(text: &str) -> Zone {
    Zone::new(parse_zone_str(text, "test zone", None).expect("zone parses")).expect("zone loads")
}

/// A server running on its own reactor thread; stopped when dropped.
pub struct Running {
    pub port: u16,
    handle: ReactorHandle,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.handle.call_from_thread(|r| r.stop());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a server on 127.0.0.1 (a port the system picks, UDP and TCP) answering from the
/// catalog `build` makes, with `options`.
pub fn serve(build: impl FnOnce() -> Catalog + Send + 'static, options: ServerOptions) -> Running {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let reactor = twistor::Reactor::new().expect("reactor");
        let catalog = Rc::new(RefCell::new(build()));
        let server = DnsServer::new(&reactor, catalog, options);
        let listening = server
            .listen("127.0.0.1:0".parse().unwrap())
            .expect("listen");
        tx.send((listening.port(), reactor.handle())).unwrap();
        reactor.run().expect("reactor runs");
        drop(listening);
    });
    let (port, handle) = rx.recv().expect("the server started");
    Running {
        port,
        handle,
        thread: Some(thread),
    }
}

/// The example zones in a catalog.
pub fn example_catalog() -> Catalog {
    let mut catalog = Catalog::new();
    catalog.insert(zone(&with_big_txt(EXAMPLE_ZONE, 40)));
    catalog.insert(zone(REVERSE_ZONE));
    catalog
}

/// Runs `program args…`, returns its standard output (fails the test if it cannot run).
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig` against the server, with `args` after `@127.0.0.1 -p PORT`.
pub fn dig(server: &Running, args: &[&str]) -> String {
    let port = server.port.to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+time=2", "+tries=1"];
    all.extend_from_slice(args);
    run("dig", &all)
}

/// `kdig` against the server.
pub fn kdig(server: &Running, args: &[&str]) -> String {
    let port = server.port.to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+time=2", "+retry=0"];
    all.extend_from_slice(args);
    run("kdig", &all)
}

/// A name from text.
pub fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a name")
}
