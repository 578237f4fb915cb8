//! Host name lookups that do not block the reactor.
//!
//! `getaddrinfo` blocks, so each lookup runs on a short-lived thread and its answer comes
//! back through the reactor's cross-thread queue, unless a resolver was installed with
//! [`Reactor::install_resolver`] (`twistor-dns` has one that speaks DNS on the reactor
//! itself). IP literals are answered at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::error::Error;
use crate::reactor::Reactor;

type Done = Box<dyn FnOnce(Result<Vec<SocketAddr>, Error>)>;

thread_local! {
    /// Lookups under way from this thread's reactors, by id.
    static PENDING: RefCell<HashMap<u64, Done>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// Looks up `host` and calls `done` on the reactor thread with its addresses, in the
/// resolver's order, through the reactor's installed resolver if it has one. An IP literal
/// is answered before this returns.
pub fn resolve(
    reactor: &Reactor,
    host: &str,
    port: u16,
    done: impl FnOnce(Result<Vec<SocketAddr>, Error>) + 'static,
) {
    if let Some(ip) = literal(host) {
        done(Ok(vec![SocketAddr::new(ip, port)]));
        return;
    }
    match reactor.installed_resolver() {
        Some(resolver) => {
            let host = host.to_string();
            resolver.resolve(&host, port).add_both(move |result| {
                done(
                    result.map_err(|failure| match failure.downcast_ref::<Error>() {
                        Some(err @ Error::DnsLookup { .. }) => err.clone(),
                        _ => Error::DnsLookup {
                            host,
                            reason: failure.to_string(),
                        },
                    }),
                );
                Ok(Vec::new())
            });
        }
        None => resolve_on_thread(reactor, host, port, done),
    }
}

fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Looks `host` up with `getaddrinfo` on a short-lived thread (the system resolver).
pub(crate) fn resolve_on_thread(
    reactor: &Reactor,
    host: &str,
    port: u16,
    done: impl FnOnce(Result<Vec<SocketAddr>, Error>) + 'static,
) {
    if let Some(ip) = literal(host) {
        done(Ok(vec![SocketAddr::new(ip, port)]));
        return;
    }
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    PENDING.with(|p| p.borrow_mut().insert(id, Box::new(done)));
    let handle = reactor.handle();
    let name = host.to_string();
    let spawned = std::thread::Builder::new()
        .name("twistor-resolver".into())
        .spawn(move || {
            let result = lookup(&name, port);
            let _ = handle.call_from_thread(move |_| finish(id, result));
        });
    if let Err(err) = spawned {
        finish(
            id,
            Err(Error::DnsLookup {
                host: host.to_string(),
                reason: format!("could not start a resolver thread: {err}"),
            }),
        );
    }
}

fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let fail = |reason: String| Error::DnsLookup {
        host: host.to_string(),
        reason,
    };
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(fail("no addresses".into()))
            } else {
                Ok(addrs)
            }
        }
        Err(err) => Err(fail(err.to_string())),
    }
}

fn finish(id: u64, result: Result<Vec<SocketAddr>, Error>) {
    if let Some(done) = PENDING.with(|p| p.borrow_mut().remove(&id)) {
        done(result);
    }
}
