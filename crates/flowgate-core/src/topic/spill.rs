//! Spill mode: with a disk log holding every accepted event, the topic keeps at most its
//! memory bound in memory, counts the rest "on disk", and asks for them back in acceptance
//! order ([`Action::Load`]); and after a restart, what the log recovered is put back.
//!
//! The topic owns what it has accepted: its on-disk count and its dedup high-water marks
//! cover events whose appends may still wait in the log's queue. The log owns what it has
//! written (its own spilled count, where reads stop; its high-water marks, what its
//! checkpoints say). They meet at a restart, when the log's recovery becomes the topic's
//! [`Topic::restore`] and [`Topic::restore_spilled`].

use super::{Action, Topic};
use crate::credit::Credit;

impl<T: Clone> Topic<T> {
    /// Spill mode: keep at most `memory` of held events in memory; events beyond it
    /// stay only in the disk log (the store keeps every accepted event) until there is room.
    /// The capacity given to [`Topic::new`] then bounds what is held on disk and in memory
    /// together.
    pub fn spill_beyond(&mut self, memory: Credit) {
        self.memory = Some(memory);
    }

    /// Spill mode, after a restart: `on_disk` more accepted events wait in the log, after
    /// those given to [`Topic::restore`].
    pub fn restore_spilled(&mut self, on_disk: Credit) {
        let booked = self.on_disk.add(on_disk);
        self.book(booked);
    }

    /// The answer to [`Action::Load`]: the oldest on-disk events, in acceptance order, with
    /// their bytes and the attempt their next delivery is (1 unless the store recorded
    /// earlier ones, [`Topic::record_attempts`]). The count on disk goes down by exactly
    /// these: events spilled while the load was under way are still on disk even if the
    /// store read everything it had then.
    pub fn loaded(&mut self, items: Vec<(T, u64, u32)>) {
        self.loading = false;
        for (item, bytes, attempt) in items {
            let cost = Credit::new(1, bytes);
            let booked = self.on_disk.take(cost);
            self.book(booked);
            self.push_ready(item, bytes, attempt);
        }
        self.note_peak();
    }

    /// Puts back what a disk log recovered: the producers' high-water marks and the accepted,
    /// unacknowledged `(item, bytes, attempt)`, in acceptance order, ready for delivery with
    /// that attempt (what the store recorded, [`Topic::record_attempts`], else 1). Recovered
    /// events may exceed the capacity; no credit is granted until they drain below it.
    pub fn restore(
        &mut self,
        high_water: impl IntoIterator<Item = (u64, u64)>,
        items: impl IntoIterator<Item = (T, u64, u32)>,
    ) {
        for (producer_id, seq) in high_water {
            self.marks.restore(producer_id, seq, self.now);
        }
        for (item, bytes, attempt) in items {
            self.push_ready(item, bytes, attempt.max(1));
        }
        self.note_peak();
    }

    /// Spill mode: whether an accepted item of `cost` goes to disk only.
    pub(super) fn spills(&self, cost: Credit) -> bool {
        let Some(memory) = self.memory else {
            return false;
        };
        if !self.on_disk.get().is_zero() {
            return true;
        }
        // Held by no blocking group, an event is not kept for anyone's sake: not on disk either.
        if self.blocking == 0 {
            return false;
        }
        let after = self.held_total.get().saturating_add(cost);
        after.events > memory.events || after.bytes > memory.bytes
    }

    /// Spill mode: asks for on-disk events once memory is at most half full, so loads come in
    /// batches of at least half the memory bound.
    pub(super) fn load(&mut self, actions: &mut Vec<Action<T>>) {
        let Some(memory) = self.memory else {
            return;
        };
        if self.loading || self.on_disk.get().is_zero() {
            return;
        }
        let in_memory = self.held_total.get();
        if in_memory.events * 2 > memory.events || in_memory.bytes * 2 > memory.bytes {
            return;
        }
        self.loading = true;
        actions.push(Action::Load {
            room: memory.saturating_sub(in_memory),
        });
    }
}
