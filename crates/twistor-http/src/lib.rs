//! HTTP/1.1 for twistor: a server and a client on the twistor reactor (Twisted's
//! `twisted.web`), over a sans-IO protocol core.
//!
//! - [`server`]: a [`Site`](server::Site) serves a tree of [`Resource`](server::Resource)s
//!   (`twisted.web.server` and `resource`), with keep-alive, pipelining, streamed bodies
//!   both ways, timeouts, bounded memory whatever the client sends, and a graceful
//!   [`drain`](server::Site::drain) for shutdown. [`static_files`] serves a directory,
//!   [`proxy`] forwards to another server.
//! - [`client`]: an [`Agent`](client::Agent) with a pool of keep-alive connections,
//!   redirects and gzip (`twisted.web.client.Agent`).
//! - [`proto`]: the sans-IO core both are built on, which parses and writes messages
//!   without touching a socket or a clock; use it to put HTTP/1.1 on a transport of your
//!   own.
//!
//! A server and a client in one program:
//!
//! ```
//! use std::rc::Rc;
//! use twistor::Reactor;
//! use twistor_http::client::Agent;
//! use twistor_http::server::{Methods, Site, Tree};
//!
//! let reactor = Reactor::new()?;
//! let root = Tree::new();
//! root.put_child("hello", Rc::new(Methods::new().get(|req| {
//!     req.set_header("content-type", "text/plain");
//!     "Hello, world!\n".into()
//! })));
//! let site = Site::new(reactor.clone(), Rc::new(root));
//! let port = reactor.listen_tcp_local(0, Rc::new(site))?.port();
//!
//! let agent = Agent::new(&reactor);
//! let body = reactor.run_until(async move {
//!     let response = agent.get(&format!("http://127.0.0.1:{port}/hello")).await?;
//!     response.read_body().await
//! })??;
//! assert_eq!(&body[..], b"Hello, world!\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A peer that breaks the rules gets the status it earned (400, 408, 413, 414, 431…) and
//! a closed connection; see [`Error`].

pub mod body;
pub mod client;
pub mod error;
pub mod proto;
pub mod proxy;
pub mod server;
mod sink;
pub mod static_files;

pub use error::Error;

/// The `http` crate this one speaks, re-exported so callers use the same version.
pub use http;

/// The `bytes` crate's `Bytes`, in which body pieces are handed out.
pub use bytes::Bytes;
