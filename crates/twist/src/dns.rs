//! `twist dns`: an authoritative DNS server for zone files, a secondary for zones
//! transferred from a primary, and a forwarder (or a recursive resolver, from the root
//! servers down) with a cache for every other name.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use twistor_dns::client::{Resolver, ResolverConfig};
use twistor_dns::forward::{Forwarder, Upstream};
use twistor_dns::notify::notify;
use twistor_dns::proto::authority::Catalog;
use twistor_dns::proto::zone::Zone;
use twistor_dns::proto::zonefile::parse_zone_file;
use twistor_dns::recursive::Recursive;
use twistor_dns::secondary::{Secondary, serial_newer};
use twistor_dns::server::{DnsServer, DnsService, ServerOptions};
use twistor_dns::system::Hosts;
use twistor_dns::wire::rr::rdata::tsig::TsigAlgorithm;
use twistor_dns::wire::rr::{Name, TSigner};

use crate::Failure;
use crate::serve::{Server, sources};

/// Options of `twist dns`.
#[derive(clap::Args)]
pub struct Options {
    /// The port to serve on, over UDP and TCP both (0: one the system picks).
    #[arg(long, default_value_t = 10053)]
    port: u16,

    /// The address to serve on (`::` for IPv6).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    interface: IpAddr,

    /// A BIND-format zone file to serve authoritatively (repeatable). The zone's name is
    /// its `$ORIGIN`, or the owner of its SOA record.
    #[arg(long = "zone", value_name = "FILE")]
    zones: Vec<PathBuf>,

    /// Serve a zone transferred (AXFR) from a primary, refreshed on its SOA timers and on
    /// NOTIFY (repeatable), e.g. `example.com@192.0.2.1:53`.
    #[arg(long = "secondary", value_name = "ZONE@HOST:PORT")]
    secondaries: Vec<String>,

    /// Answer names outside the zones by asking this server (repeatable, tried in turn).
    #[arg(long = "forward", value_name = "HOST:PORT")]
    forwards: Vec<SocketAddr>,

    /// Answer names outside the zones by recursion from the root servers.
    #[arg(long)]
    recursive: bool,

    /// Cache the answers of forwarding and recursion.
    #[arg(long)]
    cache: bool,

    /// Answer the names in this hosts file (A, AAAA) before forwarding.
    #[arg(long, value_name = "FILE")]
    hosts: Option<PathBuf>,

    /// Allow zone transfers (AXFR) to clients in this network (repeatable), e.g.
    /// `192.0.2.0/24` or `127.0.0.1/32`. None by default, loopback included.
    #[arg(long = "allow-axfr", value_name = "CIDR")]
    allow_axfr: Vec<String>,

    /// Send a NOTIFY to this secondary (repeatable, port 53 by default) for each zone when
    /// it is loaded, reloaded (SIGHUP re-reads the zone files) or transferred.
    #[arg(long = "notify", value_name = "ADDRESS[:PORT]", value_parser = parse_address)]
    notify: Vec<SocketAddr>,

    /// A TSIG key (repeatable), as dig's `-y`: `[ALGORITHM:]NAME:BASE64-SECRET`, the
    /// algorithm hmac-sha256 (default), hmac-sha384 or hmac-sha512. Requests signed with
    /// it are verified and answered signed, and may transfer zones from any address.
    #[arg(long = "tsig-key", value_name = "[ALG:]NAME:SECRET")]
    tsig_keys: Vec<String>,

    /// UDP responses allowed per second per client network and kind of answer (0: no
    /// limit), as NSD's `rrl-ratelimit`.
    #[arg(long, value_name = "N", default_value_t = twistor_dns::proto::rrl::DEFAULT_RATE)]
    rate_limit: u32,
}

/// Loads the zones, then serves until SIGINT or SIGTERM.
pub fn run(options: Options) -> Result<(), Failure> {
    let secondaries = options
        .secondaries
        .iter()
        .map(|text| parse_secondary(text))
        .collect::<Result<Vec<_>, _>>()?;
    if options.recursive && !options.forwards.is_empty() {
        return Err(Failure::Usage(
            "--recursive and --forward exclude each other".into(),
        ));
    }
    let hosts = match &options.hosts {
        Some(path) => Hosts::load(path).map_err(|e| Failure::Usage(e.to_string()))?,
        None => Hosts::new(),
    };
    let (mut catalog, files) = load_catalog(&options)?;
    let recursing = options.recursive || !options.forwards.is_empty() || options.hosts.is_some();
    catalog.set_recursion(recursing);
    let reactor = crate::service_reactor()?;
    let catalog = Rc::new(RefCell::new(catalog));
    let server_options = ServerOptions {
        rate_limit: options.rate_limit,
        ..ServerOptions::default()
    };
    let dns = DnsServer::new(&reactor, catalog.clone(), server_options);
    if recursing {
        let forwarding = (!options.forwards.is_empty()).then(|| {
            let resolver = Resolver::new(&reactor, ResolverConfig::new(options.forwards.clone()));
            let resolver = if options.cache {
                resolver.with_cache(CACHE_SIZE)
            } else {
                resolver
            };
            Rc::new(resolver) as Rc<dyn Upstream>
        });
        let recursion = options.recursive.then(|| {
            let resolver = Recursive::from_root_hints(&reactor);
            let resolver = if options.cache {
                resolver.with_cache(CACHE_SIZE)
            } else {
                resolver
            };
            Rc::new(resolver) as Rc<dyn Upstream>
        });
        let upstream = forwarding.or(recursion);
        dns.set_recursor(Rc::new(Forwarder::new(hosts, upstream)));
    }
    let server = Server::new(&reactor, sources(&reactor), || {});
    let notify_all = {
        let reactor = reactor.downgrade();
        let targets = options.notify.clone();
        Rc::new(move |zone: &Name| {
            if let Some(reactor) = reactor.upgrade()
                && !targets.is_empty()
            {
                notify(&reactor, zone, &targets).consume(|_| ());
            }
        })
    };
    let mut zones = Vec::new();
    for (zone, primary) in secondaries {
        let secondary = Secondary::new(&reactor, catalog.clone(), zone.clone(), primary);
        let notify_all = notify_all.clone();
        secondary.on_transfer(move |zone| notify_all(zone));
        zones.push(secondary.clone());
        server.add(secondary);
    }
    // The zone files' zones: NOTIFY once serving, and again when SIGHUP reloads a newer
    // serial.
    {
        let notify_all = notify_all.clone();
        let names: Vec<Name> = files.iter().map(|(_, name)| name.clone()).collect();
        reactor.call_when_running(move || names.iter().for_each(|name| notify_all(name)));
    }
    {
        let catalog = catalog.clone();
        let notify_all = notify_all.clone();
        reactor
            .add_signal_handler(libc::SIGHUP, move || {
                for (path, name) in &files {
                    reload(&catalog, path, name, &*notify_all);
                }
            })
            .map_err(|e| Failure::Runtime(format!("cannot handle SIGHUP: {e}")))?;
    }
    dns.on_notify(move |name, source| {
        for zone in &zones {
            if zone.zone().eq_ignore_root(&name) {
                zone.notified(source);
            }
        }
    });
    let service = Rc::new(DnsService::new(
        dns,
        SocketAddr::new(options.interface, options.port),
    ));
    server.add(service);
    server.run()
}

/// Re-reads a zone file (on SIGHUP): a newer serial replaces the zone and is notified; a
/// broken file or an unchanged serial keeps the zone served as it was, with a warning.
fn reload(catalog: &RefCell<Catalog>, path: &Path, name: &Name, notify_all: &dyn Fn(&Name)) {
    let zone = match parse_zone_file(path, None).and_then(Zone::new) {
        Ok(zone) => zone,
        Err(err) => {
            tracing::warn!("not reloaded: {err}");
            return;
        }
    };
    if !zone.origin().eq_ignore_root(name) {
        tracing::warn!(
            "not reloaded: {} is now the zone {}",
            path.display(),
            zone.origin()
        );
        return;
    }
    let old = catalog.borrow().zone(name).map(Zone::serial);
    match old {
        Some(old) if !serial_newer(zone.serial(), old) => {
            tracing::warn!(
                "{} not reloaded: serial {} is not newer than {old}",
                path.display(),
                zone.serial()
            );
        }
        _ => {
            tracing::info!(
                "zone {name} reloaded from {}: serial {}",
                path.display(),
                zone.serial()
            );
            catalog.borrow_mut().insert(zone);
            notify_all(name);
        }
    }
}

/// `ADDRESS[:PORT]`, port 53 by default.
fn parse_address(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| {
            text.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| {
            format!("expected an IP address with an optional port, e.g. 192.0.2.2:53, got {text:?}")
        })
}

/// Answers the cache keeps (`--cache`).
const CACHE_SIZE: usize = 65_536;

/// Reads every `--zone` file into a catalog, with the transfer ACL and keys; also gives
/// each file's zone name, for reloads.
fn load_catalog(options: &Options) -> Result<(Catalog, Vec<(PathBuf, Name)>), Failure> {
    let mut catalog = Catalog::new();
    let mut files = Vec::new();
    for path in &options.zones {
        let data = parse_zone_file(path, None).map_err(|e| Failure::Usage(e.to_string()))?;
        let zone =
            Zone::new(data).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        if catalog.zone(zone.origin()).is_some() {
            return Err(Failure::Usage(format!(
                "{}: the zone {} is given twice",
                path.display(),
                zone.origin()
            )));
        }
        tracing::info!(
            "zone {} from {}: {} records, serial {}",
            zone.origin(),
            path.display(),
            zone.len(),
            zone.serial()
        );
        files.push((path.clone(), zone.origin().clone()));
        catalog.insert(zone);
    }
    for text in &options.allow_axfr {
        let net = text.parse().map_err(|e| {
            Failure::Usage(format!(
                "--allow-axfr {text}: expected a network such as 192.0.2.0/24 ({e})"
            ))
        })?;
        catalog.allow_axfr(net);
    }
    for text in &options.tsig_keys {
        catalog.add_tsig_key(parse_tsig_key(text)?);
    }
    Ok((catalog, files))
}

/// `[ALGORITHM:]NAME:BASE64-SECRET`, as dig's `-y`.
fn parse_tsig_key(text: &str) -> Result<TSigner, Failure> {
    let bad = |why: &str| {
        Failure::Usage(format!(
            "--tsig-key: expected [ALGORITHM:]NAME:BASE64-SECRET, e.g. \
             hmac-sha256:transfer:c2VjcmV0LXNlY3JldC1zZWNyZXQ= ({why})"
        ))
    };
    let parts: Vec<&str> = text.split(':').collect();
    let (algorithm, name, secret) = match parts.as_slice() {
        [name, secret] => ("hmac-sha256", *name, *secret),
        [algorithm, name, secret] => (*algorithm, *name, *secret),
        _ => return Err(bad("two or three fields separated by colons")),
    };
    let algorithm = match algorithm.to_ascii_lowercase().as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => return Err(bad(&format!("unsupported algorithm {other:?}"))),
    };
    let name = Name::from_ascii(name).map_err(|e| bad(&format!("key name: {e}")))?;
    let secret = data_encoding::BASE64
        .decode(secret.as_bytes())
        .map_err(|e| bad(&format!("the secret is not base64: {e}")))?;
    if secret.is_empty() {
        return Err(bad("an empty secret"));
    }
    TSigner::new(secret, algorithm, name, 300).map_err(|e| bad(&e.to_string()))
}

/// `ZONE@HOST[:PORT]` (port 53 by default).
fn parse_secondary(text: &str) -> Result<(Name, SocketAddr), Failure> {
    let bad = |why: &str| {
        Failure::Usage(format!(
            "--secondary {text}: expected ZONE@ADDRESS[:PORT], e.g. example.com@192.0.2.1:53 ({why})"
        ))
    };
    let (zone, primary) = text.split_once('@').ok_or_else(|| bad("no @"))?;
    let zone = Name::from_ascii(zone).map_err(|e| bad(&e.to_string()))?;
    let primary = match primary.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => SocketAddr::new(
            primary
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| bad("the primary must be an IP address"))?,
            53,
        ),
    };
    Ok((zone, primary))
}
