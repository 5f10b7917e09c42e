//! `DELIVER` (broker → consumer): `count u32 | (delivery_id u64 | attempt u32 | event) × count`,
//! never more than the consumer's outstanding demand.

use bytes::{BufMut, BytesMut};

use crate::error::ProtoError;
use crate::event::WireEvent;
use crate::wire::Reader;

/// One delivered event and the handle to settle it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredEvent {
    /// Stable for the event's life in the topic.
    pub delivery_id: u64,
    /// 1 on first delivery, +1 on each redelivery; an ack must name the current attempt.
    pub attempt: u32,
    /// The event.
    pub event: WireEvent,
}

/// A batch of deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    /// The deliveries, in queue order.
    pub deliveries: Vec<DeliveredEvent>,
}

impl Deliver {
    /// Bytes one delivery adds to a frame body.
    pub fn item_len(event: &WireEvent) -> usize {
        12 + event.encoded_len()
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u32(self.deliveries.len() as u32);
        for d in &self.deliveries {
            buf.put_u64(d.delivery_id);
            buf.put_u32(d.attempt);
            d.event.encode(buf);
        }
    }

    pub(crate) fn decode_body(mut r: Reader) -> Result<Self, ProtoError> {
        let n = r.count(12 + WireEvent::MIN_ENCODED, "delivery count")?;
        let mut deliveries = Vec::with_capacity(n);
        for _ in 0..n {
            deliveries.push(DeliveredEvent {
                delivery_id: r.u64("delivery_id")?,
                attempt: r.u32("attempt")?,
                event: WireEvent::decode(&mut r)?,
            });
        }
        r.finish()?;
        Ok(Deliver { deliveries })
    }
}
