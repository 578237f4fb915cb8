//! Telling secondaries that a zone changed (RFC 1996): a NOTIFY to each, over UDP, retried
//! until it is acknowledged (every 2 s, 5 times, as BIND does by default), so they transfer
//! the new serial at once instead of at their next SOA refresh.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::Name;
use twistor::Reactor;
use twistor::defer::{Deferred, gather_results};

use crate::client::{now, run_exchange};
use crate::proto::query::{Exchange, ExchangeConfig};

/// How long each NOTIFY waits for its acknowledgement.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times a NOTIFY is sent before giving up on that secondary.
pub const NOTIFY_ATTEMPTS: u32 = 5;

/// Sends a NOTIFY for `zone` to each of `secondaries`; fires once each has acknowledged or
/// been given up on (each outcome is logged).
pub fn notify(reactor: &Reactor, zone: &Name, secondaries: &[SocketAddr]) -> Deferred<()> {
    let each: Vec<Deferred<()>> = secondaries
        .iter()
        .map(|&secondary| {
            let config = ExchangeConfig {
                timeout: NOTIFY_TIMEOUT,
                attempts: NOTIFY_ATTEMPTS,
                edns_payload: None,
                use_0x20: false,
                ..ExchangeConfig::new(vec![secondary])
            };
            let exchange = Exchange::notify(zone.clone(), &config, now(reactor));
            let zone = zone.clone();
            run_exchange(reactor, exchange).then(move |result| {
                match result {
                    Ok(_) => tracing::info!("NOTIFY for {zone} acknowledged by {secondary}"),
                    Err(failure) => {
                        tracing::warn!("NOTIFY for {zone} to {secondary}: {failure}")
                    }
                }
                Ok(())
            })
        })
        .collect();
    // Each outcome is logged and turned into a success: none fails the list.
    gather_results(each, true).map(|_| ())
}
