//! Framing: every receiver fed its input in every chunking (proptest), down to one byte at
//! a time, plus limits, errors, raw mode and pausing.

use proptest::prelude::*;
use twistor::transport::Producer;
use twistor::{Protocol, Transport};
use twistor_protocols::Error;
use twistor_protocols::basic::{
    Framing, Int8StringReceiver, Int16StringReceiver, Int32StringReceiver, LineBuffer, LineHandler,
    LineOnlyHandler, LineOnlyReceiver, LineReceiver, LineWriter, Lines, NetstringReceiver,
    StringHandler, Strings,
};
use twistor_testing::{ProducerState, StringTransport};

/// Feeds `data` to `proto` in chunks whose sizes cycle through `sizes` (1 = a byte at a
/// time).
fn feed(proto: &mut dyn Protocol, t: &Transport, data: &[u8], sizes: &[usize]) {
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let n = sizes[i % sizes.len()].max(1).min(data.len() - at);
        proto.data_received(t, &data[at..at + n]);
        at += n;
        i += 1;
    }
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![1]),
        Just(vec![usize::MAX]),
        prop::collection::vec(1usize..40, 1..20),
    ]
}

/// Records every event; a line `RAW n` switches to raw mode for the next `n` bytes.
#[derive(Default, Debug, PartialEq)]
struct Recorder {
    events: Vec<Event>,
    raw_left: usize,
    pause_after: Option<usize>,
}

#[derive(Debug, PartialEq, Clone)]
enum Event {
    Line(Vec<u8>),
    Raw(Vec<u8>),
    TooLong(usize),
}

impl LineHandler for Recorder {
    fn line_received(&mut self, lines: &mut Lines<'_>, line: &[u8]) {
        self.events.push(Event::Line(line.to_vec()));
        if let Some(n) = line.strip_prefix(b"RAW ") {
            let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
            if n > 0 {
                self.raw_left = n;
                lines.set_raw_mode();
            }
        }
        if self.pause_after == Some(self.events.len()) {
            lines.pause_producing();
        }
    }

    fn raw_data_received(&mut self, lines: &mut Lines<'_>, data: &[u8]) {
        let take = self.raw_left.min(data.len());
        match self.events.last_mut() {
            Some(Event::Raw(buf)) => buf.extend_from_slice(&data[..take]),
            _ => self.events.push(Event::Raw(data[..take].to_vec())),
        }
        self.raw_left -= take;
        if self.raw_left == 0 {
            self.events.push(Event::Line(b"<end raw>".to_vec()));
            lines.set_line_mode(&data[take..]);
        }
    }

    fn line_length_exceeded(&mut self, lines: &mut Lines<'_>, data: &[u8]) {
        self.events.push(Event::TooLong(data.len()));
        lines.transport().lose_connection();
    }
}

/// A message of the line protocol above: a line, or a raw block announced by a line.
#[derive(Debug, Clone)]
enum Msg {
    Line(Vec<u8>),
    Raw(Vec<u8>),
}

fn msgs() -> impl Strategy<Value = Vec<Msg>> {
    let line = prop::collection::vec(any::<u8>(), 0..30).prop_map(|mut l| {
        // No delimiter inside a line, and not mistaken for a RAW command.
        l.retain(|b| *b != b'\n');
        if l.starts_with(b"RAW ") {
            l[0] = b'r';
        }
        if l.last() == Some(&b'\r') {
            l.pop();
        }
        Msg::Line(l)
    });
    let raw = prop::collection::vec(any::<u8>(), 1..50).prop_map(Msg::Raw);
    prop::collection::vec(prop_oneof![3 => line, 1 => raw], 0..25)
}

fn encode_msgs(msgs: &[Msg]) -> (Vec<u8>, Vec<Event>) {
    let mut wire = Vec::new();
    let mut events = Vec::new();
    for m in msgs {
        match m {
            Msg::Line(l) => {
                wire.extend_from_slice(l);
                wire.extend_from_slice(b"\r\n");
                events.push(Event::Line(l.clone()));
            }
            Msg::Raw(r) => {
                let cmd = format!("RAW {}", r.len()).into_bytes();
                wire.extend_from_slice(&cmd);
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(r);
                events.push(Event::Line(cmd));
                events.push(Event::Raw(r.clone()));
                events.push(Event::Line(b"<end raw>".to_vec()));
            }
        }
    }
    (wire, events)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn line_receiver_any_chunking(msgs in msgs(), sizes in chunk_sizes()) {
        let (wire, expected) = encode_msgs(&msgs);
        let st = StringTransport::new();
        let t = st.transport();
        let mut proto = LineReceiver::new(Recorder::default());
        proto.make_connection(&t);
        feed(&mut proto, &t, &wire, &sizes);
        prop_assert_eq!(&proto.handler().events, &expected);
        prop_assert!(proto.pending().is_empty());
        prop_assert!(!st.disconnecting());
    }

    #[test]
    fn line_receiver_custom_delimiter(lines in prop::collection::vec("[a-z]{0,20}", 0..20),
                                      sizes in chunk_sizes()) {
        let wire: Vec<u8> = lines.iter().flat_map(|l| format!("{l}<EOL>").into_bytes()).collect();
        let st = StringTransport::new();
        let t = st.transport();
        let mut proto = LineReceiver::with_delimiter(Recorder::default(), b"<EOL>", 100);
        proto.make_connection(&t);
        feed(&mut proto, &t, &wire, &sizes);
        let expected: Vec<Event> =
            lines.iter().map(|l| Event::Line(l.as_bytes().to_vec())).collect();
        prop_assert_eq!(&proto.handler().events, &expected);
    }

    #[test]
    fn line_only_receiver_any_chunking(lines in prop::collection::vec(
            prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..40)
                .prop_map(|mut l| { if l.last() == Some(&b'\r') { l.pop(); } l }), 0..30),
            tail in "[a-z]{0,10}",
            sizes in chunk_sizes()) {
        let mut wire: Vec<u8> = lines.iter().flat_map(|l| [&l[..], b"\r\n"].concat()).collect();
        wire.extend_from_slice(tail.as_bytes());
        let st = StringTransport::new();
        let t = st.transport();
        let mut proto = LineOnlyReceiver::new(Collect::default());
        proto.make_connection(&t);
        feed(&mut proto, &t, &wire, &sizes);
        prop_assert_eq!(&proto.handler().0, &lines);
    }

    #[test]
    fn netstrings_any_chunking(strings in prop::collection::vec(
            prop::collection::vec(any::<u8>(), 0..60), 0..20), sizes in chunk_sizes()) {
        let mut wire = Vec::new();
        for s in &strings {
            wire.extend(Framing::Netstring.encode(s).unwrap());
        }
        let st = StringTransport::new();
        let t = st.transport();
        let mut proto = NetstringReceiver::new(Strs::default());
        proto.make_connection(&t);
        feed(&mut proto, &t, &wire, &sizes);
        prop_assert_eq!(&proto.handler().0, &strings);
        prop_assert!(!st.disconnecting());
    }

    #[test]
    fn int_n_strings_any_chunking(strings in prop::collection::vec(
            prop::collection::vec(any::<u8>(), 0..255), 0..12), sizes in chunk_sizes()) {
        for n in [1usize, 2, 4] {
            let mut wire = Vec::new();
            for s in &strings {
                wire.extend(Framing::Prefix(n).encode(s).unwrap());
            }
            let st = StringTransport::new();
            let t = st.transport();
            let got = match n {
                1 => run(Int8StringReceiver::new(Strs::default()), &t, &wire, &sizes, |p| p.handler().0.clone()),
                2 => run(Int16StringReceiver::new(Strs::default()), &t, &wire, &sizes, |p| p.handler().0.clone()),
                _ => run(Int32StringReceiver::new(Strs::default()), &t, &wire, &sizes, |p| p.handler().0.clone()),
            };
            prop_assert_eq!(&got, &strings);
        }
    }

    #[test]
    fn line_buffer_never_panics_on_garbage(data in prop::collection::vec(any::<u8>(), 0..300),
                                           sizes in chunk_sizes(), max in 0usize..20) {
        let mut buffer = LineBuffer::new(b"\r\n", max);
        let mut at = 0;
        let mut i = 0;
        while at < data.len() {
            let n = sizes[i % sizes.len()].max(1).min(data.len() - at);
            buffer.feed(&data[at..at + n]);
            at += n;
            i += 1;
            while let Some(frame) = buffer.poll_frame() {
                if let twistor_protocols::basic::Frame::Line(r) = frame {
                    prop_assert!(buffer.slice(r).len() <= max);
                }
                buffer.set_raw(i % 7 == 0);
            }
        }
    }
}

fn run<P: Protocol, R>(
    mut proto: P,
    t: &Transport,
    wire: &[u8],
    sizes: &[usize],
    get: impl Fn(&P) -> R,
) -> R {
    proto.make_connection(t);
    feed(&mut proto, t, wire, sizes);
    get(&proto)
}

#[derive(Default)]
struct Collect(Vec<Vec<u8>>);

impl LineOnlyHandler for Collect {
    fn line_received(&mut self, _: &LineWriter<'_>, line: &[u8]) {
        self.0.push(line.to_vec());
    }
}

#[derive(Default)]
struct Strs(Vec<Vec<u8>>);

impl StringHandler for Strs {
    fn string_received(&mut self, _: &Strings<'_>, string: &[u8]) {
        self.0.push(string.to_vec());
    }
}

fn line_receiver(max: Option<usize>) -> (StringTransport, LineReceiver<Recorder>) {
    let st = StringTransport::new();
    let mut proto = match max {
        Some(max) => LineReceiver::with_delimiter(Recorder::default(), b"\r\n", max),
        None => LineReceiver::new(Recorder::default()),
    };
    proto.make_connection(&st.transport());
    (st, proto)
}

#[test]
fn line_at_the_limit_passes_one_over_closes() {
    let (st, mut proto) = line_receiver(None);
    let t = st.transport();
    let ok = vec![b'x'; 16_384];
    proto.data_received(&t, &[&ok[..], b"\r\n"].concat());
    assert_eq!(proto.handler().events, [Event::Line(ok)]);
    assert!(!st.disconnecting());

    let (st, mut proto) = line_receiver(None);
    let t = st.transport();
    let long = vec![b'y'; 16_385];
    proto.data_received(&t, &[&long[..], b"\r\nnext\r\n"].concat());
    assert_eq!(proto.handler().events, [Event::TooLong(16_385 + 8)]);
    assert!(st.disconnecting());
}

#[test]
fn a_buffer_outgrowing_the_limit_without_a_delimiter_closes() {
    let (st, mut proto) = line_receiver(Some(10));
    let t = st.transport();
    proto.data_received(&t, b"0123456789\r"); // 10 + partial delimiter: still fine
    assert!(proto.handler().events.is_empty());
    proto.data_received(&t, b"x");
    assert_eq!(proto.handler().events, [Event::TooLong(12)]);
    assert!(st.disconnecting());
}

#[test]
fn default_line_length_exceeded_closes_the_connection() {
    struct Quiet;
    impl LineHandler for Quiet {
        fn line_received(&mut self, _: &mut Lines<'_>, _: &[u8]) {}
    }
    let st = StringTransport::new();
    let mut proto = LineReceiver::with_delimiter(Quiet, b"\n", 4);
    proto.make_connection(&st.transport());
    proto.data_received(&st.transport(), b"12345\n");
    assert!(st.disconnecting());
}

#[test]
fn lines_after_a_close_are_not_delivered() {
    struct CloseOnQuit(Vec<Vec<u8>>);
    impl LineHandler for CloseOnQuit {
        fn line_received(&mut self, lines: &mut Lines<'_>, line: &[u8]) {
            self.0.push(line.to_vec());
            if line == b"QUIT" {
                lines.send_line(b"bye");
                lines.transport().lose_connection();
            }
        }
    }
    let st = StringTransport::new();
    let mut proto = LineReceiver::new(CloseOnQuit(vec![]));
    proto.make_connection(&st.transport());
    proto.data_received(&st.transport(), b"a\r\nQUIT\r\nb\r\n");
    assert_eq!(proto.handler().0, [b"a".to_vec(), b"QUIT".to_vec()]);
    assert_eq!(st.value(), b"bye\r\n");
}

#[test]
fn raw_mode_leftovers_are_reparsed_in_line_mode() {
    let (st, mut proto) = line_receiver(None);
    let t = st.transport();
    proto.data_received(&t, b"RAW 3\r\nabcdef\r\ng\r\n");
    assert_eq!(
        proto.handler().events,
        [
            Event::Line(b"RAW 3".to_vec()),
            Event::Raw(b"abc".to_vec()),
            Event::Line(b"<end raw>".to_vec()),
            Event::Line(b"def".to_vec()),
            Event::Line(b"g".to_vec()),
        ]
    );
}

#[test]
fn pausing_holds_buffered_lines_until_resumed() {
    let st = StringTransport::new();
    let t = st.transport();
    let mut proto = LineReceiver::new(Recorder {
        pause_after: Some(1),
        ..Recorder::default()
    });
    proto.make_connection(&t);
    proto.data_received(&t, b"one\r\ntwo\r\nthree\r\n");
    assert_eq!(proto.handler().events, [Event::Line(b"one".to_vec())]);
    assert_eq!(st.producer_state(), ProducerState::Paused);
    assert_eq!(proto.pending(), b"two\r\nthree\r\n");
    // More bytes while paused are held too.
    proto.data_received(&t, b"four\r\n");
    assert_eq!(proto.handler().events.len(), 1);

    let control = proto.control();
    assert!(control.paused());
    control.resume_producing();
    assert_eq!(
        proto.handler().events,
        ["one", "two", "three", "four"].map(|l| Event::Line(l.as_bytes().to_vec()))
    );
    assert_eq!(st.producer_state(), ProducerState::Producing);
    // As a producer registered elsewhere: pausing stops the transport reading.
    control.pause_producing();
    assert_eq!(st.producer_state(), ProducerState::Paused);
    proto.data_received(&t, b"five\r\n");
    assert_eq!(proto.handler().events.len(), 4);
    control.resume_producing();
    assert_eq!(proto.handler().events.len(), 5);
}

#[test]
fn send_line_and_greeting() {
    struct Greet;
    impl LineHandler for Greet {
        fn connection_made(&mut self, lines: &mut Lines<'_>) {
            lines.send_line(b"220 ready");
            lines.set_delimiter(b"\n");
        }
        fn line_received(&mut self, lines: &mut Lines<'_>, line: &[u8]) {
            lines.send_line(line);
        }
    }
    let st = StringTransport::new();
    let mut proto = LineReceiver::new(Greet);
    proto.make_connection(&st.transport());
    proto.data_received(&st.transport(), b"a\nb\n");
    assert_eq!(st.value(), b"220 ready\r\na\nb\n");
}

#[test]
fn line_only_limits() {
    let st = StringTransport::new();
    let t = st.transport();
    let mut proto = LineOnlyReceiver::with_delimiter(Collect::default(), b"\n", 5);
    proto.make_connection(&t);
    proto.data_received(&t, b"12345\n");
    assert!(!st.disconnecting());
    proto.data_received(&t, b"123456\nmore\n");
    assert!(st.disconnecting());
    assert_eq!(proto.handler().0, [b"12345".to_vec()]);

    let st = StringTransport::new();
    let t = st.transport();
    let mut proto = LineOnlyReceiver::with_delimiter(Collect::default(), b"\n", 5);
    proto.make_connection(&t);
    for b in b"1234567" {
        proto.data_received(&t, &[*b]);
    }
    assert!(st.disconnecting());
}

fn netstring(max: usize, input: &[u8]) -> (StringTransport, Vec<Vec<u8>>) {
    let st = StringTransport::new();
    let t = st.transport();
    let mut proto = NetstringReceiver::with_max_length(Strs::default(), max);
    proto.make_connection(&t);
    for b in input {
        proto.data_received(&t, &[*b]);
    }
    let got = proto.handler().0.clone();
    (st, got)
}

#[test]
fn netstring_errors_close_the_broken_peer() {
    for bad in [
        &b"01:a,"[..],
        b"00:,",
        b"a:",
        b":abc,",
        b"3:abc;",
        b"3:abcd,",
        b"-1:a,",
        b"123456:",
    ] {
        let (st, got) = netstring(99_999, bad);
        assert!(
            st.disconnecting(),
            "{:?} accepted",
            String::from_utf8_lossy(bad)
        );
        assert!(got.is_empty());
    }
    // Over a small limit.
    let (st, got) = netstring(10, b"2:ok,11:hello world,");
    assert_eq!(got, [b"ok".to_vec()]);
    assert!(st.disconnecting());
    // Good strings before the bad one are delivered, nothing after.
    let (st, got) = netstring(99_999, b"0:,1:a,x1:b,");
    assert_eq!(got, [vec![], b"a".to_vec()]);
    assert!(st.disconnecting());
}

#[test]
fn int_n_limits() {
    let st = StringTransport::new();
    let t = st.transport();
    let mut proto = Int32StringReceiver::with_max_length(Strs::default(), 10);
    proto.make_connection(&t);
    proto.data_received(&t, b"\x00\x00\x00\x02hi\x00\x00\x00\x0b");
    assert_eq!(proto.handler().0, [b"hi".to_vec()]);
    assert!(st.disconnecting());

    // Sending a string too long for the prefix is an error, not a truncated frame.
    struct Sender(Vec<Result<(), Error>>);
    impl StringHandler for Sender {
        fn connection_made(&mut self, strings: &Strings<'_>) {
            self.0.push(strings.send_string(&[b'a'; 255]));
            self.0.push(strings.send_string(&[b'a'; 256]));
        }
        fn string_received(&mut self, _: &Strings<'_>, _: &[u8]) {}
    }
    let st = StringTransport::new();
    let mut proto = Int8StringReceiver::new(Sender(vec![]));
    proto.make_connection(&st.transport());
    assert!(proto.handler().0[0].is_ok());
    assert_eq!(
        proto.handler().0[1],
        Err(Error::StringTooLong {
            length: 256,
            max: 255
        })
    );
    assert_eq!(st.value().len(), 256);
    assert_eq!(st.value()[0], 255);
    assert!(
        Framing::Prefix(2)
            .encode(&vec![0; 65_536])
            .unwrap_err()
            .to_string()
            .contains("at most 65535")
    );
    let mut proto = Int16StringReceiver::new(Strs::default());
    let st = StringTransport::new();
    proto.make_connection(&st.transport());
    proto.data_received(&st.transport(), b"\xff\xff");
    assert!(
        !st.disconnecting(),
        "65,535 is under the default limit: wait for the data"
    );
}
