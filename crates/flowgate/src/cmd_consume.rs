//! `flowgate consume`: receive a topic's events as a member of a group, commit each batch to a
//! sink, and only then acknowledge it; optionally no faster than a given rate (to emulate a
//! slow database). The consumer's pace becomes its demand, and its demand the producer's pace.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use flowgate_client::{Consumer, ConsumerConfig};
use flowgate_core::{Credit, Event, TokenBucket};
use flowgate_sink::SinkUrl;
use serde::Serialize;

use crate::units::{Rate, Size, Span};

const EXAMPLES: &str = "\
Examples:
  flowgate consume --broker 127.0.0.1:7070 --topic orders --group db --sink sqlite:orders.db
  flowgate consume --broker 127.0.0.1:7070 --topic orders --group db --sink null --max-rate 1000
  flowgate consume --broker 127.0.0.1:7070 --topic logs --group tail --sink stdout --count 10

Each batch is acknowledged only after the sink committed it; a consumer killed in between
gets its batch redelivered, and the SQLite sink ignores ids it already holds.";

/// Flags of `flowgate consume`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ConsumeArgs {
    /// Broker address, host:port.
    #[arg(long)]
    broker: String,
    /// Topic to consume.
    #[arg(long)]
    topic: String,
    /// Consumer group.
    #[arg(long, default_value = "default")]
    group: String,
    /// Where events go: sqlite:PATH[?table=NAME], stdout or null.
    #[arg(long, default_value = "null", value_name = "URL")]
    sink: String,
    /// Commit at most this many events per second.
    #[arg(long, value_name = "N[/s]")]
    max_rate: Option<Rate>,
    /// Events requested ahead of processing.
    #[arg(long, default_value_t = 1000, value_name = "EVENTS")]
    prefetch: u64,
    /// Bytes requested ahead of processing.
    #[arg(long, default_value = "8MiB", value_name = "SIZE")]
    prefetch_bytes: Size,
    /// Stop after committing this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after receiving nothing for this long.
    #[arg(long, value_name = "DURATION")]
    idle_exit: Option<Span>,
    /// Write a summary of measured figures here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// The `--json` summary.
#[derive(Debug, Serialize)]
pub(crate) struct ConsumeSummary {
    pub received: u64,
    pub committed: u64,
    pub already_present: u64,
    pub redelivered: u64,
    pub duration_s: f64,
    /// Committed events per second between the first delivery and the last commit (idle
    /// time before and after excluded).
    pub rate: f64,
    pub sessions: u64,
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
    if args.prefetch == 0 || args.prefetch_bytes.0 == 0 {
        eprintln!("error: --prefetch and --prefetch-bytes must be at least 1");
        return Ok(2);
    }
    let runtime = crate::runtime()?;
    runtime.block_on(consume(args, url))
}

async fn consume(args: ConsumeArgs, url: SinkUrl) -> Result<u8> {
    let mut sink = flowgate_sink::open(&url).with_context(|| format!("cannot open sink {url}"))?;
    let config = ConsumerConfig {
        prefetch: Credit::new(args.prefetch, args.prefetch_bytes.0),
        ..ConsumerConfig::new(&args.broker, &args.topic, &args.group)
    };
    let mut consumer = Consumer::connect(config)
        .await
        .with_context(|| format!("cannot consume topic '{}' at {}", args.topic, args.broker))?;
    eprintln!(
        "consuming '{}' as group '{}' into {url}",
        args.topic, args.group
    );
    let started = Instant::now();
    let mut database = match args.max_rate {
        Some(r) => Some(TokenBucket::new(
            r.0,
            args.prefetch.clamp(1, (r.0 / 10).max(1)),
            Duration::ZERO,
        )?),
        None => None,
    };
    let (mut committed, mut received, mut already_present) = (0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    let mut last_committed = 0;
    let mut first_delivery: Option<Instant> = None;
    let mut last_commit = Instant::now();
    let limit = args.count.unwrap_or(u64::MAX);
    let idle = args.idle_exit.map(|s| s.0);
    while committed < limit {
        let next = consumer.recv();
        let batch = match idle {
            Some(d) => match tokio::time::timeout(d, next).await {
                Ok(b) => b?,
                Err(_) => {
                    eprintln!(
                        "nothing received for {}; stopping",
                        humantime::format_duration(d)
                    );
                    break;
                }
            },
            None => next.await?,
        };
        let Some(batch) = batch else { break };
        first_delivery.get_or_insert_with(Instant::now);
        received += batch.len() as u64;
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
        let tags: Vec<_> = batch.iter().map(|d| d.tag).collect();
        let events: Vec<Event> = batch.into_iter().map(|d| d.event).collect();
        let new_rows = tokio::task::block_in_place(|| sink.write_batch(&events))
            .with_context(|| format!("sink {url} failed; the batch is not acknowledged"))?;
        already_present += events.len() as u64 - new_rows;
        committed += events.len() as u64;
        consumer.ack(tags);
        last_commit = Instant::now();
        if last_report.elapsed() >= Duration::from_secs(1) {
            let rate = (committed - last_committed) as f64 / last_report.elapsed().as_secs_f64();
            eprintln!(
                "{:>6.1}s committed {committed:>9} ({rate:>7.0}/s)",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
            last_committed = committed;
        }
    }
    let duration = started.elapsed();
    let stats = consumer.close().await;
    let summary = ConsumeSummary {
        received,
        committed,
        already_present,
        redelivered: stats.redelivered,
        duration_s: duration.as_secs_f64(),
        rate: first_delivery.map_or(0.0, |first| {
            committed as f64
                / last_commit
                    .saturating_duration_since(first)
                    .as_secs_f64()
                    .max(1e-9)
        }),
        sessions: stats.sessions,
    };
    eprintln!(
        "committed {} events in {:.1} s ({:.0}/s); {} were already present, {} redelivered",
        summary.committed,
        summary.duration_s,
        summary.rate,
        summary.already_present,
        summary.redelivered
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    Ok(0)
}
