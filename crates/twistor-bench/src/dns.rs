//! The DNS suite: twistor's authoritative server (`twist dns`) beside NSD, Knot DNS and
//! Twisted's `twist dns`, answering a small zone over UDP to `dnsperf`; queries per second
//! and server CPU per query, interleaved repeats, medians reported.
//!
//! Every server gets the same generated zone ([`zone_text`]) and the same query mix
//! ([`queries`]: A, AAAA and MX for names that exist, A for names that do not), runs pinned
//! to the server core with rate limiting off, and is checked for right answers before it is
//! loaded. Its CPU time is that of its whole process tree (NSD forks its workers) from
//! `/proc`, read before and after each `dnsperf` run.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs::{self, CpuTime};
use crate::report::{self, BarGroup, Panel, Table, fmt_num, fmt_ratio};
use crate::server::Server;
use crate::stats::median;

/// The zone every server serves.
pub const ZONE: &str = "bench.test.";
/// Hosts in the zone, `host01` … `host20`, each with A, AAAA and MX records.
pub const HOSTS: usize = 20;
/// The report's and the chart's title.
const TITLE: &str = "twistor DNS benchmarks";

/// One of the DNS servers the suite compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsServerKind {
    /// twistor's `twist dns` (target/release/twist, or `--twistor-cmd`).
    Twistor,
    /// NLnet Labs' NSD, one server process (`server-count: 1`).
    Nsd,
    /// CZ.NIC's Knot DNS, one UDP worker thread.
    Knot,
    /// Twisted's `twist dns` (`python3 -m twisted dns --bindzone`) on CPython.
    Twisted,
}

impl DnsServerKind {
    /// Every server, in the order tables list them.
    pub const ALL: &'static [DnsServerKind] = &[
        DnsServerKind::Twistor,
        DnsServerKind::Nsd,
        DnsServerKind::Knot,
        DnsServerKind::Twisted,
    ];

    /// The short name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            DnsServerKind::Twistor => "twistor",
            DnsServerKind::Nsd => "nsd",
            DnsServerKind::Knot => "knot",
            DnsServerKind::Twisted => "twisted",
        }
    }

    /// Looks a server up by its short name.
    pub fn from_name(name: &str) -> Option<DnsServerKind> {
        DnsServerKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == name)
    }
}

impl fmt::Display for DnsServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of one run of the DNS suite.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// The servers, in order.
    pub servers: Vec<DnsServerKind>,
    /// Seconds of each `dnsperf` run (`-l`).
    pub duration: Duration,
    /// How many times each server is loaded, interleaved (A B C D A B C D …).
    pub repeats: usize,
    /// `dnsperf -c`: client sockets (source ports).
    pub clients: usize,
    /// `dnsperf -q`: queries outstanding at once, for every server but Twisted.
    pub outstanding: usize,
    /// `dnsperf -q` for Twisted, which would only queue a deeper load.
    pub twisted_outstanding: usize,
    /// The offered rates, one scenario each, run in this order: `None` is as fast as the
    /// server answers, `Some(n)` is `dnsperf -Q n` (servers that batch their reads get
    /// cheaper per query as load grows, so compare them at one rate too). A server whose
    /// answers per second in an earlier unpaced scenario fell short of a paced rate is not
    /// run at it.
    pub rates: Vec<Option<u64>>,
    /// The twistor command, `{port}` and `{zone}` standing for the port and the zone file;
    /// empty when twistor cannot run (the reason is in `twistor_missing`).
    pub twistor_cmd: Vec<String>,
    /// Why twistor is skipped, if it is.
    pub twistor_missing: Option<String>,
    /// The core every server is pinned to, if any.
    pub server_core: Option<usize>,
    /// The core `dnsperf` (and this process) runs on, if pinned.
    pub client_core: Option<usize>,
    /// Scratch directory for the zone, the configurations and the servers' state; removed
    /// at the end.
    pub work_dir: PathBuf,
    /// Where `dns.md` and `dns.svg` go.
    pub out_dir: PathBuf,
}

/// The default twistor command: `twist dns` next to this binary, or why there is none.
pub fn default_twistor_cmd(self_exe: &Path) -> Result<Vec<String>, String> {
    let twist = self_exe
        .parent()
        .map(|dir| dir.join("twist"))
        .filter(|t| t.is_file())
        .ok_or_else(|| {
            "twistor skipped: no `twist` next to twistor-bench (cargo build --release -p twist)"
                .to_owned()
        })?;
    Ok([
        &twist.display().to_string(),
        "dns",
        "--port",
        "{port}",
        "--interface",
        "127.0.0.1",
        "--zone",
        "{zone}",
        "--rate-limit",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect())
}

/// The zone file every server loads: SOA, NS and MX at the apex, `ns1` and `mail`, and
/// [`HOSTS`] hosts with A, AAAA and MX records.
///
/// Names inside records are written in full: Twisted's zone parser does not append
/// `$ORIGIN` to them (it would answer `10 mail.` for an MX of `10 mail`).
pub fn zone_text() -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}\n$TTL 3600\n\
         @ IN SOA ns1.{ZONE} hostmaster.{ZONE} 1 7200 3600 1209600 3600\n\
         @ IN NS ns1.{ZONE}\n\
         @ IN MX 10 mail.{ZONE}\n\
         ns1 IN A 192.0.2.253\n\
         mail IN A 192.0.2.254\n\
         mail IN AAAA 2001:db8::fe\n"
    );
    for i in 1..=HOSTS {
        z.push_str(&format!(
            "host{i:02} IN A 192.0.2.{i}\n\
             host{i:02} IN AAAA 2001:db8::{i}\n\
             host{i:02} IN MX 10 mail.{ZONE}\n"
        ));
    }
    z
}

/// One line of the query file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The name asked for, absolute.
    pub name: String,
    /// `A`, `AAAA` or `MX`.
    pub qtype: &'static str,
    /// Whether the name exists (NOERROR) or not (NXDOMAIN).
    pub exists: bool,
}

/// The query mix, 100 queries that `dnsperf` repeats: 40 % A, 30 % AAAA and 15 % MX for
/// the zone's hosts, 15 % A for names that do not exist, spread evenly through the file.
pub fn queries() -> Vec<Query> {
    // One block of 20: 8 A, 6 AAAA, 3 MX, 3 NXDOMAIN, interleaved.
    const BLOCK: [&str; 20] = [
        "A", "AAAA", "A", "NX", "A", "AAAA", "MX", "A", "AAAA", "A", "NX", "A", "AAAA", "MX", "A",
        "AAAA", "A", "NX", "AAAA", "MX",
    ];
    let mut next = [0usize; 4];
    let mut out = Vec::new();
    for _ in 0..5 {
        for kind in BLOCK {
            let (slot, qtype) = match kind {
                "A" => (0, "A"),
                "AAAA" => (1, "AAAA"),
                "MX" => (2, "MX"),
                _ => (3, "A"),
            };
            let n = next[slot];
            next[slot] += 1;
            out.push(if slot == 3 {
                Query {
                    name: format!("nx{:02}.{ZONE}", n + 1),
                    qtype,
                    exists: false,
                }
            } else {
                Query {
                    name: format!("host{:02}.{ZONE}", n % HOSTS + 1),
                    qtype,
                    exists: true,
                }
            });
        }
    }
    out
}

/// `dnsperf`'s query file for `queries`: `NAME TYPE` per line.
pub fn query_file_text(queries: &[Query]) -> String {
    queries
        .iter()
        .map(|q| format!("{} {}\n", q.name, q.qtype))
        .collect()
}

/// What `dnsperf` printed at the end of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsperfStats {
    /// Queries sent.
    pub sent: u64,
    /// Queries answered.
    pub completed: u64,
    /// Queries not answered within the timeout.
    pub lost: u64,
    /// Answers by response code, as printed (`NOERROR`, `NXDOMAIN`, …).
    pub rcodes: Vec<(String, u64)>,
    /// Mean response size in bytes.
    pub response_bytes: f64,
    /// The run's length in seconds, by `dnsperf`'s clock.
    pub run_time_s: f64,
    /// Answers per second.
    pub qps: f64,
    /// Mean latency in seconds.
    pub latency_s: f64,
}

impl DnsperfStats {
    /// Parses the statistics `dnsperf` 2.x prints; `None` if the essential lines (queries
    /// sent, completed, per second) are missing.
    pub fn parse(text: &str) -> Option<DnsperfStats> {
        let mut s = DnsperfStats::default();
        let (mut sent, mut completed, mut qps) = (false, false, false);
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            let value = value.trim();
            let first = value.split_whitespace().next().unwrap_or("");
            match key {
                "Queries sent" => {
                    s.sent = first.parse().ok()?;
                    sent = true;
                }
                "Queries completed" => {
                    s.completed = first.parse().ok()?;
                    completed = true;
                }
                "Queries lost" => s.lost = first.parse().ok()?,
                "Response codes" => {
                    // `NOERROR 85 (85.00%), NXDOMAIN 15 (15.00%)`
                    for part in value.split(',') {
                        let mut words = part.split_whitespace();
                        if let (Some(code), Some(n)) = (words.next(), words.next()) {
                            s.rcodes.push((code.to_owned(), n.parse().ok()?));
                        }
                    }
                }
                "Average packet size" => {
                    // `request 35, response 100`
                    if let Some(r) = value.split("response").nth(1) {
                        s.response_bytes = r.trim().parse().unwrap_or(f64::NAN);
                    }
                }
                "Run time (s)" => s.run_time_s = first.parse().ok()?,
                "Queries per second" => {
                    s.qps = first.parse().ok()?;
                    qps = true;
                }
                "Average Latency (s)" => s.latency_s = first.parse().unwrap_or(f64::NAN),
                _ => {}
            }
        }
        (sent && completed && qps).then_some(s)
    }

    /// Answers with response code `code` (0 if none).
    pub fn rcode(&self, code: &str) -> u64 {
        self.rcodes
            .iter()
            .find(|(c, _)| c == code)
            .map_or(0, |(_, n)| *n)
    }
}

/// The figures of one `dnsperf` run against one server, or their medians.
#[derive(Debug, Clone, Copy, Default)]
pub struct DnsFigures {
    /// Answers per second (dnsperf's).
    pub qps: f64,
    /// Server CPU (user + system, whole process tree) per answer, µs.
    pub cpu_us: f64,
    /// The user-space part of it.
    pub user_us: f64,
    /// Server CPU over the run, percent of one core.
    pub cpu_pct: f64,
    /// Queries lost, percent of those sent.
    pub lost_pct: f64,
    /// Mean latency, µs.
    pub latency_us: f64,
    /// Mean response size, bytes.
    pub response_bytes: f64,
}

impl DnsFigures {
    /// The median of each field over `runs`.
    pub fn median_of(runs: &[DnsFigures]) -> DnsFigures {
        let m = |f: &dyn Fn(&DnsFigures) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
        };
        DnsFigures {
            qps: m(&|r| r.qps),
            cpu_us: m(&|r| r.cpu_us),
            user_us: m(&|r| r.user_us),
            cpu_pct: m(&|r| r.cpu_pct),
            lost_pct: m(&|r| r.lost_pct),
            latency_us: m(&|r| r.latency_us),
            response_bytes: m(&|r| r.response_bytes),
        }
    }
}

/// A scenario's name: `max` for an unpaced run, else the offered rate, e.g. `50,000/s`.
pub fn rate_name(rate: Option<u64>) -> String {
    rate.map_or("max".into(), |q| format!("{}/s", fmt_num(q as f64)))
}

/// Figures per (scenario index, server).
type ByPair<T> = BTreeMap<(usize, DnsServerKind), T>;

/// The files every server and `dnsperf` read, written under the work directory.
#[derive(Debug, Clone)]
struct Workload {
    zone_file: PathBuf,
    query_file: PathBuf,
    queries: Vec<Query>,
}

/// A started server and how to load it.
struct Running {
    kind: DnsServerKind,
    server: Server,
    outstanding: usize,
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the suite, prints its tables and writes `dns.md` and `dns.svg` to the output
/// directory. Every server started is killed and the work directory removed when the run
/// ends, failed or not. A server that is missing, fails to start or answers wrongly is
/// skipped with a note.
pub fn run(opts: &DnsOptions) -> io::Result<()> {
    let load_before = procfs::load_average();
    let dnsperf = find_program("dnsperf").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no dnsperf (apt-get install dnsperf)",
        )
    })?;
    std::fs::create_dir_all(&opts.work_dir)?;
    let _cleanup = RemoveOnDrop(opts.work_dir.clone());
    let workload = write_workload(&opts.work_dir)?;

    let mut notes = Vec::new();
    let mut running: Vec<Running> = Vec::new();
    for &kind in &opts.servers {
        match start_checked(kind, opts, &workload, &dnsperf) {
            Ok(server) => {
                let outstanding = if kind == DnsServerKind::Twisted {
                    opts.twisted_outstanding
                } else {
                    opts.outstanding
                };
                running.push(Running {
                    kind,
                    server,
                    outstanding,
                });
            }
            Err(why) => {
                eprintln!("note: {why}");
                notes.push(why);
            }
        }
    }

    let mut samples: ByPair<Vec<DnsFigures>> = BTreeMap::new();
    for (si, &rate) in opts.rates.iter().enumerate() {
        for rep in 0..opts.repeats {
            for r in &running {
                if let Some(most) = too_slow_for(rate, r.kind, &opts.rates[..si], &samples) {
                    if rep == 0 {
                        let why = format!(
                            "{} not run at {}: it answered at most {} queries/s",
                            r.kind,
                            rate_name(rate),
                            fmt_num(most)
                        );
                        eprintln!("note: {why}");
                        notes.push(why);
                    }
                    continue;
                }
                let f = run_once(&dnsperf, r, rate, opts, &workload)?;
                eprintln!(
                    "{:>8} {:>10} run {}/{}: {} queries/s, server CPU {} µs/query (user {}, \
                     {}%), lost {}%, latency {} µs",
                    r.kind.name(),
                    rate_name(rate),
                    rep + 1,
                    opts.repeats,
                    fmt_num(f.qps),
                    fmt_num(f.cpu_us),
                    fmt_num(f.user_us),
                    fmt_num(f.cpu_pct),
                    fmt_num(f.lost_pct),
                    fmt_num(f.latency_us),
                );
                samples.entry((si, r.kind)).or_default().push(f);
            }
        }
    }
    let kinds: Vec<DnsServerKind> = running.iter().map(|r| r.kind).collect();
    let outstanding: Vec<usize> = running.iter().map(|r| r.outstanding).collect();
    drop(running);

    let medians: ByPair<DnsFigures> = samples
        .iter()
        .map(|(&key, runs)| (key, DnsFigures::median_of(runs)))
        .collect();
    let table = main_table(&opts.rates, &kinds, &outstanding, &medians);
    let targets = targets_table(&opts.rates, &samples, &medians);
    println!("\n{}", table.to_text());
    if !targets.rows.is_empty() {
        println!("{}", targets.to_text());
    }

    let load = (load_before, procfs::load_average());
    let md = markdown(opts, &workload, load, &table, &targets, &notes);
    std::fs::create_dir_all(&opts.out_dir)?;
    let md_path = opts.out_dir.join("dns.md");
    std::fs::write(&md_path, md)?;
    let svg_path = opts.out_dir.join("dns.svg");
    let series: Vec<String> = kinds.iter().map(|k| k.name().to_owned()).collect();
    let groups = |f: &dyn Fn(&DnsFigures) -> f64| -> Vec<BarGroup> {
        (0..opts.rates.len())
            .map(|si| BarGroup {
                label: rate_name(opts.rates[si]),
                bars: kinds
                    .iter()
                    .filter_map(|&k| medians.get(&(si, k)).map(|m| (k.name().to_owned(), f(m))))
                    .collect(),
            })
            .collect()
    };
    let panels = [
        Panel {
            title: "server CPU µs per query (lower is better)".into(),
            groups: groups(&|m| m.cpu_us),
        },
        Panel {
            title: "queries per second (higher is better)".into(),
            groups: groups(&|m| m.qps),
        },
    ];
    let title = format!("{TITLE}, {}", report::today());
    report::write_svg(&svg_path, &title, &series, &panels)
        .map_err(|e| io::Error::other(e.to_string()))?;
    eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    Ok(())
}

/// If `rate` is paced and `kind` answered fewer than 90 % of it per second (its median)
/// in one of the unpaced scenarios of `earlier`, that many.
fn too_slow_for(
    rate: Option<u64>,
    kind: DnsServerKind,
    earlier: &[Option<u64>],
    samples: &ByPair<Vec<DnsFigures>>,
) -> Option<f64> {
    let rate = rate? as f64;
    earlier
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_none())
        .filter_map(|(si, _)| samples.get(&(si, kind)))
        .map(|runs| DnsFigures::median_of(runs).qps)
        .find(|&most| most < 0.9 * rate)
}

fn write_workload(dir: &Path) -> io::Result<Workload> {
    let zone_file = dir.join("bench.test.zone");
    std::fs::write(&zone_file, zone_text())?;
    let queries = queries();
    let query_file = dir.join("queries.txt");
    std::fs::write(&query_file, query_file_text(&queries))?;
    Ok(Workload {
        zone_file,
        query_file,
        queries,
    })
}

/// Starts `kind` on a free port, waits until it answers the zone's SOA, and checks its
/// answers; or says why it is skipped.
fn start_checked(
    kind: DnsServerKind,
    opts: &DnsOptions,
    workload: &Workload,
    dnsperf: &Path,
) -> Result<Server, String> {
    let port = free_udp_tcp_port().map_err(|e| format!("{kind} skipped: no free port: {e}"))?;
    let argv = command_line(kind, port, opts, workload)?;
    eprintln!("{kind}: {}", argv.join(" "));
    let server = Server::spawn_probed(
        kind.name(),
        &argv,
        port,
        opts.server_core,
        Duration::from_secs(20),
        |addr| answers_soa(addr, Duration::from_millis(200)),
    )
    .map_err(|e| format!("{kind} skipped: {e}"))?;
    verify(&server, workload, dnsperf).map_err(|e| format!("{kind} skipped: {e}"))?;
    Ok(server)
}

/// The command line that runs `kind` on `port`, writing its configuration under the work
/// directory first; or why it cannot run.
fn command_line(
    kind: DnsServerKind,
    port: u16,
    opts: &DnsOptions,
    workload: &Workload,
) -> Result<Vec<String>, String> {
    let zone = workload.zone_file.display().to_string();
    let dir = opts.work_dir.join(kind.name());
    std::fs::create_dir_all(&dir).map_err(|e| format!("{kind} skipped: {e}"))?;
    let write = |name: &str, text: String| -> Result<String, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{kind} skipped: {e}"))?;
        Ok(path.display().to_string())
    };
    let missing = |program: &str, package: &str| {
        format!("{kind} skipped: no `{program}` (apt-get install {package})")
    };
    Ok(match kind {
        DnsServerKind::Twistor => {
            if let Some(why) = &opts.twistor_missing {
                return Err(why.clone());
            }
            opts.twistor_cmd
                .iter()
                .map(|a| {
                    a.replace("{port}", &port.to_string())
                        .replace("{zone}", &zone)
                })
                .collect()
        }
        DnsServerKind::Nsd => {
            let nsd = find_program("nsd").ok_or_else(|| missing("nsd", "nsd"))?;
            let conf = write("nsd.conf", nsd_conf(port, &dir, &workload.zone_file))?;
            vec![nsd.display().to_string(), "-d".into(), "-c".into(), conf]
        }
        DnsServerKind::Knot => {
            let knotd = find_program("knotd").ok_or_else(|| missing("knotd", "knot"))?;
            std::fs::create_dir_all(dir.join("db")).map_err(|e| format!("{kind} skipped: {e}"))?;
            let conf = write("knot.conf", knot_conf(port, &dir, &workload.zone_file))?;
            vec![knotd.display().to_string(), "-c".into(), conf]
        }
        DnsServerKind::Twisted => {
            let python = twisted_python()?;
            vec![
                python,
                "-m".into(),
                "twisted".into(),
                "dns".into(),
                "--port".into(),
                port.to_string(),
                "--interface".into(),
                "127.0.0.1".into(),
                "--bindzone".into(),
                zone,
            ]
        }
    })
}

/// NSD 4.x in the foreground (`-d`): one server process, no chroot, no user switch, no
/// zone database, no remote control, response rate limiting off, its state in `dir`.
fn nsd_conf(port: u16, dir: &Path, zone_file: &Path) -> String {
    let d = dir.display();
    format!(
        "server:\n\
         \x20   ip-address: 127.0.0.1\n\
         \x20   port: {port}\n\
         \x20   server-count: 1\n\
         \x20   username: \"\"\n\
         \x20   chroot: \"\"\n\
         \x20   zonesdir: \"{d}\"\n\
         \x20   pidfile: \"{d}/nsd.pid\"\n\
         \x20   database: \"\"\n\
         \x20   xfrdfile: \"{d}/xfrd.state\"\n\
         \x20   zonelistfile: \"{d}/zone.list\"\n\
         \x20   logfile: \"{d}/nsd.log\"\n\
         \x20   verbosity: 0\n\
         \x20   rrl-ratelimit: 0\n\
         remote-control:\n\
         \x20   control-enable: no\n\
         zone:\n\
         \x20   name: {zone}\n\
         \x20   zonefile: \"{zf}\"\n",
        zone = ZONE.trim_end_matches('.'),
        zf = zone_file.display(),
    )
}

/// Knot DNS 3.x: one UDP, one TCP and one background worker, no RRL module, the zone
/// loaded whole from the file and never written back, its state in `dir`.
fn knot_conf(port: u16, dir: &Path, zone_file: &Path) -> String {
    let d = dir.display();
    format!(
        "server:\n\
         \x20   rundir: \"{d}\"\n\
         \x20   listen: 127.0.0.1@{port}\n\
         \x20   udp-workers: 1\n\
         \x20   tcp-workers: 1\n\
         \x20   background-workers: 1\n\
         log:\n\
         \x20 - target: stderr\n\
         \x20   any: warning\n\
         database:\n\
         \x20   storage: \"{d}/db\"\n\
         template:\n\
         \x20 - id: default\n\
         \x20   storage: \"{d}\"\n\
         \x20   zonefile-sync: -1\n\
         \x20   zonefile-load: whole\n\
         \x20   journal-content: none\n\
         zone:\n\
         \x20 - domain: {zone}\n\
         \x20   file: \"{zf}\"\n",
        zone = ZONE,
        zf = zone_file.display(),
    )
}

/// The real path of a Python with Twisted (`$PYTHON`, else `python3`), or why Twisted is
/// skipped. The real path, because `python3` may be a shim script.
fn twisted_python() -> Result<String, String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-c", "import sys, twisted.names; print(sys.executable)"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("twisted skipped: no `{python}` ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "twisted skipped: `{python} -c 'import twisted'` failed (pip install twisted)"
        ));
    }
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(if exe.is_empty() { python } else { exe })
}

/// Checks that the server at `server.addr` answers the whole query file right: every
/// query answered, NOERROR for names that exist and NXDOMAIN for the others (one `dnsperf`
/// pass), and, when `dig` is installed, the right A, AAAA and MX data for one host.
fn verify(server: &Server, workload: &Workload, dnsperf: &Path) -> Result<(), String> {
    let port = server.addr.port().to_string();
    let out = Command::new(dnsperf)
        .args(["-s", "127.0.0.1", "-p", &port, "-n", "1", "-t", "2", "-d"])
        .arg(&workload.query_file)
        .output()
        .map_err(|e| format!("dnsperf: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = DnsperfStats::parse(&text).ok_or("unreadable dnsperf output")?;
    let total = workload.queries.len() as u64;
    let nx = workload.queries.iter().filter(|q| !q.exists).count() as u64;
    let (noerror, nxdomain) = (stats.rcode("NOERROR"), stats.rcode("NXDOMAIN"));
    if stats.completed != total || noerror != total - nx || nxdomain != nx {
        return Err(format!(
            "wrong answers to one pass of the {total} queries: {} answered, NOERROR {noerror} \
             (want {}), NXDOMAIN {nxdomain} (want {nx}), codes {:?}",
            stats.completed,
            total - nx,
            stats.rcodes
        ));
    }
    let Some(dig) = find_program("dig") else {
        eprintln!("note: no dig; answers checked by response code only");
        return Ok(());
    };
    let checks = [
        ("host07", "A", "192.0.2.7"),
        ("host07", "AAAA", "2001:db8::7"),
        ("host07", "MX", "10 mail.bench.test."),
    ];
    for (host, qtype, want) in checks {
        let name = format!("{host}.{ZONE}");
        let out = Command::new(&dig)
            .args([
                "@127.0.0.1",
                "-p",
                &port,
                "+short",
                "+time=2",
                "+tries=2",
                &name,
                qtype,
            ])
            .output()
            .map_err(|e| format!("dig: {e}"))?;
        let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if got != want {
            return Err(format!("{name} {qtype}: answered {got:?}, want {want:?}"));
        }
    }
    Ok(())
}

/// One `dnsperf` run against `r` for the suite's duration, paced at `rate` if given; the
/// server's CPU time is that of its process tree over the run.
fn run_once(
    dnsperf: &Path,
    r: &Running,
    rate: Option<u64>,
    opts: &DnsOptions,
    workload: &Workload,
) -> io::Result<DnsFigures> {
    let pid = r.server.pid();
    let port = r.server.addr.port().to_string();
    let seconds = format!("{}", opts.duration.as_secs_f64());
    let before = CpuTime::of_tree(pid)?;
    let start = Instant::now();
    let out = Command::new(dnsperf)
        .args(["-s", "127.0.0.1", "-p", &port, "-l", &seconds])
        .args(["-c", &opts.clients.to_string()])
        .args(["-q", &r.outstanding.to_string()])
        .args(rate.map(|q| format!("-Q{q}")))
        .arg("-d")
        .arg(&workload.query_file)
        .stdin(Stdio::null())
        .output()?;
    let wall = start.elapsed();
    let cpu = CpuTime::of_tree(pid)?.since(before);
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = DnsperfStats::parse(&text).ok_or_else(|| {
        io::Error::other(format!(
            "dnsperf against {}: unreadable output ({}): {}{}",
            r.kind,
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    let per_query = |d: Duration| d.as_secs_f64() * 1e6 / stats.completed.max(1) as f64;
    Ok(DnsFigures {
        qps: stats.qps,
        cpu_us: per_query(cpu.total()),
        user_us: per_query(cpu.user),
        cpu_pct: 100.0 * cpu.total().as_secs_f64() / wall.as_secs_f64(),
        lost_pct: 100.0 * stats.lost as f64 / stats.sent.max(1) as f64,
        latency_us: stats.latency_s * 1e6,
        response_bytes: stats.response_bytes,
    })
}

fn main_table(
    rates: &[Option<u64>],
    kinds: &[DnsServerKind],
    outstanding: &[usize],
    medians: &ByPair<DnsFigures>,
) -> Table {
    let mut t = Table::new(&[
        "offered",
        "server",
        "outstanding",
        "queries /s",
        "CPU µs/query",
        "of it user",
        "CPU %",
        "CPU × nsd",
        "CPU × twistor",
        "qps × nsd",
        "lost",
        "mean latency",
        "response B",
    ]);
    for (si, &rate) in rates.iter().enumerate() {
        let nsd = medians.get(&(si, DnsServerKind::Nsd));
        let twistor = medians.get(&(si, DnsServerKind::Twistor));
        for (&kind, q) in kinds.iter().zip(outstanding) {
            let Some(f) = medians.get(&(si, kind)) else {
                continue;
            };
            t.push(vec![
                rate_name(rate),
                kind.name().into(),
                q.to_string(),
                fmt_num(f.qps),
                fmt_num(f.cpu_us),
                fmt_num(f.user_us),
                fmt_num(f.cpu_pct),
                fmt_ratio(nsd.map(|b| f.cpu_us / b.cpu_us)),
                fmt_ratio(twistor.map(|b| f.cpu_us / b.cpu_us)),
                fmt_ratio(nsd.map(|b| f.qps / b.qps)),
                format!("{}%", fmt_num(f.lost_pct)),
                format!("{} µs", fmt_num(f.latency_us)),
                fmt_num(f.response_bytes),
            ]);
        }
    }
    t
}

/// Issue 14's targets, as measured in each scenario: twistor's CPU per query against
/// NSD's (at most 1×) and Twisted's (under 1/30), and knot's for the record. Each ratio
/// between the medians and paired (the median of the ratios within each repeat, whose
/// servers ran back to back); the verdict goes by the paired median.
fn targets_table(
    rates: &[Option<u64>],
    samples: &ByPair<Vec<DnsFigures>>,
    medians: &ByPair<DnsFigures>,
) -> Table {
    let mut t = Table::new(&[
        "offered",
        "target",
        "twistor",
        "peer",
        "ratio of medians",
        "paired ratio: median [min–max]",
        "",
    ]);
    let goals = [
        (DnsServerKind::Nsd, "CPU/query ≤ nsd's", Some(1.0)),
        (
            DnsServerKind::Twisted,
            "CPU/query under 1/30 of Twisted's",
            Some(1.0 / 30.0),
        ),
        (DnsServerKind::Knot, "CPU/query against knot's", None),
    ];
    for (si, &rate) in rates.iter().enumerate() {
        let tw_key = (si, DnsServerKind::Twistor);
        let (Some(tw), Some(tw_runs)) = (medians.get(&tw_key), samples.get(&tw_key)) else {
            continue;
        };
        for (peer, what, bound) in goals {
            let key = (si, peer);
            let (Some(p), Some(p_runs)) = (medians.get(&key), samples.get(&key)) else {
                continue;
            };
            let paired: Vec<f64> = tw_runs
                .iter()
                .zip(p_runs)
                .map(|(a, b)| a.cpu_us / b.cpu_us)
                .collect();
            let paired_median = median(&paired).unwrap_or(f64::NAN);
            let (lo, hi) = paired
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                    (lo.min(r), hi.max(r))
                });
            let verdict = match bound {
                Some(b) if paired_median <= b => "met",
                Some(_) => "missed",
                None => "(for the record)",
            };
            t.push(vec![
                rate_name(rate),
                what.into(),
                format!("{} µs", fmt_num(tw.cpu_us)),
                format!("{peer} {} µs", fmt_num(p.cpu_us)),
                fine_ratio(tw.cpu_us / p.cpu_us),
                format!(
                    "{} [{}–{}]",
                    fine_ratio(paired_median),
                    fine_ratio(lo),
                    fine_ratio(hi)
                ),
                verdict.into(),
            ]);
        }
    }
    t
}

/// A ratio to three significant digits, `0.0333×`, since the Twisted target is 1/30.
fn fine_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{}×", fmt_num(r))
    } else {
        "–".into()
    }
}

fn markdown(
    opts: &DnsOptions,
    workload: &Workload,
    load: (Option<f64>, Option<f64>),
    table: &Table,
    targets: &Table,
    notes: &[String],
) -> String {
    let fmt_load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
    let twistor_cmd = opts
        .twistor_cmd
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if i == 0 {
                Path::new(a)
                    .file_name()
                    .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let total = workload.queries.len();
    let count = |f: &dyn Fn(&Query) -> bool| workload.queries.iter().filter(|q| f(q)).count();
    let mut md = format!("# {TITLE}\n\n");
    md.push_str(&format!(
        "{} · load average {} before, {} after\n\n",
        report::machine_line(),
        fmt_load(load.0),
        fmt_load(load.1)
    ));
    md.push_str(&format!(
        "Command: `twistor-bench dns --duration {} --repeats {} --clients {} --outstanding {} \
         --twisted-outstanding {} --rates {}` · servers pinned to core {} · dnsperf {} · twistor \
         server: `{}`\n\n",
        opts.duration.as_secs_f64(),
        opts.repeats,
        opts.clients,
        opts.outstanding,
        opts.twisted_outstanding,
        opts.rates
            .iter()
            .map(|r| r.map_or("max".into(), |q| q.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        opts.server_core
            .map_or("(not pinned)".into(), |c| c.to_string()),
        opts.client_core
            .map_or("not pinned".into(), |c| format!("on core {c}")),
        if twistor_cmd.is_empty() {
            "(none)".to_owned()
        } else {
            twistor_cmd
        },
    ));
    md.push_str("![chart](dns.svg)\n\n");
    md.push_str(&format!(
        "The zone `{ZONE}`: SOA, NS and MX at the apex, `ns1`, `mail` (A, AAAA) and {HOSTS} \
         hosts with A, AAAA and MX records. The query file, {total} queries that `dnsperf` \
         sends round and round over UDP (no EDNS): {} A, {} AAAA and {} MX for the hosts, {} \
         A for names that do not exist (NXDOMAIN). Every server was first checked: one pass \
         of the file with the right response codes and, with `dig`, the right A, AAAA and MX \
         data. Servers: `twistor` as above; `nsd` (`nsd -d`, `server-count: 1`, so one \
         serving process beside its main and xfrd processes); `knot` (`knotd`, \
         `udp-workers: 1`, `tcp-workers: 1`, `background-workers: 1`: one thread answers \
         UDP); `twisted` (`python3 -m twisted dns --bindzone`). Response rate limiting is \
         off everywhere (`--rate-limit 0`, `rrl-ratelimit: 0`, knot's `mod-rrl` not \
         loaded).\n\n",
        count(&|q| q.exists && q.qtype == "A"),
        count(&|q| q.qtype == "AAAA"),
        count(&|q| q.qtype == "MX"),
        count(&|q| !q.exists),
    ));
    md.push_str(
        "Medians of the interleaved repeats. *offered*: `max` lets each server go as fast \
         as it answers, a rate paces dnsperf (`-Q`) so every server is compared at the same \
         load (a server that batches its reads gets cheaper per query as load grows, one \
         that sleeps between queries pays for its wake-ups). *outstanding* is `dnsperf \
         -q`, the queries in flight at once (a closed loop: no server is sent more than it \
         answers, so a slow one is measured rather than drowned); *queries /s* is dnsperf's count of answers; \
         *CPU µs/query* is the server's user + system time, summed over its whole process \
         tree from `/proc/PID/stat` before and after the dnsperf run, per answer, *of it \
         user* its user-space part; *CPU %* is that time as a share of one core over the \
         run (flat out, under 100 means the load generator, not the server, set the pace); the × \
         columns divide by NSD's or twistor's figure; *lost* is the share of queries not \
         answered within dnsperf's timeout; *response B* the mean response size (servers \
         differ in what they add to the additional and authority sections).\n\n",
    );
    md.push_str(&table.to_markdown());
    md.push('\n');
    if !targets.rows.is_empty() {
        md.push_str(
            "Against issue 14's targets. Ratios are twistor's CPU per query over the peer's; \
             *paired* ratios are taken within each repeat and the verdict goes by their \
             median.\n\n",
        );
        md.push_str(&targets.to_markdown());
        md.push('\n');
    }
    if !notes.is_empty() {
        md.push_str("Notes:\n\n");
        for n in notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    md
}

/// Whether a server at `addr` answers a UDP query for the zone's SOA with NOERROR and an
/// answer, within `timeout`.
pub fn answers_soa(addr: &SocketAddr, timeout: Duration) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let id: u16 = 0x7417;
    let query = soa_query(id);
    if socket.set_read_timeout(Some(timeout)).is_err() || socket.send_to(&query, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            return false;
        };
        if from != *addr {
            continue;
        }
        if let Some(answer) = buf.get(..n) {
            return is_good_answer(answer, id);
        }
    }
    false
}

/// A DNS query (RFC 1035 §4.1) for the zone's SOA, class IN, no recursion wanted.
fn soa_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // flags; QD 1, AN/NS/AR 0
    for label in ZONE.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 6, 0, 1]); // SOA, IN
    q
}

/// Whether `msg` is a response to query `id` with RCODE 0 and at least one answer.
fn is_good_answer(msg: &[u8], id: u16) -> bool {
    match msg {
        [a, b, flags, rflags, _, _, an_hi, an_lo, ..] => {
            u16::from_be_bytes([*a, *b]) == id
                && flags & 0x80 != 0
                && rflags & 0x0f == 0
                && u16::from_be_bytes([*an_hi, *an_lo]) > 0
        }
        _ => false,
    }
}

/// A port on 127.0.0.1 free for both UDP and TCP a moment ago (the servers listen on both).
fn free_udp_tcp_port() -> io::Result<u16> {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both UDP and TCP",
    ))
}

/// `program` on `PATH`, or in `/usr/sbin` or `/sbin` (where Debian puts nsd and knotd,
/// off a normal user's `PATH`).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &kind in DnsServerKind::ALL {
            assert_eq!(DnsServerKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(DnsServerKind::from_name("bind"), None);
    }

    #[test]
    fn query_mix() {
        let q = queries();
        assert_eq!(q.len(), 100);
        let count = |f: &dyn Fn(&Query) -> bool| q.iter().filter(|x| f(x)).count();
        assert_eq!(count(&|x| x.exists && x.qtype == "A"), 40);
        assert_eq!(count(&|x| x.qtype == "AAAA"), 30);
        assert_eq!(count(&|x| x.qtype == "MX"), 15);
        assert_eq!(count(&|x| !x.exists), 15);
        // Every name asked for that should exist is in the zone, and no other is.
        let zone = zone_text();
        for x in &q {
            let label = x.name.trim_end_matches(ZONE).trim_end_matches('.');
            let line = format!("\n{label} IN {} ", x.qtype);
            assert_eq!(zone.contains(&line), x.exists, "{x:?}");
        }
        assert_eq!(query_file_text(&q).lines().count(), 100);
    }

    #[test]
    fn paced_scenarios_skip_servers_too_slow_for_them() {
        assert_eq!(rate_name(None), "max");
        assert_eq!(rate_name(Some(50_000)), "50,000/s");
        let figures = |qps| DnsFigures {
            qps,
            ..DnsFigures::default()
        };
        let mut samples: ByPair<Vec<DnsFigures>> = BTreeMap::new();
        samples.insert((0, DnsServerKind::Nsd), vec![figures(300_000.0)]);
        samples.insert((0, DnsServerKind::Twisted), vec![figures(12_000.0)]);
        let earlier = [None];
        let slow = |rate, kind| too_slow_for(rate, kind, &earlier, &samples);
        assert_eq!(slow(Some(50_000), DnsServerKind::Twisted), Some(12_000.0));
        assert_eq!(slow(Some(50_000), DnsServerKind::Nsd), None);
        assert_eq!(slow(Some(10_000), DnsServerKind::Twisted), None);
        assert_eq!(slow(None, DnsServerKind::Twisted), None);
        // Nothing measured unpaced yet: run it.
        assert_eq!(
            too_slow_for(Some(50_000), DnsServerKind::Twisted, &[], &samples),
            None
        );
    }

    #[test]
    fn parses_dnsperf_output() {
        let text = "Statistics:\n\n  Queries sent:         973057\n  Queries completed:    \
                    973050 (100.00%)\n  Queries lost:         7 (0.00%)\n\n  Response codes:       \
                    NOERROR 729793 (75.00%), NXDOMAIN 243257 (25.00%)\n  Average packet size:  \
                    request 35, response 100\n  Run time (s):         3.000071\n  Queries per \
                    second:   324344.657176\n\n  Average Latency (s):  0.000107 (min 0.000021, \
                    max 0.002887)\n";
        let s = DnsperfStats::parse(text).unwrap();
        assert_eq!((s.sent, s.completed, s.lost), (973_057, 973_050, 7));
        assert_eq!(s.rcode("NOERROR"), 729_793);
        assert_eq!(s.rcode("NXDOMAIN"), 243_257);
        assert_eq!(s.rcode("SERVFAIL"), 0);
        assert_eq!(s.response_bytes, 100.0);
        assert!((s.qps - 324_344.657176).abs() < 1e-6);
        assert!((s.latency_s - 0.000107).abs() < 1e-12);
        assert_eq!(DnsperfStats::parse("dnsperf: invalid option"), None);
    }

    #[test]
    fn soa_query_and_answer_checks() {
        let q = soa_query(0x1234);
        assert_eq!(&q[..4], &[0x12, 0x34, 0, 0]);
        assert_eq!(q.len(), 12 + "bench.test.".len() + 1 + 4);
        let mut answer = q.clone();
        answer[2] = 0x84; // QR, AA
        answer[7] = 1; // one answer
        assert!(is_good_answer(&answer, 0x1234));
        assert!(!is_good_answer(&answer, 0x1235));
        answer[3] = 3; // NXDOMAIN
        assert!(!is_good_answer(&answer, 0x1234));
        assert!(!is_good_answer(&q, 0x1234)); // a query, not a response
        assert!(!is_good_answer(&[0x12], 0x1234));
    }

    #[test]
    fn configurations_name_port_and_zone() {
        let dir = Path::new("/tmp/x");
        let zone = Path::new("/tmp/x/bench.test.zone");
        let nsd = nsd_conf(5353, dir, zone);
        assert!(nsd.contains("port: 5353") && nsd.contains("rrl-ratelimit: 0"));
        assert!(nsd.contains("zonefile: \"/tmp/x/bench.test.zone\""));
        let knot = knot_conf(5353, dir, zone);
        assert!(knot.contains("listen: 127.0.0.1@5353") && knot.contains("udp-workers: 1"));
        assert!(knot.contains("domain: bench.test."));
    }
}
