//! The "Spread" chat server: greets each client with its number, relays every message to
//! all the other clients, and closes a client that sends `close`.
//!
//! `cargo run --example chat_server [PORT]` (default 8007).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use twistor::protocol::{CloseReason, Factory, Protocol};
use twistor::{Address, Reactor, Transport};

/// What the clients share: how many are connected, and their transports.
#[derive(Default)]
struct SpreadFactory {
    num_protocols: Cell<usize>,
    clients: RefCell<Vec<(u64, Transport)>>,
    next_id: Cell<u64>,
}

struct Spreader {
    factory: Rc<SpreadFactory>,
    id: u64,
}

impl Protocol for Spreader {
    fn connection_made(&mut self, transport: &Transport) {
        let f = &self.factory;
        f.num_protocols.set(f.num_protocols.get() + 1);
        let greeting = format!(
            "欢迎来到Spread Site, 你是第{}个客户端用户!\n",
            f.num_protocols.get()
        );
        transport.write(greeting.as_bytes());
        println!("new connect: {}", f.num_protocols.get());
        f.clients.borrow_mut().push((self.id, transport.clone()));
    }

    fn connection_lost(&mut self, _reason: &CloseReason) {
        let f = &self.factory;
        f.num_protocols.set(f.num_protocols.get() - 1);
        f.clients.borrow_mut().retain(|(id, _)| *id != self.id);
        println!("lost connect: {}", f.num_protocols.get());
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        // Telnet and nc end lines; the original compared the raw bytes to "close".
        let message = data.strip_suffix(b"\n").unwrap_or(data);
        let message = message.strip_suffix(b"\r").unwrap_or(message);
        if message == b"close" {
            transport.lose_connection();
        }
        for (id, client) in self.factory.clients.borrow().iter() {
            if *id != self.id {
                client.write(data);
            } else {
                println!("{}", String::from_utf8_lossy(message));
            }
        }
    }
}

struct Spread(Rc<SpreadFactory>);

impl Factory for Spread {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        let id = self.0.next_id.get();
        self.0.next_id.set(id + 1);
        Some(Box::new(Spreader {
            factory: self.0.clone(),
            id,
        }))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("expected a port number, got {arg:?}"))?,
        None => 8007,
    };
    let reactor = Reactor::new()?;
    let listening = reactor.listen_tcp(port, Rc::new(Spread(Rc::default())))?;
    println!("listening on {}", listening.port());
    reactor.run()?;
    Ok(())
}
