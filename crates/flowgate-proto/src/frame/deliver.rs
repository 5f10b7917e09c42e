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

    /// The length (type byte and body, as a frame's length prefix counts it) of a `DELIVER`
    /// of one event whose key and payload take `payload` bytes.
    pub const fn lone_frame_len(payload: u64) -> u64 {
        (1 + 4 + 12 + WireEvent::MIN_ENCODED) as u64 + payload
    }

    /// The largest key plus payload a lone `DELIVER` within `max_frame` can carry. A
    /// `PUBLISH` of the same event is 12 bytes smaller, so it fits too.
    pub const fn largest_lone_payload(max_frame: u32) -> u64 {
        (max_frame as u64).saturating_sub(Self::lone_frame_len(0))
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        Self::encode_items(&self.deliveries, buf);
    }

    fn encode_items(items: &[DeliveredEvent], buf: &mut BytesMut) {
        buf.put_u32(items.len() as u32);
        for d in items {
            buf.put_u64(d.delivery_id);
            buf.put_u32(d.attempt);
            d.event.encode(buf);
        }
    }

    /// Appends a whole `DELIVER` frame for `items` to `buf` without building a [`Deliver`]
    /// (the broker encodes straight from its outbox).
    pub fn encode_frame(items: &[DeliveredEvent], buf: &mut BytesMut) {
        let len = 1
            + 4
            + items
                .iter()
                .map(|d| Self::item_len(&d.event))
                .sum::<usize>();
        buf.reserve(4 + len);
        buf.put_u32(len as u32);
        buf.put_u8(super::FrameType::Deliver as u8);
        Self::encode_items(items, buf);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{FrameDecoder, encode};
    use crate::frame::Frame;
    use bytes::Bytes;
    use flowgate_core::EventId;

    #[test]
    fn encode_frame_writes_the_same_bytes_as_the_frame_enum() {
        let items: Vec<DeliveredEvent> = (1..=3)
            .map(|i| DeliveredEvent {
                delivery_id: i,
                attempt: 2,
                event: WireEvent {
                    id: EventId::new(9, i),
                    created_us: i,
                    key: None,
                    payload: Bytes::from_static(b"abc"),
                },
            })
            .collect();
        let mut direct = BytesMut::new();
        Deliver::encode_frame(&items, &mut direct);
        let mut via_enum = BytesMut::new();
        encode(
            &Frame::Deliver(Deliver {
                deliveries: items.clone(),
            }),
            &mut via_enum,
        );
        assert_eq!(direct, via_enum);
        let decoded = FrameDecoder::new(1 << 20).decode(&mut direct).unwrap();
        assert_eq!(decoded, Some(Frame::Deliver(Deliver { deliveries: items })));
    }
}
