//! Framing: lines, netstrings, length-prefixed strings, and streaming files (Twisted's
//! `twisted.protocols.basic`).
//!
//! Each framing is a sans-IO decoder ([`LineBuffer`], [`NetstringDecoder`],
//! [`PrefixDecoder`]) and a [`Protocol`](twistor::Protocol) that feeds it and calls a
//! handler trait ([`LineHandler`], [`LineOnlyHandler`], [`StringHandler`]).

mod file_sender;
mod line;
mod line_only;
mod strings;

pub use file_sender::{CHUNK_SIZE, FileSender, Transform};
pub use line::{
    DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH, Frame, LineBuffer, LineControl, LineHandler,
    LineReceiver, LineSender, Lines,
};
pub use line_only::{LineOnlyHandler, LineOnlyReceiver, LineWriter};
pub use strings::{
    DEFAULT_MAX_STRING_LENGTH, Decoded, Framing, Int8StringReceiver, Int16StringReceiver,
    Int32StringReceiver, IntNStringReceiver, NetstringDecoder, NetstringReceiver, PrefixDecoder,
    StringHandler, Strings,
};
