//! `PUBLISH` (producer → broker): `count u32 | event × count`. The events are the producer's
//! own, with consecutive sequence numbers; the batch must fit the producer's credit.

use bytes::{BufMut, BytesMut};

use crate::error::ProtoError;
use crate::event::WireEvent;
use crate::wire::Reader;

/// A batch of events from a producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The events, in sequence order.
    pub events: Vec<WireEvent>,
}

impl Publish {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u32(self.events.len() as u32);
        for e in &self.events {
            e.encode(buf);
        }
    }

    pub(crate) fn decode_body(mut r: Reader) -> Result<Self, ProtoError> {
        let n = r.count(WireEvent::MIN_ENCODED, "event count")?;
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(WireEvent::decode(&mut r)?);
        }
        r.finish()?;
        Ok(Publish { events })
    }

    /// Encoded body length of a batch of these events (for fitting a frame).
    pub fn body_len(events: &[WireEvent]) -> usize {
        4 + events.iter().map(WireEvent::encoded_len).sum::<usize>()
    }
}
