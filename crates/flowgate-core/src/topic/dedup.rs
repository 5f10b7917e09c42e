//! Taking a producer's batch: charged to its credit whole, validated as a contiguous run of
//! sequence numbers, and deduplicated by the producer id's high-water mark, so a retried batch
//! is confirmed again and never stored twice.

use super::policy::Admit;
use super::{ConnId, Published, Topic, TopicError};
use crate::credit::Credit;

impl<T: Clone> Topic<T> {
    /// Accepts a producer's batch of `(seq, item, bytes)`, a contiguous run of sequence numbers. The whole batch is
    /// charged to the producer's credit (duplicates too, since the producer spent credit on
    /// them); a batch beyond its credit, or one that skips a sequence number, is refused whole.
    pub fn publish(
        &mut self,
        conn: ConnId,
        batch: Vec<(u64, T, u64)>,
    ) -> Result<Published, TopicError> {
        self.check_books()?;
        let slot = self
            .producers
            .get(&conn)
            .ok_or(TopicError::UnknownConnection(conn))?;
        let wanted = batch.iter().fold(Credit::ZERO, |acc, (_, _, b)| {
            acc.saturating_add(Credit::new(1, *b))
        });
        let held = slot.credit.get();
        if wanted.events > held.events || wanted.bytes > held.bytes {
            return Err(TopicError::DataWithoutCredit {
                wanted,
                available: held,
            });
        }
        let producer_id = slot.producer_id;
        // A producer id the topic has no record of (a broker that restarted without a disk
        // log) may resume anywhere: the topic cannot know what came before.
        let known = self.marks.high(producer_id);
        let mut high = known.unwrap_or(0);
        // A batch is a contiguous run of sequence numbers starting at or below the next one
        // expected (an overlap is a retry). Validate it whole before changing anything.
        if let Some((first, _, _)) = batch.first() {
            let first = *first;
            if known.is_none() && first > 0 {
                high = first - 1;
            }
            if first == 0 || first > high.saturating_add(1) {
                return Err(TopicError::SequenceGap {
                    expected: high.saturating_add(1),
                    got: first,
                });
            }
            for (offset, (seq, _, _)) in (0u64..).zip(&batch) {
                if Some(*seq) != first.checked_add(offset) {
                    return Err(TopicError::SequenceGap {
                        expected: first.saturating_add(offset),
                        got: *seq,
                    });
                }
            }
        }
        if let Some(slot) = self.producers.get_mut(&conn) {
            let spent = slot.credit.take(wanted);
            self.book(spent);
        }
        let booked = self.granted_total.take(wanted);
        self.book(booked);
        let mut out = Published::default();
        let prior = high;
        let batch_first = batch.first().map(|(seq, _, _)| *seq);
        // Once the policy drops or refuses an event, the rest of the batch goes the same way,
        // so what is stored is one run: the batch less its duplicates and its dropped tail.
        let mut turned_away = None;
        for (seq, item, bytes) in batch {
            if seq <= high {
                out.duplicates += 1;
                continue;
            }
            high = seq;
            let cost = Credit::new(1, bytes);
            if turned_away.is_none() {
                match self.admit(cost, &item) {
                    Admit::Take => {}
                    Admit::Drop => turned_away = Some(false),
                    Admit::Refuse => turned_away = Some(true),
                }
            }
            if let Some(refused) = turned_away {
                out.dropped += 1;
                out.refused += u64::from(refused);
                continue;
            }
            if self.spills(cost) {
                let booked = self.on_disk.add(cost);
                self.book(booked);
                out.spilled += 1;
            } else {
                self.push_ready(item, bytes, 1);
            }
            out.accepted += 1;
        }
        // A retry: the confirm reaches the mark, past this batch perhaps, so the producer is
        // told again of every refusal from the batch's start to the mark (it may never have
        // read them), before the confirm that covers them.
        if out.duplicates > 0
            && let Some(first) = batch_first
        {
            out.refused_again = self.marks.refused_within(producer_id, first, prior);
        }
        self.marks.set_high(producer_id, high);
        if out.refused > 0 {
            self.marks
                .note_refused(producer_id, high + 1 - out.refused, high);
        }
        out.confirm_up_to = high;
        self.stats.accepted += out.accepted;
        self.stats.spilled += out.spilled;
        self.stats.duplicates += out.duplicates;
        self.stats.rejected += out.refused;
        self.stats.dropped_newest += out.dropped - out.refused;
        self.note_peak();
        Ok(out)
    }
}
