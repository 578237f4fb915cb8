//! What the echo and HTTP suites share: their settings, the figures of a run and their
//! medians, the interleaved repeats, the main table and chart, and the report's frame.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::procfs::{self, Memory};
use crate::report::{self, BarGroup, Panel, Table, fmt_num, fmt_ratio};
use crate::server::{Launcher, Server, ServerSet};
use crate::stats::median;

/// A scenario of a suite, as tables and reports name it.
pub trait SuiteScenario {
    /// The short name used for `--scenarios` and in tables.
    fn name(&self) -> String;

    /// A longer description for reports.
    fn describe(&self) -> String;
}

/// Settings of one run of a suite.
#[derive(Debug, Clone)]
pub struct SuiteOptions<S, K> {
    /// Measured window of each timed run.
    pub duration: Duration,
    /// Load before each window.
    pub warmup: Duration,
    /// How many times each (scenario, server) pair runs, interleaved.
    pub repeats: usize,
    /// The scenarios, in order.
    pub scenarios: Vec<S>,
    /// The servers, in order (twistor first, as the ratios' base).
    pub servers: Vec<K>,
    /// The core the load generator runs on, if pinned.
    pub client_core: Option<usize>,
    /// Where the Markdown and SVG go.
    pub out_dir: PathBuf,
}

/// The figures of one run, or their medians over a (scenario, server) pair's runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Operations per second: round trips, requests, or MB for streams.
    pub rate: f64,
    /// Median latency in ns (zero where there is none, as for streams).
    pub p50_ns: u32,
    /// 99th percentile latency in ns.
    pub p99_ns: u32,
    /// Server CPU per operation, µs.
    pub cpu_us: f64,
    /// The user-space part of it (zero where not measured).
    pub user_us: f64,
    /// Server CPU use over the window, percent of one core.
    pub cpu_pct: f64,
    /// The server's peak RSS during the run, bytes.
    pub peak_rss: f64,
}

impl Figures {
    /// The median of each field over `runs` (NaN, or zero for latencies, when there are
    /// none).
    pub fn median_of(runs: &[Figures]) -> Figures {
        let m = |f: &dyn Fn(&Figures) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
        };
        Figures {
            rate: m(&|s| s.rate),
            p50_ns: m(&|s| f64::from(s.p50_ns)) as u32,
            p99_ns: m(&|s| f64::from(s.p99_ns)) as u32,
            cpu_us: m(&|s| s.cpu_us),
            user_us: m(&|s| s.user_us),
            cpu_pct: m(&|s| s.cpu_pct),
            peak_rss: m(&|s| s.peak_rss),
        }
    }
}

/// Figures per (scenario index, server): every run's, or the medians.
pub type ByPair<K, T> = BTreeMap<(usize, K), T>;

/// Starts one long-lived process per server and runs every scenario `repeats` times,
/// interleaved (A B C A B C …), with `run_once`; each run's peak RSS is taken from the
/// server and the run reported with `log(scenario, server, repeat, figures)`. Every server
/// is killed when this returns, failed or not.
pub fn run_interleaved<S, K: ServerSet>(
    launcher: &Launcher<K>,
    servers: &[K],
    scenarios: &[S],
    repeats: usize,
    mut run_once: impl FnMut(&Server, &S) -> io::Result<Figures>,
    log: impl Fn(&S, K, usize, &Figures),
) -> io::Result<ByPair<K, Vec<Figures>>> {
    let mut running: Vec<Server> = Vec::new();
    for &kind in servers {
        running.push(launcher.start(kind)?);
    }
    let mut samples: ByPair<K, Vec<Figures>> = BTreeMap::new();
    for (si, scenario) in scenarios.iter().enumerate() {
        for rep in 0..repeats {
            for (server, &kind) in running.iter().zip(servers) {
                // Best effort: without it the peak covers the server's life so far.
                let _ = procfs::reset_peak_rss(server.pid());
                let mut sample = run_once(server, scenario)?;
                sample.peak_rss = Memory::of(server.pid())?.peak_rss as f64;
                log(scenario, kind, rep, &sample);
                samples.entry((si, kind)).or_default().push(sample);
            }
        }
    }
    Ok(samples)
}

/// The medians of each pair's runs.
pub fn medians<K: ServerSet>(samples: &ByPair<K, Vec<Figures>>) -> ByPair<K, Figures> {
    samples
        .iter()
        .map(|(&key, runs)| (key, Figures::median_of(runs)))
        .collect()
}

/// A suite's main table: one row per (scenario, server) pair that has medians, reading
/// `scenario`, `server`, the suite's own `columns` made by `cells(scenario, medians)`, then
/// CPU and rate over twistor's, CPU % and peak RSS.
pub fn pair_table<S: SuiteScenario, K: ServerSet>(
    columns: &[&str],
    scenarios: &[S],
    servers: &[K],
    medians: &ByPair<K, Figures>,
    cells: impl Fn(&S, &Figures) -> Vec<String>,
) -> Table {
    let mut headers = vec!["scenario", "server"];
    headers.extend_from_slice(columns);
    headers.extend(["CPU × twistor", "rate × twistor", "CPU %", "peak RSS"]);
    let mut t = Table::new(&headers);
    for (si, scenario) in scenarios.iter().enumerate() {
        let base = medians.get(&(si, K::TWISTOR));
        for &kind in servers {
            let Some(f) = medians.get(&(si, kind)) else {
                continue;
            };
            let mut row = vec![scenario.name(), kind.name().to_owned()];
            row.extend(cells(scenario, f));
            row.extend([
                fmt_ratio(base.map(|b| f.cpu_us / b.cpu_us)),
                fmt_ratio(base.map(|b| f.rate / b.rate)),
                fmt_num(f.cpu_pct),
                format!("{} MiB", fmt_num(f.peak_rss / 1048576.0)),
            ]);
            t.push(row);
        }
    }
    t
}

/// The chart's bar groups, one per scenario twistor ran in: server CPU per operation and
/// rate, each over twistor's.
pub fn ratio_groups<S: SuiteScenario, K: ServerSet>(
    scenarios: &[S],
    servers: &[K],
    medians: &ByPair<K, Figures>,
) -> (Vec<BarGroup>, Vec<BarGroup>) {
    let mut cost = Vec::new();
    let mut rate = Vec::new();
    for (si, scenario) in scenarios.iter().enumerate() {
        let Some(base) = medians.get(&(si, K::TWISTOR)) else {
            continue;
        };
        let bars = |f: &dyn Fn(&Figures) -> f64| -> Vec<(String, f64)> {
            servers
                .iter()
                .filter_map(|k| medians.get(&(si, *k)).map(|m| (k.name().to_owned(), f(m))))
                .collect()
        };
        cost.push(BarGroup {
            label: scenario.name(),
            bars: bars(&|m| m.cpu_us / base.cpu_us),
        });
        rate.push(BarGroup {
            label: scenario.name(),
            bars: bars(&|m| m.rate / base.rate),
        });
    }
    (cost, rate)
}

/// The top of a suite's report: the `title` heading, the machine and the load average
/// before and after, how the suite `command` was run, and its chart, `{command}.svg`.
pub fn markdown_head<S, K: ServerSet>(
    title: &str,
    command: &str,
    opts: &SuiteOptions<S, K>,
    launcher: &Launcher<K>,
    load: (Option<f64>, Option<f64>),
) -> String {
    let fmt_load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
    let mut md = format!("# {title}\n\n");
    md.push_str(&format!(
        "{} · load average {} before, {} after\n\n",
        report::machine_line(),
        fmt_load(load.0),
        fmt_load(load.1)
    ));
    md.push_str(&format!(
        "Command: `twistor-bench {command} --duration {} --warmup {} --repeats {}` · servers \
         pinned to core {} · load generator {} · twistor server: `{}`\n\n",
        opts.duration.as_secs_f64(),
        opts.warmup.as_secs_f64(),
        opts.repeats,
        launcher
            .server_core
            .map_or("(not pinned)".into(), |c| c.to_string()),
        opts.client_core
            .map_or("not pinned".into(), |c| format!("on core {c}")),
        launcher.twistor_cmd_display(),
    ));
    md.push_str(&format!("![chart]({command}.svg)\n\n"));
    md
}

/// `Scenarios: `name` description; …` for a report.
pub fn describe_scenarios<S: SuiteScenario>(scenarios: &[S]) -> String {
    let described: Vec<String> = scenarios
        .iter()
        .map(|s| format!("`{}` {}", s.name(), s.describe()))
        .collect();
    format!("Scenarios: {}.\n\n", described.join("; "))
}

/// The report's closing list of notes (servers skipped, runs failed), if any.
pub fn notes_markdown(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let mut md = String::from("Notes:\n\n");
    for n in notes {
        md.push_str(&format!("- {n}\n"));
    }
    md
}

/// Writes `md` as `{name}.md` and the chart of `panels`, one bar per server, as
/// `{name}.svg` under `out_dir`, titled `{title}, {today}`.
pub fn write_report<K: ServerSet>(
    out_dir: &Path,
    name: &str,
    md: &str,
    title: &str,
    servers: &[K],
    panels: &[Panel],
) -> io::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let md_path = out_dir.join(format!("{name}.md"));
    std::fs::write(&md_path, md)?;
    let svg_path = out_dir.join(format!("{name}.svg"));
    let series: Vec<String> = servers.iter().map(|k| k.name().to_owned()).collect();
    let title = format!("{title}, {}", report::today());
    report::write_svg(&svg_path, &title, &series, panels)
        .map_err(|e| io::Error::other(e.to_string()))?;
    eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_per_field() {
        let s = |rate, cpu_us| Figures {
            rate,
            cpu_us,
            ..Figures::default()
        };
        let m = Figures::median_of(&[s(1.0, 30.0), s(3.0, 10.0), s(2.0, 20.0)]);
        assert_eq!(m.rate, 2.0);
        assert_eq!(m.cpu_us, 20.0);
    }
}
