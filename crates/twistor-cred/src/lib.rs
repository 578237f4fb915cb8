//! twistor-cred: logging users in, after Twisted's `twisted.cred`.
//!
//! A protocol that logs users in (FTP, IMAP, SSH, a chat server...) does not check
//! passwords itself. It hands what the peer presented, the [`Credentials`], to a
//! [`Portal`]. The portal asks the [`Checker`](checkers::Checker) registered for that
//! kind of credentials who the peer is (an [`AvatarId`]), then asks the application's
//! [`Realm`] for that user's *avatar*: the object through which the session acts, of
//! whatever type the protocol asks for. The protocol gets back a [`Login`] holding the
//! avatar and what to do on logout. A failed login fails with a [`LoginError`], after a
//! delay that grows with the peer's recent failures.
//!
//! ```
//! use std::rc::Rc;
//! use twistor::Reactor;
//! use twistor::defer::Deferred;
//! use twistor_cred::checkers::InMemoryChecker;
//! use twistor_cred::{AvatarId, Credentials, Login, LoginError, Portal, Realm};
//!
//! /// What a logged-in user of this server acts through.
//! struct Shell {
//!     home: String,
//! }
//!
//! struct Users;
//!
//! impl Realm<Shell> for Users {
//!     fn request_avatar(&self, id: &AvatarId) -> Deferred<Login<Shell>> {
//!         let home = format!("/home/{id}");
//!         let login = Login::new(id.clone(), Shell { home })
//!             .with_logout(|| println!("bye"));
//!         Deferred::succeeded(login)
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! let portal = Portal::new(Users, reactor.clone());
//! portal.register_checker(Rc::new(InMemoryChecker::new().with_user("alice", "wonderland")));
//!
//! let d = portal.login::<Shell>(Credentials::username_password("alice", "wonderland"), None);
//! let login = d.try_result().expect("an in-memory check answers at once")?;
//! assert_eq!(login.avatar().home, "/home/alice");
//! login.logout(); // prints "bye" (dropping the Login would too)
//!
//! // A wrong password fails with LoginError::Unauthorized, after a delay on the reactor.
//! let d = portal.login::<Shell>(Credentials::username_password("alice", "guess"), None);
//! let r = reactor.clone();
//! d.add_both(move |result| { r.stop(); result });
//! reactor.run()?;
//! let failure = d.try_result().unwrap().err().expect("refused");
//! assert_eq!(failure.find::<LoginError>(), Some(&LoginError::Unauthorized));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Modules
//!
//! - [`credentials`]: [`Credentials`] (user name and password, SSH public key, anonymous),
//!   [`CredentialKind`], [`AvatarId`].
//! - [`portal`]: [`Portal`], which ties checkers, a realm and the throttle together.
//! - [`realm`]: the [`Realm`] trait and [`Login`].
//! - [`checkers`]: the [`Checker`](checkers::Checker) trait;
//!   [`InMemoryChecker`](checkers::InMemoryChecker),
//!   [`PasswordFile`](checkers::PasswordFile) (the users file below),
//!   [`AuthorizedKeys`](checkers::AuthorizedKeys) (SSH keys),
//!   [`AllowAnonymous`](checkers::AllowAnonymous).
//! - [`hash`]: the password hash schemes and [`verify`](hash::verify).
//! - [`throttle`]: the failed-login delays, [`ThrottleConfig`].
//! - [`error`]: [`LoginError`], [`FileError`], [`HashError`].
//! - [`users_file`]: the users file format, for those who write one.
//!
//! # The users file
//!
//! Every `twist` service that logs users in takes `--users FILE`, read by
//! [`PasswordFile`](checkers::PasswordFile). [`users_file`] (also `docs/users-file.md`)
//! is the one description of its format: `user:HASH` lines, the hash made by
//! `openssl passwd -6`, `htpasswd -nB` or `argon2`, reloaded when the file changes.

pub mod checkers;
pub mod credentials;
pub mod error;
pub mod hash;
pub mod portal;
pub mod realm;
pub mod throttle;

#[doc = include_str!("../../../docs/users-file.md")]
pub mod users_file {}

pub use credentials::{AvatarId, CredentialKind, Credentials};
pub use error::{FileError, HashError, LoginError};
pub use portal::Portal;
pub use realm::{Login, Logout, Realm};
pub use throttle::ThrottleConfig;
