//! Credit for producers: how much free space there is within every bound, who gets it (a
//! blocked producer as soon as its next event fits; everyone when more than half is free),
//! and what a producer that says it is blocked hands back.

use super::{Action, ConnId, Topic, TopicError};
use crate::credit::{Credit, grant_due};

impl<T: Clone> Topic<T> {
    /// Caps the credit outstanding to producers at `room` bytes (`None`: no cap beyond the
    /// capacity). The broker sets it from the room left in the topic's disk log, so credit
    /// granted can always be written; `queued` is what the log still holds in memory, waiting
    /// to be written, which in spill mode counts against the memory bound too. Credit already
    /// granted stays usable.
    pub fn limit_grants(&mut self, room: Option<u64>, queued: u64) {
        self.grant_room = room;
        self.queued = queued;
    }

    /// Caps what the topic holds in memory and has promised (ready, unacked and granted
    /// bytes) at `bytes` (`None`: no cap beyond the capacity). The broker's memory governor
    /// sets it from its share of the memory budget; credit already granted stays usable, so
    /// a lower cap takes effect as events leave.
    pub fn limit_memory(&mut self, bytes: Option<u64>) {
        self.memory_limit = bytes;
    }

    /// Bytes held in memory for blocking groups (ready, unacked) and promised to producers:
    /// what [`Topic::limit_memory`] caps. Best-effort groups' copies of events no blocking
    /// group holds are not counted: their max lag bounds them.
    pub fn memory_bytes(&self) -> u64 {
        self.held_total
            .get()
            .bytes
            .saturating_add(self.granted_total.get().bytes)
    }

    /// A producer says it is blocked: its next event costs `need_bytes` of credit, which what
    /// it holds does not cover, and it hands back `returned`, all the credit it held when it
    /// said so (credit it could not use, stranded in one dimension, goes back to the free
    /// space). Credit granted after it sent this is still on its way to it and stays its own.
    /// It is granted again, at least one event of `need_bytes`, as soon as there is room.
    ///
    /// Refused when it hands back more than the topic granted it, or when no grant could ever
    /// cover `need_bytes` (an event larger than the topic): nothing changes then.
    pub fn blocked(
        &mut self,
        conn: ConnId,
        returned: Credit,
        need_bytes: u64,
    ) -> Result<(), TopicError> {
        self.check_books()?;
        let limit = self.largest_grant();
        let slot = self
            .producers
            .get_mut(&conn)
            .ok_or(TopicError::UnknownConnection(conn))?;
        let Some(left) = slot.credit.get().checked_sub(returned) else {
            return Err(TopicError::ReturnedMoreThanHeld {
                returned,
                held: slot.credit.get(),
            });
        };
        if need_bytes > limit {
            return Err(TopicError::EventTooLarge {
                bytes: need_bytes,
                limit,
            });
        }
        let handed_back = slot.credit.take(returned);
        slot.need_bytes = need_bytes.max(1);
        // A grant already on its way may cover the event; then the producer is not waiting.
        slot.waiting = !left.admits(slot.need_bytes);
        self.book(handed_back);
        let booked = self.granted_total.take(returned);
        self.book(booked);
        self.check_books()
    }

    /// The most bytes one grant can ever carry: the capacity, or in spill mode the memory bound.
    /// No larger event can ever be published (the broker announces it in `WELCOME`).
    pub fn largest_grant(&self) -> u64 {
        match self.memory {
            Some(memory) => memory.bytes.min(self.capacity.bytes),
            None => self.capacity.bytes,
        }
    }

    /// Grants free space to producers, by two rules:
    ///
    /// * **liveness**: a producer that said it is blocked ([`Topic::blocked`]) is granted as
    ///   soon as the free space covers its next event, however little that is, so room for a
    ///   waiting producer's event never sits unused;
    /// * **batching**: every producer is topped up once more than half the capacity is
    ///   unpromised, or the topic holds nothing ([`grant_due`]), so a streaming producer
    ///   rarely has to ask.
    ///
    /// Those granted share the free space equally, but no grant is smaller than one event of
    /// the producer's need. When the room cannot cover one for each, whole events go to the
    /// next producers in turn, and the others wait for the next round, which starts with the
    /// first of them: never a share below one event, which nobody could use.
    pub(super) fn grant(&mut self, actions: &mut Vec<Action<T>>) {
        if self.producers.is_empty() {
            return;
        }
        let free = self.free_for_grants();
        if free.events == 0 || free.bytes == 0 {
            return;
        }
        let refill =
            grant_due(self.capacity, self.paced_held(), self.granted_total.get()).is_some();
        let from = self.grant_from;
        let candidates: Vec<ConnId> = self
            .producers
            .range(from..)
            .chain(self.producers.range(..from))
            .filter(|(_, slot)| refill || slot.waiting)
            .map(|(conn, _)| *conn)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let n = candidates.len() as u64;
        let share = Credit::new(free.events / n, free.bytes / n);
        let mut left = free;
        let mut passed_over = None;
        for conn in candidates {
            let Some(slot) = self.producers.get_mut(&conn) else {
                continue;
            };
            if !left.admits(slot.need_bytes) {
                passed_over = passed_over.or(Some(conn));
                continue;
            }
            let credit = share.max(Credit::new(1, slot.need_bytes)).min(left);
            left = left.saturating_sub(credit);
            let granted = slot.credit.add(credit);
            slot.waiting = false;
            self.book(granted);
            let booked = self.granted_total.add(credit);
            self.book(booked);
            self.grant_from = conn.saturating_add(1);
            actions.push(Action::Grant {
                producer: conn,
                credit,
            });
        }
        if let Some(conn) = passed_over {
            self.grant_from = conn;
        }
    }

    /// What is held, as far as it holds producers back: nothing under a policy that drops or
    /// refuses instead (credit is then bounded by the capacity alone, and the policy keeps
    /// what is held within it).
    fn paced_held(&self) -> Credit {
        if self.policy.overflow.paces() {
            self.held()
        } else {
            Credit::ZERO
        }
    }

    /// The space neither held nor promised, within every bound: the capacity, in spill mode
    /// the memory bound on what producers may send at once, and the room a disk log has left.
    /// (Held may exceed the capacity after a restore; the free space is then zero.)
    fn free_for_grants(&self) -> Credit {
        let mut free = self
            .capacity
            .saturating_sub(self.paced_held())
            .saturating_sub(self.granted_total.get());
        if let Some(memory) = self.memory {
            free = free.min(memory.saturating_sub(self.granted_total.get()));
        }
        let room = match (self.grant_room, self.memory) {
            (Some(disk), Some(memory)) => Some(disk.min(memory.bytes.saturating_sub(self.queued))),
            (room, _) => room,
        };
        // Bytes new grants may take: what the room leaves beyond credit outstanding, and what
        // the memory cap leaves beyond what is held and promised.
        let mut within = room.map(|r| r.saturating_sub(self.granted_total.get().bytes));
        if let Some(limit) = self.memory_limit {
            let left = limit.saturating_sub(self.memory_bytes());
            within = Some(within.map_or(left, |w| w.min(left)));
        }
        if let Some(within) = within {
            let bytes = free.bytes.min(within);
            if bytes == 0 || free.events == 0 {
                return Credit::ZERO;
            }
            // Events shrink with the bytes: a grant of every free event with a sliver of bytes
            // would promise events that nobody can send.
            let events = u128::from(free.events) * u128::from(bytes) / u128::from(free.bytes);
            free = Credit::new((events as u64).max(1), bytes);
        }
        free
    }
}
