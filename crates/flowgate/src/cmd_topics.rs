//! `flowgate topics`: every topic of a broker with its live figures — capacity, what it holds,
//! rates in and out over a window, producers, consumers, each group, and its forecast — as a
//! table or as JSON. Reads the broker's `/stats` twice, `--interval` apart.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use flowgate_core::StageSplit;
use flowgate_observe::forecast::Forecast;
use flowgate_observe::units::{Span, human_bytes};
use flowgate_observe::window::GroupRate;
use flowgate_observe::{BrokerSnapshot, Snapshot, TopicSnapshot};
use serde::Serialize;

const EXAMPLES: &str = "\
Examples:
  flowgate broker --listen 127.0.0.1:7070 --metrics-addr 127.0.0.1:9100
  flowgate topics --broker 127.0.0.1:9100
  flowgate topics --broker 127.0.0.1:9100 --json | jq '.[] | {name, held, in_per_s}'

--broker is the broker's --metrics-addr. Rates and forecasts are measured over --interval:
nothing shown is taken from configuration but the capacity.";

/// Flags of `flowgate topics`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct TopicsArgs {
    /// The broker's --metrics-addr.
    #[arg(long, value_name = "ADDR")]
    broker: String,
    /// The window rates are measured over.
    #[arg(long, default_value = "1s")]
    interval: Span,
    /// Print JSON (an array, one object per topic) instead of a table.
    #[arg(long)]
    json: bool,
}

/// One topic's live figures.
#[derive(Debug, Serialize)]
struct TopicLine {
    name: String,
    capacity_events: u64,
    capacity_bytes: u64,
    /// Held for blocking groups, in memory and on disk.
    held: u64,
    held_bytes: u64,
    on_disk: u64,
    in_per_s: f64,
    out_per_s: f64,
    producers: u64,
    consumers: u64,
    /// Share of the window the topic was full with a producer blocked.
    backpressured: f64,
    /// What it does when full (block, drop-newest, drop-oldest, reject, conflate).
    policy: String,
    /// Its max age, if it has one.
    max_age_ms: Option<u64>,
    /// Every event it let go of, by kind, over its life; `None`: none.
    drops: Option<String>,
    groups: Vec<GroupRate>,
    forecast: Forecast,
}

fn sample(addr: &str) -> Result<(Instant, BrokerSnapshot)> {
    let doc = flowgate_observe::fetch(addr).with_context(|| format!("broker at {addr}"))?;
    let at = Instant::now();
    match doc {
        Snapshot::Broker(b) => Ok((at, b)),
        other => bail!("{addr} serves a {}'s /stats, not a broker's", other.role()),
    }
}

fn line(prev: Option<&TopicSnapshot>, now: &TopicSnapshot, secs: f64) -> TopicLine {
    let empty = TopicSnapshot {
        stage: now.stage,
        ..TopicSnapshot::default()
    };
    let before = prev.unwrap_or(&empty);
    let window = StageSplit::from(now.stage).since(&StageSplit::from(before.stage));
    let (_, backpressured, _) = window.shares();
    let forecast = Forecast::between(before, now, secs, backpressured);
    TopicLine {
        name: now.name.clone(),
        capacity_events: now.capacity_events,
        capacity_bytes: now.capacity_bytes,
        held: now.held(),
        held_bytes: now.held_bytes + now.on_disk_bytes,
        on_disk: now.on_disk,
        in_per_s: forecast.in_per_s,
        out_per_s: forecast.out_per_s,
        producers: now.producers,
        consumers: now.consumers,
        backpressured,
        policy: now.policy.clone(),
        max_age_ms: now.max_age_ms,
        drops: now.drops_text(),
        groups: now
            .groups
            .iter()
            .map(|g| {
                let p = prev.and_then(|p| p.groups.iter().find(|x| x.name == g.name));
                GroupRate::between(p, g, secs)
            })
            .collect(),
        forecast,
    }
}

/// Lists the topics.
pub(crate) fn run(args: TopicsArgs) -> Result<()> {
    let (t0, first) = sample(&args.broker)?;
    std::thread::sleep(args.interval.0);
    let (t1, second) = sample(&args.broker)?;
    let secs = t1.duration_since(t0).as_secs_f64();
    let lines: Vec<TopicLine> = second
        .topics
        .iter()
        .map(|t| line(first.topics.iter().find(|p| p.name == t.name), t, secs))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    if lines.is_empty() {
        println!("the broker has no topics yet");
        return Ok(());
    }
    println!(
        "{:<20} {:>20} {:>22} {:>9} {:>9} {:>5} {:>5} {:>5}",
        "topic", "capacity", "held", "in/s", "out/s", "prod", "cons", "full"
    );
    for (l, t) in lines.iter().zip(&second.topics) {
        let fill = l.held as f64 / l.capacity_events.max(1) as f64;
        println!(
            "{:<20} {:>20} {:>22} {:>9.0} {:>9.0} {:>5} {:>5} {:>4.0}%",
            l.name,
            format!("{} ({})", l.capacity_events, human_bytes(l.capacity_bytes)),
            format!(
                "{} {:.0}% ({})",
                l.held,
                fill * 100.0,
                human_bytes(l.held_bytes)
            ),
            l.in_per_s,
            l.out_per_s,
            l.producers,
            l.consumers,
            l.backpressured * 100.0
        );
        if l.policy != "block" || l.max_age_ms.is_some() || l.drops.is_some() {
            let drops = l.drops.as_deref().unwrap_or("nothing let go");
            println!("  policy {}: {drops}", t.policy_text());
        }
        for g in &l.groups {
            println!("  {}", g.text());
        }
        for f in l.forecast.text(&l.name) {
            println!("  forecast: {f}");
        }
    }
    Ok(())
}
