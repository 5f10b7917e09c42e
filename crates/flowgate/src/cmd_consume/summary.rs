//! What `flowgate consume` reports: its `/stats` document while it runs, a progress line a
//! second, and the `--json` summary at the end.

use std::time::{Duration, Instant};

use flowgate_client::{ConsumerStats, Monitor, ProducerStats};
use flowgate_core::StageSplit;
use flowgate_observe::{ConsumerSnapshot, StageSeconds};
use flowgate_sink::DriverStats;
use serde::Serialize;
use tracing::info;

/// The summary so far, shared with the `/stats` endpoint (updated after every commit).
pub(super) type SharedLive = std::sync::Arc<std::sync::Mutex<ConsumeSummary>>;

/// How a consumer's time splits: idle while it waits for deliveries, backpressured while a
/// stage's next topic makes it wait for credit (`downstream`; nothing holds a database sink
/// back), busy the rest (committing, or waiting for its rate-limited database).
pub(super) fn split(elapsed: Duration, waited: Duration, downstream: Duration) -> StageSplit {
    StageSplit {
        busy: elapsed.saturating_sub(waited).saturating_sub(downstream),
        backpressured: downstream,
        idle: waited,
    }
}

/// The `/stats` document now; `downstream` is a stage's next-topic producer.
pub(super) fn snapshot(
    live: &SharedLive,
    monitor: &Monitor<ConsumerStats>,
    downstream: Option<&Monitor<ProducerStats>>,
    started: Instant,
) -> ConsumerSnapshot {
    let l = live.lock().map(|l| l.clone()).unwrap_or_default();
    let waited = monitor.stats().waited;
    let held_back = downstream.map_or(Duration::ZERO, |m| m.stats().waited);
    let stage = split(started.elapsed(), waited, held_back);
    ConsumerSnapshot {
        uptime_s: started.elapsed().as_secs_f64(),
        received: l.driver.received,
        committed: l.driver.committed,
        dead_lettered: l.driver.dead_lettered,
        retried: l.driver.retried,
        batch_limit: l.driver.batch_limit,
        commit_latency_ms_p99: l.driver.commit_latency_ms_p99,
        commit_failures: l.driver.commit_failures,
        sink_retrying: l.driver.retrying,
        e2e_latency_ms_p50: l.driver.e2e_latency_ms_p50,
        e2e_latency_ms_p99: l.driver.e2e_latency_ms_p99,
        stage: stage.into(),
    }
}

/// The `--json` summary: the driver's figures and the connection's.
#[derive(Debug, Serialize, Default, Clone)]
pub(super) struct ConsumeSummary {
    #[serde(flatten)]
    pub driver: DriverStats,
    pub redelivered: u64,
    pub duration_s: f64,
    /// Committed events per second between the first delivery and the last commit (idle
    /// time before and after excluded).
    pub rate: f64,
    pub sessions: u64,
    /// Events per commit on average.
    pub mean_batch: f64,
    /// The consumer's time split over the run (see [`split`]).
    pub stage: StageSeconds,
}

impl ConsumeSummary {
    /// Takes the driver's figures.
    pub(super) fn record(&mut self, driver: DriverStats) {
        self.rate = driver.rate();
        self.mean_batch = driver.mean_batch();
        self.driver = driver;
    }

    /// The line logged once a second.
    pub(super) fn log_progress(&self, started: Instant, committed_before: u64, over: Duration) {
        let d = &self.driver;
        let rate = (d.committed - committed_before) as f64 / over.as_secs_f64();
        info!(
            "{:>6.1}s committed {:>9} ({rate:>7.0}/s) batch limit {:>6} commit p99 {:>6.1} ms dead letters {} failed commits retried {}",
            started.elapsed().as_secs_f64(),
            d.committed,
            d.batch_limit,
            d.commit_latency_ms_p99,
            d.dead_lettered,
            d.commit_failures
        );
    }

    /// Adds the connection's figures (and a stage's time waiting on its next topic) and logs
    /// the last line.
    pub(super) fn finish(&mut self, started: Instant, stats: &ConsumerStats, downstream: Duration) {
        self.duration_s = started.elapsed().as_secs_f64();
        self.stage = split(started.elapsed(), stats.waited, downstream).into();
        self.redelivered = stats.redelivered;
        self.sessions = stats.sessions;
        let d = &self.driver;
        info!(
            "committed {} events in {:.1} s ({:.0}/s); {} already present, {} redelivered, {} retried, {} dead-lettered; commit p99 {:.1} ms",
            d.committed,
            self.duration_s,
            self.rate,
            d.already_present,
            self.redelivered,
            d.retried,
            d.dead_lettered,
            d.commit_latency_ms_p99
        );
    }
}
