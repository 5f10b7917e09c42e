//! What a pipeline did between two samples of its processes' `/stats`: each stage's rate from
//! counter differences, its time split from clock differences, and the bottleneck named from
//! the splits (core's `bottleneck`). `flowgate top` samples, this module compares.

use std::time::Instant;

use flowgate_core::{PipelineView, StageSplit, bottleneck};
use serde::Serialize;

use crate::forecast::Forecast;
use crate::snapshot::{
    BrokerSnapshot, ConsumerSnapshot, GroupSnapshot, ProducerSnapshot, StageSeconds, TopicSnapshot,
};
use crate::units::human_bytes;

/// Every reachable process's document at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// The broker's.
    pub broker: BrokerSnapshot,
    /// The producer's, if it is watched.
    pub producer: Option<ProducerSnapshot>,
    /// The consumer's, if it is watched.
    pub consumer: Option<ConsumerSnapshot>,
}

/// One window's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// The topic shown.
    pub topic: String,
    /// The window's length.
    pub seconds: f64,
    /// Events accepted per second.
    pub produced_per_s: f64,
    /// Events the consumer committed per second, if it is watched.
    pub committed_per_s: Option<f64>,
    /// Events acknowledged per second.
    pub acked_per_s: f64,
    /// Events ready at the end.
    pub ready: u64,
    /// Their bytes.
    pub ready_bytes: u64,
    /// Events unacknowledged at the end.
    pub unacked: u64,
    /// The topic's split over the window.
    pub topic_stage: Shares,
    /// The producer's, if it is watched.
    pub producer_stage: Option<Shares>,
    /// The consumer's, if it is watched.
    pub consumer_stage: Option<Shares>,
    /// Each consumer group's figures, in the order the groups appeared.
    pub groups: Vec<GroupRate>,
    /// When the topic fills or drains, how large it must be, whether more consumers would
    /// help (none before the topic's first sample).
    pub forecast: Option<Forecast>,
    /// The limiting stage's name.
    pub bottleneck: &'static str,
    /// Why, in words.
    pub explanation: String,
}

/// One consumer group over a window.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRate {
    /// The group's name.
    pub name: String,
    /// Best effort with this max lag; `None`: blocking.
    pub max_lag: Option<u64>,
    /// Consumers attached at the end.
    pub consumers: u64,
    /// Events it acknowledged per second.
    pub acked_per_s: f64,
    /// Events it skipped per second (best effort).
    pub skipped_per_s: f64,
    /// What it has not acked at the end: unread and unsettled.
    pub lag: u64,
}

impl GroupRate {
    /// A group between two samples `secs` apart (`prev`: none if it had not appeared).
    pub fn between(prev: Option<&GroupSnapshot>, now: &GroupSnapshot, secs: f64) -> GroupRate {
        let rate =
            |f: fn(&GroupSnapshot) -> u64| f(now).saturating_sub(prev.map_or(0, f)) as f64 / secs;
        GroupRate {
            name: now.name.clone(),
            max_lag: now.max_lag,
            consumers: now.consumers,
            acked_per_s: rate(|g| g.acked),
            skipped_per_s: rate(|g| g.skipped),
            lag: now.lag(),
        }
    }

    /// One line: its mode, rate and lag.
    pub fn text(&self) -> String {
        let mode = self.max_lag.map_or("blocking".to_string(), |n| {
            format!("best effort, max lag {n}")
        });
        let skipped = if self.skipped_per_s > 0.0 {
            format!(", skipping {:.0}/s", self.skipped_per_s)
        } else {
            String::new()
        };
        let consumers = match self.consumers {
            1 => "1 consumer".to_string(),
            n => format!("{n} consumers"),
        };
        format!(
            "group {} ({mode}, {consumers}): acking {:.0}/s, lag {}{skipped}",
            self.name, self.acked_per_s, self.lag
        )
    }
}

/// The blocking group that holds the topic back: the one with the most not acked, and of
/// those the slowest.
fn slowest_blocking(groups: &[GroupRate]) -> Option<&GroupRate> {
    groups
        .iter()
        .filter(|g| g.max_lag.is_none())
        .max_by(|a, b| {
            a.lag
                .cmp(&b.lag)
                .then(b.acked_per_s.total_cmp(&a.acked_per_s))
        })
}

/// A stage split as shares of the window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shares {
    /// Share of time busy.
    pub busy: f64,
    /// Share of time backpressured.
    pub backpressured: f64,
    /// Share of time idle.
    pub idle: f64,
}

impl From<StageSplit> for Shares {
    fn from(s: StageSplit) -> Self {
        let (busy, backpressured, idle) = s.shares();
        Shares {
            busy,
            backpressured,
            idle,
        }
    }
}

/// The topic asked for does not exist (or the broker has none).
#[derive(Debug, thiserror::Error)]
#[error("the broker has no topic{}", .0.as_ref().map(|t| format!(" named '{t}'")).unwrap_or_default())]
pub struct NoTopic(pub Option<String>);

fn topic_of<'a>(broker: &'a BrokerSnapshot, name: Option<&str>) -> Option<&'a TopicSnapshot> {
    match name {
        Some(n) => broker.topics.iter().find(|t| t.name == n),
        None => broker.topics.iter().max_by_key(|t| t.accepted),
    }
}

fn delta(prev: Option<StageSeconds>, now: Option<StageSeconds>) -> Option<StageSplit> {
    Some(StageSplit::from(now?).since(&StageSplit::from(prev?)))
}

/// The figures between two samples, for `topic` (the busiest if `None`).
pub fn window(prev: &Sample, now: &Sample, topic: Option<&str>) -> Result<Window, NoTopic> {
    let t_now = topic_of(&now.broker, topic).ok_or_else(|| NoTopic(topic.map(str::to_string)))?;
    let t_prev = topic_of(&prev.broker, Some(&t_now.name));
    let secs = now.at.duration_since(prev.at).as_secs_f64().max(1e-3);
    let rate =
        |f: fn(&TopicSnapshot) -> u64| f(t_now).saturating_sub(t_prev.map_or(0, f)) as f64 / secs;
    let view = PipelineView {
        producer: delta(
            prev.producer.as_ref().map(|p| p.stage),
            now.producer.as_ref().map(|p| p.stage),
        ),
        topic: delta(t_prev.map(|t| t.stage), Some(t_now.stage)).unwrap_or_default(),
        consumer: delta(
            prev.consumer.as_ref().map(|c| c.stage),
            now.consumer.as_ref().map(|c| c.stage),
        ),
    };
    let (limit, mut explanation) = bottleneck(&view);
    let groups: Vec<GroupRate> = t_now
        .groups
        .iter()
        .map(|g| {
            let before = t_prev.and_then(|t| t.groups.iter().find(|p| p.name == g.name));
            GroupRate::between(before, g, secs)
        })
        .collect();
    if groups.len() > 1
        && limit.name() == "sink"
        && let Some(slow) = slowest_blocking(&groups)
    {
        if !explanation.ends_with('.') {
            explanation.push('.');
        }
        explanation.push_str(&format!(
            " Of the topic's {} groups, '{}' holds it back: it acks {:.0}/s and has {} events not acked; a best-effort group (--max-lag) would not.",
            groups.len(),
            slow.name,
            slow.acked_per_s,
            slow.lag
        ));
    }
    let committed_per_s = match (&prev.consumer, &now.consumer) {
        (Some(p), Some(n)) => Some(n.committed.saturating_sub(p.committed) as f64 / secs),
        _ => None,
    };
    Ok(Window {
        topic: t_now.name.clone(),
        seconds: secs,
        produced_per_s: rate(|t| t.accepted),
        committed_per_s,
        acked_per_s: rate(|t| t.acked),
        ready: t_now.ready,
        ready_bytes: t_now.ready_bytes,
        unacked: t_now.unacked,
        topic_stage: view.topic.into(),
        producer_stage: view.producer.map(Shares::from),
        consumer_stage: view.consumer.map(Shares::from),
        groups,
        forecast: t_prev.map(|p| {
            // The producer's own split, when watched, says best how long it waited for
            // credit; else the topic's, which counts from the broker's side.
            let split = view.producer.unwrap_or(view.topic);
            let (_, backpressured, _) = split.shares();
            Forecast::between(p, t_now, secs, backpressured)
        }),
        bottleneck: limit.name(),
        explanation,
    })
}

impl Window {
    /// The window as text, for a log or a terminal without a screen.
    pub fn text(&self) -> String {
        let pct = |x: f64| format!("{:>3.0}%", x * 100.0);
        let stage = |s: Option<Shares>| {
            s.map_or("—".to_string(), |s| {
                format!(
                    "busy {} backpressured {} idle {}",
                    pct(s.busy),
                    pct(s.backpressured),
                    pct(s.idle)
                )
            })
        };
        let groups: String = self
            .groups
            .iter()
            .map(|g| format!("\n  {}", g.text()))
            .collect();
        let forecast: String = self
            .forecast
            .iter()
            .flat_map(|f| f.text(&self.topic))
            .map(|line| format!("\n  forecast: {line}"))
            .collect();
        format!(
            "topic {}: in {:.0}/s out {:.0}/s ready {} ({}) unacked {}\n  producer: {}\n  topic:    full {} empty {}\n  consumer: {}{}{groups}\n  => {}{forecast}",
            self.topic,
            self.produced_per_s,
            self.acked_per_s,
            self.ready,
            human_bytes(self.ready_bytes),
            self.unacked,
            stage(self.producer_stage),
            pct(self.topic_stage.backpressured),
            pct(self.topic_stage.idle),
            stage(self.consumer_stage),
            self.committed_per_s
                .map(|c| format!(" (committing {c:.0}/s)"))
                .unwrap_or_default(),
            self.explanation
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(at: Instant, accepted: u64, idle: f64, waiting: f64) -> Sample {
        Sample {
            at,
            broker: BrokerSnapshot {
                topics: vec![TopicSnapshot {
                    name: "t".into(),
                    accepted,
                    acked: accepted,
                    stage: StageSeconds {
                        busy_s: 0.0,
                        backpressured_s: waiting,
                        idle_s: idle,
                    },
                    ..TopicSnapshot::default()
                }],
                ..BrokerSnapshot::default()
            },
            producer: None,
            consumer: None,
        }
    }

    #[test]
    fn a_window_reads_rates_and_splits_from_differences() {
        let t0 = Instant::now();
        let w = window(
            &sample(t0, 100, 5.0, 1.0),
            &sample(t0 + Duration::from_secs(2), 300, 5.2, 2.8),
            None,
        )
        .unwrap();
        assert!((w.produced_per_s - 100.0).abs() < 1e-6);
        assert!((w.topic_stage.backpressured - 0.9).abs() < 1e-6);
        assert_eq!(w.bottleneck, "sink");
    }

    #[test]
    fn with_several_groups_the_slowest_blocking_one_is_named() {
        let t0 = Instant::now();
        let with_groups = |mut s: Sample, acked: [u64; 3]| {
            let group = |name: &str, max_lag, acked, ready| GroupSnapshot {
                name: name.into(),
                max_lag,
                consumers: 1,
                acked,
                ready,
                ..GroupSnapshot::default()
            };
            s.broker.topics[0].groups = vec![
                group("db", None, acked[0], 2),
                group("audit", None, acked[1], 200),
                group("dash", Some(50), acked[2], 50),
            ];
            s
        };
        let w = window(
            &with_groups(sample(t0, 100, 5.0, 1.0), [0, 0, 0]),
            &with_groups(
                sample(t0 + Duration::from_secs(2), 300, 5.2, 2.8),
                [2000, 400, 100],
            ),
            None,
        )
        .unwrap();
        assert!(
            w.explanation
                .contains("'audit' holds it back: it acks 200/s and has 200 events not acked"),
            "{}",
            w.explanation
        );
        let text = w.text();
        assert!(
            text.contains("group dash (best effort, max lag 50, 1 consumer): acking 50/s, lag 50"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_topic_is_an_error_naming_it() {
        let t0 = Instant::now();
        let s = sample(t0, 0, 0.0, 0.0);
        let err = window(&s, &sample(t0, 0, 0.0, 0.0), Some("orders")).unwrap_err();
        assert_eq!(err.to_string(), "the broker has no topic named 'orders'");
    }
}
