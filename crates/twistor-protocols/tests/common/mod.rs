//! Shared test helpers: a reactor running on its own thread, stopped and joined on drop.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use twistor::{Reactor, ReactorHandle};

/// A reactor on a background thread (so the test thread can run blocking clients and child
/// processes). Dropping it stops the reactor and joins the thread.
pub struct ReactorThread {
    handle: ReactorHandle,
    join: Option<JoinHandle<()>>,
}

impl ReactorThread {
    /// Starts a reactor, runs `setup` on its thread, and returns what `setup` returned
    /// (ports, usually) once it has run.
    pub fn start<T: Send + 'static>(
        setup: impl FnOnce(&Reactor) -> T + Send + 'static,
    ) -> (ReactorThread, T) {
        let (tx, rx) = mpsc::channel();
        let join = std::thread::spawn(move || {
            let reactor = twistor_testing::reactor();
            let value = setup(&reactor);
            tx.send((reactor.handle(), value)).expect("send");
            reactor.run().expect("run");
        });
        let (handle, value) = rx.recv().expect("reactor thread started");
        (
            ReactorThread {
                handle,
                join: Some(join),
            },
            value,
        )
    }
}

impl Drop for ReactorThread {
    fn drop(&mut self) {
        let _ = self.handle.call_from_thread(|r| r.stop());
        if let Some(join) = self.join.take()
            && let Err(panic) = join.join()
            && !std::thread::panicking()
        {
            // The reactor caught a panic (and stopped): fail the test with it.
            std::panic::resume_unwind(panic);
        }
    }
}

/// A blocking client with a timeout, so a broken server fails the test instead of hanging.
pub fn client(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Writes `msg` and reads back exactly as many bytes.
pub fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back).unwrap();
    back
}
