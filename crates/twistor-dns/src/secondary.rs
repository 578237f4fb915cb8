//! A secondary server's zones: transferred from a primary by AXFR over TCP, put in the
//! catalog, and kept fresh by the SOA timers (RFC 1034 §4.3.5): every `refresh` seconds the
//! primary's SOA serial is asked for, and the zone transferred again when it is newer
//! (RFC 1982 serial arithmetic); after a failure, tried again every `retry` seconds; a zone
//! not refreshed for `expire` seconds is withdrawn (the server answers SERVFAIL-free
//! REFUSED for it instead of stale data). A NOTIFY from the primary starts a refresh at once.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use twistor::application::Service;
use twistor::defer::{Deferred, Failure};
use twistor::endpoints::{HostnameEndpoint, connect_protocol};
use twistor::protocol::Protocol;
use twistor::{DelayedCall, Reactor, ReactorTime, Transport};

use crate::error::Error;
use crate::proto::authority::Catalog;
use crate::proto::zone::Zone;

/// The most a transfer may bring, in bytes of messages: memory stays bounded whatever a
/// primary sends.
pub const MAX_TRANSFER_BYTES: usize = 256 << 20;

/// The most records a transfer may bring (decoded records cost far more than their
/// compressed wire form).
pub const MAX_TRANSFER_RECORDS: usize = 1_000_000;

/// How long a transfer or SOA query may take before it is given up.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Timers used before the first SOA is known, and bounds on the SOA's.
const FIRST_RETRY: Duration = Duration::from_secs(10);
const MIN_TIMER: Duration = Duration::from_secs(5);

/// Called with the zone's name after a transfer.
type TransferHook = Rc<dyn Fn(&Name)>;

/// One zone served as a secondary. Start it as a [`Service`] (it transfers the zone at
/// once, then keeps it fresh), or drive it with [`refresh`](Secondary::refresh).
pub struct Secondary {
    reactor: Reactor,
    /// The clock of the SOA timers (the reactor's, or a test's).
    clock: Rc<dyn ReactorTime>,
    catalog: Rc<RefCell<Catalog>>,
    zone: Name,
    primary: SocketAddr,
    /// The serial held, once transferred.
    serial: Cell<Option<u32>>,
    /// When the zone was last confirmed fresh (reactor seconds), for `expire`.
    fresh_at: Cell<f64>,
    timer: RefCell<Option<DelayedCall>>,
    running: Cell<bool>,
    /// A refresh under way (a second request joins it).
    busy: RefCell<Option<Vec<Deferred<bool>>>>,
    /// A NOTIFY came during a refresh: refresh once more after it.
    again: Cell<bool>,
    /// Called after each transfer (to notify our own secondaries).
    on_transfer: RefCell<Option<TransferHook>>,
    me: Weak<Secondary>,
}

impl Secondary {
    /// A secondary for `zone`, transferred from `primary` into `catalog`.
    pub fn new(
        reactor: &Reactor,
        catalog: Rc<RefCell<Catalog>>,
        zone: Name,
        primary: SocketAddr,
    ) -> Rc<Secondary> {
        Secondary::with_clock(reactor, Rc::new(reactor.clone()), catalog, zone, primary)
    }

    /// [`new`](Self::new) with another clock for the SOA timers (tests pass the fake
    /// `Clock`); transfers still run on `reactor`.
    pub fn with_clock(
        reactor: &Reactor,
        clock: Rc<dyn ReactorTime>,
        catalog: Rc<RefCell<Catalog>>,
        zone: Name,
        primary: SocketAddr,
    ) -> Rc<Secondary> {
        let mut zone = zone;
        zone.set_fqdn(true);
        Rc::new_cyclic(|me| Secondary {
            reactor: reactor.clone(),
            clock,
            catalog,
            zone,
            primary,
            serial: Cell::new(None),
            fresh_at: Cell::new(0.0),
            timer: RefCell::new(None),
            running: Cell::new(false),
            busy: RefCell::new(None),
            again: Cell::new(false),
            on_transfer: RefCell::new(None),
            me: me.clone(),
        })
    }

    /// The zone's name.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// Calls `f` with the zone's name after each transfer has put a new serial in the
    /// catalog (`twist dns --notify` tells its own secondaries then).
    pub fn on_transfer(&self, f: impl Fn(&Name) + 'static) {
        *self.on_transfer.borrow_mut() = Some(Rc::new(f));
    }

    /// The primary transferred from.
    pub fn primary(&self) -> SocketAddr {
        self.primary
    }

    /// A NOTIFY for the zone came from `source`: refreshes now, or once more after the
    /// refresh under way (however many NOTIFYs come meanwhile), if `source` is the
    /// primary; ignores it otherwise (RFC 1996 §3.10). Says whether it was heeded.
    pub fn notified(&self, source: IpAddr) -> bool {
        if source.to_canonical() != self.primary.ip().to_canonical() {
            tracing::warn!(
                "NOTIFY for {} from {source}, not its primary: ignored",
                self.zone
            );
            return false;
        }
        if self.busy.borrow().is_some() {
            self.again.set(true);
        } else {
            // A failure is logged (and retried) by `settle`.
            self.refresh().consume(|_| ());
        }
        true
    }

    /// The serial held (`None` before the first transfer).
    pub fn serial(&self) -> Option<u32> {
        self.serial.get()
    }

    /// Asks the primary for its SOA serial and transfers the zone if it is newer than the
    /// one held (or none is held). Fires with whether a transfer happened. A refresh asked
    /// for while one is under way joins it.
    pub fn refresh(&self) -> Deferred<bool> {
        let out = Deferred::new();
        if let Some(waiting) = self.busy.borrow_mut().as_mut() {
            waiting.push(out.clone());
            return out;
        }
        *self.busy.borrow_mut() = Some(vec![out.clone()]);
        let me = self.me.clone();
        let held = self.serial.get();
        let reactor = self.reactor.clone();
        let primary = self.primary;
        let zone = self.zone.clone();
        let check = match held {
            None => Deferred::succeeded(None),
            Some(_) => exchange(
                &reactor,
                primary,
                &query(&zone, RecordType::SOA),
                Until::One,
            )
            .map(|messages| messages.first().and_then(soa_serial)),
        };
        let step = check.and_then_deferred(move |theirs| {
            let newer = match (held, theirs) {
                (None, _) => true,
                (Some(ours), Some(theirs)) => serial_newer(theirs, ours),
                (Some(_), None) => {
                    return Deferred::failed(Failure::new(Error::Message(format!(
                        "{primary} answered no SOA for {zone}"
                    ))));
                }
            };
            if !newer {
                return Deferred::succeeded(false);
            }
            exchange(
                &reactor,
                primary,
                &query(&zone, RecordType::AXFR),
                Until::SecondSoa,
            )
            .and_then(move |messages| match me.upgrade() {
                Some(me) => me.install(messages).map(|()| true),
                None => Ok(false),
            })
        });
        let me = self.me.clone();
        step.consume(move |result| {
            let Some(me) = me.upgrade() else {
                return;
            };
            let waiting = me.busy.borrow_mut().take().unwrap_or_default();
            me.settle(&result);
            for d in waiting {
                let _ = d.resolve(result.clone());
            }
            if me.again.replace(false) {
                me.refresh().consume(|_| ());
            }
        });
        out
    }

    /// Puts a transfer's records in the catalog as the zone.
    fn install(&self, messages: Vec<Message>) -> Result<(), Failure> {
        let mut records: Vec<Record> = messages.into_iter().flat_map(|m| m.answers).collect();
        // The closing SOA repeats the first.
        if records.len() > 1 {
            records.pop();
        }
        let serial = records.first().and_then(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        });
        let zone = Zone::from_records(self.zone.clone(), records).map_err(Failure::new)?;
        tracing::info!(
            "transferred {} from {} (serial {})",
            self.zone,
            self.primary,
            serial.unwrap_or_default()
        );
        self.catalog.borrow_mut().insert(zone);
        self.serial.set(serial);
        let hook = self.on_transfer.borrow().clone();
        if let Some(hook) = hook {
            hook(&self.zone);
        }
        Ok(())
    }

    /// After a refresh: note freshness and set the next timer from the SOA.
    fn settle(&self, result: &Result<bool, Failure>) {
        let now = self.clock.seconds();
        let timers = self.catalog.borrow().zone(&self.zone).map(soa_timers);
        let next = match result {
            Ok(_) => {
                self.fresh_at.set(now);
                timers.map_or(FIRST_RETRY, |t| t.refresh)
            }
            Err(failure) => {
                tracing::warn!("refreshing {} from {}: {failure}", self.zone, self.primary);
                if let Some(t) = timers
                    && now - self.fresh_at.get() >= t.expire.as_secs_f64()
                {
                    tracing::warn!("{} expired: no longer served", self.zone);
                    self.catalog.borrow_mut().remove(&self.zone);
                    self.serial.set(None);
                }
                timers.map_or(FIRST_RETRY, |t| t.retry)
            }
        };
        self.schedule(next.max(MIN_TIMER));
    }

    fn schedule(&self, after: Duration) {
        if !self.running.get() {
            return;
        }
        let me = self.me.clone();
        let call = self.clock.call_later(after, move || {
            if let Some(me) = me.upgrade() {
                // A failure is logged (and retried) by `settle`.
                me.refresh().consume(|_| ());
            }
        });
        if let Some(old) = self.timer.borrow_mut().replace(call) {
            let _ = old.cancel();
        }
    }
}

impl Service for Secondary {
    fn start_service(&self) -> Result<(), Failure> {
        if !self.running.replace(true) {
            // A failure is logged (and retried) by `settle`.
            self.refresh().consume(|_| ());
        }
        Ok(())
    }

    fn stop_service(&self) -> Deferred<()> {
        self.running.set(false);
        if let Some(call) = self.timer.borrow_mut().take() {
            let _ = call.cancel();
        }
        Deferred::succeeded(())
    }

    fn running(&self) -> bool {
        self.running.get()
    }
}

/// The SOA timers of a zone.
#[derive(Debug, Clone, Copy)]
struct Timers {
    refresh: Duration,
    retry: Duration,
    expire: Duration,
}

fn soa_timers(zone: &Zone) -> Timers {
    let secs = |v: u32| Duration::from_secs(u64::from(v));
    Timers {
        refresh: secs(zone.refresh()),
        retry: secs(zone.retry()),
        expire: secs(zone.expire()),
    }
}

/// Whether serial `a` is newer than `b` (RFC 1982 arithmetic).
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

fn soa_serial(message: &Message) -> Option<u32> {
    message.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

fn query(zone: &Name, record_type: RecordType) -> Message {
    let mut message = Message::query();
    message.add_query(Query::query(zone.clone(), record_type));
    message
}

/// When an exchange over TCP is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// After one response.
    One,
    /// When a second SOA closes a zone transfer.
    SecondSoa,
}

/// Sends `query` to `server` over TCP and gathers the responses, checked against the
/// query's id and question.
fn exchange(
    reactor: &Reactor,
    server: SocketAddr,
    query: &Message,
    until: Until,
) -> Deferred<Vec<Message>> {
    let bytes = match query.to_vec() {
        Ok(bytes) => bytes,
        Err(err) => return Deferred::failed(Failure::new(Error::Message(err.to_string()))),
    };
    let done = Deferred::new();
    let client = Exchange {
        query: query.clone(),
        bytes,
        until,
        buffer: Vec::new(),
        received: 0,
        records: 0,
        soas: 0,
        messages: Vec::new(),
        done: done.clone(),
        server,
    };
    let endpoint = HostnameEndpoint::new(reactor, &server.ip().to_string(), server.port())
        .timeout(Some(EXCHANGE_TIMEOUT));
    let d = done.clone();
    // The connection, once made: a timeout closes it (a silent primary would keep it).
    let connection: Rc<RefCell<Option<Transport>>> = Rc::default();
    let c = connection.clone();
    connect_protocol(&endpoint, client).consume(move |connected| match connected {
        Ok(transport) if d.called() => transport.abort_connection(),
        Ok(transport) => *c.borrow_mut() = Some(transport),
        Err(failure) if !d.called() => {
            let _ = d.resolve(Err(failure));
        }
        Err(_) => {}
    });
    let timeout_done = done.clone();
    let call = reactor.call_later(EXCHANGE_TIMEOUT, move || {
        if let Some(transport) = connection.borrow_mut().take() {
            transport.abort_connection();
        }
        if !timeout_done.called() {
            let _ = timeout_done.resolve(Err(Failure::new(Error::Timeout {
                name: format!("the transfer from {server}"),
            })));
        }
    });
    done.add_both(move |r| {
        let _ = call.cancel();
        r
    });
    done
}

struct Exchange {
    query: Message,
    bytes: Vec<u8>,
    until: Until,
    buffer: Vec<u8>,
    received: usize,
    records: usize,
    soas: usize,
    messages: Vec<Message>,
    done: Deferred<Vec<Message>>,
    server: SocketAddr,
}

impl Exchange {
    fn fail(&mut self, transport: &Transport, why: String) {
        transport.abort_connection();
        if !self.done.called() {
            let _ = self.done.resolve(Err(Failure::new(Error::Message(format!(
                "{}: {why}",
                self.server
            )))));
        }
    }

    fn handle(&mut self, transport: &Transport, bytes: &[u8]) {
        let message = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(err) => return self.fail(transport, format!("undecodable response: {err}")),
        };
        if message.metadata.id != self.query.metadata.id
            || message.metadata.message_type != MessageType::Response
        {
            return self.fail(transport, "a response to another query".into());
        }
        if message.metadata.response_code != ResponseCode::NoError {
            return self.fail(
                transport,
                format!("answered {}", message.metadata.response_code),
            );
        }
        if self.messages.is_empty()
            && message.queries.first().map(|q| (q.name(), q.query_type()))
                != self
                    .query
                    .queries
                    .first()
                    .map(|q| (q.name(), q.query_type()))
        {
            return self.fail(transport, "a response for another question".into());
        }
        self.soas += message
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        if self.messages.is_empty()
            && self.until == Until::SecondSoa
            && message.answers.first().map(Record::record_type) != Some(RecordType::SOA)
        {
            return self.fail(
                transport,
                "a transfer that does not start with the SOA".into(),
            );
        }
        self.records += message.answers.len();
        if self.records > MAX_TRANSFER_RECORDS {
            return self.fail(
                transport,
                format!("more than {MAX_TRANSFER_RECORDS} records"),
            );
        }
        self.messages.push(message);
        let complete = match self.until {
            Until::One => true,
            Until::SecondSoa => self.soas >= 2,
        };
        if complete {
            transport.lose_connection();
            let messages = std::mem::take(&mut self.messages);
            if !self.done.called() {
                let _ = self.done.resolve(Ok(messages));
            }
        }
    }
}

impl Protocol for Exchange {
    fn connection_made(&mut self, transport: &Transport) {
        let len = (self.bytes.len() as u16).to_be_bytes();
        transport.write_sequence(&[&len, &self.bytes]);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if self.done.called() {
            transport.abort_connection();
            return;
        }
        self.received += data.len();
        if self.received > MAX_TRANSFER_BYTES {
            return self.fail(transport, format!("more than {MAX_TRANSFER_BYTES} bytes"));
        }
        self.buffer.extend_from_slice(data);
        let mut at = 0;
        while let [hi, lo, ..] = self.buffer[at..] {
            let len = u16::from_be_bytes([hi, lo]) as usize;
            let Some(message) = self.buffer.get(at + 2..at + 2 + len) else {
                break;
            };
            let message = message.to_vec();
            at += 2 + len;
            self.handle(transport, &message);
            if self.done.called() {
                return;
            }
        }
        self.buffer.drain(..at);
    }

    fn connection_lost(&mut self, reason: &twistor::CloseReason) {
        if !self.done.called() {
            let _ = self.done.resolve(Err(Failure::new(Error::Message(format!(
                "{} closed the connection before the end: {reason}",
                self.server
            )))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::serial_newer;

    #[test]
    fn serials_compare_per_rfc_1982() {
        assert!(serial_newer(2, 1));
        assert!(!serial_newer(1, 2));
        assert!(!serial_newer(5, 5));
        assert!(serial_newer(0, u32::MAX), "wraps around");
        assert!(serial_newer(100, u32::MAX - 100));
        assert!(!serial_newer(u32::MAX - 100, 100));
    }
}
