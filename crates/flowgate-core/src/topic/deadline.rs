//! Ack deadlines: a delivery not settled within the topic's ack wait is taken back from its
//! consumer and put first in line again (attempt + 1), and that consumer gets nothing more
//! until it shows it is alive by settling something or saying it is still working
//! ([`Topic::progress`]). So a consumer that reads but never acks (a stopped process whose
//! socket stays open) holds its deliveries for the ack wait, not for ever, and another
//! consumer of the group gets them. Each group keeps its own deadlines.
//!
//! A delivery's deadline lives in its entry alone: there is no queue of deadlines to push to
//! on every delivery and prune on every settle. Each group keeps a bound, the earliest any of
//! its unacked deliveries can fall due; only once the clock passes it are the unacked
//! deliveries looked through, the overdue ones taken back, and the bound set again. With
//! consumers that settle in time that is about once per ack wait.

use std::time::Duration;

use super::{ConnId, Topic, TopicError};
use crate::credit::Credit;

impl<T: Clone> Topic<T> {
    /// Sets how long a delivery may stay unsettled, for every group (now and to come); `None`
    /// (the default) waits for ever. Set it before the first delivery: deliveries made before
    /// keep the deadline they were given (none).
    pub fn set_ack_wait(&mut self, wait: Option<Duration>) {
        self.ack_wait = wait;
        for group in &mut self.groups {
            group.ack_wait = wait;
        }
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
        let gi = self.group_of(conn)?;
        self.alive(gi, conn, delivery_id, attempt);
        let group = &mut self.groups[gi];
        let due = group.ack_wait.map(|w| self.now.saturating_add(w));
        match group.unacked.get_mut(&delivery_id) {
            Some((owner, entry)) if *owner == conn && entry.attempt == attempt => {
                // Later than before: the group's bound still holds.
                if let Some(due) = due {
                    entry.due = due;
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
    pub(super) fn alive(&mut self, gi: usize, conn: ConnId, delivery_id: u64, attempt: u32) {
        if let Some(slot) = self.groups[gi].consumers.get_mut(&conn) {
            slot.stalled = false;
            slot.revoked.remove(&(delivery_id, attempt));
        }
    }

    /// Takes back every delivery whose deadline has passed, in every group.
    pub(super) fn expire_deliveries(&mut self) {
        for gi in 0..self.groups.len() {
            self.expire_group(gi);
        }
    }

    fn expire_group(&mut self, gi: usize) {
        let now = self.now;
        let group = &mut self.groups[gi];
        match group.next_due {
            Some(due) if due <= now => {}
            _ => return,
        }
        // A deadline of zero is none (a delivery made while no ack wait was set).
        let mut expired = Vec::new();
        let mut next_due: Option<Duration> = None;
        for (id, (_, entry)) in &group.unacked {
            if entry.due == Duration::ZERO {
                continue;
            }
            if entry.due <= now {
                expired.push(*id);
            } else {
                next_due = Some(next_due.map_or(entry.due, |d| d.min(entry.due)));
            }
        }
        group.next_due = next_due;
        // Highest id first, each pushed to the front: the lowest ends up first.
        expired.sort_unstable_by(|a, b| b.cmp(a));
        for id in expired {
            let group = &mut self.groups[gi];
            let Some((owner, entry)) = group.unacked.remove(&id) else {
                continue;
            };
            let booked = group.unacked_total.take(Credit::new(1, entry.bytes));
            if let Some(slot) = group.consumers.get_mut(&owner) {
                slot.held = slot.held.saturating_sub(1);
                slot.stalled = true;
                slot.revoked.insert((id, entry.attempt));
            }
            group.counts.ack_timeouts += 1;
            self.stats.ack_timeouts += 1;
            self.book(booked);
            self.requeue_front(gi, entry);
        }
    }
}
