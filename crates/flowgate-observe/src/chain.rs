//! A chain of stages between two samples: producer → topic 1 → stage → topic 2 → … → last
//! stage. Backpressure runs upstream from the slowest stage, so every topic before it fills and
//! every topic after it empties; the slowest stage is the one reading the last full topic (or
//! the producer, when no topic of the chain fills). A topic is full when it was full most of
//! the time it held anything. `flowgate top --chain A,B` says which, in
//! words.

use serde::Serialize;

use crate::snapshot::{BrokerSnapshot, TopicSnapshot};
use flowgate_core::StageSplit;

/// A topic counts as full when it was full (backpressured) at least this share of the time it
/// held anything: a window that includes a start or a drain, when it was empty, still shows
/// which topics fill.
const FULL: f64 = 0.5;

/// And at least this share of the whole window.
const FULL_AT_LEAST: f64 = 0.1;

/// One topic of the chain over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ChainTopic {
    /// Its name.
    pub name: String,
    /// Events accepted per second.
    pub in_per_s: f64,
    /// Share of the window it was full with a producer blocked.
    pub full: f64,
    /// Share of the window it held nothing.
    pub empty: f64,
    /// The groups reading it.
    pub groups: Vec<String>,
}

/// The chain over the window, and its slowest stage.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    /// Its topics, in the order data flows.
    pub topics: Vec<ChainTopic>,
    /// The slowest stage: `producer`, or the group(s) reading the last full topic.
    pub slowest: String,
    /// Why, in words.
    pub explanation: String,
}

/// The chain of `names` (in flow order) between two samples of the broker, `secs` apart.
/// A topic the broker does not have is named in the error.
pub fn chain(
    prev: &BrokerSnapshot,
    now: &BrokerSnapshot,
    names: &[String],
    secs: f64,
) -> Result<Chain, String> {
    let find = |b: &'_ BrokerSnapshot, n: &str| b.topics.iter().find(|t| t.name == n).cloned();
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let t_now =
            find(now, name).ok_or_else(|| format!("the broker has no topic named '{name}'"))?;
        let t_prev = find(prev, name).unwrap_or_else(|| TopicSnapshot {
            stage: t_now.stage,
            ..TopicSnapshot::default()
        });
        let window = StageSplit::from(t_now.stage).since(&StageSplit::from(t_prev.stage));
        let (_, full, empty) = window.shares();
        topics.push(ChainTopic {
            name: name.clone(),
            in_per_s: t_now.accepted.saturating_sub(t_prev.accepted) as f64 / secs.max(1e-3),
            full,
            empty,
            groups: t_now.groups.iter().map(|g| g.name.clone()).collect(),
        });
    }
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    let fills = |t: &ChainTopic| t.full >= FULL_AT_LEAST && t.full >= FULL * (1.0 - t.empty);
    let Some(k) = topics.iter().rposition(fills) else {
        let explanation = format!(
            "no topic of the chain fills ({}): the producer sets the pace",
            topics
                .iter()
                .map(|t| format!("'{}' full {}", t.name, pct(t.full)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(Chain {
            topics,
            slowest: "producer".into(),
            explanation,
        });
    };
    let t = &topics[k];
    let readers = match t.groups.as_slice() {
        [] => "nobody".to_string(),
        [one] => format!("group '{one}'"),
        many => format!(
            "groups {}",
            many.iter()
                .map(|g| format!("'{g}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let explanation = match topics.get(k + 1) {
        Some(next) => format!(
            "the slowest stage is the one reading '{}' ({readers}) and writing '{}': '{}' is full {} of the time, '{}' after it empty {}; every stage before it waits for it",
            t.name,
            next.name,
            t.name,
            pct(t.full),
            next.name,
            pct(next.empty)
        ),
        None => format!(
            "the slowest stage is the last, reading '{}' ({readers}): '{}' is full {} of the time; every stage before it waits for it",
            t.name,
            t.name,
            pct(t.full)
        ),
    };
    Ok(Chain {
        slowest: readers,
        topics,
        explanation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{GroupSnapshot, StageSeconds};

    fn broker(splits: &[(&str, &str, f64, f64)]) -> BrokerSnapshot {
        BrokerSnapshot {
            topics: splits
                .iter()
                .map(|(name, group, full, empty)| TopicSnapshot {
                    name: (*name).into(),
                    // Cumulative seconds: 10 s in all once anything was recorded.
                    stage: StageSeconds {
                        busy_s: if full + empty > 0.0 {
                            10.0 - full - empty
                        } else {
                            0.0
                        },
                        backpressured_s: *full,
                        idle_s: *empty,
                    },
                    groups: vec![GroupSnapshot {
                        name: (*group).into(),
                        ..GroupSnapshot::default()
                    }],
                    ..TopicSnapshot::default()
                })
                .collect(),
            ..BrokerSnapshot::default()
        }
    }

    fn names() -> Vec<String> {
        vec!["raw".into(), "enriched".into()]
    }

    #[test]
    fn a_full_topic_before_an_empty_one_names_the_stage_between() {
        let prev = broker(&[("raw", "enrich", 0.0, 0.0), ("enriched", "db", 0.0, 0.0)]);
        let now = broker(&[("raw", "enrich", 9.0, 0.0), ("enriched", "db", 0.0, 8.0)]);
        let c = chain(&prev, &now, &names(), 10.0).unwrap();
        assert_eq!(c.slowest, "group 'enrich'");
        assert!(
            c.explanation.starts_with("the slowest stage is the one reading 'raw' (group 'enrich') and writing 'enriched': 'raw' is full 90%"),
            "{}",
            c.explanation
        );
    }

    #[test]
    fn every_topic_full_names_the_last_stage_and_none_the_producer() {
        let prev = broker(&[("raw", "enrich", 0.0, 0.0), ("enriched", "db", 0.0, 0.0)]);
        let now = broker(&[("raw", "enrich", 9.0, 0.0), ("enriched", "db", 9.5, 0.0)]);
        let c = chain(&prev, &now, &names(), 10.0).unwrap();
        assert_eq!(c.slowest, "group 'db'");
        assert!(
            c.explanation.contains("the last, reading 'enriched'"),
            "{}",
            c.explanation
        );
        let now = broker(&[("raw", "enrich", 1.0, 5.0), ("enriched", "db", 0.0, 9.0)]);
        let c = chain(&prev, &now, &names(), 10.0).unwrap();
        assert_eq!(c.slowest, "producer");
        let err = chain(&prev, &now, &["nope".to_string()], 10.0).unwrap_err();
        assert_eq!(err, "the broker has no topic named 'nope'");
    }
}
