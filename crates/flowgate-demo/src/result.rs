//! The measured outcome of one mode's run: the figures for the summary and the `--json` file,
//! each taken from the pipeline's samples or from the database file, never from the flags.

use serde::Serialize;

use super::mode::Mode;
use super::sample::{Phase, Sample};
use super::supervisor::RunConfig;

/// One mode's measured result. Field names are the `--json` schema.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunResult {
    /// The mode that ran.
    pub mode: &'static str,
    /// Seconds the pipeline ran, until it finished or died.
    pub duration_s: f64,
    /// Events the producer handed to the queue.
    pub produced: u64,
    /// Rows in the database table after the run (counted from the file).
    pub committed: u64,
    /// Events dropped by the queue's overflow policy (counted).
    pub dropped: u64,
    /// Produced events that are neither committed nor counted as dropped: they died with the
    /// process (in its queue or in flight). A lower bound when the process crashed, since its
    /// last sample is up to 100 ms old.
    pub lost: u64,
    /// Events still queued at the end (when the process died, or the drain deadline passed).
    pub queued: u64,
    /// The most events queued at once.
    pub peak_queue_depth: u64,
    /// The most bytes queued at once.
    pub peak_queue_bytes: u64,
    /// The highest resident set size of the pipeline process.
    pub peak_rss_bytes: u64,
    /// Resident set size at the end of the producing phase (or at the last sample).
    pub final_rss_bytes: u64,
    /// RSS growth from the end of warm-up (a quarter of the producing time) to the end of the
    /// producing phase: near zero when memory is flat. Negative when it shrank.
    pub rss_growth_after_warmup_bytes: i64,
    /// Whether the pipeline process died instead of finishing.
    pub crashed: bool,
    /// When it died, in seconds since it started.
    pub crashed_at_s: Option<f64>,
    /// How it died, in words.
    pub crash_reason: Option<String>,
    /// Share of its running time the producer spent waiting for credit.
    pub producer_wait_ratio: f64,
    /// Events produced per second of producing time, start-up fill of the queue included.
    pub producer_rate: f64,
    /// Events produced per second over the second half of the producing time: the pace the
    /// feedback loop holds the producer to once the queue has filled.
    pub producer_rate_steady: f64,
    /// Rows committed per second of run time.
    pub committed_rate: f64,
    /// Median creation-to-commit latency.
    pub latency_ms_p50: f64,
    /// 99th-percentile creation-to-commit latency.
    pub latency_ms_p99: f64,
    /// The memory limit the pipeline ran under, and how it was enforced.
    pub memory_limit_bytes: u64,
    /// How the limit was enforced.
    pub memory_limit_mechanism: &'static str,
    /// The database file and table holding the committed rows.
    pub db: String,
    /// The table in `db`.
    pub table: String,
    /// The samples, for the report's charts; not in the JSON file.
    #[serde(skip)]
    pub history: Vec<Sample>,
}

impl RunResult {
    /// Builds the result from the last sample, the row count and how the run ended.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_run(
        mode: Mode,
        config: &RunConfig,
        last: &Sample,
        history: Vec<Sample>,
        committed: u64,
        peak_rss: u64,
        crash: Option<(String, f64)>,
        mechanism: &'static str,
    ) -> Self {
        let duration_s = crash.as_ref().map_or(last.t, |(_, at)| *at);
        let running: Vec<&Sample> = history
            .iter()
            .filter(|s| s.phase == Phase::Running)
            .collect();
        let final_rss_bytes = running.last().map_or(last.rss_bytes, |s| s.rss_bytes);
        let warm_at = running.last().map_or(0.0, |s| s.t) / 4.0;
        let warm_rss = running
            .iter()
            .find(|s| s.t >= warm_at)
            .map_or(final_rss_bytes, |s| s.rss_bytes);
        let points: Vec<(f64, f64)> = running.iter().map(|s| (s.t, s.produced as f64)).collect();
        let steady = flowgate_observe::fit::second_half_slope(&points);
        let growth = i64::try_from(final_rss_bytes).unwrap_or(i64::MAX)
            - i64::try_from(warm_rss).unwrap_or(i64::MAX);
        RunResult {
            mode: mode.name(),
            duration_s,
            produced: last.produced,
            committed,
            dropped: last.dropped,
            lost: last
                .produced
                .saturating_sub(committed)
                .saturating_sub(last.dropped),
            queued: last.queued,
            peak_queue_depth: last.peak_queue_depth,
            peak_queue_bytes: last.peak_queue_bytes,
            peak_rss_bytes: peak_rss,
            final_rss_bytes,
            rss_growth_after_warmup_bytes: growth,
            crashed: crash.is_some(),
            crashed_at_s: crash.as_ref().map(|(_, at)| *at),
            crash_reason: crash.map(|(why, _)| why),
            producer_wait_ratio: last.producer_wait_ratio(),
            producer_rate: if last.producer_active_s > 0.0 {
                last.produced as f64 / last.producer_active_s
            } else {
                0.0
            },
            committed_rate: if duration_s > 0.0 {
                committed as f64 / duration_s
            } else {
                0.0
            },
            producer_rate_steady: steady.unwrap_or(0.0),
            latency_ms_p50: last.latency_ms_p50,
            latency_ms_p99: last.latency_ms_p99,
            memory_limit_bytes: config.memory_limit,
            memory_limit_mechanism: mechanism,
            db: config.db.arg(),
            table: mode.table(),
            history,
        }
    }
}
