//! 1,000 blocking jobs on a 4-thread pool while the reactor keeps answering echo traffic:
//! the echo round trip must stay under 50 ms throughout. (The one test that measures wall
//! time: responsiveness is what it is about.)

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use twistor::defer::gather_results;
use twistor::protocol::{Protocol, factory};
use twistor::{Reactor, Transport};

const JOBS: u64 = 1_000;
const POOL: usize = 4;
const MAX_ROUND_TRIP: Duration = Duration::from_millis(50);

/// Echoes; when the pinger hangs up (after the jobs are done), stops the reactor. The
/// pinger hangs up first so the reactor's shutdown never cuts a round trip short.
struct Echo(Reactor);

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }

    fn connection_lost(&mut self, _reason: &twistor::CloseReason) {
        self.0.stop();
    }
}

/// Pings the echo server until told to stop; returns every round-trip time.
fn pinger(port: u16, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<Duration>> {
    thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut times = Vec::new();
        let mut buf = [0u8; 8];
        let mut n = 0u64;
        while !stop.load(Ordering::Acquire) {
            let started = Instant::now();
            stream.write_all(&n.to_be_bytes()).expect("write");
            stream.read_exact(&mut buf).expect("echo within 10 s");
            times.push(started.elapsed());
            assert_eq!(u64::from_be_bytes(buf), n);
            n += 1;
            thread::sleep(Duration::from_millis(2));
        }
        times
    })
}

#[test]
fn the_reactor_keeps_answering_while_the_pool_runs_a_thousand_blocking_jobs() {
    let reactor = twistor_testing::reactor();
    reactor.suggest_thread_pool_size(POOL);
    let r = reactor.clone();
    let port = reactor
        .listen_tcp(0, factory(move |_| Echo(r.clone())))
        .unwrap()
        .port();

    let stop = Arc::new(AtomicBool::new(false));
    let client = pinger(port, stop.clone());

    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let jobs = (0..JOBS).map(|i| {
        let (running, peak) = (running.clone(), peak.clone());
        reactor.defer_to_thread(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            // A blocking call: a millisecond of waiting, as on a disk or a database.
            thread::sleep(Duration::from_millis(1));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        })
    });
    let all = gather_results(jobs, true);
    let results = Rc::new(RefCell::new(None));
    let (out, done) = (results.clone(), stop.clone());
    let elapsed = Rc::new(RefCell::new(Duration::ZERO));
    let took = elapsed.clone();
    all.consume(move |result| {
        *out.borrow_mut() = Some(result);
        *took.borrow_mut() = started.elapsed();
        done.store(true, Ordering::Release);
    });
    reactor.run().unwrap();
    let elapsed = *elapsed.borrow();
    let round_trips = client.join().expect("pinger thread");

    let values = results
        .borrow_mut()
        .take()
        .expect("all jobs reported")
        .expect("no job failed");
    assert_eq!(values.len(), JOBS as usize);
    assert!(values.iter().enumerate().all(|(i, v)| *v == i as u64 * 2));
    assert_eq!(peak.load(Ordering::SeqCst), POOL, "ran {POOL} at a time");

    let worst = round_trips.iter().max().copied().unwrap_or_default();
    let mut sorted = round_trips.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "{JOBS} jobs in {elapsed:?}; {} echo round trips meanwhile: median {median:?}, worst {worst:?}",
        round_trips.len()
    );
    assert!(
        round_trips.len() >= 10,
        "the client got answers during the run ({} round trips)",
        round_trips.len()
    );
    assert!(
        worst < MAX_ROUND_TRIP,
        "worst echo round trip {worst:?} (median {median:?})"
    );
}
