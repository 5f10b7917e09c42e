//! Where a topic's accepted events are kept until acknowledged, behind a small trait so the
//! disk log ([`DiskStorage`](crate::DiskStorage)) can take the place of memory. The broker
//! confirms a producer's batch only after the [`Durable`] that [`Storage::append`] returned
//! resolves.

use std::io;
use std::sync::Arc;

use flowgate_core::{Credit, EventId};
use flowgate_proto::WireEvent;
use tokio::sync::oneshot;

/// A topic's events as a store found them at start-up.
#[derive(Debug, Default)]
pub struct RecoveredTopic {
    /// The topic.
    pub name: String,
    /// Accepted, unacknowledged events, in acceptance order, each with the attempt its next
    /// delivery is: the first ones, as many as the topic keeps in memory.
    pub events: Vec<(WireEvent, u32)>,
    /// The rest, left on disk to be loaded when there is room (events, credit bytes).
    pub spilled: Credit,
    /// Every producer's highest accepted sequence number, as (producer id, seq).
    pub high_water: Vec<(u64, u64)>,
    /// Records that were torn or failed their checksum and were cut.
    pub corrupt_records: u64,
    /// Bytes cut with them.
    pub truncated_bytes: u64,
}

/// Resolves when an append is as durable as its store promises.
#[derive(Debug)]
pub struct Durable(Option<oneshot::Receiver<io::Result<()>>>);

impl Durable {
    /// Already durable.
    pub fn now() -> Self {
        Durable(None)
    }

    /// Durable when `rx` says so.
    pub fn later(rx: oneshot::Receiver<io::Result<()>>) -> Self {
        Durable(Some(rx))
    }

    /// Waits for the store's answer.
    pub async fn wait(self) -> io::Result<()> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the storage writer stopped"))),
        }
    }
}

/// Events read back from a store, each with the attempt its next delivery is: the answer to
/// [`Storage::load`].
pub type LoadDone = Box<dyn FnOnce(Vec<(WireEvent, u32)>) + Send>;

/// A store for accepted, not yet acknowledged events.
pub trait Storage: Send + Sync {
    /// What a topic may hold on disk and in memory together, when the store keeps events
    /// beyond memory (the topic then keeps its configured capacity in memory and spills the
    /// rest); `None` when memory is all there is, and appends need not be handed over.
    fn capacity(&self, topic: &str) -> Option<Credit>;

    /// What the store holds from before this start, by topic; at most `memory_of(topic)` of
    /// each topic's events are read into memory, the rest counted as spilled.
    fn recover(&self, memory_of: &dyn Fn(&str) -> Credit) -> io::Result<Vec<RecoveredTopic>>;

    /// Records events `topic` just accepted; the last `spilled` of them the topic keeps only
    /// here. Called under the topic's lock, before the events can be delivered, so every ack
    /// is recorded after its event. An empty slice is a barrier: it resolves once everything
    /// recorded before it is durable.
    ///
    /// `mark` is the batch's last event when the topic stored none of its tail (its policy
    /// dropped or refused it, and it is confirmed all the same): the store keeps it as the
    /// producer's high-water mark, durable with the batch, so a restart resumes the producer
    /// past it.
    fn append(
        &self,
        topic: &str,
        events: &[WireEvent],
        spilled: usize,
        mark: Option<EventId>,
    ) -> Durable;

    /// Reads back the oldest spilled events of `topic`, within `room` (at least one), and
    /// hands them to `done` from another thread: it is called with the topic's lock held, and
    /// `done` takes that lock.
    fn load(&self, topic: &str, room: Credit, done: LoadDone);

    /// Records acknowledgements: these events need not be kept.
    fn ack(&self, topic: &str, acked: &[EventId]);

    /// Bytes `topic` can still take (a disk log's limit minus its size); `None`: no limit
    /// beyond the topic's capacity.
    fn room(&self, topic: &str) -> Option<u64>;

    /// These events' next deliveries are later attempts (`Topic::take_requeued`); a store
    /// that keeps them hands them back at a restart, so the dead-letter count goes on.
    fn record_attempts(&self, _topic: &str, _attempts: Vec<(EventId, u32)>) {}

    /// The topic forgot these producer ids' dedup marks; a store that keeps marks may too.
    fn forget_producers(&self, _topic: &str, _producers: Vec<u64>) {}

    /// Bytes of `topic`'s appends held in memory while they wait to be written.
    fn queued_bytes(&self, topic: &str) -> u64;

    /// Registers who to tell, by topic name, when a topic's [`Storage::room`] grows or its
    /// [`Storage::queued_bytes`] shrink on the store's own (acknowledged segments removed,
    /// queued appends written): the broker then grants again at once.
    /// A store whose room never grows by itself ignores it.
    fn on_room_freed(&self, _notify: RoomFreed) {}

    /// The broker has stopped: writers stop too, and nothing more is written (a store that
    /// retries a failed write must not retry it into files a restarted broker now owns).
    /// Returns once they have stopped, so it may block for a round of writing: call it off
    /// the async runtime's threads.
    fn close(&self) {}

    /// Why `topic`'s store cannot write now (a full disk, say), while it tries again; `None`
    /// when it writes.
    fn failure(&self, _topic: &str) -> Option<String> {
        None
    }

    /// What a confirm means with this store.
    fn promise(&self) -> &'static str;
}

/// Told the name of a topic whose store has more room than before.
pub type RoomFreed = Arc<dyn Fn(&str) + Send + Sync>;

/// Memory storage: the topic's own queue is the store, so there is nothing more to do. A
/// confirm means "accepted into the broker's memory"; a broker crash loses what it held.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn capacity(&self, _topic: &str) -> Option<Credit> {
        None
    }

    fn recover(&self, _memory_of: &dyn Fn(&str) -> Credit) -> io::Result<Vec<RecoveredTopic>> {
        Ok(Vec::new())
    }

    fn append(
        &self,
        _topic: &str,
        _events: &[WireEvent],
        _spilled: usize,
        _mark: Option<EventId>,
    ) -> Durable {
        Durable::now()
    }

    fn load(&self, _topic: &str, _room: Credit, _done: LoadDone) {
        // Never asked: without a capacity beyond memory, topics do not spill.
    }

    fn ack(&self, _topic: &str, _acked: &[EventId]) {}

    fn room(&self, _topic: &str) -> Option<u64> {
        None
    }

    fn queued_bytes(&self, _topic: &str) -> u64 {
        0
    }

    fn promise(&self) -> &'static str {
        "memory: confirmed = held in broker memory; lost if the broker process dies"
    }
}
