//! `REFUSED` (broker → producer): `from_seq u64 | to_seq u64 | reason str16`. The broker did not
//! store this producer's events `from_seq..=to_seq` (a topic whose policy is `reject` was full)
//! and never will: the producer hands them back to its caller. Sent before the `CONFIRM` that
//! covers them, so the producer still holds them when it reads it.

use bytes::{BufMut, BytesMut};

use crate::error::ProtoError;
use crate::wire::{Reader, put_str16};

/// Events the broker refused, by sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The first refused.
    pub from_seq: u64,
    /// The last refused.
    pub to_seq: u64,
    /// Why, for humans.
    pub reason: String,
}

impl Refused {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u64(self.from_seq);
        buf.put_u64(self.to_seq);
        put_str16(buf, &self.reason);
    }

    pub(crate) fn decode_body(mut r: Reader) -> Result<Self, ProtoError> {
        let f = Refused {
            from_seq: r.u64("from_seq")?,
            to_seq: r.u64("to_seq")?,
            reason: r.str16("reason")?,
        };
        r.finish()?;
        if f.from_seq == 0 || f.from_seq > f.to_seq {
            return Err(ProtoError::malformed(
                "REFUSED",
                format!("the range {}..={} is empty", f.from_seq, f.to_seq),
            ));
        }
        Ok(f)
    }
}
