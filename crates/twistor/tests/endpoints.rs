//! Endpoints: HostnameEndpoint's address racing on the deterministic clock with a fake
//! resolver, and real connections through endpoint strings.

mod common;

use common::Echo;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use twistor::defer::{Deferred, Failure};
use twistor::endpoints::{
    ClientEndpoint, HostnameEndpoint, Resolver, client_from_string, connect_protocol,
    server_from_string,
};
use twistor::protocol::{Protocol, factory};
use twistor::{Address, Error, Reactor, Transport};
use twistor_testing::{FakeConnector, MemoryReactor, StringTransport, TcpClientCall};

struct Idle;
impl Protocol for Idle {
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

/// Answers every lookup with fixed addresses (or a failure), when told to.
#[derive(Default)]
struct FakeResolver {
    pending: RefCell<Vec<Deferred<Vec<SocketAddr>>>>,
}

impl Resolver for FakeResolver {
    fn resolve(&self, _host: &str, _port: u16) -> Deferred<Vec<SocketAddr>> {
        let d = Deferred::new();
        self.pending.borrow_mut().push(d.clone());
        d
    }
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn setup() -> (MemoryReactor, Rc<FakeResolver>, HostnameEndpoint) {
    let reactor = MemoryReactor::new();
    let resolver = Rc::new(FakeResolver::default());
    let endpoint = HostnameEndpoint::with_parts(
        Rc::new(reactor.clone()),
        Rc::new(reactor.clone()),
        resolver.clone(),
        "example.com",
        443,
    );
    (reactor, resolver, endpoint)
}

fn hosts(reactor: &MemoryReactor) -> Vec<String> {
    reactor
        .tcp_clients()
        .iter()
        .map(|c| c.host.clone())
        .collect()
}

fn fake(call: &TcpClientCall) -> &FakeConnector {
    call.connector.downcast_ref::<FakeConnector>().unwrap()
}

fn refuse(call: &TcpClientCall) {
    call.factory.client_connection_failed(
        &call.connector,
        &Error::ConnectionRefused {
            addr: call.host.clone(),
        },
    );
}

#[test]
fn attempts_interleave_families_and_are_staggered() {
    let (reactor, resolver, endpoint) = setup();
    let d = endpoint.connect(factory(|_| Idle));
    assert!(
        reactor.tcp_clients().is_empty(),
        "nothing before the lookup answers"
    );
    resolver.pending.borrow()[0]
        .callback(addrs(&[
            "[2001:db8::1]:443",
            "[2001:db8::2]:443",
            "192.0.2.1:443",
        ]))
        .unwrap();
    assert_eq!(hosts(&reactor), ["2001:db8::1"]);
    reactor.advance(Duration::from_millis(249));
    assert_eq!(
        hosts(&reactor).len(),
        1,
        "the next waits for the stagger delay"
    );
    reactor.advance(Duration::from_millis(1));
    assert_eq!(
        hosts(&reactor),
        ["2001:db8::1", "192.0.2.1"],
        "then the other family"
    );
    reactor.advance(Duration::from_millis(250));
    assert_eq!(hosts(&reactor), ["2001:db8::1", "192.0.2.1", "2001:db8::2"]);
    assert!(!d.called());
    assert!(
        reactor.clock().delayed_calls().is_empty(),
        "no more to start"
    );
}

#[test]
fn the_first_to_connect_wins_and_the_rest_are_cancelled() {
    let (reactor, resolver, endpoint) = setup();
    let d = endpoint.connect(factory(|_| Idle));
    resolver.pending.borrow()[0]
        .callback(addrs(&[
            "[2001:db8::1]:443",
            "192.0.2.1:443",
            "192.0.2.2:443",
        ]))
        .unwrap();
    reactor.advance(Duration::from_millis(250));
    let calls = reactor.tcp_clients();
    assert_eq!(calls.len(), 2);
    // The second attempt (IPv4) connects first.
    let winner = &calls[1];
    let mut protocol = winner
        .factory
        .build_protocol(&Address::Tcp("192.0.2.1:443".parse().unwrap()))
        .expect("the winner gets the application's protocol");
    let st = StringTransport::new();
    protocol.make_connection(&st.transport());
    assert!(d.called(), "the Deferred fires with the connection");
    assert!(d.try_result().unwrap().unwrap().ptr_eq(&st.transport()));
    assert_eq!(
        fake(&calls[0]).stop_connecting_calls(),
        1,
        "the loser is cancelled"
    );
    assert_eq!(fake(winner).stop_connecting_calls(), 0);
    // No third attempt is started, and a late success of the loser is refused.
    reactor.advance(Duration::from_secs(5));
    assert_eq!(reactor.tcp_clients().len(), 2);
    assert!(
        calls[0]
            .factory
            .build_protocol(&Address::Memory("late".into()))
            .is_none()
    );
}

#[test]
fn a_failure_starts_the_next_attempt_at_once_and_the_last_error_is_reported() {
    let (reactor, resolver, endpoint) = setup();
    let d = endpoint.connect(factory(|_| Idle));
    resolver.pending.borrow()[0]
        .callback(addrs(&["192.0.2.1:443", "192.0.2.2:443"]))
        .unwrap();
    let first = reactor.tcp_clients()[0].clone();
    refuse(&first);
    assert_eq!(
        hosts(&reactor),
        ["192.0.2.1", "192.0.2.2"],
        "no waiting after a failure"
    );
    assert!(!d.called());
    let second = reactor.tcp_clients()[1].clone();
    second.factory.client_connection_failed(
        &second.connector,
        &Error::ConnectTimeout {
            addr: "192.0.2.2:443".into(),
        },
    );
    let failure = d.try_result().unwrap().unwrap_err();
    assert!(
        matches!(
            failure.downcast_ref::<Error>(),
            Some(Error::ConnectTimeout { .. })
        ),
        "the last error: {failure}"
    );
    assert!(reactor.clock().delayed_calls().is_empty());
}

#[test]
fn lookup_failure_and_cancellation() {
    let (reactor, resolver, endpoint) = setup();
    let d = endpoint.connect(factory(|_| Idle));
    resolver.pending.borrow()[0]
        .errback(Failure::new(Error::DnsLookup {
            host: "example.com".into(),
            reason: "NXDOMAIN".into(),
        }))
        .unwrap();
    let failure = d.try_result().unwrap().unwrap_err();
    assert!(failure.to_string().contains("NXDOMAIN"), "{failure}");
    // Cancelling mid-race stops every attempt and the timer.
    let d = endpoint.connect(factory(|_| Idle));
    resolver.pending.borrow()[1]
        .callback(addrs(&["192.0.2.1:443", "192.0.2.2:443", "192.0.2.3:443"]))
        .unwrap();
    reactor.advance(Duration::from_millis(250));
    d.cancel();
    let failure = d.try_result().unwrap().unwrap_err();
    assert!(failure.is_cancelled(), "{failure}");
    for call in reactor.tcp_clients() {
        assert_eq!(fake(&call).stop_connecting_calls(), 1, "{}", call.host);
    }
    assert!(reactor.clock().delayed_calls().is_empty());
}

/// Says hello, collects the answer, and stops the reactor when it has it all.
struct Hello {
    got: Rc<RefCell<Vec<u8>>>,
    reactor: Reactor,
}
impl Protocol for Hello {
    fn connection_made(&mut self, t: &Transport) {
        t.write(b"hello endpoint");
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
        if self.got.borrow().len() == 14 {
            t.lose_connection();
            self.reactor.stop();
        }
    }
}

#[test]
fn strings_connect_for_real_over_tcp_and_unix() {
    let dir = std::env::temp_dir().join(format!("twistor-ep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    for (server, client) in [
        (
            "tcp:0:interface=127.0.0.1".to_string(),
            "tcp:localhost:{port}".to_string(),
        ),
        (
            format!("unix:{}:mode=600", path.display()),
            format!("unix:{}", path.display()),
        ),
        (
            "unix:@twistor-ep-test".to_string(),
            "unix:@twistor-ep-test".to_string(),
        ),
    ] {
        let reactor = twistor_testing::reactor();
        let port = server_from_string(&reactor, &server)
            .unwrap()
            .listen(factory(|_| Echo))
            .try_result()
            .unwrap()
            .unwrap();
        let client = client.replace("{port}", &port.port().to_string());
        let endpoint = client_from_string(&reactor, &client).unwrap();
        let got = Rc::new(RefCell::new(Vec::new()));
        let d = connect_protocol(
            &*endpoint,
            Hello {
                got: got.clone(),
                reactor: reactor.clone(),
            },
        );
        let r = reactor.clone();
        d.add_errback(move |f| {
            r.stop();
            Err(f)
        });
        reactor.run().unwrap();
        assert_eq!(*got.borrow(), b"hello endpoint", "{server} / {client}");
        assert!(d.try_result().unwrap().is_ok());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_endpoint_connection_fails_its_deferred() {
    let reactor = twistor_testing::reactor();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = client_from_string(&reactor, &format!("tcp:127.0.0.1:{port}")).unwrap();
    let d = endpoint.connect(factory(|_| Idle));
    let r = reactor.clone();
    let outcome = Rc::new(RefCell::new(String::new()));
    let o = outcome.clone();
    d.consume(move |result| {
        *o.borrow_mut() = match result {
            Ok(_) => "connected".into(),
            Err(f) => f.to_string(),
        };
        r.stop();
    });
    reactor.run().unwrap();
    assert!(outcome.borrow().contains("refused"), "{}", outcome.borrow());
}

/// Answers every name with one address, and counts the lookups.
struct FixedResolver {
    addr: std::net::IpAddr,
    lookups: RefCell<Vec<String>>,
}

impl Resolver for FixedResolver {
    fn resolve(&self, host: &str, port: u16) -> Deferred<Vec<SocketAddr>> {
        self.lookups.borrow_mut().push(host.to_string());
        if host.ends_with(".invalid") {
            return Deferred::failed(Failure::msg("no such name"));
        }
        Deferred::succeeded(vec![SocketAddr::new(self.addr, port)])
    }
}

#[test]
fn an_installed_resolver_serves_connect_tcp_and_hostname_endpoints() {
    let reactor = twistor_testing::reactor();
    let resolver = Rc::new(FixedResolver {
        addr: "127.0.0.1".parse().unwrap(),
        lookups: RefCell::new(Vec::new()),
    });
    reactor.install_resolver(resolver.clone());
    let port = server_from_string(&reactor, "tcp:0:interface=127.0.0.1")
        .unwrap()
        .listen(factory(|_| Echo))
        .try_result()
        .unwrap()
        .unwrap()
        .port();
    // Through an endpoint string (a HostnameEndpoint)…
    let endpoint = client_from_string(&reactor, &format!("tcp:echo.example:{port}")).unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let hello = Hello {
        got: got.clone(),
        reactor: reactor.clone(),
    };
    connect_protocol(&*endpoint, hello);
    reactor.run().unwrap();
    assert_eq!(*got.borrow(), b"hello endpoint");
    // …and through `twistor::resolve` (what `connect_tcp` calls), whose failure names the
    // host and the resolver's reason.
    let failed = Rc::new(RefCell::new(String::new()));
    let f = failed.clone();
    let r = reactor.clone();
    twistor::resolve(&reactor, "nowhere.invalid", port, move |result| {
        *f.borrow_mut() = result.unwrap_err().to_string();
        r.stop();
    });
    reactor.run().unwrap();
    assert!(
        failed.borrow().contains("nowhere.invalid") && failed.borrow().contains("no such name"),
        "{}",
        failed.borrow()
    );
    assert_eq!(
        *resolver.lookups.borrow(),
        ["echo.example", "nowhere.invalid"]
    );
    // IP literals never reach the resolver.
    twistor::resolve(&reactor, "127.0.0.1", port, |r| assert!(r.is_ok()));
    assert_eq!(resolver.lookups.borrow().len(), 2);
}
