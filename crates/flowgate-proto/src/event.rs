//! An event as it travels: `producer u64 | seq u64 | created_us u64 | key_len u32 | key |
//! payload_len u32 | payload`, with `key_len = 0xFFFF_FFFF` meaning "no key". Decoded key and
//! payload share the frame's buffer, so the broker forwards events without copying them.

use bytes::{BufMut, Bytes, BytesMut};
use flowgate_core::{Event, EventId, credit_bytes};

use crate::error::ProtoError;
use crate::wire::Reader;

/// The key length that means "no key".
const NO_KEY: u32 = u32::MAX;

/// One event on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEvent {
    /// Producer instance and sequence number.
    pub id: EventId,
    /// Creation time, microseconds since the Unix epoch.
    pub created_us: u64,
    /// Optional key.
    pub key: Option<Bytes>,
    /// Payload.
    pub payload: Bytes,
}

impl WireEvent {
    /// The fewest bytes an encoded event takes (no key, empty payload).
    pub const MIN_ENCODED: usize = 8 + 8 + 8 + 4 + 4;

    /// The credit this event costs (the same rule as [`Event::size_bytes`]).
    pub fn credit_bytes(&self) -> u64 {
        let key = self.key.as_ref().map_or(0, Bytes::len);
        credit_bytes(key as u64, self.payload.len() as u64)
    }

    /// Bytes this event takes encoded.
    pub fn encoded_len(&self) -> usize {
        Self::MIN_ENCODED + self.key.as_ref().map_or(0, Bytes::len) + self.payload.len()
    }

    /// Appends the encoding to `buf`. Keys and payloads are limited to `u32::MAX - 1` bytes by
    /// the frame-size limit long before this.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64(self.id.producer);
        buf.put_u64(self.id.seq);
        buf.put_u64(self.created_us);
        match &self.key {
            Some(key) => {
                buf.put_u32(key.len() as u32);
                buf.put_slice(key);
            }
            None => buf.put_u32(NO_KEY),
        }
        buf.put_u32(self.payload.len() as u32);
        buf.put_slice(&self.payload);
    }

    /// Reads one event.
    pub fn decode(r: &mut Reader) -> Result<Self, ProtoError> {
        let producer = r.u64("event producer")?;
        let seq = r.u64("event seq")?;
        let created_us = r.u64("event created_us")?;
        let key_len = r.u32("event key length")?;
        let key = if key_len == NO_KEY {
            None
        } else {
            Some(r.bytes(key_len as usize, "event key")?)
        };
        let payload_len = r.u32("event payload length")?;
        let payload = r.bytes(payload_len as usize, "event payload")?;
        Ok(WireEvent {
            id: EventId::new(producer, seq),
            created_us,
            key,
            payload,
        })
    }

    /// The event as an application sees it (copies key and payload out of the frame).
    pub fn to_event(&self) -> Event {
        Event {
            id: self.id,
            key: self.key.as_ref().map(|k| k.to_vec()),
            created_us: self.created_us,
            payload: self.payload.to_vec(),
        }
    }

    /// The wire form of an application's event, taking its buffers without copying them.
    pub fn from_owned(e: Event) -> Self {
        WireEvent {
            id: e.id,
            created_us: e.created_us,
            key: e.key.map(Bytes::from),
            payload: Bytes::from(e.payload),
        }
    }

    /// The wire form of an application's event.
    pub fn from_event(e: &Event) -> Self {
        WireEvent {
            id: e.id,
            created_us: e.created_us,
            key: e.key.as_ref().map(|k| Bytes::copy_from_slice(k)),
            payload: Bytes::copy_from_slice(&e.payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_a_key_and_costs_what_the_core_says() {
        for key in [
            None,
            Some(Bytes::from_static(b"")),
            Some(Bytes::from_static(b"k1")),
        ] {
            let e = WireEvent {
                id: EventId::new(7, 9),
                created_us: 123,
                key,
                payload: Bytes::from_static(b"hello"),
            };
            let mut buf = BytesMut::new();
            e.encode(&mut buf);
            assert_eq!(buf.len(), e.encoded_len());
            let back = WireEvent::decode(&mut Reader::new("T", buf.freeze())).unwrap();
            assert_eq!(back, e);
            assert_eq!(back.credit_bytes(), back.to_event().size_bytes());
        }
    }
}
