//! Resources: what a [`Site`](super::Site) serves, found by walking a tree one path segment
//! at a time (Twisted's `twisted.web.resource`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use twistor::defer::Deferred;

use super::Request;

/// What rendering a resource gives back.
pub enum Render {
    /// The whole body, now. The response is sent with this status and headers set on the
    /// request and a `Content-Length`.
    Body(Bytes),
    /// The resource answers later, through the [`Request`] it kept: `write`… then `finish`
    /// (Twisted's `NOT_DONE_YET`). Until then later pipelined requests wait their turn.
    Later,
    /// The body comes when this Deferred fires (e.g. one made by `Reactor::spawn` from an
    /// `async` block). A failure becomes a 500 response if nothing was sent yet, else
    /// the connection is aborted; if the client goes away first, the Deferred is cancelled.
    Deferred(Deferred<Bytes>),
}

impl From<Bytes> for Render {
    fn from(body: Bytes) -> Render {
        Render::Body(body)
    }
}

impl From<&'static str> for Render {
    fn from(body: &'static str) -> Render {
        Render::Body(Bytes::from_static(body.as_bytes()))
    }
}

impl From<&'static [u8]> for Render {
    fn from(body: &'static [u8]) -> Render {
        Render::Body(Bytes::from_static(body))
    }
}

impl From<String> for Render {
    fn from(body: String) -> Render {
        Render::Body(Bytes::from(body))
    }
}

impl From<Vec<u8>> for Render {
    fn from(body: Vec<u8>) -> Render {
        Render::Body(Bytes::from(body))
    }
}

impl From<Deferred<Bytes>> for Render {
    fn from(body: Deferred<Bytes>) -> Render {
        Render::Deferred(body)
    }
}

/// Something a site serves: a page, a directory of files, a proxy, or an inner node of the
/// URL tree (Twisted's `IResource`).
///
/// The site finds the resource for a request by starting at the root and, for each
/// segment of the path (percent-decoded), asking the current resource for its
/// [`child`](Resource::child), until a segment has no child (404) or a resource says it
/// [`is_leaf`](Resource::is_leaf) (it handles everything below it itself; the remaining
/// segments are in [`Request::postpath`]). Then it calls [`render`](Resource::render),
/// whose default picks `render_get`, `render_post`… by method.
///
/// A resource that answers a few methods, each its own way, is best made with
/// [`Methods`]: it knows which methods it has, so its `405` and `OPTIONS` answers say so
/// with no more code. (Rust cannot see which `render_*` methods an `impl` overrides, as
/// Twisted sees a class's `render_*`, so a resource that implements them itself must list
/// them in [`allowed_methods`](Resource::allowed_methods) too.)
///
/// ```
/// use std::rc::Rc;
/// use twistor_http::server::{Render, Request, Resource, Tree};
///
/// struct Hello;
/// impl Resource for Hello {
///     fn is_leaf(&self) -> bool {
///         true
///     }
///     fn render_get(&self, request: &Request) -> Render {
///         request.set_header("content-type", "text/plain");
///         "hello\n".into()
///     }
/// }
///
/// let root = Tree::new();
/// root.put_child("hello", Rc::new(Hello));
/// ```
pub trait Resource: 'static {
    /// The child for one path segment (already percent-decoded), or `None` for 404
    /// (Twisted's `getChild`). The segment after a trailing slash is empty.
    fn child(&self, _segment: &[u8], _request: &Request) -> Option<Rc<dyn Resource>> {
        None
    }

    /// Whether this resource renders every path below it itself (Twisted's `isLeaf`).
    fn is_leaf(&self) -> bool {
        false
    }

    /// Renders the response. The default dispatches on the method to the `render_*`
    /// methods, and answers others with 405.
    fn render(&self, request: &Request) -> Render {
        let method = request.method();
        if method == Method::GET {
            self.render_get(request)
        } else if method == Method::HEAD {
            self.render_head(request)
        } else if method == Method::POST {
            self.render_post(request)
        } else if method == Method::PUT {
            self.render_put(request)
        } else if method == Method::DELETE {
            self.render_delete(request)
        } else if method == Method::PATCH {
            self.render_patch(request)
        } else if method == Method::OPTIONS {
            self.render_options(request)
        } else {
            method_not_allowed(request, &self.allowed_methods())
        }
    }

    /// Renders a `GET`. The default is 405.
    fn render_get(&self, request: &Request) -> Render {
        method_not_allowed(request, &self.allowed_methods())
    }

    /// Renders a `HEAD`. The default renders a `GET`; the body is not sent, its length is.
    fn render_head(&self, request: &Request) -> Render {
        self.render_get(request)
    }

    /// Renders a `POST`. The default is 405.
    fn render_post(&self, request: &Request) -> Render {
        method_not_allowed(request, &self.allowed_methods())
    }

    /// Renders a `PUT`. The default is 405.
    fn render_put(&self, request: &Request) -> Render {
        method_not_allowed(request, &self.allowed_methods())
    }

    /// Renders a `DELETE`. The default is 405.
    fn render_delete(&self, request: &Request) -> Render {
        method_not_allowed(request, &self.allowed_methods())
    }

    /// Renders a `PATCH`. The default is 405.
    fn render_patch(&self, request: &Request) -> Render {
        method_not_allowed(request, &self.allowed_methods())
    }

    /// Renders an `OPTIONS`. The default answers 204 with `Allow`.
    fn render_options(&self, request: &Request) -> Render {
        options_answer(request, &self.allowed_methods())
    }

    /// The methods this resource renders, for the `Allow` field of 405 and `OPTIONS`
    /// answers. The default is `GET` and `HEAD`; override it along with the `render_*`
    /// methods, or build the resource with [`Methods`], which derives it.
    fn allowed_methods(&self) -> Vec<Method> {
        vec![Method::GET, Method::HEAD]
    }
}

/// A resource made of one function per method: its `Allow` field (in 405 answers, and
/// in the `OPTIONS` answer it gives by itself) lists exactly the methods it was given,
/// `HEAD` when it has `GET` (which then renders `HEAD`, without the body), and `OPTIONS`.
///
/// ```
/// use std::rc::Rc;
/// use twistor_http::server::{Methods, Tree};
///
/// let root = Tree::new();
/// // GET /submit answers 405 with `Allow: POST, OPTIONS`.
/// root.put_child(
///     "submit",
///     Rc::new(Methods::new().post(|req| format!("{} bytes\n", req.path().len()).into())),
/// );
/// ```
#[derive(Default)]
pub struct Methods {
    handlers: Vec<(Method, RenderFn)>,
    leaf: bool,
}

/// How [`Methods`] renders one method.
type RenderFn = Box<dyn Fn(&Request) -> Render>;

impl Methods {
    /// A resource with no methods yet (it answers everything but `OPTIONS` with 405).
    pub fn new() -> Methods {
        Methods::default()
    }

    /// Renders `method` with `render` (replacing what it had for that method).
    pub fn on(mut self, method: Method, render: impl Fn(&Request) -> Render + 'static) -> Methods {
        self.handlers.retain(|(m, _)| *m != method);
        self.handlers.push((method, Box::new(render)));
        self
    }

    /// Renders `GET` (and so `HEAD`) with `render`.
    pub fn get(self, render: impl Fn(&Request) -> Render + 'static) -> Methods {
        self.on(Method::GET, render)
    }

    /// Renders `POST` with `render`.
    pub fn post(self, render: impl Fn(&Request) -> Render + 'static) -> Methods {
        self.on(Method::POST, render)
    }

    /// Renders `PUT` with `render`.
    pub fn put(self, render: impl Fn(&Request) -> Render + 'static) -> Methods {
        self.on(Method::PUT, render)
    }

    /// Renders `DELETE` with `render`.
    pub fn delete(self, render: impl Fn(&Request) -> Render + 'static) -> Methods {
        self.on(Method::DELETE, render)
    }

    /// Renders `PATCH` with `render`.
    pub fn patch(self, render: impl Fn(&Request) -> Render + 'static) -> Methods {
        self.on(Method::PATCH, render)
    }

    /// Makes it render every path below it too (Twisted's `isLeaf`); by default a path
    /// below it is 404.
    pub fn leaf(mut self, yes: bool) -> Methods {
        self.leaf = yes;
        self
    }

    fn handler(&self, method: &Method) -> Option<&dyn Fn(&Request) -> Render> {
        self.handlers
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, render)| &**render)
    }
}

impl Resource for Methods {
    fn is_leaf(&self) -> bool {
        self.leaf
    }

    fn render(&self, request: &Request) -> Render {
        let method = request.method();
        if let Some(render) = self.handler(method) {
            return render(request);
        }
        if *method == Method::HEAD
            && let Some(render) = self.handler(&Method::GET)
        {
            return render(request);
        }
        if *method == Method::OPTIONS {
            return options_answer(request, &self.allowed_methods());
        }
        method_not_allowed(request, &self.allowed_methods())
    }

    fn allowed_methods(&self) -> Vec<Method> {
        let mut allowed = Vec::with_capacity(self.handlers.len() + 2);
        for (method, _) in &self.handlers {
            allowed.push(method.clone());
            if *method == Method::GET && self.handler(&Method::HEAD).is_none() {
                allowed.push(Method::HEAD);
            }
        }
        if self.handler(&Method::OPTIONS).is_none() {
            allowed.push(Method::OPTIONS);
        }
        allowed
    }
}

/// Answers 405 with an `Allow` field naming `allowed`.
pub fn method_not_allowed(request: &Request, allowed: &[Method]) -> Render {
    request.set_header(header::ALLOW, allow_value(allowed));
    error_page(
        request,
        StatusCode::METHOD_NOT_ALLOWED,
        "This resource does not support that method.",
    )
}

/// 204 with an `Allow` field naming `allowed`.
fn options_answer(request: &Request, allowed: &[Method]) -> Render {
    request.set_status(StatusCode::NO_CONTENT);
    request.set_header(header::ALLOW, allow_value(allowed));
    Render::Body(Bytes::new())
}

fn allow_value(allowed: &[Method]) -> HeaderValue {
    let text = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sets `status` and returns a small HTML page saying it, with `detail` (escaped) below
/// the title (Twisted's `ErrorPage`).
pub fn error_page(request: &Request, status: StatusCode, detail: &str) -> Render {
    request.set_status(status);
    request.set_header(header::CONTENT_TYPE, "text/html; charset=utf-8");
    let title = format!(
        "{} {}",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    Render::Body(Bytes::from(format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{}</p>\n</body></html>\n",
        escape_html(detail)
    )))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The resource for paths with nothing behind them: 404 (Twisted's `NoResource`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NotFound;

impl Resource for NotFound {
    fn is_leaf(&self) -> bool {
        true
    }

    fn render(&self, request: &Request) -> Render {
        error_page(request, StatusCode::NOT_FOUND, "No such child resource.")
    }
}

/// An inner node of the URL tree: named children, and optionally a resource of its own
/// (Twisted's plain `Resource` with `putChild`).
///
/// A request for the node's own path renders its own resource (404 without one); the
/// child named `""` serves the path with a trailing slash.
///
/// ```
/// use std::rc::Rc;
/// use twistor_http::server::{handler, Tree};
///
/// let root = Tree::new();
/// root.put_child("", handler(|_req| "home\n".into()));
/// let api = Rc::new(Tree::new());
/// api.put_child("ping", handler(|_req| "pong\n".into()));
/// root.put_child("api", api);
/// ```
#[derive(Default)]
pub struct Tree {
    children: RefCell<Children>,
    own: Option<Rc<dyn Resource>>,
}

type Children = HashMap<Box<[u8]>, Rc<dyn Resource>>;

impl Tree {
    /// A node with no children that answers its own path with 404.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// A node that renders `own` for its own path.
    pub fn with_resource(own: Rc<dyn Resource>) -> Tree {
        Tree {
            children: RefCell::default(),
            own: Some(own),
        }
    }

    /// Adds (or replaces) the child for one path segment (Twisted's `putChild`).
    pub fn put_child(&self, segment: impl AsRef<[u8]>, child: Rc<dyn Resource>) {
        self.children
            .borrow_mut()
            .insert(segment.as_ref().into(), child);
    }

    /// Removes a child; returns it.
    pub fn remove_child(&self, segment: impl AsRef<[u8]>) -> Option<Rc<dyn Resource>> {
        self.children.borrow_mut().remove(segment.as_ref())
    }
}

impl Resource for Tree {
    fn child(&self, segment: &[u8], _request: &Request) -> Option<Rc<dyn Resource>> {
        self.children.borrow().get(segment).cloned()
    }

    fn render(&self, request: &Request) -> Render {
        match &self.own {
            Some(own) => own.render(request),
            None => NotFound.render(request),
        }
    }
}

/// A resource made from a function of the request, for those who want no tree: it
/// handles its path and everything below it, for every method.
///
/// ```
/// use twistor_http::server::{handler, Render};
///
/// let hello = handler(|req| {
///     req.set_header("content-type", "text/plain");
///     format!("you asked for {}\n", req.path()).into()
/// });
/// ```
pub fn handler<F>(f: F) -> Rc<dyn Resource>
where
    F: Fn(&Request) -> Render + 'static,
{
    Rc::new(Handler(f))
}

struct Handler<F>(F);

impl<F: Fn(&Request) -> Render + 'static> Resource for Handler<F> {
    fn is_leaf(&self) -> bool {
        true
    }

    fn render(&self, request: &Request) -> Render {
        (self.0)(request)
    }
}
