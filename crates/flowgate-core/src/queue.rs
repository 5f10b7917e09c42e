//! A queue bounded in events and in bytes, with an explicit [`OverflowPolicy`] and the
//! counters that prove nothing went missing: at every moment
//! `pushed == popped + dropped + queued`.
//!
//! The queue only decides; it never waits. Under [`OverflowPolicy::Block`] a push that does
//! not fit hands the item back ([`Push::Full`]) and the caller waits for space however it
//! likes (an async task on a notification, a test by popping).

use std::collections::VecDeque;
use std::fmt;

use crate::credit::Credit;

/// What a stage does with an item it has no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OverflowPolicy {
    /// Hand the item back and let the producer wait until there is room: backpressure. Nothing
    /// is lost and memory stays bounded; the price is that a slow consumer slows the producer.
    /// The default, because it is the only policy that loses nothing.
    #[default]
    Block,
    /// Discard the incoming item and keep what is queued. The producer never waits; the
    /// newest data is lost first. Suits streams where old data is still worth processing in
    /// order (audit trails) and a gap at the end is acceptable. Every drop is counted.
    DropNewest,
    /// Evict the oldest queued items to make room for the new one. The producer never waits;
    /// the queue always holds the freshest data. Suits telemetry and prices, where a stale
    /// value is worth less than a current one. Every eviction is counted.
    DropOldest,
    /// Hand the item back as an error the producer must handle (e.g. an HTTP 429). Nothing is
    /// silently lost, and nobody waits; the producer decides to retry, shed or fail.
    Reject,
}

impl OverflowPolicy {
    /// Every policy, in documentation order.
    pub const ALL: [OverflowPolicy; 4] = [
        OverflowPolicy::Block,
        OverflowPolicy::DropNewest,
        OverflowPolicy::DropOldest,
        OverflowPolicy::Reject,
    ];

    /// The kebab-case name used on the command line and in reports.
    pub const fn name(&self) -> &'static str {
        match self {
            OverflowPolicy::Block => "block",
            OverflowPolicy::DropNewest => "drop-newest",
            OverflowPolicy::DropOldest => "drop-oldest",
            OverflowPolicy::Reject => "reject",
        }
    }
}

impl fmt::Display for OverflowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of [`BoundedQueue::push`]. Every variant that does not keep the item either
/// hands it back or says it was dropped and counted.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an item handed back is lost if ignored"]
pub enum Push<T> {
    /// The item was queued.
    Queued,
    /// The item was queued after evicting this many of the oldest items (drop-oldest).
    QueuedEvicting(u64),
    /// The item was discarded and counted (drop-newest).
    DroppedNewest,
    /// No room under [`OverflowPolicy::Block`]: the item is handed back; wait and retry.
    Full(T),
    /// No room under [`OverflowPolicy::Reject`]: the item is handed back as a refusal.
    Rejected(T),
    /// The item alone is larger than the queue's byte capacity; no policy can ever queue it.
    TooLarge(T),
}

/// Counters for a queue's whole life. `pushed == popped + dropped() + queued` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Items the queue took responsibility for: queued, or dropped by its policy.
    pub pushed: u64,
    /// Items taken out by the consumer side.
    pub popped: u64,
    /// Incoming items discarded under drop-newest.
    pub dropped_newest: u64,
    /// Queued items evicted under drop-oldest.
    pub dropped_oldest: u64,
    /// Items handed back under reject or as too large (the producer still holds them).
    pub rejected: u64,
    /// Items queued now.
    pub queued: u64,
    /// Bytes queued now.
    pub queued_bytes: u64,
    /// The most items ever queued at once.
    pub peak_events: u64,
    /// The most bytes ever queued at once.
    pub peak_bytes: u64,
}

impl QueueStats {
    /// Items dropped by policy, either end.
    pub const fn dropped(&self) -> u64 {
        self.dropped_newest + self.dropped_oldest
    }
}

/// A FIFO bounded by [`Credit`]-style capacity in events and bytes.
///
/// Use [`Credit::UNBOUNDED`] as the capacity for a queue without a bound (the naive pipeline).
#[derive(Debug)]
pub struct BoundedQueue<T> {
    items: VecDeque<(T, u64)>,
    capacity: Credit,
    policy: OverflowPolicy,
    stats: QueueStats,
}

impl<T> BoundedQueue<T> {
    /// An empty queue. A capacity of zero in either dimension can hold nothing; it is allowed
    /// (every push is then "full") but rarely what anyone wants.
    pub fn new(capacity: Credit, policy: OverflowPolicy) -> Self {
        BoundedQueue {
            items: VecDeque::new(),
            capacity,
            policy,
            stats: QueueStats::default(),
        }
    }

    /// The capacity in events and bytes.
    pub fn capacity(&self) -> Credit {
        self.capacity
    }

    /// The overflow policy.
    pub fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// Items queued now.
    pub fn len(&self) -> u64 {
        self.stats.queued
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes queued now.
    pub fn bytes(&self) -> u64 {
        self.stats.queued_bytes
    }

    /// Room left, in events and bytes.
    pub fn free(&self) -> Credit {
        self.capacity
            .saturating_sub(Credit::new(self.stats.queued, self.stats.queued_bytes))
    }

    /// Lifetime counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// True when an item of `bytes` bytes fits without dropping anything.
    pub fn fits(&self, bytes: u64) -> bool {
        self.free().admits(bytes)
    }

    /// Offers an item of `bytes` bytes; what happens when it does not fit is the policy's
    /// decision.
    pub fn push(&mut self, item: T, bytes: u64) -> Push<T> {
        if bytes > self.capacity.bytes || self.capacity.events == 0 {
            self.stats.rejected += 1;
            return Push::TooLarge(item);
        }
        if self.fits(bytes) {
            self.enqueue(item, bytes);
            return Push::Queued;
        }
        match self.policy {
            OverflowPolicy::Block => Push::Full(item),
            OverflowPolicy::Reject => {
                self.stats.rejected += 1;
                Push::Rejected(item)
            }
            OverflowPolicy::DropNewest => {
                self.stats.pushed += 1;
                self.stats.dropped_newest += 1;
                Push::DroppedNewest
            }
            OverflowPolicy::DropOldest => {
                let mut evicted = 0;
                while !self.fits(bytes) {
                    // Cannot run dry: the item fits an empty queue (checked above).
                    let Some((_, old_bytes)) = self.items.pop_front() else {
                        break;
                    };
                    self.stats.queued -= 1;
                    self.stats.queued_bytes -= old_bytes;
                    self.stats.dropped_oldest += 1;
                    evicted += 1;
                }
                self.enqueue(item, bytes);
                Push::QueuedEvicting(evicted)
            }
        }
    }

    /// Takes the oldest item and its size.
    pub fn pop(&mut self) -> Option<(T, u64)> {
        let (item, bytes) = self.items.pop_front()?;
        self.stats.popped += 1;
        self.stats.queued -= 1;
        self.stats.queued_bytes -= bytes;
        Some((item, bytes))
    }

    /// Takes the oldest items while they fit within `limit` (events and bytes), appending them
    /// to `out`. Returns what was taken. An item larger than `limit.bytes` is never taken, so
    /// a consumer's byte limit must be at least the largest item it accepts.
    pub fn pop_within(&mut self, limit: Credit, out: &mut Vec<T>) -> Credit {
        let mut taken = Credit::ZERO;
        while taken.events < limit.events {
            match self.items.front() {
                Some((_, bytes)) if taken.bytes.saturating_add(*bytes) <= limit.bytes => {}
                _ => break,
            }
            let Some((item, bytes)) = self.pop() else {
                break;
            };
            out.push(item);
            taken = taken.saturating_add(Credit::new(1, bytes));
        }
        taken
    }

    fn enqueue(&mut self, item: T, bytes: u64) {
        self.items.push_back((item, bytes));
        self.stats.pushed += 1;
        self.stats.queued += 1;
        self.stats.queued_bytes += bytes;
        self.stats.peak_events = self.stats.peak_events.max(self.stats.queued);
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.stats.queued_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(events: u64, bytes: u64, policy: OverflowPolicy) -> BoundedQueue<u32> {
        BoundedQueue::new(Credit::new(events, bytes), policy)
    }

    #[test]
    fn block_hands_the_item_back_when_full_and_counts_nothing() {
        let mut q = queue(2, 100, OverflowPolicy::Block);
        assert_eq!(q.push(1, 10), Push::Queued);
        assert_eq!(q.push(2, 10), Push::Queued);
        assert_eq!(q.push(3, 10), Push::Full(3));
        assert_eq!(q.stats().pushed, 2);
        assert_eq!(q.stats().dropped(), 0);
    }

    #[test]
    fn byte_capacity_binds_before_event_capacity() {
        let mut q = queue(100, 25, OverflowPolicy::Block);
        assert_eq!(q.push(1, 10), Push::Queued);
        assert_eq!(q.push(2, 10), Push::Queued);
        assert_eq!(q.push(3, 10), Push::Full(3));
        assert_eq!(q.bytes(), 20);
    }

    #[test]
    fn drop_newest_keeps_the_queue_and_counts_the_drop() {
        let mut q = queue(1, 100, OverflowPolicy::DropNewest);
        assert_eq!(q.push(1, 10), Push::Queued);
        assert_eq!(q.push(2, 10), Push::DroppedNewest);
        assert_eq!(q.pop(), Some((1, 10)));
        assert_eq!(q.stats().dropped_newest, 1);
    }

    #[test]
    fn drop_oldest_evicts_as_many_as_the_bytes_need() {
        let mut q = queue(10, 30, OverflowPolicy::DropOldest);
        for i in 0..3 {
            assert_eq!(q.push(i, 10), Push::Queued);
        }
        assert_eq!(q.push(9, 25), Push::QueuedEvicting(3));
        assert_eq!(q.pop(), Some((9, 25)));
        assert_eq!(q.stats().dropped_oldest, 3);
    }

    #[test]
    fn reject_hands_back_and_counts_a_rejection() {
        let mut q = queue(1, 100, OverflowPolicy::Reject);
        assert_eq!(q.push(1, 1), Push::Queued);
        assert_eq!(q.push(2, 1), Push::Rejected(2));
        assert_eq!(q.stats().rejected, 1);
        assert_eq!(q.stats().pushed, 1);
    }

    #[test]
    fn an_item_larger_than_the_byte_capacity_is_too_large_under_every_policy() {
        for policy in OverflowPolicy::ALL {
            let mut q = queue(10, 100, policy);
            assert_eq!(q.push(7, 101), Push::TooLarge(7), "{policy}");
            assert!(q.is_empty());
        }
    }

    #[test]
    fn pop_within_respects_both_limits_and_never_splits_an_item() {
        let mut q = queue(10, 1000, OverflowPolicy::Block);
        for i in 0..5 {
            assert_eq!(q.push(i, 40), Push::Queued);
        }
        let mut out = Vec::new();
        assert_eq!(
            q.pop_within(Credit::new(10, 100), &mut out),
            Credit::new(2, 80)
        );
        assert_eq!(out, vec![0, 1]);
        out.clear();
        assert_eq!(
            q.pop_within(Credit::new(1, 1000), &mut out),
            Credit::new(1, 40)
        );
        assert_eq!(out, vec![2]);
    }

    #[test]
    fn unbounded_queue_never_refuses() {
        let mut q = BoundedQueue::new(Credit::UNBOUNDED, OverflowPolicy::Block);
        for i in 0..10_000 {
            assert_eq!(q.push(i, 1_000_000), Push::Queued);
        }
        assert_eq!(q.stats().peak_events, 10_000);
    }
}
