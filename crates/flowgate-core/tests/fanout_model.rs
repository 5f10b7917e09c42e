//! Property test of fan-out: two blocking groups and a best-effort one read the same topic
//! (and a blocking group may join late), with random publishes, requests, acks, nacks,
//! departures and, in spill mode, loads answered by a model store. Checked against a model of
//! what each group was given: an ack frees an event exactly when the last blocking group that
//! holds it acks it, the capacity bounds the events held (each once) with the credit promised,
//! a best-effort group never has more than its max lag unread, every group's books balance,
//! and at the end a drain in which every blocking group acks every event it was given.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use flowgate_core::{Action, ConnId, Credit, GroupMode, Topic};
use proptest::prelude::*;

type Item = u64;

const PRODUCER: ConnId = 1;
const MAX_LAG: u64 = 3;
/// Groups by index: two blocking, one best effort, and a blocking one that may join late.
const NAMES: [&str; 4] = ["a", "b", "dash", "late"];

#[derive(Debug, Clone)]
enum Op {
    Publish {
        events: u8,
        size: u8,
    },
    Request {
        consumer: u8,
        events: u8,
        bytes: u16,
    },
    Ack {
        consumer: u8,
        pick: u8,
    },
    Nack {
        consumer: u8,
        pick: u8,
    },
    Detach(u8),
    Attach(u8),
    JoinLate,
    AnswerLoad,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..8, 1u8..100).prop_map(|(events, size)| Op::Publish { events, size }),
        4 => (0u8..7, 1u8..10, 50u16..1000)
            .prop_map(|(consumer, events, bytes)| Op::Request { consumer, events, bytes }),
        6 => (0u8..7, any::<u8>()).prop_map(|(consumer, pick)| Op::Ack { consumer, pick }),
        1 => (0u8..7, any::<u8>()).prop_map(|(consumer, pick)| Op::Nack { consumer, pick }),
        1 => (0u8..7).prop_map(Op::Detach),
        1 => (0u8..7).prop_map(Op::Attach),
        1 => Just(Op::JoinLate),
        3 => Just(Op::AnswerLoad),
    ]
}

/// Consumer `i` (0..7) is of group `i % 3`; consumer 7 is the late group's.
fn group_of(consumer: u8) -> usize {
    if consumer == 7 {
        3
    } else {
        usize::from(consumer % 3)
    }
}

fn conn(consumer: u8) -> ConnId {
    10 + ConnId::from(consumer)
}

#[derive(Debug, Default)]
struct ModelGroup {
    /// Events pushed to it (in memory while it existed, or held when it appeared).
    given: BTreeSet<Item>,
    acked: BTreeSet<Item>,
}

#[derive(Default)]
struct Model {
    groups: Vec<ModelGroup>,
    credit: Credit,
    next_seq: u64,
    sizes: BTreeMap<Item, u64>,
    accepted: BTreeSet<Item>,
    /// Events an ack handed back: gone from the topic.
    released: BTreeSet<Item>,
    /// Accepted events only on disk, oldest first.
    disk: VecDeque<Item>,
    load: Option<Credit>,
    /// Attached consumers and their demand.
    demand: BTreeMap<u8, Credit>,
    debt: BTreeMap<u8, u64>,
    /// Deliveries a consumer holds: delivery id -> (attempt, item).
    holds: BTreeMap<u8, BTreeMap<u64, (u32, Item)>>,
}

impl Model {
    fn blocking(&self) -> impl Iterator<Item = &ModelGroup> {
        self.groups
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, g)| g)
    }

    /// Events held in memory for a blocking group: accepted, not freed, not on disk.
    fn held_in_memory(&self) -> BTreeSet<Item> {
        let disk: BTreeSet<Item> = self.disk.iter().copied().collect();
        self.accepted
            .difference(&self.released)
            .filter(|i| !disk.contains(i))
            .copied()
            .collect()
    }

    fn push(&mut self, item: Item) {
        for g in &mut self.groups {
            g.given.insert(item);
        }
    }
}

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
        model.push(item);
    }
    topic.loaded(items);
}

fn apply(
    topic: &mut Topic<Item>,
    model: &mut Model,
    cap: Credit,
    actions: Vec<Action<Item>>,
) -> Result<(), TestCaseError> {
    for action in actions {
        match action {
            Action::Grant { producer, credit } => {
                prop_assert_eq!(producer, PRODUCER);
                model.credit = model.credit.saturating_add(credit);
            }
            Action::Deliver {
                consumer,
                deliveries,
            } => {
                let c = u8::try_from(consumer - 10).expect("a model consumer");
                let gi = group_of(c);
                let holds_nothing = model.holds.get(&c).is_none_or(BTreeMap::is_empty);
                let alone = deliveries.len() == 1 && holds_nothing;
                let demand = model
                    .demand
                    .get_mut(&c)
                    .expect("delivered to an attached consumer");
                for d in deliveries {
                    let bytes = model.sizes[&d.item];
                    prop_assert!(
                        demand.events >= 1 && (demand.bytes >= bytes || alone),
                        "beyond demand"
                    );
                    demand.events -= 1;
                    *model.debt.entry(c).or_default() += bytes.saturating_sub(demand.bytes);
                    demand.bytes = demand.bytes.saturating_sub(bytes);
                    let g = &model.groups[gi];
                    prop_assert!(
                        g.given.contains(&d.item),
                        "group {} was not given {}",
                        NAMES[gi],
                        d.item
                    );
                    prop_assert!(
                        !g.acked.contains(&d.item),
                        "an acked event came back to {}",
                        NAMES[gi]
                    );
                    model
                        .holds
                        .entry(c)
                        .or_default()
                        .insert(d.delivery_id, (d.attempt, d.item));
                }
            }
            Action::Load { room } => {
                prop_assert!(model.load.is_none() && !model.disk.is_empty());
                model.load = Some(room);
            }
        }
    }
    let s = topic.stats();
    prop_assert!(topic.broken().is_none(), "{:?}", topic.broken());
    prop_assert_eq!(s.producer_credit, model.credit);
    prop_assert_eq!(s.on_disk as usize, model.disk.len());
    prop_assert_eq!(
        s.held as usize,
        model.held_in_memory().len(),
        "held, each once"
    );
    prop_assert!(
        s.held + s.on_disk + s.producer_credit.events <= cap.events,
        "{s:?}"
    );
    prop_assert!(
        s.held_bytes + s.on_disk_bytes + s.producer_credit.bytes <= cap.bytes,
        "{s:?}"
    );
    for (gi, g) in topic.groups().iter().enumerate() {
        prop_assert_eq!(g.name.as_str(), NAMES[gi]);
        let given = model.groups[gi].given.len() as u64;
        prop_assert_eq!(
            given,
            g.acked + g.ready + g.unacked + g.skipped,
            "{} books",
            NAMES[gi]
        );
        prop_assert_eq!(g.acked as usize, model.groups[gi].acked.len());
        if gi == 2 {
            prop_assert!(g.ready <= MAX_LAG, "best effort beyond its lag: {g:?}");
        } else {
            prop_assert_eq!(g.skipped, 0);
        }
    }
    Ok(())
}

/// Acks delivery `id` of consumer `c` and checks what the topic freed against the model.
fn ack(
    topic: &mut Topic<Item>,
    model: &mut Model,
    c: u8,
    id: u64,
    attempt: u32,
    item: Item,
) -> Result<(), TestCaseError> {
    let gi = group_of(c);
    let freed = topic
        .ack(conn(c), id, attempt)
        .expect("ack of a held delivery");
    prop_assert!(
        model.groups[gi].acked.insert(item),
        "acked twice by {}",
        NAMES[gi]
    );
    let blocking_left = model
        .blocking()
        .any(|g| g.given.contains(&item) && !g.acked.contains(&item));
    let expect = (gi != 2 && !blocking_left).then_some(item);
    prop_assert_eq!(
        freed,
        expect,
        "freed by the ack of {} in {}",
        item,
        NAMES[gi]
    );
    if let Some(item) = freed {
        prop_assert!(model.released.insert(item), "freed twice");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_group_reads_every_event_and_the_blocking_ones_hold_it(
        cap_events in 2u64..30,
        spill in any::<bool>(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let cap = Credit::new(cap_events, 100 * cap_events);
        let mut topic: Topic<Item> = Topic::new(cap);
        let mut model = Model::default();
        if spill {
            topic.spill_beyond(Credit::new((cap_events / 2).max(1), 50 * cap_events));
        }
        for (gi, name) in NAMES[..3].iter().enumerate() {
            let mode = if gi == 2 { GroupMode::Skip { max_lag: MAX_LAG } } else { GroupMode::Block };
            prop_assert_eq!(topic.declare_group(name, mode), Ok(gi));
            model.groups.push(ModelGroup::default());
        }
        topic.attach_producer(PRODUCER, 7);
        let actions = topic.poll_actions();
        apply(&mut topic, &mut model, cap, actions)?;
        for op in ops {
            match op {
                Op::Publish { events, size } => {
                    let size = u64::from(size);
                    let n = u64::from(events).min(model.credit.events).min(model.credit.bytes / size);
                    if n == 0 {
                        continue;
                    }
                    let first = model.next_seq + 1;
                    let batch: Vec<(u64, Item, u64)> = (first..first + n).map(|s| (s, s, size)).collect();
                    let out = topic.publish(PRODUCER, batch).expect("within credit");
                    prop_assert_eq!(out.accepted, n);
                    model.credit = model.credit.saturating_sub(Credit::new(n, n * size));
                    model.next_seq += n;
                    for seq in first..first + n {
                        model.sizes.insert(seq, size);
                        model.accepted.insert(seq);
                        if seq > first + n - 1 - out.spilled {
                            model.disk.push_back(seq);
                        } else {
                            model.push(seq);
                        }
                    }
                }
                Op::Request { consumer, events, bytes } => {
                    let Some(demand) = model.demand.get_mut(&consumer) else { continue };
                    let credit = Credit::new(u64::from(events), u64::from(bytes));
                    topic.request(conn(consumer), credit).expect("an attached consumer's request");
                    let debt = model.debt.entry(consumer).or_default();
                    let (paid, bytes) = flowgate_core::pay_debt(*debt, credit.bytes);
                    *debt -= paid;
                    *demand = demand.saturating_add(Credit::new(credit.events, bytes));
                }
                Op::Ack { consumer, pick } | Op::Nack { consumer, pick } if model.holds.get(&consumer).is_some_and(|h| !h.is_empty()) => {
                    let holds = model.holds.get_mut(&consumer).expect("checked");
                    let (&id, &(attempt, item)) = holds.iter().nth(usize::from(pick) % holds.len()).expect("non-empty");
                    holds.remove(&id);
                    if matches!(op, Op::Ack { .. }) {
                        ack(&mut topic, &mut model, consumer, id, attempt, item)?;
                    } else {
                        topic.nack(conn(consumer), id, attempt).expect("nack of a held delivery");
                    }
                }
                Op::Ack { .. } | Op::Nack { .. } => {}
                Op::Detach(consumer) => {
                    topic.detach_consumer(conn(consumer));
                    model.demand.remove(&consumer);
                    model.debt.remove(&consumer);
                    model.holds.remove(&consumer);
                }
                Op::Attach(consumer) => {
                    let gi = group_of(consumer);
                    let mode = if gi == 2 { GroupMode::Skip { max_lag: MAX_LAG } } else { GroupMode::Block };
                    topic.attach_consumer(conn(consumer), NAMES[gi], mode).expect("a declared group");
                    model.demand.entry(consumer).or_default();
                }
                Op::JoinLate => {
                    if model.groups.len() == 4 {
                        continue;
                    }
                    let held = model.held_in_memory();
                    topic.attach_consumer(conn(7), "late", GroupMode::Block).expect("a fourth group");
                    model.groups.push(ModelGroup { given: held, acked: BTreeSet::new() });
                    model.demand.insert(7, Credit::ZERO);
                }
                Op::AnswerLoad => answer_load(&mut topic, &mut model),
            }
            let actions = topic.poll_actions();
            apply(&mut topic, &mut model, cap, actions)?;
        }

        // Drain: one consumer per group with unbounded demand acks all it gets.
        let drainers: Vec<u8> = (0..model.groups.len() as u8).map(|gi| if gi == 3 { 7 } else { gi }).collect();
        for c in 0..8u8 {
            topic.detach_consumer(conn(c));
        }
        model.demand.clear();
        model.holds.clear();
        model.debt.clear();
        for &c in &drainers {
            let gi = group_of(c);
            let mode = if gi == 2 { GroupMode::Skip { max_lag: MAX_LAG } } else { GroupMode::Block };
            topic.attach_consumer(conn(c), NAMES[gi], mode).expect("rejoin");
            topic.request(conn(c), Credit::UNBOUNDED).expect("unbounded");
            model.demand.insert(c, Credit::UNBOUNDED);
        }
        for _ in 0..10_000 {
            let actions = topic.poll_actions();
            apply(&mut topic, &mut model, cap, actions)?;
            let mut any = false;
            for &c in &drainers {
                for (id, (attempt, item)) in model.holds.remove(&c).unwrap_or_default() {
                    any = true;
                    ack(&mut topic, &mut model, c, id, attempt, item)?;
                }
            }
            if !any && model.load.is_none() {
                break;
            }
            answer_load(&mut topic, &mut model);
        }
        for (gi, g) in model.groups.iter().enumerate().filter(|(gi, _)| *gi != 2) {
            prop_assert_eq!(&g.acked, &g.given, "{} acked all it was given", NAMES[gi]);
        }
        prop_assert_eq!(&model.released, &model.accepted, "every event freed once");
        let s = topic.stats();
        prop_assert_eq!((s.held, s.ready, s.unacked, s.on_disk), (0, 0, 0, 0));
    }
}
