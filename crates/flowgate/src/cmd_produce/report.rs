//! What `flowgate produce` reports: its `/stats` document while it runs, a progress line a
//! second, and the `--json` summary at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowgate_client::{Monitor, ProducerStats, Publish};
use flowgate_observe::ProducerSnapshot;
use serde::Serialize;
use tracing::info;

/// The `/stats` document: the producer's own counters now (a wait for credit in progress
/// included) and the time it spent sleeping for its rate (idle: nothing to send yet).
pub(super) fn snapshot(
    monitor: &Monitor<ProducerStats>,
    slept_ns: &AtomicU64,
    started: Instant,
    producer_id: u64,
) -> ProducerSnapshot {
    let stats = monitor.stats();
    let slept = Duration::from_nanos(slept_ns.load(Ordering::Relaxed));
    let elapsed = started.elapsed();
    let stage = flowgate_core::StageSplit {
        busy: elapsed.saturating_sub(stats.waited).saturating_sub(slept),
        backpressured: stats.waited,
        idle: slept,
    };
    ProducerSnapshot {
        producer_id: format!("{producer_id:016x}"),
        uptime_s: elapsed.as_secs_f64(),
        sent: stats.sent,
        confirmed_seq: stats.confirmed_seq,
        stage: stage.into(),
    }
}

/// The `--json` summary.
#[derive(Debug, Serialize)]
pub(super) struct ProduceSummary {
    pub producer_id: String,
    pub sent: u64,
    pub confirmed_seq: u64,
    pub first_seq: u64,
    pub rejected_lines: u64,
    pub duration_s: f64,
    pub rate: f64,
    /// Events per second over the second half of the producing time (after the broker's
    /// initial free space was used up): the pace the feedback loop held the producer to.
    pub rate_steady: f64,
    pub waited_s: f64,
    pub wait_ratio: f64,
    pub sessions: u64,
    pub resent: u64,
    /// Events the broker refused (a full topic whose policy is reject): not stored.
    pub refused: u64,
}

impl ProduceSummary {
    /// The summary of a run that produced for `producing`; logs its line.
    pub(super) fn new(
        pid: u64,
        stats: &ProducerStats,
        producing: Duration,
        first_seq: u64,
        rejected_lines: u64,
        pace: &[(f64, f64)],
    ) -> ProduceSummary {
        let secs = producing.as_secs_f64().max(1e-9);
        let summary = ProduceSummary {
            producer_id: format!("{pid:016x}"),
            sent: stats.sent,
            confirmed_seq: stats.confirmed_seq,
            first_seq,
            rejected_lines,
            duration_s: producing.as_secs_f64(),
            rate: stats.sent as f64 / secs,
            rate_steady: flowgate_observe::fit::second_half_slope(pace).unwrap_or(0.0),
            waited_s: stats.waited.as_secs_f64(),
            wait_ratio: (stats.waited.as_secs_f64() / secs).min(1.0),
            sessions: stats.sessions,
            resent: stats.resent,
            refused: stats.refused,
        };
        info!(
            "sent {} events in {:.1} s ({:.0}/s, {:.0}/s in the second half), confirmed up to seq {}, {} refused, waited for credit {:.0}% of the time, {} session(s)",
            summary.sent,
            summary.duration_s,
            summary.rate,
            summary.rate_steady,
            summary.confirmed_seq,
            summary.refused,
            summary.wait_ratio * 100.0,
            summary.sessions
        );
        summary
    }
}

/// One progress line per second.
pub(super) struct Progress {
    last: Instant,
    last_sent: u64,
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress {
            last: Instant::now(),
            last_sent: 0,
        }
    }

    pub(super) fn tick(&mut self, producer: &impl Publish, started: Instant) {
        if self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        let stats = producer.stats();
        let rate = (stats.sent - self.last_sent) as f64 / self.last.elapsed().as_secs_f64();
        info!(
            "{:>6.1}s sent {:>9} ({rate:>7.0}/s) confirmed {:>9} credit {} waited {:.0}%",
            started.elapsed().as_secs_f64(),
            stats.sent,
            stats.confirmed_seq,
            producer.credit().events,
            stats.waited.as_secs_f64() / started.elapsed().as_secs_f64() * 100.0
        );
        self.last = Instant::now();
        self.last_sent = stats.sent;
    }
}
