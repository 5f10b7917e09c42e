//! A topic's dead letters: events that waited past its max age and were not delivered, the
//! latest [`MAX_DEAD_LETTERS`] kept with their group and age for `/stats` (every one is counted
//! in the topic's figures; the oldest records give way, so the list stays bounded).

use std::collections::VecDeque;
use std::time::Duration;

use flowgate_core::{EventId, Expired};
use flowgate_proto::WireEvent;

/// The most dead letters a topic keeps a record of.
pub const MAX_DEAD_LETTERS: usize = 100;

/// One event that expired for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The group it was not delivered to.
    pub group: String,
    /// The event's id.
    pub id: EventId,
    /// When its producer created it, microseconds since the Unix epoch.
    pub created_us: u64,
    /// How long it had waited in the topic.
    pub age: Duration,
    /// Its credit bytes.
    pub bytes: u64,
}

/// The latest dead letters of one topic, oldest first.
#[derive(Debug, Default)]
pub(crate) struct DeadLetters {
    kept: VecDeque<DeadLetter>,
}

impl DeadLetters {
    /// Records what expired, letting the oldest records go beyond the bound.
    pub fn record(&mut self, topic: &str, expired: Vec<Expired<WireEvent>>) {
        for e in expired {
            tracing::debug!(
                topic,
                group = %e.group,
                id = %e.item.id,
                age_ms = e.age.as_millis() as u64,
                "dead letter: waited past the topic's max age"
            );
            if self.kept.len() == MAX_DEAD_LETTERS {
                self.kept.pop_front();
            }
            self.kept.push_back(DeadLetter {
                group: e.group,
                id: e.item.id,
                created_us: e.item.created_us,
                age: e.age,
                bytes: e.item.credit_bytes(),
            });
        }
    }

    /// The records kept, oldest first.
    pub fn list(&self) -> Vec<DeadLetter> {
        self.kept.iter().cloned().collect()
    }
}
