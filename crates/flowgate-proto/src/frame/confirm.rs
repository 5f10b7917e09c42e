//! `CONFIRM` (broker → producer): `up_to_seq u64`. Every event of this producer id with a
//! sequence number up to here is held by the broker as its storage mode promises. Cumulative.

use bytes::{BufMut, BytesMut};

use crate::error::ProtoError;
use crate::wire::Reader;

/// The broker holds the producer's events up to `up_to_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    /// Highest sequence number held.
    pub up_to_seq: u64,
}

impl Confirm {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u64(self.up_to_seq);
    }

    pub(crate) fn decode_body(mut r: Reader) -> Result<Self, ProtoError> {
        let c = Confirm {
            up_to_seq: r.u64("up_to_seq")?,
        };
        r.finish()?;
        Ok(c)
    }
}
