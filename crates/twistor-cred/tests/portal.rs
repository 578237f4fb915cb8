//! The Portal on the test kit's fake Clock: checker choice, realms, logout, and the
//! failed-login throttle (delays grow, cap, are forgotten; successes are never delayed;
//! the peer table is bounded).

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

use twistor::defer::{Deferred, Failure};
use twistor_cred::checkers::{AllowAnonymous, Checker, InMemoryChecker};
use twistor_cred::{
    AvatarId, CredentialKind, Credentials, Login, LoginError, Portal, Realm, ThrottleConfig,
};
use twistor_testing::Clock;

/// Gives two kinds of avatar (a `String` and a `u32`) and counts logouts.
#[derive(Default)]
struct TestRealm {
    logouts: Rc<Cell<u32>>,
}

impl Realm<String> for TestRealm {
    fn request_avatar(&self, id: &AvatarId) -> Deferred<Login<String>> {
        let logouts = self.logouts.clone();
        Deferred::succeeded(
            Login::new(id.clone(), format!("shell of {id}"))
                .with_logout(move || logouts.set(logouts.get() + 1)),
        )
    }
}

impl Realm<u32> for TestRealm {
    fn request_avatar(&self, id: &AvatarId) -> Deferred<Login<u32>> {
        Deferred::succeeded(Login::new(id.clone(), id.to_string().len() as u32))
    }
}

/// Always answers with the same failure.
struct Refuses(Failure);

impl Checker for Refuses {
    fn kinds(&self) -> &[CredentialKind] {
        &[
            CredentialKind::UsernamePassword,
            CredentialKind::SshPublicKey,
        ]
    }

    fn check(&self, _: &Credentials) -> Deferred<AvatarId> {
        Deferred::failed(self.0.clone())
    }
}

/// Never answers, keeping its Deferreds as a check still running would.
#[derive(Default)]
struct Pending(std::cell::RefCell<Vec<Deferred<AvatarId>>>);

impl Checker for Pending {
    fn kinds(&self) -> &[CredentialKind] {
        &[CredentialKind::UsernamePassword]
    }

    fn check(&self, _: &Credentials) -> Deferred<AvatarId> {
        let d = Deferred::new();
        self.0.borrow_mut().push(d.clone());
        d
    }
}

fn portal(clock: &Clock) -> Portal<TestRealm> {
    portal_with(clock, ThrottleConfig::default())
}

fn portal_with(clock: &Clock, config: ThrottleConfig) -> Portal<TestRealm> {
    let portal = Portal::with_throttle(TestRealm::default(), clock.clone(), config);
    portal.register_checker(Rc::new(InMemoryChecker::new().with_user("alice", "right")));
    portal
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

fn attempt(
    portal: &Portal<TestRealm>,
    user: &str,
    password: &str,
    peer: Option<IpAddr>,
) -> Deferred<Login<String>> {
    portal.login::<String>(Credentials::username_password(user, password), peer)
}

/// Advances `clock` a millisecond at a time until `d` fires; returns how long that took.
fn fires_after<T: 'static>(clock: &Clock, d: &Deferred<T>) -> Duration {
    let mut waited = Duration::ZERO;
    while !d.called() {
        assert!(waited < Duration::from_secs(10), "never fired");
        clock.advance(Duration::from_millis(1));
        waited += Duration::from_millis(1);
    }
    waited
}

fn login_error<T: 'static>(d: &Deferred<T>) -> LoginError {
    match d.try_result().expect("fired") {
        Ok(_) => panic!("logged in"),
        Err(failure) => failure.find::<LoginError>().expect("a LoginError").clone(),
    }
}

/// The delay, in ms, of one failing login of alice from `peer`.
fn failure_delay(clock: &Clock, portal: &Portal<TestRealm>, peer: Option<IpAddr>) -> u128 {
    let d = attempt(portal, "alice", "wrong", peer);
    assert!(!d.called(), "a failure is answered only after a delay");
    let waited = fires_after(clock, &d);
    assert_eq!(login_error(&d), LoginError::Unauthorized);
    waited.as_millis()
}

#[test]
fn the_right_password_logs_in_at_once_through_the_realm() {
    let clock = Clock::new();
    let portal = portal(&clock);
    let d = attempt(&portal, "alice", "right", ip(1));
    let login = d.try_result().expect("no delay").unwrap();
    assert_eq!(login.avatar_id(), &AvatarId::user("alice"));
    assert_eq!(login.avatar(), "shell of alice");
}

#[test]
fn one_realm_gives_each_avatar_type_asked_for() {
    let clock = Clock::new();
    let portal = portal(&clock);
    let creds = || Credentials::username_password("alice", "right");
    let shell = portal
        .login::<String>(creds(), None)
        .try_result()
        .unwrap()
        .unwrap();
    let number = portal
        .login::<u32>(creds(), None)
        .try_result()
        .unwrap()
        .unwrap();
    assert_eq!(shell.avatar(), "shell of alice");
    assert_eq!(*number.avatar(), 5);
}

#[test]
fn logout_runs_once_when_called_or_when_dropped() {
    let clock = Clock::new();
    let portal = portal(&clock);
    let logouts = portal.realm().logouts.clone();
    let login = attempt(&portal, "alice", "right", None)
        .try_result()
        .unwrap()
        .unwrap();
    login.logout();
    assert_eq!(logouts.get(), 1);
    let login = attempt(&portal, "alice", "right", None)
        .try_result()
        .unwrap()
        .unwrap();
    drop(login);
    assert_eq!(logouts.get(), 2);
    let login = attempt(&portal, "alice", "right", None)
        .try_result()
        .unwrap()
        .unwrap();
    let (id, avatar, logout) = login.into_parts();
    assert_eq!(
        (id, avatar.as_str()),
        (AvatarId::user("alice"), "shell of alice")
    );
    assert_eq!(
        logouts.get(),
        2,
        "into_parts hands the logout over without running it"
    );
    logout.expect("the realm's logout")();
    assert_eq!(logouts.get(), 3);
}

#[test]
fn failing_logins_wait_longer_each_time_up_to_two_seconds() {
    let clock = Clock::new();
    let portal = portal(&clock);
    let delays: Vec<u128> = (0..6)
        .map(|_| failure_delay(&clock, &portal, ip(1)))
        .collect();
    assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000]);
}

#[test]
fn the_right_password_is_never_delayed_nor_locked_out() {
    let clock = Clock::new();
    let portal = portal(&clock);
    for _ in 0..10 {
        failure_delay(&clock, &portal, ip(1));
    }
    // Another user behind the same address, with the right password: in at once.
    let d = attempt(&portal, "alice", "right", ip(1));
    assert!(d.try_result().expect("answered at once").is_ok());
    // And a success does not wipe the attacker's record.
    assert_eq!(failure_delay(&clock, &portal, ip(1)), 2000);
}

#[test]
fn failures_are_forgotten_after_five_minutes() {
    let clock = Clock::new();
    let portal = portal(&clock);
    assert_eq!(failure_delay(&clock, &portal, ip(1)), 250);
    clock.advance(Duration::from_secs(200));
    assert_eq!(failure_delay(&clock, &portal, ip(1)), 500);
    assert_eq!(failure_delay(&clock, &portal, ip(1)), 1000);
    // 5 minutes after the first failure: only the two recent ones still count.
    clock.advance(Duration::from_secs(100));
    assert_eq!(failure_delay(&clock, &portal, ip(1)), 1000);
    // Quiet for 5 minutes: all forgotten.
    clock.advance(Duration::from_secs(301));
    assert_eq!(failure_delay(&clock, &portal, ip(1)), 250);
}

#[test]
fn each_peer_pays_for_its_own_failures() {
    let clock = Clock::new();
    let portal = portal(&clock);
    for _ in 0..4 {
        failure_delay(&clock, &portal, ip(1));
    }
    assert_eq!(failure_delay(&clock, &portal, ip(2)), 250);
    assert_eq!(failure_delay(&clock, &portal, ip(1)), 2000);
}

#[test]
fn a_peer_without_an_address_waits_a_fixed_delay() {
    let clock = Clock::new();
    let portal = portal(&clock);
    let delays: Vec<u128> = (0..4)
        .map(|_| failure_delay(&clock, &portal, None))
        .collect();
    assert_eq!(delays, [500, 500, 500, 500]);
    assert_eq!(portal.tracked_peers(), 0);
}

#[test]
fn the_peer_table_forgets_the_oldest_peer_when_full() {
    let clock = Clock::new();
    let mut config = ThrottleConfig::default();
    config.max_peers = 3;
    let portal = portal_with(&clock, config);
    for peer in 1..=3 {
        failure_delay(&clock, &portal, ip(peer));
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(portal.tracked_peers(), 3);
    failure_delay(&clock, &portal, ip(4)); // evicts peer 1, the oldest
    assert_eq!(portal.tracked_peers(), 3);
    assert_eq!(
        failure_delay(&clock, &portal, ip(1)),
        250,
        "peer 1 was forgotten"
    );
    assert_eq!(
        failure_delay(&clock, &portal, ip(3)),
        500,
        "peer 3 is remembered"
    );
    assert_eq!(portal.tracked_peers(), 3);
}

#[test]
fn the_default_peer_table_holds_4096_peers() {
    let clock = Clock::new();
    let portal = portal(&clock);
    // All within a moment, so none has aged out.
    let pending: Vec<_> = (0..5000u32)
        .map(|n| {
            attempt(
                &portal,
                "alice",
                "wrong",
                Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))),
            )
        })
        .collect();
    assert_eq!(portal.tracked_peers(), 4096);
    clock.advance(Duration::from_millis(250));
    for d in pending {
        assert_eq!(login_error(&d), LoginError::Unauthorized);
    }
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    let clock = Clock::new();
    let portal = portal(&clock);
    let wrong = attempt(&portal, "alice", "wrong", ip(1));
    let wrong_delay = fires_after(&clock, &wrong);
    let unknown = attempt(&portal, "mallory", "wrong", ip(2));
    assert_eq!(fires_after(&clock, &unknown), wrong_delay);
    let (a, b) = (login_error(&wrong), login_error(&unknown));
    assert_eq!(a, LoginError::Unauthorized);
    assert_eq!(a, b);
    assert_eq!(a.to_string(), b.to_string());
}

#[test]
fn credentials_no_checker_handles_are_unhandled_and_delayed() {
    let clock = Clock::new();
    let portal = portal(&clock);
    assert_eq!(portal.kinds(), [CredentialKind::UsernamePassword]);
    let d = portal.login::<String>(Credentials::Anonymous, ip(1));
    assert_eq!(fires_after(&clock, &d).as_millis(), 250);
    assert_eq!(login_error(&d), LoginError::Unhandled);
}

#[test]
fn the_first_checker_registered_for_a_kind_decides() {
    let clock = Clock::new();
    let portal = portal(&clock);
    portal.register_checker(Rc::new(InMemoryChecker::new().with_user("alice", "other")));
    let d = attempt(&portal, "alice", "other", ip(1));
    fires_after(&clock, &d);
    assert_eq!(login_error(&d), LoginError::Unauthorized);
    assert!(
        attempt(&portal, "alice", "right", ip(1))
            .try_result()
            .unwrap()
            .is_ok()
    );
}

#[test]
fn anonymous_logins_with_allow_anonymous() {
    let clock = Clock::new();
    let portal = portal(&clock);
    portal.register_checker(Rc::new(AllowAnonymous));
    assert_eq!(
        portal.kinds(),
        [CredentialKind::UsernamePassword, CredentialKind::Anonymous]
    );
    let login = portal
        .login::<String>(Credentials::Anonymous, None)
        .try_result()
        .unwrap()
        .unwrap();
    assert_eq!(login.avatar_id(), &AvatarId::Anonymous);
}

#[test]
fn key_acceptable_is_neither_delayed_nor_counted() {
    let clock = Clock::new();
    let portal = Portal::new(TestRealm::default(), clock.clone());
    portal.register_checker(Rc::new(Refuses(Failure::new(LoginError::KeyAcceptable))));
    for _ in 0..3 {
        let d = portal.login::<String>(
            Credentials::ssh_public_key("alice", "ssh-ed25519", vec![1]),
            ip(1),
        );
        assert!(d.called(), "answered at once");
        assert_eq!(login_error(&d), LoginError::KeyAcceptable);
    }
    assert_eq!(portal.tracked_peers(), 0);
}

#[test]
fn a_checker_failure_that_is_not_a_login_error_becomes_unavailable() {
    let clock = Clock::new();
    let portal = Portal::new(TestRealm::default(), clock.clone());
    portal.register_checker(Rc::new(Refuses(Failure::msg("disk on fire"))));
    let d = attempt(&portal, "alice", "x", ip(1));
    assert_eq!(fires_after(&clock, &d).as_millis(), 250);
    assert_eq!(
        login_error(&d),
        LoginError::Unavailable("disk on fire".into())
    );
}

#[test]
fn cancelling_a_failing_login_cancels_its_delay() {
    let clock = Clock::new();
    let portal = portal(&clock);
    let d = attempt(&portal, "alice", "wrong", ip(1));
    assert!(!d.called());
    d.cancel();
    let failure = d.try_result().unwrap().expect_err("cancelled");
    assert!(failure.is_cancelled(), "{failure}");
    // The timer is gone: advancing past it fires nothing twice (which would log an
    // AlreadyCalled error) and the next failure is still counted as the second.
    clock.advance(Duration::from_secs(3));
    assert_eq!(failure_delay(&clock, &portal, ip(1)), 500);
}

#[test]
fn cancelling_a_login_while_it_is_checked_is_no_failure() {
    let clock = Clock::new();
    let portal = Portal::new(TestRealm::default(), clock.clone());
    let checker = Rc::new(Pending::default());
    portal.register_checker(checker.clone());
    let d = attempt(&portal, "alice", "right", ip(1));
    d.cancel();
    let check = checker.0.borrow_mut().pop().unwrap();
    assert!(check.called(), "the check was cancelled too");
    let failure = d.try_result().unwrap().expect_err("cancelled");
    assert!(failure.is_cancelled(), "{failure}");
    assert_eq!(portal.tracked_peers(), 0, "not counted against the peer");
}
