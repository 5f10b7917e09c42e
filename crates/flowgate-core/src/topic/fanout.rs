//! Fan-out: every group reads every event, and an event stays in the topic (counted against
//! its capacity) until every blocking group has acked it. Best-effort groups hold copies that
//! count against nothing: their lag is bounded by their own max lag instead.
//!
//! Before any group has attached, the topic holds what it accepts in the lobby, a blocking
//! group with no name, which the first group to attach becomes. A group that appears later
//! starts at the oldest event still held. With one blocking group its own acks free the
//! events; with more, a count per held event says how many of them have still to ack it.

use std::collections::BTreeMap;

use super::{ConnId, Entry, Group, GroupMode, GroupStats, Topic, TopicError};
use crate::credit::Credit;

impl<T: Clone> Topic<T> {
    /// How many groups the topic takes; a consumer of one more is refused. Groups stay for the
    /// topic's life (a blocking group without consumers keeps holding what it has not acked).
    pub fn set_max_groups(&mut self, max: usize) {
        self.max_groups = max.max(1);
    }

    /// Makes `name` a group of the topic, with `mode`, if it is not one already (a broker's
    /// declared groups exist before their first consumer), and returns its index. The first
    /// group becomes the lobby and takes what it held; a later one starts at the oldest event
    /// held. Refused when the group exists with another mode, or the topic has as many groups
    /// as it takes.
    pub fn declare_group(&mut self, name: &str, mode: GroupMode) -> Result<usize, TopicError> {
        if let Some(i) = self
            .groups
            .iter()
            .position(|g| g.name.as_deref() == Some(name))
        {
            let has = self.groups[i].mode;
            if has != mode {
                return Err(TopicError::GroupMode {
                    group: name.to_string(),
                    has,
                    asked: mode,
                });
            }
            return Ok(i);
        }
        if let [lobby] = &mut self.groups[..]
            && lobby.name.is_none()
        {
            lobby.name = Some(name.to_string());
            lobby.mode = mode;
            if mode != GroupMode::Block {
                self.blocking = 0;
                self.unhold_all();
                self.trim(0);
            }
            return Ok(0);
        }
        if self.groups.len() >= self.max_groups {
            return Err(TopicError::TooManyGroups {
                group: name.to_string(),
                limit: self.max_groups,
            });
        }
        let mut group = Group::new(Some(name.to_string()), mode, self.ack_wait);
        for (delivery_id, (item, bytes, born)) in self.held_events() {
            let booked = group.ready_total.add(Credit::new(1, bytes));
            self.book(booked);
            group.ready.push_back(Entry {
                item,
                bytes,
                delivery_id,
                attempt: 1,
                due: std::time::Duration::ZERO,
                born,
            });
        }
        self.groups.push(group);
        let index = self.groups.len() - 1;
        if mode == GroupMode::Block {
            self.blocking += 1;
            self.count_refs();
        } else {
            self.trim(index);
        }
        Ok(index)
    }

    /// Every group's figures, in the order the groups appeared (the lobby, unnamed, until a
    /// group attaches).
    pub fn groups(&self) -> Vec<GroupStats> {
        self.groups.iter().map(Group::stats).collect()
    }

    /// Events that left the topic without an ack since the last call, for a store that must
    /// forget them: accepted while no group blocks, or held only for a lobby that a
    /// best-effort group became. Empty unless a best-effort group is the only kind there is.
    pub fn take_dropped(&mut self) -> Vec<T> {
        std::mem::take(&mut self.dropped)
    }

    /// The group of an attached consumer.
    pub(super) fn group_of(&self, conn: ConnId) -> Result<usize, TopicError> {
        self.members
            .get(&conn)
            .copied()
            .ok_or(TopicError::UnknownConnection(conn))
    }

    /// Appends a newly accepted (or loaded, or restored) item to every group's ready queue
    /// under a fresh delivery id, held for the blocking groups.
    pub(super) fn push_ready(&mut self, item: T, bytes: u64, attempt: u32) {
        let delivery_id = self.next_delivery_id;
        self.next_delivery_id += 1;
        self.note_key(&item, delivery_id);
        let cost = Credit::new(1, bytes);
        if self.blocking == 0 {
            self.dropped.push(item.clone());
        } else {
            let booked = self.held_total.add(cost);
            self.book(booked);
            if self.blocking >= 2 {
                self.refs.insert(delivery_id, self.blocking as u32);
            }
        }
        let last = self.groups.len() - 1;
        let mut item = Some(item);
        for gi in 0..=last {
            let item = if gi == last {
                item.take()
            } else {
                item.clone()
            };
            let Some(item) = item else { break };
            let group = &mut self.groups[gi];
            group.ready.push_back(Entry {
                item,
                bytes,
                delivery_id,
                attempt,
                due: std::time::Duration::ZERO,
                born: self.now,
            });
            let booked = group.ready_total.add(cost);
            self.book(booked);
            if !self.groups[gi].blocks() {
                self.trim(gi);
            }
        }
    }

    /// A group is done with an event (acked it): a blocking group's ack frees it once no other
    /// blocking group holds it, and then it is handed back (so a store can forget it).
    pub(super) fn release(&mut self, gi: usize, entry: Entry<T>) -> Option<T> {
        if !self.groups[gi].blocks() {
            return None;
        }
        if self.blocking >= 2 {
            let left = match self.refs.get_mut(&entry.delivery_id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => true,
            };
            if !left {
                return None;
            }
            self.refs.remove(&entry.delivery_id);
        }
        let booked = self.held_total.take(Credit::new(1, entry.bytes));
        self.book(booked);
        self.forget_key(&entry.item, entry.delivery_id);
        Some(entry.item)
    }

    /// Skips a best-effort group's oldest unread events beyond its max lag.
    pub(super) fn trim(&mut self, gi: usize) {
        let booked = self.groups[gi].trim().map(|_| ());
        self.book(booked);
    }

    /// What the blocking groups hold in memory, each event once, in delivery-id (acceptance)
    /// order, for a group that starts now.
    fn held_events(&self) -> BTreeMap<u64, (T, u64, std::time::Duration)> {
        let mut held = BTreeMap::new();
        for group in self.groups.iter().filter(|g| g.blocks()) {
            let unacked = group.unacked.values().map(|(_, e)| e);
            for e in group.ready.iter().chain(unacked) {
                held.entry(e.delivery_id)
                    .or_insert_with(|| (e.item.clone(), e.bytes, e.born));
            }
        }
        held
    }

    /// Counts, per held event, the blocking groups that hold it (with two or more of them).
    fn count_refs(&mut self) {
        self.refs.clear();
        if self.blocking < 2 {
            return;
        }
        for group in self.groups.iter().filter(|g| g.blocks()) {
            let unacked = group.unacked.keys().copied();
            for id in group.ready.iter().map(|e| e.delivery_id).chain(unacked) {
                *self.refs.entry(id).or_insert(0) += 1;
            }
        }
    }

    /// The lobby became a best-effort group: nothing blocks, so nothing is held any more, and
    /// what was held leaves the topic (the group keeps its copies, within its max lag).
    fn unhold_all(&mut self) {
        self.keys.clear();
        let held = self.held_total.get();
        let booked = self.held_total.take(held);
        self.book(booked);
        let group = &self.groups[0];
        let unacked = group.unacked.values().map(|(_, e)| e);
        let items: Vec<T> = group
            .ready
            .iter()
            .chain(unacked)
            .map(|e| e.item.clone())
            .collect();
        self.dropped.extend(items);
    }
}
