//! Bounds-checked reading of a frame body: every read says which frame and which field ran
//! short, and nothing is ever allocated from a length the peer claims before the bytes are
//! known to be there.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtoError;

/// Reads fields from one frame's body.
pub struct Reader {
    frame: &'static str,
    body: Bytes,
}

impl Reader {
    /// A reader over `body` of a frame named `frame` (for error messages).
    pub fn new(frame: &'static str, body: Bytes) -> Self {
        Reader { frame, body }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.body.remaining()
    }

    fn need(&self, n: usize, field: &str) -> Result<(), ProtoError> {
        if self.body.remaining() < n {
            return Err(ProtoError::malformed(
                self.frame,
                format!("{field} needs {n} bytes, {} left", self.body.remaining()),
            ));
        }
        Ok(())
    }

    /// A `u8`.
    pub fn u8(&mut self, field: &str) -> Result<u8, ProtoError> {
        self.need(1, field)?;
        Ok(self.body.get_u8())
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, field: &str) -> Result<u16, ProtoError> {
        self.need(2, field)?;
        Ok(self.body.get_u16())
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, field: &str) -> Result<u32, ProtoError> {
        self.need(4, field)?;
        Ok(self.body.get_u32())
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, field: &str) -> Result<u64, ProtoError> {
        self.need(8, field)?;
        Ok(self.body.get_u64())
    }

    /// `n` bytes, shared with the frame (no copy).
    pub fn bytes(&mut self, n: usize, field: &str) -> Result<Bytes, ProtoError> {
        self.need(n, field)?;
        Ok(self.body.split_to(n))
    }

    /// A `u16`-length-prefixed UTF-8 string.
    pub fn str16(&mut self, field: &str) -> Result<String, ProtoError> {
        let len = usize::from(self.u16(field)?);
        let raw = self.bytes(len, field)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| ProtoError::malformed(self.frame, format!("{field} is not UTF-8")))
    }

    /// A count of items, each at least `min_item` bytes: refused if the body cannot hold
    /// that many, so a hostile count never sizes an allocation.
    pub fn count(&mut self, min_item: usize, field: &str) -> Result<usize, ProtoError> {
        let n = self.u32(field)? as usize;
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(ProtoError::malformed(
                self.frame,
                format!(
                    "{field} claims {n} items but only {} bytes follow",
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<(), ProtoError> {
        if self.body.has_remaining() {
            return Err(ProtoError::malformed(
                self.frame,
                format!("{} unexpected trailing bytes", self.body.remaining()),
            ));
        }
        Ok(())
    }
}

/// Writes a `u16`-length-prefixed string; strings longer than `u16::MAX` are cut at a
/// character boundary (callers validate names long before this).
pub fn put_str16(buf: &mut BytesMut, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.put_u16(end as u16);
    buf.put_slice(&s.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_body_names_the_field() {
        let mut r = Reader::new("CREDIT", Bytes::from_static(&[0, 0, 0]));
        let err = r.u64("events").unwrap_err().to_string();
        assert_eq!(err, "malformed CREDIT frame: events needs 8 bytes, 3 left");
    }

    #[test]
    fn a_hostile_count_is_refused_before_any_allocation() {
        let mut r = Reader::new("ACK", Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1, 2]));
        assert!(
            r.count(12, "deliveries")
                .unwrap_err()
                .to_string()
                .contains("claims 4294967295")
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let r = Reader::new("HEARTBEAT", Bytes::from_static(&[1]));
        assert!(r.finish().is_err());
    }
}
