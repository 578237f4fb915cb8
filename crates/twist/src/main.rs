//! `twist`: run twistor services from the shell, like Twisted's `twist`.
//!
//! ```text
//! twist echo --listen tcp:8000 --listen tcp6:8000
//! twist web --listen tcp:8080 --path .
//! twist dns --port 10053 --zone example.com.zone
//! ```

mod dns;
mod echo;
mod portforward;
mod serve;
mod web;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::filter::LevelFilter;

/// Run twistor services from the shell.
#[derive(Parser)]
#[command(name = "twist", version, about)]
struct Cli {
    /// How much to log (to standard error).
    #[arg(long, value_enum, default_value_t = LogLevel::Info, global = true)]
    log_level: LogLevel,

    /// On SIGTERM or SIGINT, how many seconds open connections get to finish before they
    /// are closed (listeners close at once; a second signal closes everything at once).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds, global = true)]
    shutdown_timeout: std::time::Duration,

    #[command(subcommand)]
    service: Service,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    None,
}

impl LogLevel {
    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::None => LevelFilter::OFF,
        }
    }
}

#[derive(Subcommand)]
enum Service {
    /// A DNS server: authoritative for zone files, secondary, forwarding with a cache.
    Dns(dns::Options),
    /// An echo server: every byte received is sent back (RFC 862).
    Echo(echo::Options),
    /// Forward every connection to HOST:PORT (a TCP proxy).
    Portforward(portforward::Options),
    /// A web server: static files from a directory, or a reverse proxy.
    Web(web::Options),
}

/// Why a service could not run, and with which exit status.
pub enum Failure {
    /// The command line was wrong (exit status 2, like a usage error).
    Usage(String),
    /// Running failed, e.g. a port is in use (exit status 1).
    Runtime(String),
}

/// The reactor a service runs on, already owning SIGINT and SIGTERM: a signal that comes
/// as soon as the service says it is listening then stops it gracefully instead of killing
/// the process.
pub fn service_reactor() -> Result<twistor::Reactor, Failure> {
    let reactor =
        twistor::Reactor::new().map_err(|e| Failure::Runtime(format!("cannot start: {e}")))?;
    reactor
        .install_signal_handlers()
        .map_err(|e| Failure::Runtime(format!("cannot handle signals: {e}")))?;
    Ok(reactor)
}

/// Parses a command-line duration: a non-negative number of seconds, such as `10` or `0.5`.
pub fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("expected a number of seconds, such as 10 or 0.5, got {text:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(cli.log_level.filter())
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    twistor_protocols::haproxy::register();
    serve::set_grace(cli.shutdown_timeout);
    let result = match cli.service {
        Service::Dns(options) => dns::run(options),
        Service::Echo(options) => echo::run(options),
        Service::Portforward(options) => portforward::run(options),
        Service::Web(options) => web::run(options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("twist: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("twist: {message}");
            ExitCode::from(1)
        }
    }
}
