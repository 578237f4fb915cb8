//! A reverse proxy: a resource that forwards each request to another HTTP server and
//! streams the answer back (Twisted's `twisted.web.proxy.ReverseProxyResource`).
//!
//! Both bodies stream, with flow control both ways: the request body is read from the
//! client only as fast as the upstream connection takes it, and the response body is read
//! from upstream only as fast as the client takes it. The upstream sees `X-Forwarded-For`
//! (the client's address appended to any the request had), `X-Forwarded-Host` and
//! `X-Forwarded-Proto`. Hop-by-hop fields are not forwarded either way. Upstream
//! connections come from an [`Agent`]'s pool, so they are kept alive and reused.
//!
//! ```no_run
//! use std::rc::Rc;
//! use twistor::Reactor;
//! use twistor_http::proxy::ReverseProxy;
//! use twistor_http::server::{Site, Tree};
//!
//! let reactor = Reactor::new()?;
//! let root = Tree::new();
//! root.put_child("api", Rc::new(ReverseProxy::new(&reactor, "http://127.0.0.1:9000/v1")?));
//! reactor.listen_tcp(8080, Rc::new(Site::new(reactor.clone(), Rc::new(root))))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode, Uri};
use twistor::defer::Failure;
use twistor::{Producer, Reactor};

use crate::Error;
use crate::body::BodyReceiver;
use crate::client::{Agent, AgentOptions, Body, BodyWriter, Response};
use crate::error::Lost;
use crate::proto::Framing;
use crate::server::{Render, Request, Resource, error_page};

/// Forwards requests below it to `base` (see the [module docs](self)).
#[derive(Clone)]
pub struct ReverseProxy {
    agent: Agent,
    base: Uri,
    preserve_host: bool,
}

impl ReverseProxy {
    /// A proxy to `url` (`http://host[:port][/prefix]`), with its own connection pool.
    /// A request for `/rest?q` below the resource goes to `prefix/rest?q`.
    pub fn new(reactor: &Reactor, url: &str) -> Result<ReverseProxy, Error> {
        // A proxy passes bodies and redirects through untouched.
        let options = AgentOptions {
            decompress: false,
            max_redirects: 0,
            user_agent: None,
            max_connections_per_host: 64,
            max_idle_per_host: 64,
            ..AgentOptions::default()
        };
        ReverseProxy::with_agent(Agent::with_options(reactor, options), url)
    }

    /// A proxy that uses `agent` (configure it not to decompress or follow redirects).
    pub fn with_agent(agent: Agent, url: &str) -> Result<ReverseProxy, Error> {
        let base: Uri = url
            .parse()
            .map_err(|e| Error::InvalidUrl(format!("{url:?}: {e}")))?;
        if !matches!(base.scheme_str(), Some("http" | "https")) || base.authority().is_none() {
            return Err(Error::InvalidUrl(format!("{url:?}: not an http(s) URL")));
        }
        Ok(ReverseProxy {
            agent,
            base,
            preserve_host: false,
        })
    }

    /// Sends the client's `Host` upstream instead of the upstream's own (for virtual
    /// hosts behind the proxy).
    pub fn preserve_host(mut self, yes: bool) -> ReverseProxy {
        self.preserve_host = yes;
        self
    }

    fn upstream_url(&self, request: &Request) -> String {
        let prefix = self.base.path().trim_end_matches('/');
        let mut url = format!(
            "{}://{}{prefix}",
            self.base.scheme_str().unwrap_or("http"),
            self.base.authority().map_or("", |a| a.as_str())
        );
        match request.postpath_raw() {
            Some(rest) => {
                url.push('/');
                url.push_str(rest);
            }
            None if prefix.is_empty() => url.push('/'),
            None => {}
        }
        if let Some(q) = request.query() {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    fn upstream_headers(&self, request: &Request) -> HeaderMap {
        let mut headers = without_hop_by_hop(request.headers());
        headers.remove(header::CONTENT_LENGTH);
        if !self.preserve_host {
            headers.remove(header::HOST);
        }
        if let Some(ip) = request.client_ip() {
            let forwarded = match request.header("x-forwarded-for") {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip.to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&forwarded) {
                headers.insert(HeaderName::from_static("x-forwarded-for"), v);
            }
        }
        if let Some(host) = request.headers().get(header::HOST) {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(if request.is_secure() { "https" } else { "http" }),
        );
        headers
    }
}

impl Resource for ReverseProxy {
    fn is_leaf(&self) -> bool {
        true
    }

    fn render(&self, request: &Request) -> Render {
        let url = self.upstream_url(request);
        let headers = self.upstream_headers(request);
        let body = match request.body_framing() {
            Framing::Empty => Body::Empty,
            framing => {
                let length = match framing {
                    Framing::Length(n) => Some(n),
                    _ => None,
                };
                let client = request.clone();
                Body::stream(length, move |writer| {
                    // The upstream connection's buffer paces reading from the client.
                    if let Err(e) = writer.register_producer(client.body_producer(), true) {
                        tracing::debug!("proxy: cannot pace the request body: {e}");
                    }
                    client.deliver_body(Forward { writer });
                })
            }
        };
        let client = request.clone();
        self.agent
            .request(request.method().clone(), &url, headers, body)
            .consume(move |result| match result {
                Ok(response) => relay(&client, response),
                Err(failure) => upstream_failed(&client, &failure),
            });
        Render::Later
    }

    fn allowed_methods(&self) -> Vec<http::Method> {
        Vec::new()
    }
}

/// Copies the upstream response to the client, streaming its body.
fn relay(client: &Request, response: Response) {
    if client.lost() {
        return;
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // What follows is another protocol, which this proxy does not relay: the upstream
        // connection is dropped and the client told the gateway failed.
        tracing::warn!("proxy: upstream for {} switched protocols", client.path());
        response.body_flow().stop_producing();
        if let Render::Body(body) = error_page(
            client,
            StatusCode::BAD_GATEWAY,
            "The upstream server switched protocols, which this proxy does not relay.",
        ) {
            client.respond(body);
        }
        return;
    }
    client.set_status(response.status());
    let headers = without_hop_by_hop(response.headers());
    let length = response
        .header(header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok());
    client.with_response_headers(|h| {
        for (name, value) in &headers {
            if name != header::CONTENT_LENGTH {
                h.append(name.clone(), value.clone());
            }
        }
    });
    if let Some(n) = length {
        client.set_content_length(n);
    }
    // The client's connection paces reading from upstream.
    if let Err(e) = client.register_producer(response.body_flow(), true) {
        tracing::debug!("proxy: cannot pace the response body: {e}");
    }
    let sink = Backward {
        client: client.clone(),
    };
    response.deliver_body(sink);
}

fn upstream_failed(client: &Request, failure: &Failure) {
    if client.lost() || client.finished() {
        return;
    }
    tracing::warn!("proxy: upstream for {} failed: {failure}", client.path());
    if client.started() {
        client.abort();
        return;
    }
    let status = match failure.find::<Error>() {
        Some(Error::ResponseTimeout) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    if let Render::Body(body) = error_page(client, status, "The upstream server did not answer.") {
        client.respond(body);
    }
}

/// The client's request body, on its way upstream.
struct Forward {
    writer: BodyWriter,
}

impl BodyReceiver for Forward {
    fn data_received(&mut self, data: Bytes) {
        self.writer.write(&data);
    }

    fn body_finished(&mut self, result: Result<HeaderMap, Error>) {
        self.writer.unregister_producer();
        match result {
            Ok(_) => self.writer.finish(),
            Err(e) => self.writer.fail(&e.to_string()),
        }
    }
}

/// The upstream response body, on its way to the client.
struct Backward {
    client: Request,
}

impl BodyReceiver for Backward {
    fn data_received(&mut self, data: Bytes) {
        self.client.write(&data);
    }

    fn body_finished(&mut self, result: Result<HeaderMap, Error>) {
        match result {
            Ok(_) => self.client.finish(),
            // The client went away, and the upstream body was stopped for it: routine,
            // and one warning per client that leaves would flood the log.
            Err(e @ Error::ConnectionLost(Lost::Stopped)) => {
                tracing::debug!("proxy: client for {} went away: {e}", self.client.path());
            }
            Err(e) => {
                tracing::warn!("proxy: upstream body for {} broke: {e}", self.client.path());
                self.client.abort();
            }
        }
    }
}

/// The fields of `headers` that go beyond this hop: without `Connection`, the fields it
/// names, and the other hop-by-hop fields of RFC 9110 §7.6.1.
fn without_hop_by_hop(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let hop = matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
        ) || named.iter().any(|n| n == name.as_str());
        if !hop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_stay() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        let out = without_hop_by_hop(&h);
        assert_eq!(out.len(), 1);
        assert_eq!(out["x-kept"], "yes");
    }
}
