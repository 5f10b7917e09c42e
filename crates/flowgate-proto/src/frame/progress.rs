//! `PROGRESS` (consumer → broker): these deliveries are still being worked on (a long
//! commit); the broker restarts their ack deadline instead of taking them back.

use bytes::BytesMut;

use super::settle::{self, Settle};
use crate::error::ProtoError;
use crate::wire::Reader;

/// Deliveries in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What is still being worked on.
    pub items: Vec<Settle>,
}

impl Progress {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        settle::encode(&self.items, buf);
    }

    pub(crate) fn decode_body(r: Reader) -> Result<Self, ProtoError> {
        Ok(Progress {
            items: settle::decode(r)?,
        })
    }
}
