//! Ack deadlines: a delivery not settled within the topic's ack wait is taken back from its
//! consumer and put first in line again (attempt + 1), and that consumer gets nothing more
//! until it shows it is alive by settling something or saying it is still working
//! ([`Topic::progress`]). So a consumer that reads but never acks (a stopped process whose
//! socket stays open) holds its deliveries for the ack wait, not for ever, and another
//! consumer of the group gets them.

use std::time::Duration;

use super::{ConnId, Topic, TopicError};
use crate::credit::Credit;

impl<T: Clone> Topic<T> {
    /// Sets how long a delivery may stay unsettled; `None` (the default) waits for ever.
    /// Set it before the first delivery: deadlines are kept in the order they fall due.
    pub fn set_ack_wait(&mut self, wait: Option<Duration>) {
        self.ack_wait = wait;
    }

    /// The consumer is still working on a delivery (a long commit): its deadline restarts
    /// from now. Refused like an ack for a delivery it does not hold or an earlier attempt.
    pub fn progress(
        &mut self,
        conn: ConnId,
        delivery_id: u64,
        attempt: u32,
    ) -> Result<(), TopicError> {
        self.check_books()?;
        self.alive(conn, delivery_id, attempt);
        let due = self.ack_wait.map(|w| self.now.saturating_add(w));
        match self.unacked.get_mut(&delivery_id) {
            Some((owner, entry)) if *owner == conn && entry.attempt == attempt => {
                if let Some(due) = due {
                    entry.due = due;
                    self.deadlines.push_back((due, delivery_id, attempt));
                }
                Ok(())
            }
            Some((owner, entry)) if *owner == conn => Err(TopicError::StaleAttempt {
                delivery_id,
                got: attempt,
                current: entry.attempt,
            }),
            _ => Err(TopicError::UnknownDelivery(delivery_id)),
        }
    }

    /// A consumer settled (or said it is working on) `delivery_id`: it may be given
    /// deliveries again, and a delivery taken back from it is answered.
    pub(super) fn alive(&mut self, conn: ConnId, delivery_id: u64, attempt: u32) {
        if let Some(slot) = self.consumers.get_mut(&conn) {
            slot.stalled = false;
            slot.revoked.remove(&(delivery_id, attempt));
        }
    }

    /// When a delivery made now falls due, with an ack wait set.
    pub(super) fn due_now(&self) -> Option<Duration> {
        self.ack_wait.map(|w| self.now.saturating_add(w))
    }

    /// Whether a deadline entry still stands: a settled delivery, a later attempt or a
    /// restarted deadline leaves a stale one behind.
    fn stands(&self, (due, id, attempt): (Duration, u64, u32)) -> bool {
        matches!(self.unacked.get(&id), Some((_, e)) if e.attempt == attempt && e.due == due)
    }

    /// Drops stale deadline entries (run by [`Topic::tick`], once per input rather than per
    /// ack): those at the front, and all of them once they outnumber the deliveries
    /// outstanding, so the queue stays the size of what is
    /// unacked however the acks are ordered (not every delivery of the last ack wait).
    pub(super) fn prune_deadlines(&mut self) {
        while let Some(&front) = self.deadlines.front() {
            if self.stands(front) {
                break;
            }
            self.deadlines.pop_front();
        }
        if self.deadlines.len() > 2 * self.unacked.len() + 64 {
            let kept: std::collections::VecDeque<_> = self
                .deadlines
                .iter()
                .copied()
                .filter(|d| self.stands(*d))
                .collect();
            self.deadlines = kept;
        }
    }

    /// Takes back every delivery whose deadline has passed.
    pub(super) fn expire_deliveries(&mut self) {
        let mut expired = Vec::new();
        while let Some(&(due, id, attempt)) = self.deadlines.front() {
            if due > self.now {
                break;
            }
            self.deadlines.pop_front();
            if self.stands((due, id, attempt)) {
                expired.push(id);
            }
        }
        // Highest id first, each pushed to the front: the lowest ends up first.
        expired.sort_unstable_by(|a, b| b.cmp(a));
        for id in expired {
            let Some((owner, entry)) = self.unacked.remove(&id) else {
                continue;
            };
            let booked = self.unacked_total.take(Credit::new(1, entry.bytes));
            self.book(booked);
            if let Some(slot) = self.consumers.get_mut(&owner) {
                slot.held = slot.held.saturating_sub(1);
                slot.stalled = true;
                slot.revoked.insert((id, entry.attempt));
            }
            self.stats.ack_timeouts += 1;
            self.requeue_front(entry);
        }
    }
}
