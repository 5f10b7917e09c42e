//! Deliveries for consumers: within each one's demand, round-robin a turn at a time, and what
//! an ack, a nack or a departure changes.

use super::{
    Action, ConnId, ConsumerSlot, Delivery, Entry, MAX_EVENTS_PER_TURN, Topic, TopicError,
};
use crate::credit::{Credit, pay_debt};

impl<T: Clone> Topic<T> {
    /// Adds consumer demand (cumulative, saturating). Zero events is an error.
    pub fn request(&mut self, conn: ConnId, credit: Credit) -> Result<(), TopicError> {
        self.check_books()?;
        if credit.events == 0 {
            return Err(TopicError::ZeroRequest);
        }
        let slot = self
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

    /// Acknowledges a delivery: the event is done, its space is free, and it is handed back
    /// (so a store can forget it).
    pub fn ack(&mut self, conn: ConnId, delivery_id: u64, attempt: u32) -> Result<T, TopicError> {
        self.check_books()?;
        self.alive(conn, delivery_id, attempt);
        let entry = self.take_unacked(conn, delivery_id, attempt)?;
        self.stats.acked += 1;
        Ok(entry.item)
    }

    /// Refuses a delivery: the event goes back to the front of the ready queue, attempt + 1.
    pub fn nack(&mut self, conn: ConnId, delivery_id: u64, attempt: u32) -> Result<(), TopicError> {
        self.check_books()?;
        self.alive(conn, delivery_id, attempt);
        let entry = self.take_unacked(conn, delivery_id, attempt)?;
        self.stats.nacked += 1;
        self.requeue_front(entry);
        Ok(())
    }

    pub(super) fn deliver(&mut self, actions: &mut Vec<Action<T>>) {
        let due = self.due_now();
        while let Some(front_bytes) = self.ready.front().map(|e| e.bytes) {
            let (conn, alone) = match self.next_consumer(front_bytes) {
                Some(conn) => (conn, false),
                None => match self.lone_taker() {
                    Some(conn) => (conn, true),
                    None => return,
                },
            };
            let Some(slot) = self.consumers.get_mut(&conn) else {
                return;
            };
            let mut deliveries = Vec::new();
            let mut moved = Credit::ZERO;
            while (deliveries.len() as u64) < MAX_EVENTS_PER_TURN {
                match self.ready.front() {
                    Some(_) if alone && deliveries.is_empty() => {}
                    Some(e) if !alone && slot.demand.admits(e.bytes) => {}
                    _ => break,
                }
                let Some(mut entry) = self.ready.pop_front() else {
                    break;
                };
                let cost = Credit::new(1, entry.bytes);
                if slot.demand.bytes != u64::MAX {
                    slot.debt += entry.bytes.saturating_sub(slot.demand.bytes);
                }
                slot.demand = spend(slot.demand, cost);
                moved = moved.saturating_add(cost);
                self.stats.delivered += 1;
                if entry.attempt > 1 {
                    self.stats.redelivered += 1;
                }
                deliveries.push(Delivery {
                    delivery_id: entry.delivery_id,
                    attempt: entry.attempt,
                    item: entry.item.clone(),
                });
                slot.held += 1;
                if let Some(due) = due {
                    entry.due = due;
                    self.deadlines
                        .push_back((due, entry.delivery_id, entry.attempt));
                }
                self.unacked.insert(entry.delivery_id, (conn, entry));
            }
            let booked = self.ready_total.take(moved);
            self.book(booked);
            let booked = self.unacked_total.add(moved);
            self.book(booked);
            self.last_served = Some(conn);
            actions.push(Action::Deliver {
                consumer: conn,
                deliveries,
            });
        }
    }

    /// The next consumer after the last one served whose demand admits an item of `bytes`.
    fn next_consumer(&self, bytes: u64) -> Option<ConnId> {
        let after = self.last_served.unwrap_or(0);
        let admits = |(id, c): (&ConnId, &ConsumerSlot)| {
            (!c.stalled && c.demand.admits(bytes)).then_some(*id)
        };
        self.consumers
            .range(after.saturating_add(1)..)
            .find_map(admits)
            .or_else(|| self.consumers.range(..=after).find_map(admits))
    }

    /// When no consumer's demand admits the front event: the first consumer after the last
    /// one served that holds nothing and asks for at least one event, which may take it
    /// alone. Without this an event larger than every consumer's byte demand (a prefetch
    /// below the event) would wait at the front for ever, and everything behind it too.
    fn lone_taker(&self) -> Option<ConnId> {
        let after = self.last_served.unwrap_or(0);
        let free = |(id, c): (&ConnId, &ConsumerSlot)| {
            (!c.stalled && c.held == 0 && c.revoked.is_empty() && c.demand.events >= 1)
                .then_some(*id)
        };
        self.consumers
            .range(after.saturating_add(1)..)
            .find_map(free)
            .or_else(|| self.consumers.range(..=after).find_map(free))
    }

    pub(super) fn take_unacked(
        &mut self,
        conn: ConnId,
        delivery_id: u64,
        attempt: u32,
    ) -> Result<Entry<T>, TopicError> {
        // One lookup on the common path; a refused settle puts the entry back untouched.
        let (owner, entry) = self
            .unacked
            .remove(&delivery_id)
            .ok_or(TopicError::UnknownDelivery(delivery_id))?;
        if owner != conn {
            self.unacked.insert(delivery_id, (owner, entry));
            return Err(TopicError::UnknownDelivery(delivery_id));
        }
        if entry.attempt != attempt {
            let current = entry.attempt;
            self.unacked.insert(delivery_id, (owner, entry));
            return Err(TopicError::StaleAttempt {
                delivery_id,
                got: attempt,
                current,
            });
        }
        let booked = self.unacked_total.take(Credit::new(1, entry.bytes));
        self.book(booked);
        if let Some(slot) = self.consumers.get_mut(&conn) {
            slot.held = slot.held.saturating_sub(1);
        }
        Ok(entry)
    }

    /// Puts an entry already taken out of `unacked` back at the front of the ready queue,
    /// its attempt raised (and, with [`Topic::record_attempts`], reported).
    pub(super) fn requeue_front(&mut self, mut entry: Entry<T>) {
        let cost = Credit::new(1, entry.bytes);
        let booked = self.ready_total.add(cost);
        self.book(booked);
        entry.attempt = entry.attempt.saturating_add(1);
        if let Some(requeued) = &mut self.requeued {
            requeued.push((entry.item.clone(), entry.attempt));
        }
        self.ready.push_front(entry);
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
