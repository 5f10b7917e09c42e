//! Liveness and exactness of the topic's credit grants, over random capacities, producer
//! counts and event sizes, with grants and blocked notices racing each other on the way.
//!
//! Honest producers always have another event, publish greedily within the credit they
//! have received, and, when their next event does not fit, say so ([`Topic::blocked`]) and
//! hand back everything they hold. Checked:
//!
//! * safety at every step: held + promised never exceeds the capacity, in events and bytes;
//! * liveness and exactness at every quiet point (all messages delivered, every producer
//!   blocked): no credit is stranded with a producer, and the free space does not cover the
//!   next event of any producer — the topic is full for everyone, not stuck short of its cap;
//! * progress: with a consumer draining everything, every producer gets events accepted.

use std::collections::VecDeque;

use flowgate_core::{Action, ConnId, Credit, GroupMode, Topic};
use proptest::prelude::*;

/// A message from a producer to the topic.
#[derive(Debug)]
enum Up {
    Publish(Vec<(u64, u64, u64)>),
    Blocked { returned: Credit, need: u64 },
}

#[derive(Debug)]
struct Producer {
    conn: ConnId,
    /// Credit received and not yet spent or handed back.
    window: Credit,
    next_seq: u64,
    /// Sizes of the events it will make, cycled.
    sizes: Vec<u64>,
    /// It said it is blocked and has received nothing since.
    signalled: bool,
    up: VecDeque<Up>,
    down: VecDeque<Credit>,
    accepted: u64,
}

impl Producer {
    fn next_size(&self) -> u64 {
        self.sizes[(self.next_seq as usize) % self.sizes.len()]
    }

    /// Publishes up to `max` events within its window; says it is blocked when the next one
    /// does not fit. Returns whether it did anything.
    fn act(&mut self, max: usize) -> bool {
        let mut batch = Vec::new();
        while batch.len() < max && self.window.admits(self.next_size()) {
            let size = self.next_size();
            self.window = self.window.checked_sub(Credit::new(1, size)).unwrap();
            batch.push((self.next_seq + 1, self.next_seq + 1, size));
            self.next_seq += 1;
        }
        if !batch.is_empty() {
            self.up.push_back(Up::Publish(batch));
            return true;
        }
        if !self.signalled {
            self.up.push_back(Up::Blocked {
                returned: self.window,
                need: self.next_size(),
            });
            self.window = Credit::ZERO;
            self.signalled = true;
            return true;
        }
        false
    }
}

struct World {
    topic: Topic<u64>,
    cap: Credit,
    producers: Vec<Producer>,
    /// The consumer's unacked deliveries: (delivery id, attempt, bytes).
    held: Vec<(u64, u32)>,
}

const CONSUMER: ConnId = 1;

impl World {
    fn poll(&mut self) {
        for action in self.topic.poll_actions() {
            match action {
                Action::Grant { producer, credit } => {
                    let p = self
                        .producers
                        .iter_mut()
                        .find(|p| p.conn == producer)
                        .unwrap();
                    p.down.push_back(credit);
                }
                Action::Deliver { deliveries, .. } => {
                    self.held
                        .extend(deliveries.iter().map(|d| (d.delivery_id, d.attempt)));
                }
                Action::Load { .. } => unreachable!("no spill mode here"),
            }
        }
        let s = self.topic.stats();
        let promised = s.producer_credit;
        assert!(
            s.ready + s.unacked + promised.events <= self.cap.events,
            "over the cap in events: {s:?}"
        );
        assert!(
            s.ready_bytes + s.unacked_bytes + promised.bytes <= self.cap.bytes,
            "over the cap in bytes: {s:?}"
        );
    }

    fn deliver_up(&mut self, i: usize) -> bool {
        let Some(msg) = self.producers[i].up.pop_front() else {
            return false;
        };
        let conn = self.producers[i].conn;
        match msg {
            Up::Publish(batch) => {
                let out = self.topic.publish(conn, batch).expect("an honest publish");
                self.producers[i].accepted += out.accepted;
            }
            Up::Blocked { returned, need } => self
                .topic
                .blocked(conn, returned, need)
                .expect("an honest notice"),
        }
        self.poll();
        true
    }

    fn deliver_down(&mut self, i: usize) -> bool {
        let p = &mut self.producers[i];
        let Some(credit) = p.down.pop_front() else {
            return false;
        };
        p.window = p.window.saturating_add(credit);
        p.signalled = false;
        true
    }

    /// Delivers every message and lets every producer act until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.producers.len() {
                moved |= self.deliver_down(i);
                moved |= self.producers[i].act(usize::MAX);
                while self.deliver_up(i) {
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// The consumer takes and acks everything held.
    fn drain(&mut self) {
        self.topic.request(CONSUMER, Credit::UNBOUNDED).unwrap();
        self.poll();
        for (id, attempt) in std::mem::take(&mut self.held) {
            self.topic.ack(CONSUMER, id, attempt).unwrap();
        }
        self.poll();
    }

    /// `n` rounds of: everyone publishes until blocked, the topic must be full for everyone,
    /// then the consumer drains it.
    fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.settle();
            self.assert_full_for_everyone();
            self.drain();
        }
    }

    fn assert_full_for_everyone(&self) {
        let s = self.topic.stats();
        assert_eq!(
            s.producer_credit,
            Credit::ZERO,
            "credit stranded at a quiet point"
        );
        let free = Credit::new(
            self.cap.events - s.ready - s.unacked,
            self.cap.bytes - s.ready_bytes - s.unacked_bytes,
        );
        for p in &self.producers {
            assert!(
                !free.admits(p.next_size()),
                "producer {} waits for {} bytes while {free} is free: {s:?}",
                p.conn,
                p.next_size()
            );
        }
    }
}

fn world(cap: Credit, sizes: Vec<Vec<u64>>, consumer: bool) -> World {
    let mut topic = Topic::new(cap);
    let producers = sizes
        .into_iter()
        .enumerate()
        .map(|(i, sizes)| {
            let conn = 100 + i as ConnId;
            topic.attach_producer(conn, 1_000 + i as u64);
            Producer {
                conn,
                window: Credit::ZERO,
                next_seq: 0,
                sizes,
                signalled: false,
                up: VecDeque::new(),
                down: VecDeque::new(),
                accepted: 0,
            }
        })
        .collect();
    if consumer {
        topic
            .attach_consumer(CONSUMER, "g", GroupMode::Block)
            .unwrap();
    }
    let mut w = World {
        topic,
        cap,
        producers,
        held: Vec::new(),
    };
    w.poll();
    w
}

/// A capacity and, per producer, the sizes of its events (each fits the capacity).
fn setup() -> impl Strategy<Value = (Credit, Vec<Vec<u64>>)> {
    (1u64..60, 200u64..20_000).prop_flat_map(|(events, bytes)| {
        let sizes = prop::collection::vec(prop::collection::vec(64u64..=bytes, 1..4), 1..40);
        (Just(Credit::new(events, bytes)), sizes)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random interleavings of grants, notices and publishes; quiet points must be full.
    #[test]
    fn no_producer_waits_while_its_next_event_fits(
        (cap, sizes) in setup(),
        steps in prop::collection::vec((any::<u8>(), 0u8..4, 1usize..5), 0..400),
    ) {
        let mut w = world(cap, sizes, false);
        for (who, what, max) in steps {
            let i = usize::from(who) % w.producers.len();
            match what {
                0 => { w.deliver_down(i); }
                1 => { w.deliver_up(i); }
                _ => { w.producers[i].act(max); }
            }
        }
        w.settle();
        w.assert_full_for_everyone();
    }

    /// With a consumer taking everything, every producer keeps getting events accepted.
    #[test]
    fn every_producer_makes_progress_while_a_consumer_drains(
        (cap, sizes) in setup(),
    ) {
        let mut w = world(cap, sizes, true);
        let n = w.producers.len();
        // Enough rounds for the turn to come round to everyone, twice.
        w.rounds(2 * n + 2);
        for p in &w.producers {
            prop_assert!(p.accepted > 0, "producer {} never got an event in: {:?}", p.conn,
                w.producers.iter().map(|p| p.accepted).collect::<Vec<_>>());
        }
    }
}

/// The case from the field: capacity 2, three producers.
#[test]
fn capacity_two_with_three_producers_serves_all_three() {
    let mut w = world(Credit::new(2, 1 << 20), vec![vec![100]; 3], true);
    w.rounds(10);
    for p in &w.producers {
        assert!(p.accepted >= 5, "{:?}", p.accepted);
    }
}

/// Bytes: 1 MiB of room, three producers of 400 KiB events; an even split (349 KiB each)
/// would let nobody send.
#[test]
fn a_byte_capacity_below_one_event_per_producer_still_serves_everyone() {
    let kib = 1024;
    let mut w = world(
        Credit::new(1_000, 1024 * kib),
        vec![vec![400 * kib]; 3],
        true,
    );
    w.rounds(10);
    for p in &w.producers {
        assert!(p.accepted >= 4, "{:?}", p.accepted);
    }
}
