//! A child writing 100 MB to a protocol that keeps pausing: reading stops while paused (the
//! child blocks on the full pipe), memory stays bounded, and every byte arrives. (Its own
//! test binary, so other tests do not disturb the memory measurement.)

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use twistor::Reactor;
use twistor::process::{ProcessCommand, ProcessProtocol, ProcessStatus, ProcessTransport};

const TOTAL: usize = 100_000_000;
/// The protocol pauses after each this many bytes.
const BURST: usize = 4 * 1024 * 1024;

/// This process's resident set size, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[derive(Default)]
struct State {
    received: usize,
    since_resume: usize,
    paused: bool,
    pauses: usize,
    max_rss: usize,
    nonzero: bool,
    status: Option<ProcessStatus>,
}

struct Slow {
    reactor: Reactor,
    state: Rc<RefCell<State>>,
}

impl ProcessProtocol for Slow {
    fn out_received(&mut self, transport: &ProcessTransport, data: &[u8]) {
        let mut s = self.state.borrow_mut();
        assert!(!s.paused, "data arrived while the transport was paused");
        s.received += data.len();
        s.since_resume += data.len();
        s.nonzero |= data.iter().any(|&b| b != 0);
        if s.since_resume >= BURST {
            s.paused = true;
            s.pauses += 1;
            s.max_rss = s.max_rss.max(rss());
            transport.pause_producing();
            let (t, state) = (transport.clone(), self.state.clone());
            // Stay paused a while: a transport that kept reading would buffer here.
            self.reactor.call_later(Duration::from_millis(20), move || {
                let mut s = state.borrow_mut();
                s.paused = false;
                s.since_resume = 0;
                drop(s);
                t.resume_producing();
            });
        }
    }

    fn process_ended(&mut self, status: &ProcessStatus) {
        self.state.borrow_mut().status = Some(status.clone());
        self.reactor.stop();
    }
}

#[test]
fn paused_process_output_is_not_buffered() {
    let reactor = twistor_testing::reactor_with_timeout(Duration::from_secs(120));
    let state = Rc::new(RefCell::new(State::default()));
    let before = rss();
    let command = ProcessCommand::new("head").args(["-c", &TOTAL.to_string(), "/dev/zero"]);
    reactor.spawn_process(
        Slow {
            reactor: reactor.clone(),
            state: state.clone(),
        },
        &command,
    );
    reactor.run().unwrap();
    let s = state.borrow();
    assert!(s.status.as_ref().unwrap().success(), "{:?}", s.status);
    assert_eq!(s.received, TOTAL, "every byte arrives");
    assert!(!s.nonzero);
    assert!(s.pauses >= TOTAL / BURST - 1, "paused {} times", s.pauses);
    // 100 MB went through; what stayed resident is a small fraction of it.
    let grown = s.max_rss.saturating_sub(before);
    assert!(grown < 16 * 1024 * 1024, "RSS grew by {grown} bytes");
}
