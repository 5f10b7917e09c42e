//! A consumer group of a topic: its own cursor (the events it has still to read, in order), the
//! deliveries its consumers hold and their deadlines, its consumers' demand, and how it falls
//! behind ([`GroupMode`]). Every group reads every event; how long an event stays in the topic
//! is the topic's business (`fanout.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use super::tally::Tally;
use super::{ConnId, ConsumerSlot, DeliveryMap, Entry};
use crate::credit::Credit;

/// How a consumer group falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupMode {
    /// What it has not acked counts against the topic's capacity, so the slowest blocking group
    /// sets the producers' pace. The backpressure default.
    #[default]
    Block,
    /// Best effort: when more than `max_lag` events wait unread for it, its oldest unread ones
    /// are skipped, for this group alone, and counted. Producers and other groups never wait
    /// for it.
    Skip {
        /// The most events it may have unread.
        max_lag: u64,
    },
}

impl GroupMode {
    /// `Block` for `None`, else best effort with that lag.
    pub fn from_max_lag(max_lag: Option<u64>) -> GroupMode {
        match max_lag {
            None => GroupMode::Block,
            Some(max_lag) => GroupMode::Skip { max_lag },
        }
    }

    /// The lag beyond which events are skipped, for a best-effort group.
    pub fn max_lag(self) -> Option<u64> {
        match self {
            GroupMode::Block => None,
            GroupMode::Skip { max_lag } => Some(max_lag),
        }
    }
}

impl fmt::Display for GroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupMode::Block => f.write_str("blocking"),
            GroupMode::Skip { max_lag } => write!(f, "best effort with a max lag of {max_lag}"),
        }
    }
}

/// One group's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    /// Its name.
    pub name: String,
    /// How it falls behind.
    pub mode: GroupMode,
    /// Consumers attached now.
    pub consumers: u64,
    /// Events waiting for it, unread.
    pub ready: u64,
    /// Their bytes.
    pub ready_bytes: u64,
    /// Events delivered to its consumers and not yet settled.
    pub unacked: u64,
    /// Their bytes.
    pub unacked_bytes: u64,
    /// Its consumers' outstanding demand, summed.
    pub demand: Credit,
    /// Deliveries made (first attempts and redeliveries).
    pub delivered: u64,
    /// Of those, redeliveries.
    pub redelivered: u64,
    /// Events it acknowledged.
    pub acked: u64,
    /// Events it refused.
    pub nacked: u64,
    /// Deliveries taken back at their ack deadline.
    pub ack_timeouts: u64,
    /// Events it skipped, more than its max lag behind (best effort only).
    pub skipped: u64,
    /// Events that waited past the topic's max age before it read them.
    pub expired: u64,
}

/// Counters over a group's life.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct GroupCounts {
    pub delivered: u64,
    pub redelivered: u64,
    pub acked: u64,
    pub nacked: u64,
    pub ack_timeouts: u64,
    pub skipped: u64,
    pub expired: u64,
}

#[derive(Debug)]
pub(super) struct Group<T> {
    /// `None` for the lobby: the group that holds events before any group has attached, and
    /// that the first group to attach becomes.
    pub name: Option<String>,
    pub mode: GroupMode,
    pub ready: VecDeque<Entry<T>>,
    pub ready_total: Tally,
    pub unacked: DeliveryMap<(ConnId, Entry<T>)>,
    pub unacked_total: Tally,
    pub consumers: BTreeMap<ConnId, ConsumerSlot>,
    /// The consumer served last; the next turn starts after it.
    pub last_served: Option<ConnId>,
    /// How long a delivery may stay unsettled.
    pub ack_wait: Option<Duration>,
    /// No unacked delivery falls due before this (`None`: none has a deadline). A bound, not
    /// the exact earliest: a settle does not raise it, so a look at the deadlines can find
    /// nothing due, and sets it again from what is unacked then.
    pub next_due: Option<Duration>,
    pub counts: GroupCounts,
}

impl<T: Clone> Group<T> {
    pub fn new(name: Option<String>, mode: GroupMode, ack_wait: Option<Duration>) -> Self {
        Group {
            name,
            mode,
            ready: VecDeque::new(),
            ready_total: Tally::new("ready"),
            unacked: DeliveryMap::default(),
            unacked_total: Tally::new("unacked"),
            consumers: BTreeMap::new(),
            last_served: None,
            ack_wait,
            next_due: None,
            counts: GroupCounts::default(),
        }
    }

    pub fn blocks(&self) -> bool {
        self.mode == GroupMode::Block
    }

    /// Skips its oldest unread events while more than its max lag wait (best effort only).
    /// Returns how many.
    pub fn trim(&mut self) -> Result<u64, super::BooksError> {
        let Some(max_lag) = self.mode.max_lag() else {
            return Ok(0);
        };
        let mut skipped = 0;
        while self.ready.len() as u64 > max_lag {
            let Some(entry) = self.ready.pop_front() else {
                break;
            };
            self.ready_total.take(Credit::new(1, entry.bytes))?;
            skipped += 1;
        }
        self.counts.skipped += skipped;
        Ok(skipped)
    }

    pub fn stats(&self) -> GroupStats {
        let c = self.counts;
        GroupStats {
            name: self.name.clone().unwrap_or_default(),
            mode: self.mode,
            consumers: self.consumers.len() as u64,
            ready: self.ready_total.get().events,
            ready_bytes: self.ready_total.get().bytes,
            unacked: self.unacked_total.get().events,
            unacked_bytes: self.unacked_total.get().bytes,
            demand: self
                .consumers
                .values()
                .fold(Credit::ZERO, |acc, s| acc.saturating_add(s.demand)),
            delivered: c.delivered,
            redelivered: c.redelivered,
            acked: c.acked,
            nacked: c.nacked,
            ack_timeouts: c.ack_timeouts,
            skipped: c.skipped,
            expired: c.expired,
        }
    }
}
