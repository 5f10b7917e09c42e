//! `flowgate produce`: publish generated events at a rate, or one event per line of an NDJSON
//! file or standard input, waiting for credit as the broker grants it; at the end, wait for
//! every confirm and report measured figures.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flowgate_client::{AnyProducer, ClientError, Monitor, ProducerConfig, ProducerStats, Publish};
use flowgate_core::TokenBucket;
use flowgate_observe::{ProducerSnapshot, Snapshot};
use serde::Serialize;

use crate::dial_args::DialArgs;
use crate::fail::bad_input;
use flowgate_observe::units::{Rate, Size, Span};

const EXAMPLES: &str = "\
Examples:
  flowgate produce --broker 127.0.0.1:7070 --topic orders --rate 10000 --count 100000
  flowgate produce --broker 127.0.0.1:7070 --topic orders --rate 5000 --duration 60s --json p.json
  flowgate produce --broker 127.0.0.1:7070 --topic orders --from events.ndjson
  tail -f app.log.ndjson | flowgate produce --broker 127.0.0.1:7070 --topic logs --from -

--rate is an upper bound: the producer sends no faster than the broker grants credit.
With --from, each line must be one JSON value; a line that is not is reported (with its
number) and skipped, and the exit status is 1.
Give --producer-id to a restarted producer to continue its sequence without duplicates.";

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

/// The `/stats` document: the producer's own counters now (a wait for credit in progress
/// included) and the time it spent sleeping for its rate (idle: nothing to send yet).
fn snapshot(
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

fn parse_hex_id(s: &str) -> Result<u64, String> {
    let id = u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|_| format!("'{s}' is not a hex producer id, e.g. 2a or 0x2a"))?;
    if id == 0 {
        return Err("producer id 0 is reserved; pick any other".into());
    }
    Ok(id)
}

/// The `--json` summary.
#[derive(Debug, Serialize)]
pub(crate) struct ProduceSummary {
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
}

/// Runs the producer.
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

async fn produce(args: ProduceArgs) -> Result<u8> {
    let config = ProducerConfig {
        producer_id: args.producer_id,
        token: args.dial.token(),
        tls: args.dial.tls()?,
        ..ProducerConfig::new(&args.dial.broker, &args.topic)
    };
    let mut producer = AnyProducer::connect(config).await.with_context(|| {
        format!(
            "cannot publish to topic '{}' at {}",
            args.topic, args.dial.broker
        )
    })?;
    let largest = producer.largest_payload();
    if args.from.is_none() && args.payload_size.0 > largest {
        return Err(bad_input(format!(
            "--payload-size {} ({} bytes) is larger than the largest event the broker at {} \
             accepts: {largest} bytes of payload (one frame of its limit, less framing); nothing was sent",
            args.payload_size, args.payload_size.0, args.dial.broker
        )));
    }
    let pid = producer.producer_id();
    eprintln!(
        "producer {pid:016x} publishing to '{}' at {}",
        args.topic, args.dial.broker
    );
    let started = Instant::now();
    let slept = Arc::new(AtomicU64::new(0));
    if let Some(addr) = args.metrics_addr {
        let (monitor, slept) = (producer.monitor(), Arc::clone(&slept));
        let bound = flowgate_observe::serve(
            addr,
            Arc::new(move || Snapshot::Producer(snapshot(&monitor, &slept, started, pid))),
            None,
        )
        .await?;
        eprintln!("metrics on {bound}");
    }
    let mut first_seq = 0;
    let mut rejected_lines = 0;
    let mut progress = Progress::new();
    // (seconds, events sent) after each burst, for the steady rate.
    let mut pace: Vec<(f64, f64)> = Vec::new();
    if let Some(path) = &args.from {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Result<Vec<u8>, String>)>(1024);
        let path = path.clone();
        // Lines are read on a blocking thread; the bounded channel carries backpressure to it.
        let reader = tokio::task::spawn_blocking(move || read_lines(&path, &tx));
        while let Some((line_no, line)) = rx.recv().await {
            match line {
                Ok(payload) => match producer.send_payload(payload).await {
                    Ok(id) => {
                        if first_seq == 0 {
                            first_seq = id.seq;
                        }
                    }
                    Err(e @ ClientError::EventTooLarge { .. }) => {
                        rejected_lines += 1;
                        eprintln!("line {line_no}: {e}; skipped");
                    }
                    Err(e) => return Err(e.into()),
                },
                Err(why) => {
                    rejected_lines += 1;
                    eprintln!("line {line_no}: {why}; skipped");
                }
            }
            progress.tick(&producer, started);
            pace.push((
                started.elapsed().as_secs_f64(),
                producer.stats().sent as f64,
            ));
        }
        reader.await.context("reader thread")??;
    } else {
        let payload_len = usize::try_from(args.payload_size.0).unwrap_or(usize::MAX);
        let burst = (args.rate.0 / 100).max(1);
        let mut bucket = TokenBucket::new(args.rate.0, burst, Duration::ZERO)?;
        let limit = args.count.unwrap_or(u64::MAX);
        let deadline = args.duration.map(|d| started + d.0);
        let mut sent = 0u64;
        'producing: while sent < limit && deadline.is_none_or(|d| Instant::now() < d) {
            let n = bucket.take_up_to(burst.min(limit - sent), started.elapsed());
            if n == 0 {
                let nap = bucket.time_until(1, started.elapsed());
                tokio::time::sleep(nap).await;
                slept.fetch_add(
                    u64::try_from(nap.as_nanos()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                continue;
            }
            for _ in 0..n {
                let mut payload = vec![b'x'; payload_len];
                // A little of the sequence in the payload, so rows are distinguishable.
                let stamp = sent.to_string();
                let k = stamp.len().min(payload.len());
                payload[..k].copy_from_slice(&stamp.as_bytes()[..k]);
                // The deadline also ends a wait for credit (send is cancel safe: an event not
                // yet paid for is simply not produced).
                let send = producer.send_payload(payload);
                let id = match deadline {
                    Some(d) => match tokio::time::timeout_at(d.into(), send).await {
                        Ok(result) => result?,
                        Err(_) => break 'producing,
                    },
                    None => send.await?,
                };
                if first_seq == 0 {
                    first_seq = id.seq;
                }
                sent += 1;
            }
            progress.tick(&producer, started);
            pace.push((started.elapsed().as_secs_f64(), sent as f64));
        }
    }
    let producing = started.elapsed();
    eprintln!(
        "waiting for the broker to confirm {} events",
        producer.unconfirmed()
    );
    let stats = producer
        .close()
        .await
        .context("could not get every event confirmed")?;
    let summary = ProduceSummary {
        producer_id: format!("{pid:016x}"),
        sent: stats.sent,
        confirmed_seq: stats.confirmed_seq,
        first_seq,
        rejected_lines,
        duration_s: producing.as_secs_f64(),
        rate: stats.sent as f64 / producing.as_secs_f64().max(1e-9),
        rate_steady: flowgate_observe::fit::second_half_slope(&pace).unwrap_or(0.0),
        waited_s: stats.waited.as_secs_f64(),
        wait_ratio: (stats.waited.as_secs_f64() / producing.as_secs_f64().max(1e-9)).min(1.0),
        sessions: stats.sessions,
        resent: stats.resent,
    };
    eprintln!(
        "sent {} events in {:.1} s ({:.0}/s, {:.0}/s in the second half), confirmed up to seq {}, waited for credit {:.0}% of the time, {} session(s)",
        summary.sent,
        summary.duration_s,
        summary.rate,
        summary.rate_steady,
        summary.confirmed_seq,
        summary.wait_ratio * 100.0,
        summary.sessions
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    Ok(if rejected_lines > 0 { 1 } else { 0 })
}

/// Reads NDJSON lines, checking each is one JSON value, and hands them over in order.
fn read_lines(
    path: &std::path::Path,
    tx: &tokio::sync::mpsc::Sender<(u64, Result<Vec<u8>, String>)>,
) -> Result<()> {
    let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open --from {}", path.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    for (i, line) in input.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.with_context(|| format!("cannot read line {line_no}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let checked = serde_json::from_str::<serde::de::IgnoredAny>(&line)
            .map(|_| line.into_bytes())
            .map_err(|e| format!("not one JSON value ({e})"));
        if tx.blocking_send((line_no, checked)).is_err() {
            break;
        }
    }
    Ok(())
}

/// One progress line per second on stderr.
struct Progress {
    last: Instant,
    last_sent: u64,
}

impl Progress {
    fn new() -> Self {
        Progress {
            last: Instant::now(),
            last_sent: 0,
        }
    }

    fn tick(&mut self, producer: &impl Publish, started: Instant) {
        if self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        let stats = producer.stats();
        let rate = (stats.sent - self.last_sent) as f64 / self.last.elapsed().as_secs_f64();
        eprintln!(
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
