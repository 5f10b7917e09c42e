//! Property test of the topic state machine: random producers, consumers, publishes (with
//! retries, and refused ones: beyond credit, with a gap), requests, acks, nacks, departures,
//! grant limits (a disk log's room), in spill mode with loads answered late by a model store,
//! after a restore of recovered events; checked against the invariants the broker relies on
//! and, at the end, a drain that must account for every accepted event exactly once.

use std::collections::{BTreeMap, BTreeSet};

use flowgate_core::{Action, ConnId, Credit, GroupMode, Topic, TopicError};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    AttachProducer(u8),
    DetachProducer(u8),
    Publish {
        producer: u8,
        events: u8,
        retry: u8,
        size: u16,
    },
    AttachConsumer(u8),
    DetachConsumer(u8),
    Request {
        consumer: u8,
        events: u8,
        bytes: u16,
    },
    Ack {
        consumer: u8,
        pick: u8,
        stale: bool,
    },
    Nack {
        consumer: u8,
        pick: u8,
    },
    /// A publish of one event more than the producer's credit: refused, nothing changes.
    PublishBeyondCredit(u8),
    /// A publish that skips a sequence number: refused, nothing changes.
    PublishWithGap(u8),
    /// The disk log's room changes (`None`: no limit).
    LimitGrants(Option<u16>),
    /// The store answers the outstanding load (spill mode).
    AnswerLoad,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..3).prop_map(Op::AttachProducer),
        1 => (0u8..3).prop_map(Op::DetachProducer),
        6 => (0u8..3, 1u8..12, 0u8..4, 1u16..MAX_EVENT_BYTES as u16)
            .prop_map(|(producer, events, retry, size)| Op::Publish { producer, events, retry, size }),
        1 => (0u8..3).prop_map(Op::AttachConsumer),
        1 => (0u8..3).prop_map(Op::DetachConsumer),
        4 => (0u8..3, 0u8..10, 0u16..2000)
            .prop_map(|(consumer, events, bytes)| Op::Request { consumer, events, bytes }),
        5 => (0u8..3, any::<u8>(), any::<bool>())
            .prop_map(|(consumer, pick, stale)| Op::Ack { consumer, pick, stale }),
        2 => (0u8..3, any::<u8>()).prop_map(|(consumer, pick)| Op::Nack { consumer, pick }),
        1 => (0u8..3).prop_map(Op::PublishBeyondCredit),
        1 => (0u8..3).prop_map(Op::PublishWithGap),
        1 => prop::option::of(0u16..3000).prop_map(Op::LimitGrants),
        3 => Just(Op::AnswerLoad),
    ]
}

/// What the model knows about one producer connection.
#[derive(Debug, Default)]
struct ModelProducer {
    producer_id: u64,
    credit: Credit,
}

type Item = (u64, u64);

#[derive(Default)]
struct Model {
    producers: BTreeMap<ConnId, ModelProducer>,
    /// Highest sequence number the topic confirmed per producer id.
    confirmed: BTreeMap<u64, u64>,
    consumers: BTreeMap<ConnId, Credit>,
    /// Bytes an event given alone cost beyond a consumer's demand; its requests pay them.
    debt: BTreeMap<ConnId, u64>,
    /// Delivered and not yet settled, per consumer: delivery id -> (attempt, item, bytes).
    held: BTreeMap<ConnId, BTreeMap<u64, (u32, Item, u64)>>,
    accepted: BTreeSet<Item>,
    acked: BTreeSet<Item>,
    sizes: BTreeMap<Item, u64>,
    /// The store: accepted events only on disk, oldest first (spill mode).
    disk: std::collections::VecDeque<Item>,
    /// A load the topic asked for and the store has not answered.
    load: Option<Credit>,
    /// The room the disk log has now, as last given to `limit_grants`.
    room: Option<u64>,
    /// Spill mode's memory bound.
    memory: Option<Credit>,
    /// Events put back by `restore` (and `restore_spilled`) at the start.
    restored: u64,
}

impl Model {
    /// Credit outstanding to producers, as the grants and publishes say.
    fn credit(&self) -> Credit {
        self.producers
            .values()
            .fold(Credit::ZERO, |acc, p| acc.saturating_add(p.credit))
    }
}

/// The largest event the ops publish.
const MAX_EVENT_BYTES: u64 = 200;

/// The credit cost of each recovered event.
const RESTORED_BYTES: u64 = 50;

/// The store answers a load as a disk log does: the oldest events within `room`, but always
/// one if any is left.
fn answer_load(topic: &mut Topic<Item>, model: &mut Model) {
    let Some(room) = model.load.take() else {
        return;
    };
    let mut items = Vec::new();
    let mut bytes = 0;
    while let Some(item) = model.disk.front().copied() {
        let size = model.sizes[&item];
        let full = items.len() as u64 >= room.events.max(1) || bytes + size > room.bytes;
        if !items.is_empty() && full {
            break;
        }
        model.disk.pop_front();
        bytes += size;
        items.push((item, size, 1));
    }
    topic.loaded(items);
}

fn producer_conn(i: u8) -> ConnId {
    100 + ConnId::from(i)
}

fn consumer_conn(i: u8) -> ConnId {
    200 + ConnId::from(i)
}

fn apply(
    topic: &mut Topic<Item>,
    model: &mut Model,
    actions: Vec<Action<Item>>,
) -> Result<(), TestCaseError> {
    for action in actions {
        match action {
            Action::Grant { producer, credit } => {
                prop_assert!(!credit.is_zero(), "a grant of nothing");
                let p = model
                    .producers
                    .get_mut(&producer)
                    .expect("grant to an attached producer");
                p.credit = p.credit.saturating_add(credit);
                let outstanding = model.credit();
                if let Some(room) = model.room {
                    prop_assert!(
                        outstanding.bytes <= room,
                        "granted past the log's room: {outstanding} > {room}"
                    );
                }
                if let Some(memory) = model.memory {
                    prop_assert!(
                        outstanding.events <= memory.events && outstanding.bytes <= memory.bytes,
                        "credit past the memory bound: {outstanding}"
                    );
                }
            }
            Action::Deliver {
                consumer,
                deliveries,
            } => {
                prop_assert!(!deliveries.is_empty());
                let demand = model
                    .consumers
                    .get_mut(&consumer)
                    .expect("delivery to an attached consumer");
                // The one exception to demand: a consumer holding nothing may be given one
                // event alone that is larger than the bytes it asked for.
                let holds_nothing = model.held.get(&consumer).is_none_or(|h| h.is_empty());
                let alone = deliveries.len() == 1 && holds_nothing;
                for d in deliveries {
                    let bytes = model.sizes[&d.item];
                    prop_assert!(
                        demand.events >= 1 && (demand.bytes >= bytes || alone),
                        "delivered beyond demand"
                    );
                    demand.events -= 1;
                    if demand.bytes != u64::MAX {
                        *model.debt.entry(consumer).or_default() +=
                            bytes.saturating_sub(demand.bytes);
                    }
                    demand.bytes = demand.bytes.saturating_sub(bytes);
                    prop_assert!(!model.acked.contains(&d.item), "an acked event came back");
                    model
                        .held
                        .entry(consumer)
                        .or_default()
                        .insert(d.delivery_id, (d.attempt, d.item, bytes));
                }
            }
            Action::Load { room } => {
                prop_assert!(model.memory.is_some(), "a load outside spill mode");
                prop_assert!(model.load.is_none(), "two loads outstanding");
                prop_assert!(!model.disk.is_empty(), "a load with nothing on disk");
                model.load = Some(room);
            }
        }
    }
    // Capacity covers everything held plus everything promised (recovered events may exceed
    // it, and then nothing is promised).
    let s = topic.stats();
    let cap = topic.capacity();
    let restored = model.restored;
    prop_assert!(
        s.ready + s.unacked + s.on_disk + s.producer_credit.events <= cap.events.max(restored),
        "{s:?}"
    );
    prop_assert!(
        s.ready_bytes + s.unacked_bytes + s.on_disk_bytes + s.producer_credit.bytes
            <= cap.bytes.max(restored * RESTORED_BYTES),
        "{s:?}"
    );
    prop_assert_eq!(s.producer_credit, model.credit());
    // Spill mode: memory holds at most the memory bound, but for one event a load brought
    // back although it is larger than the room left (a store always hands back one).
    if let Some(memory) = model.memory {
        prop_assert!(s.ready + s.unacked <= memory.events, "{s:?}");
        prop_assert!(
            s.ready_bytes + s.unacked_bytes <= memory.bytes + MAX_EVENT_BYTES,
            "{s:?}"
        );
    }
    // Every accepted event is exactly one of ready, unacked, on disk, acked.
    prop_assert_eq!(
        s.accepted + model.restored,
        s.ready + s.unacked + s.on_disk + s.acked
    );
    prop_assert_eq!((s.accepted + model.restored) as usize, model.accepted.len());
    prop_assert_eq!(s.on_disk as usize, model.disk.len());
    prop_assert!(topic.broken().is_none(), "{:?}", topic.broken());
    let held: usize = model.held.values().map(BTreeMap::len).sum();
    prop_assert_eq!(s.unacked as usize, held);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn topic_keeps_its_bounds_and_its_ledger(
        cap_events in 1u64..40,
        cap_bytes in 200u64..4000,
        spill in any::<bool>(),
        restore in prop_oneof![2 => Just(0u64), 1 => 1u64..8],
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let mut topic: Topic<Item> = Topic::new(Credit::new(cap_events, cap_bytes));
        let mut model = Model::default();
        if spill {
            let memory = Credit::new((cap_events / 2).max(1), (cap_bytes / 2).max(200));
            topic.spill_beyond(memory);
            model.memory = Some(memory);
        }
        // After a restart: producer id 1's first `restore` events came back from the log,
        // as many as memory holds put back ready, the rest left on disk.
        if restore > 0 {
            let in_memory = match model.memory {
                Some(m) => restore.min(m.events).min(m.bytes / RESTORED_BYTES),
                None => restore,
            };
            let items: Vec<(Item, u64, u32)> =
                (1..=restore).map(|seq| ((1, seq), RESTORED_BYTES, 1)).collect();
            topic.restore([(1, restore)], items[..in_memory as usize].iter().copied());
            let left = restore - in_memory;
            if left > 0 {
                topic.restore_spilled(Credit::new(left, left * RESTORED_BYTES));
            }
            for (item, bytes, _) in &items {
                model.accepted.insert(*item);
                model.sizes.insert(*item, *bytes);
            }
            model.disk.extend(items[in_memory as usize..].iter().map(|(item, _, _)| *item));
            model.confirmed.insert(1, restore);
            model.restored = restore;
        }
        let actions = topic.poll_actions();
        apply(&mut topic, &mut model, actions)?;
        for op in ops {
            match op {
                Op::AttachProducer(i) => {
                    let conn = producer_conn(i);
                    if !model.producers.contains_key(&conn) {
                        let producer_id = u64::from(i) + 1;
                        let resume = topic.attach_producer(conn, producer_id);
                        prop_assert_eq!(resume, model.confirmed.get(&producer_id).copied().unwrap_or(0));
                        model.producers.insert(conn, ModelProducer { producer_id, credit: Credit::ZERO });
                    }
                }
                Op::DetachProducer(i) => {
                    topic.detach_producer(producer_conn(i));
                    model.producers.remove(&producer_conn(i));
                }
                Op::Publish { producer, events, retry, size } => {
                    let conn = producer_conn(producer);
                    let Some(p) = model.producers.get(&conn) else { continue };
                    let high = model.confirmed.get(&p.producer_id).copied().unwrap_or(0);
                    let first = high.saturating_sub(u64::from(retry)).max(1);
                    let bytes = u64::from(size);
                    let n = u64::from(events).min(p.credit.events).min(p.credit.bytes / bytes);
                    if n == 0 {
                        continue;
                    }
                    let pid = p.producer_id;
                    let batch: Vec<(u64, Item, u64)> =
                        (first..first + n).map(|seq| (seq, (pid, seq), bytes)).collect();
                    for (seq, item, b) in &batch {
                        if *seq > high {
                            model.sizes.insert(*item, *b);
                        }
                    }
                    let out = topic.publish(conn, batch).expect("within credit, no gap");
                    let p = model.producers.get_mut(&conn).expect("attached");
                    p.credit = p.credit.saturating_sub(Credit::new(n, n * bytes));
                    prop_assert_eq!(out.accepted + out.duplicates, n);
                    prop_assert_eq!(out.confirm_up_to, high.max(first + n - 1));
                    for seq in high + 1..=out.confirm_up_to {
                        prop_assert!(model.accepted.insert((pid, seq)), "accepted twice");
                    }
                    // The last `spilled` accepted went to disk only, behind what is there.
                    let spilled_from = out.confirm_up_to + 1 - out.spilled;
                    if out.spilled > 0 {
                        prop_assert!(model.memory.is_some(), "spilled outside spill mode");
                    }
                    model.disk.extend((spilled_from..=out.confirm_up_to).map(|seq| (pid, seq)));
                    model.confirmed.insert(pid, out.confirm_up_to);
                }
                Op::AttachConsumer(i) => {
                    topic
                        .attach_consumer(consumer_conn(i), "g", GroupMode::Block)
                        .unwrap();
                    model.consumers.entry(consumer_conn(i)).or_default();
                }
                Op::DetachConsumer(i) => {
                    topic.detach_consumer(consumer_conn(i));
                    model.consumers.remove(&consumer_conn(i));
                    model.debt.remove(&consumer_conn(i));
                    model.held.remove(&consumer_conn(i));
                }
                Op::Request { consumer, events, bytes } => {
                    let conn = consumer_conn(consumer);
                    let credit = Credit::new(u64::from(events), u64::from(bytes));
                    let result = topic.request(conn, credit);
                    match model.consumers.get_mut(&conn) {
                        _ if events == 0 => prop_assert_eq!(result, Err(TopicError::ZeroRequest)),
                        Some(demand) => {
                            prop_assert!(result.is_ok());
                            let debt = model.debt.entry(conn).or_default();
                            let (paid, bytes) = flowgate_core::pay_debt(*debt, credit.bytes);
                            *debt -= paid;
                            *demand = demand.saturating_add(Credit::new(credit.events, bytes));
                        }
                        None => prop_assert_eq!(result, Err(TopicError::UnknownConnection(conn))),
                    }
                }
                Op::Ack { consumer, pick, stale } => {
                    let conn = consumer_conn(consumer);
                    let Some(held) = model.held.get_mut(&conn) else { continue };
                    let Some((&id, &(attempt, item, _))) = held.iter().nth(usize::from(pick) % held.len().max(1)) else { continue };
                    if stale && attempt > 1 {
                        let err = topic.ack(conn, id, attempt - 1);
                        prop_assert!(matches!(err, Err(TopicError::StaleAttempt { .. })), "stale ack accepted");
                        continue;
                    }
                    topic.ack(conn, id, attempt).expect("ack of a held delivery");
                    held.remove(&id);
                    prop_assert!(model.acked.insert(item), "acked twice");
                }
                Op::Nack { consumer, pick } => {
                    let conn = consumer_conn(consumer);
                    let Some(held) = model.held.get_mut(&conn) else { continue };
                    let Some((&id, &(attempt, _, _))) = held.iter().nth(usize::from(pick) % held.len().max(1)) else { continue };
                    topic.nack(conn, id, attempt).expect("nack of a held delivery");
                    held.remove(&id);
                }
                Op::PublishBeyondCredit(producer) => {
                    let conn = producer_conn(producer);
                    let Some(p) = model.producers.get(&conn) else { continue };
                    if p.credit.events >= 200 {
                        continue;
                    }
                    let high = model.confirmed.get(&p.producer_id).copied().unwrap_or(0);
                    let pid = p.producer_id;
                    let n = p.credit.events + 1;
                    let batch: Vec<(u64, Item, u64)> =
                        (high + 1..=high + n).map(|seq| (seq, (pid, seq), 1)).collect();
                    let before = topic.stats();
                    let refused = topic.publish(conn, batch);
                    prop_assert!(matches!(refused, Err(TopicError::DataWithoutCredit { .. })), "{refused:?}");
                    prop_assert_eq!(topic.stats(), before, "a refused publish changes nothing");
                }
                Op::PublishWithGap(producer) => {
                    let conn = producer_conn(producer);
                    let Some(p) = model.producers.get(&conn) else { continue };
                    let Some(high) = model.confirmed.get(&p.producer_id).copied() else { continue };
                    if p.credit.events == 0 || p.credit.bytes == 0 {
                        continue;
                    }
                    let pid = p.producer_id;
                    let before = topic.stats();
                    let refused = topic.publish(conn, vec![(high + 2, (pid, high + 2), 1)]);
                    prop_assert_eq!(refused, Err(TopicError::SequenceGap { expected: high + 1, got: high + 2 }));
                    prop_assert_eq!(topic.stats(), before, "a refused publish changes nothing");
                }
                Op::LimitGrants(room) => {
                    let room = room.map(u64::from);
                    topic.limit_grants(room, 0);
                    model.room = room;
                }
                Op::AnswerLoad => answer_load(&mut topic, &mut model),
            }
            let actions = topic.poll_actions();
            apply(&mut topic, &mut model, actions)?;
        }

        // Drain: every consumer leaves, one with unbounded demand takes and acks everything.
        for i in 0..3 {
            topic.detach_consumer(consumer_conn(i));
        }
        model.consumers.clear();
        model.held.clear();
        topic.attach_consumer(999, "g", GroupMode::Block).unwrap();
        model.consumers.insert(999, Credit::ZERO);
        topic.request(999, Credit::UNBOUNDED).expect("unbounded request");
        model.consumers.insert(999, Credit::UNBOUNDED);
        // Round after round: take what is delivered, ack it, answer the store's loads.
        for _ in 0..10_000 {
            let actions = topic.poll_actions();
            apply(&mut topic, &mut model, actions)?;
            let held: Vec<(u64, u32, Item)> = model.held.remove(&999).map(|h| {
                h.iter().map(|(id, (a, item, _))| (*id, *a, *item)).collect()
            }).unwrap_or_default();
            for (id, attempt, item) in &held {
                topic.ack(999, *id, *attempt).expect("drain ack");
                prop_assert!(model.acked.insert(*item), "acked twice in drain");
            }
            if held.is_empty() && model.load.is_none() {
                break;
            }
            answer_load(&mut topic, &mut model);
        }
        prop_assert_eq!(&model.acked, &model.accepted, "every accepted event acked exactly once");
        let s = topic.stats();
        prop_assert_eq!((s.ready, s.unacked, s.on_disk), (0, 0, 0));
    }
}
