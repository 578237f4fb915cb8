//! AMP: the box codec in every chunking, typed arguments, limits, the protocol in memory,
//! and interop with real Twisted both ways (peers in tests/peers/).

mod common;

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Command as Process;
use std::rc::Rc;

use common::ReactorThread;
use proptest::prelude::*;
use twistor::defer::Failure;
use twistor::endpoints::{client_from_string, connect_protocol};
use twistor::protocol::factory;
use twistor::tcp::ListenOptions;
use twistor_protocols::Error;
use twistor_protocols::amp::{
    Amp, AmpBox, ArgType, Arguments, BoxDecoder, Command, CommandError, Param, Value,
};
use twistor_testing::process::{ChildGuard, have_twisted};
use twistor_testing::{ConnectedPair, StringTransport};

fn sum() -> Command {
    Command::new("Sum")
        .argument("a", ArgType::Integer)
        .argument("b", ArgType::Integer)
        .response("total", ArgType::Integer)
}

fn divide() -> Command {
    Command::new("Divide")
        .argument("numerator", ArgType::Integer)
        .argument("denominator", ArgType::Integer)
        .response("result", ArgType::Float)
        .error("ZERO_DIVISION")
}

fn describe() -> Command {
    Command::new("Describe")
        .argument("name", ArgType::Unicode)
        .argument("flag", ArgType::Boolean)
        .argument("weight", ArgType::Float)
        .argument("blob", ArgType::String)
        .argument("values", ArgType::ListOf(Box::new(ArgType::Integer)))
        .optional_argument("note", ArgType::Unicode)
        .response("greeting", ArgType::Unicode)
        .response("inverted", ArgType::Boolean)
        .response("half", ArgType::Float)
        .response("reversed", ArgType::String)
        .response("count", ArgType::Integer)
        .response("doubled", ArgType::ListOf(Box::new(ArgType::Integer)))
        .response(
            "items",
            ArgType::AmpList(vec![
                Param::new("index", ArgType::Integer),
                Param::new("label", ArgType::Unicode),
            ]),
        )
}

fn fail() -> Command {
    Command::new("Fail")
}

/// The twistor side of the commands in tests/peers/amp_commands.py.
fn server_amp() -> Amp {
    let amp = Amp::new();
    amp.responder(&sum(), |args| {
        Ok(Arguments::new().with("total", args.integer("a")? + args.integer("b")?))
    });
    amp.responder(&divide(), |args| {
        let (n, d) = (args.integer("numerator")?, args.integer("denominator")?);
        if d == 0 {
            return Err(CommandError::new("ZERO_DIVISION", "division by zero").into());
        }
        Ok(Arguments::new().with("result", n as f64 / d as f64))
    });
    amp.responder(&describe(), |args| {
        let values: Vec<i64> = args
            .list("values")?
            .into_iter()
            .map(|v| match v {
                Value::Integer(i) => i,
                _ => 0,
            })
            .collect();
        let mut greeting = format!("hello, {}", args.unicode("name")?);
        if let Ok(note) = args.unicode("note") {
            greeting.push_str(&format!(" ({note})"));
        }
        let mut reversed = args.string("blob")?;
        reversed.reverse();
        let items: Vec<Arguments> = (0..values.len() as i64)
            .map(|i| {
                Arguments::new()
                    .with("index", i)
                    .with("label", format!("#{i}"))
            })
            .collect();
        Ok(Arguments::new()
            .with("greeting", greeting)
            .with("inverted", !args.boolean("flag")?)
            .with("half", args.float("weight")? / 2.0)
            .with("reversed", reversed)
            .with("count", values.len() as i64)
            .with(
                "doubled",
                values.iter().map(|v| v * 2).collect::<Vec<i64>>(),
            )
            .with("items", items))
    });
    amp.responder(&fail(), |_| Err(Failure::msg("something unexpected")));
    amp
}

fn describe_args() -> Arguments {
    Arguments::new()
        .with("name", "wörld")
        .with("flag", true)
        .with("weight", 2.5)
        .with("blob", b"\x00\x01\xffab".to_vec())
        .with("values", vec![3i64, -1, 1 << 40])
        .with("note", "✓")
}

fn check_describe_answer(a: &Arguments) {
    assert_eq!(a.unicode("greeting").unwrap(), "hello, wörld (✓)");
    assert!(!a.boolean("inverted").unwrap());
    assert_eq!(a.float("half").unwrap(), 1.25);
    assert_eq!(a.string("reversed").unwrap(), b"ba\xff\x01\x00");
    assert_eq!(a.integer("count").unwrap(), 3);
    assert_eq!(
        a.list("doubled").unwrap(),
        vec![
            Value::Integer(6),
            Value::Integer(-2),
            Value::Integer(1 << 41)
        ]
    );
    let items = a.amp_list("items").unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[2].integer("index").unwrap(), 2);
    assert_eq!(items[2].unicode("label").unwrap(), "#2");
}

fn boxes() -> impl Strategy<Value = Vec<Vec<(Vec<u8>, Vec<u8>)>>> {
    let key = prop::collection::vec(any::<u8>(), 1..20);
    let value = prop::collection::vec(any::<u8>(), 0..100);
    prop::collection::vec(prop::collection::vec((key, value), 0..6), 0..8)
}

proptest! {
    #[test]
    fn box_stream_any_chunking(boxes in boxes(),
            sizes in prop_oneof![Just(vec![1usize]), prop::collection::vec(1usize..50, 1..10)]) {
        let expected: Vec<AmpBox> = boxes.iter().map(|entries| {
            let mut b = AmpBox::new();
            for (k, v) in entries {
                b.insert(k.clone(), v.clone());
            }
            b
        }).collect();
        let wire: Vec<u8> = expected.iter().flat_map(|b| b.encode().unwrap()).collect();
        let mut decoder = BoxDecoder::new();
        let mut got = Vec::new();
        let (mut at, mut i) = (0, 0);
        while at < wire.len() {
            let n = sizes[i % sizes.len()].min(wire.len() - at);
            decoder.feed(&wire[at..at + n]);
            while let Some(b) = decoder.poll_box().unwrap() {
                got.push(b);
            }
            at += n;
            i += 1;
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn typed_values_round_trip(a in any::<i64>(), f in any::<f64>(), s in ".{0,30}",
                               b in any::<bool>(), bytes in prop::collection::vec(any::<u8>(), 0..40),
                               list in prop::collection::vec(any::<i64>(), 0..10)) {
        let cmd = Command::new("T")
            .argument("a", ArgType::Integer)
            .argument("f", ArgType::Float)
            .argument("s", ArgType::Unicode)
            .argument("b", ArgType::Boolean)
            .argument("bytes", ArgType::String)
            .argument("list", ArgType::ListOf(Box::new(ArgType::Integer)));
        let args = Arguments::new().with("a", a).with("f", f).with("s", s.as_str()).with("b", b)
            .with("bytes", bytes.clone()).with("list", list.clone());
        let decoded = cmd.decode_arguments(&cmd.encode_arguments(&args).unwrap()).unwrap();
        prop_assert_eq!(decoded.integer("a").unwrap(), a);
        let g = decoded.float("f").unwrap();
        prop_assert!(g == f || (g.is_nan() && f.is_nan()));
        prop_assert_eq!(decoded.unicode("s").unwrap(), s);
        prop_assert_eq!(decoded.boolean("b").unwrap(), b);
        prop_assert_eq!(decoded.string("bytes").unwrap(), bytes);
        prop_assert_eq!(decoded.list("list").unwrap().len(), list.len());
    }
}

#[test]
fn wire_format_matches_twisted() {
    // Twisted: AmpBox(_ask=b"1", _command=b"Sum", a=b"13", b=b"81").serialize()
    let b = sum().encode_arguments(&Arguments::new().with("a", 13).with("b", 81));
    let mut b = b.unwrap();
    b.insert("_command", "Sum");
    b.insert("_ask", "1");
    assert_eq!(
        b.encode().unwrap(),
        b"\x00\x04_ask\x00\x011\x00\x08_command\x00\x03Sum\x00\x01a\x00\x0213\x00\x01b\x00\x0281\x00\x00"
    );
    // Float and boolean spellings Python reads.
    let c = Command::new("F")
        .argument("x", ArgType::Float)
        .argument("t", ArgType::Boolean);
    for (x, text) in [
        (0.25, "0.25"),
        (1e100, "1e100"),
        (f64::INFINITY, "inf"),
        (-3.0, "-3.0"),
    ] {
        let b = c
            .encode_arguments(&Arguments::new().with("x", x).with("t", false))
            .unwrap();
        assert_eq!(b.get(b"x").unwrap(), text.as_bytes());
        assert_eq!(b.get(b"t").unwrap(), b"False");
    }
    // What Python writes, we read.
    let mut b = AmpBox::new();
    b.insert("x", "1e-05");
    b.insert("t", "True");
    let a = c.decode_arguments(&b).unwrap();
    assert_eq!(a.float("x").unwrap(), 1e-5);
    b.insert("t", "true");
    assert!(
        c.decode_arguments(&b)
            .unwrap_err()
            .to_string()
            .contains("bad boolean")
    );
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let mut b = AmpBox::new();
    b.insert(vec![b'k'; 256], "v");
    let err = b.encode().unwrap_err();
    assert!(
        matches!(err, Error::AmpKeyTooLong { length: 256, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("1 to 255 bytes"));
    let mut b = AmpBox::new();
    b.insert(vec![b'k'; 255], vec![0u8; 65_535]);
    assert!(
        b.encode().is_ok(),
        "255-byte key and 65,535-byte value are the limits"
    );
    b.insert("big", vec![0u8; 65_536]);
    let err = b.encode().unwrap_err();
    assert_eq!(
        err,
        Error::AmpValueTooLong {
            key: "big".into(),
            length: 65_536
        }
    );
    assert!(err.to_string().contains("at most 65535"));
    let mut b = AmpBox::new();
    b.insert("", "v");
    assert!(b.encode().is_err(), "an empty key would end the box");

    // A peer announcing a 256-byte key breaks the stream.
    let mut d = BoxDecoder::new();
    d.feed(&[0x01, 0x00]);
    assert!(matches!(
        d.poll_box(),
        Err(Error::AmpKeyTooLong { length: 256, .. })
    ));

    // Typed arguments: wrong type, missing, unknown, too long.
    let s = sum();
    let err = s.encode_arguments(&Arguments::new().with("a", "x").with("b", 1));
    assert!(err.unwrap_err().to_string().contains("expected an integer"));
    let err = s.encode_arguments(&Arguments::new().with("a", 1));
    assert!(err.unwrap_err().to_string().contains("\"b\": missing"));
    let err = s.encode_arguments(&Arguments::new().with("a", 1).with("b", 2).with("c", 3));
    assert!(err.unwrap_err().to_string().contains("not a field"));
    let echo = Command::new("Echo").argument("data", ArgType::String);
    let err = echo.encode_arguments(&Arguments::new().with("data", vec![0u8; 70_000]));
    assert!(matches!(
        err,
        Err(Error::AmpValueTooLong { length: 70_000, .. })
    ));
}

#[test]
fn calls_answers_and_errors_in_memory() {
    let client = Amp::new();
    let mut pair = ConnectedPair::new(server_amp().protocol(), client.protocol());
    let total = client.call_remote(&sum(), Arguments::new().with("a", 13).with("b", 81));
    let zero = client.call_remote(
        &divide(),
        Arguments::new().with("numerator", 1).with("denominator", 0),
    );
    let described = client.call_remote(&describe(), describe_args());
    let unhandled = client.call_remote(&Command::new("Nope"), Arguments::new());
    let too_long = client.call_remote(
        &Command::new("Echo").argument("data", ArgType::String),
        Arguments::new().with("data", vec![0u8; 70_000]),
    );
    assert!(matches!(
        too_long
            .try_result()
            .unwrap()
            .unwrap_err()
            .downcast_ref::<Error>(),
        Some(Error::AmpValueTooLong { .. })
    ));
    pair.pump();
    assert_eq!(
        total
            .try_result()
            .unwrap()
            .unwrap()
            .integer("total")
            .unwrap(),
        94
    );
    let err = zero.try_result().unwrap().unwrap_err();
    assert_eq!(
        err.downcast_ref::<Error>(),
        Some(&Error::AmpRemote {
            code: "ZERO_DIVISION".into(),
            description: "division by zero".into()
        })
    );
    check_describe_answer(&described.try_result().unwrap().unwrap());
    let err = unhandled.try_result().unwrap().unwrap_err();
    assert_eq!(
        err.downcast_ref::<Error>(),
        Some(&Error::AmpUnhandledCommand(
            "Unhandled Command: b'Nope'".into()
        ))
    );

    // An undeclared error: UNKNOWN, and the server closes the connection.
    let pending_after = client.call_remote(&sum(), Arguments::new().with("a", 1).with("b", 1));
    let failed = client.call_remote(&fail(), Arguments::new());
    let never = client.call_remote(&sum(), Arguments::new().with("a", 2).with("b", 2));
    pair.pump();
    assert_eq!(
        pending_after
            .try_result()
            .unwrap()
            .unwrap()
            .integer("total")
            .unwrap(),
        2
    );
    let err = failed.try_result().unwrap().unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::AmpUnknownRemote { code, .. }) if code == "UNKNOWN"
    ));
    assert!(pair.closed());
    let err = never.try_result().unwrap().unwrap_err();
    assert_eq!(err.downcast_ref::<Error>(), Some(&Error::NotConnected));
    let err = client
        .call_remote(&sum(), Arguments::new())
        .try_result()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.downcast_ref::<Error>(), Some(&Error::NotConnected));
}

#[test]
fn commands_without_answers_and_garbage() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let server = Amp::new();
    let log = Command::new("Log")
        .argument("line", ArgType::Unicode)
        .no_answer();
    let s = seen.clone();
    server.responder(&log, move |args| {
        s.borrow_mut().push(args.unicode("line")?);
        Ok(Arguments::new())
    });
    let client = Amp::new();
    let mut pair = ConnectedPair::new(server.protocol(), client.protocol());
    let d = client.call_remote(&log, Arguments::new().with("line", "hi"));
    assert!(d.try_result().unwrap().is_ok(), "fires at once");
    pair.pump();
    assert_eq!(*seen.borrow(), ["hi"]);

    // A box that is neither question nor answer closes the connection.
    let st = StringTransport::new();
    let mut p = Amp::new().protocol();
    use twistor::Protocol;
    p.make_connection(&st.transport());
    p.data_received(&st.transport(), b"\x00\x01x\x00\x01y\x00\x00");
    assert!(st.disconnecting());
    // So does an answer to a question never asked.
    let st = StringTransport::new();
    let mut p = Amp::new().protocol();
    p.make_connection(&st.transport());
    p.data_received(&st.transport(), b"\x00\x07_answer\x00\x0299\x00\x00");
    assert!(st.disconnecting());
}

fn peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

fn local() -> ListenOptions {
    ListenOptions::default().interface([127, 0, 0, 1].into())
}

#[test]
fn twisted_client_calls_a_twistor_server() {
    if !have_twisted() {
        return;
    }
    let (_reactor, port) = ReactorThread::start(|reactor| {
        reactor
            .listen_tcp_with(0, factory(|_| server_amp().protocol()), local())
            .unwrap()
            .port()
    });
    let mut python = Process::new("python3");
    python
        .arg(peers().join("amp_client.py"))
        .arg(port.to_string())
        .current_dir(peers());
    let out = python.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        r#""sum": 94"#,
        r#""divide": 0.25"#,
        r#""zero": "ZeroDivisionError: division by zero""#,
        r#""greeting": "hello, w\u00f6rld (\u2713)""#,
        r#""inverted": false"#,
        r#""half": 1.25"#,
        r#""reversed": [98, 97, 255, 1, 0]"#,
        r#""count": 3"#,
        r#""doubled": [6, -2, 2199023255552]"#,
        r##""items": [{"index": 0, "label": "#0"}, {"index": 1, "label": "#1"}, {"index": 2, "label": "#2"}]"##,
        r#""nope": "UnhandledCommand""#,
        r#""fail": "UnknownRemoteError""#,
    ] {
        assert!(stdout.contains(expected), "{expected} not in {stdout}");
    }
}

#[test]
fn twistor_client_calls_a_twisted_server() {
    if !have_twisted() {
        return;
    }
    let mut python = Process::new("python3");
    python
        .arg("-u")
        .arg(peers().join("amp_server.py"))
        .current_dir(peers());
    let mut server = ChildGuard::spawn(python);
    let port = server
        .line_containing("port")
        .trim_start_matches("port ")
        .parse::<u16>()
        .unwrap();

    let reactor = twistor_testing::reactor();
    let client = Amp::new();
    let endpoint = client_from_string(&reactor, &format!("tcp:127.0.0.1:{port}")).unwrap();
    let results = Rc::new(RefCell::new(Vec::<Result<Arguments, Failure>>::new()));
    let (c, r, reactor2) = (client.clone(), results.clone(), reactor.clone());
    connect_protocol(&*endpoint, client.protocol()).consume(move |connected| {
        if let Err(e) = connected {
            r.borrow_mut().push(Err(e));
            reactor2.stop();
            return;
        }
        let calls = [
            c.call_remote(&sum(), Arguments::new().with("a", 13).with("b", 81)),
            c.call_remote(
                &divide(),
                Arguments::new().with("numerator", 1).with("denominator", 4),
            ),
            c.call_remote(
                &divide(),
                Arguments::new().with("numerator", 1).with("denominator", 0),
            ),
            c.call_remote(&describe(), describe_args()),
            c.call_remote(&Command::new("Nope"), Arguments::new()),
        ];
        let left = Rc::new(std::cell::Cell::new(calls.len()));
        for d in calls {
            let (r, left, reactor) = (r.clone(), left.clone(), reactor2.clone());
            d.consume(move |result| {
                r.borrow_mut().push(result);
                left.set(left.get() - 1);
                if left.get() == 0 {
                    reactor.stop();
                }
            });
        }
    });
    let r = reactor.clone();
    reactor.call_later(std::time::Duration::from_secs(30), move || r.stop());
    reactor.run().unwrap();

    let results = results.borrow();
    assert_eq!(results.len(), 5, "{results:?}");
    // Answers arrive in order (Twisted answers each at once).
    assert_eq!(results[0].as_ref().unwrap().integer("total").unwrap(), 94);
    assert_eq!(results[1].as_ref().unwrap().float("result").unwrap(), 0.25);
    let err = results[2].as_ref().unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::AmpRemote { code, description })
            if code == "ZERO_DIVISION" && description.contains("division by zero")),
        "{err}"
    );
    check_describe_answer(results[3].as_ref().unwrap());
    let err = results[4].as_ref().unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::AmpUnhandledCommand(d)) if d.contains("Nope")),
        "{err}"
    );
}
