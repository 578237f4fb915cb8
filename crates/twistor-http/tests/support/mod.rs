//! Shared by the socket tests: a twistor reactor serving a site on its own thread (on an
//! OS-chosen port of 127.0.0.1), raw HTTP exchanges over `std` sockets, and temporary
//! directories.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use twistor::tcp::ListenOptions;
use twistor::{Reactor, ReactorHandle};
use twistor_http::server::Site;

/// A reactor on its own thread serving one site; stopped and joined when dropped.
pub struct Server {
    pub port: u16,
    handle: ReactorHandle,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Builds the site on the reactor thread with `build` and listens on 127.0.0.1:0.
    pub fn start(build: impl FnOnce(&Reactor) -> Site + Send + 'static) -> Server {
        Server::start_with(build, |reactor, site| {
            reactor.listen_tcp_with(0, site, localhost()).unwrap()
        })
    }

    /// Like [`Server::start`], listening with `listen` (TLS, say).
    pub fn start_with(
        build: impl FnOnce(&Reactor) -> Site + Send + 'static,
        listen: impl FnOnce(&Reactor, Rc<dyn twistor::Factory>) -> twistor::ListeningPort
        + Send
        + 'static,
    ) -> Server {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let reactor = twistor_testing::reactor();
            let site = build(&reactor);
            let port = listen(&reactor, Rc::new(site));
            tx.send((port.port(), reactor.handle())).unwrap();
            reactor.run().unwrap();
        });
        let (port, handle) = rx.recv().unwrap();
        Server {
            port,
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Runs `f` on the reactor thread and waits for its answer.
    pub fn on_reactor<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reactor) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = mpsc::channel();
        self.handle
            .call_from_thread(move |r| {
                let _ = tx.send(f(r));
            })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.handle.call_from_thread(|r| r.stop());
        if let Some(t) = self.thread.take()
            && let Err(panic) = t.join()
            && !std::thread::panicking()
        {
            // The reactor caught a panic (and stopped): fail the test with it.
            std::panic::resume_unwind(panic);
        }
    }
}

/// Listening options for 127.0.0.1.
pub fn localhost() -> ListenOptions {
    ListenOptions::default().interface(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Connects to the server with a read timeout.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `request`, then reads until the server closes: what came back, and whether it
/// did close (as opposed to the read timing out).
pub fn exchange_until_close(port: u16, request: &[u8]) -> (String, bool) {
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the server closed with unread input is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Sends `request` and half-closes; reads everything until the server closes.
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = connect(port);
    s.write_all(request).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// One response read off a keep-alive stream: head text and body bytes (the body read by
/// `Content-Length` or chunked framing).
pub fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert!(
            n == 1,
            "closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(len) = field(&lower, "content-length") {
        if !head.starts_with("HTTP/1.1 304") && !head.starts_with("HTTP/1.1 1") {
            body.resize(len.parse().unwrap(), 0);
            s.read_exact(&mut body).unwrap();
        }
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            s.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    (head, body)
}

/// A header field's value from a head (names compared case-insensitively).
pub fn field(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

#[allow(unused_imports)] // not every test binary uses it
pub use twistor_testing::TempDir;

/// Resident memory of this process, in KiB, from /proc.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
