//! A bcrypt of cost 12 is verified on the reactor's thread pool, and the reactor keeps
//! serving meanwhile. This file holds one test, so the only pool threads in the process
//! are this test's reactor's (it reads the threads' CPU times from /proc).

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use support::TempDir;
use twistor::task::LoopingCall;
use twistor_cred::checkers::{Checker, PasswordFile};
use twistor_cred::{AvatarId, Credentials};

/// `htpasswd -nbB -C 12 alice 'slow but sure'`
const COST_12: &str = "$2y$12$GNzKdn5u2CeJPkeeU4HExez7gqmbcGIzN7tUT5FGaQzpnnWLyYHZm";

/// A thread of this process: its id, name and CPU time so far (user + system).
#[derive(Debug)]
struct Task {
    tid: u32,
    name: String,
    cpu: Duration,
}

fn task(stat_dir: &std::path::Path) -> Option<Task> {
    let name = std::fs::read_to_string(stat_dir.join("comm"))
        .ok()?
        .trim()
        .to_string();
    let stat = std::fs::read_to_string(stat_dir.join("stat")).ok()?;
    let tid = stat.split(' ').next()?.parse().ok()?;
    // Fields after the parenthesised name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Some(Task {
        tid,
        name,
        cpu: Duration::from_millis(ticks * 1000 / hz),
    })
}

fn this_thread() -> Task {
    task(std::path::Path::new("/proc/thread-self")).expect("/proc/thread-self")
}

fn pool_threads() -> Vec<Task> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|entry| task(&entry.ok()?.path()))
        .filter(|t| t.name.starts_with("twistor-pool"))
        .collect()
}

#[test]
fn bcrypt_cost_12_runs_on_a_pool_thread_while_the_reactor_keeps_serving() {
    let dir = TempDir::new("off-reactor");
    let path = dir.write("users", format!("alice:{COST_12}\n"));
    let reactor = twistor_testing::reactor();
    let file = PasswordFile::open(&reactor, &path).unwrap();
    let reactor_thread = this_thread();

    let d = file.check(&Credentials::username_password("alice", "slow but sure"));
    assert!(!d.called(), "check returned before the hash was verified");

    // The reactor serves a timer every millisecond while the check is pending.
    let ticks = Rc::new(Cell::new(0u32));
    let (t, pending) = (ticks.clone(), d.clone());
    let ticker = LoopingCall::new(reactor.clone(), move || {
        if !pending.called() {
            t.set(t.get() + 1);
        }
    });
    let ticking = ticker.start(Duration::from_millis(1), true).unwrap();

    // When the check is answered (on the reactor thread), note which threads did the work
    // before the reactor stops and its pool threads exit.
    let seen = Rc::new(RefCell::new(None));
    let (r, s) = (reactor.clone(), seen.clone());
    d.add_both(move |result| {
        *s.borrow_mut() = Some((this_thread(), pool_threads()));
        ticker.stop().unwrap();
        r.stop();
        result
    });
    reactor.run().unwrap();
    assert!(ticking.try_result().expect("the loop stopped").is_ok());

    assert_eq!(d.try_result().unwrap().unwrap(), AvatarId::user("alice"));
    let (reactor_after, pool) = seen.take().expect("answered");
    assert_eq!(
        reactor_after.tid, reactor_thread.tid,
        "answered on the reactor thread"
    );
    let ticks = ticks.get();
    assert!(
        ticks >= 20,
        "the reactor served only {ticks} timer ticks during the check"
    );

    // The hash's CPU time was spent on a pool thread, not the reactor's.
    let worker = pool
        .iter()
        .max_by_key(|t| t.cpu)
        .expect("a pool thread ran");
    assert_ne!(worker.tid, reactor_thread.tid);
    let reactor_cpu = reactor_after.cpu.saturating_sub(reactor_thread.cpu);
    assert!(
        worker.cpu >= Duration::from_millis(50) && worker.cpu > reactor_cpu * 2,
        "pool thread {worker:?} vs the reactor thread's {reactor_cpu:?} during the check"
    );
    eprintln!("{ticks} ticks served; {worker:?}; reactor thread used {reactor_cpu:?}");
}
