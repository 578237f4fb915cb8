//! Many short-lived children in a row leave no zombie and no descriptor behind, with pidfd
//! reaping and with the polling fallback. (Its own test binary: it counts this process's
//! descriptors, which other tests running in parallel would disturb.)

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use twistor::Reactor;
use twistor::process::{
    ChildFd, ProcessCommand, ProcessProtocol, ProcessStatus, ProcessTransport, force_reap_polling,
};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Our children that exist, as (pid, state) from `/proc/*/stat`.
fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the command may contain spaces, so split after ')'.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == me {
            found.push((pid, state));
        }
    }
    found
}

/// Starts the next child when the previous one has ended.
struct Chain {
    reactor: Reactor,
    left: Rc<Cell<usize>>,
    outcomes: Rc<Cell<(usize, usize)>>,
}

impl Chain {
    fn spawn_next(reactor: &Reactor, left: Rc<Cell<usize>>, outcomes: Rc<Cell<(usize, usize)>>) {
        let n = left.get();
        if n == 0 {
            reactor.stop();
            return;
        }
        left.set(n - 1);
        let command = match n % 10 {
            // Now and then: a program that does not exist, an extra pipe, a pty.
            0 => ProcessCommand::new("/nonexistent/twistor-leak-test"),
            3 => ProcessCommand::new("sh")
                .args(["-c", "echo x >&3"])
                .child_fd(3, ChildFd::FromChild),
            7 => ProcessCommand::new("true").use_pty(true),
            _ => ProcessCommand::new("sh").args(["-c", "echo out; echo err >&2"]),
        };
        let chain = Chain {
            reactor: reactor.clone(),
            left,
            outcomes,
        };
        reactor.spawn_process(chain, &command);
    }
}

impl ProcessProtocol for Chain {
    fn connection_made(&mut self, transport: &ProcessTransport) {
        assert!(transport.pid().is_some());
    }

    fn process_ended(&mut self, status: &ProcessStatus) {
        let (ok, failed) = self.outcomes.get();
        match status {
            ProcessStatus::SpawnFailed(_) => self.outcomes.set((ok, failed + 1)),
            s if s.success() => self.outcomes.set((ok + 1, failed)),
            other => panic!("child ended badly: {other}"),
        }
        let (r, left, outcomes) = (
            self.reactor.clone(),
            self.left.clone(),
            self.outcomes.clone(),
        );
        // From the reactor, not from inside this callback.
        self.reactor
            .call_soon(move || Chain::spawn_next(&r, left, outcomes));
    }
}

fn run_chain(count: usize) -> (usize, usize) {
    let reactor = twistor_testing::reactor_with_timeout(Duration::from_secs(120));
    let left = Rc::new(Cell::new(count));
    let outcomes = Rc::new(Cell::new((0, 0)));
    Chain::spawn_next(&reactor, left, outcomes.clone());
    reactor.run().unwrap();
    outcomes.get()
}

#[test]
fn two_hundred_children_leave_no_zombie_and_no_descriptor() {
    // Warm up once (lazily opened descriptors, such as the test harness's, are counted
    // in the baseline).
    run_chain(1);
    let before = open_fds();
    let show = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .map(|e| format!("{:?}", std::fs::read_link(e.path())))
            .collect::<Vec<_>>()
    };
    let names = show();
    assert!(children().is_empty(), "children before: {:?}", children());

    let (ok, failed) = run_chain(200);
    assert_eq!((ok, failed), (180, 20));
    assert_eq!(
        open_fds(),
        before,
        "descriptors leaked: {names:?} -> {:?}",
        show()
    );
    assert!(children().is_empty(), "children left: {:?}", children());

    // The fallback for kernels without pidfds: children polled with waitpid.
    force_reap_polling(true);
    let (ok, failed) = run_chain(30);
    force_reap_polling(false);
    assert_eq!((ok, failed), (27, 3));
    assert_eq!(open_fds(), before, "descriptors leaked (polling)");
    assert!(children().is_empty(), "children left: {:?}", children());
}
