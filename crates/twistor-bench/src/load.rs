//! The load generator: one thread, mio (epoll, edge-triggered), no runtime.
//!
//! - [`ping_pong`]: N connections, each sending a message and waiting for the whole echo
//!   before sending the next; round trips per second and latency percentiles.
//! - [`stream`]: one connection, the client writes a fixed number of bytes as fast as the
//!   server echoes them and reads the echo concurrently; MB/s one way.
//! - [`idle`]: opens many connections, does one round trip on each, and leaves them idle.
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
    let mut streams: Vec<TcpStream> = connect_all(addr, conns, &message)?
        .into_iter()
        .map(TcpStream::from_std)
        .collect();
    let mut poll = Poll::new()?;
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
    }
    let mut state: Vec<Conn> = (0..conns).map(|_| Conn::default()).collect();
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
    let mut round_trips = 0u64;
    let mut issued = 0u64;
    let mut outstanding = 0usize;

    for (i, c) in state.iter_mut().enumerate() {
        if count.is_some_and(|n| issued >= n) {
            break;
        }
        c.send(&mut streams[i], &message, start)?;
        issued += 1;
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
                "no echo for 5 s: is the server stuck?",
            ));
        }
        now = Instant::now();
        for event in events.iter() {
            let i = event.token().0;
            let (c, s) = (&mut state[i], &mut streams[i]);
            if event.is_writable() && c.written < size {
                c.write_rest(s, &message)?;
            }
            if !event.is_readable() {
                continue;
            }
            if c.read_echo(s, &mut buf, size)? {
                outstanding -= 1;
                if in_window {
                    round_trips += 1;
                    let ns = now.duration_since(c.sent_at).as_nanos();
                    latencies.push(ns.min(u32::MAX as u128) as u32);
                }
                if count.is_none_or(|n| issued < n) {
                    c.send(s, &message, now)?;
                    issued += 1;
                    outstanding += 1;
                }
            }
        }
    }
    let elapsed = now.duration_since(window_start);
    let server_cpu = match (server_pid, cpu_start) {
        (Some(pid), Some(before)) => Some(CpuTime::of(pid)?.since(before)),
        _ => None,
    };
    Ok(PingPongResult {
        round_trips,
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
    let server_cpu = match (server_pid, cpu_start) {
        (Some(pid), Some(before)) => Some(CpuTime::of(pid)?.since(before)),
        _ => None,
    };
    Ok(StreamResult {
        bytes: received,
        elapsed,
        server_cpu,
    })
}

/// Opens `conns` connections to `addr`, one round trip of `size` bytes on each, and returns
/// them open and idle. Closing them (dropping) resets them, leaving no `TIME_WAIT`.
pub fn idle(addr: SocketAddr, conns: usize, size: usize) -> io::Result<Vec<StdTcpStream>> {
    let message = vec![b'i'; size];
    connect_all(addr, conns, &message)
}

/// One connection's ping-pong state.
#[derive(Debug)]
struct Conn {
    written: usize,
    received: usize,
    sent_at: Instant,
}

impl Default for Conn {
    fn default() -> Conn {
        Conn {
            written: 0,
            received: 0,
            sent_at: Instant::now(),
        }
    }
}

impl Conn {
    fn send(&mut self, s: &mut TcpStream, message: &[u8], now: Instant) -> io::Result<()> {
        self.written = 0;
        self.received = 0;
        self.sent_at = now;
        self.write_rest(s, message)
    }

    fn write_rest(&mut self, s: &mut TcpStream, message: &[u8]) -> io::Result<()> {
        while self.written < message.len() {
            match s.write(&message[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what is there; true once the whole echo of the current message is in.
    fn read_echo(&mut self, s: &mut TcpStream, buf: &mut [u8], size: usize) -> io::Result<bool> {
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
}

/// Connects one at a time, each finishing one blocking round trip of `message` before the
/// next connect, so no server's accept queue (Twisted's default backlog is 50) overflows.
/// The streams come back non-blocking.
fn connect_all(addr: SocketAddr, conns: usize, message: &[u8]) -> io::Result<Vec<StdTcpStream>> {
    let mut out = Vec::with_capacity(conns);
    let mut echo = vec![0u8; message.len()];
    for _ in 0..conns {
        let mut s = StdTcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        // Close with RST: thousands of connections per run would otherwise sit in TIME_WAIT.
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(message)?;
        s.read_exact(&mut echo)?;
        s.set_read_timeout(None)?;
        s.set_nonblocking(true)?;
        out.push(s);
    }
    Ok(out)
}

fn cpu_of(pid: Option<u32>) -> io::Result<Option<CpuTime>> {
    pid.map(CpuTime::of).transpose()
}
