//! The broker's topic as a pure state machine: who may publish how much, who gets which
//! event, what an ack or a disconnect changes. No sockets, no clock; the broker's connection
//! tasks feed it inputs and carry out the [`Action`]s it returns from [`Topic::poll_actions`].
//!
//! Invariants (checked by the property tests in `tests/topic_model.rs`):
//!
//! * `ready + unacked + credit granted to producers <= capacity`, in events and in bytes, so
//!   a producer that only publishes within its credit can never overfill the topic;
//! * a consumer never receives more than it requested (its demand);
//! * every accepted event is, at every moment, exactly one of: ready, unacked (delivered to a
//!   live consumer, attempt n), or acked. A nack or a consumer's departure puts its unacked
//!   events back at the front of the ready queue with attempt n + 1;
//! * a producer's events are accepted in sequence order with no gap; a sequence number at or
//!   below the highest already accepted from that producer id is a duplicate (a retry) and is
//!   dropped and counted, never stored twice. A producer id the topic has never seen may
//!   start at any sequence number (after a broker restart without a disk log, it resumes
//!   where it was);
//! * with a grant limit set ([`Topic::limit_grants`], room left in the broker's disk log),
//!   credit outstanding to producers never exceeds it in bytes (in spill mode, nor the memory
//!   bound less what the log still holds in memory);
//! * in spill mode ([`Topic::spill_beyond`], a disk log holds every accepted event), memory
//!   holds at most the memory bound of ready + unacked events (plus redeliveries put back);
//!   the rest are counted "on disk" and asked for with [`Action::Load`] in acceptance order,
//!   and while any event is on disk every newly accepted one goes there too, so delivery
//!   order stays acceptance order. Credit outstanding stays within the memory bound as well,
//!   so what producers may send at once is bounded by memory, not by the disk.
//!
//! Items are opaque (`T`): the broker stores events as their encoded bytes and never decodes a
//! payload. Each item carries its credit cost in bytes alongside.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use crate::credit::{Credit, grant_due};
use crate::stage::StageState;

/// A connection, as the broker numbers them.
pub type ConnId = u64;

/// The most events handed to one consumer in one turn of the round-robin, so consumers with
/// demand take turns and none waits behind another's whole backlog.
pub const MAX_EVENTS_PER_TURN: u64 = 1024;

/// A broken rule, reported to the peer that broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// The connection is not attached to this topic in that role.
    UnknownConnection(ConnId),
    /// A consumer of another group than the one consuming the topic.
    GroupConflict {
        /// The group the consumer named.
        group: String,
        /// The group consuming the topic.
        consumed_by: String,
    },
    /// A consumer asked for zero events.
    ZeroRequest,
    /// A producer published more than its credit.
    DataWithoutCredit {
        /// What the batch needed.
        wanted: Credit,
        /// What the producer held.
        available: Credit,
    },
    /// A producer's sequence numbers skipped ahead.
    SequenceGap {
        /// The next sequence number the topic expected (or any lower one, a duplicate).
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// A blocked producer handed back more credit than it held.
    ReturnedMoreThanHeld {
        /// What it handed back.
        returned: Credit,
        /// What the topic had granted it and not yet seen spent.
        held: Credit,
    },
    /// A blocked producer waits for an event that can never fit the topic.
    EventTooLarge {
        /// The event's credit cost in bytes.
        bytes: u64,
        /// The most bytes the topic can ever grant at once.
        limit: u64,
    },
    /// An ack or nack for a delivery this consumer does not hold.
    UnknownDelivery(u64),
    /// An ack or nack for an earlier attempt of a delivery that was redelivered since.
    StaleAttempt {
        /// The delivery.
        delivery_id: u64,
        /// The attempt named.
        got: u32,
        /// The attempt outstanding.
        current: u32,
    },
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::UnknownConnection(c) => write!(f, "connection {c} is not attached"),
            TopicError::GroupConflict { group, consumed_by } => write!(
                f,
                "consumed by group '{consumed_by}', so not '{group}'; one group per topic is supported"
            ),
            TopicError::ZeroRequest => {
                f.write_str("request for zero events (request(0) is invalid)")
            }
            TopicError::DataWithoutCredit { wanted, available } => {
                write!(f, "published {wanted} with only {available} of credit")
            }
            TopicError::SequenceGap { expected, got } => {
                write!(f, "sequence gap: expected {expected}, got {got}")
            }
            TopicError::ReturnedMoreThanHeld { returned, held } => {
                write!(
                    f,
                    "handed back {returned} of credit while holding only {held}"
                )
            }
            TopicError::EventTooLarge { bytes, limit } => write!(
                f,
                "an event costing {bytes} bytes of credit can never fit: the topic grants at most {limit} bytes"
            ),
            TopicError::UnknownDelivery(id) => {
                write!(f, "delivery {id} is not held by this consumer")
            }
            TopicError::StaleAttempt {
                delivery_id,
                got,
                current,
            } => write!(
                f,
                "stale ack for delivery {delivery_id}: attempt {got}, outstanding attempt {current}"
            ),
        }
    }
}

impl std::error::Error for TopicError {}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// New events stored.
    pub accepted: u64,
    /// Retried events already held (or already delivered), dropped.
    pub duplicates: u64,
    /// The highest sequence number now held for this producer id: confirm up to here.
    pub confirm_up_to: u64,
    /// Of the accepted, how many (the last ones) went to disk only (spill mode).
    pub spilled: u64,
}

/// Counters over the topic's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicStats {
    /// Events accepted from producers.
    pub accepted: u64,
    /// Retried events dropped as duplicates.
    pub duplicates: u64,
    /// Deliveries made (first attempts and redeliveries).
    pub delivered: u64,
    /// Of those, redeliveries.
    pub redelivered: u64,
    /// Events acknowledged (gone from the topic).
    pub acked: u64,
    /// Events nacked by consumers.
    pub nacked: u64,
    /// Events ready now.
    pub ready: u64,
    /// Bytes ready now.
    pub ready_bytes: u64,
    /// Events delivered and not yet acked.
    pub unacked: u64,
    /// Bytes delivered and not yet acked.
    pub unacked_bytes: u64,
    /// Credit granted to producers and not yet used.
    pub producer_credit: Credit,
    /// Outstanding consumer demand, summed.
    pub consumer_demand: Credit,
    /// The most events held (ready + unacked) at once.
    pub peak_events: u64,
    /// The most bytes held at once.
    pub peak_bytes: u64,
    /// Events accepted straight to disk, over the topic's life (spill mode).
    pub spilled: u64,
    /// Events accepted and held only on disk now (spill mode).
    pub on_disk: u64,
    /// Their bytes.
    pub on_disk_bytes: u64,
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
}

#[derive(Debug)]
struct ProducerSlot {
    producer_id: u64,
    /// Granted and not yet seen spent or handed back.
    credit: Credit,
    /// The credit cost of the producer's next event, as it last said when blocked (at first,
    /// the cost of an empty event). No grant to it is ever smaller than one such event.
    need_bytes: u64,
    /// It said it is blocked and has been granted nothing since.
    waiting: bool,
}

#[derive(Debug, Default)]
struct ConsumerSlot {
    demand: Credit,
}

/// A bounded topic: ready queue, unacked deliveries, producers' credit, consumers' demand.
#[derive(Debug)]
pub struct Topic<T> {
    capacity: Credit,
    ready: VecDeque<Entry<T>>,
    ready_total: Credit,
    unacked: DeliveryMap<(ConnId, Entry<T>)>,
    unacked_total: Credit,
    producers: BTreeMap<ConnId, ProducerSlot>,
    granted_total: Credit,
    consumers: BTreeMap<ConnId, ConsumerSlot>,
    /// The consumer group of the attached consumers, while any are attached.
    group: Option<String>,
    /// The consumer served last; the next turn starts after it.
    last_served: Option<ConnId>,
    /// Where the next round of grants starts: the first producer the last round passed over
    /// for lack of room, else the one after the last granted (so turns go round).
    grant_from: ConnId,
    /// Highest sequence number accepted per producer id (the dedup high-water mark).
    high_seq: HashMap<u64, u64>,
    next_delivery_id: u64,
    /// Bytes of outstanding credit something outside the topic (a disk log) can still take.
    grant_room: Option<u64>,
    /// Bytes of accepted events held in memory outside the topic (waiting to be written).
    queued: u64,
    /// Spill mode: the most ready + unacked kept in memory.
    memory: Option<Credit>,
    /// Spill mode: accepted events held only on disk.
    on_disk: Credit,
    /// Spill mode: a load was asked for and not yet answered.
    loading: bool,
    /// Stopping: nothing more is delivered, loaded or granted ([`Topic::drain`]).
    draining: bool,
    stats: TopicStats,
}

impl<T: Clone> Topic<T> {
    /// An empty topic holding at most `capacity` (ready + unacked + promised).
    pub fn new(capacity: Credit) -> Self {
        Topic {
            capacity,
            ready: VecDeque::new(),
            ready_total: Credit::ZERO,
            unacked: DeliveryMap::default(),
            unacked_total: Credit::ZERO,
            producers: BTreeMap::new(),
            granted_total: Credit::ZERO,
            consumers: BTreeMap::new(),
            group: None,
            last_served: None,
            grant_from: 0,
            high_seq: HashMap::new(),
            next_delivery_id: 1,
            grant_room: None,
            queued: 0,
            memory: None,
            on_disk: Credit::ZERO,
            loading: false,
            draining: false,
            stats: TopicStats::default(),
        }
    }

    /// The capacity.
    pub fn capacity(&self) -> Credit {
        self.capacity
    }

    /// Caps the credit outstanding to producers at `room` bytes (`None`: no cap beyond the
    /// capacity). The broker sets it from the room left in the topic's disk log, so credit
    /// granted can always be written; `queued` is what the log still holds in memory, waiting
    /// to be written, which in spill mode counts against the memory bound too. Credit already
    /// granted stays usable.
    pub fn limit_grants(&mut self, room: Option<u64>, queued: u64) {
        self.grant_room = room;
        self.queued = queued;
    }

    /// Spill mode: keep at most `memory` of ready + unacked events in memory; events beyond it
    /// stay only in the disk log (the store keeps every accepted event) until there is room.
    /// The capacity given to [`Topic::new`] then bounds what is held on disk and in memory
    /// together.
    pub fn spill_beyond(&mut self, memory: Credit) {
        self.memory = Some(memory);
    }

    /// Spill mode, after a restart: `on_disk` more accepted events wait in the log, after
    /// those given to [`Topic::restore`].
    pub fn restore_spilled(&mut self, on_disk: Credit) {
        self.on_disk = self.on_disk.saturating_add(on_disk);
    }

    /// The answer to [`Action::Load`]: the oldest on-disk events, in acceptance order, with
    /// their bytes. The count on disk goes down by exactly these: events spilled while the
    /// load was under way are still on disk even if the store read everything it had then.
    pub fn loaded(&mut self, items: Vec<(T, u64)>) {
        self.loading = false;
        for (item, bytes) in items {
            let cost = Credit::new(1, bytes);
            self.on_disk = self.on_disk.saturating_sub(cost);
            self.push_ready(item, bytes);
        }
        self.note_peak();
    }

    /// Puts back what a disk log recovered: the producers' high-water marks and the accepted,
    /// unacknowledged `(item, bytes)`, in acceptance order, ready for delivery (attempt 1).
    /// Recovered events may exceed the capacity; no credit is granted until they drain below it.
    pub fn restore(
        &mut self,
        high_water: impl IntoIterator<Item = (u64, u64)>,
        items: impl IntoIterator<Item = (T, u64)>,
    ) {
        for (producer_id, seq) in high_water {
            let high = self.high_seq.entry(producer_id).or_default();
            *high = (*high).max(seq);
        }
        for (item, bytes) in items {
            self.push_ready(item, bytes);
        }
        self.note_peak();
    }

    /// Appends a newly accepted (or loaded) item to the ready queue with a fresh delivery id.
    fn push_ready(&mut self, item: T, bytes: u64) {
        let delivery_id = self.next_delivery_id;
        self.next_delivery_id += 1;
        self.ready.push_back(Entry {
            item,
            bytes,
            delivery_id,
            attempt: 1,
        });
        self.ready_total = self.ready_total.saturating_add(Credit::new(1, bytes));
    }

    /// Spill mode: whether an accepted item of `cost` goes to disk only.
    fn spills(&self, cost: Credit) -> bool {
        let Some(memory) = self.memory else {
            return false;
        };
        let after = self
            .ready_total
            .saturating_add(self.unacked_total)
            .saturating_add(cost);
        !self.on_disk.is_zero() || after.events > memory.events || after.bytes > memory.bytes
    }

    /// Counters and current levels. `ready`, `unacked` and the peaks are what memory holds;
    /// `on_disk` what only the disk does.
    pub fn stats(&self) -> TopicStats {
        TopicStats {
            on_disk: self.on_disk.events,
            on_disk_bytes: self.on_disk.bytes,
            ready: self.ready_total.events,
            ready_bytes: self.ready_total.bytes,
            unacked: self.unacked_total.events,
            unacked_bytes: self.unacked_total.bytes,
            producer_credit: self.granted_total,
            consumer_demand: self
                .consumers
                .values()
                .fold(Credit::ZERO, |acc, c| acc.saturating_add(c.demand)),
            ..self.stats
        }
    }

    /// What the topic is doing as a pipeline stage, by [`StageState::of_bounded_stage`]: a
    /// producer waiting here is blocked with no room for its next event, since the grant rules
    /// grant a blocked producer whenever there is. Call after [`Topic::poll_actions`], which
    /// carries out the grant rules.
    pub fn stage_state(&self) -> StageState {
        StageState::of_bounded_stage(
            self.held().is_zero(),
            self.producers.values().any(|p| p.waiting),
        )
    }

    /// Producers attached now.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Consumers attached now.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Attaches a producer connection. Returns the highest sequence number already held for
    /// `producer_id` (0 if none): the producer resumes after it.
    pub fn attach_producer(&mut self, conn: ConnId, producer_id: u64) -> u64 {
        self.producers.insert(
            conn,
            ProducerSlot {
                producer_id,
                credit: Credit::ZERO,
                need_bytes: 1,
                waiting: true,
            },
        );
        self.high_seq.get(&producer_id).copied().unwrap_or(0)
    }

    /// Detaches a producer; its unused credit returns to the free space.
    pub fn detach_producer(&mut self, conn: ConnId) {
        if let Some(slot) = self.producers.remove(&conn) {
            self.granted_total = self.granted_total.saturating_sub(slot.credit);
        }
    }

    /// Attaches a consumer connection of `group`, with no demand. One group consumes a
    /// topic at a time: the first consumer's sets it, and it is free again once its last
    /// consumer has left; a consumer of another group meanwhile is refused.
    pub fn attach_consumer(&mut self, conn: ConnId, group: &str) -> Result<(), TopicError> {
        match &self.group {
            Some(g) if g != group => {
                return Err(TopicError::GroupConflict {
                    group: group.to_string(),
                    consumed_by: g.clone(),
                });
            }
            Some(_) => {}
            None => self.group = Some(group.to_string()),
        }
        self.consumers.entry(conn).or_default();
        Ok(())
    }

    /// Detaches a consumer; everything it held unacked goes back to the front of the ready
    /// queue, in delivery order, with its attempt raised.
    pub fn detach_consumer(&mut self, conn: ConnId) {
        if self.consumers.remove(&conn).is_none() {
            return;
        }
        if self.consumers.is_empty() {
            self.group = None;
        }
        let mut held: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, (owner, _))| *owner == conn)
            .map(|(id, _)| *id)
            .collect();
        // Highest id first, each pushed to the front: the lowest ends up first.
        held.sort_unstable_by(|a, b| b.cmp(a));
        for id in held {
            if let Some((_, entry)) = self.unacked.remove(&id) {
                self.unacked_total = self
                    .unacked_total
                    .saturating_sub(Credit::new(1, entry.bytes));
                self.requeue_front(entry);
            }
        }
    }

    /// Accepts a producer's batch of `(seq, item, bytes)`, a contiguous run of sequence numbers. The whole batch is
    /// charged to the producer's credit (duplicates too, since the producer spent credit on
    /// them); a batch beyond its credit, or one that skips a sequence number, is refused whole.
    pub fn publish(
        &mut self,
        conn: ConnId,
        batch: Vec<(u64, T, u64)>,
    ) -> Result<Published, TopicError> {
        let slot = self
            .producers
            .get(&conn)
            .ok_or(TopicError::UnknownConnection(conn))?;
        let wanted = batch.iter().fold(Credit::ZERO, |acc, (_, _, b)| {
            acc.saturating_add(Credit::new(1, *b))
        });
        if wanted.events > slot.credit.events || wanted.bytes > slot.credit.bytes {
            return Err(TopicError::DataWithoutCredit {
                wanted,
                available: slot.credit,
            });
        }
        let producer_id = slot.producer_id;
        // A producer id the topic has no record of (a broker that restarted without a disk
        // log) may resume anywhere: the topic cannot know what came before.
        let known = self.high_seq.get(&producer_id).copied();
        let mut high = known.unwrap_or(0);
        // A batch is a contiguous run of sequence numbers starting at or below the next one
        // expected (an overlap is a retry). Validate it whole before changing anything.
        if let Some((first, _, _)) = batch.first() {
            let first = *first;
            if known.is_none() && first > 0 {
                high = first - 1;
            }
            if first == 0 || first > high + 1 {
                return Err(TopicError::SequenceGap {
                    expected: high + 1,
                    got: first,
                });
            }
            for (offset, (seq, _, _)) in (0u64..).zip(&batch) {
                if *seq != first + offset {
                    return Err(TopicError::SequenceGap {
                        expected: first + offset,
                        got: *seq,
                    });
                }
            }
        }
        if let Some(slot) = self.producers.get_mut(&conn) {
            slot.credit = slot.credit.saturating_sub(wanted);
        }
        self.granted_total = self.granted_total.saturating_sub(wanted);
        let mut out = Published::default();
        for (seq, item, bytes) in batch {
            if seq <= high {
                out.duplicates += 1;
                continue;
            }
            high = seq;
            let cost = Credit::new(1, bytes);
            if self.spills(cost) {
                self.on_disk = self.on_disk.saturating_add(cost);
                out.spilled += 1;
            } else {
                self.push_ready(item, bytes);
            }
            out.accepted += 1;
        }
        self.high_seq.insert(producer_id, high);
        out.confirm_up_to = high;
        self.stats.accepted += out.accepted;
        self.stats.spilled += out.spilled;
        self.stats.duplicates += out.duplicates;
        self.note_peak();
        Ok(out)
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
        let limit = self.largest_grant();
        let slot = self
            .producers
            .get_mut(&conn)
            .ok_or(TopicError::UnknownConnection(conn))?;
        let Some(left) = slot.credit.checked_sub(returned) else {
            return Err(TopicError::ReturnedMoreThanHeld {
                returned,
                held: slot.credit,
            });
        };
        if need_bytes > limit {
            return Err(TopicError::EventTooLarge {
                bytes: need_bytes,
                limit,
            });
        }
        slot.credit = left;
        self.granted_total = self
            .granted_total
            .checked_sub(returned)
            .expect("the total granted covers every producer's share");
        slot.need_bytes = need_bytes.max(1);
        // A grant already on its way may cover the event; then the producer is not waiting.
        slot.waiting = !slot.credit.admits(slot.need_bytes);
        Ok(())
    }

    /// The most bytes one grant can ever carry: the capacity, or in spill mode the memory bound.
    fn largest_grant(&self) -> u64 {
        match self.memory {
            Some(memory) => memory.bytes.min(self.capacity.bytes),
            None => self.capacity.bytes,
        }
    }

    /// Adds consumer demand (cumulative, saturating). Zero events is an error.
    pub fn request(&mut self, conn: ConnId, credit: Credit) -> Result<(), TopicError> {
        if credit.events == 0 {
            return Err(TopicError::ZeroRequest);
        }
        let slot = self
            .consumers
            .get_mut(&conn)
            .ok_or(TopicError::UnknownConnection(conn))?;
        slot.demand = slot.demand.saturating_add(credit);
        Ok(())
    }

    /// Acknowledges a delivery: the event is done, its space is free, and it is handed back
    /// (so a store can forget it).
    pub fn ack(&mut self, conn: ConnId, delivery_id: u64, attempt: u32) -> Result<T, TopicError> {
        let entry = self.take_unacked(conn, delivery_id, attempt)?;
        self.stats.acked += 1;
        Ok(entry.item)
    }

    /// Starts a graceful stop: from now on nothing is delivered, loaded or granted, while
    /// publishes within credit already granted, acks and nacks are still taken. What the
    /// topic holds stays held (ready, or unacked until its consumer settles it), so a broker
    /// can wait for the acks of deliveries in flight and for its store to confirm, and close
    /// with nothing on the wire that would have to come again. There is no way back.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Refuses a delivery: the event goes back to the front of the ready queue, attempt + 1.
    pub fn nack(&mut self, conn: ConnId, delivery_id: u64, attempt: u32) -> Result<(), TopicError> {
        let entry = self.take_unacked(conn, delivery_id, attempt)?;
        self.stats.nacked += 1;
        self.requeue_front(entry);
        Ok(())
    }

    /// What should be sent now: deliveries within consumers' demand, round-robin, and credit
    /// grants from free space split evenly among producers.
    #[must_use = "actions that are not carried out stall the topic"]
    pub fn poll_actions(&mut self) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        if self.draining {
            return actions;
        }
        self.deliver(&mut actions);
        self.load(&mut actions);
        self.grant(&mut actions);
        actions
    }

    fn deliver(&mut self, actions: &mut Vec<Action<T>>) {
        while let Some(front_bytes) = self.ready.front().map(|e| e.bytes) {
            let Some(conn) = self.next_consumer(front_bytes) else {
                return;
            };
            let Some(slot) = self.consumers.get_mut(&conn) else {
                return;
            };
            let mut deliveries = Vec::new();
            while (deliveries.len() as u64) < MAX_EVENTS_PER_TURN {
                match self.ready.front() {
                    Some(e) if slot.demand.admits(e.bytes) => {}
                    _ => break,
                }
                let Some(entry) = self.ready.pop_front() else {
                    break;
                };
                let cost = Credit::new(1, entry.bytes);
                slot.demand = spend(slot.demand, cost);
                self.ready_total = self.ready_total.saturating_sub(cost);
                self.unacked_total = self.unacked_total.saturating_add(cost);
                self.stats.delivered += 1;
                if entry.attempt > 1 {
                    self.stats.redelivered += 1;
                }
                deliveries.push(Delivery {
                    delivery_id: entry.delivery_id,
                    attempt: entry.attempt,
                    item: entry.item.clone(),
                });
                self.unacked.insert(entry.delivery_id, (conn, entry));
            }
            self.last_served = Some(conn);
            actions.push(Action::Deliver {
                consumer: conn,
                deliveries,
            });
        }
    }

    /// Spill mode: asks for on-disk events once memory is at most half full, so loads come in
    /// batches of at least half the memory bound.
    fn load(&mut self, actions: &mut Vec<Action<T>>) {
        let Some(memory) = self.memory else {
            return;
        };
        if self.loading || self.on_disk.is_zero() {
            return;
        }
        let in_memory = self.ready_total.saturating_add(self.unacked_total);
        if in_memory.events * 2 > memory.events || in_memory.bytes * 2 > memory.bytes {
            return;
        }
        self.loading = true;
        actions.push(Action::Load {
            room: memory.saturating_sub(in_memory),
        });
    }

    /// The next consumer after the last one served whose demand admits an item of `bytes`.
    fn next_consumer(&self, bytes: u64) -> Option<ConnId> {
        let after = self.last_served.unwrap_or(0);
        let admits = |(id, c): (&ConnId, &ConsumerSlot)| c.demand.admits(bytes).then_some(*id);
        self.consumers
            .range(after.saturating_add(1)..)
            .find_map(admits)
            .or_else(|| self.consumers.range(..=after).find_map(admits))
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
    fn grant(&mut self, actions: &mut Vec<Action<T>>) {
        if self.producers.is_empty() {
            return;
        }
        let free = self.free_for_grants();
        if free.events == 0 || free.bytes == 0 {
            return;
        }
        let refill = grant_due(self.capacity, self.held(), self.granted_total).is_some();
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
            slot.credit = slot.credit.saturating_add(credit);
            slot.waiting = false;
            self.granted_total = self.granted_total.saturating_add(credit);
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

    /// What is held: ready, delivered and unacked, and (spill mode) only on disk.
    fn held(&self) -> Credit {
        self.ready_total
            .saturating_add(self.unacked_total)
            .saturating_add(self.on_disk)
    }

    /// The space neither held nor promised, within every bound: the capacity, in spill mode
    /// the memory bound on what producers may send at once, and the room a disk log has left.
    /// (Held may exceed the capacity after a restore; the free space is then zero.)
    fn free_for_grants(&self) -> Credit {
        let mut free = self
            .capacity
            .saturating_sub(self.held())
            .saturating_sub(self.granted_total);
        if let Some(memory) = self.memory {
            free = free.min(memory.saturating_sub(self.granted_total));
        }
        let room = match (self.grant_room, self.memory) {
            (Some(disk), Some(memory)) => Some(disk.min(memory.bytes.saturating_sub(self.queued))),
            (room, _) => room,
        };
        if let Some(room) = room {
            let bytes = free
                .bytes
                .min(room.saturating_sub(self.granted_total.bytes));
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

    fn take_unacked(
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
        self.unacked_total = self
            .unacked_total
            .saturating_sub(Credit::new(1, entry.bytes));
        Ok(entry)
    }

    /// Puts an entry already taken out of `unacked` back at the front of the ready queue.
    fn requeue_front(&mut self, mut entry: Entry<T>) {
        let cost = Credit::new(1, entry.bytes);
        self.ready_total = self.ready_total.saturating_add(cost);
        entry.attempt = entry.attempt.saturating_add(1);
        self.ready.push_front(entry);
    }

    fn note_peak(&mut self) {
        let held = self.ready_total.saturating_add(self.unacked_total);
        self.stats.peak_events = self.stats.peak_events.max(held.events);
        self.stats.peak_bytes = self.stats.peak_bytes.max(held.bytes);
    }
}

/// Spends `cost` from a demand, leaving unbounded dimensions unbounded.
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
            demand.bytes - cost.bytes
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group_consumes_a_topic_until_its_last_consumer_leaves() {
        let mut t: Topic<u64> = Topic::new(Credit::new(10, 1000));
        t.attach_consumer(1, "db").unwrap();
        t.attach_consumer(2, "db").unwrap();
        let refused = t.attach_consumer(3, "audit").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "consumed by group 'db', so not 'audit'; one group per topic is supported"
        );
        assert_eq!(
            t.consumer_count(),
            2,
            "the refused consumer is not attached"
        );
        t.detach_consumer(1);
        assert!(
            t.attach_consumer(3, "audit").is_err(),
            "db still has a consumer"
        );
        t.detach_consumer(2);
        t.attach_consumer(3, "audit").unwrap();
    }

    const P: ConnId = 1;
    const C: ConnId = 2;

    fn topic(events: u64) -> Topic<u64> {
        Topic::new(Credit::new(events, 1_000_000))
    }

    fn grants(actions: &[Action<u64>]) -> Vec<(ConnId, Credit)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Grant { producer, credit } => Some((*producer, *credit)),
                _ => None,
            })
            .collect()
    }

    fn delivered(actions: &[Action<u64>], to: ConnId) -> Vec<(u64, u32, u64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Deliver {
                    consumer,
                    deliveries,
                } if *consumer == to => Some(deliveries),
                _ => None,
            })
            .flatten()
            .map(|d| (d.delivery_id, d.attempt, d.item))
            .collect()
    }

    fn batch(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64, u64)> {
        seqs.map(|s| (s, s, 10)).collect()
    }

    #[test]
    fn a_new_producer_is_granted_the_free_space() {
        let mut t = topic(100);
        assert_eq!(t.attach_producer(P, 7), 0);
        assert_eq!(
            grants(&t.poll_actions()),
            vec![(P, Credit::new(100, 1_000_000))]
        );
        assert!(t.poll_actions().is_empty(), "granted once, not twice");
    }

    #[test]
    fn a_draining_topic_delivers_and_grants_nothing_but_takes_publishes_and_acks() {
        let mut t = topic(100);
        t.attach_producer(P, 7);
        t.attach_consumer(C, "g").unwrap();
        let _ = t.poll_actions();
        t.publish(P, batch(1..=4)).unwrap();
        t.request(C, Credit::new(2, 1_000)).unwrap();
        let first = delivered(&t.poll_actions(), C);
        assert_eq!(first.len(), 2);
        t.drain();
        // Within the credit already granted, a publish is still accepted.
        assert_eq!(t.publish(P, batch(5..=6)).unwrap().accepted, 2);
        t.request(C, Credit::new(10, 10_000)).unwrap();
        t.ack(C, first[0].0, 1).unwrap();
        assert!(t.poll_actions().is_empty(), "nothing delivered or granted");
        let s = t.stats();
        assert_eq!((s.ready, s.unacked, s.acked), (4, 1, 1));
    }

    #[test]
    fn two_producers_split_the_space_evenly() {
        let mut t = topic(100);
        t.attach_producer(1, 7);
        t.attach_producer(3, 8);
        let g = grants(&t.poll_actions());
        assert_eq!(
            g,
            vec![(1, Credit::new(50, 500_000)), (3, Credit::new(50, 500_000))]
        );
    }

    #[test]
    fn publishing_beyond_credit_is_refused_whole() {
        let mut t = topic(3);
        t.attach_producer(P, 7);
        let _ = t.poll_actions();
        let err = t.publish(P, batch(1..=4)).unwrap_err();
        assert!(matches!(err, TopicError::DataWithoutCredit { .. }));
        assert_eq!(t.stats().ready, 0);
    }

    #[test]
    fn a_retried_batch_is_dropped_as_duplicate_and_confirmed_again() {
        let mut t = topic(100);
        t.attach_producer(P, 7);
        let _ = t.poll_actions();
        assert_eq!(t.publish(P, batch(1..=3)).unwrap().confirm_up_to, 3);
        let again = t.publish(P, batch(2..=5)).unwrap();
        assert_eq!(
            (again.accepted, again.duplicates, again.confirm_up_to),
            (2, 2, 5)
        );
        assert_eq!(t.stats().ready, 5);
    }

    #[test]
    fn a_reconnecting_producer_learns_where_to_resume() {
        let mut t = topic(100);
        t.attach_producer(P, 7);
        let _ = t.poll_actions();
        t.publish(P, batch(1..=4)).unwrap();
        t.detach_producer(P);
        assert_eq!(t.attach_producer(9, 7), 4);
        assert_eq!(
            t.attach_producer(10, 8),
            0,
            "another producer id starts afresh"
        );
    }

    #[test]
    fn a_sequence_gap_is_refused() {
        let mut t = topic(100);
        t.attach_producer(P, 7);
        let _ = t.poll_actions();
        t.publish(P, batch(1..=2)).unwrap();
        let err = t.publish(P, batch(4..=5)).unwrap_err();
        assert_eq!(
            err,
            TopicError::SequenceGap {
                expected: 3,
                got: 4
            }
        );
    }

    #[test]
    fn an_unknown_producer_may_resume_anywhere_but_a_known_one_may_not() {
        let mut t = topic(100);
        t.attach_producer(P, 7);
        let _ = t.poll_actions();
        assert_eq!(t.publish(P, batch(500..=501)).unwrap().confirm_up_to, 501);
        t.detach_producer(P);
        t.restore([(8, 40)], []);
        t.attach_producer(3, 8);
        let _ = t.poll_actions();
        assert!(matches!(
            t.publish(3, batch(42..=42)),
            Err(TopicError::SequenceGap { expected: 41, .. })
        ));
    }

    #[test]
    fn restored_events_are_delivered_first_and_grants_fit_the_room_left() {
        let mut t = topic(10);
        t.restore([(7, 3)], [(1, 10), (2, 10), (3, 10)]);
        t.limit_grants(Some(0), 0);
        t.attach_producer(P, 7);
        t.attach_consumer(C, "g").unwrap();
        t.request(C, Credit::new(10, 10_000)).unwrap();
        let actions = t.poll_actions();
        assert_eq!(
            delivered(&actions, C)
                .iter()
                .map(|d| d.2)
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(grants(&actions).is_empty(), "no room on disk, no grant");
        t.limit_grants(Some(50), 0);
        assert_eq!(
            grants(&t.poll_actions()),
            vec![(P, Credit::new(1, 50))],
            "events shrink with the bytes"
        );
        t.limit_grants(Some(500_000), 0);
        assert_eq!(
            grants(&t.poll_actions()),
            vec![(P, Credit::new(2, 499_950))]
        );
        assert_eq!(t.attach_producer(9, 7), 3, "the restored high-water mark");
    }

    #[test]
    fn a_consumer_gets_no_more_than_it_asked_for() {
        let mut t = topic(100);
        t.attach_producer(P, 7);
        t.attach_consumer(C, "g").unwrap();
        let _ = t.poll_actions();
        t.publish(P, batch(1..=10)).unwrap();
        assert!(
            delivered(&t.poll_actions(), C).is_empty(),
            "no demand, no delivery"
        );
        t.request(C, Credit::new(3, 1_000)).unwrap();
        let got = delivered(&t.poll_actions(), C);
        assert_eq!(got.iter().map(|d| d.2).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            t.request(C, Credit::new(0, 5)),
            Err(TopicError::ZeroRequest)
        );
    }

    #[test]
    fn unacked_events_count_against_capacity_until_acked() {
        let mut t = topic(4);
        t.attach_producer(P, 7);
        t.attach_consumer(C, "g").unwrap();
        let _ = t.poll_actions();
        t.publish(P, batch(1..=4)).unwrap();
        t.request(C, Credit::new(4, 1_000)).unwrap();
        let got = delivered(&t.poll_actions(), C);
        assert_eq!(got.len(), 4);
        assert!(
            grants(&t.poll_actions()).is_empty(),
            "delivered but unacked: still full"
        );
        for (id, attempt, item) in got {
            assert_eq!(t.ack(C, id, attempt).unwrap(), item);
        }
        // The events come back; the bytes were never spent beyond the 40 published.
        assert_eq!(grants(&t.poll_actions()), vec![(P, Credit::new(4, 40))]);
    }

    #[test]
    fn a_departing_consumer_s_deliveries_are_redelivered_in_order_with_a_higher_attempt() {
        let mut t = topic(100);
        t.attach_producer(P, 7);
        t.attach_consumer(C, "g").unwrap();
        let _ = t.poll_actions();
        t.publish(P, batch(1..=3)).unwrap();
        t.request(C, Credit::new(10, 10_000)).unwrap();
        let first = delivered(&t.poll_actions(), C);
        t.detach_consumer(C);
        t.attach_consumer(5, "g").unwrap();
        t.request(5, Credit::new(10, 10_000)).unwrap();
        let again = delivered(&t.poll_actions(), 5);
        assert_eq!(
            again.iter().map(|d| (d.0, d.1, d.2)).collect::<Vec<_>>(),
            first.iter().map(|d| (d.0, 2, d.2)).collect::<Vec<_>>()
        );
        assert_eq!(t.stats().redelivered, 3);
    }

    #[test]
    fn a_stale_ack_is_rejected_and_changes_nothing() {
        let mut t = topic(100);
        t.attach_producer(P, 7);
        t.attach_consumer(C, "g").unwrap();
        let _ = t.poll_actions();
        t.publish(P, batch(1..=1)).unwrap();
        t.request(C, Credit::new(10, 10_000)).unwrap();
        let (id, attempt, _) = delivered(&t.poll_actions(), C)[0];
        t.nack(C, id, attempt).unwrap();
        let (id2, attempt2, _) = delivered(&t.poll_actions(), C)[0];
        assert_eq!((id2, attempt2), (id, 2));
        assert_eq!(
            t.ack(C, id, 1),
            Err(TopicError::StaleAttempt {
                delivery_id: id,
                got: 1,
                current: 2
            })
        );
        assert_eq!(t.stats().unacked, 1);
        t.ack(C, id, 2).unwrap();
        assert_eq!(t.ack(C, id, 2), Err(TopicError::UnknownDelivery(id)));
    }

    #[test]
    fn consumers_take_turns_and_share_by_demand() {
        let mut t = topic(1_000);
        t.attach_producer(P, 7);
        t.attach_consumer(10, "g").unwrap();
        t.attach_consumer(11, "g").unwrap();
        let _ = t.poll_actions();
        t.publish(P, batch(1..=100)).unwrap();
        t.request(10, Credit::new(2, 10_000)).unwrap(); // slow: asks for little
        t.request(11, Credit::new(90, 100_000)).unwrap(); // fast: asks for a lot
        let actions = t.poll_actions();
        assert_eq!(delivered(&actions, 10).len(), 2);
        assert_eq!(delivered(&actions, 11).len(), 90);
    }

    #[test]
    fn another_consumer_cannot_ack_what_it_does_not_hold() {
        let mut t = topic(100);
        t.attach_producer(P, 7);
        t.attach_consumer(C, "g").unwrap();
        t.attach_consumer(9, "g").unwrap();
        let _ = t.poll_actions();
        t.publish(P, batch(1..=1)).unwrap();
        t.request(C, Credit::new(1, 1_000)).unwrap();
        let (id, attempt, _) = delivered(&t.poll_actions(), C)[0];
        assert_eq!(t.ack(9, id, attempt), Err(TopicError::UnknownDelivery(id)));
    }

    fn loads(actions: &[Action<u64>]) -> Vec<Credit> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Load { room } => Some(*room),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn in_spill_mode_events_beyond_memory_wait_on_disk_and_come_back_in_order() {
        // Room for 100 on disk and in memory together, 4 in memory.
        let mut t: Topic<u64> = Topic::new(Credit::new(100, 10_000_000));
        t.spill_beyond(Credit::new(4, 1_000_000));
        t.attach_producer(P, 7);
        t.attach_consumer(C, "g").unwrap();
        let first = grants(&t.poll_actions());
        assert_eq!(
            first,
            vec![(P, Credit::new(4, 1_000_000))],
            "in flight <= memory"
        );
        let out = t.publish(P, batch(1..=4)).unwrap();
        assert_eq!((out.accepted, out.spilled), (4, 0));
        let _ = t.poll_actions();
        let out = t.publish(P, batch(5..=7)).unwrap();
        assert_eq!((out.accepted, out.spilled), (3, 3));
        assert_eq!((t.stats().ready, t.stats().on_disk), (4, 3));

        t.request(C, Credit::new(10, 10_000)).unwrap();
        let actions = t.poll_actions();
        let got = delivered(&actions, C);
        assert_eq!(
            got.iter().map(|d| d.2).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!(
            loads(&actions).is_empty(),
            "memory is full of unacked events"
        );
        for (id, attempt, _) in &got[..2] {
            t.ack(C, *id, *attempt).unwrap();
        }
        let actions = t.poll_actions();
        assert_eq!(loads(&actions), vec![Credit::new(2, 1_000_000 - 20)]);
        assert!(loads(&t.poll_actions()).is_empty(), "one load at a time");
        // While events wait on disk, new ones queue behind them there.
        let _ = t.publish(P, batch(8..=8)).unwrap();
        assert_eq!(t.stats().on_disk, 4);
        t.loaded(vec![(5, 10), (6, 10)]);
        let got = delivered(&t.poll_actions(), C);
        assert_eq!(got.iter().map(|d| d.2).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(t.stats().on_disk, 2);
        assert!(t.stats().peak_events <= 4, "memory never held more than 4");
    }

    #[test]
    fn events_spilled_while_a_load_is_answered_stay_counted_on_disk() {
        let mut t = topic(100);
        t.spill_beyond(Credit::new(2, 1_000_000));
        t.attach_producer(P, 7);
        t.restore_spilled(Credit::new(3, 30));
        assert_eq!(loads(&t.poll_actions()), vec![Credit::new(2, 1_000_000)]);
        // The store reads all three it has; before its answer lands, one more spills.
        t.publish(P, batch(1..=1)).unwrap();
        t.loaded(vec![(101, 10), (102, 10), (103, 10)]);
        assert_eq!(t.stats().on_disk, 1, "the late one is still to load");
        t.attach_consumer(C, "g").unwrap();
        t.request(C, Credit::new(10, 10_000)).unwrap();
        let got = delivered(&t.poll_actions(), C);
        assert_eq!(
            got.iter().map(|d| d.2).collect::<Vec<_>>(),
            vec![101, 102, 103]
        );
        for (id, attempt, _) in got {
            t.ack(C, id, attempt).unwrap();
        }
        assert_eq!(loads(&t.poll_actions()).len(), 1, "and gets loaded");
    }
}
