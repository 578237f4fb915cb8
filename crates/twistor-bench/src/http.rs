//! The HTTP suite: twistor-http's hello world against hyper, a C responder and Twisted's
//! `twisted.web`, keep-alive and pipelined, interleaved, medians reported; and the
//! user-space instructions per request under callgrind.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::counts;
use crate::load::{self, HttpLoad, Limit};
use crate::procfs;
use crate::report::{self, Panel, Table, fmt_num, fmt_ratio, fmt_us};
use crate::server::{Launcher, Server, ServerSet, Start};
use crate::stats::median;
use crate::suite::{self, ByPair, Figures, SuiteOptions, SuiteScenario};

/// The C HTTP responder's source, compiled at run time with the system's C compiler.
pub const EPOLL_HTTP_C: &str = include_str!("../c/epoll_http.c");
/// Twisted's web server, run with the system's `python3`.
pub const TWISTED_WEB_PY: &str = include_str!("../py/twisted_web.py");

/// One of the HTTP servers the suite compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HttpServerKind {
    /// twistor-http's hello world (`examples/hello_world.rs`, or this binary's copy).
    Twistor,
    /// hyper 1.x on a tokio `current_thread` runtime, hyper's defaults.
    Hyper,
    /// The same with hyper's experimental `pipeline_flush` on (coalesces pipelined
    /// responses into one write).
    HyperPipelineFlush,
    /// The minimal C epoll responder in `c/epoll_http.c`: the ceiling.
    C,
    /// Twisted's `twisted.web` on CPython.
    Twisted,
}

impl ServerSet for HttpServerKind {
    const ALL: &'static [HttpServerKind] = &[
        HttpServerKind::Twistor,
        HttpServerKind::Hyper,
        HttpServerKind::HyperPipelineFlush,
        HttpServerKind::C,
        HttpServerKind::Twisted,
    ];
    const TWISTOR: HttpServerKind = HttpServerKind::Twistor;
    const C_PROGRAM: (&'static str, &'static str) = ("epoll_http", EPOLL_HTTP_C);
    const TWISTED_SCRIPT: (&'static str, &'static str) = ("twisted_web.py", TWISTED_WEB_PY);

    fn name(self) -> &'static str {
        match self {
            HttpServerKind::Twistor => "twistor",
            HttpServerKind::Hyper => "hyper-ct",
            HttpServerKind::HyperPipelineFlush => "hyper-ct-pf",
            HttpServerKind::C => "c-epoll",
            HttpServerKind::Twisted => "twisted",
        }
    }

    fn start(self) -> Start {
        match self {
            HttpServerKind::Twistor => Start::Twistor,
            HttpServerKind::Hyper => Start::BuiltIn("hyper-ct"),
            HttpServerKind::HyperPipelineFlush => Start::BuiltIn("hyper-ct-pf"),
            HttpServerKind::C => Start::C,
            HttpServerKind::Twisted => Start::Twisted,
        }
    }

    /// This binary's `serve twistor-http`, a copy of twistor-http's `hello_world` example.
    fn default_twistor_cmd(self_exe: &Path) -> Vec<String> {
        vec![
            self_exe.display().to_string(),
            "serve".into(),
            "twistor-http".into(),
            "{port}".into(),
        ]
    }
}

impl fmt::Display for HttpServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to start each HTTP server: resolved once per run.
pub type HttpLauncher = Launcher<HttpServerKind>;

/// One scenario of the HTTP suite: `conns` keep-alive connections, each sending `depth`
/// requests per write and waiting for all their responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpScenario {
    /// Concurrent connections.
    pub conns: usize,
    /// Requests per write (1: one at a time).
    pub depth: usize,
}

impl HttpScenario {
    /// The suite's scenarios: keep-alive (50 connections, one request at a time) and
    /// pipelined (50 connections, 16 requests per write).
    pub fn all() -> Vec<HttpScenario> {
        vec![
            HttpScenario {
                conns: 50,
                depth: 1,
            },
            HttpScenario {
                conns: 50,
                depth: 16,
            },
        ]
    }
}

impl SuiteScenario for HttpScenario {
    /// The short name used for `--scenarios` and in tables: `keepalive` and `pipelined`
    /// for the suite's two, `CONNSxDEPTH` otherwise.
    fn name(&self) -> String {
        match (self.conns, self.depth) {
            (50, 1) => "keepalive".into(),
            (50, 16) => "pipelined".into(),
            (c, d) => format!("{c}x{d}"),
        }
    }

    fn describe(&self) -> String {
        if self.depth == 1 {
            format!(
                "{} keep-alive connections, one request at a time",
                self.conns
            )
        } else {
            format!(
                "{} keep-alive connections, {} pipelined requests per write, all answered \
                 before the next write",
                self.conns, self.depth
            )
        }
    }
}

/// Settings of one run of the HTTP suite.
pub type HttpOptions = SuiteOptions<HttpScenario, HttpServerKind>;

/// The report's and the chart's title.
const TITLE: &str = "twistor HTTP benchmarks";

/// Runs the suite, prints its table and writes `http.md` and `http.svg` to the output
/// directory. Every server started is killed when the run ends, failed or not.
pub fn run(launcher: &HttpLauncher, opts: &HttpOptions) -> io::Result<()> {
    let load_before = procfs::load_average();
    let (servers, notes) = launcher.available(&opts.servers);

    let samples = suite::run_interleaved(
        launcher,
        &servers,
        &opts.scenarios,
        opts.repeats,
        |server, scenario| run_once(server, scenario, opts),
        |scenario, kind, rep, sample| {
            eprintln!(
                "{:>10} {:>11} run {}/{}: {} req/s, p99 {}, server CPU {} µs/req \
                 (user {}, {}%)",
                scenario.name(),
                kind.name(),
                rep + 1,
                opts.repeats,
                fmt_num(sample.rate),
                fmt_us(sample.p99_ns),
                fmt_num(sample.cpu_us),
                fmt_num(sample.user_us),
                fmt_num(sample.cpu_pct),
            );
        },
    )?;

    let medians = suite::medians(&samples);
    let table = main_table(&opts.scenarios, &servers, &medians);
    let targets = targets_table(&opts.scenarios, &samples, &medians);
    println!("\n{}", table.to_text());
    if !targets.rows.is_empty() {
        println!("{}", targets.to_text());
    }

    let load = (load_before, procfs::load_average());
    let mut md = suite::markdown_head(TITLE, "http", opts, launcher, load);
    md.push_str(&markdown_body(&opts.scenarios, &table, &targets));
    md.push_str(&suite::notes_markdown(&notes));
    let panels = chart_panels(&opts.scenarios, &servers, &medians);
    suite::write_report(&opts.out_dir, "http", &md, TITLE, &servers, &panels)
}

fn run_once(server: &Server, scenario: &HttpScenario, opts: &HttpOptions) -> io::Result<Figures> {
    let load = HttpLoad::get(server.addr, scenario.conns, scenario.depth);
    let limit = Limit::Time {
        warmup: opts.warmup,
        measure: opts.duration,
    };
    let r = load::http(server.addr, &load, limit, Some(server.pid()))?;
    let server_cpu = r.server_cpu.unwrap_or_default();
    let cpu = server_cpu.total();
    let per_request = |d: Duration| d.as_secs_f64() * 1e6 / r.round_trips.max(1) as f64;
    Ok(Figures {
        rate: r.rate(),
        p50_ns: r.latency.p50_ns,
        p99_ns: r.latency.p99_ns,
        cpu_us: per_request(cpu),
        user_us: per_request(server_cpu.user),
        cpu_pct: 100.0 * cpu.as_secs_f64() / r.elapsed.as_secs_f64(),
        peak_rss: 0.0,
    })
}

fn main_table(
    scenarios: &[HttpScenario],
    servers: &[HttpServerKind],
    medians: &ByPair<HttpServerKind, Figures>,
) -> Table {
    let columns = ["requests /s", "p50", "p99", "CPU µs/req", "of it user"];
    suite::pair_table(&columns, scenarios, servers, medians, |_, f| {
        vec![
            fmt_num(f.rate),
            fmt_us(f.p50_ns),
            fmt_us(f.p99_ns),
            fmt_num(f.cpu_us),
            fmt_num(f.user_us),
        ]
    })
}

/// Issue 8's targets, as measured: keep-alive CPU per request against hyper's, pipelined
/// rate against hyper's, and both against Twisted's.
///
/// Each ratio is given two ways: between the medians, and as the median of the ratios
/// within each repeat (the servers of one repeat ran back to back, so they share the
/// machine's mood), with the spread of those. The verdict goes by the paired median.
fn targets_table(
    scenarios: &[HttpScenario],
    samples: &ByPair<HttpServerKind, Vec<Figures>>,
    medians: &ByPair<HttpServerKind, Figures>,
) -> Table {
    let mut t = Table::new(&[
        "target",
        "twistor",
        "peer",
        "ratio of medians",
        "paired ratio: median [min–max]",
        "",
    ]);
    let index = |name: &str| scenarios.iter().position(|s| s.name() == name);
    let verdict = |ok: bool| if ok { "met" } else { "missed" }.to_owned();
    /// One target: twistor's `value` over the peer's must be at most (`at_most`) or at
    /// least `bound`.
    struct Target {
        scenario: &'static str,
        peer: HttpServerKind,
        what: String,
        value: fn(&Figures) -> f64,
        show: fn(f64) -> String,
        bound: f64,
        at_most: bool,
    }
    let cpu = |f: &Figures| f.cpu_us;
    let rate = |f: &Figures| f.rate;
    let show_cpu = |v: f64| format!("{} µs", fmt_num(v));
    let show_rate = |v: f64| format!("{} /s", fmt_num(v));
    let mut targets = Vec::new();
    for hyper in [HttpServerKind::Hyper, HttpServerKind::HyperPipelineFlush] {
        targets.push(Target {
            scenario: "keepalive",
            peer: hyper,
            what: format!("keep-alive CPU/request ≤ 0.9× {hyper}'s"),
            value: cpu,
            show: show_cpu,
            bound: 0.9,
            at_most: true,
        });
        targets.push(Target {
            scenario: "pipelined",
            peer: hyper,
            what: format!("pipelined requests/s ≥ 1.2× {hyper}'s"),
            value: rate,
            show: show_rate,
            bound: 1.2,
            at_most: false,
        });
    }
    for scenario in ["keepalive", "pipelined"] {
        targets.push(Target {
            scenario,
            peer: HttpServerKind::Twisted,
            what: format!("{scenario}: CPU/request under 0.1× Twisted's"),
            value: cpu,
            show: show_cpu,
            bound: 0.1,
            at_most: true,
        });
        targets.push(Target {
            scenario,
            peer: HttpServerKind::Twisted,
            what: format!("{scenario}: requests/s over 10× Twisted's"),
            value: rate,
            show: show_rate,
            bound: 10.0,
            at_most: false,
        });
    }
    for target in targets {
        let Some(si) = index(target.scenario) else {
            continue;
        };
        let (Some(tw), Some(peer)) = (
            medians.get(&(si, HttpServerKind::Twistor)),
            medians.get(&(si, target.peer)),
        ) else {
            continue;
        };
        let value = target.value;
        let (tw_runs, peer_runs) = (
            &samples[&(si, HttpServerKind::Twistor)],
            &samples[&(si, target.peer)],
        );
        let paired: Vec<f64> = tw_runs
            .iter()
            .zip(peer_runs)
            .map(|(a, b)| value(a) / value(b))
            .collect();
        let paired_median = median(&paired).unwrap_or(f64::NAN);
        let (lo, hi) = paired
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                (lo.min(r), hi.max(r))
            });
        let ok = if target.at_most {
            paired_median <= target.bound
        } else {
            paired_median >= target.bound
        };
        t.push(vec![
            target.what,
            (target.show)(value(tw)),
            format!("{} {}", target.peer, (target.show)(value(peer))),
            fmt_ratio(Some(value(tw) / value(peer))),
            format!(
                "{} [{}–{}]",
                fmt_ratio(Some(paired_median)),
                fmt_ratio(Some(lo)),
                fmt_ratio(Some(hi))
            ),
            verdict(ok),
        ]);
    }
    t
}

fn chart_panels(
    scenarios: &[HttpScenario],
    servers: &[HttpServerKind],
    medians: &ByPair<HttpServerKind, Figures>,
) -> Vec<Panel> {
    let (cost, rate) = suite::ratio_groups(scenarios, servers, medians);
    vec![
        Panel {
            title: "server CPU per request, × twistor (lower is better)".into(),
            groups: cost,
        },
        Panel {
            title: "requests per second, × twistor (higher is better)".into(),
            groups: rate,
        },
    ]
}

/// The report between its head and its notes: the scenarios, the main table and the
/// targets.
fn markdown_body(scenarios: &[HttpScenario], table: &Table, targets: &Table) -> String {
    let mut md = suite::describe_scenarios(scenarios);
    md.push_str(
        "Every request is `GET /` with `Host`, `User-Agent` and `Accept`; every server answers \
         `200 OK`, `Hello, world!\\n` as text/plain with `Date`, `Server` and `Content-Length`. \
         Medians of the interleaved repeats. *requests /s* counts responses; *p50*/*p99* are \
         per batch (one request, or the 16 of a pipelined write, until the last response); \
         *CPU µs/req* is the server's user + system time from `/proc/PID/stat` over the \
         measured window per request, *of it user* its user-space part; the × columns divide by twistor's figure; *CPU %* is \
         the server's CPU time as a share of one core; *peak RSS* is its `VmHWM` during the \
         run.\n\n",
    );
    md.push_str(&table.to_markdown());
    md.push('\n');
    if !targets.rows.is_empty() {
        md.push_str(
            "Against issue 8's targets. Ratios are twistor's figure over the peer's; *paired* \
             ratios are taken within each repeat (the servers of a repeat ran back to back) \
             and the verdict goes by their median.\n\n",
        );
        md.push_str(&targets.to_markdown());
        md.push('\n');
    }
    md
}

/// Settings of an instruction count.
#[derive(Debug, Clone)]
pub struct HttpCountOptions {
    /// The servers to count.
    pub servers: Vec<HttpServerKind>,
    /// Requests in the first run.
    pub n1: u64,
    /// Requests in the second run (more than `n1`).
    pub n2: u64,
    /// The loads counted, each in its own table.
    pub scenarios: Vec<HttpScenario>,
    /// Where callgrind's output files go.
    pub work_dir: PathBuf,
    /// Where the Markdown report goes.
    pub out_dir: PathBuf,
}

/// Counts user-space instructions per request under callgrind for each scenario, prints
/// the tables and writes `http-callgrind.md`.
pub fn callgrind(launcher: &HttpLauncher, opts: &HttpCountOptions) -> io::Result<()> {
    let mut md = format!(
        "# HTTP: instructions per request\n\n{}\n\nUser-space instructions per request, \
         counted by `valgrind --tool=callgrind` as (Ir₂ − Ir₁)/(N₂ − N₁) with N₁ = {} and \
         N₂ = {} requests, so start-up and connection set-up cancel. Output files: \
         `target/twistor-bench/callgrind.http.SCENARIO.SERVER.N.out`.\n\n",
        report::machine_line(),
        opts.n1,
        opts.n2
    );
    for scenario in &opts.scenarios {
        let table = callgrind_table(launcher, opts, scenario)?;
        let what = format!("`{}`: {}.", scenario.name(), scenario.describe());
        println!("\n{what}\n\n{}", table.to_text());
        md.push_str(&format!("{what}\n\n{}\n", table.to_markdown()));
    }
    std::fs::create_dir_all(&opts.out_dir)?;
    let path = opts.out_dir.join("http-callgrind.md");
    std::fs::write(&path, md)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn callgrind_table(
    launcher: &HttpLauncher,
    opts: &HttpCountOptions,
    scenario: &HttpScenario,
) -> io::Result<Table> {
    let mut rows: Vec<(HttpServerKind, [u64; 2])> = Vec::new();
    for &kind in &opts.servers {
        if let Some(why) = launcher.unavailable(kind) {
            eprintln!("note: {why}");
            continue;
        }
        let totals = counts::callgrind_pair(
            &format!("http.{}.{}", scenario.name(), kind.name()),
            &opts.work_dir,
            [opts.n1, opts.n2],
            |wrapper| launcher.start_wrapped(kind, wrapper, Duration::from_secs(120)),
            |server, n| {
                let load = HttpLoad::get(server.addr, scenario.conns, scenario.depth);
                load::http(server.addr, &load, Limit::Count(n), None).map(drop)
            },
        )?;
        rows.push((kind, totals));
    }
    let per = |totals: &[u64; 2]| {
        (totals[1] as f64 - totals[0] as f64) / (opts.n2 as f64 - opts.n1 as f64)
    };
    let find = |k| rows.iter().find(|r| r.0 == k).map(|r| per(&r.1));
    let base = find(HttpServerKind::Twistor);
    let hyper = find(HttpServerKind::Hyper);
    let mut t = Table::new(&[
        "server",
        &format!("Ir, {} req", opts.n1),
        &format!("Ir, {} req", opts.n2),
        "instructions / request",
        "× twistor",
        "× hyper-ct",
    ]);
    for (kind, totals) in &rows {
        let p = per(totals);
        t.push(vec![
            kind.name().into(),
            fmt_num(totals[0] as f64),
            fmt_num(totals[1] as f64),
            fmt_num(p),
            fmt_ratio(base.map(|b| p / b)),
            fmt_ratio(hyper.map(|b| p / b)),
        ]);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &kind in HttpServerKind::ALL {
            assert_eq!(HttpServerKind::from_name(kind.name()), Some(kind));
        }
        let names: Vec<String> = HttpScenario::all().iter().map(HttpScenario::name).collect();
        assert_eq!(names, ["keepalive", "pipelined"]);
    }
}
