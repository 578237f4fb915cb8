//! The load generator: one thread, mio (epoll, edge-triggered), no runtime.
//!
//! - [`ping_pong`]: N connections, each sending a message and waiting for the whole echo
//!   before sending the next; round trips per second and latency percentiles.
//! - [`stream`]: one connection, the client writes a fixed number of bytes as fast as the
//!   server echoes them and reads the echo concurrently; MB/s one way.
//! - [`idle`]: opens many connections, does one round trip on each, and leaves them idle.
//! - [`http`]: N keep-alive HTTP/1.1 connections, each sending a batch of `depth` identical
//!   requests in one write (1: one request at a time; 16: pipelined) and waiting for all
//!   their responses before the next batch; requests per second and batch latency.
//!
//! The server's CPU time is read at the edges of the measured window, so connection set-up
//! and warm-up are not charged to it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::procfs::CpuTime;
use crate::stats::Latency;

/// When a ping-pong run stops measuring.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Warm up for the first duration, then measure for the second.
    Time {
        /// Ping-pong before the window opens.
        warmup: Duration,
        /// The measured window.
        measure: Duration,
    },
    /// Exactly this many round trips, all measured (for instruction and syscall counts,
    /// where two runs are subtracted).
    Count(u64),
}

/// What a ping-pong run measured.
#[derive(Debug, Clone)]
pub struct PingPongResult {
    /// Round trips completed in the window.
    pub round_trips: u64,
    /// The window's length.
    pub elapsed: Duration,
    /// Latency percentiles over the window.
    pub latency: Latency,
    /// The server's CPU time over the window, if a pid was given.
    pub server_cpu: Option<CpuTime>,
}

impl PingPongResult {
    /// Round trips per second.
    pub fn rate(&self) -> f64 {
        self.round_trips as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `conns` connections of `size`-byte ping-pong against `addr`.
///
/// `server_pid`, when given, is the process whose CPU time is charged to the window.
pub fn ping_pong(
    addr: SocketAddr,
    conns: usize,
    size: usize,
    limit: Limit,
    server_pid: Option<u32>,
) -> io::Result<PingPongResult> {
    let message = vec![b'x'; size];
    let streams = connect_all(addr, conns, &message)?;
    let state = (0..conns).map(|_| Conn::new(&message)).collect();
    closed_loop(streams, state, 1, limit, server_pid, "no echo for 5 s")
}

/// One connection's side of a closed loop: send something, wait for all of its answer,
/// send again.
trait Exchange {
    /// Starts the next exchange at `now`.
    fn send(&mut self, s: &mut TcpStream, now: Instant) -> io::Result<()>;

    /// Writes what the socket did not take yet, if anything.
    fn write_rest(&mut self, s: &mut TcpStream) -> io::Result<()>;

    /// Reads what is there; true once the whole answer of the exchange is in.
    fn read_answer(&mut self, s: &mut TcpStream, buf: &mut [u8]) -> io::Result<bool>;

    /// When the exchange in flight started.
    fn sent_at(&self) -> Instant;
}

/// Drives `state[i]` on `streams[i]`, one exchange in flight per connection, each counting
/// `ops` operations, until `limit`; `silence` says what did not come when the server
/// stays quiet for 5 s.
fn closed_loop<C: Exchange>(
    streams: Vec<StdTcpStream>,
    mut state: Vec<C>,
    ops: u64,
    limit: Limit,
    server_pid: Option<u32>,
    silence: &str,
) -> io::Result<PingPongResult> {
    let mut streams: Vec<TcpStream> = streams.into_iter().map(TcpStream::from_std).collect();
    let mut poll = Poll::new()?;
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);

    let (warmup, measure, count) = match limit {
        Limit::Time { warmup, measure } => (warmup, Some(measure), None),
        Limit::Count(n) => (Duration::ZERO, None, Some(n)),
    };
    let start = Instant::now();
    let mut in_window = warmup.is_zero();
    let mut window_start = start;
    let mut cpu_start = cpu_of(server_pid)?;
    let mut done = 0u64;
    let mut issued = 0u64;
    let mut outstanding = 0usize;

    for (i, c) in state.iter_mut().enumerate() {
        if count.is_some_and(|n| issued >= n) {
            break;
        }
        c.send(&mut streams[i], start)?;
        issued += ops;
        outstanding += 1;
    }

    let mut now = start;
    loop {
        if !in_window && now.duration_since(start) >= warmup {
            in_window = true;
            window_start = now;
            cpu_start = cpu_of(server_pid)?;
        }
        if in_window && measure.is_some_and(|m| now.duration_since(window_start) >= m) {
            break;
        }
        if outstanding == 0 {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_secs(5)))?;
        if events.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{silence}: is the server stuck?"),
            ));
        }
        now = Instant::now();
        for event in events.iter() {
            let i = event.token().0;
            let (c, s) = (&mut state[i], &mut streams[i]);
            if event.is_writable() {
                c.write_rest(s)?;
            }
            if !event.is_readable() {
                continue;
            }
            if c.read_answer(s, &mut buf)? {
                outstanding -= 1;
                if in_window {
                    done += ops;
                    let ns = now.duration_since(c.sent_at()).as_nanos();
                    latencies.push(ns.min(u32::MAX as u128) as u32);
                }
                if count.is_none_or(|n| issued < n) {
                    c.send(s, now)?;
                    issued += ops;
                    outstanding += 1;
                }
            }
        }
    }
    let elapsed = now.duration_since(window_start);
    let server_cpu = cpu_since(server_pid, cpu_start)?;
    Ok(PingPongResult {
        round_trips: done,
        elapsed,
        latency: Latency::from_samples(&mut latencies),
        server_cpu,
    })
}

/// What a streaming run measured.
#[derive(Debug, Clone)]
pub struct StreamResult {
    /// Bytes echoed back (equal to the bytes sent).
    pub bytes: u64,
    /// From the first write to the last byte of echo.
    pub elapsed: Duration,
    /// The server's CPU time over that time, if a pid was given.
    pub server_cpu: Option<CpuTime>,
}

impl StreamResult {
    /// Megabytes (10^6 bytes) per second, one way.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Sends `total` bytes on one connection to the echo server at `addr`, reading the echo
/// concurrently, and times it until the last byte comes back.
pub fn stream(addr: SocketAddr, total: u64, server_pid: Option<u32>) -> io::Result<StreamResult> {
    let std_stream = StdTcpStream::connect(addr)?;
    std_stream.set_nodelay(true)?;
    socket2::SockRef::from(&std_stream).set_linger(Some(Duration::ZERO))?;
    std_stream.set_nonblocking(true)?;
    let mut s = TcpStream::from_std(std_stream);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut s, Token(0), Interest::READABLE | Interest::WRITABLE)?;
    let mut events = Events::with_capacity(8);
    let out = vec![b'y'; 64 * 1024];
    let mut inbuf = vec![0u8; 256 * 1024];
    let (mut sent, mut received) = (0u64, 0u64);

    let cpu_start = cpu_of(server_pid)?;
    let start = Instant::now();
    while received < total {
        // Edge-triggered: on every wake-up write until the socket is full and read until
        // it is empty, whichever event woke us.
        while sent < total {
            let n = (total - sent).min(out.len() as u64) as usize;
            match s.write(&out[..n]) {
                Ok(w) => sent += w as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            match s.read(&mut inbuf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => received += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if received < total {
            poll.poll(&mut events, Some(Duration::from_secs(5)))?;
            if events.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no echo for 5 s: is the server stuck?",
                ));
            }
        }
    }
    let elapsed = start.elapsed();
    Ok(StreamResult {
        bytes: received,
        elapsed,
        server_cpu: cpu_since(server_pid, cpu_start)?,
    })
}

/// Opens `conns` connections to `addr`, one round trip of `size` bytes on each, and returns
/// them open and idle. Closing them (dropping) resets them, leaving no `TIME_WAIT`.
pub fn idle(addr: SocketAddr, conns: usize, size: usize) -> io::Result<Vec<StdTcpStream>> {
    let message = vec![b'i'; size];
    connect_all(addr, conns, &message)
}

/// An HTTP load: what each connection sends, and how many requests it keeps in flight.
#[derive(Debug, Clone)]
pub struct HttpLoad {
    /// Concurrent connections.
    pub conns: usize,
    /// Requests sent together in one write, whose responses are all awaited before the
    /// next batch: 1 for one request at a time, 16 for pipelining.
    pub depth: usize,
    /// One request, sent as is (it must ask for a keep-alive response framed by
    /// `Content-Length`).
    pub request: Vec<u8>,
}

impl HttpLoad {
    /// `GET /` with the headers curl sends (`Host`, `User-Agent`, `Accept`), for a server
    /// at `addr`.
    pub fn get(addr: SocketAddr, conns: usize, depth: usize) -> HttpLoad {
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: twistor-bench\r\nAccept: */*\r\n\r\n"
        );
        HttpLoad {
            conns,
            depth: depth.max(1),
            request: request.into_bytes(),
        }
    }
}

/// Runs `load` against the HTTP server at `addr`.
///
/// The result counts requests (responses received); its latency is per batch, from the
/// batch's write to its last response (with `depth` 1, per request). `server_pid`, when
/// given, is the process whose CPU time is charged to the window. With [`Limit::Count`],
/// batches are issued until at least that many requests have been.
pub fn http(
    addr: SocketAddr,
    load: &HttpLoad,
    limit: Limit,
    server_pid: Option<u32>,
) -> io::Result<PingPongResult> {
    let batch = load.request.repeat(load.depth);
    let depth = load.depth as u64;
    let streams = connect_all_http(addr, load.conns, &load.request)?;
    let state = (0..load.conns)
        .map(|_| HttpConn::new(&batch, depth))
        .collect();
    closed_loop(
        streams,
        state,
        depth,
        limit,
        server_pid,
        "no response for 5 s",
    )
}

/// Counts complete HTTP/1.1 responses in a byte stream, each framed by `Content-Length`.
///
/// It parses only what framing needs: the status line must say `200` and the head must
/// carry a `Content-Length` (anything else is an error, since every server under test
/// answers `200 OK` with a length); the body is skipped by its length.
#[derive(Debug, Default)]
pub struct ResponseFramer {
    /// The start of a head whose end has not arrived yet.
    partial: Vec<u8>,
    /// Body bytes of the current response still to come.
    body_left: usize,
    /// A head was read and its body is in progress.
    in_body: bool,
}

impl ResponseFramer {
    /// Takes the next bytes of the stream and returns how many responses they completed.
    pub fn feed(&mut self, mut data: &[u8]) -> io::Result<u64> {
        let mut done = 0;
        while !data.is_empty() {
            if self.in_body {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = &data[n..];
                if self.body_left == 0 {
                    self.in_body = false;
                    done += 1;
                }
                continue;
            }
            let length = if self.partial.is_empty() {
                let Some(end) = memchr::memmem::find(data, b"\r\n\r\n") else {
                    self.partial.extend_from_slice(data);
                    break;
                };
                let length = content_length(&data[..end])?;
                data = &data[end + 4..];
                length
            } else {
                // Look again from just before the old end, where a terminator may straddle.
                let from = self.partial.len().saturating_sub(3);
                self.partial.extend_from_slice(data);
                let Some(end) = memchr::memmem::find(&self.partial[from..], b"\r\n\r\n") else {
                    break;
                };
                let end = from + end;
                let length = content_length(&self.partial[..end])?;
                let used = end + 4 - (self.partial.len() - data.len());
                data = &data[used..];
                self.partial.clear();
                length
            };
            if length == 0 {
                done += 1;
            } else {
                self.body_left = length;
                self.in_body = true;
            }
        }
        if self.partial.len() > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head over 64 KiB",
            ));
        }
        Ok(done)
    }
}

/// The `Content-Length` of a `200` response head (without its final CRLFCRLF).
fn content_length(head: &[u8]) -> io::Result<usize> {
    let bad = |what: &str| {
        let shown = String::from_utf8_lossy(&head[..head.len().min(200)]).into_owned();
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {shown:?}"))
    };
    let mut lines = head.split(|&b| b == b'\n');
    let status = lines.next().unwrap_or_default();
    if !(status.starts_with(b"HTTP/1.1 200 ") || status.starts_with(b"HTTP/1.0 200 ")) {
        return Err(bad("not a 200 response"));
    }
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"content-length") {
            let value = std::str::from_utf8(&line[colon + 1..]).map_err(|_| bad("bad length"))?;
            return value.trim().parse().map_err(|_| bad("bad Content-Length"));
        }
    }
    Err(bad("no Content-Length"))
}

/// One connection's HTTP state.
#[derive(Debug)]
struct HttpConn<'a> {
    /// The requests sent together.
    batch: &'a [u8],
    /// How many requests `batch` holds.
    depth: u64,
    written: usize,
    /// Responses still due for the batch in flight.
    awaited: u64,
    sent_at: Instant,
    framer: ResponseFramer,
}

impl HttpConn<'_> {
    fn new(batch: &[u8], depth: u64) -> HttpConn<'_> {
        HttpConn {
            batch,
            depth,
            written: 0,
            awaited: 0,
            sent_at: Instant::now(),
            framer: ResponseFramer::default(),
        }
    }
}

impl Exchange for HttpConn<'_> {
    fn send(&mut self, s: &mut TcpStream, now: Instant) -> io::Result<()> {
        self.written = 0;
        self.awaited = self.depth;
        self.sent_at = now;
        self.write_rest(s)
    }

    fn write_rest(&mut self, s: &mut TcpStream) -> io::Result<()> {
        write_from(s, self.batch, &mut self.written)
    }

    /// Reads what is there; true once every response of the batch is in.
    fn read_answer(&mut self, s: &mut TcpStream, buf: &mut [u8]) -> io::Result<bool> {
        loop {
            match s.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    let done = self.framer.feed(&buf[..n])?;
                    if done > self.awaited {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "more responses than requests",
                        ));
                    }
                    self.awaited -= done;
                    if n < buf.len() {
                        return Ok(self.awaited == 0);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(self.awaited == 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn sent_at(&self) -> Instant {
        self.sent_at
    }
}

/// Writes `data` from `*written` on until done or the socket is full, advancing `*written`.
fn write_from(s: &mut TcpStream, data: &[u8], written: &mut usize) -> io::Result<()> {
    while *written < data.len() {
        match s.write(&data[*written..]) {
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Like [`connect_all`], with one HTTP request and its response on each connection.
fn connect_all_http(
    addr: SocketAddr,
    conns: usize,
    request: &[u8],
) -> io::Result<Vec<StdTcpStream>> {
    let mut buf = vec![0u8; 16 * 1024];
    connect_each(addr, conns, |s| {
        s.write_all(request)?;
        let mut framer = ResponseFramer::default();
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if framer.feed(&buf[..n])? == 1 {
                return Ok(());
            }
        }
    })
}

/// One connection's ping-pong state.
#[derive(Debug)]
struct Conn<'a> {
    /// The message sent, whose echo is awaited.
    message: &'a [u8],
    written: usize,
    received: usize,
    sent_at: Instant,
}

impl Conn<'_> {
    fn new(message: &[u8]) -> Conn<'_> {
        Conn {
            message,
            written: 0,
            received: 0,
            sent_at: Instant::now(),
        }
    }
}

impl Exchange for Conn<'_> {
    fn send(&mut self, s: &mut TcpStream, now: Instant) -> io::Result<()> {
        self.written = 0;
        self.received = 0;
        self.sent_at = now;
        self.write_rest(s)
    }

    fn write_rest(&mut self, s: &mut TcpStream) -> io::Result<()> {
        write_from(s, self.message, &mut self.written)
    }

    /// Reads what is there; true once the whole echo of the current message is in.
    fn read_answer(&mut self, s: &mut TcpStream, buf: &mut [u8]) -> io::Result<bool> {
        let size = self.message.len();
        loop {
            match s.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.received += n;
                    if self.received > size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "server echoed more than was sent",
                        ));
                    }
                    // A short read drained the socket (TCP: new data brings a new edge).
                    if n < buf.len() {
                        return Ok(self.received == size);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(self.received == size);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn sent_at(&self) -> Instant {
        self.sent_at
    }
}

/// Connects one at a time, each finishing one blocking round trip of `message` before the
/// next connect, so no server's accept queue (Twisted's default backlog is 50) overflows.
/// The streams come back non-blocking.
fn connect_all(addr: SocketAddr, conns: usize, message: &[u8]) -> io::Result<Vec<StdTcpStream>> {
    let mut echo = vec![0u8; message.len()];
    connect_each(addr, conns, |s| {
        s.write_all(message)?;
        s.read_exact(&mut echo)
    })
}

/// Opens `conns` connections to `addr` one at a time, running the blocking `handshake` on
/// each before the next connect; the streams come back non-blocking.
fn connect_each(
    addr: SocketAddr,
    conns: usize,
    mut handshake: impl FnMut(&mut StdTcpStream) -> io::Result<()>,
) -> io::Result<Vec<StdTcpStream>> {
    let mut out = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut s = StdTcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        // Close with RST: thousands of connections per run would otherwise sit in TIME_WAIT.
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        handshake(&mut s)?;
        s.set_read_timeout(None)?;
        s.set_nonblocking(true)?;
        out.push(s);
    }
    Ok(out)
}

/// The server's CPU time since `before`, when there is a server to ask.
fn cpu_since(pid: Option<u32>, before: Option<CpuTime>) -> io::Result<Option<CpuTime>> {
    match (pid, before) {
        (Some(pid), Some(before)) => Ok(Some(CpuTime::of(pid)?.since(before))),
        _ => Ok(None),
    }
}

fn cpu_of(pid: Option<u32>) -> io::Result<Option<CpuTime>> {
    pid.map(CpuTime::of).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 14\r\n\r\nHello, world!\n";

    #[test]
    fn framer_counts_whole_and_split_responses() {
        let stream = RESPONSE.repeat(3);
        assert_eq!(ResponseFramer::default().feed(&stream).unwrap(), 3);
        // Every split point, including inside the CRLFCRLF and the body.
        for cut in 0..=stream.len() {
            let mut f = ResponseFramer::default();
            let n = f.feed(&stream[..cut]).unwrap() + f.feed(&stream[cut..]).unwrap();
            assert_eq!(n, 3, "cut at {cut}");
        }
        let mut f = ResponseFramer::default();
        let n: u64 = stream.iter().map(|b| f.feed(&[*b]).unwrap()).sum();
        assert_eq!(n, 3);
    }

    #[test]
    fn framer_refuses_what_it_cannot_frame() {
        let mut f = ResponseFramer::default();
        assert!(f.feed(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        let mut f = ResponseFramer::default();
        assert!(f.feed(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n").is_err());
        let mut f = ResponseFramer::default();
        assert_eq!(
            f.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap(),
            1
        );
    }
}
