//! The wrapping factory that reads a PROXY header before the real protocol starts.

use std::os::fd::OwnedFd;
use std::rc::Rc;

use twistor::{Address, CloseReason, Factory, Protocol, Transport};

use super::header::{self, ProxyInfo};
use crate::policies::{Connection, Policy, ProtocolWrapper};

/// The most header bytes held before giving up: the largest version 2 header.
const MAX_HEADER: usize = 16 + u16::MAX as usize;

/// A factory that expects every connection to start with a PROXY header (version 1 or 2),
/// then serves it with the wrapped factory's protocol, which sees the original client in
/// `peer()` (Twisted's `HAProxyWrappingFactory`).
pub struct HAProxyWrappingFactory {
    wrapped: Rc<dyn Factory>,
}

impl HAProxyWrappingFactory {
    /// Wraps `wrapped`.
    pub fn new(wrapped: Rc<dyn Factory>) -> Rc<HAProxyWrappingFactory> {
        Rc::new(HAProxyWrappingFactory { wrapped })
    }
}

impl Factory for HAProxyWrappingFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(HAProxyProtocol {
            wrapped: self.wrapped.clone(),
            state: State::Header(Vec::new()),
        }))
    }

    fn start_factory(&self) {
        twistor::unstable::do_start(&self.wrapped);
    }

    fn stop_factory(&self) {
        twistor::unstable::do_stop(&self.wrapped);
    }

    fn log_prefix(&self) -> &str {
        self.wrapped.log_prefix()
    }

    fn noisy(&self) -> bool {
        self.wrapped.noisy()
    }
}

struct HAProxyProtocol {
    wrapped: Rc<dyn Factory>,
    state: State,
}

enum State {
    /// Waiting for the header; the bytes so far.
    Header(Vec<u8>),
    /// The wrapped protocol runs.
    Running(ProtocolWrapper),
    /// The header was bad, or the factory refused; the connection is closing.
    Closed,
}

/// Shows the wrapped protocol the addresses from the header.
struct Addresses(ProxyInfo);

impl Policy for Addresses {
    fn connection_made(&self, conn: &Connection) {
        conn.set_addresses(self.0.source.clone(), self.0.destination.clone());
    }
}

impl HAProxyProtocol {
    fn fail(&mut self, transport: &Transport, why: &dyn std::fmt::Display) {
        tracing::warn!("{}: {why}; closing the connection", transport.peer());
        self.state = State::Closed;
        transport.abort_connection();
    }
}

impl Protocol for HAProxyProtocol {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let buf = match &mut self.state {
            State::Running(inner) => return inner.data_received(transport, data),
            State::Closed => return,
            State::Header(buf) => {
                buf.extend_from_slice(data);
                std::mem::take(buf)
            }
        };
        let (info, used) = match header::parse(&buf) {
            Ok(Some(parsed)) => parsed,
            Ok(None) if buf.len() <= MAX_HEADER => {
                self.state = State::Header(buf);
                return;
            }
            Ok(None) => return self.fail(transport, &"PROXY header too long"),
            Err(err) => return self.fail(transport, &err),
        };
        let client = info.source.clone().unwrap_or_else(|| transport.peer());
        let Some(inner) = self.wrapped.build_protocol(&client) else {
            tracing::debug!("{client}: refused by the factory");
            self.state = State::Closed;
            transport.lose_connection();
            return;
        };
        let mut wrapper = ProtocolWrapper::new(inner, client, Rc::new(Addresses(info)));
        wrapper.make_connection(transport);
        let rest = &buf[used..];
        if !rest.is_empty() && !transport.disconnecting() {
            wrapper.data_received(transport, rest);
        }
        self.state = State::Running(wrapper);
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        if let State::Running(inner) = &mut self.state {
            inner.connection_lost(reason);
        }
    }

    fn read_connection_lost(&mut self, transport: &Transport) {
        match &mut self.state {
            State::Running(inner) => inner.read_connection_lost(transport),
            _ => transport.lose_connection(),
        }
    }

    fn write_connection_lost(&mut self, transport: &Transport) {
        if let State::Running(inner) = &mut self.state {
            inner.write_connection_lost(transport);
        }
    }

    fn file_descriptor_received(&mut self, transport: &Transport, fd: OwnedFd) {
        if let State::Running(inner) = &mut self.state {
            inner.file_descriptor_received(transport, fd);
        }
    }
}
