//! Property test of the overflow policies and the max age: a topic with a random policy, a
//! blocking group of three consumers and a best-effort one, random publishes, requests, acks,
//! nacks, departures and time passing. Checked after every step against what the topic said
//! (publish results, deliveries, acks' hand-backs, `take_dropped`): every accepted event is
//! exactly one of acked by the blocking group, dropped (handed to the store) or still held, and
//! the topic's held count agrees; held never passes the capacity; nothing dropped or acked is
//! ever delivered again to the blocking group; nothing is delivered past its max age (to any
//! group); drop-oldest drops a new event only when every held one is delivered; under a policy
//! that drops,
//! a producer that says it is blocked is granted credit at once; and only reject refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flowgate_core::{Action, ConnId, Credit, GroupMode, Overflow, Topic, TopicPolicy};
use proptest::prelude::*;

const PRODUCER: ConnId = 1;
const CAPACITY: u64 = 8;
const MAX_AGE: Duration = Duration::from_millis(50);
/// Consumers 0..3 are the blocking group's, 3 the best-effort group's.
const CONSUMERS: u8 = 4;

static KEYS: [[u8; 1]; 3] = [[0], [1], [2]];

/// Three keys, so conflate has something to replace.
fn key(item: &u64) -> Option<&[u8]> {
    Some(&KEYS[(*item % 3) as usize][..])
}

#[derive(Debug, Clone)]
enum Op {
    Publish(u8),
    Request { consumer: u8, events: u8 },
    Ack { consumer: u8, pick: u8 },
    Nack { consumer: u8, pick: u8 },
    Detach(u8),
    Attach(u8),
    Wait(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..6).prop_map(Op::Publish),
        4 => (0..CONSUMERS, 1u8..6).prop_map(|(consumer, events)| Op::Request { consumer, events }),
        5 => (0..CONSUMERS, any::<u8>()).prop_map(|(consumer, pick)| Op::Ack { consumer, pick }),
        1 => (0..CONSUMERS, any::<u8>()).prop_map(|(consumer, pick)| Op::Nack { consumer, pick }),
        1 => (0..CONSUMERS).prop_map(Op::Detach),
        1 => (0..CONSUMERS).prop_map(Op::Attach),
        2 => (1u8..40).prop_map(Op::Wait),
    ]
}

fn conn(consumer: u8) -> ConnId {
    10 + ConnId::from(consumer)
}

fn group(consumer: u8) -> (&'static str, GroupMode) {
    if consumer == 3 {
        ("dash", GroupMode::Skip { max_lag: 2 })
    } else {
        ("db", GroupMode::Block)
    }
}

#[derive(Default)]
struct Model {
    now: Duration,
    credit: Credit,
    next_seq: u64,
    /// Accepted events, with when.
    accepted: BTreeMap<u64, Duration>,
    acked: BTreeSet<u64>,
    dropped: BTreeSet<u64>,
    attached: BTreeSet<u8>,
    /// Deliveries a consumer holds: delivery id -> (attempt, item).
    holds: BTreeMap<u8, BTreeMap<u64, (u32, u64)>>,
}

impl Model {
    fn take(&mut self, topic: &mut Topic<u64>, with_age: bool) -> Result<(), TestCaseError> {
        for action in topic.poll_actions() {
            match action {
                Action::Grant { credit, .. } => self.credit = self.credit.saturating_add(credit),
                Action::Deliver {
                    consumer,
                    deliveries,
                } => {
                    let c = (consumer - 10) as u8;
                    for d in deliveries {
                        // A best-effort group keeps the copies it was given (they hold
                        // nothing), so only the blocking group is checked.
                        if c != 3 {
                            prop_assert!(!self.dropped.contains(&d.item), "{} was dropped", d.item);
                            prop_assert!(!self.acked.contains(&d.item), "{} was acked", d.item);
                        }
                        if with_age {
                            let age = self.now - self.accepted[&d.item];
                            prop_assert!(age < MAX_AGE, "{} delivered at age {age:?}", d.item);
                        }
                        self.holds
                            .entry(c)
                            .or_default()
                            .insert(d.delivery_id, (d.attempt, d.item));
                    }
                }
                Action::Load { .. } => prop_assert!(false, "no spill mode here"),
            }
        }
        self.dropped.extend(topic.take_dropped());
        Ok(())
    }
}

fn check(topic: &Topic<u64>, model: &Model) -> Result<(), TestCaseError> {
    let s = topic.stats();
    prop_assert!(s.held <= CAPACITY, "held {} past the capacity", s.held);
    prop_assert!(model.acked.is_disjoint(&model.dropped), "acked and dropped");
    let gone = model.acked.len() + model.dropped.len();
    prop_assert_eq!(
        s.held,
        (model.accepted.len() - gone) as u64,
        "every accepted event is acked, dropped or held"
    );
    Ok(())
}

fn run(policy: TopicPolicy, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut topic = Topic::new(Credit::new(CAPACITY, 1_000_000));
    topic.set_policy(policy, Some(key));
    let mut model = Model {
        next_seq: 1,
        ..Model::default()
    };
    let with_age = policy.max_age.is_some();
    topic.attach_producer(PRODUCER, 7);
    for c in 0..CONSUMERS {
        let (name, mode) = group(c);
        topic.attach_consumer(conn(c), name, mode).unwrap();
        model.attached.insert(c);
    }
    model.take(&mut topic, with_age)?;
    for op in ops {
        match op {
            Op::Publish(n) => {
                let n = u64::from(n).min(model.credit.events);
                if n == 0 {
                    topic.blocked(PRODUCER, model.credit, 10).unwrap();
                    model.credit = Credit::ZERO;
                    model.take(&mut topic, with_age)?;
                    if !policy.overflow.paces() {
                        prop_assert!(model.credit.events > 0, "a dropping topic never holds back");
                    }
                    continue;
                }
                let first = model.next_seq;
                let batch: Vec<_> = (first..first + n).map(|s| (s, s, 10)).collect();
                let out = topic.publish(PRODUCER, batch).unwrap();
                model.credit = model.credit.saturating_sub(Credit::new(n, n * 10));
                model.next_seq += n;
                prop_assert_eq!(out.accepted + out.dropped, n);
                if policy.overflow != Overflow::Reject {
                    prop_assert_eq!(out.refused, 0);
                }
                if policy.overflow.paces() {
                    prop_assert_eq!(
                        out.dropped,
                        0,
                        "{:?} keeps every new event",
                        policy.overflow
                    );
                }
                if policy.overflow == Overflow::DropOldest && out.dropped > 0 {
                    let db = &topic.groups()[0];
                    prop_assert_eq!(
                        (db.unacked, db.ready),
                        (topic.stats().held, 0),
                        "drop-oldest drops a new event only when every held one is delivered"
                    );
                }
                for seq in first..first + out.accepted {
                    model.accepted.insert(seq, model.now);
                }
                // A dropped event never reached the topic: it is neither held nor handed back.
            }
            Op::Request { consumer, events } => {
                if model.attached.contains(&consumer) {
                    let credit = Credit::new(u64::from(events), 1_000);
                    topic.request(conn(consumer), credit).unwrap();
                }
            }
            Op::Ack { consumer, pick } | Op::Nack { consumer, pick } => {
                let held = model.holds.entry(consumer).or_default();
                let Some(&id) = held.keys().nth(usize::from(pick) % held.len().max(1)) else {
                    continue;
                };
                let (attempt, item) = held.remove(&id).unwrap();
                if matches!(op, Op::Ack { .. }) {
                    let freed = topic.ack(conn(consumer), id, attempt).unwrap();
                    if consumer != 3 {
                        prop_assert_eq!(freed, Some(item), "one blocking group: its ack frees");
                        model.acked.insert(item);
                    } else {
                        prop_assert_eq!(freed, None);
                    }
                } else {
                    topic.nack(conn(consumer), id, attempt).unwrap();
                }
            }
            Op::Detach(consumer) => {
                topic.detach_consumer(conn(consumer));
                model.attached.remove(&consumer);
                model.holds.remove(&consumer);
            }
            Op::Attach(consumer) => {
                let (name, mode) = group(consumer);
                topic.attach_consumer(conn(consumer), name, mode).unwrap();
                model.attached.insert(consumer);
            }
            Op::Wait(ms) => {
                model.now += Duration::from_millis(u64::from(ms));
                topic.tick(model.now);
            }
        }
        model.take(&mut topic, with_age)?;
        check(&topic, &model)?;
    }
    Ok(())
}

fn policy() -> impl Strategy<Value = TopicPolicy> {
    (0usize..Overflow::ALL.len(), any::<bool>()).prop_map(|(i, aged)| TopicPolicy {
        overflow: Overflow::ALL[i],
        max_age: aged.then_some(MAX_AGE),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_policy_keeps_the_books_and_the_capacity(
        policy in policy(),
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        run(policy, ops)?;
    }
}
