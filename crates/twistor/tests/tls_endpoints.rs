//! TLS through endpoint strings: an `ssl:` server and a `tls:` client, verification on.

mod tls_support;

use std::cell::RefCell;
use std::rc::Rc;

use tls_support::{Leaf, TestCa};
use twistor::endpoints::{client_from_string, connect_protocol, server_from_string};
use twistor::protocol::factory;
use twistor::tls::TlsTransport;
use twistor::{Protocol, Reactor, Transport};

struct Echo;
impl Protocol for Echo {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.write(data);
    }
}

struct Hello {
    got: Rc<RefCell<Vec<u8>>>,
    reactor: Reactor,
}
impl Protocol for Hello {
    fn connection_made(&mut self, t: &Transport) {
        assert!(
            t.downcast_ref::<TlsTransport>().is_some(),
            "the app sees the TLS transport"
        );
        t.write(b"secret hello");
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
        if self.got.borrow().len() == 12 {
            t.lose_connection();
            self.reactor.stop();
        }
    }
}

/// An `Echo` listening on `ssl:0` on loopback with `leaf`'s key and certificate, from the
/// endpoint string.
fn listen_ssl_echo(reactor: &Reactor, leaf: &Leaf) -> twistor::ListeningPort {
    let server = format!(
        "ssl:0:privateKey={}:certKey={}:interface=127.0.0.1",
        leaf.key_path.display(),
        leaf.cert_path.display()
    );
    server_from_string(reactor, &server)
        .unwrap()
        .listen(factory(|_| Echo))
        .try_result()
        .unwrap()
        .unwrap()
}

#[test]
fn ssl_server_and_tls_client_from_strings() {
    let ca = TestCa::new("endpoints");
    let leaf = ca.leaf("server", "localhost", &["localhost"]);
    let reactor = twistor_testing::reactor();
    let port = listen_ssl_echo(&reactor, &leaf);
    let client = format!(
        "tls:localhost:{}:trustRoots={}",
        port.port(),
        ca.ca_path().display()
    );
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
    assert_eq!(*got.borrow(), b"secret hello");
}

#[test]
fn an_untrusted_server_fails_the_connection() {
    let ca = TestCa::new("endpoints-untrusted");
    let other = TestCa::new("endpoints-other");
    let leaf = ca.leaf("server", "localhost", &["localhost"]);
    let reactor = twistor_testing::reactor();
    let port = listen_ssl_echo(&reactor, &leaf);
    let client = format!(
        "tls:localhost:{}:trustRoots={}",
        port.port(),
        other.ca_path().display()
    );
    let endpoint = client_from_string(&reactor, &client).unwrap();
    let lost = Rc::new(RefCell::new(String::new()));
    struct Watch(Rc<RefCell<String>>, Reactor);
    impl Protocol for Watch {
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        fn connection_lost(&mut self, reason: &twistor::CloseReason) {
            *self.0.borrow_mut() = reason.to_string();
            self.1.stop();
        }
    }
    let d = connect_protocol(&*endpoint, Watch(lost.clone(), reactor.clone()));
    reactor.run().unwrap();
    assert!(d.try_result().is_some());
    let lost = lost.borrow();
    assert!(
        lost.contains("UnknownIssuer") || lost.contains("certificate"),
        "{lost}"
    );
}

#[test]
fn malformed_tls_descriptions_name_the_problem() {
    let reactor = twistor_testing::reactor();
    let err = server_from_string(&reactor, "ssl:443")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing privateKey"), "{err}");
    let err = server_from_string(&reactor, "ssl:443:privateKey=/no/such/key.pem")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/no/such/key.pem"), "{err}");
    let err = client_from_string(&reactor, "tls:example.com:443:privateKey=k.pem")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("needs certificate"), "{err}");
    let err = client_from_string(&reactor, "tls:example.com:443:trustRoots=/nowhere")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nowhere"), "{err}");
}
