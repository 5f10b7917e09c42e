//! `CREDIT` (broker → producer): `events u64 | bytes u64`, added to the producer's credit
//! (cumulative; `u64::MAX` means unbounded in that dimension).

use bytes::BytesMut;
use flowgate_core::Credit;

use super::credit_pair;
use crate::error::ProtoError;
use crate::wire::Reader;

/// More credit for a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// How much more may be published.
    pub credit: Credit,
}

impl Grant {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        credit_pair::encode(self.credit, buf);
    }

    pub(crate) fn decode_body(r: Reader) -> Result<Self, ProtoError> {
        Ok(Grant {
            credit: credit_pair::decode(r)?,
        })
    }
}
