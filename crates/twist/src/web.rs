//! `twist web`: serve a directory, or reverse-proxy to another server, over HTTP.
//!
//! ```text
//! twist web --listen tcp:8080 --path .
//! twist web --listen tcp:8080 --proxy http://127.0.0.1:9000/
//! twist web --listen tcp:8080 --path /srv/www --workers 4
//! ```

use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use twistor::application::{Service, StreamServerEndpointService};
use twistor::defer::Deferred;
use twistor::endpoints::{
    Description, ServerEndpoint, SslServerEndpoint, TcpServerEndpoint, server_from_string,
    ssl_server_config,
};
use twistor::reactor::WeakReactor;
use twistor::tcp::ListenOptions;
use twistor::tls::ServerTlsConfig;
use twistor::{Factory, Reactor, ReactorHandle};
use twistor_http::proxy::ReverseProxy;
use twistor_http::server::{
    AccessLog, AccessLogEntry, Resource, ServerOptions, Site, combined_log_line,
};
use twistor_http::static_files::StaticFile;

use twistor_cred::checkers::PasswordFile;
use twistor_cred::{AvatarId, Login, Portal, Realm};
use twistor_http::server::BasicAuth;

use crate::Failure;
use crate::serve::Server;

/// Options of `twist web`.
#[derive(clap::Args)]
pub struct Options {
    /// Where to listen, as an endpoint description (repeatable), e.g. `tcp:8080`,
    /// `tcp:8080:interface=127.0.0.1`, `tcp6:8080`, `unix:/run/web.sock`,
    /// `ssl:8443:privateKey=key.pem:certKey=cert.pem` (HTTPS, ALPN `http/1.1`).
    #[arg(
        long = "listen",
        value_name = "DESCRIPTION",
        default_value = "tcp:8080"
    )]
    listen: Vec<String>,

    /// Serve the files of this directory (the default, with `.`).
    #[arg(long, value_name = "DIR", conflicts_with = "proxy")]
    path: Option<PathBuf>,

    /// Forward every request to this URL instead (a reverse proxy), e.g.
    /// `http://127.0.0.1:9000/`.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,

    /// Run this many reactors, one per thread, each with its own `SO_REUSEPORT` listener
    /// (tcp, tcp6 and ssl descriptions only).
    #[arg(long, value_name = "N", default_value_t = 1)]
    workers: usize,

    /// Ask for a user name and password (HTTP Basic) and check them against this file of
    /// `user:HASH` lines (docs/users-file.md: `$6$`, `$2b$`/`$2y$` or `$argon2id$` hashes,
    /// reloaded when it changes). Serve it over `ssl:`: Basic sends passwords as typed.
    /// With `--proxy`, the `Authorization` header goes on to the backend (as with nginx).
    /// With `--workers`, each worker counts failed logins on its own.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,

    /// The name of the protected space, shown by browsers when they ask for a login.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "twist web",
        requires = "users"
    )]
    auth_realm: String,

    /// Do not write the access log (combined log format) to standard output.
    #[arg(long)]
    no_access_log: bool,

    /// Drop a client that reads none of its responses for this many seconds (nginx's
    /// `send_timeout`). Meanwhile, its next pipelined request waits once 64 KiB of
    /// responses are unsent.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    send_timeout: u64,
}

/// What each worker serves; `Send`, so each thread builds its own site from it.
#[derive(Clone)]
struct Content {
    serve: Serve,
    /// The `--users` file and the `--auth-realm`, when logins are asked for.
    users: Option<(PathBuf, String)>,
}

/// Files or a proxy.
#[derive(Clone)]
enum Serve {
    Files(PathBuf),
    Proxy(String),
}

/// The site's settings from the command line; `Send`, like [`Content`].
#[derive(Clone, Copy)]
struct Tuning {
    access_log: bool,
    send_timeout: Duration,
}

/// Checks the options, listens everywhere, then runs until SIGINT or SIGTERM.
pub fn run(options: Options) -> Result<(), Failure> {
    if options.workers == 0 {
        return Err(Failure::Usage("--workers must be at least 1".into()));
    }
    let serve = match (&options.proxy, &options.path) {
        (Some(url), _) => Serve::Proxy(url.clone()),
        (None, Some(path)) => Serve::Files(path.clone()),
        (None, None) => Serve::Files(PathBuf::from(".")),
    };
    let content = Content {
        serve,
        users: options
            .users
            .clone()
            .map(|path| (path, options.auth_realm.clone())),
    };
    if content.users.is_some() && options.listen.iter().any(|l| !is_ssl(l)) {
        tracing::warn!(
            "--users with a listener that is not ssl: passwords cross the network in the clear"
        );
    }
    let tuning = Tuning {
        access_log: !options.no_access_log,
        send_timeout: Duration::from_secs(options.send_timeout),
    };
    let reactor = crate::service_reactor()?;
    // Everything is checked before anything listens, so a typo fails fast.
    let (site, log) = build_site(&reactor, &content, tuning)?;
    if options.workers == 1 {
        // `ssl:` is read here, so its listeners offer ALPN `http/1.1`; the rest are
        // whatever endpoint types the engine knows.
        let mut endpoints = Vec::new();
        for text in &options.listen {
            endpoints.push(if is_ssl(text) {
                parse_listen(text, false)?.endpoint(&reactor)
            } else {
                server_from_string(&reactor, text).map_err(|e| Failure::Usage(e.to_string()))?
            });
        }
        let server = site_server(&reactor, &site, || 0);
        let factory: Rc<dyn Factory> = Rc::new(site.clone());
        for endpoint in endpoints {
            server.listen(endpoint, factory.clone());
        }
        let result = server.run();
        flush_log(&log);
        return result;
    }
    let result = run_workers(&reactor, site, content, tuning, &options);
    flush_log(&log);
    result
}

/// The services of a site: shutdown closes its listeners, closes its idle connections and
/// lets busy ones finish their response ([`Site::drain`]), and waits for them (and for
/// `elsewhere()` more, such as worker threads still draining) up to the grace period.
fn site_server(reactor: &Reactor, site: &Site, elsewhere: impl Fn() -> usize + 'static) -> Server {
    let (draining, counted) = (site.clone(), site.clone());
    Server::new(
        reactor,
        move || counted.connection_count() + elsewhere(),
        // Completion is watched through the connection count.
        move || drop(draining.drain()),
    )
}

/// One reactor per worker, each on its own thread with its own listeners sharing the
/// ports through `SO_REUSEPORT`; this thread runs the first and stops the others when it
/// stops.
fn run_workers(
    reactor: &Reactor,
    site: Site,
    content: Content,
    tuning: Tuning,
    options: &Options,
) -> Result<(), Failure> {
    let listens = options
        .listen
        .iter()
        .map(|text| parse_listen(text, true))
        .collect::<Result<Vec<_>, _>>()?;
    // Worker threads whose reactor still runs (each drains on its own at shutdown).
    let running = Arc::new(AtomicUsize::new(0));
    let counted = running.clone();
    let server = site_server(reactor, &site, move || counted.load(Ordering::SeqCst));
    let factory: Rc<dyn Factory> = Rc::new(site.clone());
    let listening = listens
        .into_iter()
        .map(|listen| {
            let service = server.listen(listen.endpoint(reactor), factory.clone());
            (listen, service)
        })
        .collect();
    let workers = Rc::new(Workers {
        count: options.workers,
        content,
        tuning,
        listening,
        running,
        threads: RefCell::new(Vec::new()),
    });
    // Started after the listeners (the first worker binds first, so a port of 0 becomes
    // the same port for all), stopped before them.
    server.add(workers.clone());
    let result = server.run();
    // Whatever is left (the grace period passed, or a second signal came) is cut.
    workers.stop_all();
    result
}

/// The worker threads beyond the first, as a service: started once this thread listens,
/// told to stop (each closes its listeners and drains) when the server stops.
struct Workers {
    count: usize,
    content: Content,
    tuning: Tuning,
    /// This thread's listeners, and what they were made from.
    listening: Vec<(Listen, Rc<StreamServerEndpointService>)>,
    running: Arc<AtomicUsize>,
    threads: RefCell<Vec<(ReactorHandle, std::thread::JoinHandle<()>)>>,
}

impl Workers {
    fn start_one(&self, n: usize, bound: &[(String, u16)]) -> Result<(), String> {
        let (tx, rx) = mpsc::channel::<Result<ReactorHandle, String>>();
        let (content, bound, running) =
            (self.content.clone(), bound.to_vec(), self.running.clone());
        let tuning = self.tuning;
        running.fetch_add(1, Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name(format!("web-worker-{n}"))
            .spawn(move || {
                worker(content, bound, tuning, tx);
                running.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(|e| {
                self.running.fetch_sub(1, Ordering::SeqCst);
                format!("cannot start a worker: {e}")
            })?;
        match rx.recv() {
            Ok(Ok(handle)) => {
                self.threads.borrow_mut().push((handle, thread));
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err("a worker died while starting".into()),
        }
    }

    /// Stops every worker at once and waits for its thread.
    fn stop_all(&self) {
        let threads = std::mem::take(&mut *self.threads.borrow_mut());
        for (handle, _) in &threads {
            let _ = handle.call_from_thread(|r| r.stop_now());
        }
        for (_, thread) in threads {
            let _ = thread.join();
        }
    }
}

impl Service for Workers {
    fn start_service(&self) -> Result<(), twistor::defer::Failure> {
        let bound: Vec<(String, u16)> = self
            .listening
            .iter()
            .map(|(listen, service)| {
                let port = match listen.port {
                    0 => service.port().map_or(0, |p| p.port()),
                    port => port,
                };
                (listen.text.clone(), port)
            })
            .collect();
        for n in 1..self.count {
            if let Err(e) = self.start_one(n, &bound) {
                self.stop_all();
                return Err(twistor::defer::Failure::msg(e));
            }
        }
        tracing::info!("serving with {} workers", self.count);
        Ok(())
    }

    /// Tells each worker to stop; this thread's drain counts them until they have.
    fn stop_service(&self) -> Deferred<()> {
        for (handle, _) in self.threads.borrow().iter() {
            let _ = handle.call_from_thread(|r| r.stop());
        }
        Deferred::succeeded(())
    }

    fn running(&self) -> bool {
        !self.threads.borrow().is_empty()
    }
}

fn worker(
    content: Content,
    bound: Vec<(String, u16)>,
    tuning: Tuning,
    tx: mpsc::Sender<Result<ReactorHandle, String>>,
) {
    let reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Err(format!("cannot start a worker: {e}")));
            return;
        }
    };
    let (site, log) = match build_site(&reactor, &content, tuning) {
        Ok(built) => built,
        Err(Failure::Usage(e) | Failure::Runtime(e)) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let server = site_server(&reactor, &site, || 0);
    let factory: Rc<dyn Factory> = Rc::new(site.clone());
    for (text, port) in &bound {
        match parse_listen(text, true) {
            Ok(mut listen) => {
                listen.port = *port;
                server.listen(listen.endpoint(&reactor), factory.clone());
            }
            Err(Failure::Usage(e) | Failure::Runtime(e)) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
    if let Err(Failure::Usage(e) | Failure::Runtime(e)) = server.start() {
        let _ = tx.send(Err(e));
        return;
    }
    let _ = tx.send(Ok(reactor.handle()));
    if let Err(e) = reactor.run() {
        tracing::error!("worker stopped: {e}");
    }
    flush_log(&log);
}

/// A `tcp:`, `tcp6:` or `ssl:` description read by `twist web` itself: for
/// `SO_REUSEPORT` listeners (`--workers`) and for TLS with ALPN `http/1.1`.
struct Listen {
    text: String,
    port: u16,
    options: ListenOptions,
    tls: Option<ServerTlsConfig>,
}

impl Listen {
    /// The endpoint that listens as this description says.
    fn endpoint(&self, reactor: &Reactor) -> Box<dyn ServerEndpoint> {
        match &self.tls {
            Some(config) => Box::new(SslServerEndpoint::new(
                reactor,
                self.port,
                self.options.clone(),
                config.clone(),
            )),
            None => Box::new(TcpServerEndpoint::new(
                reactor,
                self.port,
                self.options.clone(),
            )),
        }
    }
}

fn is_ssl(text: &str) -> bool {
    text.split(':').next() == Some("ssl")
}

/// Reads `tcp:PORT[:interface=ADDR][:backlog=N]`, the same for `tcp6:`, and
/// `ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem][:extraCertChain=CHAIN.pem][:interface=ADDR][:backlog=N][:handshakeTimeout=SECONDS]`
/// (Twisted's `ssl:` endpoint; ALPN offers `http/1.1`).
fn parse_listen(text: &str, reuse_port: bool) -> Result<Listen, Failure> {
    let usage = |e: twistor::Error| Failure::Usage(e.to_string());
    let d = Description::parse(text).map_err(usage)?;
    let (default, tls) = match d.kind.as_str() {
        "tcp" => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), false),
        "tcp6" => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), false),
        "ssl" => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), true),
        other => {
            return Err(Failure::Usage(format!(
                "--workers needs tcp, tcp6 or ssl listeners (SO_REUSEPORT), not {other:?}"
            )));
        }
    };
    let known: &[&str] = if tls {
        &[
            "port",
            "interface",
            "backlog",
            "privateKey",
            "certKey",
            "extraCertChain",
            "handshakeTimeout",
        ]
    } else {
        &["port", "interface", "backlog"]
    };
    d.check_known(if tls { 1 } else { 3 }, known)
        .map_err(usage)?;
    let port = d.port(0, "port").map_err(usage)?;
    let interface = match d
        .arg(1, "interface")
        .filter(|_| !tls)
        .or(d.kwargs.get("interface").map(String::as_str))
    {
        None | Some("") => default,
        Some(text) => text.parse().map_err(|_| {
            Failure::Usage(format!("{text:?} in {:?} is not an IP address", d.text))
        })?,
    };
    let backlog = d
        .kwargs
        .get("backlog")
        .map(|b| b.parse::<i32>())
        .transpose()
        .map_err(|_| Failure::Usage(format!("backlog must be a number in {:?}", d.text)))?
        .or(if tls {
            None
        } else {
            d.int::<i32>(2, "backlog").map_err(usage)?
        })
        .unwrap_or(50);
    let tls = if tls {
        let config = ssl_server_config(&d).map_err(usage)?;
        Some(config.with_alpn(["http/1.1"]))
    } else {
        None
    };
    Ok(Listen {
        text: text.to_owned(),
        port,
        options: ListenOptions::default()
            .interface(interface)
            .backlog(backlog.max(1))
            .reuse_port(reuse_port),
        tls,
    })
}

/// The realm of `twist web --users`: everyone who logs in sees the same tree.
struct Everyone(Rc<dyn Resource>);

impl Realm<Rc<dyn Resource>> for Everyone {
    fn request_avatar(&self, id: &AvatarId) -> Deferred<Login<Rc<dyn Resource>>> {
        Deferred::succeeded(Login::new(id.clone(), self.0.clone()))
    }
}

/// The site for `content`, and its access log (to flush when the reactor stops).
fn build_site(
    reactor: &Reactor,
    content: &Content,
    tuning: Tuning,
) -> Result<(Site, Option<Rc<StdoutLog>>), Failure> {
    let mut root: Rc<dyn Resource> = match &content.serve {
        Serve::Files(path) => Rc::new(
            StaticFile::new(path)
                .map_err(|e| Failure::Usage(format!("cannot serve {}: {e}", path.display())))?,
        ),
        Serve::Proxy(url) => {
            Rc::new(ReverseProxy::new(reactor, url).map_err(|e| Failure::Usage(e.to_string()))?)
        }
    };
    if let Some((users, realm)) = &content.users {
        let checker =
            PasswordFile::open(reactor, users).map_err(|e| Failure::Usage(e.to_string()))?;
        let portal = Portal::new(Everyone(root), reactor.clone());
        portal.register_checker(checker);
        root = Rc::new(BasicAuth::new(Rc::new(portal), realm));
    }
    let mut options = ServerOptions::default();
    options.send_timeout = tuning.send_timeout;
    let stdout_log = tuning.access_log.then(|| StdoutLog::new(reactor));
    if let Some(l) = &stdout_log {
        options.access_log = Some(l.clone());
    }
    Ok((
        Site::with_options(reactor.clone(), root, options),
        stdout_log,
    ))
}

fn flush_log(log: &Option<Rc<StdoutLog>>) {
    if let Some(log) = log {
        log.flush();
    }
}

/// The access log on standard output: lines gather in a buffer written once per turn of
/// the reactor (or when it grows large), so a busy server makes one `write` for many
/// requests, and an idle one shows each request at once.
struct StdoutLog {
    buf: RefCell<String>,
    scheduled: Cell<bool>,
    reactor: WeakReactor,
    me: Weak<StdoutLog>,
}

impl StdoutLog {
    fn new(reactor: &Reactor) -> Rc<StdoutLog> {
        Rc::new_cyclic(|me| StdoutLog {
            buf: RefCell::new(String::new()),
            scheduled: Cell::new(false),
            reactor: reactor.downgrade(),
            me: me.clone(),
        })
    }

    fn flush(&self) {
        self.scheduled.set(false);
        let text = std::mem::take(&mut *self.buf.borrow_mut());
        if text.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

impl AccessLog for StdoutLog {
    fn log(&self, entry: &AccessLogEntry<'_>) {
        {
            let mut buf = self.buf.borrow_mut();
            buf.push_str(&combined_log_line(entry));
            buf.push('\n');
            if buf.len() < 64 * 1024 && self.scheduled.get() {
                return;
            }
        }
        if self.buf.borrow().len() >= 64 * 1024 {
            self.flush();
            return;
        }
        let (Some(reactor), Some(me)) = (self.reactor.upgrade(), self.me.upgrade()) else {
            self.flush();
            return;
        };
        self.scheduled.set(true);
        reactor.call_later(Duration::ZERO, move || me.flush());
    }
}

impl Drop for StdoutLog {
    fn drop(&mut self) {
        self.flush();
    }
}
