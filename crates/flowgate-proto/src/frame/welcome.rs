//! `WELCOME` (broker → client, answer to `HELLO`): `version u16 | max_frame u32 | resume_seq u64
//! | idle_timeout_ms u32 | largest_payload u64 | count u32, then count × (from_seq u64, to_seq
//! u64)`: the producer id's latest refused runs (a `reject` topic), so a producer whose
//! connection broke before it read a `REFUSED` still hands those events back.

use bytes::{BufMut, BytesMut};

use crate::error::ProtoError;
use crate::wire::Reader;

/// Accepts a session.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// For producers: the latest runs of this producer id's events the topic refused,
    /// `(from_seq, to_seq)`, oldest first (at most 64); empty otherwise.
    pub refused: Vec<(u64, u64)>,
}

impl Welcome {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u16(self.version);
        buf.put_u32(self.max_frame);
        buf.put_u64(self.resume_seq);
        buf.put_u32(self.idle_timeout_ms);
        buf.put_u64(self.largest_payload);
        buf.put_u32(self.refused.len() as u32);
        for (from, to) in &self.refused {
            buf.put_u64(*from);
            buf.put_u64(*to);
        }
    }

    pub(crate) fn decode_body(mut r: Reader) -> Result<Self, ProtoError> {
        let mut w = Welcome {
            version: r.u16("version")?,
            max_frame: r.u32("max_frame")?,
            resume_seq: r.u64("resume_seq")?,
            idle_timeout_ms: r.u32("idle_timeout_ms")?,
            largest_payload: r.u64("largest_payload")?,
            refused: Vec::new(),
        };
        let n = r.count(16, "refused runs")?;
        for _ in 0..n {
            let run = (r.u64("from_seq")?, r.u64("to_seq")?);
            if run.0 == 0 || run.0 > run.1 {
                return Err(ProtoError::malformed(
                    "WELCOME",
                    format!("the refused run {}..={} is empty", run.0, run.1),
                ));
            }
            w.refused.push(run);
        }
        r.finish()?;
        Ok(w)
    }
}
