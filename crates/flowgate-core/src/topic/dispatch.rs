//! Deliveries for consumers: per group, within each consumer's demand, round-robin a turn at a
//! time, and what an ack, a nack or a departure changes.

use super::{
    Action, ConnId, ConsumerSlot, Delivery, Entry, Group, MAX_EVENTS_PER_TURN, Topic, TopicError,
};
use crate::credit::{Credit, pay_debt};

impl<T: Clone> Topic<T> {
    /// Adds consumer demand (cumulative, saturating). Zero events is an error.
    pub fn request(&mut self, conn: ConnId, credit: Credit) -> Result<(), TopicError> {
        self.check_books()?;
        if credit.events == 0 {
            return Err(TopicError::ZeroRequest);
        }
        let gi = self.group_of(conn)?;
        let slot = self.groups[gi]
            .consumers
            .get_mut(&conn)
            .ok_or(TopicError::UnknownConnection(conn))?;
        let (paid, bytes) = pay_debt(slot.debt, credit.bytes);
        slot.debt -= paid;
        slot.demand = slot
            .demand
            .saturating_add(Credit::new(credit.events, bytes));
        Ok(())
    }

    /// Acknowledges a delivery: the event is done for the consumer's group. Once no blocking
    /// group holds it any more its space is free and it is handed back (so a store can forget
    /// it); `None` while another blocking group has still to ack it, or for a best-effort
    /// group's ack.
    pub fn ack(
        &mut self,
        conn: ConnId,
        delivery_id: u64,
        attempt: u32,
    ) -> Result<Option<T>, TopicError> {
        self.check_books()?;
        let gi = self.group_of(conn)?;
        self.alive(gi, conn, delivery_id, attempt);
        let entry = self.take_unacked(gi, conn, delivery_id, attempt)?;
        self.stats.acked += 1;
        self.groups[gi].counts.acked += 1;
        Ok(self.release(gi, entry))
    }

    /// Refuses a delivery: the event goes back to the front of the group's ready queue,
    /// attempt + 1.
    pub fn nack(&mut self, conn: ConnId, delivery_id: u64, attempt: u32) -> Result<(), TopicError> {
        self.check_books()?;
        let gi = self.group_of(conn)?;
        self.alive(gi, conn, delivery_id, attempt);
        let entry = self.take_unacked(gi, conn, delivery_id, attempt)?;
        self.stats.nacked += 1;
        self.groups[gi].counts.nacked += 1;
        self.requeue_front(gi, entry);
        Ok(())
    }

    /// Deliveries for every group's consumers.
    pub(super) fn deliver(&mut self, actions: &mut Vec<Action<T>>) {
        for gi in 0..self.groups.len() {
            self.deliver_group(gi, actions);
        }
    }

    fn deliver_group(&mut self, gi: usize, actions: &mut Vec<Action<T>>) {
        let due = self.groups[gi].ack_wait.map(|w| self.now.saturating_add(w));
        let group = &mut self.groups[gi];
        let before = group.counts;
        let mut books = Ok(());
        while let Some(front_bytes) = group.ready.front().map(|e| e.bytes) {
            let (conn, alone) = match next_consumer(group, front_bytes) {
                Some(conn) => (conn, false),
                None => match lone_taker(group) {
                    Some(conn) => (conn, true),
                    None => break,
                },
            };
            let Some(slot) = group.consumers.get_mut(&conn) else {
                break;
            };
            let mut deliveries = Vec::new();
            let mut moved = Credit::ZERO;
            while (deliveries.len() as u64) < MAX_EVENTS_PER_TURN {
                match group.ready.front() {
                    Some(_) if alone && deliveries.is_empty() => {}
                    Some(e) if !alone && slot.demand.admits(e.bytes) => {}
                    _ => break,
                }
                let Some(mut entry) = group.ready.pop_front() else {
                    break;
                };
                let cost = Credit::new(1, entry.bytes);
                if slot.demand.bytes != u64::MAX {
                    slot.debt += entry.bytes.saturating_sub(slot.demand.bytes);
                }
                slot.demand = spend(slot.demand, cost);
                moved = moved.saturating_add(cost);
                group.counts.delivered += 1;
                if entry.attempt > 1 {
                    group.counts.redelivered += 1;
                }
                deliveries.push(Delivery {
                    delivery_id: entry.delivery_id,
                    attempt: entry.attempt,
                    item: entry.item.clone(),
                });
                slot.held += 1;
                if let Some(due) = due {
                    entry.due = due;
                    group.next_due = Some(group.next_due.map_or(due, |d| d.min(due)));
                }
                group.unacked.insert(entry.delivery_id, (conn, entry));
            }
            books = group
                .ready_total
                .take(moved)
                .and_then(|()| group.unacked_total.add(moved));
            group.last_served = Some(conn);
            actions.push(Action::Deliver {
                consumer: conn,
                deliveries,
            });
            if books.is_err() {
                break;
            }
        }
        let after = group.counts;
        self.stats.delivered += after.delivered - before.delivered;
        self.stats.redelivered += after.redelivered - before.redelivered;
        self.book(books);
    }

    pub(super) fn take_unacked(
        &mut self,
        gi: usize,
        conn: ConnId,
        delivery_id: u64,
        attempt: u32,
    ) -> Result<Entry<T>, TopicError> {
        let group = &mut self.groups[gi];
        // One lookup on the common path; a refused settle puts the entry back untouched.
        let (owner, entry) = group
            .unacked
            .remove(&delivery_id)
            .ok_or(TopicError::UnknownDelivery(delivery_id))?;
        if owner != conn {
            group.unacked.insert(delivery_id, (owner, entry));
            return Err(TopicError::UnknownDelivery(delivery_id));
        }
        if entry.attempt != attempt {
            let current = entry.attempt;
            group.unacked.insert(delivery_id, (owner, entry));
            return Err(TopicError::StaleAttempt {
                delivery_id,
                got: attempt,
                current,
            });
        }
        let booked = group.unacked_total.take(Credit::new(1, entry.bytes));
        if let Some(slot) = group.consumers.get_mut(&conn) {
            slot.held = slot.held.saturating_sub(1);
        }
        self.book(booked);
        Ok(entry)
    }

    /// Puts an entry already taken out of a group's `unacked` back at the front of its ready
    /// queue, its attempt raised (and, with [`Topic::record_attempts`], reported).
    pub(super) fn requeue_front(&mut self, gi: usize, mut entry: Entry<T>) {
        let cost = Credit::new(1, entry.bytes);
        let booked = self.groups[gi].ready_total.add(cost);
        self.book(booked);
        entry.attempt = entry.attempt.saturating_add(1);
        if let Some(requeued) = &mut self.requeued {
            requeued.push((entry.item.clone(), entry.attempt));
        }
        self.groups[gi].ready.push_front(entry);
        if !self.groups[gi].blocks() {
            self.trim(gi);
        }
    }

    /// Reports every attempt raise from now on ([`Topic::take_requeued`]), for a store that
    /// keeps them so attempt counts survive a restart.
    pub fn record_attempts(&mut self) {
        self.requeued.get_or_insert_with(Vec::new);
    }

    /// The events whose attempt was raised (by a nack, a departure or an ack deadline) since
    /// the last call, each with the attempt its next delivery is.
    pub fn take_requeued(&mut self) -> Vec<(T, u32)> {
        self.requeued
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

/// The next consumer of `group` after the last one served whose demand admits an item of
/// `bytes`.
fn next_consumer<T>(group: &Group<T>, bytes: u64) -> Option<ConnId> {
    let after = group.last_served.unwrap_or(0);
    let admits =
        |(id, c): (&ConnId, &ConsumerSlot)| (!c.stalled && c.demand.admits(bytes)).then_some(*id);
    group
        .consumers
        .range(after.saturating_add(1)..)
        .find_map(admits)
        .or_else(|| group.consumers.range(..=after).find_map(admits))
}

/// When no consumer's demand admits the front event: the first consumer after the last one
/// served that holds nothing and asks for at least one event, which may take it alone.
/// Without this an event larger than every consumer's byte demand (a prefetch below the
/// event) would wait at the front for ever, and everything behind it too.
fn lone_taker<T>(group: &Group<T>) -> Option<ConnId> {
    let after = group.last_served.unwrap_or(0);
    let free = |(id, c): (&ConnId, &ConsumerSlot)| {
        (!c.stalled && c.held == 0 && c.revoked.is_empty() && c.demand.events >= 1).then_some(*id)
    };
    group
        .consumers
        .range(after.saturating_add(1)..)
        .find_map(free)
        .or_else(|| group.consumers.range(..=after).find_map(free))
}

/// Spends `cost` from a demand, leaving unbounded dimensions unbounded. An event delivered
/// alone may cost more bytes than are left: they are all used up (the rest is a debt).
fn spend(demand: Credit, cost: Credit) -> Credit {
    Credit {
        events: if demand.events == u64::MAX {
            u64::MAX
        } else {
            demand.events - cost.events
        },
        bytes: if demand.bytes == u64::MAX {
            u64::MAX
        } else {
            demand.bytes.saturating_sub(cost.bytes)
        },
    }
}
