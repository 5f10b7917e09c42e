//! The event: an immutable record with an id, an optional key, a timestamp and payload bytes,
//! and the one rule for how many bytes of credit it costs.

use std::fmt;

/// An event's identity: the producer instance that made it and its number in that producer's
/// sequence (1, 2, 3, …). Unique across producers as long as producer ids are (each producer
/// instance picks a fresh random id unless one is given). Sinks are idempotent by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventId {
    /// The producer instance.
    pub producer: u64,
    /// Position in that producer's sequence, from 1.
    pub seq: u64,
}

impl EventId {
    /// The id of event `seq` of `producer`.
    pub const fn new(producer: u64, seq: u64) -> Self {
        EventId { producer, seq }
    }

    /// The key a stage gives an event it made from the event with this id
    /// (`flowgate-origin:<producer hex>:<seq>`), so that sinks further down key their rows by
    /// the first event of the chain, and a stage that sends again after a crash writes nothing
    /// twice.
    pub fn origin_key(&self) -> Vec<u8> {
        format!("{}{self}", ORIGIN_PREFIX).into_bytes()
    }

    /// The origin a key written by [`EventId::origin_key`] names; `None` for any other key.
    pub fn from_origin_key(key: &[u8]) -> Option<EventId> {
        let rest = std::str::from_utf8(key.strip_prefix(ORIGIN_PREFIX.as_bytes())?).ok()?;
        let (producer, seq) = rest.split_once(':')?;
        if producer.len() != 16 {
            return None;
        }
        Some(EventId::new(
            u64::from_str_radix(producer, 16).ok()?,
            seq.parse().ok()?,
        ))
    }
}

/// What an origin key starts with ([`EventId::origin_key`]).
pub const ORIGIN_PREFIX: &str = "flowgate-origin:";

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}", self.producer, self.seq)
    }
}

/// The fixed credit cost of one event beyond its key and payload: its ids, timestamp and buffer
/// headers, rounded. Fixed (not `size_of`) so every platform and every peer counts alike, and
/// so that even an empty event is not free.
pub const RECORD_OVERHEAD_BYTES: u64 = 64;

/// The credit an event with a key of `key_len` and a payload of `payload_len` bytes costs.
pub const fn credit_bytes(key_len: u64, payload_len: u64) -> u64 {
    RECORD_OVERHEAD_BYTES + key_len + payload_len
}

/// One record flowing through a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique within a pipeline; sinks are idempotent by it.
    pub id: EventId,
    /// Optional partitioning or deduplication key.
    pub key: Option<Vec<u8>>,
    /// When the event was created, in microseconds since the Unix epoch.
    pub created_us: u64,
    /// The payload, opaque to flowgate.
    pub payload: Vec<u8>,
}

impl Event {
    /// The first event of the chain this one came from: the id its origin key names (a stage
    /// set it), else its own. Sinks key their rows by it.
    pub fn origin(&self) -> EventId {
        self.key
            .as_deref()
            .and_then(EventId::from_origin_key)
            .unwrap_or(self.id)
    }

    /// Bytes this event costs in credit and queue capacity (see [`credit_bytes`]).
    pub fn size_bytes(&self) -> u64 {
        let key = self.key.as_ref().map_or(0, Vec::len);
        // usize -> u64 cannot truncate on any platform Rust supports (usize <= 64 bits).
        credit_bytes(key as u64, self.payload.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_counts_key_payload_and_the_record_itself() {
        let bare = Event {
            id: EventId::new(1, 1),
            key: None,
            created_us: 0,
            payload: Vec::new(),
        };
        let full = Event {
            key: Some(vec![0; 8]),
            payload: vec![0; 100],
            ..bare.clone()
        };
        assert_eq!(
            bare.size_bytes(),
            RECORD_OVERHEAD_BYTES,
            "an empty event still costs memory"
        );
        assert_eq!(full.size_bytes() - bare.size_bytes(), 108);
    }

    #[test]
    fn an_origin_key_names_the_first_event_and_other_keys_do_not() {
        let origin = EventId::new(0x2a, 17);
        let relayed = Event {
            id: EventId::new(9, 1),
            key: Some(origin.origin_key()),
            created_us: 0,
            payload: Vec::new(),
        };
        assert_eq!(
            relayed.key.as_deref(),
            Some(&b"flowgate-origin:000000000000002a:17"[..])
        );
        assert_eq!(relayed.origin(), origin);
        for other in [
            &b"user-42"[..],
            b"flowgate-origin:2a:17",
            b"flowgate-origin:000000000000002a:x",
        ] {
            let e = Event {
                key: Some(other.to_vec()),
                ..relayed.clone()
            };
            assert_eq!(e.origin(), e.id, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn ids_order_by_producer_then_sequence() {
        assert!(EventId::new(1, 9) < EventId::new(2, 1));
        assert_eq!(EventId::new(255, 7).to_string(), "00000000000000ff:7");
    }
}
