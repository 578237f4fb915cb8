//! Reading and patching a message's fixed header and question in place, without decoding
//! the whole message: what the server's hot path and rate limiter need.

/// The fixed header's length.
pub const HEADER_LEN: usize = 12;

/// The message id, if there is a header.
pub fn id(message: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*message.first()?, *message.get(1)?]))
}

/// The response code in the header (the low 4 bits; extended codes need the OPT record).
pub fn rcode(message: &[u8]) -> Option<u8> {
    message.get(3).map(|b| b & 0x0f)
}

/// Whether the QR bit is set (the message is a response).
pub fn is_response(message: &[u8]) -> bool {
    message.get(2).is_some_and(|b| b & 0x80 != 0)
}

/// Whether the TC bit is set.
pub fn truncated(message: &[u8]) -> bool {
    message.get(2).is_some_and(|b| b & 0x02 != 0)
}

/// One of the header's four 16-bit section counts (0: questions, 1: answers,
/// 2: authority, 3: additional).
pub fn count(message: &[u8], section: usize) -> Option<u16> {
    let at = 4 + 2 * section;
    Some(u16::from_be_bytes([
        *message.get(at)?,
        *message.get(at + 1)?,
    ]))
}

/// Where the question section ends, for a message with exactly one question written without
/// compression (as every query is): the header and question are `message[..end]`. `None`
/// for anything else.
pub fn question_end(message: &[u8]) -> Option<usize> {
    if count(message, 0)? != 1 {
        return None;
    }
    let mut at = HEADER_LEN;
    loop {
        let len = *message.get(at)? as usize;
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
        if at - HEADER_LEN > 255 {
            return None;
        }
    }
    let end = at + 4;
    (end <= message.len()).then_some(end)
}

/// The query name's wire form (length-prefixed labels, ending with the root's zero), for a
/// message [`question_end`] accepts.
pub fn question_name(message: &[u8]) -> Option<&[u8]> {
    let end = question_end(message)?;
    message.get(HEADER_LEN..end - 4)
}

/// A reply with `reply`'s header and question and nothing else, the TC bit set: the slip of
/// rate limiting, and the answer for a UDP client whose buffer nothing fits in. `None` if
/// `reply` has no plain question.
pub fn truncated_empty(reply: &[u8]) -> Option<Vec<u8>> {
    let end = question_end(reply)?;
    let mut out = reply[..end].to_vec();
    out[2] |= 0x02;
    out[6..12].fill(0);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `www.example.` type A, id 0x1234, RD.
    fn query() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        m
    }

    #[test]
    fn header_fields_and_question() {
        let q = query();
        assert_eq!(id(&q), Some(0x1234));
        assert!(!is_response(&q));
        assert_eq!(rcode(&q), Some(0));
        assert_eq!(question_end(&q), Some(q.len()));
        assert_eq!(question_name(&q), Some(&b"\x03www\x07example\x00"[..]));
    }

    #[test]
    fn short_compressed_or_multi_question_messages_have_no_plain_question() {
        let q = query();
        for cut in 0..q.len() {
            assert_eq!(question_end(&q[..cut]), None, "cut at {cut}");
        }
        let mut two = q.clone();
        two[5] = 2;
        assert_eq!(question_end(&two), None);
        let mut pointer = q[..12].to_vec();
        pointer.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01");
        assert_eq!(question_end(&pointer), None);
        // A name longer than 255 bytes.
        let mut long = q[..12].to_vec();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(b"\x00\x00\x01\x00\x01");
        assert_eq!(question_end(&long), None);
        assert_eq!(id(&[1]), None);
    }

    #[test]
    fn a_truncated_empty_reply_keeps_header_and_question() {
        let mut reply = query();
        reply[2] |= 0x80;
        reply[7] = 3; // three answers (not included)
        reply.extend_from_slice(b"answers...");
        let tc = truncated_empty(&reply).unwrap();
        assert_eq!(tc.len(), query().len());
        assert!(truncated(&tc) && is_response(&tc));
        assert_eq!(count(&tc, 1), Some(0));
        assert_eq!(count(&tc, 0), Some(1));
    }
}
