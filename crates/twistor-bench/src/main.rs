//! `twistor-bench`: twistor against tokio, hyper, a C epoll loop and Twisted.
//!
//! `cargo run --release -p twistor-bench -- echo` runs the echo suite, `-- http` the HTTP
//! one, `-- dns` the DNS one; `--help` lists the rest.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use twistor_bench::counts::{self, CountOptions};
use twistor_bench::echo::{self, Scenario};
use twistor_bench::http::{self, HttpCountOptions, HttpScenario, HttpServerKind};
use twistor_bench::load::{self, HttpLoad, Limit};
use twistor_bench::report::{self, Table, fmt_num, fmt_us};
use twistor_bench::server::{self, Launcher, ServerKind, ServerSet};
use twistor_bench::suite::{SuiteOptions, SuiteScenario};
use twistor_bench::{dns, micro, peers};

/// What the subcommands return: any error ends the run with its message.
type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(
    name = "twistor-bench",
    about = "twistor against tokio, hyper, a C epoll loop and Twisted"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every echo scenario against every server, interleaved; writes echo.md and echo.svg.
    Echo(EchoArgs),
    /// HTTP hello world, keep-alive and pipelined, against hyper, C and Twisted; writes
    /// http.md and http.svg.
    Http(HttpArgs),
    /// Authoritative DNS over UDP against NSD, Knot and Twisted, loaded by dnsperf; writes
    /// dns.md and dns.svg.
    Dns(DnsArgs),
    /// User-space instructions per HTTP request under valgrind's callgrind.
    HttpCallgrind(HttpCountArgs),
    /// User-space instructions per round trip at 50×64 B, under valgrind's callgrind.
    Callgrind(CountArgs),
    /// System calls per echoed message at 50×64 B, under strace -c -f.
    Strace(CountArgs),
    /// In-process: schedule and cancel timers, twistor against tokio.
    Timers {
        /// Timers scheduled then cancelled per run.
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// In-process: Deferred callback chains, twistor's and (through Python) Twisted's.
    Deferred {
        /// Chains fired per run.
        #[arg(long, default_value_t = 1_000_000)]
        chains: usize,
        /// Callbacks per chain.
        #[arg(long, default_value_t = 10)]
        callbacks: usize,
    },
    /// Runs one of the servers this binary carries: the echo servers twistor, tokio-ct and
    /// tokio-mt, the HTTP servers twistor-http, hyper-ct and hyper-ct-pf.
    Serve {
        /// twistor, tokio-ct, tokio-mt, twistor-http, hyper-ct or hyper-ct-pf.
        kind: String,
        /// The port on 127.0.0.1 (0 lets the OS choose).
        port: u16,
    },
    /// The HTTP load generator alone, against any HTTP server.
    LoadHttp(LoadHttpArgs),
    /// The load generator alone, against any echo server.
    Load {
        /// The server's address.
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: std::net::SocketAddr,
        /// Concurrent connections.
        #[arg(long, default_value_t = 50)]
        conns: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Pin the load generator to this core.
        #[arg(long)]
        core: Option<usize>,
    },
}

/// The HTTP load generator alone, against any HTTP server.
#[derive(Args)]
struct LoadHttpArgs {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Requests per write (1: one at a time; 16: pipelined).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Pin the load generator to this core.
    #[arg(long)]
    core: Option<usize>,
}

#[derive(Args)]
struct HttpCommon {
    #[command(flatten)]
    placement: Placement,
    /// The twistor server command, `{port}` standing for the port (default: this binary's
    /// `serve twistor-http {port}`, a copy of twistor-http's examples/hello_world.rs).
    #[arg(long)]
    twistor_cmd: Option<String>,
    /// Servers to run: twistor, hyper-ct, hyper-ct-pf, c-epoll, twisted (default: all but
    /// twisted for http-callgrind).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
}

#[derive(Args)]
struct HttpArgs {
    #[command(flatten)]
    common: HttpCommon,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 0.3)]
    warmup: f64,
    /// Runs per (scenario, server), interleaved A B C A B C …; medians are reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Scenarios to run: keepalive, pipelined (default: both).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// About 20 seconds: 0.5 s runs, 0.1 s warm-up, 1 repeat.
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
struct DnsArgs {
    #[command(flatten)]
    placement: Placement,
    /// The twistor server command, `{port}` and `{zone}` standing for the port and the zone
    /// file (default: `twist dns --port {port} --interface 127.0.0.1 --zone {zone}
    /// --rate-limit 0`, with the `twist` next to this binary).
    #[arg(long)]
    twistor_cmd: Option<String>,
    /// Servers to run: twistor, nsd, knot, twisted (default: all).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Seconds of each dnsperf run.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Runs per server, interleaved A B C D A B C D …; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// dnsperf -c: client sockets.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// dnsperf -q: queries in flight at once, for every server but Twisted.
    #[arg(long, default_value_t = 100)]
    outstanding: usize,
    /// dnsperf -q for Twisted.
    #[arg(long, default_value_t = 20)]
    twisted_outstanding: usize,
    /// Offered rates, one scenario each: `max` (as fast as each server answers) or queries
    /// per second (dnsperf -Q), the same for every server.
    #[arg(long, value_delimiter = ',', default_value = "max,50000")]
    rates: Vec<String>,
    /// About 20 seconds: 2 s runs, 1 repeat.
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
struct HttpCountArgs {
    #[command(flatten)]
    common: HttpCommon,
    /// Requests in the first run.
    #[arg(long, default_value_t = 20_000)]
    n1: u64,
    /// Requests in the second run.
    #[arg(long, default_value_t = 100_000)]
    n2: u64,
    /// Scenarios to count: keepalive, pipelined (default: both).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
}

/// Where results go and which cores run what: the options every suite shares.
#[derive(Args)]
struct Placement {
    /// Where results go (default: bench/results at the workspace root).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Core the load generator is pinned to.
    #[arg(long, default_value_t = 0)]
    client_core: usize,
    /// Core every server is pinned to.
    #[arg(long, default_value_t = 1)]
    server_core: usize,
    /// Pin nothing.
    #[arg(long)]
    no_pin: bool,
}

#[derive(Args)]
struct Common {
    #[command(flatten)]
    placement: Placement,
    /// The twistor server command, `{port}` standing for the port (default: `twist echo
    /// --listen tcp:{port}` if target/release/twist exists, else `twistor-bench serve
    /// twistor {port}`, a copy of examples/echo_server.rs).
    #[arg(long)]
    twistor_cmd: Option<String>,
}

#[derive(Args)]
struct EchoArgs {
    #[command(flatten)]
    common: Common,
    /// Measured seconds per ping-pong run.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 0.3)]
    warmup: f64,
    /// Runs per (scenario, server), interleaved A B C A B C …; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Scenarios to run: 1x64, 50x64, 50x4k, 1000x64, stream, idle (default: all).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Servers to run: twistor, tokio-ct, tokio-mt, c-epoll, twisted (default: all).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// MiB streamed in the stream scenario.
    #[arg(long, default_value_t = 1024)]
    stream_mib: u64,
    /// Connections in the idle scenario.
    #[arg(long, default_value_t = 10_000)]
    idle_conns: usize,
    /// About a minute: 0.5 s runs, 0.1 s warm-up, 1 repeat, 256 MiB stream, 2,000 idle.
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
struct CountArgs {
    #[command(flatten)]
    common: Common,
    /// Servers to count (default: twistor, tokio-ct, c-epoll for callgrind; all for strace).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Round trips in the first run.
    #[arg(long, default_value_t = 20_000)]
    n1: u64,
    /// Round trips in the second run.
    #[arg(long, default_value_t = 100_000)]
    n2: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twistor-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> BoxResult<()> {
    match command {
        Command::Echo(args) => run_echo(args),
        Command::Http(args) => run_http(args),
        Command::Dns(args) => run_dns(args),
        Command::HttpCallgrind(args) => run_http_callgrind(args),
        Command::LoadHttp(args) => run_load_http(args),
        Command::Callgrind(args) => {
            let defaults = [ServerKind::Twistor, ServerKind::TokioCt, ServerKind::C];
            let (launcher, opts) = count_setup(args, &defaults)?;
            Ok(counts::callgrind(&launcher, &opts)?)
        }
        Command::Strace(args) => {
            let (launcher, opts) = count_setup(args, ServerKind::ALL)?;
            Ok(counts::strace(&launcher, &opts)?)
        }
        Command::Timers { count, repeats } => run_timers(count, repeats),
        Command::Deferred { chains, callbacks } => run_deferred(chains, callbacks),
        Command::Serve { kind, port } => match kind.as_str() {
            "twistor" => Ok(peers::twistor_echo(port)?),
            "tokio-ct" => Ok(peers::tokio_current_thread(port)?),
            "tokio-mt" => Ok(peers::tokio_multi_thread(port)?),
            "twistor-http" => peers::twistor_http_hello(port),
            "hyper-ct" => Ok(peers::hyper_current_thread(port, false)?),
            "hyper-ct-pf" => Ok(peers::hyper_current_thread(port, true)?),
            other => Err(format!(
                "no built-in server {other:?}: twistor, tokio-ct, tokio-mt, twistor-http, \
                 hyper-ct, hyper-ct-pf"
            )
            .into()),
        },
        Command::Load {
            addr,
            conns,
            size,
            duration,
            core,
        } => {
            if let Some(core) = core {
                server::pin_current_thread(core)?;
            }
            server::raise_fd_limit()?;
            let limit = Limit::Time {
                warmup: Duration::from_millis(300),
                measure: Duration::from_secs_f64(duration),
            };
            let r = load::ping_pong(addr, conns, size, limit, None)?;
            println!(
                "{conns}×{size} B: {} round trips/s, p50 {}, p99 {}",
                fmt_num(r.rate()),
                fmt_us(r.latency.p50_ns),
                fmt_us(r.latency.p99_ns)
            );
            Ok(())
        }
    }
}

fn run_echo(args: EchoArgs) -> BoxResult<()> {
    let (duration, warmup, repeats, stream_mib, idle_conns) = if args.quick {
        (0.5, 0.1, 1, 256, 2_000)
    } else {
        (
            args.duration,
            args.warmup,
            args.repeats,
            args.stream_mib,
            args.idle_conns,
        )
    };
    let scenarios = pick_scenarios(&args.scenarios, Scenario::all(stream_mib << 20, idle_conns))?;
    let servers = parse_servers(&args.servers, ServerKind::ALL)?;
    let (launcher, opts) = suite_setup(
        &args.common.placement,
        args.common.twistor_cmd.as_deref(),
        (duration, warmup, repeats),
        scenarios,
        servers,
    )?;
    Ok(echo::run(&launcher, &opts)?)
}

fn run_http(args: HttpArgs) -> BoxResult<()> {
    let (duration, warmup, repeats) = if args.quick {
        (0.5, 0.1, 1)
    } else {
        (args.duration, args.warmup, args.repeats)
    };
    let scenarios = pick_scenarios(&args.scenarios, HttpScenario::all())?;
    let servers = parse_servers(&args.common.servers, HttpServerKind::ALL)?;
    let (launcher, opts) = suite_setup(
        &args.common.placement,
        args.common.twistor_cmd.as_deref(),
        (duration, warmup, repeats),
        scenarios,
        servers,
    )?;
    Ok(http::run(&launcher, &opts)?)
}

fn run_dns(args: DnsArgs) -> BoxResult<()> {
    let (duration, repeats) = if args.quick {
        (2.0, 1)
    } else {
        (args.duration, args.repeats)
    };
    let servers = args
        .servers
        .iter()
        .map(|n| {
            dns::DnsServerKind::from_name(n).ok_or_else(|| {
                let known: Vec<&str> = dns::DnsServerKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown server {n:?}: {}", known.join(", "))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let servers = if servers.is_empty() {
        dns::DnsServerKind::ALL.to_vec()
    } else {
        servers
    };
    let rates = args
        .rates
        .iter()
        .map(|r| match r.as_str() {
            "max" => Ok(None),
            n => n
                .parse::<u64>()
                .ok()
                .filter(|&q| q > 0)
                .map(Some)
                .ok_or_else(|| format!("bad rate {n:?}: `max` or queries per second")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let placement = &args.placement;
    let pin = !placement.no_pin && server::cpu_count() >= 2;
    if pin {
        server::pin_current_thread(placement.client_core)?;
    }
    let (twistor_cmd, twistor_missing) = match args.twistor_cmd.as_deref() {
        Some(cmd) => (cmd.split_whitespace().map(str::to_owned).collect(), None),
        None => match dns::default_twistor_cmd(&std::env::current_exe()?) {
            Ok(cmd) => (cmd, None),
            Err(why) => (Vec::new(), Some(why)),
        },
    };
    let opts = dns::DnsOptions {
        servers,
        duration: Duration::from_secs_f64(duration),
        repeats: repeats.max(1),
        clients: args.clients.max(1),
        outstanding: args.outstanding.max(1),
        twisted_outstanding: args.twisted_outstanding.max(1),
        rates,
        twistor_cmd,
        twistor_missing,
        server_core: pin.then_some(placement.server_core),
        client_core: pin.then_some(placement.client_core),
        work_dir: std::env::temp_dir().join(format!("twistor-bench-dns-{}", std::process::id())),
        out_dir: results_dir(placement.out.as_ref())?,
    };
    Ok(dns::run(&opts)?)
}

fn run_http_callgrind(args: HttpCountArgs) -> BoxResult<()> {
    if args.n2 <= args.n1 {
        return Err("--n2 must be larger than --n1".into());
    }
    let scenarios = pick_scenarios(&args.scenarios, HttpScenario::all())?;
    let defaults = [
        HttpServerKind::Twistor,
        HttpServerKind::Hyper,
        HttpServerKind::C,
    ];
    let servers = parse_servers(&args.common.servers, &defaults)?;
    let (launcher, out_dir, _) = setup(&args.common.placement, args.common.twistor_cmd.as_deref())?;
    let opts = HttpCountOptions {
        servers,
        n1: args.n1,
        n2: args.n2,
        scenarios,
        work_dir: work_dir(),
        out_dir,
    };
    Ok(http::callgrind(&launcher, &opts)?)
}

fn run_load_http(args: LoadHttpArgs) -> BoxResult<()> {
    if let Some(core) = args.core {
        server::pin_current_thread(core)?;
    }
    server::raise_fd_limit()?;
    let limit = Limit::Time {
        warmup: Duration::from_millis(300),
        measure: Duration::from_secs_f64(args.duration),
    };
    let load = HttpLoad::get(args.addr, args.conns, args.depth);
    let r = load::http(args.addr, &load, limit, None)?;
    println!(
        "{} connections × {} requests per write: {} requests/s, p50 {}, p99 {} (per write)",
        args.conns,
        args.depth,
        fmt_num(r.rate()),
        fmt_us(r.latency.p50_ns),
        fmt_us(r.latency.p99_ns)
    );
    Ok(())
}

/// The scenarios named in `names`, or all of `all` when none are.
fn pick_scenarios<S: SuiteScenario + Clone>(names: &[String], all: Vec<S>) -> BoxResult<Vec<S>> {
    if names.is_empty() {
        return Ok(all);
    }
    let known: Vec<String> = all.iter().map(S::name).collect();
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|s| &s.name() == name)
                .cloned()
                .ok_or_else(|| format!("unknown scenario {name:?}: {}", known.join(", ")).into())
        })
        .collect()
}

/// `out`, or bench/results at the workspace root; created, and made absolute.
fn results_dir(out: Option<&PathBuf>) -> BoxResult<PathBuf> {
    let out = out
        .cloned()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/results"));
    std::fs::create_dir_all(&out)?;
    Ok(out.canonicalize()?)
}

fn count_setup(
    args: CountArgs,
    defaults: &[ServerKind],
) -> BoxResult<(Launcher<ServerKind>, CountOptions)> {
    if args.n2 <= args.n1 {
        return Err("--n2 must be larger than --n1".into());
    }
    let servers = parse_servers(&args.servers, defaults)?;
    let (launcher, out_dir, _) = setup(&args.common.placement, args.common.twistor_cmd.as_deref())?;
    let work_dir = work_dir();
    Ok((
        launcher,
        CountOptions {
            servers,
            n1: args.n1,
            n2: args.n2,
            conns: args.conns,
            size: args.size,
            work_dir,
            out_dir,
        },
    ))
}

/// Raises the fd limit, pins this process, and prepares a suite's servers; returns them
/// with the results directory and the load generator's core.
fn setup<K: ServerSet>(
    placement: &Placement,
    twistor_cmd: Option<&str>,
) -> BoxResult<(Launcher<K>, PathBuf, Option<usize>)> {
    server::raise_fd_limit()?;
    let pin = !placement.no_pin && server::cpu_count() >= 2;
    let (client_core, server_core) = if pin {
        server::pin_current_thread(placement.client_core)?;
        (Some(placement.client_core), Some(placement.server_core))
    } else {
        (None, None)
    };
    let launcher = Launcher::prepare(&work_dir(), twistor_cmd, server_core)?;
    eprintln!("twistor server: {}", launcher.twistor_cmd.join(" "));
    Ok((launcher, results_dir(placement.out.as_ref())?, client_core))
}

/// Prepares a suite's servers (see [`setup`]) and its settings; `timing` is the measured
/// seconds, the warm-up seconds and the repeats of each run.
fn suite_setup<S, K: ServerSet>(
    placement: &Placement,
    twistor_cmd: Option<&str>,
    (duration, warmup, repeats): (f64, f64, usize),
    scenarios: Vec<S>,
    servers: Vec<K>,
) -> BoxResult<(Launcher<K>, SuiteOptions<S, K>)> {
    let (launcher, out_dir, client_core) = setup(placement, twistor_cmd)?;
    let opts = SuiteOptions {
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        repeats: repeats.max(1),
        scenarios,
        servers,
        client_core,
        out_dir,
    };
    Ok((launcher, opts))
}

/// `target/twistor-bench` next to this binary's profile directory, else a temporary one.
fn work_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("twistor-bench")))
        .unwrap_or_else(|| std::env::temp_dir().join("twistor-bench"))
}

/// The servers named in `names`, or `defaults` when none are.
fn parse_servers<K: ServerSet>(names: &[String], defaults: &[K]) -> BoxResult<Vec<K>> {
    if names.is_empty() {
        return Ok(defaults.to_vec());
    }
    let known: Vec<&str> = K::ALL.iter().map(|k| k.name()).collect();
    names
        .iter()
        .map(|n| {
            K::from_name(n)
                .ok_or_else(|| format!("unknown server {n:?}: {}", known.join(", ")).into())
        })
        .collect()
}

fn run_timers(count: usize, repeats: usize) -> BoxResult<()> {
    let mut runs: Vec<Vec<micro::TimerResult>> = Vec::new();
    for _ in 0..repeats.max(1) {
        runs.push(micro::timers(count)?);
    }
    let medians: Vec<micro::TimerResult> = (0..runs[0].len())
        .map(|i| {
            let pick = |f: &dyn Fn(&micro::TimerResult) -> f64| {
                twistor_bench::stats::median(&runs.iter().map(|r| f(&r[i])).collect::<Vec<_>>())
                    .unwrap_or(f64::NAN)
            };
            micro::TimerResult {
                name: runs[0][i].name,
                schedule_ns: pick(&|r| r.schedule_ns),
                cancel_ns: pick(&|r| r.cancel_ns),
            }
        })
        .collect();
    let what = format!(
        "Schedule then cancel {} timers (delays spread over 1–100 s), median of {repeats} runs.",
        fmt_num(count as f64)
    );
    let table = micro_table(&medians);
    println!("{what}\n\n{}", table.to_text());
    let out = results_dir(None)?;
    report::write_table_report(&out, "timers", "Timers", &what, &table)?;
    Ok(())
}

/// Deferred chains, twistor and Twisted in one run; writes `bench/results/deferred.md`.
fn run_deferred(chains: usize, callbacks: usize) -> BoxResult<()> {
    let work = std::env::temp_dir().join(format!("twistor-bench-deferred-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let script = work.join("deferred_chains.py");
    std::fs::write(&script, include_str!("../py/deferred_chains.py"))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_twisted = std::process::Command::new(&python)
        .args(["-c", "import twisted"])
        .status()
        .is_ok_and(|s| s.success());
    let python = PathBuf::from(python);
    let results = micro::deferred_chains(
        chains,
        callbacks,
        has_twisted.then_some((python.as_path(), script.as_path())),
    );
    let _ = std::fs::remove_dir_all(&work);
    let twistor_best = results
        .iter()
        .filter(|r| r.name.starts_with("twistor"))
        .map(|r| r.ns_per_callback)
        .fold(f64::INFINITY, f64::min);
    let mut table = Table::new(&[
        "implementation, chain shape",
        "ns / callback",
        "M callbacks / s",
        "× twistor (best)",
    ]);
    for r in &results {
        table.push(vec![
            r.name.clone(),
            fmt_num(r.ns_per_callback),
            fmt_num(1e3 / r.ns_per_callback),
            format!("{:.1}×", r.ns_per_callback / twistor_best),
        ]);
    }
    let what = format!(
        "Chains of {callbacks} callbacks, built and fired {} times (Twisted: a tenth as many), \
         CPU time per callback (`CLOCK_THREAD_CPUTIME_ID` / `time.process_time`).",
        fmt_num(chains as f64)
    );
    println!("{what}\n\n{}", table.to_text());
    let out = results_dir(None)?;
    report::write_table_report(&out, "deferred", "Deferred chains", &what, &table)?;
    Ok(())
}

fn micro_table(results: &[micro::TimerResult]) -> Table {
    let mut t = Table::new(&[
        "implementation",
        "ns / schedule",
        "ns / cancel",
        "ns / both",
    ]);
    for r in results {
        t.push(vec![
            r.name.into(),
            fmt_num(r.schedule_ns),
            fmt_num(r.cancel_ns),
            fmt_num(r.schedule_ns + r.cancel_ns),
        ]);
    }
    t
}
