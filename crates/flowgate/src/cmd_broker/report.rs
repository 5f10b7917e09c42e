//! What the broker reports: its lines at start, a line per topic every interval, its `/stats`
//! document, and the `--json` summary at exit.

use std::net::SocketAddr;
use std::time::Instant;

use flowgate_broker::{BrokerStats, RecoveryReport};
use flowgate_observe::units::{human_bytes, thousands};
use flowgate_observe::{BrokerSnapshot, DeadLetterSnapshot, TopicSnapshot, procfs};
use serde::Serialize;
use tracing::info;

use super::{BrokerArgs, StorageKind};

/// Logs how the broker is set up and what it recovered.
pub(super) fn started(
    args: &BrokerArgs,
    promise: &str,
    tokens_required: bool,
    recovery: &RecoveryReport,
) {
    info!("storage {promise}");
    info!(
        "{}; {}",
        match (&args.tls_cert, &args.tls_client_ca) {
            (None, _) => "plain TCP (no TLS)",
            (Some(_), None) => "TLS required",
            (Some(_), Some(_)) => "TLS with client certificates required",
        },
        if tokens_required {
            "every client needs a token"
        } else {
            "open: no tokens declared"
        }
    );
    if let Some(dir) = &args.data_dir {
        info!(
            "recovered {} events in {} topic(s) from {} in {:.1} ms ({} in memory, {} left on disk); {} corrupt records cut ({})",
            thousands(recovery.events + recovery.spilled),
            recovery.topics,
            dir.display(),
            recovery.took.as_secs_f64() * 1e3,
            thousands(recovery.events),
            thousands(recovery.spilled),
            recovery.corrupt_records,
            human_bytes(recovery.truncated_bytes)
        );
    }
}

/// The `--json` summary.
#[derive(Debug, Serialize)]
pub(super) struct Summary {
    listen: String,
    duration_s: f64,
    connections_accepted: u64,
    errors_sent: std::collections::BTreeMap<&'static str, u64>,
    peak_rss_bytes: u64,
    /// RSS once a second, for judging whether memory stayed flat.
    rss_samples: Vec<u64>,
    storage: &'static str,
    recovery: RecoverySummary,
    topics: Vec<TopicSnapshot>,
}

#[derive(Debug, Serialize)]
struct RecoverySummary {
    topics: usize,
    events: u64,
    spilled: u64,
    corrupt_records: u64,
    truncated_bytes: u64,
    took_ms: f64,
}

/// The summary at exit.
pub(super) fn summary(
    args: &BrokerArgs,
    addr: SocketAddr,
    started: Instant,
    stats: &BrokerStats,
    recovery: &RecoveryReport,
    rss_samples: Vec<u64>,
) -> Summary {
    Summary {
        listen: addr.to_string(),
        duration_s: started.elapsed().as_secs_f64(),
        connections_accepted: stats.connections_accepted,
        errors_sent: stats.errors_sent.clone(),
        peak_rss_bytes: procfs::own_rss().peak,
        rss_samples,
        storage: match args.storage {
            StorageKind::Memory => "memory",
            StorageKind::Disk => "disk",
        },
        recovery: RecoverySummary {
            topics: recovery.topics,
            events: recovery.events,
            spilled: recovery.spilled,
            corrupt_records: recovery.corrupt_records,
            truncated_bytes: recovery.truncated_bytes,
            took_ms: recovery.took.as_secs_f64() * 1e3,
        },
        topics: snapshot(stats, started).topics,
    }
}

/// The `/stats` document: every figure read from the broker's counters now.
pub(super) fn snapshot(stats: &BrokerStats, started: Instant) -> BrokerSnapshot {
    BrokerSnapshot {
        uptime_s: started.elapsed().as_secs_f64(),
        connections_open: stats.connections_open,
        connections_accepted: stats.connections_accepted,
        errors_sent: stats
            .errors_sent
            .iter()
            .map(|(code, n)| ((*code).to_string(), *n))
            .collect(),
        rss_bytes: procfs::own_rss().now,
        memory_budget_bytes: stats.memory.map_or(0, |m| m.budget),
        memory_pool_bytes: stats.memory.map_or(0, |m| m.pool),
        topics: stats
            .topics
            .iter()
            .zip(&stats.stages)
            .zip(&stats.groups)
            .map(|(((name, t), (_, stage)), (_, groups))| TopicSnapshot {
                storage_failure: stats.storage_failures.get(name).cloned(),
                dead_letters: stats
                    .dead_letters
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|d| DeadLetterSnapshot {
                        group: d.group.clone(),
                        id: d.id.to_string(),
                        created_us: d.created_us,
                        age_ms: d.age.as_millis() as u64,
                        bytes: d.bytes,
                    })
                    .collect(),
                ..TopicSnapshot::new(name, t, groups, *stage)
            })
            .collect(),
    }
}

pub(super) fn log_stats(
    started: Instant,
    now: &BrokerStats,
    last: Option<&(Instant, BrokerStats)>,
    rss: u64,
) {
    let elapsed = started.elapsed().as_secs_f64();
    for (name, t) in &now.topics {
        let (accepted_rate, acked_rate) = last
            .and_then(|(at, prev)| {
                let (_, p) = prev.topics.iter().find(|(n, _)| n == name)?;
                let dt = at.elapsed().as_secs_f64().max(1e-3);
                Some((
                    (t.accepted - p.accepted) as f64 / dt,
                    (t.acked - p.acked) as f64 / dt,
                ))
            })
            .unwrap_or((0.0, 0.0));
        // With several groups, each one's lag (and skips): which of them holds the topic.
        let groups = now
            .groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, g)| g.as_slice())
            .unwrap_or_default();
        let groups: String = if groups.len() > 1 {
            groups
                .iter()
                .map(|g| {
                    let lag = g.ready + g.unacked;
                    match g.skipped {
                        0 => format!(" {}:lag {lag}", g.name),
                        n => format!(" {}:lag {lag} skipped {n}", g.name),
                    }
                })
                .collect()
        } else {
            String::new()
        };
        info!(
            "{elapsed:>6.1}s topic {name}: in {accepted_rate:>8.0}/s out {acked_rate:>8.0}/s ready {:>7} ({:>10}) unacked {:>6} conns {:>3} rss {}{groups}",
            t.ready,
            human_bytes(t.ready_bytes),
            t.unacked,
            now.connections_open,
            human_bytes(rss),
        );
    }
}
