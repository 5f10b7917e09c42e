//! The broker's topics: a registry that creates a topic on first use (within its limits), and
//! per topic the pure
//! [`Topic`] state machine plus the outboxes of its connections. Every input goes through
//! [`TopicHandle::apply`], which runs the state machine under the topic's lock and routes the
//! actions it returns to the right outboxes before the lock is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use std::time::{Duration, Instant};

use flowgate_core::{
    Action, ConnId, GroupStats, Overflow, StageClock, StageSplit, StageState, Topic, TopicStats,
};
use flowgate_proto::WireEvent;

use crate::config::BrokerConfig;
use crate::dead_letters::{DeadLetter, DeadLetters};
use crate::governor::Governor;
use crate::outbox::Outbox;
use crate::storage::{RecoveredTopic, Storage};

/// One topic and the connections attached to it.
pub(crate) struct TopicInner {
    /// The dispatch state machine.
    pub topic: Topic<WireEvent>,
    /// Outboxes of attached connections.
    pub outboxes: HashMap<ConnId, Arc<Outbox>>,
    /// The topic's states over time, as `Topic::stage_state` decides them.
    clock: StageClock,
    /// The topic's broken books were logged (once).
    broken_logged: bool,
    /// What it counts against the memory governor's pool (held and promised bytes).
    governed: u64,
    /// Events that waited past the topic's max age, the latest kept.
    dead_letters: DeadLetters,
}

/// A topic shared by its connections.
pub(crate) struct TopicHandle {
    pub name: String,
    inner: Mutex<TopicInner>,
    /// The broker's start, the epoch of the topic's stage clock.
    epoch: Instant,
    /// Asked before each round of grants whether the topic may take more, and to load
    /// spilled events.
    storage: Arc<dyn Storage>,
    /// This handle, for the answer to a load, which arrives from the storage's thread.
    me: Weak<TopicHandle>,
    /// The pool of memory all topics lease from, with a budget.
    governor: Option<Arc<Governor>>,
}

impl TopicHandle {
    /// Runs `f` on the topic, then routes whatever it now wants sent.
    pub fn apply<R>(&self, f: impl FnOnce(&mut TopicInner) -> R) -> R {
        let mut inner = self.lock();
        inner.topic.tick(self.epoch.elapsed());
        let result = f(&mut inner);
        self.route(&mut inner);
        result
    }

    /// Carries out what the topic wants now (not generic, so the load answer below can call
    /// back into [`TopicHandle::apply`]).
    fn route(&self, inner: &mut TopicInner) {
        let room = self.storage.room(&self.name);
        let queued = self.storage.queued_bytes(&self.name);
        inner.topic.limit_grants(room, queued);
        let lease = self.governor.as_deref().map(|g| {
            let before = inner.topic.memory_bytes();
            let leased = g.lease(inner.governed, before, inner.topic.capacity().bytes);
            inner.topic.limit_memory(Some(before + leased));
            (g, before, leased)
        });
        let actions = inner.topic.poll_actions();
        if let Some((g, before, leased)) = lease {
            let after = inner.topic.memory_bytes();
            g.settle(before, leased, after);
            inner.governed = after;
        }
        let requeued = inner.topic.take_requeued();
        if !requeued.is_empty() {
            let attempts = requeued.iter().map(|(e, a)| (e.id, *a)).collect();
            self.storage.record_attempts(&self.name, attempts);
        }
        let expired = inner.topic.take_expired();
        if !expired.is_empty() {
            inner.dead_letters.record(&self.name, expired);
        }
        let dropped = inner.topic.take_dropped();
        if !dropped.is_empty() {
            let ids: Vec<_> = dropped.iter().map(|e| e.id).collect();
            self.storage.ack(&self.name, &ids);
        }
        let forgotten = inner.topic.take_forgotten_ids();
        if !forgotten.is_empty() {
            self.storage.forget_producers(&self.name, forgotten);
        }
        if let Some(e) = inner.topic.broken()
            && !inner.broken_logged
        {
            tracing::error!(topic = %self.name, "{e}; the topic takes no more work until the broker restarts");
            inner.broken_logged = true;
        }
        let state = inner.topic.stage_state();
        if state != inner.clock.state() {
            inner.clock.enter(state, self.epoch.elapsed());
        }
        for action in actions {
            match action {
                Action::Grant { producer, credit } => {
                    if let Some(o) = inner.outboxes.get(&producer) {
                        o.grant(credit);
                    }
                }
                Action::Deliver {
                    consumer,
                    deliveries,
                } => {
                    if let Some(o) = inner.outboxes.get(&consumer) {
                        o.deliver(deliveries);
                    }
                }
                Action::Load { room } => {
                    let me = Weak::clone(&self.me);
                    let done = Box::new(move |events: Vec<(WireEvent, u32)>| {
                        if let Some(topic) = me.upgrade() {
                            topic.loaded(events);
                        }
                    });
                    self.storage.load(&self.name, room, done);
                }
            }
        }
    }

    /// Hands events read back from the store to the topic.
    fn loaded(&self, events: Vec<(WireEvent, u32)>) {
        let items: Vec<(WireEvent, u64, u32)> = events
            .into_iter()
            .map(|(e, attempt)| {
                let bytes = e.credit_bytes();
                (e, bytes, attempt)
            })
            .collect();
        let mut inner = self.lock();
        inner.topic.tick(self.epoch.elapsed());
        inner.topic.loaded(items);
        self.route(&mut inner);
    }

    /// Counters and levels, the topic's and each group's.
    pub fn stats(&self) -> (TopicStats, Vec<GroupStats>) {
        let inner = self.lock();
        (inner.topic.stats(), inner.topic.groups())
    }

    /// The latest dead letters, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead_letters.list()
    }

    /// Time spent in each state (see `Topic::stage_state`).
    pub fn stage(&self) -> StageSplit {
        self.lock().clock.split(self.epoch.elapsed())
    }

    fn lock(&self) -> MutexGuard<'_, TopicInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An event's key, for a topic that conflates.
fn wire_key(e: &WireEvent) -> Option<&[u8]> {
    e.key.as_deref()
}

/// Why a topic a client named cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoSuchTopic {
    /// The broker creates only the topics its config declares.
    #[error(
        "topic '{0}' does not exist, and this broker serves only the topics its config declares (create_topics = false)"
    )]
    NotDeclared(String),
    /// Creating it would pass the broker's limit.
    #[error(
        "topic '{name}' does not exist, and this broker already holds {limit} topics (--max-topics {limit})"
    )]
    TooMany {
        /// The topic named.
        name: String,
        /// The limit.
        limit: usize,
    },
}

/// All topics, created on first use.
pub(crate) struct Topics {
    config: BrokerConfig,
    governor: Option<Arc<Governor>>,
    storage: Arc<dyn Storage>,
    epoch: Instant,
    map: Mutex<HashMap<String, Arc<TopicHandle>>>,
}

impl Topics {
    /// The registry, with the topics declared in `config` and those a store recovered.
    pub fn new(
        config: BrokerConfig,
        storage: Arc<dyn Storage>,
        recovered: Vec<RecoveredTopic>,
        governor: Option<Arc<Governor>>,
    ) -> Self {
        let topics = Topics {
            config,
            governor,
            storage,
            epoch: Instant::now(),
            map: Mutex::new(HashMap::new()),
        };
        // Declared topics exist from the start, so they show in stats before first use.
        let declared: Vec<String> = topics.config.topics.keys().cloned().collect();
        for name in declared {
            topics.get_or_create(&name);
        }
        // What a store holds is served even past the limits, which bound only new topics.
        for found in recovered {
            let topic = topics.get_or_create(&found.name);
            topic.apply(|t| {
                let items = found.events.into_iter().map(|(e, attempt)| {
                    let bytes = e.credit_bytes();
                    (e, bytes, attempt)
                });
                t.topic.restore(found.high_water, items);
                t.topic.restore_spilled(found.spilled);
            });
        }
        topics
    }

    /// The topic called `name`, if it exists.
    pub fn find(&self, name: &str) -> Option<Arc<TopicHandle>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every topic.
    pub fn all(&self) -> Vec<Arc<TopicHandle>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The topic a client named: one that exists, or a new one if the broker creates topics
    /// and holds fewer than its limit.
    pub fn open(&self, name: &str) -> Result<Arc<TopicHandle>, NoSuchTopic> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(topic) = map.get(name) {
            return Ok(Arc::clone(topic));
        }
        if !self.config.create_topics {
            return Err(NoSuchTopic::NotDeclared(name.to_string()));
        }
        if map.len() >= self.config.max_topics {
            return Err(NoSuchTopic::TooMany {
                name: name.to_string(),
                limit: self.config.max_topics,
            });
        }
        Ok(self.create(&mut map, name))
    }

    /// The topic called `name`, created with its configured capacity if new.
    fn get_or_create(&self, name: &str) -> Arc<TopicHandle> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(name) {
            Some(topic) => Arc::clone(topic),
            None => self.create(&mut map, name),
        }
    }

    fn create(&self, map: &mut HashMap<String, Arc<TopicHandle>>, name: &str) -> Arc<TopicHandle> {
        Arc::clone(map.entry(name.to_string()).or_insert_with(|| {
            let memory = self.config.capacity_of(name);
            let policy = self.config.policies.get(name).copied().unwrap_or_default();
            // A store that keeps events beyond memory bounds the topic; memory keeps the
            // configured capacity and the rest spills. A topic that drops, refuses or
            // conflates builds no backlog on disk (conflation works on what is in memory):
            // its capacity is the configured one, and the log keeps what it holds across a
            // restart, read back in if a restart finds more than fits.
            let mut topic = match self.storage.capacity(name) {
                Some(disk) if policy.overflow == Overflow::Block => {
                    let mut t = Topic::new(disk);
                    t.spill_beyond(memory);
                    // The log keeps attempt counts across restarts.
                    t.record_attempts();
                    t
                }
                Some(_) => {
                    let mut t = Topic::new(memory);
                    t.spill_beyond(memory);
                    t.record_attempts();
                    t
                }
                None => Topic::new(memory),
            };
            topic.set_mark_limits(self.config.marks);
            let ack_wait = self.config.ack_waits.get(name).copied();
            topic.set_ack_wait(ack_wait.or(self.config.ack_wait));
            topic.set_policy(policy, Some(wire_key));
            topic.set_max_groups(self.config.max_groups);
            for (group, mode) in self.config.groups.get(name).into_iter().flatten() {
                // The configuration checked the names, their number and their modes.
                let declared = topic.declare_group(group, *mode);
                debug_assert!(declared.is_ok(), "{declared:?}");
            }
            Arc::new_cyclic(|me| TopicHandle {
                name: name.to_string(),
                inner: Mutex::new(TopicInner {
                    topic,
                    outboxes: HashMap::new(),
                    clock: StageClock::new(StageState::Idle, self.epoch.elapsed()),
                    broken_logged: false,
                    governed: 0,
                    dead_letters: DeadLetters::default(),
                }),
                epoch: self.epoch,
                storage: Arc::clone(&self.storage),
                me: Weak::clone(me),
                governor: self.governor.clone(),
            })
        }))
    }

    /// Tells every topic the time, so deadlines pass on a topic with no traffic too.
    pub fn tick_all(&self) {
        for topic in self.all() {
            topic.apply(|_| ());
        }
    }

    /// How often [`Topics::tick_all`] should run: a tenth of the shortest ack wait or max
    /// age, between 10 ms and 1 s, so a deadline is acted on within a tenth of it.
    pub fn tick_every(&self) -> Duration {
        let c = &self.config;
        let waits = c.ack_wait.into_iter().chain(c.ack_waits.values().copied());
        let ages = c.policies.values().filter_map(|p| p.max_age);
        let shortest = waits.chain(ages).min().unwrap_or(Duration::from_secs(10));
        (shortest / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Every topic's latest dead letters, by name (topics without any left out).
    pub fn dead_letters(&self) -> std::collections::BTreeMap<String, Vec<DeadLetter>> {
        self.all()
            .iter()
            .map(|h| (h.name.clone(), h.dead_letters()))
            .filter(|(_, d)| !d.is_empty())
            .collect()
    }

    /// Every topic's name, stats, groups and stage split, sorted by name.
    pub fn stats(&self) -> Vec<(String, TopicStats, Vec<GroupStats>, StageSplit)> {
        let handles = self.all();
        let mut out: Vec<_> = handles
            .iter()
            .map(|h| {
                let (stats, groups) = h.stats();
                (h.name.clone(), stats, groups, h.stage())
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
