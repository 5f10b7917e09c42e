//! `REQUEST` (consumer → broker): `events u64 | bytes u64`, added to the consumer's demand
//! (cumulative, saturating at `u64::MAX` = unbounded). Zero events is `zero-request`.

use bytes::BytesMut;
use flowgate_core::Credit;

use super::credit_pair;
use crate::error::ProtoError;
use crate::wire::Reader;

/// More demand from a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// How much more the consumer will take.
    pub credit: Credit,
}

impl Request {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        credit_pair::encode(self.credit, buf);
    }

    pub(crate) fn decode_body(r: Reader) -> Result<Self, ProtoError> {
        Ok(Request {
            credit: credit_pair::decode(r)?,
        })
    }
}
