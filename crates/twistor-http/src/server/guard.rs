//! HTTP Basic authentication in front of a resource (Twisted's `twisted.web.guard`:
//! `HTTPAuthSessionWrapper` with a `BasicCredentialFactory`), through a cred
//! [`Portal`](twistor_cred::Portal).

use std::rc::Rc;

use http::{StatusCode, header};
use twistor_cred::{Credentials, LoginError, Portal, Realm};

use super::channel::{locate, render_into};
use super::{Render, Request, Resource, error_page};

/// Asks for a user name and password (RFC 7617 `Basic`) before anything below it is served:
/// the portal's checkers decide, and its realm gives the resource the user sees (the same
/// tree for everyone, or one per user). A request without credentials, or with refused
/// ones, gets `401 Unauthorized` with a `WWW-Authenticate` challenge; a wrong password and
/// an unknown user get the same answer, after the portal's failed-login delay.
///
/// The password crosses the network as it was typed: serve it over TLS (`ssl:`), or on
/// loopback only. The request's `Authorization` header stays as it came, so a
/// [`ReverseProxy`](crate::proxy::ReverseProxy) below the guard passes it on.
///
/// ```no_run
/// use std::rc::Rc;
/// use twistor::defer::Deferred;
/// use twistor::Reactor;
/// use twistor_cred::checkers::InMemoryChecker;
/// use twistor_cred::{AvatarId, Login, Portal, Realm};
/// use twistor_http::server::{BasicAuth, Resource, Site};
/// use twistor_http::static_files::StaticFile;
///
/// /// Everyone who logs in sees the same files.
/// struct Files(Rc<dyn Resource>);
///
/// impl Realm<Rc<dyn Resource>> for Files {
///     fn request_avatar(&self, id: &AvatarId) -> Deferred<Login<Rc<dyn Resource>>> {
///         Deferred::succeeded(Login::new(id.clone(), self.0.clone()))
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let files: Rc<dyn Resource> = Rc::new(StaticFile::new("/srv/www")?);
/// let portal = Portal::new(Files(files), reactor.clone());
/// portal.register_checker(Rc::new(InMemoryChecker::new().with_user("alice", "s3cret")));
/// let guarded = BasicAuth::new(Rc::new(portal), "files");
/// let site = Site::new(reactor.clone(), Rc::new(guarded));
/// reactor.listen_tcp_local(8080, Rc::new(site))?;
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BasicAuth<R> {
    portal: Rc<Portal<R>>,
    challenge: String,
}

impl<R> BasicAuth<R> {
    /// Guards what `portal`'s realm gives, naming the protection space `realm` in the
    /// challenge (browsers show it in their login dialog).
    pub fn new(portal: Rc<Portal<R>>, realm: &str) -> BasicAuth<R> {
        let quoted: String = realm
            .chars()
            .filter(|c| !c.is_control())
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        BasicAuth {
            portal,
            challenge: format!("Basic realm=\"{quoted}\", charset=\"UTF-8\""),
        }
    }

    /// Answers 401 with the challenge.
    fn unauthorized(&self, request: &Request) -> Render {
        request.set_header(header::WWW_AUTHENTICATE, self.challenge.as_str());
        error_page(
            request,
            StatusCode::UNAUTHORIZED,
            "This resource needs a user name and password.",
        )
    }
}

/// The user name and password of an `Authorization: Basic` header, if it holds valid ones.
fn basic_credentials(request: &Request) -> Option<Credentials> {
    use base64::Engine as _;
    let value = request.header(header::AUTHORIZATION)?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials::username_password(user, password))
}

impl<R: Realm<Rc<dyn Resource>> + 'static> Resource for BasicAuth<R> {
    /// Everything below is served by the user's resource, once logged in.
    fn is_leaf(&self) -> bool {
        true
    }

    fn render(&self, request: &Request) -> Render {
        let Some(credentials) = basic_credentials(request) else {
            return self.unauthorized(request);
        };
        let login = self
            .portal
            .login::<Rc<dyn Resource>>(credentials, request.client_ip());
        let (request, challenge) = (request.clone(), self.challenge.clone());
        login.consume(move |result| match result {
            Ok(login) => {
                let resource = login.avatar().clone();
                tracing::debug!("{} logged in as {}", request.peer(), login.avatar_id());
                render_into(&request, || locate(resource, &request));
                // The session lasts as long as the request: logout when it is done.
                request.notify_finish().consume(move |_| drop(login));
            }
            Err(failure) => {
                let refused =
                    matches!(failure.find::<LoginError>(), Some(LoginError::Unauthorized));
                let answer = if refused {
                    request.set_header(header::WWW_AUTHENTICATE, challenge.as_str());
                    error_page(
                        &request,
                        StatusCode::UNAUTHORIZED,
                        "This resource needs a user name and password.",
                    )
                } else {
                    tracing::error!("login for {} failed: {failure}", request.path());
                    error_page(
                        &request,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Logins cannot be checked now.",
                    )
                };
                if let Render::Body(body) = answer {
                    request.respond(body);
                }
            }
        });
        Render::Later
    }
}
