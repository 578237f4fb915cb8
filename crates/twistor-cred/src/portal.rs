//! [`Portal`]: where a protocol logs a peer in. It asks the checker registered for the
//! credentials' kind who the peer is, asks the realm for that user's avatar, and makes
//! failed logins wait (see [`throttle`](crate::throttle)).

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use twistor::ReactorTime;
use twistor::defer::{Deferred, Failure};

use crate::checkers::Checker;
use crate::credentials::{CredentialKind, Credentials};
use crate::error::LoginError;
use crate::realm::{Login, Realm};
use crate::throttle::{Throttle, ThrottleConfig};

/// A realm and the checkers that vouch for credentials (Twisted's `Portal`).
///
/// Protocols share one portal (hold it in an `Rc`) and call [`login`](Portal::login) with
/// what the peer presented and the peer's address. The Deferred fires with a [`Login`], or
/// fails with a [`LoginError`] found by `failure.find::<LoginError>()` (a realm's own
/// failure passes as it is).
///
/// A failed login is answered only after a delay on the portal's clock that grows with
/// the peer's recent failures ([`ThrottleConfig`]); a success is answered at once.
pub struct Portal<R> {
    realm: Rc<R>,
    checkers: RefCell<Vec<Rc<dyn Checker>>>,
    clock: Rc<dyn ReactorTime>,
    throttle: Rc<RefCell<Throttle>>,
}

impl<R: 'static> Portal<R> {
    /// A portal for `realm` with no checkers yet, timing failure delays on `clock` (the
    /// reactor, or a test `Clock`), with the default throttle.
    pub fn new(realm: R, clock: impl ReactorTime + 'static) -> Portal<R> {
        Portal::with_throttle(realm, clock, ThrottleConfig::default())
    }

    /// Like [`new`](Portal::new), with a throttle configured.
    pub fn with_throttle(
        realm: R,
        clock: impl ReactorTime + 'static,
        throttle: ThrottleConfig,
    ) -> Portal<R> {
        Portal {
            realm: Rc::new(realm),
            checkers: RefCell::new(Vec::new()),
            clock: Rc::new(clock),
            throttle: Rc::new(RefCell::new(Throttle::new(throttle))),
        }
    }

    /// Adds a checker (Twisted's `registerChecker`). For each kind of credentials, the
    /// first checker registered that handles it decides.
    pub fn register_checker(&self, checker: Rc<dyn Checker>) {
        self.checkers.borrow_mut().push(checker);
    }

    /// The kinds of credentials some checker handles, in registration order (Twisted's
    /// `listCredentialsInterfaces`): what a server may offer its peers.
    pub fn kinds(&self) -> Vec<CredentialKind> {
        let mut kinds = Vec::new();
        for checker in self.checkers.borrow().iter() {
            for kind in checker.kinds() {
                if !kinds.contains(kind) {
                    kinds.push(*kind);
                }
            }
        }
        kinds
    }

    /// The realm.
    pub fn realm(&self) -> &R {
        &self.realm
    }

    /// How many peers the failed-login throttle remembers now (at most
    /// [`ThrottleConfig::max_peers`]).
    pub fn tracked_peers(&self) -> usize {
        self.throttle.borrow().len()
    }

    /// Logs in with `credentials`, coming from `peer` (`None` if the transport has no IP
    /// address), asking the realm for an avatar of type `A`.
    ///
    /// Fails with [`LoginError::Unhandled`] if no checker handles the credentials' kind,
    /// and with what the checker said otherwise; every failure but
    /// [`LoginError::KeyAcceptable`] is counted against `peer` and delayed. A checker's
    /// failure that is not a `LoginError` is logged and becomes
    /// [`LoginError::Unavailable`]. Cancelling the Deferred cancels the check (which then
    /// counts as no failure) or the delay.
    pub fn login<A: 'static>(
        &self,
        credentials: Credentials,
        peer: Option<IpAddr>,
    ) -> Deferred<Login<A>>
    where
        R: Realm<A>,
    {
        let kind = credentials.kind();
        let checker = self
            .checkers
            .borrow()
            .iter()
            .find(|c| c.kinds().contains(&kind))
            .cloned();
        let checked = match checker {
            Some(checker) => checker.check(&credentials),
            None => Deferred::failed(LoginError::Unhandled),
        };
        let (throttle, clock) = (self.throttle.clone(), self.clock.clone());
        checked.add_errback_deferred(move |failure| {
            // Cancelled by the caller (the peer left mid-check): not a failed login.
            if failure.is_cancelled() {
                return Deferred::failed(failure);
            }
            let error = login_error(&failure);
            if error == LoginError::KeyAcceptable {
                return Deferred::failed(error);
            }
            tracing::debug!(?peer, "login failed: {failure}");
            let delay = throttle.borrow_mut().failure(peer, clock.seconds());
            fail_after(&*clock, delay, error)
        });
        let realm = self.realm.clone();
        checked.and_then_deferred(move |id| realm.request_avatar(&id))
    }
}

/// The `LoginError` a checker failed with, or `Unavailable` for any other failure.
fn login_error(failure: &Failure) -> LoginError {
    match failure.find::<LoginError>() {
        Some(error) => error.clone(),
        None => {
            tracing::warn!("credentials checker failed: {failure}");
            LoginError::Unavailable(failure.to_string())
        }
    }
}

/// A Deferred that fails with `error` after `delay` on `clock`; cancelling it cancels the
/// timer.
fn fail_after<T: 'static>(
    clock: &dyn ReactorTime,
    delay: Duration,
    error: LoginError,
) -> Deferred<T> {
    let timer = Rc::new(RefCell::new(None::<twistor::DelayedCall>));
    let on_cancel = timer.clone();
    let d = Deferred::with_canceller(move |_| {
        if let Some(call) = on_cancel.borrow_mut().take() {
            let _ = call.cancel();
        }
    });
    let fire = d.clone();
    let call = clock.call_later_boxed(
        delay,
        Box::new(move || {
            let _ = fire.errback(error);
        }),
    );
    *timer.borrow_mut() = Some(call);
    d
}
