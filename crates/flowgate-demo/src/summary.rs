//! Renders the end-of-run summary: one column per mode, one row per measured figure, then a
//! sentence per mode saying what happened. Pure: results in, text out.

use super::result::RunResult;
use flowgate_observe::units::{human_bytes, thousands};

/// A row of the table: its label and how to render one run's cell.
type Row = (&'static str, Box<dyn Fn(&RunResult) -> String>);

/// The summary table and verdicts for these runs.
pub(crate) fn render(runs: &[RunResult], consumer_rate: u64) -> String {
    let rows: Vec<Row> = vec![
        ("ran for", Box::new(|r| format!("{:.1} s", r.duration_s))),
        (
            "outcome",
            Box::new(|r| {
                if r.crashed {
                    "CRASHED".into()
                } else {
                    "finished".into()
                }
            }),
        ),
        ("produced", Box::new(|r| thousands(r.produced))),
        (
            "committed (rows in db)",
            Box::new(|r| thousands(r.committed)),
        ),
        ("dropped by policy", Box::new(|r| thousands(r.dropped))),
        ("lost", Box::new(|r| thousands(r.lost))),
        (
            "producer rate",
            Box::new(|r| format!("{}/s", thousands(r.producer_rate.round() as u64))),
        ),
        (
            "producer rate, 2nd half",
            Box::new(|r| format!("{}/s", thousands(r.producer_rate_steady.round() as u64))),
        ),
        (
            "commit rate",
            Box::new(|r| format!("{}/s", thousands(r.committed_rate.round() as u64))),
        ),
        (
            "producer waiting",
            Box::new(|r| format!("{:.0}%", r.producer_wait_ratio * 100.0)),
        ),
        (
            "peak queue depth",
            Box::new(|r| thousands(r.peak_queue_depth)),
        ),
        (
            "peak queue bytes",
            Box::new(|r| human_bytes(r.peak_queue_bytes)),
        ),
        ("peak RSS", Box::new(|r| human_bytes(r.peak_rss_bytes))),
        (
            "RSS growth after warm-up",
            Box::new(|r| signed_bytes(r.rss_growth_after_warmup_bytes)),
        ),
        (
            "latency p50",
            Box::new(|r| format!("{:.0} ms", r.latency_ms_p50)),
        ),
        (
            "latency p99",
            Box::new(|r| format!("{:.0} ms", r.latency_ms_p99)),
        ),
    ];
    let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(_, f)| runs.iter().map(f).collect())
        .collect();
    let col_width: Vec<usize> = (0..runs.len())
        .map(|i| {
            cells
                .iter()
                .map(|row| row[i].len())
                .chain([runs[i].mode.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    let mut out = String::new();
    out.push_str(&format!("{:label_width$}", ""));
    for (r, w) in runs.iter().zip(&col_width) {
        out.push_str(&format!("  {:>w$}", r.mode));
    }
    out.push('\n');
    out.push_str(&"-".repeat(label_width + col_width.iter().map(|w| w + 2).sum::<usize>()));
    out.push('\n');
    for ((label, _), row) in rows.iter().zip(&cells) {
        out.push_str(&format!("{label:label_width$}"));
        for (cell, w) in row.iter().zip(&col_width) {
            out.push_str(&format!("  {cell:>w$}"));
        }
        out.push('\n');
    }
    out.push('\n');
    for r in runs {
        out.push_str(&verdict(r, consumer_rate));
        out.push('\n');
    }
    out
}

/// One sentence on what happened in a run.
fn verdict(r: &RunResult, consumer_rate: u64) -> String {
    if r.crashed {
        return format!(
            "{}: crashed after {:.1} s, {}, with {} events in its queue ({}); {} produced events died with it.",
            r.mode,
            r.crashed_at_s.unwrap_or(r.duration_s),
            r.crash_reason.as_deref().unwrap_or("reason unknown"),
            thousands(r.queued),
            human_bytes(r.peak_queue_bytes),
            thousands(r.lost),
        );
    }
    let held = (r.producer_rate_steady - consumer_rate as f64) / consumer_rate as f64 * 100.0;
    format!(
        "{}: ran {:.1} s; producer held at {}/s in the second half ({:+.1}% of the consumer's {}/s), peak queue {} events, peak RSS {}; {} dropped, {} lost.",
        r.mode,
        r.duration_s,
        thousands(r.producer_rate_steady.round() as u64),
        held,
        thousands(consumer_rate),
        thousands(r.peak_queue_depth),
        human_bytes(r.peak_rss_bytes),
        thousands(r.dropped),
        thousands(r.lost),
    )
}

/// A signed byte difference, e.g. `+1.2 MiB` or `-300 KiB`.
fn signed_bytes(delta: i64) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    format!("{sign}{}", human_bytes(delta.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: &'static str, crashed: bool) -> RunResult {
        RunResult {
            mode,
            duration_s: 9.5,
            produced: 95_000,
            committed: 9_000,
            dropped: 0,
            lost: if crashed { 86_000 } else { 0 },
            queued: 86_000,
            peak_queue_depth: 86_000,
            peak_queue_bytes: 50 << 20,
            peak_rss_bytes: 64 << 20,
            final_rss_bytes: 64 << 20,
            rss_growth_after_warmup_bytes: 0,
            crashed,
            crashed_at_s: crashed.then_some(9.5),
            crash_reason: crashed.then(|| "killed by the kernel OOM killer".to_string()),
            producer_wait_ratio: 0.0,
            producer_rate: 1_050.0,
            producer_rate_steady: 1_010.0,
            committed_rate: 1_000.0,
            latency_ms_p50: 10.0,
            latency_ms_p99: 20.0,
            memory_limit_bytes: 64 << 20,
            memory_limit_mechanism: "cgroup",
            db: "x.db".into(),
            table: "events_naive".into(),
            history: Vec::new(),
        }
    }

    #[test]
    fn table_has_a_column_per_mode_and_a_verdict_per_run() {
        let text = render(&[run("naive", true), run("backpressure", false)], 1_000);
        let header = text.lines().next().unwrap();
        assert!(header.contains("naive") && header.contains("backpressure"));
        assert!(text.contains("CRASHED") && text.contains("finished"));
        assert!(text.contains("naive: crashed after 9.5 s, killed by the kernel OOM killer"));
        assert!(text.contains("backpressure: ran 9.5 s; producer held at 1,010/s in the second half (+1.0% of the consumer's 1,000/s)"));
    }

    #[test]
    fn every_row_is_aligned_to_the_same_width() {
        let text = render(&[run("naive", true), run("backpressure", false)], 1_000);
        let table: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).collect();
        let width = table[0].len();
        assert!(table.iter().all(|l| l.len() == width), "{text}");
    }
}
