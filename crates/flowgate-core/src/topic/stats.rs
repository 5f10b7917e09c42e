//! What a topic reports: [`TopicStats`], its counters and levels, and its state as a pipeline
//! stage.

use super::{Group, Topic, TopicPolicy};
use crate::credit::Credit;
use crate::stage::StageState;

/// Counters over the topic's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicStats {
    /// What the topic holds at most (held and promised), in events and bytes.
    pub capacity: Credit,
    /// What it does when full, and how old an event may get.
    pub policy: TopicPolicy,
    /// Producers attached now.
    pub producers: u64,
    /// Consumers attached now, of every group.
    pub consumers: u64,
    /// Events accepted from producers.
    pub accepted: u64,
    /// Retried events dropped as duplicates.
    pub duplicates: u64,
    /// Deliveries made (first attempts and redeliveries).
    pub delivered: u64,
    /// Of those, redeliveries.
    pub redelivered: u64,
    /// Acks taken, summed over the groups.
    pub acked: u64,
    /// Events nacked by consumers.
    pub nacked: u64,
    /// Deliveries taken back because their ack deadline passed.
    pub ack_timeouts: u64,
    /// Events in memory that a blocking group has still to ack, each counted once: what the
    /// capacity bounds (with `on_disk`).
    pub held: u64,
    /// Their bytes.
    pub held_bytes: u64,
    /// Events ready now, summed over the groups (an event two groups have still to read
    /// counts twice).
    pub ready: u64,
    /// Their bytes.
    pub ready_bytes: u64,
    /// Events delivered and not yet acked, summed over the groups.
    pub unacked: u64,
    /// Their bytes.
    pub unacked_bytes: u64,
    /// Events best-effort groups skipped, more than their max lag behind, summed.
    pub skipped: u64,
    /// New events the policy dropped because the topic was full (drop-newest, and drop-oldest
    /// when nothing could give way).
    pub dropped_newest: u64,
    /// Held events dropped to make room for new ones (drop-oldest).
    pub dropped_oldest: u64,
    /// New events refused, the producer told (reject).
    pub rejected: u64,
    /// Waiting events replaced by a newer one with the same key (conflate).
    pub conflated: u64,
    /// Events that waited past the max age for a group, summed over the groups.
    pub expired: u64,
    /// Consumer groups the topic has (the lobby, before the first, is none).
    pub groups: u64,
    /// Credit granted to producers and not yet used.
    pub producer_credit: Credit,
    /// Outstanding consumer demand, summed.
    pub consumer_demand: Credit,
    /// The most events held at once.
    pub peak_events: u64,
    /// The most bytes held at once.
    pub peak_bytes: u64,
    /// Events accepted straight to disk, over the topic's life (spill mode).
    pub spilled: u64,
    /// Events accepted and held only on disk now (spill mode).
    pub on_disk: u64,
    /// Their bytes.
    pub on_disk_bytes: u64,
    /// Producer ids whose dedup high-water mark the topic remembers now.
    pub producer_ids: u64,
    /// Producer ids forgotten, idle past the TTL or pushed out by the cap, over the topic's
    /// life.
    pub producer_ids_forgotten: u64,
}

impl<T: Clone> Topic<T> {
    /// Counters and current levels, the topic's whole (per group: [`Topic::groups`]). `held`
    /// and the peaks are what memory holds; `on_disk` what only the disk does.
    pub fn stats(&self) -> TopicStats {
        TopicStats {
            capacity: self.capacity,
            policy: self.policy,
            producers: self.producers.len() as u64,
            consumers: self.members.len() as u64,
            producer_ids: self.marks.len() as u64,
            producer_ids_forgotten: self.marks.forgotten_total(),
            on_disk: self.on_disk.get().events,
            on_disk_bytes: self.on_disk.get().bytes,
            held: self.held_total.get().events,
            held_bytes: self.held_total.get().bytes,
            ready: self.sum(|g| g.ready_total.get().events),
            ready_bytes: self.sum(|g| g.ready_total.get().bytes),
            unacked: self.sum(|g| g.unacked_total.get().events),
            unacked_bytes: self.sum(|g| g.unacked_total.get().bytes),
            skipped: self.sum(|g| g.counts.skipped),
            expired: self.sum(|g| g.counts.expired),
            groups: self.groups.iter().filter(|g| g.name.is_some()).count() as u64,
            producer_credit: self.granted_total.get(),
            consumer_demand: self
                .groups
                .iter()
                .flat_map(|g| g.consumers.values())
                .fold(Credit::ZERO, |acc, c| acc.saturating_add(c.demand)),
            ..self.stats
        }
    }

    fn sum(&self, f: impl Fn(&Group<T>) -> u64) -> u64 {
        self.groups.iter().map(f).sum()
    }

    /// What the topic is doing as a pipeline stage, by [`StageState::of_bounded_stage`]: a
    /// producer waiting here is blocked with no room for its next event, since the grant rules
    /// grant a blocked producer whenever there is. Call after [`Topic::poll_actions`], which
    /// carries out the grant rules.
    pub fn stage_state(&self) -> StageState {
        StageState::of_bounded_stage(
            self.held().is_zero(),
            self.producers.values().any(|p| p.waiting),
        )
    }

    /// Records the most held in memory so far.
    pub(super) fn note_peak(&mut self) {
        let held = self.held_total.get();
        self.stats.peak_events = self.stats.peak_events.max(held.events);
        self.stats.peak_bytes = self.stats.peak_bytes.max(held.bytes);
    }
}
