//! A chat server on `LineReceiver`: every line a client sends goes to all the others,
//! prefixed with the sender's name; `/quit` leaves.
//!
//! `cargo run -p twistor-protocols --example line_chat [PORT]` (default 8007), then
//! `nc localhost 8007` from two terminals.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use twistor::protocol::factory;
use twistor::{CloseReason, Reactor};
use twistor_protocols::basic::{LineHandler, LineReceiver, LineSender, Lines};

/// Everyone connected: a name and a line sender each.
#[derive(Default)]
struct Room {
    members: RefCell<Vec<(String, LineSender)>>,
    joined: Cell<usize>,
}

impl Room {
    fn broadcast(&self, from: &str, line: &str) {
        for (name, member) in self.members.borrow().iter() {
            if name != from {
                member.send_line(line.as_bytes()); // the delimiter is added
            }
        }
    }
}

struct Chatter {
    room: Rc<Room>,
    name: String,
}

impl LineHandler for Chatter {
    fn connection_made(&mut self, lines: &mut Lines<'_>) {
        self.room.joined.set(self.room.joined.get() + 1);
        self.name = format!("user{}", self.room.joined.get());
        lines.send_line(format!("welcome, {}", self.name).as_bytes());
        self.room
            .broadcast(&self.name, &format!("* {} joined", self.name));
        let me = (self.name.clone(), lines.sender());
        self.room.members.borrow_mut().push(me);
    }

    fn line_received(&mut self, lines: &mut Lines<'_>, line: &[u8]) {
        if line == b"/quit" {
            return lines.transport().lose_connection();
        }
        let line = String::from_utf8_lossy(line);
        self.room
            .broadcast(&self.name, &format!("{}: {line}", self.name));
    }

    fn connection_lost(&mut self, _reason: &CloseReason) {
        self.room
            .members
            .borrow_mut()
            .retain(|(name, _)| *name != self.name);
        self.room
            .broadcast(&self.name, &format!("* {} left", self.name));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).map_or(Ok(8007), |p| p.parse())?;
    let reactor = Reactor::new()?;
    let room = Rc::new(Room::default());
    let chat = factory(move |_addr| {
        LineReceiver::new(Chatter {
            room: room.clone(),
            name: String::new(),
        })
    });
    println!("listening on {}", reactor.listen_tcp(port, chat)?.port());
    reactor.run()?;
    Ok(())
}
