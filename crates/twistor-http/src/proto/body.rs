//! Body framing, both ways: a decoder for `Content-Length`, chunked and read-until-close
//! bodies, and the matching encoder.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;

use super::Limits;
use super::head::{self, HeadScanner, ScanLimits};
use crate::Error;

/// Longest chunk-size line, extensions included. Real clients send a few bytes; the bound
/// keeps a line that never ends from growing the buffer.
const MAX_CHUNK_LINE: usize = 4096;

/// Most chunk-extension bytes in one body. Extensions are ignored, so a peer sending many
/// would make us work for nothing (hyper bounds them the same way).
const MAX_CHUNK_EXT_TOTAL: usize = 16 * 1024;

/// What one step of body decoding produced.
#[derive(Debug)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// The body is complete; the trailer fields, if any, are here.
    End(HeaderMap),
    /// More bytes are needed.
    Pending,
}

/// Decodes one message body out of the connection's buffer, leaving the bytes after it.
#[derive(Debug)]
pub(crate) enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    UntilClose { received: u64 },
    Finished,
}

impl BodyDecoder {
    pub fn chunked() -> BodyDecoder {
        BodyDecoder::Chunked(ChunkedDecoder {
            state: ChunkState::Size { scanned: 0 },
            received: 0,
            ext_bytes: 0,
        })
    }

    /// Takes the next piece of the body from `buf`. `eof` says the peer has closed.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
        limits: &Limits,
    ) -> Result<Decoded, Error> {
        match self {
            BodyDecoder::Finished => Ok(Decoded::Pending),
            BodyDecoder::Length { remaining: 0 } => {
                *self = BodyDecoder::Finished;
                Ok(Decoded::End(HeaderMap::new()))
            }
            BodyDecoder::Length { remaining } => {
                if buf.is_empty() {
                    return if eof {
                        Err(Error::UnexpectedEof)
                    } else {
                        Ok(Decoded::Pending)
                    };
                }
                let n = take_len(*remaining, buf.len());
                *remaining -= n as u64;
                Ok(Decoded::Data(buf.split_to(n).freeze()))
            }
            BodyDecoder::UntilClose { received } => {
                if buf.is_empty() {
                    if eof {
                        *self = BodyDecoder::Finished;
                        return Ok(Decoded::End(HeaderMap::new()));
                    }
                    return Ok(Decoded::Pending);
                }
                // Hand out the body up to the limit and fail on the byte past it, so the
                // outcome does not depend on how the bytes arrived.
                let room = limits.max_body_size - *received;
                if room == 0 {
                    return Err(Error::BodyTooLarge);
                }
                let n = take_len(room, buf.len());
                *received += n as u64;
                Ok(Decoded::Data(buf.split_to(n).freeze()))
            }
            BodyDecoder::Chunked(chunked) => {
                let decoded = chunked.decode(buf, eof, limits)?;
                if let Decoded::End(_) = decoded {
                    *self = BodyDecoder::Finished;
                }
                Ok(decoded)
            }
        }
    }
}

fn take_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    /// Body bytes announced so far, for `max_body_size`.
    received: u64,
    ext_bytes: usize,
}

#[derive(Debug)]
enum ChunkState {
    /// Reading `chunk-size [chunk-ext] CRLF`; `scanned` bytes of it hold no LF.
    Size {
        scanned: usize,
    },
    Data {
        remaining: u64,
    },
    /// Expecting the CRLF after chunk data.
    DataEnd,
    Trailers(HeadScanner),
}

impl ChunkedDecoder {
    fn decode(&mut self, buf: &mut BytesMut, eof: bool, limits: &Limits) -> Result<Decoded, Error> {
        loop {
            match &mut self.state {
                ChunkState::Size { scanned } => {
                    let window = &buf[..buf.len().min(MAX_CHUNK_LINE)];
                    let Some(lf) = window[*scanned..].iter().position(|&b| b == b'\n') else {
                        *scanned = window.len();
                        if window.len() >= MAX_CHUNK_LINE {
                            return Err(Error::InvalidChunk);
                        }
                        return if eof {
                            Err(Error::UnexpectedEof)
                        } else {
                            Ok(Decoded::Pending)
                        };
                    };
                    let lf = *scanned + lf;
                    if lf == 0 || buf[lf - 1] != b'\r' {
                        return Err(Error::BareLineFeed);
                    }
                    let (size, ext_len) = parse_chunk_line(&buf[..lf - 1])?;
                    self.ext_bytes += ext_len;
                    if self.ext_bytes > MAX_CHUNK_EXT_TOTAL {
                        return Err(Error::InvalidChunk);
                    }
                    let _ = buf.split_to(lf + 1);
                    if size == 0 {
                        self.state = ChunkState::Trailers(HeadScanner::default());
                        continue;
                    }
                    self.received = self.received.checked_add(size).ok_or(Error::BodyTooLarge)?;
                    if self.received > limits.max_body_size {
                        return Err(Error::BodyTooLarge);
                    }
                    self.state = ChunkState::Data { remaining: size };
                }
                ChunkState::Data { remaining } => {
                    if buf.is_empty() {
                        return if eof {
                            Err(Error::UnexpectedEof)
                        } else {
                            Ok(Decoded::Pending)
                        };
                    }
                    let n = take_len(*remaining, buf.len());
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                ChunkState::DataEnd => match buf.get(..2) {
                    Some(b"\r\n") => {
                        let _ = buf.split_to(2);
                        self.state = ChunkState::Size { scanned: 0 };
                    }
                    Some([b'\n', _]) => return Err(Error::BareLineFeed),
                    Some(_) => return Err(Error::InvalidChunk),
                    None => {
                        match buf.first() {
                            Some(b'\r') | None => {}
                            Some(b'\n') => return Err(Error::BareLineFeed),
                            Some(_) => return Err(Error::InvalidChunk),
                        }
                        return if eof {
                            Err(Error::UnexpectedEof)
                        } else {
                            Ok(Decoded::Pending)
                        };
                    }
                },
                ChunkState::Trailers(scanner) => {
                    let scan = ScanLimits {
                        max_line: None,
                        max_head: limits.max_head_size,
                        strict: true,
                    };
                    let Some(len) = scanner.scan(buf, &scan)? else {
                        return if eof {
                            Err(Error::UnexpectedEof)
                        } else {
                            Ok(Decoded::Pending)
                        };
                    };
                    let section = buf.split_to(len).freeze();
                    let trailers = parse_trailers(&section, limits.max_headers)?;
                    return Ok(Decoded::End(trailers));
                }
            }
        }
    }
}

/// Parses `chunk-size [ chunk-ext ]` (RFC 9112 §7.1), the line without its CRLF. Returns the
/// size and the length of the extensions.
///
/// Strict on purpose: Twisted's CVE-2022-24801 came from a size parser (Python's `int(x, 16)`)
/// that took `+`, `-`, `0x`, `_` and surrounding spaces, so it read a different body than a
/// proxy in front of it did. Here the size is `1*HEXDIG`, nothing before it, and after it only
/// extensions, whose syntax is checked even though their meaning is ignored.
fn parse_chunk_line(line: &[u8]) -> Result<(u64, usize), Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Error::InvalidChunkSize);
    }
    let size = line[..digits].iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(d))
    });
    let size = size.ok_or(Error::InvalidChunkSize)?;
    let ext = &line[digits..];
    if !valid_chunk_ext(ext) {
        return Err(Error::InvalidChunkSize);
    }
    Ok((size, ext.len()))
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, where the
/// name is a token and the value a token or quoted-string.
fn valid_chunk_ext(mut s: &[u8]) -> bool {
    fn ows(s: &[u8]) -> &[u8] {
        let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        &s[n..]
    }
    fn token(s: &[u8]) -> Option<&[u8]> {
        let n = s.iter().take_while(|&&b| is_tchar(b)).count();
        (n > 0).then(|| &s[n..])
    }
    fn quoted(s: &[u8]) -> Option<&[u8]> {
        let mut i = 1; // past the opening quote
        while i < s.len() {
            match s[i] {
                b'"' => return Some(&s[i + 1..]),
                b'\\' => {
                    let next = *s.get(i + 1)?;
                    if !(next == b'\t' || next == b' ' || next >= 0x21) || next == 0x7f {
                        return None;
                    }
                    i += 2;
                }
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => i += 1,
                _ => return None,
            }
        }
        None
    }
    while !s.is_empty() {
        s = ows(s);
        let Some(rest) = s.strip_prefix(b";") else {
            return false;
        };
        let Some(rest) = token(ows(rest)) else {
            return false;
        };
        s = rest;
        let after = ows(s);
        if let Some(rest) = after.strip_prefix(b"=") {
            let rest = ows(rest);
            let parsed = if rest.first() == Some(&b'"') {
                quoted(rest)
            } else {
                token(rest)
            };
            let Some(rest) = parsed else { return false };
            s = rest;
        }
    }
    true
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_trailers(section: &Bytes, max_headers: usize) -> Result<HeaderMap, Error> {
    if section.as_ref() == b"\r\n" {
        return Ok(HeaderMap::new());
    }
    let mut stack = [httparse::EMPTY_HEADER; head::STACK_HEADERS];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if max_headers <= head::STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; max_headers];
        &mut heap
    };
    match httparse::parse_headers(section, slots) {
        Ok(httparse::Status::Complete((_, fields))) => head::to_header_map(section, fields),
        Ok(httparse::Status::Partial) => Err(Error::MalformedHead("incomplete trailer section")),
        Err(e) => Err(head::httparse_error(e)),
    }
}

/// Frames an outgoing body.
#[derive(Debug)]
pub(crate) enum BodyEncoder {
    Length {
        remaining: u64,
    },
    Chunked,
    /// Raw bytes; the end of the body is the end of the connection.
    UntilClose,
    /// The message has no body (`HEAD`, 204, 304): bytes are dropped.
    Discard,
}

impl BodyEncoder {
    pub fn encode(&mut self, out: &mut BytesMut, data: &[u8]) -> Result<(), Error> {
        match self {
            BodyEncoder::Length { remaining } => {
                if data.len() as u64 > *remaining {
                    return Err(Error::InvalidState("body longer than its Content-Length"));
                }
                *remaining -= data.len() as u64;
                out.put_slice(data);
            }
            // An empty chunk would end the body, so an empty write writes nothing.
            BodyEncoder::Chunked if data.is_empty() => {}
            BodyEncoder::Chunked => {
                write_hex(out, data.len() as u64);
                out.put_slice(b"\r\n");
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            BodyEncoder::UntilClose => out.put_slice(data),
            BodyEncoder::Discard => {}
        }
        Ok(())
    }

    /// Ends the body. Trailers are sent only on a chunked body; elsewhere they have no place
    /// and are dropped.
    pub fn finish(
        &mut self,
        out: &mut BytesMut,
        trailers: Option<&HeaderMap>,
    ) -> Result<(), Error> {
        match self {
            BodyEncoder::Length { remaining: 1.. } => {
                Err(Error::InvalidState("body shorter than its Content-Length"))
            }
            BodyEncoder::Chunked => {
                out.put_slice(b"0\r\n");
                if let Some(trailers) = trailers {
                    head::write_headers(out, trailers);
                }
                out.put_slice(b"\r\n");
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn write_hex(out: &mut BytesMut, n: u64) {
    let digits = if n == 0 {
        1
    } else {
        (64 - n.leading_zeros()).div_ceil(4)
    };
    for i in (0..digits).rev() {
        out.put_u8(b"0123456789abcdef"[((n >> (i * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lines() {
        assert_eq!(parse_chunk_line(b"5"), Ok((5, 0)));
        assert_eq!(parse_chunk_line(b"00Ff"), Ok((255, 0)));
        assert_eq!(parse_chunk_line(b"5;a=b"), Ok((5, 4)));
        assert_eq!(parse_chunk_line(b"5 ; a = \"x\\\"y\" ;c"), Ok((5, 16)));
        assert_eq!(parse_chunk_line(b"ffffffffffffffff"), Ok((u64::MAX, 0)));
        for bad in [
            &b""[..],
            b"+5",
            b"-5",
            b"0x5",
            b" 5",
            b"5 ",
            b"5_0",
            b"5;",
            b"5;a=",
            b"5;a=\"x",
            b"5\r",
            b"g",
            b"10000000000000000",
            b"5;a b",
        ] {
            assert_eq!(
                parse_chunk_line(bad),
                Err(Error::InvalidChunkSize),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hex_encoding() {
        for n in [1u64, 9, 10, 15, 16, 255, 4096, u64::MAX] {
            let mut out = BytesMut::new();
            write_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }
}
