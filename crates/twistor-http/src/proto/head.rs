//! What requests and responses share: finding the end of a head, turning httparse's fields
//! into a `HeaderMap`, reading the framing fields, and writing a head out.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::Error;

/// How many header slots live on the stack; more (a raised `max_headers`) go on the heap.
pub(crate) const STACK_HEADERS: usize = 128;

/// Finds the end of a header section (or trailer section) as bytes arrive.
///
/// It remembers how far it has looked, so feeding a head one byte at a time costs O(n), and
/// every limit is checked at a byte position, so the outcome does not depend on how the
/// input was split.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    pos: usize,
    first_line_done: bool,
}

pub(crate) struct ScanLimits {
    /// Bound on the first line (requests only).
    pub max_line: Option<usize>,
    pub max_head: usize,
    /// Refuse bare LF line endings (requests, and chunked trailers everywhere).
    pub strict: bool,
}

impl HeadScanner {
    /// Whether the scan has not looked at any byte yet.
    pub fn is_fresh(&self) -> bool {
        self.pos == 0
    }

    /// Returns the length of the section (final empty line included) once it is complete.
    ///
    /// Where no limit can be reached it jumps from line feed to line feed ([`find_lf`]);
    /// near a limit it walks byte by byte. Either way the outcome is the byte walk's: at
    /// each byte, the request-line bound first (CR and LF exempt), then the section bound,
    /// then line-ending rules at an LF.
    pub fn scan(&mut self, buf: &[u8], limits: &ScanLimits) -> Result<Option<usize>, Error> {
        loop {
            // No byte below `safe` can break a limit.
            let safe = self.safe_end(limits);
            let end = buf.len().min(safe);
            match find_lf(&buf[..end], self.pos) {
                Some(i) => {
                    self.pos = i + 1;
                    if let Some(len) = self.line_ended(buf, i, limits)? {
                        return Ok(Some(len));
                    }
                }
                None if end == buf.len() => {
                    self.pos = self.pos.max(end);
                    return Ok(None);
                }
                None => {
                    self.pos = self.pos.max(end);
                    return self.scan_bytewise(buf, limits);
                }
            }
        }
    }

    /// Where the bytes that cannot break a limit end.
    #[inline]
    fn safe_end(&self, limits: &ScanLimits) -> usize {
        match limits.max_line {
            Some(max) if !self.first_line_done => max.min(limits.max_head),
            _ => limits.max_head,
        }
    }

    /// The byte walk, from where the scan is.
    fn scan_bytewise(&mut self, buf: &[u8], limits: &ScanLimits) -> Result<Option<usize>, Error> {
        while self.pos < buf.len() {
            let i = self.pos;
            let b = buf[i];
            self.pos += 1;
            if !self.first_line_done
                && let Some(max) = limits.max_line
                && i >= max
                && b != b'\r'
                && b != b'\n'
            {
                return Err(Error::RequestLineTooLong);
            }
            if i >= limits.max_head {
                return Err(Error::HeadTooLarge);
            }
            if b == b'\n'
                && let Some(len) = self.line_ended(buf, i, limits)?
            {
                return Ok(Some(len));
            }
        }
        Ok(None)
    }

    /// A line ended with the LF at `i`: checks its ending, and returns the section's length
    /// if it was the empty line that ends it.
    #[inline]
    fn line_ended(
        &mut self,
        buf: &[u8],
        i: usize,
        limits: &ScanLimits,
    ) -> Result<Option<usize>, Error> {
        let crlf = i > 0 && buf[i - 1] == b'\r';
        if limits.strict && !crlf {
            return Err(Error::BareLineFeed);
        }
        self.first_line_done = true;
        // The line just ended is empty if the byte before its terminator ends a line
        // too (or it is the first line).
        let start = if crlf { i - 1 } else { i };
        Ok((start == 0 || buf[start - 1] == b'\n').then_some(i + 1))
    }

    /// The plain byte-by-byte walk `scan` must agree with, from the start.
    #[cfg(test)]
    pub fn scan_reference(
        &mut self,
        buf: &[u8],
        limits: &ScanLimits,
    ) -> Result<Option<usize>, Error> {
        self.scan_bytewise(buf, limits)
    }
}

/// The index of the first LF in `buf` at or after `from`.
///
/// Eight bytes at a time: head lines are short (20–40 bytes), where a word-at-a-time loop
/// beats `memchr`'s vector set-up.
#[inline]
pub(crate) fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut i = from;
    while let Some(word) = buf.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default()) ^ LFS;
        // The lowest byte that is zero in `x` (an LF) sets its high bit here; bytes above
        // it may be set spuriously, bytes below it never.
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    buf.get(i..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|k| i + k)
}

/// Drops empty lines before a start line (RFC 9112 §2.2 lets a server ignore them).
/// Returns false while a lone CR leaves it undecided.
pub(crate) fn skip_leading_empty_lines(buf: &mut BytesMut, strict: bool) -> Result<bool, Error> {
    loop {
        match buf.first() {
            Some(b'\r') => match buf.get(1) {
                Some(b'\n') => buf.advance(2),
                Some(_) => return Err(Error::MalformedHead("stray CR")),
                None => return Ok(false),
            },
            Some(b'\n') if strict => return Err(Error::BareLineFeed),
            Some(b'\n') => buf.advance(1),
            _ => return Ok(true),
        }
    }
}

/// Maps an httparse failure to this crate's error.
pub(crate) fn httparse_error(err: httparse::Error) -> Error {
    match err {
        httparse::Error::TooManyHeaders => Error::TooManyHeaders,
        httparse::Error::HeaderName => Error::MalformedHead("invalid header name"),
        httparse::Error::HeaderValue => Error::MalformedHead("invalid header value"),
        httparse::Error::NewLine => Error::MalformedHead("invalid line ending"),
        httparse::Error::Status => Error::MalformedHead("invalid status"),
        httparse::Error::Token => Error::MalformedHead("invalid token in start line"),
        httparse::Error::Version => Error::MalformedHead("invalid version"),
    }
}

/// Whether a start line's version looks like `HTTP/x.y` with a major other than 1, which
/// earns 505 rather than 400 (RFC 9110 §15.6.6).
pub(crate) fn is_other_major_version(version: &[u8]) -> bool {
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1')
}

/// Copies httparse's fields into a `HeaderMap`, sharing `head`'s memory for the values.
pub(crate) fn to_header_map(
    head: &Bytes,
    fields: &[httparse::Header<'_>],
) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| Error::MalformedHead("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(field.value))
            .map_err(|_| Error::MalformedHead("invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// A header section as received and already checked by httparse (strict CRLF line endings,
/// no obs-fold, names that are tokens, values of visible characters): its fields are read
/// straight from the bytes, without building a `HeaderMap` unless one is asked for.
#[derive(Clone)]
pub(crate) struct RawFields {
    /// The whole head, start line included.
    head: Bytes,
    /// Where the first field line starts.
    start: usize,
}

impl RawFields {
    /// The fields of `head`, whose start line (its CRLF included) is `start` bytes long.
    pub fn new(head: Bytes, start: usize) -> RawFields {
        debug_assert_eq!(head.get(start.wrapping_sub(1)), Some(&b'\n'));
        let start = start.min(head.len());
        RawFields { head, start }
    }

    /// `(name, value)` pairs in order, values trimmed of surrounding whitespace as httparse
    /// trims them.
    pub fn iter(&self) -> RawFieldIter<'_> {
        RawFieldIter {
            rest: &self.head[self.start..],
        }
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The fields as a `HeaderMap`, the values sharing the head's memory.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.iter().count());
        for (name, value) in self.iter() {
            // httparse checked both against the grammars these follow, so neither fails.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_maybe_shared(self.head.slice_ref(value)),
            ) {
                map.append(name, value);
            }
        }
        map
    }
}

impl std::fmt::Debug for RawFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// The fields of a [`RawFields`], in order.
pub(crate) struct RawFieldIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RawFieldIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let lf = find_lf(self.rest, 0)?;
        let line = &self.rest[..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.rest = &[];
            return None;
        }
        self.rest = &self.rest[lf + 1..];
        let colon = memchr::memchr(b':', line).unwrap_or(line.len());
        let value = line.get(colon + 1..).unwrap_or_default();
        Some((&line[..colon], trim_ows(value)))
    }
}

/// The elements of a comma-separated list field (RFC 9110 §5.6.1), OWS trimmed, empty
/// elements skipped as the RFC asks.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether any element of any instance of a list field equals `token` (case-insensitive).
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| value_has_token(v.as_bytes(), token.as_bytes()))
}

/// Whether any element of one list field value equals `token` (case-insensitive).
pub(crate) fn value_has_token(value: &[u8], token: &[u8]) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token))
}

/// The message's `Content-Length`, if it has one.
///
/// RFC 9110 §8.6 lets a recipient accept a field repeated with one value (`5, 5` or two
/// `Content-Length: 5` lines) as that value; differing values are
/// [`Error::ConflictingContentLength`]. Each value must be `1*DIGIT`: no sign, no `0x`, no
/// inner spaces, no overflow (Twisted's CVE-2022-24801 accepted `+5`).
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let mut length = ContentLength::default();
    for value in headers.get_all(CONTENT_LENGTH) {
        length.add(value.as_bytes())?;
    }
    Ok(length.value)
}

/// Folds `Content-Length` field values, in order, into the one length they agree on.
#[derive(Debug, Default)]
pub(crate) struct ContentLength {
    /// The length so far; `None` until a value is added.
    pub value: Option<u64>,
}

impl ContentLength {
    /// Adds one field value; the first invalid or differing value is the error.
    pub fn add(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if list_elements(bytes).next().is_none() {
            return Err(Error::InvalidContentLength);
        }
        // An empty element between commas ("5,,5") is allowed by the list rule; a trailing
        // or leading comma too. Anything else must be digits.
        for element in list_elements(bytes) {
            let n = parse_decimal(element).ok_or(Error::InvalidContentLength)?;
            match self.value {
                Some(prev) if prev != n => return Err(Error::ConflictingContentLength),
                _ => self.value = Some(n),
            }
        }
        Ok(())
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// What a `Transfer-Encoding` field list says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TransferCoding {
    /// No `Transfer-Encoding` field.
    Absent,
    /// Exactly `chunked`, once.
    Chunked,
    /// `chunked` last, after other codings this crate does not decode.
    OtherThenChunked,
    /// Present, but not ending in exactly one `chunked`.
    Invalid,
}

pub(crate) fn transfer_coding(headers: &HeaderMap) -> TransferCoding {
    let mut coding = TransferCodings::default();
    for value in headers.get_all(TRANSFER_ENCODING) {
        coding.add(value.as_bytes());
    }
    coding.result()
}

/// Folds `Transfer-Encoding` field values, in order, into what they say.
#[derive(Debug, Default)]
pub(crate) struct TransferCodings {
    fields: usize,
    codings: usize,
    chunked_seen: usize,
    last_is_chunked: bool,
}

impl TransferCodings {
    /// Adds one field value.
    pub fn add(&mut self, value: &[u8]) {
        self.fields += 1;
        for element in list_elements(value) {
            self.codings += 1;
            self.last_is_chunked = element.eq_ignore_ascii_case(b"chunked");
            self.chunked_seen += usize::from(self.last_is_chunked);
        }
    }

    /// What the fields added say.
    pub fn result(&self) -> TransferCoding {
        if self.fields == 0 {
            return TransferCoding::Absent;
        }
        // RFC 9112 §7: chunked must be final and applied once.
        match (self.last_is_chunked, self.chunked_seen, self.codings) {
            (true, 1, 1) => TransferCoding::Chunked,
            (true, 1, _) => TransferCoding::OtherThenChunked,
            _ => TransferCoding::Invalid,
        }
    }
}

/// Whether the connection stays open after this message, from its version and `Connection`
/// field (RFC 9112 §9.3).
pub(crate) fn wants_keep_alive(version: http::Version, headers: &HeaderMap) -> bool {
    if has_token(headers, &CONNECTION, "close") {
        return false;
    }
    version == http::Version::HTTP_11 || has_token(headers, &CONNECTION, "keep-alive")
}

/// Whether the caller put framing fields in a head, which this crate sets itself.
pub(crate) fn has_framing_fields(headers: &HeaderMap) -> bool {
    headers.contains_key(CONTENT_LENGTH) || headers.contains_key(TRANSFER_ENCODING)
}

pub(crate) fn write_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Writes fields. `HeaderName` and `HeaderValue` cannot hold CR or LF, so nothing a caller
/// puts in a `HeaderMap` can split the head.
pub(crate) fn write_headers(out: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

pub(crate) fn write_content_length(out: &mut BytesMut, mut n: u64) {
    // Built on the stack and written at once: `content-length: ` + up to 20 digits + CRLF.
    const PREFIX: &[u8] = b"content-length: ";
    let mut line = [0u8; PREFIX.len() + 20 + 2];
    let mut i = line.len() - 2;
    line[i..].copy_from_slice(b"\r\n");
    loop {
        i -= 1;
        line[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    i -= PREFIX.len();
    line[i..i + PREFIX.len()].copy_from_slice(PREFIX);
    out.put_slice(&line[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8], strict: bool) -> Result<Option<usize>, Error> {
        let limits = ScanLimits {
            max_line: Some(16),
            max_head: 64,
            strict,
        };
        HeadScanner::default().scan(input, &limits)
    }

    #[test]
    fn scanner_finds_end_whole_and_bytewise() {
        let head = b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest";
        assert_eq!(scan_all(head, true), Ok(Some(24)));
        let limits = ScanLimits {
            max_line: Some(16),
            max_head: 64,
            strict: true,
        };
        let mut s = HeadScanner::default();
        let mut got = None;
        for n in 1..=head.len() {
            if let Some(end) = s.scan(&head[..n], &limits).unwrap() {
                got = Some(end);
                break;
            }
        }
        assert_eq!(got, Some(24));
    }

    #[test]
    fn scanner_limits_and_line_endings() {
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\nA: b\r\n\r\n", true),
            Err(Error::BareLineFeed)
        );
        assert_eq!(scan_all(b"GET / HTTP/1.1\nA: b\n\n", false), Ok(Some(21)));
        assert_eq!(
            scan_all(b"GET /aaaaaaaaaaaaaaaaaa", true),
            Err(Error::RequestLineTooLong)
        );
        let long = [b"GET / HTTP/1.1\r\n".as_slice(), &[b'a'; 60]].concat();
        assert_eq!(scan_all(&long, true), Err(Error::HeadTooLarge));
        assert_eq!(scan_all(b"\r\n", true), Ok(Some(2)));
    }

    #[test]
    fn content_length_lines() {
        for n in [0, 7, 10, 14, 999, 1 << 40, u64::MAX] {
            let mut out = BytesMut::new();
            write_content_length(&mut out, n);
            assert_eq!(&out[..], format!("content-length: {n}\r\n").as_bytes());
        }
    }

    #[test]
    fn find_lf_everywhere() {
        for len in 0..40 {
            for at in 0..=len {
                let mut buf = vec![b'a'; len];
                if at < len {
                    buf[at] = b'\n';
                }
                for from in 0..=len {
                    let want = (at < len && at >= from).then_some(at);
                    assert_eq!(find_lf(&buf, from), want, "len {len} lf {at} from {from}");
                }
            }
        }
        // Bytes just above and below LF, and a second LF after the first.
        assert_eq!(find_lf(b"\x09\x0b\x8a\n\x0a", 0), Some(3));
        assert_eq!(
            find_lf(b"\x8a\x8a\x8a\x8a\x8a\x8a\x8a\x8a\x0b\n", 0),
            Some(9)
        );
        assert_eq!(find_lf(b"", 3), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// The line-at-a-time scanner agrees with the byte-at-a-time walk on any input,
        /// limits and chunking.
        #[test]
        fn scanner_matches_bytewise(
            input in proptest::collection::vec(
                proptest::sample::select(b"ab \r\n:".to_vec()), 0..120),
            max_line in proptest::option::of(0usize..40),
            max_head in 0usize..100,
            strict in proptest::bool::ANY,
            cuts in proptest::collection::vec(0usize..120, 0..6),
        ) {
            let limits = ScanLimits { max_line, max_head, strict };
            let mut cuts = cuts;
            cuts.push(input.len());
            cuts.sort_unstable();
            let (mut fast, mut slow) = (HeadScanner::default(), HeadScanner::default());
            for &cut in &cuts {
                let cut = cut.min(input.len());
                let a = fast.scan(&input[..cut], &limits);
                let b = slow.scan_reference(&input[..cut], &limits);
                proptest::prop_assert_eq!(&a, &b, "prefix of {}", cut);
                if !matches!(a, Ok(None)) {
                    break;
                }
            }
        }
    }

    #[test]
    fn raw_fields_read_like_httparse() {
        let head = Bytes::from_static(
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A:\t a b \t\r\nEmpty:\r\nx-a: 2\r\n\r\n",
        );
        let fields = RawFields::new(head.clone(), 16);
        let got: Vec<(&[u8], &[u8])> = fields.iter().collect();
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"Host", b"h"),
            (b"X-A", b"a b"),
            (b"Empty", b""),
            (b"x-a", b"2"),
        ];
        assert_eq!(got, want);
        assert_eq!(fields.get(b"x-a"), Some(&b"a b"[..]));
        assert_eq!(fields.get(b"HOST"), Some(&b"h"[..]));
        assert_eq!(fields.get(b"none"), None);
        let map = fields.to_header_map();
        assert_eq!(map.len(), 4);
        assert_eq!(map.get_all("x-a").iter().count(), 2);
        // The same slices as httparse's.
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut slots);
        assert!(req.parse(&head).unwrap().is_complete());
        let parsed: Vec<(&[u8], &[u8])> = req
            .headers
            .iter()
            .map(|h| (h.name.as_bytes(), h.value))
            .collect();
        assert_eq!(parsed, want);
    }

    #[test]
    fn content_length_values() {
        let cl = |vals: &[&str]| {
            let mut h = HeaderMap::new();
            for v in vals {
                h.append(CONTENT_LENGTH, HeaderValue::from_str(v).unwrap());
            }
            content_length(&h)
        };
        assert_eq!(cl(&[]), Ok(None));
        assert_eq!(cl(&["0"]), Ok(Some(0)));
        assert_eq!(cl(&["007"]), Ok(Some(7)));
        assert_eq!(cl(&["5", "5"]), Ok(Some(5)));
        assert_eq!(cl(&["5, 5"]), Ok(Some(5)));
        assert_eq!(cl(&["5", "6"]), Err(Error::ConflictingContentLength));
        assert_eq!(cl(&["5, 6"]), Err(Error::ConflictingContentLength));
        for bad in [
            "+5",
            "-1",
            "0x10",
            "5 5",
            "5.0",
            "1e3",
            "",
            ",",
            "18446744073709551616",
        ] {
            assert_eq!(cl(&[bad]), Err(Error::InvalidContentLength), "{bad:?}");
        }
        assert_eq!(cl(&["18446744073709551615"]), Ok(Some(u64::MAX)));
    }

    #[test]
    fn transfer_codings() {
        let te = |vals: &[&str]| {
            let mut h = HeaderMap::new();
            for v in vals {
                h.append(TRANSFER_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            transfer_coding(&h)
        };
        assert_eq!(te(&[]), TransferCoding::Absent);
        assert_eq!(te(&["chunked"]), TransferCoding::Chunked);
        assert_eq!(te(&["Chunked"]), TransferCoding::Chunked);
        assert_eq!(te(&["gzip, chunked"]), TransferCoding::OtherThenChunked);
        assert_eq!(te(&["gzip", "chunked"]), TransferCoding::OtherThenChunked);
        assert_eq!(te(&["chunked, gzip"]), TransferCoding::Invalid);
        assert_eq!(te(&["chunked", "chunked"]), TransferCoding::Invalid);
        assert_eq!(te(&["xchunked"]), TransferCoding::Invalid);
        assert_eq!(te(&["chunked;q=1"]), TransferCoding::Invalid);
        assert_eq!(te(&[""]), TransferCoding::Invalid);
    }
}
