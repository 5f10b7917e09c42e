//! `flowgate produce`: publish generated events at a rate, or one event per line of an NDJSON
//! file or standard input, waiting for credit as the broker grants it; at the end (or when
//! asked to stop), wait for every confirm and report measured figures.

mod generate;
mod lines;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use flowgate_client::{AnyProducer, ClientError, ProducerConfig, Publish};
use flowgate_core::{Event, EventId};
use flowgate_observe::Snapshot;
use flowgate_observe::units::{Rate, Size, Span};
use tracing::{info, warn};

use crate::dial_args::DialArgs;
use crate::fail::bad_input;
use crate::shutdown::Shutdown;
use report::{ProduceSummary, Progress};

const EXAMPLES: &str = "\
Examples:
  flowgate produce --broker 127.0.0.1:7070 --topic orders --rate 10000 --count 100000
  flowgate produce --broker 127.0.0.1:7070 --topic orders --rate 5000 --duration 60s --json p.json
  flowgate produce --broker 127.0.0.1:7070 --topic orders --from events.ndjson
  tail -f app.log.ndjson | flowgate produce --broker 127.0.0.1:7070 --topic logs --from -

--rate is an upper bound: the producer sends no faster than the broker grants credit.
With --from, a line that is not UTF-8, not one JSON value, or larger than one event may be is
reported with its number and skipped, and the exit status is 1; a leading byte-order mark is
ignored. Rerun over the same file with the same --producer-id, a producer skips the lines the
broker already holds, so a run killed midway and rerun sends every line exactly once. From
standard input a rerun cannot skip: it numbers its lines after the broker's resume point.
Give --producer-id to a restarted producer to continue its sequence without duplicates.
With --key-field NAME each line's NAME field is its event's key (for a topic that conflates).
When the topic's policy is reject and it is full, the broker refuses events instead of making
the producer wait: they are counted ('refused' in the summary), and the exit status is 1.
On SIGTERM or Ctrl-C it stops sending, waits for the broker to confirm what it sent, and
exits 0 with its summary.";

/// Flags of `flowgate produce`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    dial: DialArgs,
    /// Topic to publish to.
    #[arg(long)]
    topic: String,
    /// Events per second at most (generated events).
    #[arg(long, default_value = "1000", value_name = "N[/s]")]
    rate: Rate,
    /// Stop after this many events (generated events).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this long (generated events).
    #[arg(long)]
    duration: Option<Span>,
    /// Payload size of generated events: at most one frame to the broker, its frame limit
    /// less 37 bytes (1,048,539 bytes under the default 1 MiB); larger is refused with exit 2.
    #[arg(long, default_value = "100B", value_name = "SIZE")]
    payload_size: Size,
    /// Publish one event per line of this NDJSON file ('-' for standard input).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["count", "duration"])]
    from: Option<PathBuf>,
    /// Give each event (of --from) the value of this JSON field as its key: a string's text,
    /// any other value's JSON; a line without it has no key. A topic whose policy is
    /// conflate keeps only the newest waiting event per key.
    #[arg(long, value_name = "NAME", requires = "from")]
    key_field: Option<String>,
    /// Producer instance id (hex); default: a fresh random one.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_id)]
    producer_id: Option<u64>,
    /// Serve /stats (JSON, for `flowgate top`) and /metrics (Prometheus) on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Write a summary of measured figures here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

pub(crate) fn parse_hex_id(s: &str) -> Result<u64, String> {
    let id = u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|_| format!("'{s}' is not a hex producer id, e.g. 2a or 0x2a"))?;
    if id == 0 {
        return Err("producer id 0 is reserved; pick any other".into());
    }
    Ok(id)
}

/// Exits 1 when lines of --from were rejected (each is reported), else 0.
pub(crate) fn run(args: ProduceArgs) -> Result<u8> {
    if args.from.is_none() && args.count.is_none() && args.duration.is_none() {
        return Err(bad_input(
            "give --count N or --duration D for generated events, or --from FILE",
        ));
    }
    let runtime = crate::runtime()?;
    runtime.block_on(produce(args))
}

/// A producing run: the producer, the stop signal, and what was measured on the way.
struct Run {
    producer: AnyProducer,
    shutdown: Shutdown,
    started: Instant,
    first_seq: u64,
    rejected_lines: u64,
    /// `--key-field`.
    key_field: Option<String>,
    progress: Progress,
    /// (seconds, events sent) after each burst, for the steady rate.
    pace: Vec<(f64, f64)>,
    /// Nanoseconds slept for the rate (idle: nothing to send yet).
    slept: Arc<AtomicU64>,
}

impl Run {
    /// Sends one payload once there is credit, unless asked to stop first (`None`). `send`
    /// is cancel safe: an event not yet paid for is simply not produced.
    async fn send(
        &mut self,
        payload: Vec<u8>,
        key: Option<Vec<u8>>,
    ) -> Option<Result<EventId, ClientError>> {
        if let Some(why) = self.shutdown.fired() {
            info!("{why}: stopping; nothing more is sent");
            return None;
        }
        // The send first: with credit in hand it is ready at once, and the stop is looked
        // at only while it waits (and before each send, above).
        let sent = tokio::select! {
            biased;
            sent = self.producer.send(Event { id: EventId::default(), key, created_us: 0, payload }) => sent,
            why = self.shutdown.wait() => {
                info!("{why}: stopping; nothing more is sent");
                return None;
            }
        };
        if let Ok(id) = &sent
            && self.first_seq == 0
        {
            self.first_seq = id.seq;
        }
        Some(sent.map_err(ClientError::from))
    }

    /// Events sent so far.
    fn producer_sent(&self) -> u64 {
        self.producer.stats().sent
    }

    /// Records progress after a burst.
    fn tick(&mut self, sent: u64) {
        self.progress.tick(&self.producer, self.started);
        self.pace
            .push((self.started.elapsed().as_secs_f64(), sent as f64));
    }
}

async fn produce(args: ProduceArgs) -> Result<u8> {
    let shutdown = Shutdown::new();
    let config = ProducerConfig {
        producer_id: args.producer_id,
        token: args.dial.token(),
        tls: args.dial.tls()?,
        ..ProducerConfig::new(&args.dial.broker, &args.topic)
    };
    let producer = AnyProducer::connect(config).await.with_context(|| {
        format!(
            "cannot publish to topic '{}' at {}",
            args.topic, args.dial.broker
        )
    })?;
    let largest = producer.largest_payload();
    if args.from.is_none() && args.payload_size.0 > largest {
        return Err(bad_input(format!(
            "--payload-size {} ({} bytes) is larger than the largest event topic '{}' at {} \
             accepts: {largest} bytes of payload (what one frame of the broker's limit and one \
             grant of the topic hold); nothing was sent",
            args.payload_size, args.payload_size.0, args.topic, args.dial.broker
        )));
    }
    let pid = producer.producer_id();
    info!(
        "producer {pid:016x} publishing to '{}' at {}",
        args.topic, args.dial.broker
    );
    let mut run = Run {
        producer,
        shutdown,
        started: Instant::now(),
        first_seq: 0,
        rejected_lines: 0,
        key_field: args.key_field.clone(),
        progress: Progress::new(),
        pace: Vec::new(),
        slept: Arc::new(AtomicU64::new(0)),
    };
    if let Some(addr) = args.metrics_addr {
        let (monitor, slept, started) =
            (run.producer.monitor(), Arc::clone(&run.slept), run.started);
        let bound = flowgate_observe::serve(
            addr,
            Arc::new(move || Snapshot::Producer(report::snapshot(&monitor, &slept, started, pid))),
            None,
        )
        .await?;
        info!("metrics on {bound}");
    }
    let sending = match &args.from {
        Some(path) => lines::send_lines(&mut run, path).await,
        None => generate::send_generated(&mut run, &args).await,
    };
    let producing = run.started.elapsed();
    // On every way out, the confirms of what was sent are waited for, or counted.
    let unconfirmed = run.producer.unconfirmed();
    info!("waiting for the broker to confirm {unconfirmed} events");
    let closed = run.producer.close().await;
    let stats = match (sending, closed) {
        (Ok(()), Ok(stats)) => stats,
        (Err(e), Ok(stats)) => {
            return Err(e.context(format!(
                "stopped after {} events, every one confirmed (up to seq {})",
                stats.sent, stats.confirmed_seq
            )));
        }
        (_, Err(e)) => {
            return Err(anyhow::Error::new(e)
                .context(format!("{unconfirmed} events sent were not confirmed")));
        }
    };
    let summary = ProduceSummary::new(
        pid,
        &stats,
        producing,
        run.first_seq,
        run.rejected_lines,
        &run.pace,
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    if stats.refused > 0 {
        warn!(
            "the broker refused {} events: topic '{}' was full and its policy is reject; they were not stored",
            stats.refused, args.topic
        );
    }
    Ok(if run.rejected_lines > 0 || stats.refused > 0 {
        1
    } else {
        0
    })
}
