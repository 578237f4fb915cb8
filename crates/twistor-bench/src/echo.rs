//! The echo suite: every scenario against every server, interleaved, medians reported.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use crate::load::{self, Limit};
use crate::procfs::{self, Memory};
use crate::report::{BarGroup, Panel, Table, fmt_num, fmt_ratio, fmt_us};
use crate::server::{Launcher, Server, ServerKind, ServerSet};
use crate::suite::{self, ByPair, Figures, SuiteOptions, SuiteScenario};

/// One scenario of the echo suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `conns` connections each sending `size` bytes and waiting for the echo.
    PingPong {
        /// Concurrent connections.
        conns: usize,
        /// Message size in bytes.
        size: usize,
    },
    /// One connection streaming this many bytes through the echo.
    Stream {
        /// Bytes to send (and receive back).
        bytes: u64,
    },
    /// This many idle connections, for resident memory per connection.
    Idle {
        /// Connections to hold open.
        conns: usize,
    },
}

impl Scenario {
    /// The suite's scenarios: 1×64 B, 50×64 B, 50×4 KiB, 1,000×64 B, a stream of
    /// `stream_bytes`, and `idle_conns` idle connections.
    pub fn all(stream_bytes: u64, idle_conns: usize) -> Vec<Scenario> {
        vec![
            Scenario::PingPong { conns: 1, size: 64 },
            Scenario::PingPong {
                conns: 50,
                size: 64,
            },
            Scenario::PingPong {
                conns: 50,
                size: 4096,
            },
            Scenario::PingPong {
                conns: 1000,
                size: 64,
            },
            Scenario::Stream {
                bytes: stream_bytes,
            },
            Scenario::Idle { conns: idle_conns },
        ]
    }
}

impl SuiteScenario for Scenario {
    /// The short name used for `--scenarios` and in tables: `1x64`, `50x64`, `50x4k`,
    /// `1000x64`, `stream`, `idle`.
    fn name(&self) -> String {
        match *self {
            Scenario::PingPong { conns, size } if size % 1024 == 0 => {
                format!("{conns}x{}k", size / 1024)
            }
            Scenario::PingPong { conns, size } => format!("{conns}x{size}"),
            Scenario::Stream { .. } => "stream".into(),
            Scenario::Idle { .. } => "idle".into(),
        }
    }

    fn describe(&self) -> String {
        match *self {
            Scenario::PingPong { conns, size } => {
                format!("ping-pong, {conns} connection(s) × {size} B")
            }
            Scenario::Stream { bytes } => {
                format!("stream {} MiB through one connection", bytes >> 20)
            }
            Scenario::Idle { conns } => format!("{conns} idle connections"),
        }
    }
}

/// The report's and the chart's title.
const TITLE: &str = "twistor echo benchmarks";

/// Settings of one run of the echo suite.
pub type EchoOptions = SuiteOptions<Scenario, ServerKind>;

/// Runs the suite, prints its tables and writes `echo.md` and `echo.svg` to the output
/// directory.
pub fn run(launcher: &Launcher<ServerKind>, opts: &EchoOptions) -> io::Result<()> {
    let load_before = procfs::load_average();
    let (servers, mut notes) = launcher.available(&opts.servers);

    // Ping-pong and streams share one long-lived process per server; idle needs fresh ones.
    let active: Vec<Scenario> = opts
        .scenarios
        .iter()
        .copied()
        .filter(|s| !matches!(s, Scenario::Idle { .. }))
        .collect();
    let samples = if active.is_empty() {
        BTreeMap::new()
    } else {
        suite::run_interleaved(
            launcher,
            &servers,
            &active,
            opts.repeats,
            |server, scenario| run_once(server, scenario, opts),
            |scenario, kind, rep, sample| {
                eprintln!(
                    "{:>8} {:>9} run {}/{}: {} {}/s, server CPU {} µs/op ({}%)",
                    scenario.name(),
                    kind.name(),
                    rep + 1,
                    opts.repeats,
                    fmt_num(sample.rate),
                    unit(scenario),
                    fmt_num(sample.cpu_us),
                    fmt_num(sample.cpu_pct),
                );
            },
        )?
    };

    let mut idle: BTreeMap<ServerKind, IdleFigures> = BTreeMap::new();
    for scenario in &opts.scenarios {
        if let Scenario::Idle { conns } = *scenario {
            for &kind in &servers {
                match run_idle(launcher, kind, conns) {
                    Ok(fig) => {
                        eprintln!(
                            "    idle {:>9}: {} B per connection",
                            kind.name(),
                            fmt_num(fig.per_conn)
                        );
                        idle.insert(kind, fig);
                    }
                    Err(e) => {
                        eprintln!("    idle {:>9}: failed: {e}", kind.name());
                        notes.push(format!("idle with {}: {e}", kind.name()));
                    }
                }
            }
        }
    }

    let medians = suite::medians(&samples);
    let main_table = main_table(&active, &servers, &medians);
    let idle_table = idle_table(&servers, &idle, &opts.scenarios);
    println!("\n{}", main_table.to_text());
    if !idle.is_empty() {
        println!("{}", idle_table.to_text());
    }

    let load = (load_before, procfs::load_average());
    let mut md = suite::markdown_head(TITLE, "echo", opts, launcher, load);
    md.push_str(&markdown_body(&active, &main_table, &idle_table));
    md.push_str(&suite::notes_markdown(&notes));
    let panels = chart_panels(&active, &servers, &medians, &idle);
    suite::write_report(&opts.out_dir, "echo", &md, TITLE, &servers, &panels)
}

fn run_once(server: &Server, scenario: &Scenario, opts: &EchoOptions) -> io::Result<Figures> {
    match *scenario {
        Scenario::PingPong { conns, size } => {
            let limit = Limit::Time {
                warmup: opts.warmup,
                measure: opts.duration,
            };
            let r = load::ping_pong(server.addr, conns, size, limit, Some(server.pid()))?;
            let cpu = r.server_cpu.unwrap_or_default().total();
            Ok(Figures {
                rate: r.rate(),
                p50_ns: r.latency.p50_ns,
                p99_ns: r.latency.p99_ns,
                cpu_us: cpu.as_secs_f64() * 1e6 / r.round_trips.max(1) as f64,
                cpu_pct: 100.0 * cpu.as_secs_f64() / r.elapsed.as_secs_f64(),
                ..Figures::default()
            })
        }
        Scenario::Stream { bytes } => {
            let r = load::stream(server.addr, bytes, Some(server.pid()))?;
            let cpu = r.server_cpu.unwrap_or_default().total();
            Ok(Figures {
                rate: r.mb_per_sec(),
                p50_ns: 0,
                p99_ns: 0,
                cpu_us: cpu.as_secs_f64() * 1e6 / (r.bytes as f64 / 1e6),
                cpu_pct: 100.0 * cpu.as_secs_f64() / r.elapsed.as_secs_f64(),
                ..Figures::default()
            })
        }
        Scenario::Idle { .. } => Err(io::Error::other("idle runs separately")),
    }
}

/// Resident memory of one server holding idle connections.
#[derive(Debug, Clone, Copy)]
struct IdleFigures {
    /// RSS with one connection's round trip done.
    base: u64,
    /// RSS with all connections open.
    loaded: u64,
    /// `(loaded - base) / conns`.
    per_conn: f64,
}

fn run_idle(
    launcher: &Launcher<ServerKind>,
    kind: ServerKind,
    conns: usize,
) -> io::Result<IdleFigures> {
    let server = launcher.start(kind)?;
    // One round trip first so lazily built state (buffers, the first task) is in the base.
    let warm = load::idle(server.addr, 1, 64)?;
    std::thread::sleep(Duration::from_millis(200));
    let base = Memory::of(server.pid())?.rss;
    let held = load::idle(server.addr, conns, 64)?;
    std::thread::sleep(Duration::from_millis(500));
    let loaded = Memory::of(server.pid())?.rss;
    drop(held);
    drop(warm);
    drop(server);
    Ok(IdleFigures {
        base,
        loaded,
        per_conn: loaded.saturating_sub(base) as f64 / conns.max(1) as f64,
    })
}

fn unit(scenario: &Scenario) -> &'static str {
    match scenario {
        Scenario::Stream { .. } => "MB",
        _ => "rtt",
    }
}

fn main_table(
    scenarios: &[Scenario],
    servers: &[ServerKind],
    medians: &ByPair<ServerKind, Figures>,
) -> Table {
    let columns = ["rate /s", "p50", "p99", "CPU µs/op"];
    suite::pair_table(&columns, scenarios, servers, medians, |scenario, f| {
        let is_stream = matches!(scenario, Scenario::Stream { .. });
        let latency = |ns: u32| if is_stream { "–".into() } else { fmt_us(ns) };
        vec![
            format!("{} {}", fmt_num(f.rate), unit(scenario)),
            latency(f.p50_ns),
            latency(f.p99_ns),
            fmt_num(f.cpu_us),
        ]
    })
}

fn idle_table(
    servers: &[ServerKind],
    idle: &BTreeMap<ServerKind, IdleFigures>,
    scenarios: &[Scenario],
) -> Table {
    let conns = scenarios
        .iter()
        .find_map(|s| match s {
            Scenario::Idle { conns } => Some(*conns),
            _ => None,
        })
        .unwrap_or(0);
    let mut t = Table::new(&[
        "server",
        "connections",
        "RSS before",
        "RSS with them",
        "bytes / connection",
        "× twistor",
    ]);
    let base = idle.get(&ServerKind::Twistor).map(|f| f.per_conn);
    for kind in servers {
        if let Some(f) = idle.get(kind) {
            t.push(vec![
                kind.name().into(),
                fmt_num(conns as f64),
                format!("{} KiB", fmt_num(f.base as f64 / 1024.0)),
                format!("{} KiB", fmt_num(f.loaded as f64 / 1024.0)),
                fmt_num(f.per_conn),
                fmt_ratio(base.map(|b| f.per_conn / b)),
            ]);
        }
    }
    t
}

fn chart_panels(
    scenarios: &[Scenario],
    servers: &[ServerKind],
    medians: &ByPair<ServerKind, Figures>,
    idle: &BTreeMap<ServerKind, IdleFigures>,
) -> Vec<Panel> {
    let (mut cost, rate) = suite::ratio_groups(scenarios, servers, medians);
    if let Some(base) = idle.get(&ServerKind::Twistor) {
        cost.push(BarGroup {
            label: "idle RSS".into(),
            bars: servers
                .iter()
                .filter_map(|k| {
                    idle.get(k)
                        .map(|f| (k.name().to_owned(), f.per_conn / base.per_conn))
                })
                .collect(),
        });
    }
    vec![
        Panel {
            title: "server cost per op, × twistor (lower is better)".into(),
            groups: cost,
        },
        Panel {
            title: "round trips or MB per second, × twistor (higher is better)".into(),
            groups: rate,
        },
    ]
}

/// The report between its head and its notes: the scenarios, the main table and the idle
/// table.
fn markdown_body(scenarios: &[Scenario], main: &Table, idle_table: &Table) -> String {
    let mut md = String::new();
    if !scenarios.is_empty() {
        md.push_str(&suite::describe_scenarios(scenarios));
        md.push_str(
            "Medians of the interleaved repeats. *rate* is round trips (or, for `stream`, MB \
             echoed) per second; *CPU µs/op* is the server's user + system time from \
             `/proc/PID/stat` over the measured window per round trip (or per MB); the × columns \
             divide by twistor's figure; *CPU %* is the server's CPU time over the window as a share \
             of one core. *peak RSS* is the server's `VmHWM` during the run (reset before it \
             through `/proc/PID/clear_refs`).\n\n",
        );
        md.push_str(&main.to_markdown());
        md.push('\n');
    }
    if !idle_table.rows.is_empty() {
        md.push_str(
            "Idle connections: a fresh server, one round trip on each connection, then RSS \
             (`VmRSS`) compared with before they connected.\n\n",
        );
        md.push_str(&idle_table.to_markdown());
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names() {
        let names: Vec<String> = Scenario::all(1 << 30, 10_000)
            .iter()
            .map(Scenario::name)
            .collect();
        assert_eq!(
            names,
            ["1x64", "50x64", "50x4k", "1000x64", "stream", "idle"]
        );
    }
}
