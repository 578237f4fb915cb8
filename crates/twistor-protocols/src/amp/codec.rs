//! AMP boxes on the wire: keys and values with 16-bit big-endian length prefixes, a box
//! ended by an empty key.

use std::collections::BTreeMap;

use crate::error::Error;

/// The longest key, in bytes (Twisted's `MAX_KEY_LENGTH`).
pub const MAX_KEY_LENGTH: usize = 255;

/// The longest value, in bytes (Twisted's `MAX_VALUE_LENGTH`).
pub const MAX_VALUE_LENGTH: usize = 65_535;

/// One AMP message: a map from byte-string keys to byte-string values (Twisted's
/// `AmpBox`). Keys are kept sorted, so encoding is deterministic and matches Twisted's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmpBox {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl AmpBox {
    /// An empty box.
    pub fn new() -> AmpBox {
        AmpBox::default()
    }

    /// Sets `key` to `value`, returning the old value.
    pub fn insert(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        self.entries.insert(key.into(), value.into())
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries.remove(key)
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.entries.contains_key(key)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// How many entries the box has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the box is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The wire encoding; an error names a key or value over the limits (nothing is
    /// truncated).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the wire encoding to `out` (on error, `out` is unchanged).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        for (k, v) in &self.entries {
            check_key(k)?;
            if v.len() > MAX_VALUE_LENGTH {
                return Err(Error::AmpValueTooLong {
                    key: String::from_utf8_lossy(k).into_owned(),
                    length: v.len(),
                });
            }
        }
        for (k, v) in &self.entries {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v);
        }
        out.extend_from_slice(&[0, 0]);
        Ok(())
    }
}

pub(crate) fn check_key(k: &[u8]) -> Result<(), Error> {
    if k.is_empty() || k.len() > MAX_KEY_LENGTH {
        return Err(Error::AmpKeyTooLong {
            key: String::from_utf8_lossy(&k[..k.len().min(40)]).into_owned(),
            length: k.len(),
        });
    }
    Ok(())
}

/// Decodes a stream of boxes: the sans-IO core of the AMP protocol. Feed bytes, then
/// [`poll_box`](BoxDecoder::poll_box) until `Ok(None)`; an error (a key over 255 bytes) breaks the stream for good.
#[derive(Default)]
pub struct BoxDecoder {
    buf: Vec<u8>,
    pos: usize,
    current: AmpBox,
    key: Option<Vec<u8>>,
    broken: bool,
}

impl BoxDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> BoxDecoder {
        BoxDecoder::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.broken {
            return;
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete box, `Ok(None)` if more bytes are needed.
    pub fn poll_box(&mut self) -> Result<Option<AmpBox>, Error> {
        if self.broken {
            return Ok(None);
        }
        loop {
            let rest = &self.buf[self.pos..];
            if rest.len() < 2 {
                return Ok(None);
            }
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            if self.key.is_none() && len > MAX_KEY_LENGTH {
                self.broken = true;
                return Err(Error::AmpKeyTooLong {
                    key: String::from_utf8_lossy(&rest[2..rest.len().min(42)]).into_owned(),
                    length: len,
                });
            }
            if rest.len() < 2 + len {
                return Ok(None);
            }
            let bytes = rest[2..2 + len].to_vec();
            self.pos += 2 + len;
            match self.key.take() {
                Some(key) => {
                    self.current.insert(key, bytes);
                }
                None if len == 0 => return Ok(Some(std::mem::take(&mut self.current))),
                None => self.key = Some(bytes),
            }
        }
    }

    /// Decodes every box of a complete byte string (AMP's `AmpList` values).
    pub fn decode_all(data: &[u8]) -> Result<Vec<AmpBox>, Error> {
        let mut decoder = BoxDecoder::new();
        decoder.feed(data);
        let mut boxes = Vec::new();
        while let Some(b) = decoder.poll_box()? {
            boxes.push(b);
        }
        if decoder.pos != decoder.buf.len() {
            return Err(Error::AmpProtocol(
                "trailing bytes after the last box".into(),
            ));
        }
        Ok(boxes)
    }
}
