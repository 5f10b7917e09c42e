//! The broker's live dashboard: `GET /` on `--metrics-addr`, a page that redraws every two
//! seconds with the last ten minutes of the broker's figures — events held, rates in and out,
//! memory, and how the topics' time splits — drawn by the same chart code as the demo report,
//! then its topics and consumer groups now, with their forecasts (`dashboard_now.rs`).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use flowgate_core::StageSplit;

use crate::charts::{Series, line_chart};
use crate::snapshot::BrokerSnapshot;
use crate::units::{human_bytes, thousands};

/// Ten minutes of one-second points.
const KEEP: usize = 600;

/// One point of the broker's history, all topics summed.
#[derive(Debug, Clone, Copy, Default)]
struct Point {
    t: f64,
    accepted: u64,
    acked: u64,
    held: u64,
    rss: u64,
    stage: StageSplit,
}

/// The broker's recent history and its latest snapshot, shared by the stats loop and the page.
#[derive(Clone, Default)]
pub struct History {
    points: Arc<Mutex<VecDeque<Point>>>,
    last: Arc<Mutex<Option<BrokerSnapshot>>>,
}

impl History {
    /// Records the broker's figures (its uptime is the point's time; fill in its forecasts
    /// first for the page to show them).
    pub fn record(&self, stats: &BrokerSnapshot) {
        let sum = |f: fn(&crate::TopicSnapshot) -> u64| stats.topics.iter().map(f).sum::<u64>();
        let stage = stats.topics.iter().map(|t| StageSplit::from(t.stage)).fold(
            StageSplit::default(),
            |acc, s| StageSplit {
                busy: acc.busy + s.busy,
                backpressured: acc.backpressured + s.backpressured,
                idle: acc.idle + s.idle,
            },
        );
        let point = Point {
            t: stats.uptime_s,
            accepted: sum(|s| s.accepted),
            acked: sum(|s| s.acked),
            held: sum(|s| s.ready + s.unacked),
            rss: stats.rss_bytes,
            stage,
        };
        if let Ok(mut h) = self.points.lock() {
            if h.len() == KEEP {
                h.pop_front();
            }
            h.push_back(point);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(stats.clone());
        }
    }

    fn points(&self) -> Vec<Point> {
        self.points
            .lock()
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }
}

fn per_second(points: &[Point], f: fn(&Point) -> u64) -> Vec<(f64, f64)> {
    points
        .windows(2)
        .filter_map(|w| {
            let dt = w[1].t - w[0].t;
            (dt > 0.0).then(|| (w[1].t, f(&w[1]).saturating_sub(f(&w[0])) as f64 / dt))
        })
        .collect()
}

fn share(points: &[Point], f: fn(&StageSplit) -> std::time::Duration) -> Vec<(f64, f64)> {
    points
        .windows(2)
        .filter_map(|w| {
            let d = w[1].stage.since(&w[0].stage);
            let total = d.total().as_secs_f64();
            (total > 0.0).then(|| (w[1].t, f(&d).as_secs_f64() / total * 100.0))
        })
        .collect()
}

/// The dashboard page; with `refresh` it reloads itself every two seconds.
pub fn page(history: &History, refresh: bool) -> String {
    let points = history.points();
    let reload = if refresh {
        "<meta http-equiv=\"refresh\" content=\"2\">"
    } else {
        ""
    };
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         {reload}<title>flowgate broker</title>\n<style>\
         body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}figure{{margin:1.5em 0}}\
         table{{border-collapse:collapse;font-size:90%}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}\
         </style></head><body>\n<h1>flowgate broker</h1>\n"
    );
    match points.last() {
        Some(last) => {
            let _ = writeln!(
                html,
                "<p>up {:.0} s; {} events accepted, {} acknowledged, {} held now; RSS {}. Redraws every 2 s.</p>",
                last.t,
                thousands(last.accepted),
                thousands(last.acked),
                thousands(last.held),
                human_bytes(last.rss)
            );
        }
        None => {
            html.push_str("<p>No figures yet: the first arrive after one stats interval.</p>\n")
        }
    }
    let series = |name: &'static str, pts: Vec<(f64, f64)>| Series {
        name,
        points: pts,
        marker: None,
    };
    let charts = [
        (
            "held",
            "Events held (ready + unacked)",
            "events",
            vec![series(
                "held",
                points.iter().map(|p| (p.t, p.held as f64)).collect(),
            )],
        ),
        (
            "rates",
            "Events in and out per second",
            "events/s",
            vec![
                series("accepted", per_second(&points, |p| p.accepted)),
                series("acked", per_second(&points, |p| p.acked)),
            ],
        ),
        (
            "memory",
            "Broker memory (RSS)",
            "MiB",
            vec![series(
                "rss",
                points
                    .iter()
                    .map(|p| (p.t, p.rss as f64 / (1 << 20) as f64))
                    .collect(),
            )],
        ),
        (
            "stage",
            "Topics' time: full (producers backpressured) and empty",
            "%",
            vec![
                series("full", share(&points, |s| s.backpressured)),
                series("empty", share(&points, |s| s.idle)),
            ],
        ),
    ];
    for (id, title, unit, s) in charts {
        match line_chart(title, "seconds since the broker started", unit, &s) {
            Ok(svg) => {
                let _ = writeln!(
                    html,
                    "<figure class=\"chart\" id=\"chart-{id}\">{svg}</figure>"
                );
            }
            Err(e) => {
                let _ = writeln!(html, "<p>chart {id} failed: {e}</p>");
            }
        }
    }
    if let Some(last) = history.last.lock().ok().and_then(|l| l.clone()) {
        html.push_str(&crate::dashboard_now::tables(&last));
    }
    html.push_str("</body></html>\n");
    html
}
