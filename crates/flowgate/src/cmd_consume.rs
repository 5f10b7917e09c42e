//! `flowgate consume`: receive a topic's events as a member of a group, commit each batch to a
//! sink, and only then acknowledge it. The batch size follows the sink's measured commit
//! latency (an AIMD limit), and becomes the consumer's demand: a database that slows down asks
//! for less, and the producer feels it. Events the database refuses are retried (nacked) and,
//! after `--max-attempts`, dead-lettered with the database's reason; the rest of their batch
//! commits regardless.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use flowgate_client::{Consumer, ConsumerConfig, ConsumerMonitor, DeliveryTag};
use flowgate_core::{AimdLimit, Credit, Event, TokenBucket};
use flowgate_sink::{AnySink, DeadLetter, SinkUrl};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::dial_args::DialArgs;
use crate::units::{Rate, Size, Span};

const EXAMPLES: &str = "\
Examples:
  flowgate consume --broker 127.0.0.1:7070 --topic orders --group db --sink sqlite:orders.db
  flowgate consume --broker 127.0.0.1:7070 --topic orders --group db \\
      --sink 'postgres://app@db:5432/shop?table=orders&payload=json' --commit-latency-target 100ms
  flowgate consume --broker 127.0.0.1:7070 --topic orders --group db --sink null --max-rate 1000
  flowgate consume --broker 127.0.0.1:7070 --topic logs --group tail --sink stdout --count 10

Each batch is acknowledged only after the sink committed it; a consumer killed in between
gets its batch redelivered, and the database sinks ignore ids they already hold. Events the
database refuses (e.g. payload=json and a payload that is not JSON) go to <table>_dead_letters
with the reason after --max-attempts deliveries; the rest of their batch commits.";

/// Flags of `flowgate consume`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    dial: DialArgs,
    /// Topic to consume.
    #[arg(long)]
    topic: String,
    /// Consumer group.
    #[arg(long, default_value = "default")]
    group: String,
    /// Where events go: sqlite:PATH, postgres://USER@HOST:PORT/DB, stdout or null, with
    /// options ?table=NAME&payload=bytes|json for the databases.
    #[arg(long, default_value = "null", value_name = "URL")]
    sink: String,
    /// Commit at most this many events per second (to emulate a slow database).
    #[arg(long, value_name = "N[/s]")]
    max_rate: Option<Rate>,
    /// The largest batch: events requested ahead of processing at most.
    #[arg(long, default_value_t = 1000, value_name = "EVENTS")]
    prefetch: u64,
    /// Bytes requested ahead of processing at most.
    #[arg(long, default_value = "8MiB", value_name = "SIZE")]
    prefetch_bytes: Size,
    /// Keep commits at most this slow: a slower commit halves the batch size, a faster full
    /// one grows it by an eighth.
    #[arg(long, default_value = "250ms")]
    commit_latency_target: Span,
    /// Deliveries of an event the database refuses before it is dead-lettered.
    #[arg(long, default_value_t = 3, value_name = "N")]
    max_attempts: u32,
    /// Stop after committing this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after receiving nothing for this long.
    #[arg(long, value_name = "DURATION")]
    idle_exit: Option<Span>,
    /// Serve /stats (JSON, for `flowgate top`) and /metrics (Prometheus) on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Write a summary of measured figures here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// The summary so far, shared with the `/stats` endpoint (updated after every commit).
type SharedLive = std::sync::Arc<std::sync::Mutex<ConsumeSummary>>;

fn snapshot(live: &SharedLive, monitor: &ConsumerMonitor, started: Instant) -> serde_json::Value {
    let l = live.lock().map(|l| l.clone()).unwrap_or_default();
    let waited = monitor.stats().waited;
    let elapsed = started.elapsed();
    // A consumer is busy while it commits (or waits for its rate-limited database) and idle
    // while it waits for deliveries; nothing downstream of the sink can hold it back.
    let stage = flowgate_core::StageSplit {
        busy: elapsed.saturating_sub(waited),
        backpressured: Duration::ZERO,
        idle: waited,
    };
    serde_json::json!({
        "role": "consumer",
        "uptime_s": elapsed.as_secs_f64(),
        "received": l.received,
        "committed": l.committed,
        "dead_lettered": l.dead_lettered,
        "retried": l.retried,
        "batch_limit": l.batch_limit,
        "commit_latency_ms_p99": l.commit_latency_ms_p99,
        "e2e_latency_ms_p50": l.e2e_latency_ms_p50,
        "e2e_latency_ms_p99": l.e2e_latency_ms_p99,
        "stage": crate::observe::stage_json(&stage),
    })
}

fn publish(v: &serde_json::Value) {
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    for key in ["received", "committed", "dead_lettered", "retried"] {
        metrics::counter!(format!("flowgate_consumer_{key}_total")).absolute(num(key));
    }
    metrics::gauge!("flowgate_consumer_batch_limit").set(num("batch_limit") as f64);
    let p99 = v
        .get("commit_latency_ms_p99")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    metrics::gauge!("flowgate_sink_commit_latency_p99_seconds").set(p99 / 1e3);
    for (key, q) in [
        ("e2e_latency_ms_p50", "0.5"),
        ("e2e_latency_ms_p99", "0.99"),
    ] {
        let ms = v
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0);
        metrics::gauge!("flowgate_e2e_latency_seconds", "quantile" => q).set(ms / 1e3);
    }
    if let Some(stage) = v.get("stage") {
        crate::observe::publish_stage("flowgate_consumer", &[], stage);
    }
}

/// The `--json` summary.
#[derive(Debug, Serialize, Default, Clone)]
pub(crate) struct ConsumeSummary {
    pub received: u64,
    /// Events settled: committed (new or already present) or dead-lettered.
    pub committed: u64,
    pub already_present: u64,
    /// Deliveries the database refused and that were handed back for another attempt.
    pub retried: u64,
    pub dead_lettered: u64,
    pub redelivered: u64,
    pub duration_s: f64,
    /// Committed events per second between the first delivery and the last commit (idle
    /// time before and after excluded).
    pub rate: f64,
    pub sessions: u64,
    /// Commits made, and events per commit on average.
    pub commits: u64,
    pub mean_batch: f64,
    pub commit_latency_ms_p50: f64,
    pub commit_latency_ms_p99: f64,
    pub commit_latency_ms_max: f64,
    /// End to end: event creation (producer clock) to commit (consumer clock), over the
    /// committed events. Meaningful when both clocks agree (same host, or NTP).
    pub e2e_latency_ms_p50: f64,
    pub e2e_latency_ms_p99: f64,
    /// The batch limit at the end, and how often commit latency cut it.
    pub batch_limit: u64,
    pub batch_limit_cuts: u64,
}

impl ConsumeSummary {
    /// Copies the latency quantiles out of the histograms.
    fn record_latencies(&mut self, commit_us: &Histogram<u64>, e2e_us: &Histogram<u64>) {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
        self.commit_latency_ms_p50 = ms(commit_us, 0.5);
        self.commit_latency_ms_p99 = ms(commit_us, 0.99);
        self.commit_latency_ms_max = commit_us.max() as f64 / 1e3;
        self.e2e_latency_ms_p50 = ms(e2e_us, 0.5);
        self.e2e_latency_ms_p99 = ms(e2e_us, 0.99);
    }
}

/// Runs the consumer.
pub(crate) fn run(args: ConsumeArgs) -> Result<u8> {
    let url: SinkUrl = match args.sink.parse() {
        Ok(url) => url,
        Err(e) => {
            eprintln!("error: --sink: {e}");
            return Ok(2);
        }
    };
    if args.prefetch == 0 || args.prefetch_bytes.0 == 0 || args.max_attempts == 0 {
        eprintln!("error: --prefetch, --prefetch-bytes and --max-attempts must be at least 1");
        return Ok(2);
    }
    let runtime = crate::runtime()?;
    runtime.block_on(consume(args, url))
}

/// What one batch's commit came to.
struct Settled {
    acks: Vec<DeliveryTag>,
    nacks: Vec<DeliveryTag>,
    new_rows: u64,
    dead: u64,
}

/// Commits a batch; refused events are dead-lettered on their last attempt, else nacked.
async fn commit(
    sink: &mut AnySink,
    events: &[Event],
    tags: &[DeliveryTag],
    max_attempts: u32,
) -> Result<Settled> {
    let committed = sink
        .write_batch(events)
        .await
        .context("the sink failed; the batch is not acknowledged")?;
    let mut refused = vec![None; events.len()];
    for (i, reason) in committed.rejected {
        refused[i] = Some(reason);
    }
    let mut letters = Vec::new();
    let mut settled = Settled {
        acks: Vec::new(),
        nacks: Vec::new(),
        new_rows: committed.new_rows,
        dead: 0,
    };
    for (i, reason) in refused.iter().enumerate() {
        match reason {
            None => settled.acks.push(tags[i]),
            Some(reason) if tags[i].attempt() >= max_attempts => {
                letters.push(DeadLetter {
                    event: &events[i],
                    attempts: tags[i].attempt(),
                    reason,
                });
                settled.acks.push(tags[i]);
            }
            Some(_) => settled.nacks.push(tags[i]),
        }
    }
    if !letters.is_empty() {
        sink.dead_letter(&letters)
            .await
            .context("cannot record dead letters; the batch is not acknowledged")?;
        settled.dead = letters.len() as u64;
    }
    Ok(settled)
}

async fn consume(args: ConsumeArgs, url: SinkUrl) -> Result<u8> {
    let mut sink = AnySink::open(&url)
        .await
        .with_context(|| format!("cannot open sink {url}"))?;
    let config = ConsumerConfig {
        prefetch: Credit::new(args.prefetch, args.prefetch_bytes.0),
        token: args.dial.token(),
        tls: args.dial.tls()?,
        ..ConsumerConfig::new(&args.dial.broker, &args.topic, &args.group)
    };
    let mut consumer = Consumer::connect(config).await.with_context(|| {
        format!(
            "cannot consume topic '{}' at {}",
            args.topic, args.dial.broker
        )
    })?;
    eprintln!(
        "consuming '{}' as group '{}' into {url}",
        args.topic, args.group
    );
    let started = Instant::now();
    let live: SharedLive = SharedLive::default();
    if let Some(addr) = args.metrics_addr {
        let (view, monitor) = (std::sync::Arc::clone(&live), consumer.monitor());
        let bound = crate::observe::serve(
            addr,
            std::sync::Arc::new(move || snapshot(&view, &monitor, started)),
            std::sync::Arc::new(publish),
            None,
        )
        .await?;
        eprintln!("metrics on {bound}");
    }
    let mut database = match args.max_rate {
        Some(r) => Some(TokenBucket::new(
            r.0,
            args.prefetch.clamp(1, (r.0 / 10).max(1)),
            Duration::ZERO,
        )?),
        None => None,
    };
    let mut limit = AimdLimit::new(
        args.prefetch,
        1,
        args.prefetch,
        args.commit_latency_target.0,
    );
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut e2e_us = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut s = ConsumeSummary::default();
    let mut last_report = Instant::now();
    let mut last_committed = 0;
    let mut first_delivery: Option<Instant> = None;
    let mut last_commit = Instant::now();
    let stop_at = args.count.unwrap_or(u64::MAX);
    while s.committed < stop_at {
        let next = consumer.recv();
        let batch = match args.idle_exit {
            Some(d) => match tokio::time::timeout(d.0, next).await {
                Ok(b) => b?,
                Err(_) => {
                    eprintln!("nothing received for {d}; stopping");
                    break;
                }
            },
            None => next.await?,
        };
        let Some(batch) = batch else { break };
        first_delivery.get_or_insert_with(Instant::now);
        s.received += batch.len() as u64;
        if let Some(bucket) = database.as_mut() {
            // The emulated database takes the batch in slices it has capacity for.
            let mut left = batch.len() as u64;
            while left > 0 {
                let n = left.min(bucket.burst());
                let wait = bucket.time_until(n, started.elapsed());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                let _ = bucket.try_take(n, started.elapsed());
                left -= n;
            }
        }
        let tags: Vec<DeliveryTag> = batch.iter().map(|d| d.tag).collect();
        let events: Vec<Event> = batch.into_iter().map(|d| d.event).collect();
        let t0 = Instant::now();
        let settled = commit(&mut sink, &events, &tags, args.max_attempts).await?;
        let latency = t0.elapsed();
        let committed_at = flowgate_client::unix_now_us();
        for e in &events {
            e2e_us.saturating_record(committed_at.saturating_sub(e.created_us).max(1));
        }
        latency_us.saturating_record(
            u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        let done = settled.acks.len() as u64;
        s.commits += 1;
        s.committed += done;
        s.already_present += (done - settled.dead).saturating_sub(settled.new_rows);
        s.dead_lettered += settled.dead;
        s.retried += settled.nacks.len() as u64;
        consumer.ack(settled.acks);
        consumer.nack(settled.nacks);
        // The database's pace becomes the consumer's demand.
        let next_limit = limit.on_commit(events.len() as u64, latency);
        consumer.set_prefetch(Credit::new(next_limit, args.prefetch_bytes.0));
        last_commit = Instant::now();
        s.batch_limit = next_limit;
        s.record_latencies(&latency_us, &e2e_us);
        if let Ok(mut l) = live.lock() {
            *l = s.clone();
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            let rate = (s.committed - last_committed) as f64 / last_report.elapsed().as_secs_f64();
            eprintln!(
                "{:>6.1}s committed {:>9} ({rate:>7.0}/s) batch limit {next_limit:>6} commit p99 {:>6.1} ms dead letters {}",
                started.elapsed().as_secs_f64(),
                s.committed,
                s.commit_latency_ms_p99,
                s.dead_lettered
            );
            last_report = Instant::now();
            last_committed = s.committed;
        }
    }
    let stats = consumer.close().await;
    s.duration_s = started.elapsed().as_secs_f64();
    s.rate = first_delivery.map_or(0.0, |first| {
        s.committed as f64
            / last_commit
                .saturating_duration_since(first)
                .as_secs_f64()
                .max(1e-9)
    });
    s.redelivered = stats.redelivered;
    s.sessions = stats.sessions;
    s.record_latencies(&latency_us, &e2e_us);
    s.mean_batch = s.received as f64 / s.commits.max(1) as f64;
    s.batch_limit = limit.limit();
    s.batch_limit_cuts = limit.decreases();
    eprintln!(
        "committed {} events in {:.1} s ({:.0}/s); {} already present, {} redelivered, {} retried, {} dead-lettered; commit p99 {:.1} ms",
        s.committed,
        s.duration_s,
        s.rate,
        s.already_present,
        s.redelivered,
        s.retried,
        s.dead_lettered,
        s.commit_latency_ms_p99
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&s)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    Ok(0)
}
