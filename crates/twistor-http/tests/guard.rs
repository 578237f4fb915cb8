//! `BasicAuth` without sockets: a `Site` connection on a `StringTransport`, the portal's
//! failure delay on the test `Clock`. Challenges, logins, a tree below the guard, the same
//! answer for a wrong password and an unknown user, and logout when the request is done.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use twistor::Transport;
use twistor::defer::Deferred;
use twistor::protocol::Protocol;
use twistor_cred::checkers::InMemoryChecker;
use twistor_cred::{AvatarId, Login, Portal, Realm};
use twistor_http::server::{BasicAuth, Resource, ServerOptions, Site, Tree, handler};
use twistor_testing::{Clock, StringTransport};

/// Each user sees a tree with `/who` answering their name; logouts are counted.
struct PerUser {
    logouts: Rc<Cell<u32>>,
}

impl Realm<Rc<dyn Resource>> for PerUser {
    fn request_avatar(&self, id: &AvatarId) -> Deferred<Login<Rc<dyn Resource>>> {
        let name = id.to_string();
        let tree = Tree::new();
        tree.put_child("who", handler(move |_| format!("you are {name}\n").into()));
        let logouts = self.logouts.clone();
        let avatar: Rc<dyn Resource> = Rc::new(tree);
        Deferred::succeeded(
            Login::new(id.clone(), avatar).with_logout(move || logouts.set(logouts.get() + 1)),
        )
    }
}

struct Setup {
    clock: Clock,
    site: Site,
    logouts: Rc<Cell<u32>>,
}

fn setup() -> Setup {
    let clock = Clock::new();
    let logouts = Rc::new(Cell::new(0));
    let portal = Portal::new(
        PerUser {
            logouts: logouts.clone(),
        },
        clock.clone(),
    );
    portal.register_checker(Rc::new(
        InMemoryChecker::new().with_user("alice", "wonder land"),
    ));
    let guard = BasicAuth::new(Rc::new(portal), "tests");
    let mut options = ServerOptions::default();
    options.server_header = None;
    let site = Site::with_options(clock.as_time(), Rc::new(guard), options);
    Setup {
        clock,
        site,
        logouts,
    }
}

/// Sends one request on a new connection; returns the transport to read the answer from.
fn request(
    site: &Site,
    path: &str,
    authorization: Option<&str>,
) -> (StringTransport, Box<dyn Protocol>) {
    let st = StringTransport::new();
    let t: Transport = st.transport();
    let mut p = site.connection(&t.peer());
    p.make_connection(&t);
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let text = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{auth}\r\n");
    p.data_received(&t, text.as_bytes());
    (st, p)
}

fn basic(user_password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

/// The response without its `date` header.
fn answer(st: &StringTransport) -> String {
    String::from_utf8_lossy(&st.take())
        .lines()
        .filter(|l| !l.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_credentials_get_a_challenge_at_once() {
    let s = setup();
    for header in [
        None,
        Some("Bearer abc"),
        Some("Basic !!!"),
        Some("Basic bm9jb2xvbg=="),
    ] {
        let (st, _p) = request(&s.site, "/who", header);
        let text = answer(&st);
        assert!(
            text.starts_with("HTTP/1.1 401 Unauthorized"),
            "{header:?}: {text}"
        );
        assert!(
            text.contains("www-authenticate: Basic realm=\"tests\", charset=\"UTF-8\""),
            "{text}"
        );
    }
}

#[test]
fn a_login_walks_the_users_tree_and_logs_out_when_the_request_is_done() {
    let s = setup();
    let (st, _p) = request(&s.site, "/who", Some(&basic("alice:wonder land")));
    let text = answer(&st);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.ends_with("you are alice"), "{text}");
    assert_eq!(s.logouts.get(), 1);
    let (st, _p) = request(&s.site, "/nothing/here", Some(&basic("alice:wonder land")));
    assert!(
        answer(&st).starts_with("HTTP/1.1 404"),
        "below the guard, the tree decides"
    );
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_delayed_answer() {
    let s = setup();
    let (wrong, _p1) = request(&s.site, "/who", Some(&basic("alice:wonderland")));
    let (unknown, _p2) = request(&s.site, "/who", Some(&basic("bob:wonder land")));
    assert!(
        wrong.value().is_empty(),
        "a failure waits for the portal's delay"
    );
    s.clock.advance(Duration::from_secs(3));
    let (wrong, unknown) = (answer(&wrong), answer(&unknown));
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    assert_eq!(wrong, unknown);
    assert_eq!(s.logouts.get(), 0);
}
