//! An echo client written with `async`/`await`: it connects, sends a few messages and
//! awaits each one's echo.
//!
//! `cargo run -p twistor --example async_echo_client [HOST PORT]`
//!
//! Without an address it starts an echo server of its own, on the same reactor, and talks
//! to that. (Try it against `cargo run -p twistor --example echo_server`.)

use std::time::Duration;

use twistor::defer::{DeferredQueue, Failure};
use twistor::endpoints::{HostnameEndpoint, connect_protocol};
use twistor::protocol::{Protocol, factory};
use twistor::{Reactor, Transport};

/// Queues whatever the server sends, for the async code to `await`.
struct Inbox(DeferredQueue<Vec<u8>>);

impl Protocol for Inbox {
    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        let _ = self.0.put(data.to_vec());
    }
}

/// The echo server used when no address is given.
struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

/// Connects, then sends each message and waits for all of its echo to come back.
async fn talk(reactor: Reactor, host: String, port: u16) -> Result<(), Failure> {
    let inbox = DeferredQueue::new();
    let server = HostnameEndpoint::new(&reactor, &host, port);
    let connecting = connect_protocol(&server, Inbox(inbox.clone()));
    connecting.add_timeout(Duration::from_secs(5), &reactor);
    let transport = connecting.await?;
    println!("connected to {}", transport.peer());
    for message in ["hello", "from an async twistor client", "bye"] {
        transport.write(message.as_bytes());
        let mut echoed = Vec::new();
        while echoed.len() < message.len() {
            let chunk = inbox.get()?;
            chunk.add_timeout(Duration::from_secs(5), &reactor);
            echoed.extend(chunk.await?);
        }
        println!("echoed: {}", String::from_utf8_lossy(&echoed));
    }
    transport.lose_connection();
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    let mut args = std::env::args().skip(1);
    let (host, port) = match (args.next(), args.next()) {
        (Some(host), Some(port)) => (host, port.parse()?),
        _ => {
            let port = reactor.listen_tcp(0, factory(|_| Echo))?.port();
            println!("no address given: started an echo server on port {port}");
            ("127.0.0.1".to_string(), port)
        }
    };
    let done = reactor.spawn(talk(reactor.clone(), host, port));
    let stop = reactor.clone();
    done.add_both(move |result| {
        stop.stop();
        result
    });
    reactor.run()?;
    match done.try_result() {
        Some(Ok(())) => Ok(()),
        Some(Err(failure)) => Err(failure.context("echo client").into()),
        None => Err("stopped before finishing".into()),
    }
}
