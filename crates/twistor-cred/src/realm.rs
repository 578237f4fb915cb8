//! [`Realm`]: the application's side of a login, which turns an accepted [`AvatarId`] into
//! an avatar, and [`Login`], what a successful login hands the protocol.

use std::fmt;
use std::rc::Rc;

use twistor::defer::Deferred;

use crate::credentials::AvatarId;

/// Makes avatars for users the checkers accepted (Twisted's `IRealm`).
///
/// Twisted's `requestAvatar` is also given the interfaces the protocol wants; here that is
/// the type parameter `A`: a realm serving both a shell and file transfer implements
/// `Realm<ShellAvatar>` and `Realm<FtpAvatar>`, and each protocol asks the
/// [`Portal`](crate::Portal) for its own.
///
/// A failure of the returned Deferred reaches the protocol as it is (not delayed, not
/// turned into a [`LoginError`](crate::LoginError)): the credentials were right, and what
/// went wrong is the server's to report.
pub trait Realm<A: 'static> {
    /// The avatar of `id`, with what to run when the session ends.
    fn request_avatar(&self, id: &AvatarId) -> Deferred<Login<A>>;
}

impl<A: 'static, R: Realm<A> + ?Sized> Realm<A> for Rc<R> {
    fn request_avatar(&self, id: &AvatarId) -> Deferred<Login<A>> {
        (**self).request_avatar(id)
    }
}

/// A realm's logout function, as [`Login::into_parts`] hands it over.
pub type Logout = Box<dyn FnOnce()>;

/// A logged-in session: who ([`avatar_id`](Login::avatar_id)), the avatar the protocol
/// acts through, and the realm's logout function.
///
/// The logout function runs exactly once: when [`logout`](Login::logout) is called, or
/// when the `Login` is dropped (so a protocol that keeps its `Login` logs out when its
/// connection goes, as Twisted's protocols call `logout` in `connectionLost`), unless
/// [`into_parts`](Login::into_parts) took it out.
pub struct Login<A> {
    avatar_id: AvatarId,
    avatar: A,
    logout: OnLogout,
}

/// The logout function, run when dropped. Kept apart from `Login` so `Login` itself has
/// no `Drop` and its fields can be moved out.
struct OnLogout(Option<Logout>);

impl Drop for OnLogout {
    fn drop(&mut self) {
        if let Some(logout) = self.0.take() {
            logout();
        }
    }
}

impl<A> Login<A> {
    /// A session of `avatar_id` through `avatar`, with nothing to do on logout.
    pub fn new(avatar_id: AvatarId, avatar: A) -> Login<A> {
        Login {
            avatar_id,
            avatar,
            logout: OnLogout(None),
        }
    }

    /// Runs `logout` when the session ends.
    pub fn with_logout(mut self, logout: impl FnOnce() + 'static) -> Login<A> {
        self.logout.0 = Some(Box::new(logout));
        self
    }

    /// Who logged in.
    pub fn avatar_id(&self) -> &AvatarId {
        &self.avatar_id
    }

    /// The avatar.
    pub fn avatar(&self) -> &A {
        &self.avatar
    }

    /// The avatar, to change.
    pub fn avatar_mut(&mut self) -> &mut A {
        &mut self.avatar
    }

    /// Ends the session now: runs the logout function.
    pub fn logout(self) {
        drop(self);
    }

    /// Takes the session apart; the caller then owns the logout function (and must call
    /// it: dropping it does not).
    pub fn into_parts(self) -> (AvatarId, A, Option<Logout>) {
        let Login {
            avatar_id,
            avatar,
            mut logout,
        } = self;
        (avatar_id, avatar, logout.0.take())
    }
}

impl<A: fmt::Debug> fmt::Debug for Login<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("avatar_id", &self.avatar_id)
            .field("avatar", &self.avatar)
            .field("logout", &self.logout.0.is_some())
            .finish()
    }
}
