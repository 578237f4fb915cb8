//! Services: start/stop order on the fake clock, `ClientService` retries with a fake
//! endpoint on the fake clock and across real server restarts, `TimerService`,
//! `DrainService`, and the reactor stopping its services.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use twistor::application::{
    self, ClientService, DrainService, DuplicateName, MultiService, Service,
    StreamServerEndpointService, TimerService,
};
use twistor::defer::{Deferred, DeferredError, Failure};
use twistor::endpoints::{ClientEndpoint, client_from_string, server_from_string};
use twistor::protocol::{Factory, Protocol, factory};
use twistor::reconnect::Backoff;
use twistor::{Address, Transport};
use twistor_testing::{Clock, StringTransport};

type Log = Rc<RefCell<Vec<String>>>;

/// A service that logs its starts and stops; its stop takes `stop_after` on the clock.
struct Recorder {
    name: &'static str,
    log: Log,
    clock: Clock,
    stop_after: Duration,
    fail_start: bool,
    running: Cell<bool>,
}

impl Recorder {
    fn new(name: &'static str, log: &Log, clock: &Clock, stop_after: u64) -> Rc<Recorder> {
        Rc::new(Recorder {
            name,
            log: log.clone(),
            clock: clock.clone(),
            stop_after: Duration::from_secs(stop_after),
            fail_start: false,
            running: Cell::new(false),
        })
    }
}

impl Service for Recorder {
    fn start_service(&self) -> Result<(), Failure> {
        if self.fail_start {
            self.log.borrow_mut().push(format!("{} failed", self.name));
            return Err(Failure::msg(format!("{} cannot start", self.name)));
        }
        self.running.set(true);
        self.log.borrow_mut().push(format!("start {}", self.name));
        Ok(())
    }

    fn stop_service(&self) -> Deferred<()> {
        self.running.set(false);
        let at = self.clock.seconds();
        self.log
            .borrow_mut()
            .push(format!("stop {} at {at}", self.name));
        let d = Deferred::new();
        let fire = d.clone();
        let (log, name, clock) = (self.log.clone(), self.name, self.clock.clone());
        self.clock.call_later(self.stop_after, move || {
            log.borrow_mut()
                .push(format!("stopped {name} at {}", clock.seconds()));
            let _ = fire.callback(());
        });
        d
    }

    fn running(&self) -> bool {
        self.running.get()
    }
}

fn taken(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.borrow_mut())
}

#[test]
fn children_start_in_order_and_stop_in_reverse_each_after_the_last() {
    let clock = Clock::new();
    let log: Log = Rc::default();
    let root = MultiService::new();
    root.add_named("db", Recorder::new("db", &log, &clock, 3))
        .unwrap();
    root.add_named("web", Recorder::new("web", &log, &clock, 2))
        .unwrap();
    root.add(Recorder::new("cache", &log, &clock, 1)).unwrap();
    assert!(
        log.borrow().is_empty(),
        "adding to a stopped parent starts nothing"
    );

    root.start_service().unwrap();
    assert!(root.running());
    assert_eq!(taken(&log), ["start db", "start web", "start cache"]);

    let stopped = root.stop_service();
    assert!(!root.running());
    // Only the last child is asked to stop at first.
    assert_eq!(taken(&log), ["stop cache at 0"]);
    clock.advance(Duration::from_secs(1));
    assert_eq!(taken(&log), ["stopped cache at 1", "stop web at 1"]);
    clock.advance(Duration::from_secs(2));
    assert_eq!(taken(&log), ["stopped web at 3", "stop db at 3"]);
    assert!(!stopped.called(), "the parent waits for its first child");
    clock.advance(Duration::from_secs(3));
    assert_eq!(taken(&log), ["stopped db at 6"]);
    assert!(stopped.try_result().unwrap().is_ok());
}

#[test]
fn a_failed_start_stops_what_had_started_and_names_the_child() {
    let clock = Clock::new();
    let log: Log = Rc::default();
    let root = MultiService::new();
    root.add_named("first", Recorder::new("first", &log, &clock, 0))
        .unwrap();
    root.add_named("second", Recorder::new("second", &log, &clock, 0))
        .unwrap();
    let mut bad = Rc::try_unwrap(Recorder::new("bad", &log, &clock, 0))
        .ok()
        .unwrap();
    bad.fail_start = true;
    root.add_named("bad", Rc::new(bad)).unwrap();

    let error = root.start_service().unwrap_err();
    assert!(
        error.to_string().contains("starting service \"bad\""),
        "{error}"
    );
    assert!(error.to_string().contains("bad cannot start"), "{error}");
    assert!(!root.running());
    clock.advance(Duration::ZERO);
    assert_eq!(
        taken(&log),
        [
            "start first",
            "start second",
            "bad failed",
            "stop second at 0",
            "stopped second at 0",
            "stop first at 0",
            "stopped first at 0"
        ]
    );
}

#[test]
fn children_added_or_removed_while_running() {
    let clock = Clock::new();
    let log: Log = Rc::default();
    let root = MultiService::new();
    root.start_service().unwrap();
    root.add_named("late", Recorder::new("late", &log, &clock, 1))
        .unwrap();
    assert_eq!(
        taken(&log),
        ["start late"],
        "a running parent starts a new child"
    );
    assert!(root.get::<Recorder>("late").unwrap().running());
    assert!(root.get::<TimerService>("late").is_none(), "wrong type");
    assert!(root.service_named("missing").is_none());

    let again = root.add_named("late", Recorder::new("other", &log, &clock, 1));
    let error = again.unwrap_err();
    assert!(error.check::<DuplicateName>(), "{error}");
    assert!(log.borrow().is_empty());

    let removed = root.remove("late").unwrap();
    assert_eq!(taken(&log), ["stop late at 0"]);
    clock.advance(Duration::from_secs(1));
    assert!(removed.try_result().unwrap().is_ok());
    assert!(root.is_empty());
    assert!(root.remove("late").is_none());
}

#[test]
fn stopping_twice_or_starting_twice_is_harmless() {
    let clock = Clock::new();
    let log: Log = Rc::default();
    let root = MultiService::new();
    root.add(Recorder::new("only", &log, &clock, 0)).unwrap();
    assert!(root.stop_service().try_result().unwrap().is_ok());
    root.start_service().unwrap();
    root.start_service().unwrap();
    assert_eq!(taken(&log), ["start only"]);
    let first = root.stop_service();
    let second = root.stop_service();
    assert!(second.try_result().unwrap().is_ok());
    clock.advance(Duration::ZERO);
    assert!(first.try_result().unwrap().is_ok());
    assert_eq!(taken(&log), ["stop only at 0", "stopped only at 0"]);
}

#[test]
fn timer_service_runs_and_its_stop_waits_for_a_run_under_way() {
    let clock = Clock::new();
    let runs = Rc::new(Cell::new(0));
    let pending: Rc<RefCell<Option<Deferred<()>>>> = Rc::default();
    let (r, p) = (runs.clone(), pending.clone());
    let service = TimerService::new(clock.clone(), Duration::from_secs(5), move || {
        r.set(r.get() + 1);
        let d = Deferred::new();
        *p.borrow_mut() = Some(d.clone());
        d
    });
    service.start_service().unwrap();
    assert_eq!(runs.get(), 1, "the first run is at start");
    pending.borrow_mut().take().unwrap().callback(()).unwrap();
    clock.advance(Duration::from_secs(5));
    assert_eq!(runs.get(), 2);
    // The second run's Deferred is still pending: the stop waits for it.
    let stopped = service.stop_service();
    assert!(!service.running());
    assert!(!stopped.called());
    pending.borrow_mut().take().unwrap().callback(()).unwrap();
    assert!(stopped.try_result().unwrap().is_ok());
    clock.advance(Duration::from_secs(60));
    assert_eq!(runs.get(), 2, "no run after the stop");
}

#[test]
fn drain_waits_for_connections_then_for_no_longer_than_the_grace() {
    let clock = Clock::new();
    let open = Rc::new(Cell::new(3));
    let begun = Rc::new(Cell::new(false));
    let (o, b) = (open.clone(), begun.clone());
    let drain = DrainService::new(clock.clone(), Duration::from_secs(10), move || o.get())
        .on_begin(move || b.set(true));
    drain.start_service().unwrap();
    let stopped = drain.stop_service();
    assert!(begun.get(), "begin runs first");
    clock.pump(&[Duration::from_secs(1); 5]);
    assert!(!stopped.called());
    open.set(1);
    clock.pump(&[Duration::from_secs(1); 4]);
    assert!(!stopped.called(), "one connection is still open at 9 s");
    clock.advance(Duration::from_secs(1));
    assert!(stopped.called(), "the grace period is over at 10 s");

    // Nothing open: stops at once.
    open.set(0);
    drain.start_service().unwrap();
    assert!(drain.stop_service().called());
}

// ---- ClientService on the fake clock, with an endpoint the test completes -------------

/// A client endpoint whose attempts the test completes by hand.
#[derive(Default, Clone)]
struct FakeEndpoint {
    attempts: Rc<RefCell<Vec<Attempt>>>,
    cancelled: Rc<Cell<u32>>,
}

impl ClientEndpoint for FakeEndpoint {
    fn connect(&self, factory: Rc<dyn Factory>) -> Deferred<Transport> {
        let cancelled = self.cancelled.clone();
        let d = Deferred::with_canceller(move |d| {
            cancelled.set(cancelled.get() + 1);
            let _ = d.errback(DeferredError::Cancelled);
        });
        self.attempts.borrow_mut().push((factory, d.clone()));
        d
    }

    fn describe(&self) -> String {
        "the fake endpoint".into()
    }
}

/// An attempt the fake endpoint was asked for: the factory, and the Deferred to fire.
type Attempt = (Rc<dyn Factory>, Deferred<Transport>);

/// A connection the fake endpoint made: the protocol and its in-memory transport.
struct FakeConnection {
    protocol: Box<dyn Protocol>,
    transport: StringTransport,
}

impl FakeEndpoint {
    fn pending(&self) -> usize {
        self.attempts.borrow().len()
    }

    fn refuse(&self) {
        let (_, d) = self.attempts.borrow_mut().remove(0);
        d.errback(Failure::msg("connection refused")).unwrap();
    }

    fn accept(&self) -> FakeConnection {
        let (factory, d) = self.attempts.borrow_mut().remove(0);
        let addr = Address::Tcp("127.0.0.1:1".parse().unwrap());
        let mut protocol = factory.build_protocol(&addr).unwrap();
        let transport = StringTransport::new();
        protocol.make_connection(&transport.transport());
        d.callback(transport.transport()).unwrap();
        FakeConnection {
            protocol,
            transport,
        }
    }
}

/// Counts its connections made and lost.
struct Counted {
    made: Rc<Cell<u32>>,
}

impl Protocol for Counted {
    fn connection_made(&mut self, transport: &Transport) {
        self.made.set(self.made.get() + 1);
        transport.write(b"hello");
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

fn client_on_clock(backoff: Backoff) -> (Clock, FakeEndpoint, Rc<ClientService>, Rc<Cell<u32>>) {
    let clock = Clock::new();
    let endpoint = FakeEndpoint::default();
    let made = Rc::new(Cell::new(0));
    let m = made.clone();
    let service = ClientService::new(
        clock.clone(),
        Box::new(endpoint.clone()),
        factory(move |_| Counted { made: m.clone() }),
    )
    .with_backoff(backoff);
    (clock, endpoint, Rc::new(service), made)
}

#[test]
fn client_service_retries_with_backoff_and_resets_after_a_connection() {
    let backoff = ClientService::default_backoff().jitter(0.0);
    let (clock, endpoint, service, made) = client_on_clock(backoff);
    service.start_service().unwrap();
    assert_eq!(endpoint.pending(), 1, "started: one attempt");
    let connected = service.when_connected();

    // Twisted's policy: 1.5 s, then 2.25 s, then 3.375 s.
    for (failures, wait) in [(1, 1.5), (2, 2.25), (3, 3.375)] {
        endpoint.refuse();
        assert_eq!(service.failures(), failures);
        assert_eq!(endpoint.pending(), 0);
        clock.advance(Duration::from_secs_f64(wait - 0.001));
        assert_eq!(endpoint.pending(), 0, "no attempt before {wait} s");
        clock.advance(Duration::from_millis(1));
        assert_eq!(endpoint.pending(), 1, "an attempt at {wait} s");
    }
    assert!(!connected.called());
    let connection = endpoint.accept();
    assert_eq!(made.get(), 1);
    assert_eq!(connection.transport.value(), b"hello");
    assert!(
        connected
            .try_result()
            .unwrap()
            .unwrap()
            .ptr_eq(&connection.transport.transport())
    );
    assert_eq!(service.failures(), 0, "a connection resets the count");
    let now = service.when_connected();
    assert!(
        now.try_result().unwrap().is_ok(),
        "connected: fires at once"
    );

    // The connection is lost: the next attempt comes after the first delay again.
    let mut connection = connection;
    connection
        .protocol
        .connection_lost(&twistor::CloseReason::Done);
    assert!(service.transport().is_none());
    clock.advance(Duration::from_secs_f64(1.499));
    assert_eq!(endpoint.pending(), 0);
    clock.advance(Duration::from_millis(1));
    assert_eq!(endpoint.pending(), 1);
}

#[test]
fn when_connected_can_fail_after_some_failures() {
    let (clock, endpoint, service, _) = client_on_clock(Backoff::default().jitter(0.0));
    service.start_service().unwrap();
    let within_two = service.when_connected_or_fail_after(2);
    let forever = service.when_connected();
    endpoint.refuse();
    assert!(!within_two.called());
    clock.advance(Duration::from_secs(10));
    endpoint.refuse();
    let error = within_two.try_result().unwrap().unwrap_err();
    assert!(error.to_string().contains("connection refused"), "{error}");
    assert!(!forever.called());
    // Already failed twice: a new waiter with that limit fails at once.
    assert!(service.when_connected_or_fail_after(2).called());
    clock.advance(Duration::from_secs(100));
    endpoint.accept();
    assert!(forever.try_result().unwrap().is_ok());
}

#[test]
fn stopping_cancels_the_attempt_or_the_wait_and_the_waiters() {
    let (clock, endpoint, service, _) = client_on_clock(Backoff::default().jitter(0.0));
    service.start_service().unwrap();
    let waiter = service.when_connected();
    let stopped = service.stop_service();
    assert!(stopped.try_result().unwrap().is_ok());
    assert_eq!(
        endpoint.cancelled.get(),
        1,
        "the attempt under way is cancelled"
    );
    assert!(waiter.try_result().unwrap().unwrap_err().is_cancelled());
    assert!(!service.running());
    assert!(
        service
            .when_connected()
            .try_result()
            .unwrap()
            .unwrap_err()
            .is_cancelled()
    );

    // Stopped while waiting to retry: no attempt comes.
    service.start_service().unwrap();
    endpoint.attempts.borrow_mut().clear();
    let (_, d) = {
        service.stop_service();
        service.start_service().unwrap();
        endpoint.attempts.borrow_mut().remove(0)
    };
    d.errback(Failure::msg("refused")).unwrap();
    assert!(service.stop_service().try_result().unwrap().is_ok());
    clock.advance(Duration::from_secs(3600));
    assert_eq!(endpoint.pending(), 0, "the retry was cancelled");
}

#[test]
fn stopping_a_connected_client_closes_and_waits_for_the_close() {
    let (_clock, endpoint, service, _) = client_on_clock(Backoff::default());
    service.start_service().unwrap();
    let mut connection = endpoint.accept();
    let stopped = service.stop_service();
    assert!(
        connection.transport.disconnecting(),
        "the connection is closed"
    );
    assert!(!stopped.called(), "until it is gone");
    connection
        .protocol
        .connection_lost(&twistor::CloseReason::Done);
    assert!(stopped.try_result().unwrap().is_ok());
    assert_eq!(endpoint.pending(), 0, "no reconnection after a stop");
}

#[test]
fn client_service_gives_up_after_max_retries() {
    let (clock, endpoint, service, _) =
        client_on_clock(Backoff::default().jitter(0.0).max_retries(1));
    service.start_service().unwrap();
    let waiter = service.when_connected();
    endpoint.refuse();
    clock.advance(Duration::from_secs(3));
    endpoint.refuse();
    assert!(waiter.try_result().unwrap().is_err());
    clock.advance(Duration::from_secs(3600));
    assert_eq!(endpoint.pending(), 0);
    assert!(service.when_connected().called(), "given up: fails at once");
}

// ---- Over real sockets -----------------------------------------------------------------

/// A server protocol that says hello and keeps its transport where the test can cut it.
struct Greeter {
    connections: Rc<RefCell<Vec<Transport>>>,
}

impl Protocol for Greeter {
    fn connection_made(&mut self, transport: &Transport) {
        self.connections.borrow_mut().push(transport.clone());
        transport.write(b"hi\n");
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

/// A client protocol that records each greeting, and uses a per-connection timer (which
/// must find it through the service's watcher).
struct Listener {
    heard: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Listener {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let text = String::from_utf8_lossy(data).into_owned();
        transport
            .call_later(Duration::ZERO, move |me: &mut Listener, _t| {
                me.heard.borrow_mut().push(text);
            })
            .unwrap();
    }
}

#[test]
fn client_service_keeps_a_connection_up_across_server_restarts() {
    let reactor = twistor_testing::reactor();
    let connections: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let c = connections.clone();
    let server_factory: Rc<dyn Factory> = factory(move |_| Greeter {
        connections: c.clone(),
    });
    let first = StreamServerEndpointService::new(
        server_from_string(&reactor, "tcp:0:interface=127.0.0.1").unwrap(),
        server_factory.clone(),
    );
    first.start_service().unwrap();
    let port = match first.port().unwrap().host() {
        Address::Tcp(addr) => addr.port(),
        other => panic!("not TCP: {other:?}"),
    };

    let heard: Rc<RefCell<Vec<String>>> = Rc::default();
    let h = heard.clone();
    let client = Rc::new(
        ClientService::new(
            reactor.clone(),
            client_from_string(&reactor, &format!("tcp:127.0.0.1:{port}")).unwrap(),
            factory(move |_| Listener { heard: h.clone() }),
        )
        .with_backoff(
            Backoff::default()
                .initial_delay(0.01)
                .factor(1.5)
                .max_delay(0.05),
        ),
    );
    client.start_service().unwrap();

    let r = reactor.clone();
    let (cl, conns) = (client.clone(), connections.clone());
    let (first, heard_in) = (Rc::new(first), heard.clone());
    let outcome = reactor.run_until(async move {
        let mut server = first;
        let mut peers = Vec::new();
        for round in 0..3 {
            let transport = cl.when_connected().await?;
            peers.push(transport.peer().to_string());
            while heard_in.borrow().len() <= round {
                twistor::task::sleep(&r, Duration::from_millis(5)).await?;
            }
            // The server goes away: stop listening, cut its connections.
            server.stop_service().await?;
            for t in conns.borrow_mut().drain(..) {
                t.abort_connection();
            }
            while cl.transport().is_some() {
                twistor::task::sleep(&r, Duration::from_millis(5)).await?;
            }
            // Down for a while: attempts are refused and retried.
            twistor::task::sleep(&r, Duration::from_millis(100)).await?;
            assert!(cl.failures() >= 2, "refused attempts counted");
            let again = StreamServerEndpointService::new(
                server_from_string(&r, &format!("tcp:{port}:interface=127.0.0.1")).unwrap(),
                server_factory.clone(),
            );
            again.start_service()?;
            server = Rc::new(again);
        }
        let transport = cl.when_connected().await?;
        peers.push(transport.peer().to_string());
        while heard_in.borrow().len() < 4 {
            twistor::task::sleep(&r, Duration::from_millis(5)).await?;
        }
        cl.stop_service().await?;
        server.stop_service().await?;
        Ok::<_, Failure>(peers)
    });
    let peers = outcome.unwrap().unwrap();
    assert_eq!(peers.len(), 4, "connected four times: {peers:?}");
    assert!(
        peers.iter().all(|p| p.ends_with(&format!(":{port}"))),
        "{peers:?}"
    );
    assert_eq!(heard.borrow().len(), 4, "{:?}", heard.borrow());
    assert!(heard.borrow().iter().all(|h| h == "hi\n"));
}

#[test]
fn stopping_the_reactor_stops_the_services_and_waits_for_them() {
    let reactor = twistor_testing::reactor();
    let root = Rc::new(MultiService::new());
    let stops = Rc::new(Cell::new(0));
    let s = stops.clone();
    let r = reactor.clone();
    // A drain that still counts one connection for 50 ms of real time.
    let deadline = reactor.seconds() + 0.05;
    let open = move || {
        s.set(s.get() + 1);
        usize::from(r.seconds() < deadline)
    };
    root.add(Rc::new(DrainService::new(
        reactor.clone(),
        Duration::from_secs(10),
        open,
    )))
    .unwrap();
    let listen = StreamServerEndpointService::new(
        server_from_string(&reactor, "tcp:0:interface=127.0.0.1").unwrap(),
        factory(|_| Greeter {
            connections: Rc::default(),
        }),
    );
    root.add_named("listen", Rc::new(listen)).unwrap();
    application::attach(&reactor, root.clone()).unwrap();
    let port = root
        .get::<StreamServerEndpointService>("listen")
        .unwrap()
        .port()
        .unwrap();
    assert!(port.listening());
    reactor.call_soon({
        let r = reactor.clone();
        move || r.stop()
    });
    reactor.run().unwrap();
    assert!(!root.running());
    assert!(!port.listening(), "the port stopped listening");
    assert!(stops.get() >= 2, "the drain counted until nothing was open");
    assert!(
        reactor.seconds() >= deadline,
        "the shutdown waited for the drain"
    );
}

#[test]
fn a_port_in_use_fails_the_start_and_names_the_address() {
    let reactor = twistor_testing::reactor();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let root = MultiService::new();
    let listen = StreamServerEndpointService::new(
        server_from_string(&reactor, &format!("tcp:{port}:interface=127.0.0.1")).unwrap(),
        factory(|_| Greeter {
            connections: Rc::default(),
        }),
    );
    root.add_named("web", Rc::new(listen)).unwrap();
    let error = application::attach(&reactor, Rc::new(root)).unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("starting service \"web\""), "{text}");
}

#[test]
fn a_connection_counts_once_prepared_and_a_failed_preparation_retries() {
    let prepared: Rc<RefCell<Vec<Deferred<()>>>> = Rc::default();
    let clock = Clock::new();
    let endpoint = FakeEndpoint::default();
    let p = prepared.clone();
    let service = ClientService::new(
        clock.clone(),
        Box::new(endpoint.clone()),
        factory(|_| Counted {
            made: Rc::default(),
        }),
    )
    .with_backoff(
        Backoff::default()
            .initial_delay(1.0)
            .factor(1.0)
            .jitter(0.0),
    )
    .with_prepare(move |transport| {
        transport.write(b" login");
        let d = Deferred::new();
        p.borrow_mut().push(d.clone());
        d
    });
    service.start_service().unwrap();
    let connected = service.when_connected();
    let mut first = endpoint.accept();
    assert_eq!(
        first.transport.value(),
        b"hello login",
        "prepared after connection_made"
    );
    assert!(
        !connected.called(),
        "not connected before the preparation succeeds"
    );
    assert!(service.transport().is_none());

    // The preparation fails: the connection is closed and retried.
    let d = prepared.borrow_mut().remove(0);
    d.errback(Failure::msg("login refused")).unwrap();
    assert!(first.transport.aborted());
    first.protocol.connection_lost(&twistor::CloseReason::Done);
    assert!(!connected.called());
    assert_eq!(service.failures(), 1);
    clock.advance(Duration::from_secs(1));
    let second = endpoint.accept();
    let d = prepared.borrow_mut().remove(0);
    d.callback(()).unwrap();
    let transport = connected.try_result().unwrap().unwrap();
    assert!(transport.ptr_eq(&second.transport.transport()));
    assert_eq!(service.failures(), 0);
}

#[test]
fn started_again_while_closing_it_connects_once_the_old_connection_is_gone() {
    let (_clock, endpoint, service, _) = client_on_clock(Backoff::default());
    service.start_service().unwrap();
    let mut first = endpoint.accept();
    let stopped = service.stop_service();
    service.start_service().unwrap();
    assert!(service.running(), "a restart is pending");
    let waiter = service.when_connected();
    assert_eq!(
        endpoint.pending(),
        0,
        "not before the old connection is gone"
    );
    first.protocol.connection_lost(&twistor::CloseReason::Done);
    assert!(stopped.try_result().unwrap().is_ok());
    assert_eq!(endpoint.pending(), 1, "then it connects again");
    let second = endpoint.accept();
    assert!(
        waiter
            .try_result()
            .unwrap()
            .unwrap()
            .ptr_eq(&second.transport.transport())
    );
}

#[test]
fn stopping_while_preparing_cancels_the_preparation() {
    let prepared: Rc<RefCell<Option<Deferred<()>>>> = Rc::default();
    let cancelled = Rc::new(Cell::new(false));
    let clock = Clock::new();
    let endpoint = FakeEndpoint::default();
    let (p, c) = (prepared.clone(), cancelled.clone());
    let service = ClientService::new(
        clock.clone(),
        Box::new(endpoint.clone()),
        factory(|_| Counted {
            made: Rc::default(),
        }),
    )
    .with_prepare(move |_| {
        let c = c.clone();
        let d = Deferred::with_canceller(move |d: &Deferred<()>| {
            c.set(true);
            let _ = d.errback(DeferredError::Cancelled);
        });
        *p.borrow_mut() = Some(d.clone());
        d
    });
    service.start_service().unwrap();
    let waiter = service.when_connected();
    let mut connection = endpoint.accept();
    let stopped = service.stop_service();
    assert!(cancelled.get(), "the preparation is cancelled");
    assert!(connection.transport.disconnecting());
    assert!(waiter.try_result().unwrap().unwrap_err().is_cancelled());
    connection
        .protocol
        .connection_lost(&twistor::CloseReason::Done);
    assert!(stopped.try_result().unwrap().is_ok());
    clock.advance(Duration::from_secs(3600));
    assert_eq!(endpoint.pending(), 0);
}

#[test]
fn an_unbounded_backoff_never_overflows_the_timer() {
    let backoff = Backoff::default()
        .jitter(0.0)
        .factor(10.0)
        .max_delay(f64::INFINITY);
    let (clock, endpoint, service, _) = client_on_clock(backoff);
    service.start_service().unwrap();
    for _ in 0..400 {
        endpoint.refuse();
        clock.advance(Duration::from_secs(366 * 86400));
        assert_eq!(endpoint.pending(), 1, "retried within a year");
    }
}

#[test]
fn a_service_only_the_reactor_holds_is_kept_until_it_has_stopped() {
    let reactor = twistor_testing::reactor();
    let server = StreamServerEndpointService::new(
        server_from_string(&reactor, "tcp:0:interface=127.0.0.1").unwrap(),
        factory(|_| Greeter {
            connections: Rc::default(),
        }),
    );
    server.start_service().unwrap();
    let port = server.port().unwrap().port();
    let heard: Rc<RefCell<Vec<String>>> = Rc::default();
    let h = heard.clone();
    let client = ClientService::new(
        reactor.clone(),
        client_from_string(&reactor, &format!("tcp:127.0.0.1:{port}")).unwrap(),
        factory(move |_| Listener { heard: h.clone() }),
    );
    // The reactor holds the only reference: its stop must still complete (the closing
    // connection reports to the service, which must be alive to fire its stop).
    application::attach(&reactor, Rc::new(client)).unwrap();
    let r = reactor.clone();
    let stop_once_heard = twistor::task::LoopingCall::new(reactor.clone(), move || {
        if !heard.borrow().is_empty() {
            r.stop();
        }
    });
    stop_once_heard
        .start(Duration::from_millis(5), false)
        .unwrap();
    reactor.run().unwrap();
}
