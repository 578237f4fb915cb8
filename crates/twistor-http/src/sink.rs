//! Where an incoming body goes: the state a server channel keeps for a request body and a
//! client connection keeps for a response body, with the moves both make.
//!
//! A body is *unclaimed* until its handler or caller hands over a [`BodyReceiver`]; reading
//! waits meanwhile. A body that ends before anyone asks keeps its end for the receiver that
//! comes later. The receiver is taken out of the sink while it is called, so it may call
//! back into the connection.

use http::HeaderMap;

use crate::body::BodyReceiver;
use crate::error::Error;

/// The end of a body: its trailers, or why it was cut short.
pub(crate) type BodyEnd = Result<HeaderMap, Error>;

/// The state of one incoming body.
#[derive(Default)]
pub(crate) enum Sink {
    /// No body yet (no request, or no response head).
    #[default]
    Idle,
    /// Nobody asked for it yet: reading waits.
    Unclaimed,
    /// Going to a receiver (`None` while it is being called).
    Receiver(Option<Box<dyn BodyReceiver>>),
    /// Nobody will ask: read and dropped (a server's response finished first).
    Discard,
    /// The body ended before anyone asked for it.
    Ended(Option<BodyEnd>),
    /// Delivered in full, or abandoned.
    Done,
}

impl Sink {
    /// The receiver to hand a chunk of data to, taken out until [`put_back`](Sink::put_back).
    pub(crate) fn take_receiver(&mut self) -> Option<Box<dyn BodyReceiver>> {
        match self {
            Sink::Receiver(r) => r.take(),
            _ => None,
        }
    }

    /// Returns a receiver taken with [`take_receiver`](Sink::take_receiver), unless the
    /// body has moved on meanwhile.
    pub(crate) fn put_back(&mut self, receiver: Box<dyn BodyReceiver>) {
        if let Sink::Receiver(slot @ None) = self {
            *slot = Some(receiver);
        }
    }

    /// The body ended with `end`: the receiver to tell, or the end kept for a receiver
    /// that comes later.
    pub(crate) fn end(&mut self, end: BodyEnd) -> Option<(Box<dyn BodyReceiver>, BodyEnd)> {
        match std::mem::take(self) {
            Sink::Receiver(r) => {
                *self = Sink::Done;
                r.map(|r| (r, end))
            }
            Sink::Unclaimed => {
                *self = Sink::Ended(Some(end));
                None
            }
            Sink::Discard => {
                *self = Sink::Done;
                None
            }
            other => {
                *self = other;
                None
            }
        }
    }

    /// `receiver` asks for the body. `None`: it is installed and reading can go on;
    /// otherwise the receiver and what to tell it now (the end it missed, or an error).
    pub(crate) fn claim(
        &mut self,
        receiver: Box<dyn BodyReceiver>,
    ) -> Option<(Box<dyn BodyReceiver>, BodyEnd)> {
        match self {
            Sink::Unclaimed => {
                *self = Sink::Receiver(Some(receiver));
                None
            }
            Sink::Ended(end) => {
                let end = end.take().unwrap_or_else(|| Ok(HeaderMap::new()));
                *self = Sink::Done;
                Some((receiver, end))
            }
            Sink::Discard => Some((
                receiver,
                Err(Error::InvalidState(
                    "the body was dropped: the response finished first",
                )),
            )),
            _ => Some((
                receiver,
                Err(Error::InvalidState("the body is already being delivered")),
            )),
        }
    }

    /// Whether reading waits for someone to claim the body.
    pub(crate) fn unclaimed(&self) -> bool {
        matches!(self, Sink::Unclaimed)
    }

    /// Whether a receiver is installed (possibly being called right now).
    pub(crate) fn receiving(&self) -> bool {
        matches!(self, Sink::Receiver(_))
    }
}
