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

use twistor::endpoints::{Description, server_from_string, ssl_server_config};
use twistor::reactor::WeakReactor;
use twistor::reactor::{Phase, SystemEvent};
use twistor::tcp::ListenOptions;
use twistor::tls::ServerTlsConfig;
use twistor::{Factory, ListeningPort, Reactor, ReactorHandle};
use twistor_http::proxy::ReverseProxy;
use twistor_http::server::{
    AccessLog, AccessLogEntry, Resource, ServerOptions, Site, combined_log_line,
};
use twistor_http::static_files::StaticFile;

use crate::Failure;

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
enum Content {
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
    let content = match (&options.proxy, &options.path) {
        (Some(url), _) => Content::Proxy(url.clone()),
        (None, Some(path)) => Content::Files(path.clone()),
        (None, None) => Content::Files(PathBuf::from(".")),
    };
    let tuning = Tuning {
        access_log: !options.no_access_log,
        send_timeout: Duration::from_secs(options.send_timeout),
    };
    let reactor = crate::service_reactor()?;
    // Check everything before listening anywhere, so a typo fails fast.
    let (site, log) = build_site(&reactor, &content, tuning)?;
    if options.workers == 1 {
        // `ssl:` is read here, so its listeners offer ALPN `http/1.1`; the rest are
        // whatever endpoint types the engine knows.
        let mut tls = Vec::new();
        let mut endpoints = Vec::new();
        for text in &options.listen {
            if is_ssl(text) {
                tls.push(parse_listen(text, false)?);
            } else {
                endpoints.push(
                    server_from_string(&reactor, text)
                        .map_err(|e| Failure::Usage(e.to_string()))?,
                );
            }
        }
        let factory: Rc<dyn Factory> = Rc::new(site.clone());
        let mut ports = Vec::new();
        for listen in tls {
            ports.push(listen.start(&reactor, factory.clone())?);
        }
        for endpoint in &endpoints {
            // Listening on these endpoints completes at once; a failure is known here.
            match endpoint.listen(factory.clone()).try_result() {
                Some(Ok(port)) => ports.push(port),
                Some(Err(failure)) => return Err(Failure::Runtime(failure.to_string())),
                None => {}
            }
        }
        drain_site_on_shutdown(&reactor, ports, &site, || 0);
        let result = reactor.run().map_err(|e| Failure::Runtime(e.to_string()));
        flush_log(&log);
        return result;
    }
    let result = run_workers(&reactor, site, content, tuning, &options);
    flush_log(&log);
    result
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
    // The first worker binds first, so a port of 0 becomes the same port for all.
    let factory: Rc<dyn Factory> = Rc::new(site.clone());
    let mut bound = Vec::new();
    let mut ports = Vec::new();
    for listen in listens {
        let port = listen.port;
        let listening = listen.start(reactor, factory.clone())?;
        bound.push((listen.text, if port == 0 { listening.port() } else { port }));
        ports.push(listening);
    }
    // Worker threads whose reactor still runs (each drains on its own at shutdown).
    let running = Arc::new(AtomicUsize::new(0));
    let mut workers: Vec<(ReactorHandle, std::thread::JoinHandle<()>)> = Vec::new();
    for n in 1..options.workers {
        let (tx, rx) = mpsc::channel::<Result<ReactorHandle, String>>();
        let (content, bound, running) = (content.clone(), bound.clone(), running.clone());
        running.fetch_add(1, Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name(format!("web-worker-{n}"))
            .spawn(move || {
                worker(content, bound, tuning, tx);
                running.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(|e| Failure::Runtime(format!("cannot start a worker: {e}")))?;
        match rx.recv() {
            Ok(Ok(handle)) => workers.push((handle, thread)),
            Ok(Err(e)) => {
                stop_workers(workers);
                return Err(Failure::Runtime(e));
            }
            Err(_) => {
                stop_workers(workers);
                return Err(Failure::Runtime("a worker died while starting".into()));
            }
        }
    }
    tracing::info!("serving with {} workers", options.workers);
    // At shutdown the workers are told to stop (each closes its listeners and drains), and
    // this one waits for its own connections and for them.
    let handles: Vec<ReactorHandle> = workers.iter().map(|(h, _)| h.clone()).collect();
    drain_site_on_shutdown(reactor, ports, &site, move || {
        running.load(Ordering::SeqCst)
    });
    reactor.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
        for handle in &handles {
            let _ = handle.call_from_thread(|r| r.stop());
        }
        None
    });
    let result = reactor.run().map_err(|e| Failure::Runtime(e.to_string()));
    // Whatever is left (the grace period passed, or a second signal came) is cut.
    stop_workers(workers);
    result
}

/// Graceful shutdown for a site: its listeners close, its idle connections close and busy
/// ones finish their response ([`Site::drain`]), and shutdown waits for them (and for
/// `elsewhere()` more, such as worker threads still draining) up to the grace period.
fn drain_site_on_shutdown(
    reactor: &Reactor,
    ports: Vec<ListeningPort>,
    site: &Site,
    elsewhere: impl Fn() -> usize + 'static,
) {
    let (draining, counted) = (site.clone(), site.clone());
    crate::shutdown::drain_on_shutdown(
        reactor,
        ports,
        move || {
            // Completion is watched through the connection count below.
            drop(draining.drain());
        },
        move || counted.connection_count() + elsewhere(),
    );
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
    let factory: Rc<dyn Factory> = Rc::new(site.clone());
    let mut ports = Vec::new();
    for (text, port) in &bound {
        let started = parse_listen(text, true).and_then(|mut listen| {
            listen.port = *port;
            listen.start(&reactor, factory.clone())
        });
        match started {
            Ok(listening) => ports.push(listening),
            Err(Failure::Usage(e) | Failure::Runtime(e)) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
    drain_site_on_shutdown(&reactor, ports, &site, || 0);
    let _ = tx.send(Ok(reactor.handle()));
    if let Err(e) = reactor.run() {
        tracing::error!("worker stopped: {e}");
    }
    flush_log(&log);
}

fn stop_workers(workers: Vec<(ReactorHandle, std::thread::JoinHandle<()>)>) {
    for (handle, _) in &workers {
        let _ = handle.call_from_thread(|r| r.stop_now());
    }
    for (_, thread) in workers {
        let _ = thread.join();
    }
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
    /// Listens; returns the listening port.
    fn start(&self, reactor: &Reactor, factory: Rc<dyn Factory>) -> Result<ListeningPort, Failure> {
        let port = match &self.tls {
            Some(config) => {
                reactor.listen_ssl_with(self.port, factory, config.clone(), self.options.clone())
            }
            None => reactor.listen_tcp_with(self.port, factory, self.options.clone()),
        };
        port.map_err(|e| Failure::Runtime(e.to_string()))
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

/// The site for `content`, and its access log (to flush when the reactor stops).
fn build_site(
    reactor: &Reactor,
    content: &Content,
    tuning: Tuning,
) -> Result<(Site, Option<Rc<StdoutLog>>), Failure> {
    let root: Rc<dyn Resource> = match content {
        Content::Files(path) => Rc::new(
            StaticFile::new(path)
                .map_err(|e| Failure::Usage(format!("cannot serve {}: {e}", path.display())))?,
        ),
        Content::Proxy(url) => {
            Rc::new(ReverseProxy::new(reactor, url).map_err(|e| Failure::Usage(e.to_string()))?)
        }
    };
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
