//! Where a topic's accepted events are kept until acknowledged, behind a small trait so a disk
//! log can take the place of memory. The broker confirms a producer's batch only after
//! [`Storage::append`] returns.

use std::io;

use flowgate_core::EventId;
use flowgate_proto::WireEvent;

/// A store for accepted, not yet acknowledged events.
pub trait Storage: Send + Sync {
    /// Makes `events` of `topic` as durable as this store promises. The broker confirms the
    /// batch to its producer only after this returns `Ok`.
    fn append(&self, topic: &str, events: &[WireEvent]) -> io::Result<()>;

    /// Forgets events of `topic` that consumers acknowledged.
    fn remove(&self, topic: &str, acked: &[EventId]) -> io::Result<()>;

    /// A name for reports: what a confirm means with this store.
    fn promise(&self) -> &'static str;
}

/// Memory storage: the topic's own queue is the store, so there is nothing more to do. A
/// confirm means "accepted into the broker's memory"; a broker crash loses what it held.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn append(&self, _topic: &str, _events: &[WireEvent]) -> io::Result<()> {
        Ok(())
    }

    fn remove(&self, _topic: &str, _acked: &[EventId]) -> io::Result<()> {
        Ok(())
    }

    fn promise(&self) -> &'static str {
        "memory: confirmed = held in broker memory; lost if the broker process dies"
    }
}
