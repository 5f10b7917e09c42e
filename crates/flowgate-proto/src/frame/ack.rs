//! `ACK` (consumer → broker): these deliveries are committed downstream; the broker forgets
//! them and frees their space.

use bytes::BytesMut;

use super::settle::{self, Settle};
use crate::error::ProtoError;
use crate::wire::Reader;

/// Deliveries done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// What is settled.
    pub items: Vec<Settle>,
}

impl Ack {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        settle::encode(&self.items, buf);
    }

    pub(crate) fn decode_body(r: Reader) -> Result<Self, ProtoError> {
        Ok(Ack {
            items: settle::decode(r)?,
        })
    }
}
