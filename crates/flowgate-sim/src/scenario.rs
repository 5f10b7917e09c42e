//! What one simulated run is made of, drawn from its seed: the topic's capacity, the producers
//! (event sizes, how many, how fast, when), the consumers (commit latency, crashes), the links
//! (delay), the faults (producer disconnects) and the topic's ack deadline.

use flowgate_core::{Credit, Overflow, TopicPolicy};

use crate::rng::Rng;

/// One producer's part.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    /// Payload sizes it draws from, uniformly.
    pub sizes: Vec<u64>,
    /// Events it sends in all.
    pub events: u64,
    /// Nanoseconds between sends when credit allows (0: as fast as credit comes).
    pub interval_ns: u64,
    /// When it connects.
    pub start_ns: u64,
    /// When it stops making events, if before it has made `events`.
    pub stop_ns: Option<u64>,
}

/// One consumer's part.
#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    /// How long a commit takes, drawn uniformly from this range.
    pub commit_ns: (u64, u64),
    /// Its prefetch.
    pub prefetch: Credit,
    /// When it connects.
    pub start_ns: u64,
    /// Times at which it crashes (dropping what it has not acked) and restarts after a
    /// pause.
    pub crashes: Vec<(u64, u64)>,
    /// Its consumer group: an index into [`GROUPS`] (0 but in [`Scenario::with_groups`]).
    pub group: usize,
}

/// The consumer groups a run's consumers belong to: two that block, and a best-effort one
/// that skips beyond [`BEST_EFFORT_LAG`] unread events.
pub const GROUPS: [&str; 3] = ["g", "audit", "dash"];

/// The best-effort group's max lag.
pub const BEST_EFFORT_LAG: u64 = 3;

/// Whether the group of this index into [`GROUPS`] blocks.
pub fn blocks(group: usize) -> bool {
    group_mode(group) == flowgate_core::GroupMode::Block
}

/// Each group's mode, by index into [`GROUPS`].
pub fn group_mode(group: usize) -> flowgate_core::GroupMode {
    if group == 2 {
        flowgate_core::GroupMode::Skip {
            max_lag: BEST_EFFORT_LAG,
        }
    } else {
        flowgate_core::GroupMode::Block
    }
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed it came from.
    pub seed: u64,
    /// The topic's capacity.
    pub capacity: Credit,
    /// The producers.
    pub producers: Vec<ProducerPlan>,
    /// The consumers.
    pub consumers: Vec<ConsumerPlan>,
    /// One-way link delay, drawn per link from this range (ns).
    pub delay_ns: (u64, u64),
    /// Producer disconnects: (producer, time).
    pub cuts: Vec<(usize, u64)>,
    /// The run fails if it has not drained by then.
    pub deadline_ns: u64,
    /// Run the checks that look at every producer and connection every this many steps (and
    /// whenever nothing is in flight); the checks on the topic's totals run every step.
    pub heavy_every: u64,
    /// Consumers change their prefetch now and then after a commit, as an adaptive limit
    /// does.
    pub vary_prefetch: bool,
    /// The topic's ack wait, if any: at times shorter than a commit, so deliveries are taken
    /// back from consumers still committing them.
    pub ack_wait_ns: Option<u64>,
    /// The topic's overflow policy and max age (block and none but in [`Scenario::with_policy`]).
    pub policy: TopicPolicy,
}

const MS: u64 = 1_000_000;

impl Scenario {
    /// A small run from `seed`: 1 to 6 producers and 0 to 3 consumers around a topic of a few
    /// to a few hundred events, sizes from tiny to most of the byte capacity, crashes and
    /// disconnects sprinkled over the first seconds.
    pub fn small(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let events_cap = [1, 2, 3, 5, 10, 50, 200][rng.range(0, 6) as usize];
        let bytes_cap = [2_000, 10_000, 100_000, 1 << 20][rng.range(0, 3) as usize];
        let capacity = Credit::new(events_cap, bytes_cap);
        // The largest event that can ever fit: its credit cost (64 + payload) within the cap.
        let max_payload = bytes_cap - 64;
        let producers: Vec<ProducerPlan> = (0..rng.range(1, 6))
            .map(|_| {
                let kinds = rng.range(1, 3);
                let sizes = (0..kinds)
                    .map(|_| match rng.range(0, 3) {
                        0 => rng.range(0, 16),
                        1 => rng.range(16, 1_000),
                        2 => rng.range(1_000, 10_000),
                        _ => rng.range(max_payload / 3, max_payload),
                    })
                    .map(|s| s.min(max_payload))
                    .collect();
                ProducerPlan {
                    sizes,
                    events: rng.range(1, 300),
                    interval_ns: [0, 0, 100_000, MS][rng.range(0, 3) as usize],
                    start_ns: rng.range(0, 200) * MS,
                    stop_ns: None,
                }
            })
            .collect();
        // Sometimes no consumer for a while: the topic must fill to its cap, then drain.
        let late = rng.chance(0.3);
        let consumers: Vec<ConsumerPlan> = (0..rng.range(1, 3))
            .map(|_| {
                let crashes = (0..rng.range(0, 2))
                    .map(|_| (rng.range(10, 3_000) * MS, rng.range(1, 500) * MS))
                    .collect();
                ConsumerPlan {
                    commit_ns: (rng.range(0, 2) * MS, rng.range(2, 20) * MS),
                    // At times below the largest event, which then comes alone (the lone
                    // delivery, docs/protocol.md).
                    prefetch: Credit::new(
                        rng.range(1, 500),
                        rng.range(bytes_cap / 8, 4 * bytes_cap),
                    ),
                    start_ns: if late {
                        rng.range(1_000, 3_000) * MS
                    } else {
                        0
                    },
                    crashes,
                    group: 0,
                }
            })
            .collect();
        let cuts = (0..rng.range(0, 3))
            .map(|_| {
                (
                    rng.next_u64() as usize % producers.len(),
                    rng.range(1, 3_000) * MS,
                )
            })
            .collect();
        let lo = rng.range(0, 2_000);
        let delay_ns = (lo * 1_000, (lo + rng.range(0, 5_000)) * 1_000);
        // Drawn last, so the rest of a kept seed's run is what it was before deadlines. At
        // least two round trips: a delivery must be able to reach its consumer and its
        // progress come back within the wait, or no delivery is ever acked in time (true of
        // any ack deadline, so the broker's default is 30 s). Commits take up to 20 ms, so
        // many outlast it and live on their progress reports.
        let ack_wait_ns = rng
            .chance(0.5)
            .then(|| (rng.range(3, 40) * MS).max(4 * delay_ns.1 + MS));
        Scenario {
            seed,
            capacity,
            producers,
            consumers,
            delay_ns,
            cuts,
            deadline_ns: 600_000 * MS,
            heavy_every: 1,
            vary_prefetch: true,
            ack_wait_ns,
            policy: TopicPolicy::default(),
        }
    }

    /// [`Scenario::small`] of `seed` on a topic that does not block: drop-newest, drop-oldest,
    /// reject or conflate (its producers then give their events one of three keys), half the
    /// time with a max age of 5 to 500 ms. Drawn from a stream of its own, so the rest of the
    /// run is `small(seed)`'s.
    pub fn with_policy(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed ^ 0x0070_11c7);
        let overflow = Overflow::ALL[rng.range(1, 4) as usize];
        let max_age = rng
            .chance(0.5)
            .then(|| std::time::Duration::from_millis(rng.range(5, 500)));
        let mut scenario = Scenario {
            policy: TopicPolicy { overflow, max_age },
            ..Scenario::small(seed)
        };
        if overflow == Overflow::Conflate {
            // Room for the one-byte key within the largest event that fits.
            for p in &mut scenario.producers {
                for s in &mut p.sizes {
                    *s = s.saturating_sub(1);
                }
            }
        }
        scenario
    }

    /// [`Scenario::small`] of `seed` with its consumers split between two blocking groups and
    /// a best-effort one (consumers are added to give each one): every event must reach both
    /// blocking groups, the topic hold it until both acked, and the best-effort group read or
    /// skip each one. Drawn from a stream of its own.
    pub fn with_groups(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed ^ 0x0067_7005);
        let mut scenario = Scenario::small(seed);
        while scenario.consumers.len() < GROUPS.len() {
            let mut twin = scenario.consumers[0].clone();
            twin.commit_ns = (rng.range(0, 2) * MS, rng.range(2, 40) * MS);
            scenario.consumers.push(twin);
        }
        for (i, c) in scenario.consumers.iter_mut().enumerate() {
            c.group = if i < GROUPS.len() {
                i
            } else {
                rng.range(0, GROUPS.len() as u64 - 1) as usize
            };
        }
        scenario
    }

    /// One topic of the scale run: `producers` producers wanting 20 events/s each, of sizes
    /// from 100 B to 10 KiB, for `seconds` of virtual time, against `consumers` consumers
    /// that together commit about half of that (batches of 5 taking 40-60 ms each), on a
    /// topic of 500 events / 1 MiB. Producers are backpressured the whole run, so their
    /// shares say how fair the grants are.
    pub fn scale_topic(seed: u64, producers: usize, consumers: usize, seconds: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let producers = (0..producers)
            .map(|_| ProducerPlan {
                sizes: vec![rng.range(100, 1_000), rng.range(1_000, 10_000)],
                events: u64::MAX,
                interval_ns: 50 * MS,
                start_ns: rng.range(0, 1_000) * MS,
                stop_ns: Some(seconds * 1_000 * MS),
            })
            .collect();
        let consumers = (0..consumers)
            .map(|_| ConsumerPlan {
                commit_ns: (40 * MS, 60 * MS),
                prefetch: Credit::new(5, 1 << 20),
                start_ns: rng.range(0, 1_000) * MS,
                crashes: (0..rng.range(0, 1))
                    .map(|_| {
                        (
                            rng.range(1, seconds) * 1_000 * MS,
                            rng.range(100, 2_000) * MS,
                        )
                    })
                    .collect(),
                group: 0,
            })
            .collect();
        Scenario {
            seed,
            capacity: Credit::new(500, 1 << 20),
            producers,
            consumers,
            delay_ns: (100_000, 2 * MS),
            cuts: Vec::new(),
            deadline_ns: (seconds + 600) * 1_000 * MS,
            // The checks that look at every producer run every 1,000 steps here, not every
            // step: with 100 producers a topic they would cost more than the run.
            heavy_every: 1_000,
            vary_prefetch: false,
            ack_wait_ns: None,
            policy: TopicPolicy::default(),
        }
    }
}
