//! Logging: one-line setup, and where the engine's errors go when nothing is set up
//! (Twisted's `log.startLogging`).
//!
//! The engine logs through [`tracing`](https://docs.rs/tracing). [`init`] installs a
//! subscriber that prints to standard error, filtered by `RUST_LOG` (default `info`):
//!
//! ```no_run
//! twistor::log::init();
//! // RUST_LOG=debug, RUST_LOG=twistor=debug,info ... choose what shows.
//! ```
//!
//! Without any subscriber, the engine's error-level reports are still printed to standard
//! error, as Twisted prints a traceback: the failure of [`react`](crate::task::react)'s
//! main function, "Unhandled error in Deferred", panics caught in delayed calls and tasks,
//! a reconnecting client giving up. Once a subscriber is installed (by [`init`] or any
//! other way, global or scoped), those reports go through it only, never printed twice.

use std::fmt;

/// Installs a subscriber that prints the log to standard error, filtered by `RUST_LOG`
/// (`info` when it is not set). Does nothing if a global subscriber is already installed.
pub fn init() {
    init_with_filter("info");
}

/// Like [`init`], with `default` as the filter when `RUST_LOG` is not set: a level
/// (`debug`) or per-module directives (`twistor=debug,warn`), in `RUST_LOG`'s syntax.
/// A malformed filter falls back to `info`.
pub fn init_with_filter(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Whether no `tracing` subscriber would see an event logged here now, so the engine's
/// error reports must be printed to standard error instead.
pub(crate) fn unobserved() -> bool {
    tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

/// Prints a report nobody else would see.
pub(crate) fn print(level: &str, message: fmt::Arguments<'_>) {
    eprintln!("{level}: {message}");
}

/// Reports an error: through `tracing` at error level, or on standard error when no
/// subscriber listens.
macro_rules! report_error {
    ($($arg:tt)+) => {
        if $crate::log::unobserved() {
            $crate::log::print("error", format_args!($($arg)+));
        } else {
            tracing::error!($($arg)+);
        }
    };
}

/// Reports a warning: through `tracing` at warn level, or on standard error when no
/// subscriber listens.
macro_rules! report_warn {
    ($($arg:tt)+) => {
        if $crate::log::unobserved() {
            $crate::log::print("warning", format_args!($($arg)+));
        } else {
            tracing::warn!($($arg)+);
        }
    };
}

pub(crate) use {report_error, report_warn};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_subscriber_counts_as_observing() {
        assert!(unobserved(), "no subscriber in a unit test thread");
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || assert!(!unobserved()));
        assert!(unobserved());
    }
}
