//! Repeatable counts per round trip: user-space instructions (`valgrind --tool=callgrind`)
//! and system calls (`strace -c -f`).
//!
//! Each server runs twice under the tool, serving `n1` and then `n2` round trips of
//! ping-pong; the figure per round trip is `(count2 − count1) / (n2 − n1)`, so start-up,
//! connection set-up and shutdown cancel out.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::load::{self, Limit};
use crate::procfs;
use crate::report::{self, Table, fmt_num, fmt_ratio};
use crate::server::{Launcher, Server, ServerKind, ServerSet};

/// Settings shared by the two counters.
#[derive(Debug, Clone)]
pub struct CountOptions {
    /// The servers to count.
    pub servers: Vec<ServerKind>,
    /// Round trips in the first run.
    pub n1: u64,
    /// Round trips in the second run (more than `n1`).
    pub n2: u64,
    /// Concurrent connections.
    pub conns: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Where the tools' output files go.
    pub work_dir: PathBuf,
    /// Where the Markdown report goes.
    pub out_dir: PathBuf,
}

/// Counts user-space instructions per round trip under callgrind, prints the table and
/// writes `callgrind.md`.
pub fn callgrind(launcher: &Launcher<ServerKind>, opts: &CountOptions) -> io::Result<()> {
    let mut rows: Vec<(ServerKind, u64, u64)> = Vec::new();
    for &kind in &opts.servers {
        if let Some(why) = launcher.unavailable(kind) {
            eprintln!("note: {why}");
            continue;
        }
        let [ir1, ir2] = callgrind_pair(
            kind.name(),
            &opts.work_dir,
            [opts.n1, opts.n2],
            |wrapper| launcher.start_wrapped(kind, wrapper, Duration::from_secs(120)),
            |server, n| serve(server, opts, n),
        )?;
        rows.push((kind, ir1, ir2));
    }
    let per =
        |(_, a, b): &(ServerKind, u64, u64)| (*b as f64 - *a as f64) / (opts.n2 - opts.n1) as f64;
    let base = rows.iter().find(|r| r.0 == ServerKind::Twistor).map(per);
    let tokio_ct = rows.iter().find(|r| r.0 == ServerKind::TokioCt).map(per);
    let mut t = Table::new(&[
        "server",
        &format!("Ir, {} rtt", opts.n1),
        &format!("Ir, {} rtt", opts.n2),
        "instructions / rtt",
        "× twistor",
        "× tokio-ct",
    ]);
    for row in &rows {
        let p = per(row);
        t.push(vec![
            row.0.name().into(),
            fmt_num(row.1 as f64),
            fmt_num(row.2 as f64),
            fmt_num(p),
            fmt_ratio(base.map(|b| p / b)),
            fmt_ratio(tokio_ct.map(|b| p / b)),
        ]);
    }
    let what = format!(
        "User-space instructions per round trip, {}×{} B ping-pong, counted by \
         `valgrind --tool=callgrind` as (Ir₂ − Ir₁)/(N₂ − N₁) with N₁ = {} and N₂ = {}.",
        opts.conns, opts.size, opts.n1, opts.n2
    );
    write_report(opts, "callgrind", "Instructions per round trip", &what, &t)
}

/// Counts system calls per echoed message under `strace -c -f`, prints the table and the
/// calls that make it up, and writes `strace.md`.
pub fn strace(launcher: &Launcher<ServerKind>, opts: &CountOptions) -> io::Result<()> {
    let mut t = Table::new(&[
        "server",
        "syscalls / message",
        "× twistor",
        "breakdown / message",
    ]);
    let mut base = None;
    for &kind in &opts.servers {
        if let Some(why) = launcher.unavailable(kind) {
            eprintln!("note: {why}");
            continue;
        }
        let mut counts: [BTreeMap<String, u64>; 2] = Default::default();
        for (i, n) in [opts.n1, opts.n2].into_iter().enumerate() {
            let out = opts
                .work_dir
                .join(format!("strace.{}.{n}.txt", kind.name()));
            let wrapper = vec![
                "strace".to_owned(),
                "-f".to_owned(),
                "-c".to_owned(),
                "-o".to_owned(),
                out.display().to_string(),
            ];
            let mut server = launcher.start_wrapped(kind, &wrapper, Duration::from_secs(60))?;
            serve(&server, opts, n)?;
            // strace writes its summary once its tracee is gone: end the tracee, not strace.
            for pid in procfs::children(server.pid()) {
                Server::signal(pid, libc::SIGTERM)?;
            }
            if !server.wait_exit(Duration::from_secs(30)) {
                return Err(io::Error::other(format!(
                    "{kind} under strace did not exit"
                )));
            }
            counts[i] = parse_strace_summary(&std::fs::read_to_string(&out)?);
            eprintln!(
                "strace {kind}: {n} round trips, {} system calls",
                counts[i].get("total").copied().unwrap_or(0)
            );
        }
        let dn = (opts.n2 - opts.n1) as f64;
        let delta = |name: &str| {
            let a = counts[0].get(name).copied().unwrap_or(0) as f64;
            let b = counts[1].get(name).copied().unwrap_or(0) as f64;
            (b - a) / dn
        };
        let total = delta("total");
        if kind == ServerKind::Twistor {
            base = Some(total);
        }
        let mut parts: Vec<(String, f64)> = counts[1]
            .keys()
            .filter(|k| k.as_str() != "total")
            .map(|k| (k.clone(), delta(k)))
            .filter(|(_, v)| *v >= 0.005)
            .collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let breakdown: Vec<String> = parts
            .iter()
            .map(|(k, v)| format!("{k} {}", fmt_num(*v)))
            .collect();
        t.push(vec![
            kind.name().into(),
            fmt_num(total),
            fmt_ratio(base.map(|b| total / b)),
            breakdown.join(", "),
        ]);
    }
    let what = format!(
        "System calls per echoed message (one request in, its echo out), {}×{} B ping-pong, \
         counted by `strace -f -c` as (calls₂ − calls₁)/(N₂ − N₁) with N₁ = {} and N₂ = {}.",
        opts.conns, opts.size, opts.n1, opts.n2
    );
    write_report(opts, "strace", "System calls per message", &what, &t)
}

/// Runs a server twice under `valgrind --tool=callgrind`, `serve` putting `n[0]` and then
/// `n[1]` operations through it, and returns the two runs' total instruction counts.
///
/// `start` starts the server under the wrapper command line it is given. The output files
/// are `work_dir/callgrind.{name}.{n}.out`, kept for `callgrind_annotate`.
pub fn callgrind_pair(
    name: &str,
    work_dir: &Path,
    n: [u64; 2],
    start: impl Fn(&[String]) -> io::Result<Server>,
    serve: impl Fn(&Server, u64) -> io::Result<()>,
) -> io::Result<[u64; 2]> {
    let mut totals = [0u64; 2];
    for (i, n) in n.into_iter().enumerate() {
        let out = work_dir.join(format!("callgrind.{name}.{n}.out"));
        let wrapper = vec![
            "valgrind".to_owned(),
            "--tool=callgrind".to_owned(),
            "-q".to_owned(),
            format!("--callgrind-out-file={}", out.display()),
        ];
        let _ = std::fs::remove_file(&out);
        let mut server = start(&wrapper)?;
        serve(&server, n)?;
        // valgrind and its guest share a pid; SIGTERM lets callgrind write its totals.
        Server::signal(server.pid(), libc::SIGTERM)?;
        if !server.wait_exit(Duration::from_secs(120)) {
            return Err(io::Error::other(format!(
                "{name} under callgrind did not exit"
            )));
        }
        let text = std::fs::read_to_string(&out)?;
        totals[i] = parse_callgrind_total(&text).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "no totals in callgrind output")
        })?;
        eprintln!(
            "callgrind {name}: {n} operations, {} instructions",
            totals[i]
        );
    }
    Ok(totals)
}

/// The total instruction count (`totals:` or else `summary:`) of a callgrind output file.
pub fn parse_callgrind_total(text: &str) -> Option<u64> {
    let find = |key: &str| {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    find("totals:").or_else(|| find("summary:"))
}

/// Calls per system call name from `strace -c` output, with the `total` row as "total".
///
/// Rows read `% time  seconds  usecs/call  calls  [errors]  syscall`; the calls column is
/// always the fourth, whether or not there were errors.
pub fn parse_strace_summary(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
            continue;
        }
        let (Some(name), Ok(calls)) = (fields.last(), fields[3].parse::<u64>()) else {
            continue;
        };
        *out.entry((*name).to_owned()).or_insert(0) += calls;
    }
    out
}

fn serve(server: &Server, opts: &CountOptions, n: u64) -> io::Result<()> {
    load::ping_pong(server.addr, opts.conns, opts.size, Limit::Count(n), None)?;
    Ok(())
}

fn write_report(
    opts: &CountOptions,
    name: &str,
    title: &str,
    what: &str,
    table: &Table,
) -> io::Result<()> {
    println!("\n{what}\n\n{}", table.to_text());
    report::write_table_report(&opts.out_dir, name, title, what, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callgrind_totals() {
        let text = "version: 1\ncmd: ./x\nevents: Ir\nsummary: 1234\nfn=main\n3 4\ntotals: 5678\n";
        assert_eq!(parse_callgrind_total(text), Some(5678));
        assert_eq!(parse_callgrind_total("summary: 99\n"), Some(99));
        assert_eq!(parse_callgrind_total("nothing\n"), None);
    }

    #[test]
    fn strace_rows_with_and_without_errors() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 55.00    0.011000           1     10000           write
 40.00    0.008000           0     20000     10000 read
  5.00    0.001000           2       500           epoll_wait
------ ----------- ----------- --------- --------- ----------------
100.00    0.020000           0     30500     10000 total
";
        let m = parse_strace_summary(text);
        assert_eq!(m["write"], 10_000);
        assert_eq!(m["read"], 20_000);
        assert_eq!(m["epoll_wait"], 500);
        assert_eq!(m["total"], 30_500);
        assert_eq!(m.len(), 4);
    }
}
