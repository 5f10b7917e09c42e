//! The broker's topics: a registry that creates a topic on first use, and per topic the pure
//! [`Topic`] state machine plus the outboxes of its connections. Every input goes through
//! [`TopicHandle::apply`], which runs the state machine under the topic's lock and routes the
//! actions it returns to the right outboxes before the lock is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flowgate_core::{Action, ConnId, Topic, TopicStats};
use flowgate_proto::WireEvent;

use crate::config::BrokerConfig;
use crate::outbox::Outbox;

/// One topic and the connections attached to it.
pub(crate) struct TopicInner {
    /// The dispatch state machine.
    pub topic: Topic<WireEvent>,
    /// Outboxes of attached connections.
    pub outboxes: HashMap<ConnId, Arc<Outbox>>,
    /// The consumer group that consumes this topic (set by its first consumer).
    pub group: Option<String>,
}

/// A topic shared by its connections.
pub(crate) struct TopicHandle {
    pub name: String,
    inner: Mutex<TopicInner>,
}

impl TopicHandle {
    /// Runs `f` on the topic, then routes whatever it now wants sent.
    pub fn apply<R>(&self, f: impl FnOnce(&mut TopicInner) -> R) -> R {
        let mut inner = self.lock();
        let result = f(&mut inner);
        let actions = inner.topic.poll_actions();
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
            }
        }
        result
    }

    /// Counters and levels.
    pub fn stats(&self) -> TopicStats {
        self.lock().topic.stats()
    }

    fn lock(&self) -> MutexGuard<'_, TopicInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// All topics, created on first use.
pub(crate) struct Topics {
    config: BrokerConfig,
    map: Mutex<HashMap<String, Arc<TopicHandle>>>,
}

impl Topics {
    pub fn new(config: BrokerConfig) -> Self {
        let topics = Topics {
            config,
            map: Mutex::new(HashMap::new()),
        };
        // Declared topics exist from the start, so they show in stats before first use.
        let declared: Vec<String> = topics.config.topics.keys().cloned().collect();
        for name in declared {
            topics.get_or_create(&name);
        }
        topics
    }

    /// The topic called `name`, created with its configured capacity if new.
    pub fn get_or_create(&self, name: &str) -> Arc<TopicHandle> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(name.to_string()).or_insert_with(|| {
            Arc::new(TopicHandle {
                name: name.to_string(),
                inner: Mutex::new(TopicInner {
                    topic: Topic::new(self.config.capacity_of(name)),
                    outboxes: HashMap::new(),
                    group: None,
                }),
            })
        }))
    }

    /// Every topic's name and stats, sorted by name.
    pub fn stats(&self) -> Vec<(String, TopicStats)> {
        let handles: Vec<Arc<TopicHandle>> = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out: Vec<(String, TopicStats)> = handles
            .iter()
            .map(|h| (h.name.clone(), h.stats()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
