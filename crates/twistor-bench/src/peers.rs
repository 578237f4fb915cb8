//! Echo servers this binary carries, run as `twistor-bench serve KIND PORT`.
//!
//! The tokio servers are the echo every tokio tutorial writes: a task per connection with
//! a 4 KiB buffer, `read` then `write_all`. The twistor one is `examples/echo_server.rs`.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use twistor::protocol::{Protocol, factory};
use twistor::{Reactor, Transport};

/// Runs tokio's echo server on a `current_thread` runtime until killed.
pub fn tokio_current_thread(port: u16) -> io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(tokio_echo(port))
}

/// Runs tokio's echo server on a `multi_thread` runtime (one worker per CPU) until killed.
pub fn tokio_multi_thread(port: u16) -> io::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()?
        .block_on(tokio_echo(port))
}

/// Runs twistor's echo server (the `echo_server` example) until killed.
pub fn twistor_echo(port: u16) -> Result<(), twistor::Error> {
    struct Echo;

    impl Protocol for Echo {
        fn data_received(&mut self, transport: &Transport, data: &[u8]) {
            transport.write(data);
        }
    }

    let reactor = Reactor::new()?;
    let listening = reactor.listen_tcp(port, factory(|_addr| Echo))?;
    println!("twistor echo listening on {}", listening.port());
    reactor.run()
}

async fn tokio_echo(port: u16) -> io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("tokio echo listening on {}", listener.local_addr()?.port());
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::spawn(echo_connection(socket));
    }
}

async fn echo_connection(mut socket: TcpStream) {
    let _ = socket.set_nodelay(true);
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if socket.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
