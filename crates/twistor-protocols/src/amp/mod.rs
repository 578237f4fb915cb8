//! AMP, the Asynchronous Messaging Protocol, wire-compatible with Twisted's
//! `twisted.protocols.amp`.
//!
//! Messages are [boxes](AmpBox) of keys and values, each with a 16-bit length prefix (keys
//! of 1 to 255 bytes, values of up to 65,535), a box ended by an empty key. A
//! [`Command`] declares typed arguments and responses ([`ArgType`]: integer, string,
//! unicode, float, boolean, lists of those, lists of boxes) and the error codes its
//! responder may answer with. [`Amp::call_remote`] sends one and returns a Deferred for the
//! typed answer; [`Amp::responder`] answers the peer's.
//!
//! The layers: [`BoxDecoder`] and [`AmpBox`] (the sans-IO wire format), [`Command`]
//! (typed values to boxes and back), [`Amp`] and [`AmpProtocol`] (questions, answers and
//! errors over a connection).

mod codec;
mod command;
mod protocol;

pub use codec::{AmpBox, BoxDecoder, MAX_KEY_LENGTH, MAX_VALUE_LENGTH};
pub use command::{ArgType, Arguments, Command, Param, Value};
pub use protocol::{Amp, AmpProtocol, CommandError, UNHANDLED_ERROR_CODE, UNKNOWN_ERROR_CODE};
