//! The one table of metrics: every Prometheus metric flowgate exports, with its kind, labels,
//! help text and where its value comes from in a [`Snapshot`]. Registration (`describe`) and
//! publishing (`publish`) both walk it, and a test holds `docs/metrics.md` to it, so a metric
//! cannot exist in one place and not the others.

use crate::forecast::Forecast;
use crate::snapshot::{
    BrokerSnapshot, ConsumerSnapshot, GroupSnapshot, ProducerSnapshot, Snapshot, TopicSnapshot,
};

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; set absolutely from a counter of the process.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    /// `counter` or `gauge`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Label values (in the order of [`Metric::labels`]) and the value.
pub type Values = Vec<(Vec<String>, f64)>;

/// One metric, read from a document of type `T`.
pub struct Metric<T> {
    /// The metric's name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Its labels' names.
    pub labels: &'static [&'static str],
    /// The `# HELP` text, word for word the meaning in docs/metrics.md.
    pub help: &'static str,
    /// Where the value comes from.
    pub read: fn(&T) -> Values,
}

/// A metric's description, whatever document it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The metric's name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Its labels' names.
    pub labels: &'static [&'static str],
    /// The help text.
    pub help: &'static str,
}

fn one(v: u64) -> Values {
    vec![(Vec::new(), v as f64)]
}

fn real(v: f64) -> Values {
    vec![(Vec::new(), v)]
}

fn topic(t: &TopicSnapshot, v: u64) -> Values {
    vec![(vec![t.name.clone()], v as f64)]
}

fn group(t: &TopicSnapshot, v: fn(&GroupSnapshot) -> u64) -> Values {
    t.groups
        .iter()
        .map(|g| (vec![t.name.clone(), g.name.clone()], v(g) as f64))
        .collect()
}

fn forecast(t: &TopicSnapshot, v: fn(&Forecast) -> Option<f64>) -> Values {
    t.forecast
        .as_ref()
        .and_then(v)
        .map(|v| vec![(vec![t.name.clone()], v)])
        .unwrap_or_default()
}

fn topic_real(t: &TopicSnapshot, v: f64) -> Values {
    vec![(vec![t.name.clone()], v)]
}

/// The broker's own metrics.
pub const BROKER: &[Metric<BrokerSnapshot>] = &[
    Metric {
        name: "flowgate_broker_connections_open",
        kind: Kind::Gauge,
        labels: &[],
        help: "connections open now",
        read: |b| one(b.connections_open),
    },
    Metric {
        name: "flowgate_broker_connections_accepted_total",
        kind: Kind::Counter,
        labels: &[],
        help: "connections accepted since start",
        read: |b| one(b.connections_accepted),
    },
    Metric {
        name: "flowgate_broker_errors_sent_total",
        kind: Kind::Counter,
        labels: &["code"],
        help: "ERROR frames sent to peers, by code name (see docs/protocol.md)",
        read: |b| {
            b.errors_sent
                .iter()
                .map(|(code, n)| (vec![code.clone()], *n as f64))
                .collect()
        },
    },
    Metric {
        name: "flowgate_broker_rss_bytes",
        kind: Kind::Gauge,
        labels: &[],
        help: "resident set size of the broker process",
        read: |b| one(b.rss_bytes),
    },
    Metric {
        name: "flowgate_broker_memory_budget_bytes",
        kind: Kind::Gauge,
        labels: &[],
        help: "the memory budget the broker's governor keeps to (--memory-budget or its cgroup's limit; 0: none)",
        read: |b| one(b.memory_budget_bytes),
    },
    Metric {
        name: "flowgate_broker_memory_pool_bytes",
        kind: Kind::Gauge,
        labels: &[],
        help: "bytes all topics together may hold and promise now, by the governor (0: none)",
        read: |b| one(b.memory_pool_bytes),
    },
];

/// Every topic's metrics, labelled with its name.
pub const TOPIC: &[Metric<TopicSnapshot>] = &[
    Metric {
        name: "flowgate_topic_accepted_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "events accepted from producers",
        read: |t| topic(t, t.accepted),
    },
    Metric {
        name: "flowgate_topic_duplicates_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "retried events dropped because the topic already held them",
        read: |t| topic(t, t.duplicates),
    },
    Metric {
        name: "flowgate_topic_ack_timeouts_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "deliveries taken back because their ack deadline (--ack-wait) passed",
        read: |t| topic(t, t.ack_timeouts),
    },
    Metric {
        name: "flowgate_topic_producer_ids",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "producer ids whose dedup mark the topic remembers now",
        read: |t| topic(t, t.producer_ids),
    },
    Metric {
        name: "flowgate_topic_producer_ids_forgotten_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "producer ids forgotten, idle past --dedup-ttl or past --dedup-max-ids",
        read: |t| topic(t, t.producer_ids_forgotten),
    },
    Metric {
        name: "flowgate_topic_delivered_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "deliveries to consumers, redeliveries included",
        read: |t| topic(t, t.delivered),
    },
    Metric {
        name: "flowgate_topic_redelivered_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "redeliveries, after a nack or a consumer leaving",
        read: |t| topic(t, t.redelivered),
    },
    Metric {
        name: "flowgate_topic_acked_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "events acknowledged by consumers",
        read: |t| topic(t, t.acked),
    },
    Metric {
        name: "flowgate_topic_nacked_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "events refused by consumers",
        read: |t| topic(t, t.nacked),
    },
    Metric {
        name: "flowgate_topic_ready",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "events queued for delivery",
        read: |t| topic(t, t.ready),
    },
    Metric {
        name: "flowgate_topic_ready_bytes",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "bytes queued for delivery (in memory)",
        read: |t| topic(t, t.ready_bytes),
    },
    Metric {
        name: "flowgate_topic_on_disk",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "events accepted and waiting only in the disk log (--storage disk, a backlog beyond --capacity)",
        read: |t| topic(t, t.on_disk),
    },
    Metric {
        name: "flowgate_topic_on_disk_bytes",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "their credit bytes",
        read: |t| topic(t, t.on_disk_bytes),
    },
    Metric {
        name: "flowgate_topic_unacked",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "events delivered and not yet acknowledged",
        read: |t| topic(t, t.unacked),
    },
    Metric {
        name: "flowgate_topic_unacked_bytes",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "bytes delivered and not yet acknowledged",
        read: |t| topic(t, t.unacked_bytes),
    },
    Metric {
        name: "flowgate_topic_producer_credit_events",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "credit granted to producers and not yet used",
        read: |t| topic(t, t.producer_credit_events),
    },
    Metric {
        name: "flowgate_topic_consumer_demand_events",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "demand requested by consumers and not yet delivered (2^64 - 1 = unbounded)",
        read: |t| topic(t, t.consumer_demand_events),
    },
    Metric {
        name: "flowgate_topic_held",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "events in memory a blocking group has still to acknowledge, each counted once (with on_disk, what the capacity bounds)",
        read: |t| topic(t, t.held_events),
    },
    Metric {
        name: "flowgate_topic_skipped_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "events best-effort groups skipped, more than their max lag behind",
        read: |t| topic(t, t.skipped),
    },
    Metric {
        name: "flowgate_topic_dropped_newest_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "new events dropped because the topic was full (policy drop-newest; drop-oldest when nothing could give way)",
        read: |t| topic(t, t.dropped_newest),
    },
    Metric {
        name: "flowgate_topic_dropped_oldest_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "held events dropped to make room for new ones (policy drop-oldest)",
        read: |t| topic(t, t.dropped_oldest),
    },
    Metric {
        name: "flowgate_topic_rejected_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "new events refused because the topic was full, their producers told (policy reject)",
        read: |t| topic(t, t.rejected),
    },
    Metric {
        name: "flowgate_topic_conflated_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "waiting events replaced by a newer one with the same key (policy conflate)",
        read: |t| topic(t, t.conflated),
    },
    Metric {
        name: "flowgate_topic_expired_total",
        kind: Kind::Counter,
        labels: &["topic"],
        help: "events that waited past the topic's max age for a group (dead letters), summed over the groups",
        read: |t| topic(t, t.expired),
    },
    Metric {
        name: "flowgate_group_consumers",
        kind: Kind::Gauge,
        labels: &["topic", "group"],
        help: "consumers of the group attached now",
        read: |t| group(t, |g| g.consumers),
    },
    Metric {
        name: "flowgate_group_lag",
        kind: Kind::Gauge,
        labels: &["topic", "group"],
        help: "events the group has not acknowledged: unread and unsettled",
        read: |t| group(t, GroupSnapshot::lag),
    },
    Metric {
        name: "flowgate_group_max_lag",
        kind: Kind::Gauge,
        labels: &["topic", "group"],
        help: "a best-effort group's max lag (--max-lag); 0 for a blocking group",
        read: |t| group(t, |g| g.max_lag.unwrap_or(0)),
    },
    Metric {
        name: "flowgate_group_delivered_total",
        kind: Kind::Counter,
        labels: &["topic", "group"],
        help: "deliveries to the group's consumers, redeliveries included",
        read: |t| group(t, |g| g.delivered),
    },
    Metric {
        name: "flowgate_group_acked_total",
        kind: Kind::Counter,
        labels: &["topic", "group"],
        help: "events the group acknowledged",
        read: |t| group(t, |g| g.acked),
    },
    Metric {
        name: "flowgate_group_ack_timeouts_total",
        kind: Kind::Counter,
        labels: &["topic", "group"],
        help: "deliveries taken back from the group's consumers at their ack deadline",
        read: |t| group(t, |g| g.ack_timeouts),
    },
    Metric {
        name: "flowgate_group_skipped_total",
        kind: Kind::Counter,
        labels: &["topic", "group"],
        help: "events the group skipped, more than its max lag behind (best effort only)",
        read: |t| group(t, |g| g.skipped),
    },
    Metric {
        name: "flowgate_group_expired_total",
        kind: Kind::Counter,
        labels: &["topic", "group"],
        help: "events that waited past the topic's max age before the group read them",
        read: |t| group(t, |g| g.expired),
    },
    Metric {
        name: "flowgate_topic_seconds_to_full",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "at the net fill rate of the broker's last stats window, seconds until the topic is full (absent when it is not filling)",
        read: |t| forecast(t, |f| f.seconds_to_full),
    },
    Metric {
        name: "flowgate_topic_seconds_to_drain",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "at the net drain rate of the broker's last stats window, seconds until the topic is empty (absent when it is not draining)",
        read: |t| forecast(t, |f| f.seconds_to_drain),
    },
    Metric {
        name: "flowgate_topic_offered_per_second",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "what producers would send unblocked: events accepted per second over the share of the window the topic was not backpressured (absent when it was backpressured almost all of it: then /stats gives the accepted rate as a lower bound)",
        read: |t| forecast(t, |f| f.offered_per_s.filter(|_| !f.offered_at_least)),
    },
    Metric {
        name: "flowgate_topic_stall_events",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "events the topic needs to ride out a 5 s consumer stall at the offered rate (Little's law)",
        read: |t| forecast(t, |f| f.stall_events.map(|e| e as f64)),
    },
    Metric {
        name: "flowgate_topic_storage_failed",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "1 while the topic's log cannot write (a full disk): nothing more is confirmed, and the broker tries again with backoff; else 0",
        read: |t| topic(t, u64::from(t.storage_failure.is_some())),
    },
    Metric {
        name: "flowgate_topic_busy_seconds",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "the topic held events and was not backpressured",
        read: |t| topic_real(t, t.stage.busy_s),
    },
    Metric {
        name: "flowgate_topic_backpressured_seconds",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "the topic was full: a producer was blocked and there was no room for its next event",
        read: |t| topic_real(t, t.stage.backpressured_s),
    },
    Metric {
        name: "flowgate_topic_idle_seconds",
        kind: Kind::Gauge,
        labels: &["topic"],
        help: "the topic held nothing (nothing ready, nothing unacked)",
        read: |t| topic_real(t, t.stage.idle_s),
    },
];

/// A producer's metrics.
pub const PRODUCER: &[Metric<ProducerSnapshot>] = &[
    Metric {
        name: "flowgate_producer_sent_total",
        kind: Kind::Counter,
        labels: &[],
        help: "events sent (each paid for with credit)",
        read: |p| one(p.sent),
    },
    Metric {
        name: "flowgate_producer_confirmed_seq",
        kind: Kind::Gauge,
        labels: &[],
        help: "the highest sequence number the broker confirmed",
        read: |p| one(p.confirmed_seq),
    },
    Metric {
        name: "flowgate_producer_busy_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "the producer was producing",
        read: |p| real(p.stage.busy_s),
    },
    Metric {
        name: "flowgate_producer_backpressured_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "the producer had an event but waited for credit",
        read: |p| real(p.stage.backpressured_s),
    },
    Metric {
        name: "flowgate_producer_idle_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "the producer waited for its own rate limit (nothing to send yet)",
        read: |p| real(p.stage.idle_s),
    },
];

/// A consumer's metrics.
pub const CONSUMER: &[Metric<ConsumerSnapshot>] = &[
    Metric {
        name: "flowgate_consumer_received_total",
        kind: Kind::Counter,
        labels: &[],
        help: "events received",
        read: |c| one(c.received),
    },
    Metric {
        name: "flowgate_consumer_committed_total",
        kind: Kind::Counter,
        labels: &[],
        help: "events settled: committed, or dead-lettered",
        read: |c| one(c.committed),
    },
    Metric {
        name: "flowgate_consumer_dead_lettered_total",
        kind: Kind::Counter,
        labels: &[],
        help: "events written to <table>_dead_letters",
        read: |c| one(c.dead_lettered),
    },
    Metric {
        name: "flowgate_consumer_retried_total",
        kind: Kind::Counter,
        labels: &[],
        help: "deliveries the database refused and that were nacked for another attempt",
        read: |c| one(c.retried),
    },
    Metric {
        name: "flowgate_consumer_batch_limit",
        kind: Kind::Gauge,
        labels: &[],
        help: "the adaptive batch limit, in events",
        read: |c| one(c.batch_limit),
    },
    Metric {
        name: "flowgate_sink_commit_latency_p99_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "99th percentile of commit latency since start",
        read: |c| real(c.commit_latency_ms_p99 / 1e3),
    },
    Metric {
        name: "flowgate_sink_commit_failures_total",
        kind: Kind::Counter,
        labels: &[],
        help: "commits that failed for a reason that may pass (a lost connection, a full disk, a lock timeout) and were tried again",
        read: |c| one(c.commit_failures),
    },
    Metric {
        name: "flowgate_sink_retrying",
        kind: Kind::Gauge,
        labels: &[],
        help: "1 while a failed commit is being tried again (with backoff, its batch unacknowledged), else 0",
        read: |c| one(u64::from(c.sink_retrying)),
    },
    Metric {
        name: "flowgate_e2e_latency_seconds",
        kind: Kind::Gauge,
        labels: &["quantile"],
        help: "event creation (producer clock) to commit (consumer clock), over committed events, from an HDR histogram; quantile 0.5 and 0.99",
        read: |c| {
            vec![
                (vec!["0.5".into()], c.e2e_latency_ms_p50 / 1e3),
                (vec!["0.99".into()], c.e2e_latency_ms_p99 / 1e3),
            ]
        },
    },
    Metric {
        name: "flowgate_consumer_busy_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "the consumer was committing to its sink (or waiting for its rate-limited database)",
        read: |c| real(c.stage.busy_s),
    },
    Metric {
        name: "flowgate_consumer_backpressured_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "always 0: nothing downstream of the sink can hold a consumer back",
        read: |c| real(c.stage.backpressured_s),
    },
    Metric {
        name: "flowgate_consumer_idle_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "the consumer waited for deliveries",
        read: |c| real(c.stage.idle_s),
    },
];

fn rows_of<T>(table: &[Metric<T>]) -> impl Iterator<Item = Row> + '_ {
    table.iter().map(|m| Row {
        name: m.name,
        kind: m.kind,
        labels: m.labels,
        help: m.help,
    })
}

/// Every metric, in table order.
pub fn rows() -> Vec<Row> {
    rows_of(BROKER)
        .chain(rows_of(TOPIC))
        .chain(rows_of(PRODUCER))
        .chain(rows_of(CONSUMER))
        .collect()
}

/// Registers every metric's help text with the installed recorder.
pub fn describe() {
    for row in rows() {
        match row.kind {
            Kind::Counter => metrics::describe_counter!(row.name, row.help),
            Kind::Gauge => metrics::describe_gauge!(row.name, row.help),
        }
    }
}

/// Copies a document's figures into the installed recorder: counters set absolutely, gauges
/// set.
pub fn publish(snapshot: &Snapshot) {
    match snapshot {
        Snapshot::Broker(b) => {
            emit(BROKER, b);
            for t in &b.topics {
                emit(TOPIC, t);
            }
        }
        Snapshot::Producer(p) => emit(PRODUCER, p),
        Snapshot::Consumer(c) => emit(CONSUMER, c),
    }
}

fn emit<T>(table: &[Metric<T>], doc: &T) {
    for m in table {
        for (values, v) in (m.read)(doc) {
            let labels: Vec<(&'static str, String)> =
                m.labels.iter().copied().zip(values).collect();
            match m.kind {
                // Counters are whole counts of the process; the cast only drops nothing.
                Kind::Counter => metrics::counter!(m.name, &labels).absolute(v as u64),
                Kind::Gauge => metrics::gauge!(m.name, &labels).set(v),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        let rows = rows();
        let mut names: Vec<_> = rows.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), rows.len(), "a metric is listed twice");
        for r in &rows {
            assert_eq!(
                r.kind == Kind::Counter,
                r.name.ends_with("_total"),
                "{}",
                r.name
            );
        }
    }

    #[test]
    fn every_row_reads_one_value_per_label_set_from_its_document() {
        let t = TopicSnapshot {
            name: "orders".into(),
            acked: 5,
            groups: vec![
                GroupSnapshot {
                    name: "db".into(),
                    ready: 3,
                    unacked: 4,
                    ..GroupSnapshot::default()
                },
                GroupSnapshot {
                    name: "dash".into(),
                    max_lag: Some(9),
                    ..GroupSnapshot::default()
                },
            ],
            ..TopicSnapshot::default()
        };
        let lag = TOPIC
            .iter()
            .find(|m| m.name == "flowgate_group_lag")
            .unwrap();
        let label = |g: &str| vec!["orders".to_string(), g.to_string()];
        assert_eq!(
            (lag.read)(&t),
            vec![(label("db"), 7.0), (label("dash"), 0.0)]
        );
        let acked = TOPIC
            .iter()
            .find(|m| m.name == "flowgate_topic_acked_total")
            .unwrap();
        assert_eq!((acked.read)(&t), vec![(vec!["orders".to_string()], 5.0)]);
        let e2e = CONSUMER
            .iter()
            .find(|m| m.name == "flowgate_e2e_latency_seconds")
            .unwrap();
        let c = ConsumerSnapshot {
            e2e_latency_ms_p99: 250.0,
            ..ConsumerSnapshot::default()
        };
        assert_eq!((e2e.read)(&c)[1], (vec!["0.99".to_string()], 0.25));
        for m in TOPIC {
            for (labels, _) in (m.read)(&t) {
                assert_eq!(labels.len(), m.labels.len(), "{}", m.name);
            }
        }
    }
}
