//! The event: an immutable record with an id, an optional key, a timestamp and payload bytes,
//! and the one rule for how many bytes of credit it costs.

use std::mem::size_of;

/// One record flowing through a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique within a pipeline run; sinks are idempotent by it.
    pub id: u64,
    /// Optional partitioning or deduplication key.
    pub key: Option<Vec<u8>>,
    /// When the event was created, in microseconds since an epoch its producer chose (the
    /// Unix epoch for anything that crosses a process boundary).
    pub created_us: u64,
    /// The payload, opaque to flowgate.
    pub payload: Vec<u8>,
}

impl Event {
    /// Bytes this event costs in credit and queue capacity: its key and payload plus the fixed
    /// size of the record itself, so that even empty events are not free.
    pub fn size_bytes(&self) -> u64 {
        let key = self.key.as_ref().map_or(0, Vec::len);
        // usize -> u64 cannot truncate on any platform Rust supports (usize <= 64 bits).
        (size_of::<Event>() + key + self.payload.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_counts_key_payload_and_the_record_itself() {
        let bare = Event {
            id: 1,
            key: None,
            created_us: 0,
            payload: Vec::new(),
        };
        let full = Event {
            key: Some(vec![0; 8]),
            payload: vec![0; 100],
            ..bare.clone()
        };
        assert!(bare.size_bytes() > 0, "an empty event still costs memory");
        assert_eq!(full.size_bytes() - bare.size_bytes(), 108);
    }
}
