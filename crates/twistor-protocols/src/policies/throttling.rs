//! Bandwidth and connection-count throttling: Twisted's `ThrottlingFactory`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use twistor::reactor::{DelayedCall, ReactorTime};
use twistor::{Address, CloseReason};

use super::wrapper::{Admission, Connection, Policy};

/// Limits for [`Throttling`]; `None` means no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThrottlingOptions {
    /// The most connections at once; more are refused.
    pub max_connections: Option<usize>,
    /// Bytes per second read, over all connections.
    pub read_limit: Option<u64>,
    /// Bytes per second written, over all connections.
    pub write_limit: Option<u64>,
}

/// A policy that limits the bytes read and written per second over all of a factory's
/// connections, and how many connections it serves (Twisted's `ThrottlingFactory`).
///
/// Every second it compares what was read (written) with the limit; if over, it holds
/// every connection's reading (the wrapped protocols' producers) for as long as the excess
/// takes to pay back: `read / limit - 1` seconds. Writes are held only through a producer
/// the wrapped protocol registered.
pub struct Throttling {
    options: ThrottlingOptions,
    state: Rc<State>,
}

struct State {
    clock: Rc<dyn ReactorTime>,
    me: Weak<State>,
    options: ThrottlingOptions,
    conns: RefCell<BTreeMap<u64, Connection>>,
    read_this_second: Cell<u64>,
    written_this_second: Cell<u64>,
    reads_held: Cell<bool>,
    writes_held: Cell<bool>,
    timers: RefCell<Vec<DelayedCall>>,
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Throttling {
    /// Throttles with `options`, timing on `clock`.
    pub fn new(clock: impl ReactorTime + 'static, options: ThrottlingOptions) -> Throttling {
        let clock: Rc<dyn ReactorTime> = Rc::new(clock);
        Throttling {
            options,
            state: Rc::new_cyclic(|me| State {
                clock,
                me: me.clone(),
                options,
                conns: RefCell::new(BTreeMap::new()),
                read_this_second: Cell::new(0),
                written_this_second: Cell::new(0),
                reads_held: Cell::new(false),
                writes_held: Cell::new(false),
                timers: RefCell::new(Vec::new()),
            }),
        }
    }

    /// Whether reading is held now.
    pub fn reads_throttled(&self) -> bool {
        self.state.reads_held.get()
    }

    /// Whether writing is held now.
    pub fn writes_throttled(&self) -> bool {
        self.state.writes_held.get()
    }
}

impl State {
    fn later(&self, delay: Duration, f: impl FnOnce(&State) + 'static) {
        let weak = self.me.clone();
        let call = self.clock.call_later_boxed(
            delay,
            Box::new(move || {
                if let Some(state) = weak.upgrade() {
                    f(&state);
                }
            }),
        );
        let mut timers = self.timers.borrow_mut();
        timers.retain(|c| c.active());
        timers.push(call);
    }

    fn start(&self) {
        if self.options.read_limit.is_some() {
            self.check(Direction::Read);
        }
        if self.options.write_limit.is_some() {
            self.check(Direction::Write);
        }
    }

    fn stop(&self) {
        for call in self.timers.borrow_mut().drain(..) {
            let _ = call.cancel();
        }
        self.hold(Direction::Read, false);
        self.hold(Direction::Write, false);
        self.read_this_second.set(0);
        self.written_this_second.set(0);
    }

    /// Twisted's `checkReadBandwidth` / `checkWriteBandwidth`, once a second.
    fn check(&self, dir: Direction) {
        let (counter, limit) = match dir {
            Direction::Read => (&self.read_this_second, self.options.read_limit),
            Direction::Write => (&self.written_this_second, self.options.write_limit),
        };
        let Some(limit) = limit else { return };
        let count = counter.replace(0);
        if count > limit && !self.held(dir) {
            self.hold(dir, true);
            let pause = count as f64 / limit.max(1) as f64 - 1.0;
            tracing::info!(
                "throttling {}: {count} bytes in a second (limit {limit}); holding for {pause:.2}s",
                match dir {
                    Direction::Read => "reads",
                    Direction::Write => "writes",
                }
            );
            self.later(Duration::from_secs_f64(pause), move |s| s.hold(dir, false));
        }
        self.later(Duration::from_secs(1), move |s| s.check(dir));
    }

    fn held(&self, dir: Direction) -> bool {
        match dir {
            Direction::Read => self.reads_held.get(),
            Direction::Write => self.writes_held.get(),
        }
    }

    fn hold(&self, dir: Direction, hold: bool) {
        match dir {
            Direction::Read => self.reads_held.set(hold),
            Direction::Write => self.writes_held.set(hold),
        }
        let conns: Vec<Connection> = self.conns.borrow().values().cloned().collect();
        for conn in conns {
            match dir {
                Direction::Read => conn.hold_reading(hold),
                Direction::Write => conn.hold_writing(hold),
            }
        }
    }
}

impl Policy for Throttling {
    fn admit(&self, _addr: &Address, live: usize) -> Admission {
        match self.options.max_connections {
            Some(max) if live >= max => {
                tracing::info!("max connection count ({max}) reached; refusing");
                Admission::Refuse
            }
            _ => Admission::Accept,
        }
    }

    fn connection_made(&self, conn: &Connection) {
        let first = {
            let mut conns = self.state.conns.borrow_mut();
            conns.insert(conn.id(), conn.clone());
            conns.len() == 1
        };
        if first {
            self.state.start();
        }
        if self.state.reads_held.get() {
            conn.hold_reading(true);
        }
        if self.state.writes_held.get() {
            conn.hold_writing(true);
        }
    }

    fn data_received(&self, _conn: &Connection, data: &[u8]) {
        let c = &self.state.read_this_second;
        c.set(c.get() + data.len() as u64);
    }

    fn data_written(&self, _conn: &Connection, data: &[u8]) {
        let c = &self.state.written_this_second;
        c.set(c.get() + data.len() as u64);
    }

    fn connection_lost(&self, conn: &Connection, _reason: &CloseReason) {
        let empty = {
            let mut conns = self.state.conns.borrow_mut();
            conns.remove(&conn.id());
            conns.is_empty()
        };
        if empty {
            self.state.stop();
        }
    }
}
