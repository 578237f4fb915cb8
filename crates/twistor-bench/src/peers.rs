//! Servers this binary carries, run as `twistor-bench serve KIND PORT`.
//!
//! Echo: the tokio servers are the echo every tokio tutorial writes: a task per connection
//! with a 4 KiB buffer, `read` then `write_all`. The twistor one is `examples/echo_server.rs`.
//!
//! HTTP hello world: hyper 1.x on a tokio `current_thread` runtime, as in hyper's own
//! hello-world example, and twistor-http's `examples/hello_world.rs`.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use twistor::protocol::{Protocol, factory};
use twistor::tcp::ListenOptions;
use twistor::{Reactor, Transport};
use twistor_http::http::HeaderValue;
use twistor_http::http::header::CONTENT_TYPE;
use twistor_http::server::{Site, handler};

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

/// Runs hyper's hello world on a tokio `current_thread` runtime until killed: every request
/// gets `Hello, world!` as text/plain (hyper adds `Date` and `Content-Length`).
/// `pipeline_flush` turns on hyper's (experimental) aggregated flushing of pipelined
/// responses, off by default.
pub fn hyper_current_thread(port: u16, pipeline_flush: bool) -> io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(hyper_hello(port, pipeline_flush))
}

/// Runs twistor-http's hello world (a copy of `examples/hello_world.rs`) until killed.
pub fn twistor_http_hello(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    let site = Site::new(
        reactor.clone(),
        handler(|req| {
            req.set_header(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            "Hello, world!\n".into()
        }),
    );
    let listening = reactor.listen_tcp_with(
        port,
        Rc::new(site),
        ListenOptions::default()
            .interface(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .backlog(1024),
    )?;
    println!("listening on {}", listening.port());
    reactor.run()?;
    Ok(())
}

async fn hyper_hello(port: u16, pipeline_flush: bool) -> io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("hyper listening on {}", listener.local_addr()?.port());
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .pipeline_flush(pipeline_flush)
                .serve_connection(TokioIo::new(socket), service_fn(hello))
                .await;
        });
    }
}

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"Hello, world!\n")));
    // The same fields as the other servers send (hyper adds Date and Content-Length).
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        hyper::header::SERVER,
        hyper::header::HeaderValue::from_static("hyper"),
    );
    Ok(response)
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
