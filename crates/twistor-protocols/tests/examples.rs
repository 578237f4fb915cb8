//! The examples, driven as child processes by real TCP clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use twistor_testing::process::{ChildGuard, example};

/// A chat client: reads whole lines.
struct Client(TcpStream);

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client(s)
    }

    fn line(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\r\n") {
            self.0.read_exact(&mut byte).expect("a line");
            line.push(byte[0]);
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).unwrap()
    }

    fn say(&mut self, line: &str) {
        self.0.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }
}

#[test]
fn line_chat_broadcasts_to_the_others() {
    let mut server = ChildGuard::spawn({
        let mut c = example("line_chat");
        c.arg("0");
        c
    });
    let port = server.port();
    let mut alice = Client::connect(port);
    assert_eq!(alice.line(), "welcome, user1");
    let mut bob = Client::connect(port);
    assert_eq!(bob.line(), "welcome, user2");
    assert_eq!(alice.line(), "* user2 joined");
    let mut carol = Client::connect(port);
    assert_eq!(carol.line(), "welcome, user3");
    assert_eq!(alice.line(), "* user3 joined");
    assert_eq!(bob.line(), "* user3 joined");
    // Two lines in one write, the second split across writes.
    alice.0.write_all(b"hi all\r\nhow are").unwrap();
    alice.0.write_all(b" you?\r\n").unwrap();
    for other in [&mut bob, &mut carol] {
        assert_eq!(other.line(), "user1: hi all");
        assert_eq!(other.line(), "user1: how are you?");
    }
    bob.say("/quit");
    let mut rest = Vec::new();
    bob.0.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bob is closed: {rest:?}");
    assert_eq!(alice.line(), "* user2 left");
    carol.say("still here");
    assert_eq!(alice.line(), "user3: still here");
}
