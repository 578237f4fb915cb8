//! The classic programs, each driven by real peers: nc, socat, and Twisted itself.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{ChildGuard, closed_port, example, have, have_twisted, peer_script, run_with_input};

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read");
    buf
}

fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read to end");
    buf
}

#[test]
fn echo_server_answers_nc_and_socat() {
    let mut server = ChildGuard::spawn({
        let mut c = example("echo_server");
        c.arg("0");
        c
    });
    let port = server.port();
    if have("nc", &["-h"]) {
        let mut nc = Command::new("nc");
        nc.args(["-N", "127.0.0.1", &port.to_string()]);
        assert_eq!(run_with_input(nc, b"hello from nc\n"), b"hello from nc\n");
    }
    if have("socat", &["-V"]) {
        let mut socat = Command::new("socat");
        socat.args(["-", &format!("TCP:127.0.0.1:{port}")]);
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            run_with_input(socat, &big),
            big,
            "200 kB round trip through socat"
        );
    }
    server.signal(libc::SIGINT);
    let (status, _) = server.wait();
    assert!(
        status.success(),
        "SIGINT stops the server cleanly: {status}"
    );
}

#[test]
fn echo_server_answers_twisted_client() {
    if !have_twisted() {
        return;
    }
    let mut server = ChildGuard::spawn({
        let mut c = example("echo_server");
        c.arg("0");
        c
    });
    let port = server.port();
    let out = Command::new("python3")
        .arg(peer_script("twisted_echo_client.py"))
        .arg(port.to_string())
        .arg("hello, world!")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "twisted client: {stdout}");
    assert!(stdout.contains("Server said: hello, world!"), "{stdout}");
}

#[test]
fn echo_client_talks_to_twisted_echo_server() {
    if !have_twisted() {
        return;
    }
    let mut server = ChildGuard::spawn({
        let mut c = Command::new("python3");
        c.arg(peer_script("twisted_echo_server.py"));
        c
    });
    let port = server.port();
    let mut client = ChildGuard::spawn({
        let mut c = example("echo_client");
        c.arg(port.to_string());
        c
    });
    assert_eq!(client.line(), "Server said: hello, world!");
    assert_eq!(client.line(), "connection lost");
    assert_eq!(client.line(), "Connection lost - goodbye!");
    let (status, _) = client.wait();
    assert!(status.success());
}

#[test]
fn echo_client_reports_failure() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut client = ChildGuard::spawn({
        let mut c = example("echo_client");
        c.arg(port.to_string());
        c
    });
    assert_eq!(client.line(), "Connection failed - goodbye!");
    let (status, _) = client.wait();
    assert!(status.success());
}

#[test]
fn hello_server_and_client() {
    let mut server = ChildGuard::spawn({
        let mut c = example("hello_server");
        c.arg("0");
        c
    });
    let port = server.port();
    let mut client = ChildGuard::spawn({
        let mut c = example("hello_client");
        c.arg(port.to_string());
        c
    });
    assert_eq!(client.line(), "DATA Hello");
    assert!(server.line().starts_with("success from tcp:127.0.0.1:"));
    assert_eq!(server.line(), "hello");
    // Stopping the server drops the client, which reports it and stops.
    server.signal(libc::SIGINT);
    assert!(client.line().starts_with("Lost connection: "));
    let (status, _) = client.wait();
    assert!(status.success());
    let (status, _) = server.wait();
    assert!(status.success());
}

#[test]
fn hello_server_reports_disconnects() {
    let mut server = ChildGuard::spawn({
        let mut c = example("hello_server");
        c.arg("0");
        c
    });
    let port = server.port();
    let mut s = connect(port);
    assert_eq!(read_exactly(&mut s, 5), b"Hello");
    s.write_all(b"anyone there?").unwrap();
    assert!(server.line().starts_with("success from"));
    assert_eq!(server.line(), "anyone there?");
    drop(s);
    assert!(server.line().ends_with("disconnected"));
    assert_eq!(server.line(), "Connection was closed cleanly.");
}

#[test]
fn chat_server_greets_relays_and_closes() {
    let mut server = ChildGuard::spawn({
        let mut c = example("chat_server");
        c.arg("0");
        c
    });
    let port = server.port();
    let greeting = |n: usize| format!("欢迎来到Spread Site, 你是第{n}个客户端用户!\n").into_bytes();
    let mut clients: Vec<TcpStream> = Vec::new();
    for n in 1..=3 {
        let mut c = connect(port);
        assert_eq!(read_exactly(&mut c, greeting(n).len()), greeting(n));
        clients.push(c);
    }
    clients[0].write_all(b"hi all").unwrap();
    assert_eq!(read_exactly(&mut clients[1], 6), b"hi all");
    assert_eq!(read_exactly(&mut clients[2], 6), b"hi all");
    // The sender gets nothing back: the next thing it reads is a later relay.
    clients[1].write_all(b"close\n").unwrap();
    assert_eq!(
        read_to_end(&mut clients[1]),
        b"",
        "a client that sends close is dropped"
    );
    assert_eq!(read_exactly(&mut clients[0], 6), b"close\n");
    assert_eq!(read_exactly(&mut clients[2], 6), b"close\n");
    // Two are left, so a newcomer is the third.
    let mut late = connect(port);
    assert_eq!(read_exactly(&mut late, greeting(3).len()), greeting(3));
    clients[2].write_all(b"x").unwrap();
    assert_eq!(read_exactly(&mut late, 1), b"x");
    assert_eq!(read_exactly(&mut clients[0], 1), b"x");
    clients[0].shutdown(Shutdown::Both).unwrap();
    let line = server.line_containing("lost connect");
    assert_eq!(line, "lost connect: 2");
}

#[test]
fn timestamp_server_stamps_like_ctime() {
    let mut server = ChildGuard::spawn({
        let mut c = example("timestamp_server");
        c.arg("0");
        c
    });
    let port = server.port();
    let date = || {
        let out = Command::new("date")
            .arg("+%a %b %e %H:%M")
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    };
    let before = date();
    let mut s = connect(port);
    s.write_all(b"what time is it?").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let reply = String::from_utf8(read_to_end(&mut s)).unwrap();
    let after = date();
    // "[Sun Nov 22 13:00:00 2026] what time is it?"
    assert!(
        reply.starts_with('[') && reply.ends_with("] what time is it?"),
        "{reply:?}"
    );
    let stamp = &reply[1..reply.len() - "] what time is it?".len()];
    assert_eq!(stamp.len(), 24, "ctime is 24 characters: {stamp:?}");
    let minute = &stamp[..16];
    assert!(
        minute == before || minute == after,
        "{stamp:?} vs date {before:?}"
    );
    assert_eq!(&stamp[16..17], ":");
    assert!(stamp[17..19].chars().all(|c| c.is_ascii_digit()));
    assert_eq!(&stamp[19..], &format!(" {}", &stamp[20..]));
    assert!(
        server
            .line_containing("connected from")
            .ends_with("127.0.0.1")
    );
}

#[test]
fn errors_are_printed_without_any_logging_set_up() {
    let mut child = ChildGuard::spawn({
        let mut c = example("errors_shown");
        c.arg(closed_port().to_string());
        c
    });
    let (status, _) = child.wait();
    let stderr = child.rest_of_stderr();
    assert_eq!(status.code(), Some(1), "react exits 1: {stderr:?}");
    assert_eq!(stderr.len(), 4, "{stderr:?}");
    assert_eq!(
        stderr[0],
        "error: Unhandled error in Deferred: nobody handled this"
    );
    assert!(stderr[1].starts_with("  at ") && stderr[1].contains("errors_shown.rs"));
    assert!(
        stderr[2].starts_with("error: main function failed: connection refused by 127.0.0.1:"),
        "{stderr:?}"
    );
    assert!(stderr[3].starts_with("  at "), "says where: {stderr:?}");
}

#[test]
fn with_log_init_errors_go_through_the_log_once() {
    let mut child = ChildGuard::spawn({
        let mut c = example("errors_shown");
        c.arg(closed_port().to_string()).arg("--log");
        c.env_remove("RUST_LOG");
        c
    });
    let (status, _) = child.wait();
    let stderr = child.rest_of_stderr();
    assert_eq!(status.code(), Some(1));
    let count = |needle: &str| stderr.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("Unhandled error in Deferred: nobody handled this"),
        1,
        "{stderr:?}"
    );
    assert_eq!(
        count("main function failed: connection refused"),
        1,
        "{stderr:?}"
    );
    assert!(
        stderr.iter().all(|l| !l.starts_with("error: ")),
        "not printed a second time: {stderr:?}"
    );
    assert!(
        stderr
            .iter()
            .filter(|l| l.contains("failed"))
            .all(|l| l.contains("ERROR")),
        "formatted by the subscriber: {stderr:?}"
    );
}

#[test]
fn thread_timeout_answers_or_times_out() {
    let mut quick = ChildGuard::spawn({
        let mut c = example("thread_timeout");
        c.args(["1", "10000"]);
        c
    });
    assert_eq!(quick.line(), "answer: 42");
    assert!(quick.wait().0.success());
    let mut slow = ChildGuard::spawn({
        let mut c = example("thread_timeout");
        c.args(["1000", "50"]);
        c
    });
    assert_eq!(slow.line(), "timed out after 50 ms");
    assert!(slow.wait().0.success());
}

#[test]
fn reconnecting_client_comes_back_until_told_bye() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let mut client = ChildGuard::spawn({
        let mut c = example("reconnecting_client");
        c.arg(port.to_string());
        c
    });
    let hello = |s: &mut TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(read_exactly(s, 6), b"hello\n");
    };
    // First connection: drop it; the client comes back.
    let (mut first, _) = server.accept().unwrap();
    hello(&mut first);
    first.write_all(b"see you\n").unwrap();
    drop(first);
    assert_eq!(client.line(), "server said: see you");
    let (mut second, _) = server.accept().unwrap();
    hello(&mut second);
    second.write_all(b"bye\n").unwrap();
    assert_eq!(client.line(), "server said: bye");
    // It closes, stops trying and exits.
    assert_eq!(read_to_end(&mut second), b"");
    let (status, _) = client.wait();
    assert!(status.success());
    server.set_nonblocking(true).unwrap();
    assert!(server.accept().is_err(), "no third attempt");
}
