//! The broker's topic as a pure state machine: who may publish how much, who gets which
//! event, what an ack or a disconnect changes. No sockets, no clock; the broker's connection
//! tasks feed it inputs and carry out the [`Action`]s it returns from [`Topic::poll_actions`].
//!
//! Invariants (checked by the property tests in `tests/topic_model.rs`, `tests/fanout_model.rs`
//! and `tests/policy_model.rs`):
//!
//! * `held + credit granted to producers <= capacity`, in events and in bytes, where held
//!   counts once every event some blocking consumer group has not acked (`fanout.rs`), so a
//!   producer that only publishes within its credit can never overfill the topic. Under a
//!   policy that drops or refuses instead of pacing (`policy.rs`), held and the credit are
//!   each within the capacity, and what does not fit is dropped or refused, counted;
//! * a consumer never receives more than it requested (its demand), with one exception: a
//!   consumer that holds nothing and asks for at least one event may be given the front
//!   event alone when it is larger than the bytes it asked for (an event beyond its prefetch
//!   would otherwise wait for ever); the bytes beyond its demand are a debt its next
//!   requests pay first;
//! * every group reads every event accepted while it exists (and those held when it appeared);
//!   for each group, every such event is at every moment exactly one of: ready, unacked
//!   (delivered to a live consumer of the group, attempt n), acked, or (best effort only)
//!   skipped. A nack or a consumer's departure puts its unacked events back at the front of
//!   its group's ready queue with attempt n + 1;
//! * a producer's events are accepted in sequence order with no gap; a sequence number at or
//!   below the highest already accepted from that producer id is a duplicate (a retry) and is
//!   dropped and counted, never stored twice. A producer id the topic has never seen, or has
//!   forgotten ([`MarkLimits`]: idle past a TTL, or pushed out by the cap), may start at any
//!   sequence number (after a broker restart without a disk log, it resumes where it was);
//! * with a memory cap set ([`Topic::limit_memory`], the broker's memory governor), ready +
//!   unacked + granted bytes never exceed it through a grant;
//! * with a grant limit set ([`Topic::limit_grants`], room left in the broker's disk log),
//!   credit outstanding to producers never exceeds it in bytes (in spill mode, nor the memory
//!   bound less what the log still holds in memory);
//! * in spill mode ([`Topic::spill_beyond`], a disk log holds every accepted event), memory
//!   holds at most the memory bound of held events, in bytes plus at most one
//!   event: a load asks for the room left, and a store hands back at least one event, even
//!   one larger than that room, so that no event waits on disk for ever;
//!   the rest are counted "on disk" and asked for with [`Action::Load`] in acceptance order,
//!   and while any event is on disk every newly accepted one goes there too, so delivery
//!   order stays acceptance order. Credit outstanding stays within the memory bound as well,
//!   so what producers may send at once is bounded by memory, not by the disk.
//!
//! Items are opaque (`T`): the broker stores events as their encoded bytes and never decodes a
//! payload. Each item carries its credit cost in bytes alongside.
//!
//! The amounts held and promised are tallies (`tally.rs`), whose arithmetic reports a bug instead
//! of saturating: a topic whose books stop adding up refuses every further input with
//! [`TopicError::Books`] and asks for nothing more.
//!
//! **Call order.** Every input is one `&mut self` call; after any of them (or a batch of them)
//! call [`Topic::poll_actions`] and carry out every action it returns, before the next input
//! if they must not be reordered. Nothing an input does waits for the actions: a grant or a
//! delivery exists once it is returned. With a disk log, call [`Topic::limit_grants`] with
//! the log's room before `poll_actions` whenever the room may have changed. A topic after a
//! restart is built with [`Topic::new`], then [`Topic::spill_beyond`] (spill mode), then
//! [`Topic::restore`] and [`Topic::restore_spilled`], before its first connection attaches.
//!
//! | file | responsibility |
//! |---|---|
//! | `group.rs` | a consumer group: cursor, deliveries, deadlines, consumers, [`GroupMode`] |
//! | `fanout.rs` | every group reads every event; held until each blocking group acked it |
//! | `grants.rs` | free space, who is granted it, `BLOCKED` |
//! | `dispatch.rs` | demand, round-robin deliveries per group, acks, nacks, redelivery |
//! | `deadline.rs` | ack deadlines: deliveries taken back from a consumer that does not settle |
//! | `dedup.rs` | a producer's batch: credit, sequence numbers, the high-water mark |
//! | `marks.rs` | the high-water marks per producer id, bounded by an idle TTL and a cap |
//! | `policy.rs` | the overflow policy (block, drop, reject, conflate) and the max age |
//! | `spill.rs` | spill mode and restore |
//! | `stats.rs` | counters, levels, the stage state |
//! | `tally.rs` | the checked tallies and [`BooksError`] |
//! | `error.rs` | [`TopicError`] |

mod deadline;
mod dedup;
mod dispatch;
mod error;
mod fanout;
mod grants;
mod group;
mod marks;
mod policy;
mod spill;
mod stats;
mod tally;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fanout;
#[cfg(test)]
mod tests_policy;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::credit::Credit;

pub use error::TopicError;
use group::Group;
pub use group::{GroupMode, GroupStats};
pub use marks::MarkLimits;
use marks::Marks;
pub use policy::{Expired, KeyFn, Overflow, TopicPolicy, UnknownPolicy};
pub use stats::TopicStats;
pub use tally::BooksError;
use tally::Tally;

/// A connection, as the broker numbers them.
pub type ConnId = u64;

/// The most events handed to one consumer in one turn of the round-robin, so consumers with
/// demand take turns and none waits behind another's whole backlog.
pub const MAX_EVENTS_PER_TURN: u64 = 1024;

/// The most consumer groups a topic takes unless told otherwise ([`Topic::set_max_groups`]).
pub const DEFAULT_MAX_GROUPS: usize = 16;

/// One item handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<T> {
    /// Stable for the event's life in the topic.
    pub delivery_id: u64,
    /// 1 on first delivery, +1 on each redelivery.
    pub attempt: u32,
    /// The item.
    pub item: T,
}

/// What the topic wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<T> {
    /// Grant this producer more credit.
    Grant {
        /// To whom.
        producer: ConnId,
        /// How much more.
        credit: Credit,
    },
    /// Send these deliveries to this consumer.
    Deliver {
        /// To whom.
        consumer: ConnId,
        /// What, in order.
        deliveries: Vec<Delivery<T>>,
    },
    /// Read the oldest events that are only on disk, up to `room`, and hand them to
    /// [`Topic::loaded`] (spill mode only; at most one load is outstanding).
    Load {
        /// How much memory there is for them.
        room: Credit,
    },
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    /// New events stored.
    pub accepted: u64,
    /// Retried events already held (or already delivered), dropped.
    pub duplicates: u64,
    /// The highest sequence number now held for this producer id: confirm up to here.
    pub confirm_up_to: u64,
    /// Of the accepted, how many (the last ones) went to disk only (spill mode).
    pub spilled: u64,
    /// New events the policy did not store, the batch's last ones (drop-newest and reject;
    /// drop-oldest when nothing could give way). Confirmed all the same: the topic is done
    /// with them.
    pub dropped: u64,
    /// Of the dropped, how many were refused (reject): the producer must be told, they are
    /// the sequence numbers up to `confirm_up_to`.
    pub refused: u64,
    /// For a retry: the runs the topic refused before between the batch's first sequence
    /// number and the mark it had, `(from, to)`. The producer must be told again before the
    /// confirm covers them: it retried, so it may never have read those refusals (the
    /// connection that carried them broke, or was still carrying a batch when the producer
    /// moved to a new one).
    pub refused_again: Vec<(u64, u64)>,
}

impl Published {
    /// Every run of sequence numbers the producer must be told were refused, in order.
    pub fn refused_runs(&self) -> Vec<(u64, u64)> {
        let mut runs = self.refused_again.clone();
        if self.refused > 0 {
            runs.push((self.confirm_up_to + 1 - self.refused, self.confirm_up_to));
        }
        runs
    }
}

/// Unacked deliveries by id. Ids are handed out in increasing order and mostly settled in
/// that order, so an ordered map works at its two ends: better cache behaviour than a hash
/// table that scatters consecutive ids (measured: `flowgate bench`, docs/benchmarks.md).
type DeliveryMap<V> = BTreeMap<u64, V>;

#[derive(Debug)]
struct Entry<T> {
    item: T,
    bytes: u64,
    delivery_id: u64,
    attempt: u32,
    /// While unacked with an ack wait set: when it is taken back.
    due: Duration,
    /// When the topic accepted (or loaded) it, for the max age.
    born: Duration,
}

#[derive(Debug)]
struct ProducerSlot {
    producer_id: u64,
    /// Granted and not yet seen spent or handed back.
    credit: Tally,
    /// The credit cost of the producer's next event, as it last said when blocked (at first,
    /// the cost of an empty event). No grant to it is ever smaller than one such event.
    need_bytes: u64,
    /// It said it is blocked and has been granted nothing since.
    waiting: bool,
}

#[derive(Debug, Default)]
struct ConsumerSlot {
    demand: Credit,
    /// Deliveries it holds unacked.
    held: u64,
    /// Bytes an event given alone cost beyond its demand, which its next requests pay first
    /// (as its `Demand` counts them).
    debt: u64,
    /// A delivery of its passed its ack deadline, and it has settled nothing since: it gets
    /// no deliveries.
    stalled: bool,
    /// Deliveries taken back from it at their deadline, `(delivery id, attempt)`, that it
    /// has not yet answered: it still counts them as held, so it is not given an event
    /// alone until it has.
    revoked: std::collections::BTreeSet<(u64, u32)>,
}

/// A bounded topic: its consumer groups (each with its own cursor, deliveries and consumers),
/// producers' credit, and what is held for the groups that block.
#[derive(Debug)]
pub struct Topic<T> {
    capacity: Credit,
    /// Its groups, in the order they appeared; at first only the lobby (`group.rs`).
    groups: Vec<Group<T>>,
    /// The group of each attached consumer (an index into `groups`).
    members: BTreeMap<ConnId, usize>,
    /// How many groups block (the lobby does).
    blocking: usize,
    /// Events in memory that some blocking group has still to ack, each counted once.
    held_total: Tally,
    /// With two or more blocking groups: how many of them still hold each held event.
    refs: BTreeMap<u64, u32>,
    /// The most groups the topic takes ([`Topic::set_max_groups`]).
    max_groups: usize,
    /// Events that left the topic without an ack: held by no blocking group ([`Topic::take_dropped`]).
    dropped: Vec<T>,
    producers: BTreeMap<ConnId, ProducerSlot>,
    granted_total: Tally,
    /// Where the next round of grants starts: the first producer the last round passed over
    /// for lack of room, else the one after the last granted (so turns go round).
    grant_from: ConnId,
    /// Highest sequence number accepted per producer id (the dedup high-water marks),
    /// bounded by an idle TTL and a cap.
    marks: Marks,
    next_delivery_id: u64,
    /// How long a delivery may stay unsettled, for groups that appear ([`Topic::set_ack_wait`]).
    ack_wait: Option<Duration>,
    /// The time the topic was last told ([`Topic::tick`]).
    now: Duration,
    /// With [`Topic::record_attempts`]: events requeued with a raised attempt, untaken.
    requeued: Option<Vec<(T, u32)>>,
    /// Bytes of outstanding credit something outside the topic (a disk log) can still take.
    grant_room: Option<u64>,
    /// Bytes of accepted events held in memory outside the topic (waiting to be written).
    queued: u64,
    /// The most bytes held in memory and promised ([`Topic::limit_memory`]).
    memory_limit: Option<u64>,
    /// Spill mode: the most held kept in memory.
    memory: Option<Credit>,
    /// Spill mode: accepted events held only on disk.
    on_disk: Tally,
    /// Spill mode: a load was asked for and not yet answered.
    loading: bool,
    /// Stopping: nothing more is delivered, loaded or granted ([`Topic::drain`]).
    draining: bool,
    /// The first time the books stopped adding up; the topic takes no more work after it.
    broken: Option<BooksError>,
    /// What a full topic does, and how old an event may get (`policy.rs`).
    policy: TopicPolicy,
    /// Reads an event's key, for conflate.
    key_of: Option<KeyFn<T>>,
    /// Conflate: the newest event accepted per key, by delivery id, while it is held.
    keys: BTreeMap<Vec<u8>, u64>,
    /// Events that waited past the max age, untaken ([`Topic::take_expired`]).
    expired: Vec<Expired<T>>,
    stats: TopicStats,
}

impl<T: Clone> Topic<T> {
    /// An empty topic holding at most `capacity` (held and promised).
    pub fn new(capacity: Credit) -> Self {
        Topic {
            capacity,
            groups: vec![Group::new(None, GroupMode::Block, None)],
            members: BTreeMap::new(),
            blocking: 1,
            held_total: Tally::new("held"),
            refs: BTreeMap::new(),
            max_groups: DEFAULT_MAX_GROUPS,
            dropped: Vec::new(),
            producers: BTreeMap::new(),
            granted_total: Tally::new("granted"),
            grant_from: 0,
            marks: Marks::default(),
            next_delivery_id: 1,
            ack_wait: None,
            now: Duration::ZERO,
            requeued: None,
            grant_room: None,
            queued: 0,
            memory_limit: None,
            memory: None,
            on_disk: Tally::new("on disk"),
            loading: false,
            draining: false,
            broken: None,
            policy: TopicPolicy::default(),
            key_of: None,
            keys: BTreeMap::new(),
            expired: Vec::new(),
            stats: TopicStats::default(),
        }
    }

    /// The capacity.
    pub fn capacity(&self) -> Credit {
        self.capacity
    }

    /// Producers attached now.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Consumers attached now.
    pub fn consumer_count(&self) -> usize {
        self.members.len()
    }

    /// Attaches a producer connection. Returns the highest sequence number already held for
    /// `producer_id` (0 if none): the producer resumes after it.
    pub fn attach_producer(&mut self, conn: ConnId, producer_id: u64) -> u64 {
        self.producers.insert(
            conn,
            ProducerSlot {
                producer_id,
                credit: Tally::new("producer's credit"),
                need_bytes: 1,
                waiting: true,
            },
        );
        self.marks.attach(producer_id).unwrap_or(0)
    }

    /// The latest runs of `producer_id`'s events a reject policy refused, oldest first, `(from,
    /// to)`: told to a producer that attaches, in case it never read their refusal.
    pub fn refused_runs(&self, producer_id: u64) -> Vec<(u64, u64)> {
        self.marks.refused(producer_id)
    }

    /// Detaches a producer; its unused credit returns to the free space.
    pub fn detach_producer(&mut self, conn: ConnId) {
        if let Some(slot) = self.producers.remove(&conn) {
            let booked = self.granted_total.take(slot.credit.get());
            self.book(booked);
            self.marks.detach(slot.producer_id, self.now);
        }
    }

    /// How long and how many producer ids the topic remembers after their producers leave
    /// (a returning producer's retries are deduplicated only while its id is remembered).
    pub fn set_mark_limits(&mut self, limits: MarkLimits) {
        self.marks.set_limits(limits, self.now);
    }

    /// Tells the topic the time, since any fixed epoch (the topic reads no clock): producer
    /// ids idle past their TTL are forgotten, and deliveries past their ack deadline are
    /// taken back. Never moves back.
    pub fn tick(&mut self, now: Duration) {
        self.now = self.now.max(now);
        self.marks.expire(self.now);
        self.expire_old();
        self.expire_deliveries();
    }

    /// The producer ids forgotten since the last call, for a store that keeps their marks.
    pub fn take_forgotten_ids(&mut self) -> Vec<u64> {
        self.marks.take_forgotten()
    }

    /// Attaches a consumer connection of `group`, with no demand. A group the topic has not
    /// seen appears with `mode` (see [`Topic::declare_group`]); a known group's consumer must
    /// ask for the mode it has.
    pub fn attach_consumer(
        &mut self,
        conn: ConnId,
        group: &str,
        mode: GroupMode,
    ) -> Result<(), TopicError> {
        self.check_books()?;
        if self.members.contains_key(&conn) {
            return Ok(());
        }
        let index = self.declare_group(group, mode)?;
        self.groups[index].consumers.entry(conn).or_default();
        self.members.insert(conn, index);
        Ok(())
    }

    /// Detaches a consumer; everything it held unacked goes back to the front of its group's
    /// ready queue, in delivery order, with its attempt raised. The group stays, with its
    /// cursor, and (blocking) keeps holding what it has not acked.
    pub fn detach_consumer(&mut self, conn: ConnId) {
        let Some(gi) = self.members.remove(&conn) else {
            return;
        };
        let group = &mut self.groups[gi];
        group.consumers.remove(&conn);
        let mut held: Vec<u64> = group
            .unacked
            .iter()
            .filter(|(_, (owner, _))| *owner == conn)
            .map(|(id, _)| *id)
            .collect();
        // Highest id first, each pushed to the front: the lowest ends up first.
        held.sort_unstable_by(|a, b| b.cmp(a));
        for id in held {
            if let Some((_, entry)) = self.groups[gi].unacked.remove(&id) {
                let booked = self.groups[gi]
                    .unacked_total
                    .take(Credit::new(1, entry.bytes));
                self.book(booked);
                self.requeue_front(gi, entry);
            }
        }
    }

    /// Starts a graceful stop: from now on nothing is delivered, loaded or granted, while
    /// publishes within credit already granted, acks and nacks are still taken. What the
    /// topic holds stays held (ready, or unacked until its consumer settles it), so a broker
    /// can wait for the acks of deliveries in flight and for its store to confirm, and close
    /// with nothing on the wire that would have to come again. There is no way back.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// What should be sent now: deliveries within consumers' demand, round-robin, and credit
    /// grants from free space split evenly among producers.
    #[must_use = "actions that are not carried out stall the topic"]
    pub fn poll_actions(&mut self) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        if self.draining || self.broken.is_some() {
            return actions;
        }
        self.expire_old();
        self.deliver(&mut actions);
        self.load(&mut actions);
        self.grant(&mut actions);
        actions
    }

    /// What is held: in memory for a blocking group (ready or unacked), and (spill mode) only
    /// on disk.
    pub(super) fn held(&self) -> Credit {
        self.held_total.get().saturating_add(self.on_disk.get())
    }

    /// Why the topic's books stopped adding up, if they did: a bug, after which the topic
    /// refuses every input and asks for nothing.
    pub fn broken(&self) -> Option<&BooksError> {
        self.broken.as_ref()
    }

    /// Records a tally's refusal (the first one stays).
    fn book(&mut self, result: Result<(), BooksError>) {
        if let Err(e) = result {
            self.broken.get_or_insert(e);
        }
    }

    /// Refuses an input once the books are broken.
    fn check_books(&self) -> Result<(), TopicError> {
        match &self.broken {
            Some(e) => Err(TopicError::Books(e.clone())),
            None => Ok(()),
        }
    }
}
