//! `WELCOME` (broker → client, answer to `HELLO`): `version u16 | max_frame u32 | resume_seq u64
//! | idle_timeout_ms u32 | largest_payload u64`.

use bytes::{BufMut, BytesMut};

use crate::error::ProtoError;
use crate::wire::Reader;

/// Accepts a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// The protocol version the session speaks.
    pub version: u16,
    /// The largest frame the broker accepts.
    pub max_frame: u32,
    /// For producers: the highest sequence number the broker already holds for this producer
    /// id; the producer resends from the next one. 0 for consumers and new producers.
    pub resume_seq: u64,
    /// The broker disconnects a client it hears nothing from for this long; clients send
    /// `HEARTBEAT` well within it.
    pub idle_timeout_ms: u32,
    /// The largest key plus payload one event of this topic may carry: what a lone `DELIVER`
    /// within the broker's frame limit can hold, and no more than the topic can ever grant.
    pub largest_payload: u64,
}

impl Welcome {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u16(self.version);
        buf.put_u32(self.max_frame);
        buf.put_u64(self.resume_seq);
        buf.put_u32(self.idle_timeout_ms);
        buf.put_u64(self.largest_payload);
    }

    pub(crate) fn decode_body(mut r: Reader) -> Result<Self, ProtoError> {
        let w = Welcome {
            version: r.u16("version")?,
            max_frame: r.u32("max_frame")?,
            resume_seq: r.u64("resume_seq")?,
            idle_timeout_ms: r.u32("idle_timeout_ms")?,
            largest_payload: r.u64("largest_payload")?,
        };
        r.finish()?;
        Ok(w)
    }
}
