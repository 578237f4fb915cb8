//! The server's answer cache: an authoritative answer depends only on the question and a
//! few header and EDNS bits, never on who asks, so the encoded reply to a plain query is
//! kept and the next query that asks the same thing gets a copy with its own id and the
//! exact bytes (and so the case) of its own question — no decoding, no lookup, no encoding.
//!
//! What is cacheable is decided on the query's bytes alone: opcode QUERY, one question
//! (not a transfer), no answer or authority records, and at most one additional record,
//! which must be an OPT with no options. Anything else (TSIG, EDNS options such as cookies,
//! NOTIFY…) takes the full path every time. The key is the question with its name
//! lowercased, the RD and CD bits, and the EDNS presence, version, DO bit and effective
//! UDP payload size. The cache holds at most a fixed number of answers and starts afresh
//! when full (a flood of distinct names costs a bounded table, not memory); the owner
//! clears it when the zones change.

use std::collections::HashMap;

use super::header::{self, HEADER_LEN};

/// Answers kept by default.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// Bytes of answers kept at most, whatever their number (TCP answers can be 64 KiB each).
pub const MAX_BYTES: usize = 32 << 20;

/// Encoded replies by query key; see the [module docs](self).
#[derive(Debug)]
pub struct AnswerCache {
    map: HashMap<Box<[u8]>, Box<[u8]>>,
    capacity: usize,
    /// Bytes of keys and answers held.
    bytes: usize,
    /// The key of the last query looked up (reused between calls).
    scratch: Vec<u8>,
}

impl AnswerCache {
    /// A cache of at most `capacity` answers (0 disables it).
    pub fn new(capacity: usize) -> AnswerCache {
        AnswerCache {
            map: HashMap::new(),
            capacity,
            bytes: 0,
            scratch: Vec::with_capacity(64),
        }
    }

    /// The cached reply for `query` (arrived over UDP when `udp`), patched with its id and
    /// question, if there is one. Either way the query's key is kept for
    /// [`insert`](Self::insert).
    pub fn lookup(&mut self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        self.scratch.clear();
        if self.capacity == 0 || !key(query, udp, &mut self.scratch) {
            self.scratch.clear();
            return None;
        }
        let cached = self.map.get(self.scratch.as_slice())?;
        let end = header::question_end(query)?;
        let mut reply = Vec::with_capacity(cached.len());
        reply.extend_from_slice(&query[..2]);
        reply.extend_from_slice(&cached[2..HEADER_LEN]);
        reply.extend_from_slice(&query[HEADER_LEN..end]);
        reply.extend_from_slice(cached.get(end..)?);
        Some(reply)
    }

    /// Keeps `reply` as the answer to the query last passed to [`lookup`](Self::lookup), if
    /// that query was cacheable and the reply answers its question byte for byte (apart
    /// from case) in the same place.
    pub fn insert(&mut self, query: &[u8], reply: &[u8]) {
        if self.scratch.is_empty() {
            return;
        }
        let Some(end) = header::question_end(query) else {
            return;
        };
        let same_question = reply
            .get(HEADER_LEN..end - 4)
            .is_some_and(|q| q.eq_ignore_ascii_case(&query[HEADER_LEN..end - 4]))
            && reply.get(end - 4..end) == Some(&query[end - 4..end])
            && header::count(reply, 0) == Some(1);
        if !same_question {
            return;
        }
        let size = self.scratch.len() + reply.len();
        if self.map.len() >= self.capacity || self.bytes + size > MAX_BYTES {
            self.clear();
        }
        let key = std::mem::take(&mut self.scratch).into_boxed_slice();
        if let Some(old) = self.map.insert(key, reply.into()) {
            self.bytes = self.bytes.saturating_sub(old.len());
        }
        self.bytes += size;
    }

    /// Forgets every answer (the zones changed).
    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no answer is kept.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Writes `query`'s cache key into `out`; false if the query is not cacheable.
fn key(query: &[u8], udp: bool, out: &mut Vec<u8>) -> bool {
    let Some(end) = header::question_end(query) else {
        return false;
    };
    let flags = u16::from_be_bytes([query[2], query[3]]);
    // QR clear, opcode QUERY (0).
    if flags & 0xf800 != 0 {
        return false;
    }
    if header::count(query, 1) != Some(0) || header::count(query, 2) != Some(0) {
        return false;
    }
    let qtype = u16::from_be_bytes([query[end - 4], query[end - 3]]);
    // AXFR, IXFR, and the meta types (MAILB, MAILA, ANY answered minimally is fine).
    if matches!(qtype, 251..=254) {
        return false;
    }
    out.push(u8::from(udp));
    // RD (0x0100) and CD (0x0010) are copied into the reply.
    out.extend_from_slice(&(flags & 0x0110).to_be_bytes());
    match (header::count(query, 3), query.get(end..)) {
        (Some(0), Some([])) => out.push(0),
        // One OPT: root owner, type 41, class = payload size, TTL = ext-rcode, version,
        // DO+Z, no options.
        (Some(1), Some([0, 0, 41, size_hi, size_lo, 0, version, do_z, _, 0, 0])) => {
            out.push(1);
            out.push(*version);
            out.push(*do_z & 0x80);
            // The buffer size matters over UDP only.
            let size = if udp {
                u16::from_be_bytes([*size_hi, *size_lo]).max(512)
            } else {
                0
            };
            out.extend_from_slice(&size.to_be_bytes());
        }
        _ => return false,
    }
    // The name in any case; its type and class exactly (0x41, HTTPS, is not 0x61).
    for b in &query[HEADER_LEN..end - 4] {
        out.push(b.to_ascii_lowercase());
    }
    out.extend_from_slice(&query[end - 4..end]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &[u8], edns: Option<&[u8]>) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1]);
        if let Some(opt) = edns {
            m.extend_from_slice(opt);
        }
        m
    }

    /// A reply: the query's header with QR/AA set and one answer, then `tail` bytes.
    fn reply(q: &[u8], tail: &[u8]) -> Vec<u8> {
        let end = header::question_end(q).unwrap();
        let mut r = q[..end].to_vec();
        r[2] |= 0x84;
        r[7] = 1;
        r[11] = 0;
        r.extend_from_slice(tail);
        r
    }

    const WWW: &[u8] = b"\x03www\x07example\x00";
    const WWW_MIXED: &[u8] = b"\x03WwW\x07eXample\x00";
    const OPT: &[u8] = &[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0];

    #[test]
    fn a_second_query_gets_the_answer_with_its_own_id_and_case() {
        let mut cache = AnswerCache::new(10);
        let q1 = query(1, WWW, None);
        assert_eq!(cache.lookup(&q1, true), None);
        cache.insert(&q1, &reply(&q1, b"ANSWER"));
        assert_eq!(cache.len(), 1);
        let q2 = query(0xbeef, WWW_MIXED, None);
        let got = cache.lookup(&q2, true).expect("cached");
        assert_eq!(&got[..2], &[0xbe, 0xef]);
        assert_eq!(header::question_name(&got), Some(WWW_MIXED));
        assert!(got.ends_with(b"ANSWER"));
        assert_eq!(got[2] & 0x84, 0x84);
    }

    #[test]
    fn what_changes_the_answer_is_in_the_key() {
        let mut cache = AnswerCache::new(10);
        let plain = query(1, WWW, None);
        cache.lookup(&plain, true);
        cache.insert(&plain, &reply(&plain, b"X"));
        // Over TCP, with EDNS, with DO, another RD bit: not the same answer.
        assert_eq!(cache.lookup(&plain, false), None);
        assert_eq!(cache.lookup(&query(1, WWW, Some(OPT)), true), None);
        let mut no_rd = plain.clone();
        no_rd[2] = 0;
        assert_eq!(cache.lookup(&no_rd, true), None);
        let edns = query(1, WWW, Some(OPT));
        cache.lookup(&edns, true);
        cache.insert(&edns, &reply(&edns, b"E"));
        let mut no_do = edns.clone();
        let at = no_do.len() - 4;
        no_do[at] = 0;
        assert_eq!(cache.lookup(&no_do, true), None);
        assert!(cache.lookup(&edns, true).unwrap().ends_with(b"E"));
    }

    #[test]
    fn types_and_classes_are_compared_exactly_not_as_letters() {
        // 0x41 (HTTPS, 65) and 0x61 (97) are 'A' and 'a' as letters.
        let with_type = |t: u8| {
            let mut q = query(1, WWW, None);
            let n = q.len();
            q[n - 3] = t;
            q
        };
        let mut cache = AnswerCache::new(10);
        let q97 = with_type(97);
        cache.lookup(&q97, true);
        cache.insert(&q97, &reply(&q97, b"NODATA"));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.lookup(&with_type(65), true), None);
        // A reply whose question has another type is not kept for this query.
        let q65 = with_type(65);
        cache.lookup(&q65, true);
        cache.insert(&q65, &reply(&q97, b"X"));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.lookup(&q65, true), None);
    }

    #[test]
    fn uncacheable_queries_are_never_looked_up_or_kept() {
        let mut cache = AnswerCache::new(10);
        let mut axfr = query(1, WWW, None);
        let n = axfr.len();
        axfr[n - 3] = 252;
        let mut notify = query(1, WWW, None);
        notify[2] = 0x20;
        let mut response = query(1, WWW, None);
        response[2] |= 0x80;
        let mut cookie = query(1, WWW, Some(OPT));
        let n = cookie.len();
        cookie[n - 1] = 4;
        cookie.extend_from_slice(&[0, 10, 0, 0]);
        for q in [axfr, notify, response, cookie, b"\x00\x01".to_vec()] {
            assert_eq!(cache.lookup(&q, true), None);
            cache.insert(&q, &reply(&query(1, WWW, None), b"X"));
            assert!(cache.is_empty());
        }
    }

    #[test]
    fn a_reply_for_another_question_is_not_kept_and_the_size_is_bounded() {
        let mut cache = AnswerCache::new(3);
        let q = query(1, WWW, None);
        cache.lookup(&q, true);
        cache.insert(&q, &reply(&query(1, b"\x03ftp\x07example\x00", None), b"X"));
        assert!(cache.is_empty());
        for i in 0..10u8 {
            let name = [1, b'a' + i, 0];
            let q = query(1, &name, None);
            cache.lookup(&q, true);
            cache.insert(&q, &reply(&q, b"X"));
            assert!(cache.len() <= 3);
        }
        cache.clear();
        assert!(cache.is_empty());
    }
}
