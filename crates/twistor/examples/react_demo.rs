//! Twisted's `task.react`, in Rust: an async main function run on a fresh reactor, whose
//! outcome becomes the process's exit status.
//!
//! `cargo run -p twistor --example react_demo [EXIT_STATUS]`
//!
//! It sleeps on the reactor's clock, sums a million numbers on the thread pool, connects to
//! a greeting server it starts itself, awaits the greeting, races two timers, and exits
//! with status 0 (or the status given, through `SystemExit`).

use std::time::Duration;

use twistor::defer::{DeferredQueue, Failure, gather_results, race};
use twistor::endpoints::{HostnameEndpoint, connect_protocol};
use twistor::protocol::{Protocol, factory};
use twistor::task::{SystemExit, defer_later, react, sleep};
use twistor::{Reactor, Transport};

/// Greets each client and hangs up.
struct Greeter;

impl Protocol for Greeter {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"hello from the server\r\n");
        transport.lose_connection();
    }

    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

/// Queues what arrives, for awaiting.
struct Inbox(DeferredQueue<Vec<u8>>);

impl Protocol for Inbox {
    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        let _ = self.0.put(data.to_vec());
    }
}

async fn main_async(reactor: Reactor, status: i32) -> Result<(), Failure> {
    let started = reactor.seconds();

    sleep(&reactor, Duration::from_millis(50)).await?;
    println!("slept {:.0} ms", (reactor.seconds() - started) * 1e3);

    let sum = reactor
        .defer_to_thread(|| (1..=1_000_000u64).sum::<u64>())
        .await?;
    println!("summed on a pool thread: {sum}");

    let port = reactor.listen_tcp(0, factory(|_| Greeter))?.port();
    let inbox = DeferredQueue::new();
    let server = HostnameEndpoint::new(&reactor, "127.0.0.1", port);
    let transport = connect_protocol(&server, Inbox(inbox.clone())).await?;
    let greeting = inbox.get()?.await?;
    println!(
        "{} said: {}",
        transport.peer(),
        String::from_utf8_lossy(&greeting).trim_end()
    );

    let slow = defer_later(&reactor, Duration::from_millis(200), || Ok("slow"));
    let fast = defer_later(&reactor, Duration::from_millis(10), || Ok("fast"));
    let (index, winner) = race([slow, fast]).await?;
    println!("race won by #{index}: {winner} (the loser was cancelled)");

    let squares = gather_results(
        (1..=4u64).map(|n| reactor.defer_to_thread(move || n * n)),
        true,
    )
    .await?;
    println!("squares from the pool: {squares:?}");

    if status != 0 {
        return Err(Failure::new(SystemExit(status)));
    }
    Ok(())
}

fn main() {
    let status = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(0);
    react(move |reactor| main_async(reactor, status));
}
