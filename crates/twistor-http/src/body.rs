//! Message bodies as they stream: the [`BodyReceiver`] that the server hands request bodies
//! to and the client hands response bodies to, and [`collect`], which gathers one up.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use twistor::defer::{Deferred, Failure};

use crate::Error;

/// Receives a body piece by piece as it arrives (Twisted's body-delivering `IProtocol`).
///
/// [`data_received`](BodyReceiver::data_received) is called for each piece, in order, then
/// [`body_finished`](BodyReceiver::body_finished) exactly once: with the trailer fields
/// (empty unless the body was chunked and had some), or with the error that cut it short.
/// To slow the sender down, pause the source (`Request::pause_body` on a server,
/// `ResponseBody::pause` on a client): pieces stop coming until it is resumed.
pub trait BodyReceiver: 'static {
    /// A piece of the body.
    fn data_received(&mut self, data: Bytes);

    /// The body is complete (`Ok` with its trailers) or was cut short (`Err`).
    fn body_finished(&mut self, result: Result<HeaderMap, Error>);
}

/// A receiver made of two closures: one for each piece, one for the end.
///
/// ```
/// use twistor_http::body::{BodyReceiver, from_fn};
/// let mut r = from_fn(|piece| println!("{} bytes", piece.len()), |end| println!("{end:?}"));
/// r.data_received(twistor_http::Bytes::from_static(b"hi"));
/// ```
pub fn from_fn<D, F>(data: D, finished: F) -> FnReceiver<D, F>
where
    D: FnMut(Bytes) + 'static,
    F: FnMut(Result<HeaderMap, Error>) + 'static,
{
    FnReceiver { data, finished }
}

/// The receiver [`from_fn`] makes.
pub struct FnReceiver<D, F> {
    data: D,
    finished: F,
}

impl<D, F> BodyReceiver for FnReceiver<D, F>
where
    D: FnMut(Bytes) + 'static,
    F: FnMut(Result<HeaderMap, Error>) + 'static,
{
    fn data_received(&mut self, data: Bytes) {
        (self.data)(data)
    }

    fn body_finished(&mut self, result: Result<HeaderMap, Error>) {
        (self.finished)(result)
    }
}

/// A receiver that gathers the whole body, and the Deferred that fires with it (Twisted's
/// `readBody`). A body longer than `max` bytes fails it with [`Error::BodyTooLarge`] and
/// the rest is dropped, so memory stays bounded.
///
/// ```
/// use twistor_http::body::{BodyReceiver, collect};
/// use twistor_http::Bytes;
///
/// let (mut receiver, body) = collect(1024);
/// receiver.data_received(Bytes::from_static(b"hello "));
/// receiver.data_received(Bytes::from_static(b"world"));
/// receiver.body_finished(Ok(Default::default()));
/// assert_eq!(body.try_result().unwrap().unwrap(), "hello world");
/// ```
pub fn collect(max: u64) -> (Collector, Deferred<Bytes>) {
    let deferred = Deferred::new();
    let collector = Collector {
        parts: Parts::None,
        len: 0,
        max,
        deferred: Some(deferred.clone()),
    };
    (collector, deferred)
}

/// The receiver [`collect`] makes.
pub struct Collector {
    parts: Parts,
    len: u64,
    max: u64,
    deferred: Option<Deferred<Bytes>>,
}

/// A body of one piece is kept as that piece, without copying.
enum Parts {
    None,
    One(Bytes),
    Many(BytesMut),
}

impl BodyReceiver for Collector {
    fn data_received(&mut self, data: Bytes) {
        if self.deferred.is_none() || data.is_empty() {
            return;
        }
        self.len += data.len() as u64;
        if self.len > self.max {
            self.parts = Parts::None;
            if let Some(d) = self.deferred.take() {
                let _ = d.errback(Failure::new(Error::BodyTooLarge));
            }
            return;
        }
        self.parts = match std::mem::replace(&mut self.parts, Parts::None) {
            Parts::None => Parts::One(data),
            Parts::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + data.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                Parts::Many(all)
            }
            Parts::Many(mut all) => {
                all.extend_from_slice(&data);
                Parts::Many(all)
            }
        };
    }

    fn body_finished(&mut self, result: Result<HeaderMap, Error>) {
        let Some(d) = self.deferred.take() else {
            return;
        };
        let body = match std::mem::replace(&mut self.parts, Parts::None) {
            Parts::None => Bytes::new(),
            Parts::One(b) => b,
            Parts::Many(b) => b.freeze(),
        };
        let _ = match result {
            Ok(_) => d.callback(body),
            Err(e) => d.errback(Failure::new(e)),
        };
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Dropped before the end (the connection went away without a word): fail rather
        // than leave the Deferred waiting forever.
        if let Some(d) = self.deferred.take() {
            let _ = d.errback(Failure::new(Error::UnexpectedEof));
        }
    }
}
