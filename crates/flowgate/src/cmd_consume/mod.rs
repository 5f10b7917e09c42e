//! `flowgate consume`: receive a topic's events as a member of a group, commit each batch to a
//! sink, and only then acknowledge it. The batch size follows the sink's measured commit
//! latency (an AIMD limit), and becomes the consumer's demand: a database that slows down asks
//! for less, and the producer feels it. Events the database refuses are retried (nacked) and,
//! after `--max-attempts`, dead-lettered with the database's reason; the rest of their batch
//! commits regardless.

mod summary;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use flowgate_client::{AnyConsumer, AnyProducer, ConsumerConfig, ProducerConfig, Subscribe};
use flowgate_core::Credit;
use flowgate_observe::Snapshot;
use flowgate_observe::units::{Rate, Size, Span};
use flowgate_sink::driver::Emulation;
use flowgate_sink::{
    AnySink, DriverConfig, Exec, Outcome, SinkDriver, SinkUrl, TopicSink, Transform,
};
use tracing::info;

use crate::dial_args::DialArgs;
use crate::fail::bad_input;
use crate::shutdown::Shutdown;
use summary::{ConsumeSummary, SharedLive};

const EXAMPLES: &str = "\
Examples:
  flowgate consume --broker 127.0.0.1:7070 --topic orders --group db --sink sqlite:orders.db
  flowgate consume --broker 127.0.0.1:7070 --topic orders --group db \\
      --sink 'postgres://app@db:5432/shop?table=orders&payload=json' --commit-latency-target 100ms
  flowgate consume --broker 127.0.0.1:7070 --topic orders --group db --sink null --max-rate 1000
  flowgate consume --broker 127.0.0.1:7070 --topic logs --group tail --sink stdout --count 10
  flowgate consume --broker 127.0.0.1:7070 --topic orders --group dashboard --max-lag 5000

Every group reads every event of the topic; consumers of one group share them. A group
blocks by default: what it has not acknowledged counts against the topic's capacity, so
the slowest blocking group sets the producers' pace. With --max-lag the group is best
effort: when more than N events wait unread for it, its oldest are skipped for it alone
(the broker counts them, in /stats and metrics), and nobody waits for it.

Each batch is acknowledged only after the sink committed it; a consumer killed in between
gets its batch redelivered, and the database sinks ignore ids they already hold. A commit
that fails for a reason that may pass (a lost connection, a database restarting, a full
disk, a lock timeout) is tried again with backoff, 100 ms doubling to 5 s, its batch
unacknowledged; any other failure ends the consumer. On SIGTERM or Ctrl-C it stops
receiving, finishes the commit in flight, acknowledges it, and exits 0 with its summary. Events the
database refuses (e.g. payload=json and a payload that is not JSON) go to <table>_dead_letters
with the reason after --max-attempts deliveries; the rest of their batch commits.";

/// The examples of `flowgate relay`, which takes the flags of `consume` with `--to`.
pub(crate) const RELAY_EXAMPLES: &str = "\
Examples:
  flowgate relay --broker 127.0.0.1:7070 --from raw --group enrich --to enriched
  flowgate relay --broker 127.0.0.1:7070 --from raw --group enrich --to enriched \\
      --exec 'jq -c --unbuffered \". + {enriched: true}\"'
  flowgate relay --broker 10.0.0.1:7070 --from orders --group ship --to orders \\
      --to-broker 10.0.0.2:7070 --max-rate 1000

A relay is a consumer whose database is the next topic: a batch is acknowledged on --from
only once --to confirmed all of it. So the next topic's backpressure is its commit latency,
and the slowest stage of a chain, wherever it sits, sets the pace of every stage before it.
Each event sent on carries the id of the chain's first event in its key, and the database
sinks key their rows by it: a relay killed mid-batch (kill -9) and restarted sends the batch
again, and no row lands twice. --exec runs the command with sh -c and writes each payload as
one line; it must answer one line per line (the next payload, or an empty line to drop the
event) and flush each answer (e.g. jq --unbuffered). A payload it cannot take (not one line
of UTF-8) is refused, retried and dead-lettered (logged) after --max-attempts.";

/// Flags of `flowgate consume`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    dial: DialArgs,
    /// Topic to consume.
    #[arg(long, visible_alias = "from")]
    topic: String,
    /// Consumer group.
    #[arg(long, default_value = "default")]
    group: String,
    /// Make the group best effort: skip its oldest unread events when more than N wait for
    /// it, instead of holding the producers back. Every consumer of the group must agree.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_lag: Option<u64>,
    /// Where events go: sqlite:PATH, postgres://USER@HOST:PORT/DB, stdout or null, with
    /// options ?table=NAME&payload=bytes|json for the databases.
    #[arg(long, default_value = "null", value_name = "URL", value_parser = |s: &str| s.parse::<SinkUrl>().map_err(|e| e.to_string()))]
    sink: SinkUrl,
    /// Commit at most this many events per second (to emulate a slow database).
    #[arg(long, value_name = "N[/s]")]
    max_rate: Option<Rate>,
    /// The largest batch: events requested ahead of processing at most.
    #[arg(long, default_value_t = 1000, value_name = "EVENTS", value_parser = clap::value_parser!(u64).range(1..))]
    prefetch: u64,
    /// Bytes requested ahead of processing at most. An event larger than this still comes,
    /// alone, when nothing else is held.
    #[arg(long, default_value = "8MiB", value_name = "SIZE")]
    prefetch_bytes: Size,
    /// The largest frame accepted from the broker: at least the broker's --max-frame, or the
    /// broker refuses this consumer, naming both.
    #[arg(long, default_value = "64MiB", value_name = "SIZE", value_parser = crate::frame_flag::max_frame)]
    max_frame: u32,
    /// Keep commits at most this slow: a slower commit halves the batch size, a faster full
    /// one grows it by an eighth.
    #[arg(long, default_value = "250ms")]
    commit_latency_target: Span,
    /// Deliveries of an event the database refuses before it is dead-lettered.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// While a batch is being committed, tell the broker this often that it is still in
    /// progress, so its --ack-wait (30 s by default) does not hand the batch to another
    /// consumer. Keep it well below the broker's --ack-wait.
    #[arg(long, default_value = "10s")]
    progress_every: Span,
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
    /// Send each event on to this topic instead of into a sink: a stage of a chain (what
    /// `flowgate relay` runs). A batch is acknowledged once the next topic confirmed it, so
    /// that topic's backpressure holds this stage, and through it the topic it reads.
    #[arg(long, value_name = "TOPIC", conflicts_with = "sink")]
    to: Option<String>,
    /// The broker of --to, when it is another one.
    #[arg(long, value_name = "ADDR", requires = "to")]
    to_broker: Option<String>,
    /// With --to: pipe each payload, as one line, through this command (run by sh -c), which
    /// answers one line per line: the next payload, or an empty line to drop the event.
    #[arg(long, value_name = "CMD", requires = "to")]
    exec: Option<String>,
    /// With --to: the producer id (hex) sending on; default: a fresh random one.
    #[arg(long, value_name = "HEX", requires = "to", value_parser = crate::cmd_produce::parse_hex_id)]
    producer_id: Option<u64>,
}

/// Runs a stage of a chain: a consumer whose sink is the next topic.
pub(crate) fn run_relay(args: ConsumeArgs) -> Result<()> {
    if args.to.is_none() {
        return Err(bad_input(
            "relay needs --to TOPIC, the topic it sends on to",
        ));
    }
    run(args)
}

/// The sink of a stage: a producer to the next topic, through `--exec` if given.
async fn next_topic(args: &ConsumeArgs, to: &str) -> Result<AnySink> {
    let broker = args.to_broker.as_deref().unwrap_or(&args.dial.broker);
    let config = ProducerConfig {
        producer_id: args.producer_id,
        token: args.dial.token(),
        tls: args.dial.tls()?,
        ..ProducerConfig::new(broker, to)
    };
    let producer = AnyProducer::connect(config)
        .await
        .with_context(|| format!("cannot send on to topic '{to}' at {broker}"))?;
    let transform = match &args.exec {
        Some(cmd) => Transform::Exec(Box::new(Exec::spawn(cmd)?)),
        None => Transform::Pass,
    };
    Ok(AnySink::Topic(TopicSink::new(producer, transform)))
}

/// Runs the consumer.
pub(crate) fn run(args: ConsumeArgs) -> Result<()> {
    if args.prefetch_bytes.0 == 0 {
        return Err(bad_input("--prefetch-bytes must be at least 1 byte"));
    }
    let runtime = crate::runtime()?;
    runtime.block_on(consume(args))
}

async fn consume(args: ConsumeArgs) -> Result<()> {
    let shutdown = Shutdown::new();
    let (sink, url) = match &args.to {
        Some(to) => (next_topic(&args, to).await?, format!("topic '{to}'")),
        None => {
            let url = args.sink.clone();
            let sink = AnySink::open(&url)
                .await
                .with_context(|| format!("cannot open sink {url}"))?;
            (sink, url.to_string())
        }
    };
    let config = ConsumerConfig {
        prefetch: Credit::new(args.prefetch, args.prefetch_bytes.0),
        max_frame: args.max_frame,
        max_lag: args.max_lag,
        token: args.dial.token(),
        tls: args.dial.tls()?,
        ..ConsumerConfig::new(&args.dial.broker, &args.topic, &args.group)
    };
    let consumer = AnyConsumer::connect(config).await.with_context(|| {
        format!(
            "cannot consume topic '{}' at {}",
            args.topic, args.dial.broker
        )
    })?;
    info!(
        "consuming '{}' as group '{}' into {url}",
        args.topic, args.group
    );
    let started = Instant::now();
    let live: SharedLive = SharedLive::default();
    let downstream = match &sink {
        AnySink::Topic(next) => Some(next.monitor()),
        _ => None,
    };
    if let Some(addr) = args.metrics_addr {
        let (view, monitor) = (std::sync::Arc::clone(&live), consumer.monitor());
        let downstream = downstream.clone();
        let bound = flowgate_observe::serve(
            addr,
            std::sync::Arc::new(move || {
                let next = downstream.as_ref();
                Snapshot::Consumer(summary::snapshot(&view, &monitor, next, started))
            }),
            None,
        )
        .await?;
        info!("metrics on {bound}");
    }
    let emulation = args.max_rate.map(|r| Emulation {
        rate: r.0,
        burst: args.prefetch.clamp(1, (r.0 / 10).max(1)),
        stalls: None,
    });
    let mut driver = SinkDriver::new(
        consumer,
        sink,
        DriverConfig {
            max_batch: args.prefetch,
            max_batch_bytes: args.prefetch_bytes.0,
            commit_latency_target: args.commit_latency_target.0,
            max_attempts: args.max_attempts,
            idle_exit: args.idle_exit.map(|d| d.0),
            emulation,
            progress_every: args.progress_every.0,
        },
    )?;
    let mut s = ConsumeSummary::default();
    let mut last_report = Instant::now();
    let mut last_committed = 0;
    let stop_at = args.count.unwrap_or(u64::MAX);
    while s.driver.committed < stop_at {
        match driver
            .step_until(&mut std::pin::pin!(shutdown.wait()))
            .await?
        {
            Outcome::Committed(_) => {}
            Outcome::Ended => break,
            Outcome::Idle => {
                if let Some(d) = args.idle_exit {
                    info!("nothing received for {d}; stopping");
                }
                break;
            }
            Outcome::Stopped => {
                let why = shutdown.fired().unwrap_or("asked to stop");
                info!("{why}: stopping after the commit in flight, its acks sent");
                break;
            }
        }
        s.record(driver.stats());
        if let Ok(mut l) = live.lock() {
            *l = s.clone();
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            s.log_progress(started, last_committed, last_report.elapsed());
            last_report = Instant::now();
            last_committed = s.driver.committed;
        }
    }
    s.record(driver.stats());
    let (consumer, sink) = driver.into_parts();
    let stats = consumer.close().await;
    let held_back = downstream.map_or(Duration::ZERO, |m| m.stats().waited);
    if let AnySink::Topic(next) = sink {
        next.close().await?;
    }
    s.finish(started, &stats, held_back);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&s)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    Ok(())
}
