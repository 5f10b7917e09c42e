//! A topic's policy: what happens to an event that finds the topic full ([`Overflow`]), and how
//! long an event may wait before it is worthless ([`TopicPolicy::max_age`]).
//!
//! Only [`Overflow::Block`] and [`Overflow::Conflate`] pace producers: their credit comes out
//! of the room the held events leave. Under the others a producer's credit is bounded by the
//! capacity alone, so it never waits for the consumers, and what does not fit is dropped or
//! refused here, one event at a time, every one counted. Whatever the policy, what is held
//! never exceeds the capacity.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{Entry, Topic};
use crate::credit::Credit;

/// How many waiting events of each blocking group drop-oldest looks at for one that no
/// consumer holds, before it drops the new event instead.
const DROP_OLDEST_LOOKS: usize = 16;

/// What a full topic does with one more event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Producers wait for room (credit is only granted from it): nothing is lost. The default.
    #[default]
    Block,
    /// The event that does not fit is dropped, and the rest of its batch with it. Producers
    /// never wait; what was held is delivered.
    DropNewest,
    /// The oldest event no consumer holds is dropped to make room for the new one.
    DropOldest,
    /// Like drop-newest, but the producer is told which events were refused, so it can count
    /// them and hand them back to its caller.
    Reject,
    /// An event with a key replaces the older event with the same key that is still waiting
    /// (delivered to nobody): a topic holds at most one waiting event per key. Producers wait
    /// for room as under `Block` when the keys waiting fill it.
    Conflate,
}

impl Overflow {
    /// Every policy, in documentation order.
    pub const ALL: [Overflow; 5] = [
        Overflow::Block,
        Overflow::DropNewest,
        Overflow::DropOldest,
        Overflow::Reject,
        Overflow::Conflate,
    ];

    /// The name used in config files and stats.
    pub fn name(self) -> &'static str {
        match self {
            Overflow::Block => "block",
            Overflow::DropNewest => "drop-newest",
            Overflow::DropOldest => "drop-oldest",
            Overflow::Reject => "reject",
            Overflow::Conflate => "conflate",
        }
    }

    /// Whether producers are paced by the room the held events leave.
    pub fn paces(self) -> bool {
        matches!(self, Overflow::Block | Overflow::Conflate)
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy name that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown policy '{}': expected block, drop-newest, drop-oldest, reject or conflate",
            self.0
        )
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for Overflow {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Overflow::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// A topic's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicPolicy {
    /// What a full topic does with one more event.
    pub overflow: Overflow,
    /// An event that has waited this long since it was accepted is not delivered (to a group
    /// that has not read it yet): it leaves that group as expired ([`Topic::take_expired`]).
    pub max_age: Option<Duration>,
}

/// The event's key, for [`Overflow::Conflate`]: `None` for an event without one (never
/// conflated).
pub type KeyFn<T> = fn(&T) -> Option<&[u8]>;

/// An event that waited past the topic's max age for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired<T> {
    /// The event.
    pub item: T,
    /// The group it was not delivered to.
    pub group: String,
    /// How long it had waited since it was accepted.
    pub age: Duration,
}

/// What the policy did to one incoming event.
pub(super) enum Admit {
    /// It is taken.
    Take,
    /// It (and the rest of its batch) is dropped.
    Drop,
    /// It (and the rest of its batch) is refused, and the producer told.
    Refuse,
}

impl<T: Clone> Topic<T> {
    /// Sets the topic's policy; `key` reads an event's key (needed for conflate; without it
    /// nothing is conflated). Set it before the first publish.
    pub fn set_policy(&mut self, policy: TopicPolicy, key: Option<KeyFn<T>>) {
        self.policy = policy;
        self.key_of = key;
    }

    /// The topic's policy.
    pub fn policy(&self) -> TopicPolicy {
        self.policy
    }

    /// Events that waited past the max age for a group since the last call, each with the
    /// group and its age: dead letters, for the broker to record. (Once no blocking group
    /// holds one, it also left the topic: [`Topic::take_dropped`] hands it to the store.)
    pub fn take_expired(&mut self) -> Vec<Expired<T>> {
        std::mem::take(&mut self.expired)
    }

    /// Decides an incoming event of `cost` before it is stored: makes room for it as the
    /// policy says (dropping the oldest, or the older event with its key), or says it must
    /// go.
    pub(super) fn admit(&mut self, cost: Credit, item: &T) -> Admit {
        match self.policy.overflow {
            // Credit comes only out of free room, so a paced event fits (after a restore that
            // overfilled the topic it is taken anyway: the producer was granted it).
            Overflow::Block => Admit::Take,
            Overflow::Conflate => {
                self.conflate(item);
                Admit::Take
            }
            Overflow::DropNewest if !self.fits(cost) => Admit::Drop,
            Overflow::Reject if !self.fits(cost) => Admit::Refuse,
            Overflow::DropOldest => {
                while !self.fits(cost) {
                    if !self.drop_oldest() {
                        return Admit::Drop;
                    }
                }
                Admit::Take
            }
            Overflow::DropNewest | Overflow::Reject => Admit::Take,
        }
    }

    /// Notes the waiting event with this key, just pushed under `delivery_id` (conflate).
    pub(super) fn note_key(&mut self, item: &T, delivery_id: u64) {
        // Held by no blocking group, an event is never released, so its key would stay.
        if self.policy.overflow != Overflow::Conflate || self.blocking == 0 {
            return;
        }
        if let Some(key) = self.key_of.and_then(|f| f(item)) {
            self.keys.insert(key.to_vec(), delivery_id);
        }
    }

    /// Forgets the key of an event that left the topic, unless a newer event holds it.
    pub(super) fn forget_key(&mut self, item: &T, delivery_id: u64) {
        if self.keys.is_empty() {
            return;
        }
        if let Some(key) = self.key_of.and_then(|f| f(item))
            && self.keys.get(key) == Some(&delivery_id)
        {
            self.keys.remove(key);
        }
    }

    /// Takes out of every group each event that has waited longer than the max age and that
    /// the group has not been handed (a redelivery too): counted, and kept as a dead letter.
    pub(super) fn expire_old(&mut self) {
        let Some(max_age) = self.policy.max_age else {
            return;
        };
        let now = self.now;
        for gi in 0..self.groups.len() {
            // A ready queue holds its redeliveries first, in the order they came back (not by
            // age), then first deliveries in acceptance order: the expired ones are among the
            // redeliveries, and at the front of the rest.
            let mut at = 0;
            while let Some(e) = self.groups[gi].ready.get(at) {
                let age = now.saturating_sub(e.born);
                if age < max_age {
                    if e.attempt == 1 {
                        break;
                    }
                    at += 1;
                    continue;
                }
                let Some(entry) = self.groups[gi].ready.remove(at) else {
                    break;
                };
                let group = &mut self.groups[gi];
                let booked = group.ready_total.take(Credit::new(1, entry.bytes));
                group.counts.expired += 1;
                let name = group.name.clone().unwrap_or_default();
                self.book(booked);
                self.expired.push(Expired {
                    item: entry.item.clone(),
                    group: name,
                    age,
                });
                if let Some(item) = self.release(gi, entry) {
                    self.dropped.push(item);
                }
            }
        }
    }

    /// Whether one more event of `cost` fits the capacity beside what is held.
    fn fits(&self, cost: Credit) -> bool {
        let after = self.held().saturating_add(cost);
        after.events <= self.capacity.events && after.bytes <= self.capacity.bytes
    }

    /// Drops the oldest event waiting near the front of a blocking group that no consumer of
    /// a blocking group holds.
    /// False when there is none (every held event is delivered, or only on disk).
    fn drop_oldest(&mut self) -> bool {
        // The first few waiting in each blocking group: with two or more, the front of one
        // may be held by a consumer of another while an event behind it is held by nobody.
        let mut fronts: Vec<u64> = self
            .groups
            .iter()
            .filter(|g| g.blocks())
            .flat_map(|g| {
                g.ready
                    .iter()
                    .take(DROP_OLDEST_LOOKS)
                    .map(|e| e.delivery_id)
            })
            .collect();
        fronts.sort_unstable();
        fronts.dedup();
        for id in fronts {
            if self.evict(id) {
                self.stats.dropped_oldest += 1;
                return true;
            }
        }
        false
    }

    /// Conflate: the older event with this event's key gives way, if it is still waiting.
    fn conflate(&mut self, item: &T) {
        let Some(key) = self.key_of.and_then(|f| f(item)) else {
            return;
        };
        if let Some(&older) = self.keys.get(key) {
            let key = key.to_vec();
            if self.evict(older) {
                self.stats.conflated += 1;
            }
            self.keys.remove(&key);
        }
    }

    /// Takes an event out of every group that has not read it, if no consumer of a blocking
    /// group holds it; what a blocking group held is freed and handed to the store to forget.
    /// (A best-effort group's consumer that holds it keeps its copy, which holds nothing.)
    fn evict(&mut self, delivery_id: u64) -> bool {
        if self
            .groups
            .iter()
            .any(|g| g.blocks() && g.unacked.contains_key(&delivery_id))
        {
            return false;
        }
        let mut found = None;
        let mut held = false;
        for gi in 0..self.groups.len() {
            let group = &mut self.groups[gi];
            let Some(at) = position(&group.ready, delivery_id) else {
                continue;
            };
            let Some(entry) = group.ready.remove(at) else {
                continue;
            };
            held |= group.blocks();
            let booked = group.ready_total.take(Credit::new(1, entry.bytes));
            self.book(booked);
            found = Some(entry);
        }
        let Some(entry) = found else {
            return false;
        };
        if held {
            self.refs.remove(&delivery_id);
            let booked = self.held_total.take(Credit::new(1, entry.bytes));
            self.book(booked);
            self.dropped.push(entry.item);
        }
        true
    }
}

/// Where an event waits in a ready queue. Behind the redeliveries at its front, a ready queue
/// holds first deliveries in increasing id, so the search stops at the first of those past
/// the id.
fn position<T>(ready: &VecDeque<Entry<T>>, delivery_id: u64) -> Option<usize> {
    for (i, e) in ready.iter().enumerate() {
        if e.delivery_id == delivery_id {
            return Some(i);
        }
        if e.attempt == 1 && e.delivery_id > delivery_id {
            return None;
        }
    }
    None
}
