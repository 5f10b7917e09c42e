//! What `/stats` says: one typed document per role, written by the broker, `flowgate produce`
//! and `flowgate consume`, read back by `flowgate top`, and fed to the metrics table. A field
//! renamed on one side fails to parse on the other, instead of reading as zero.

use std::collections::BTreeMap;
use std::time::Duration;

use flowgate_core::{GroupStats, StageSplit, TopicStats};
use serde::{Deserialize, Serialize};

use crate::forecast::Forecast;

/// A `/stats` document, tagged by `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Snapshot {
    /// A broker's.
    Broker(BrokerSnapshot),
    /// A producer's.
    Producer(ProducerSnapshot),
    /// A consumer's.
    Consumer(ConsumerSnapshot),
}

impl Snapshot {
    /// The role's name, as in the document's `role` field.
    pub fn role(&self) -> &'static str {
        match self {
            Snapshot::Broker(_) => "broker",
            Snapshot::Producer(_) => "producer",
            Snapshot::Consumer(_) => "consumer",
        }
    }
}

/// A stage's time split, in cumulative seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StageSeconds {
    /// Seconds spent busy.
    pub busy_s: f64,
    /// Seconds spent backpressured (see [`flowgate_core::StageState::Backpressured`]).
    pub backpressured_s: f64,
    /// Seconds spent idle.
    pub idle_s: f64,
}

impl From<StageSplit> for StageSeconds {
    fn from(s: StageSplit) -> StageSeconds {
        StageSeconds {
            busy_s: s.busy.as_secs_f64(),
            backpressured_s: s.backpressured.as_secs_f64(),
            idle_s: s.idle.as_secs_f64(),
        }
    }
}

impl From<StageSeconds> for StageSplit {
    fn from(s: StageSeconds) -> StageSplit {
        let secs = |v: f64| Duration::try_from_secs_f64(v).unwrap_or_default();
        StageSplit {
            busy: secs(s.busy_s),
            backpressured: secs(s.backpressured_s),
            idle: secs(s.idle_s),
        }
    }
}

/// The broker's figures now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BrokerSnapshot {
    /// Seconds since the broker started.
    pub uptime_s: f64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// `ERROR` frames sent to peers, by code name.
    pub errors_sent: BTreeMap<String, u64>,
    /// The broker process's resident set size.
    pub rss_bytes: u64,
    /// The memory budget its governor keeps to (0: none).
    pub memory_budget_bytes: u64,
    /// Bytes all topics together may hold and promise now, by the governor (0: none).
    pub memory_pool_bytes: u64,
    /// Every topic.
    pub topics: Vec<TopicSnapshot>,
}

/// One topic's figures now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TopicSnapshot {
    /// The topic's name.
    pub name: String,
    /// What it holds at most (held and promised to producers), in events.
    pub capacity_events: u64,
    /// And in bytes.
    pub capacity_bytes: u64,
    /// Producers attached now.
    pub producers: u64,
    /// Consumers attached now, of every group.
    pub consumers: u64,
    /// Events accepted from producers.
    pub accepted: u64,
    /// Retried events dropped because the topic already held them.
    pub duplicates: u64,
    /// Deliveries to consumers, redeliveries included.
    pub delivered: u64,
    /// Redeliveries, after a nack or a consumer leaving.
    pub redelivered: u64,
    /// Events acknowledged by consumers.
    pub acked: u64,
    /// Events refused by consumers.
    pub nacked: u64,
    /// Deliveries taken back because their ack deadline (`--ack-wait`) passed.
    pub ack_timeouts: u64,
    /// Events in memory that a blocking group has still to ack, each counted once: with
    /// `on_disk`, what the capacity bounds.
    pub held_events: u64,
    /// Their bytes.
    pub held_bytes: u64,
    /// Events queued for delivery, summed over the groups.
    pub ready: u64,
    /// Bytes queued for delivery (in memory), summed over the groups.
    pub ready_bytes: u64,
    /// Events accepted and waiting only in the disk log.
    pub on_disk: u64,
    /// Their credit bytes.
    pub on_disk_bytes: u64,
    /// Events delivered and not yet acknowledged, summed over the groups.
    pub unacked: u64,
    /// Bytes delivered and not yet acknowledged, summed over the groups.
    pub unacked_bytes: u64,
    /// Events best-effort groups skipped, more than their max lag behind.
    pub skipped: u64,
    /// What the topic does when full: block, drop-newest, drop-oldest, reject or conflate.
    pub policy: String,
    /// An event unread this long after it was accepted is a dead letter; `None`: no limit.
    pub max_age_ms: Option<u64>,
    /// New events dropped because the topic was full (drop-newest; drop-oldest when nothing
    /// could give way).
    pub dropped_newest: u64,
    /// Held events dropped to make room (drop-oldest).
    pub dropped_oldest: u64,
    /// New events refused, their producers told (reject).
    pub rejected: u64,
    /// Waiting events replaced by a newer one with the same key (conflate).
    pub conflated: u64,
    /// Events that waited past the max age for a group, summed over the groups.
    pub expired: u64,
    /// The latest dead letters (events past the max age), oldest first.
    pub dead_letters: Vec<DeadLetterSnapshot>,
    /// Credit granted to producers and not yet used, in events.
    pub producer_credit_events: u64,
    /// Demand requested by consumers and not yet delivered, in events.
    pub consumer_demand_events: u64,
    /// The most events held at once.
    pub peak_events: u64,
    /// The most bytes held at once.
    pub peak_bytes: u64,
    /// Producer ids whose dedup mark the topic remembers now.
    pub producer_ids: u64,
    /// Producer ids forgotten (idle past `--dedup-ttl`, or past `--dedup-max-ids`).
    pub producer_ids_forgotten: u64,
    /// The topic's time split since the broker started.
    pub stage: StageSeconds,
    /// Why the topic's store cannot write now (a full disk), while it tries again; `None`
    /// when it writes.
    pub storage_failure: Option<String>,
    /// Its consumer groups, in the order they appeared.
    pub groups: Vec<GroupSnapshot>,
    /// When it fills or drains and how large it must be, from the broker's last two samples
    /// (`--stats-every` apart); `None` before the second.
    pub forecast: Option<Forecast>,
}

/// One consumer group's figures now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GroupSnapshot {
    /// The group's name.
    pub name: String,
    /// Best effort with this max lag; `None` for a blocking group.
    pub max_lag: Option<u64>,
    /// Consumers attached now.
    pub consumers: u64,
    /// Events waiting unread for it.
    pub ready: u64,
    /// Events delivered to it and not yet settled.
    pub unacked: u64,
    /// Its consumers' outstanding demand, in events.
    pub demand_events: u64,
    /// Deliveries made to it, redeliveries included.
    pub delivered: u64,
    /// Of those, redeliveries.
    pub redelivered: u64,
    /// Events it acknowledged.
    pub acked: u64,
    /// Events it refused.
    pub nacked: u64,
    /// Deliveries taken back from it at their ack deadline.
    pub ack_timeouts: u64,
    /// Events it skipped, more than its max lag behind.
    pub skipped: u64,
    /// Events that waited past the topic's max age before it read them.
    pub expired: u64,
}

/// An event that waited past its topic's max age and was not delivered to a group.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeadLetterSnapshot {
    /// The group it was not delivered to.
    pub group: String,
    /// The event's id (`producer:seq`, in hex and decimal).
    pub id: String,
    /// When its producer created it, microseconds since the Unix epoch.
    pub created_us: u64,
    /// How long it had waited in the topic, in milliseconds.
    pub age_ms: u64,
    /// Its bytes (key and payload, as credit counts them).
    pub bytes: u64,
}

impl GroupSnapshot {
    /// A group's snapshot from the topic's figures for it.
    pub fn new(g: &GroupStats) -> GroupSnapshot {
        GroupSnapshot {
            name: g.name.clone(),
            max_lag: g.mode.max_lag(),
            consumers: g.consumers,
            ready: g.ready,
            unacked: g.unacked,
            demand_events: g.demand.events,
            delivered: g.delivered,
            redelivered: g.redelivered,
            acked: g.acked,
            nacked: g.nacked,
            ack_timeouts: g.ack_timeouts,
            skipped: g.skipped,
            expired: g.expired,
        }
    }

    /// What it has not acked: unread and unsettled.
    pub fn lag(&self) -> u64 {
        self.ready + self.unacked
    }
}

impl TopicSnapshot {
    /// A topic's snapshot from its counters, its groups' and its time split.
    pub fn new(
        name: &str,
        t: &TopicStats,
        groups: &[GroupStats],
        stage: StageSplit,
    ) -> TopicSnapshot {
        TopicSnapshot {
            name: name.to_string(),
            capacity_events: t.capacity.events,
            capacity_bytes: t.capacity.bytes,
            producers: t.producers,
            consumers: t.consumers,
            accepted: t.accepted,
            duplicates: t.duplicates,
            delivered: t.delivered,
            redelivered: t.redelivered,
            acked: t.acked,
            nacked: t.nacked,
            ack_timeouts: t.ack_timeouts,
            held_events: t.held,
            held_bytes: t.held_bytes,
            ready: t.ready,
            ready_bytes: t.ready_bytes,
            on_disk: t.on_disk,
            on_disk_bytes: t.on_disk_bytes,
            unacked: t.unacked,
            unacked_bytes: t.unacked_bytes,
            skipped: t.skipped,
            policy: t.policy.overflow.to_string(),
            max_age_ms: t.policy.max_age.map(|a| a.as_millis() as u64),
            dropped_newest: t.dropped_newest,
            dropped_oldest: t.dropped_oldest,
            rejected: t.rejected,
            conflated: t.conflated,
            expired: t.expired,
            dead_letters: Vec::new(),
            producer_credit_events: t.producer_credit.events,
            consumer_demand_events: t.consumer_demand.events,
            peak_events: t.peak_events,
            peak_bytes: t.peak_bytes,
            producer_ids: t.producer_ids,
            producer_ids_forgotten: t.producer_ids_forgotten,
            stage: stage.into(),
            storage_failure: None,
            // The lobby (unnamed) is no group: it only holds events until the first attaches.
            groups: groups
                .iter()
                .filter(|g| !g.name.is_empty())
                .map(GroupSnapshot::new)
                .collect(),
            forecast: None,
        }
    }

    /// The policy in words: "drop-oldest, max age 30,000 ms".
    pub fn policy_text(&self) -> String {
        match self.max_age_ms {
            Some(ms) => format!(
                "{}, max age {} ms",
                self.policy,
                crate::units::thousands(ms)
            ),
            None => self.policy.clone(),
        }
    }

    /// Every event the topic let go of, by kind ("900 dropped oldest, 12 expired"); `None`
    /// when it let go of none.
    pub fn drops_text(&self) -> Option<String> {
        let kinds = [
            ("dropped newest", self.dropped_newest),
            ("dropped oldest", self.dropped_oldest),
            ("rejected", self.rejected),
            ("conflated", self.conflated),
            ("expired", self.expired),
            ("skipped", self.skipped),
        ];
        let counted: Vec<String> = kinds
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{} {k}", crate::units::thousands(*n)))
            .collect();
        (!counted.is_empty()).then(|| counted.join(", "))
    }
    /// Events the topic holds for its blocking groups: in memory and on disk.
    pub fn held(&self) -> u64 {
        self.held_events + self.on_disk
    }
}

/// A producer's figures now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    /// The producer id, in hex.
    pub producer_id: String,
    /// Seconds since the producer started.
    pub uptime_s: f64,
    /// Events sent (each paid for with credit).
    pub sent: u64,
    /// The highest sequence number the broker confirmed.
    pub confirmed_seq: u64,
    /// The producer's time split.
    pub stage: StageSeconds,
}

/// A consumer's figures now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConsumerSnapshot {
    /// Seconds since the consumer started.
    pub uptime_s: f64,
    /// Events received.
    pub received: u64,
    /// Events settled: committed, or dead-lettered.
    pub committed: u64,
    /// Events written to the dead-letter table.
    pub dead_lettered: u64,
    /// Deliveries the database refused and that were nacked.
    pub retried: u64,
    /// The adaptive batch limit, in events.
    pub batch_limit: u64,
    /// 99th percentile of commit latency since start, in milliseconds.
    pub commit_latency_ms_p99: f64,
    /// Commits that failed for a reason that may pass, and were tried again.
    pub commit_failures: u64,
    /// A failed commit is being tried again now (the database is down or full).
    pub sink_retrying: bool,
    /// Median of creation-to-commit latency, in milliseconds.
    pub e2e_latency_ms_p50: f64,
    /// 99th percentile of creation-to-commit latency, in milliseconds.
    pub e2e_latency_ms_p99: f64,
    /// The consumer's time split.
    pub stage: StageSeconds,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_round_trips_tagged_by_role() {
        let doc = Snapshot::Producer(ProducerSnapshot {
            producer_id: "2a".into(),
            sent: 7,
            ..ProducerSnapshot::default()
        });
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["role"], "producer");
        assert_eq!(json["sent"], 7);
        assert_eq!(serde_json::from_value::<Snapshot>(json).unwrap(), doc);
    }

    #[test]
    fn a_missing_or_renamed_field_is_an_error_not_a_zero() {
        let mut json =
            serde_json::to_value(Snapshot::Consumer(ConsumerSnapshot::default())).unwrap();
        let committed = json.as_object_mut().unwrap().remove("committed").unwrap();
        json["commited"] = committed;
        let err = serde_json::from_value::<Snapshot>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `committed`"), "{err}");
    }
}
