//! The demo's HTML report: one self-contained file (no network fetches) with charts over time
//! — queue depth, memory, produced vs committed rate, latency, the producer's time waiting for
//! credit — every mode side by side, a crash marked where it happened. Charts are drawn by
//! the plotters library into inline SVG; the page is rendered from measured samples only.

use std::fmt::Write as _;

use anyhow::Result;

use super::result::RunResult;
use super::sample::Sample;
use flowgate_observe::charts::{Series, escape_html as escape, line_chart};
use flowgate_observe::units::{human_bytes, thousands};

/// A row of the summary table: its label and how to render one run's cell.
type SummaryRow = (&'static str, fn(&RunResult) -> String);

/// One chart: a title, a unit, and how to read a value from a sample (with the one before it,
/// for rates).
struct Chart {
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    value: fn(&Sample, Option<&Sample>) -> Option<f64>,
}

fn rate(now: &Sample, prev: Option<&Sample>, field: fn(&Sample) -> u64) -> Option<f64> {
    let prev = prev?;
    let dt = now.t - prev.t;
    (dt > 0.0).then(|| field(now).saturating_sub(field(prev)) as f64 / dt)
}

const CHARTS: [Chart; 6] = [
    Chart {
        id: "queue",
        title: "Queue depth",
        unit: "events",
        value: |s, _| Some(s.queued as f64),
    },
    Chart {
        id: "memory",
        title: "Memory of the pipeline process (RSS)",
        unit: "MiB",
        value: |s, _| Some(s.rss_bytes as f64 / (1 << 20) as f64),
    },
    Chart {
        id: "produced",
        title: "Produced per second",
        unit: "events/s",
        value: |s, p| rate(s, p, |x| x.produced),
    },
    Chart {
        id: "committed",
        title: "Committed per second",
        unit: "events/s",
        value: |s, p| rate(s, p, |x| x.committed),
    },
    Chart {
        id: "latency",
        title: "Latency p99, creation to commit (cumulative)",
        unit: "ms",
        value: |s, _| Some(s.latency_ms_p99),
    },
    Chart {
        id: "waiting",
        title: "Producer: share of time waiting for credit (backpressured)",
        unit: "%",
        value: |s, p| {
            let p = p?;
            let active = s.producer_active_s - p.producer_active_s;
            (active > 0.0).then(|| {
                ((s.producer_waited_s - p.producer_waited_s) / active * 100.0).clamp(0.0, 100.0)
            })
        },
    },
];

/// Points of one chart for one run, smoothed over about half a second (samples come every
/// 100 ms; rates over a single sample are mostly noise from credit arriving in steps).
fn points(chart: &Chart, history: &[Sample]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (i, s) in history.iter().enumerate() {
        let prev = i.checked_sub(5).and_then(|j| history.get(j));
        if let Some(v) = (chart.value)(s, prev) {
            out.push((s.t, v));
        }
    }
    out
}

/// Draws one chart as an SVG string: one series per run.
fn svg(chart: &Chart, runs: &[RunResult]) -> Result<String> {
    let series: Vec<Series<'_>> = runs
        .iter()
        .map(|r| Series {
            name: r.mode,
            points: points(chart, &r.history),
            marker: r
                .crashed_at_s
                .map(|at| (at, format!("{} crashed at {at:.1} s", r.mode))),
        })
        .collect();
    Ok(line_chart(
        chart.title,
        "seconds since start",
        chart.unit,
        &series,
    )?)
}

/// The whole report as one HTML document.
pub(crate) fn render(runs: &[RunResult], headline: &str) -> Result<String> {
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>flowgate demo report</title>\n<style>\
         body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}\
         th:first-child,td:first-child{text-align:left}figure{margin:1.5em 0}\
         </style></head><body>\n<h1>flowgate demo</h1>\n",
    );
    let _ = writeln!(html, "<p>{}</p>", escape(headline));
    html.push_str("<table><tr><th></th>");
    for r in runs {
        let _ = write!(html, "<th>{}</th>", r.mode);
    }
    html.push_str("</tr>\n");
    let rows: [SummaryRow; 9] = [
        ("outcome", |r| {
            if r.crashed {
                format!("crashed at {:.1} s", r.crashed_at_s.unwrap_or(0.0))
            } else {
                "finished".into()
            }
        }),
        ("produced", |r| thousands(r.produced)),
        ("committed (rows in the database)", |r| {
            thousands(r.committed)
        }),
        ("dropped by policy", |r| thousands(r.dropped)),
        ("lost", |r| thousands(r.lost)),
        ("peak queue", |r| {
            format!(
                "{} events, {}",
                thousands(r.peak_queue_depth),
                human_bytes(r.peak_queue_bytes)
            )
        }),
        ("peak RSS", |r| human_bytes(r.peak_rss_bytes)),
        ("latency p99", |r| format!("{:.0} ms", r.latency_ms_p99)),
        ("producer waiting for credit", |r| {
            format!("{:.0}%", r.producer_wait_ratio * 100.0)
        }),
    ];
    for (label, cell) in rows {
        let _ = write!(html, "<tr><td>{label}</td>");
        for r in runs {
            let _ = write!(html, "<td>{}</td>", escape(&cell(r)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    for chart in &CHARTS {
        let _ = writeln!(
            html,
            "<figure class=\"chart\" id=\"chart-{}\">{}</figure>",
            chart.id,
            svg(chart, runs)?
        );
    }
    html.push_str("<p>Every figure above was measured while the pipelines ran; none is derived from the flags.</p>\n</body></html>\n");
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_differences_of_samples() {
        let s = |t: f64, produced: u64| Sample {
            t,
            phase: super::super::sample::Phase::Running,
            produced,
            committed: 0,
            dropped: 0,
            queued: 0,
            queued_bytes: 0,
            peak_queue_depth: 0,
            peak_queue_bytes: 0,
            rss_bytes: 0,
            peak_rss_bytes: 0,
            producer_waited_s: 0.0,
            producer_active_s: t,
            latency_ms_p50: 0.0,
            latency_ms_p99: 0.0,
        };
        assert_eq!(
            rate(&s(2.0, 3_000), Some(&s(1.0, 1_000)), |x| x.produced),
            Some(2_000.0)
        );
        assert_eq!(rate(&s(2.0, 3_000), None, |x| x.produced), None);
    }
}
