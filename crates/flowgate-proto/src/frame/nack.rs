//! `NACK` (consumer → broker): these deliveries were not processed; the broker redelivers
//! them (attempt + 1), first in line.

use bytes::BytesMut;

use super::settle::{self, Settle};
use crate::error::ProtoError;
use crate::wire::Reader;

/// Deliveries refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    /// What is refused.
    pub items: Vec<Settle>,
}

impl Nack {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        settle::encode(&self.items, buf);
    }

    pub(crate) fn decode_body(r: Reader) -> Result<Self, ProtoError> {
        Ok(Nack {
            items: settle::decode(r)?,
        })
    }
}
