//! Decoding `Content-Encoding: gzip` as the body streams (Twisted's `ContentDecoderAgent`).

use std::io::{self, Write};

use bytes::Bytes;
use flate2::write::GzDecoder;
use http::HeaderMap;

use crate::Error;
use crate::body::BodyReceiver;

/// Wraps a receiver: compressed pieces in, decompressed pieces out. The decoder writes
/// its output in pieces of its own buffer's size, each handed on at once, so a small
/// compressed body that inflates hugely never sits in memory whole.
pub(crate) struct GzipReceiver {
    decoder: Option<GzDecoder<Forward>>,
}

struct Forward {
    inner: Box<dyn BodyReceiver>,
}

impl Write for Forward {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.inner.data_received(Bytes::copy_from_slice(buf));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl GzipReceiver {
    pub(crate) fn new(inner: Box<dyn BodyReceiver>) -> GzipReceiver {
        GzipReceiver {
            decoder: Some(GzDecoder::new(Forward { inner })),
        }
    }

    fn fail(&mut self, err: io::Error) {
        if let Some(decoder) = self.decoder.take() {
            let mut forward = decoder.into_inner_unchecked();
            forward
                .inner
                .body_finished(Err(Error::Decode(err.to_string())));
        }
    }
}

trait IntoInnerUnchecked {
    fn into_inner_unchecked(self) -> Forward;
}

impl IntoInnerUnchecked for GzDecoder<Forward> {
    /// The inner receiver, without flushing what the decoder holds (it is corrupt).
    fn into_inner_unchecked(mut self) -> Forward {
        let inner = std::mem::replace(
            &mut self.get_mut().inner,
            Box::new(crate::body::from_fn(|_| {}, |_| {})),
        );
        Forward { inner }
    }
}

impl BodyReceiver for GzipReceiver {
    fn data_received(&mut self, data: Bytes) {
        let Some(decoder) = self.decoder.as_mut() else {
            return;
        };
        if let Err(e) = decoder.write_all(&data) {
            self.fail(e);
        }
    }

    fn body_finished(&mut self, result: Result<HeaderMap, Error>) {
        let Some(mut decoder) = self.decoder.take() else {
            return;
        };
        if result.is_ok()
            && let Err(e) = decoder.try_finish()
        {
            self.decoder = Some(decoder);
            self.fail(e);
            return;
        }
        let mut forward = decoder.into_inner_unchecked();
        forward.inner.body_finished(result);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// Decodes `input` fed in `piece`-sized pieces; the output and how it ended.
    fn decode(input: &[u8], piece: usize) -> (Vec<u8>, Option<Result<(), Error>>) {
        let out = Rc::new(RefCell::new((Vec::new(), None)));
        let (o1, o2) = (out.clone(), out.clone());
        let mut r = GzipReceiver::new(Box::new(crate::body::from_fn(
            move |d| o1.borrow_mut().0.extend_from_slice(&d),
            move |end| o2.borrow_mut().1 = Some(end.map(|_| ())),
        )));
        for chunk in input.chunks(piece) {
            r.data_received(Bytes::copy_from_slice(chunk));
        }
        r.body_finished(Ok(HeaderMap::new()));
        let out = out.borrow();
        (out.0.clone(), out.1.clone())
    }

    #[test]
    fn decodes_in_any_pieces() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let z = gzip(&data);
        for piece in [1, 7, 4096, z.len()] {
            assert_eq!(
                decode(&z, piece),
                (data.clone(), Some(Ok(()))),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn truncated_and_corrupt_streams_fail() {
        let z = gzip(b"hello hello hello hello");
        let (_, end) = decode(&z[..z.len() - 4], 5);
        assert!(matches!(end, Some(Err(Error::Decode(_)))), "{end:?}");
        let mut bad = z.clone();
        let n = bad.len();
        bad[n - 6] ^= 0xff; // the CRC
        let (_, end) = decode(&bad, 3);
        assert!(matches!(end, Some(Err(Error::Decode(_)))), "{end:?}");
    }
}
