//! The pipeline process: a producer task, the in-process pipe, and a consumer task that
//! commits to SQLite, with a sampler that prints one [`Sample`] line every 100 ms.
//!
//! It runs under the memory limit its supervisor prepared, and is meant to be able to die of
//! it: everything it knows is on stdout before that happens.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use flowgate_client::inproc::{Consumer, Observer, Producer, pipe};
use flowgate_core::{Credit, Event, EventId, TokenBucket};
use flowgate_sink::driver::{Emulation, Pipe};
use flowgate_sink::{AnySink, DriverConfig, Outcome, SinkDriver};

use super::memlimit;
use super::mode::Mode;
use super::pattern::Pattern;
use super::sample::{Phase, Sample};
use flowgate_observe::procfs;

/// How often the pipeline reports. Short, so that a process killed by the OOM killer has
/// reported figures at most this old.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The consumer commits this many batches per second at its rate: large enough batches to
/// amortise a transaction, small enough that a batch is a tenth of a second of work.
const BATCHES_PER_SEC: u64 = 10;

/// The producer's burst, as a share of its rate: 10 ms of events, so it never sends more
/// than that at once after a pause.
const PRODUCER_BURST_DIVISOR: u64 = 100;

/// Arguments the supervisor passes to the pipeline process (`flowgate demo-worker`).
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub(crate) mode: Mode,
    #[arg(long)]
    pub(crate) producer_rate: u64,
    #[arg(long)]
    pub(crate) consumer_rate: u64,
    /// Producing time in milliseconds.
    #[arg(long)]
    pub(crate) duration_ms: u64,
    /// The longest the consumer keeps committing after the producer stops, in milliseconds.
    #[arg(long)]
    pub(crate) drain_ms: u64,
    #[arg(long)]
    pub(crate) queue_capacity: u64,
    #[arg(long)]
    pub(crate) queue_bytes: u64,
    #[arg(long)]
    pub(crate) payload_size: u64,
    #[arg(long)]
    pub(crate) memory_limit: u64,
    #[arg(long)]
    pub(crate) cgroup: Option<PathBuf>,
    #[arg(long)]
    pub(crate) db: String,
    #[arg(long, value_enum, default_value_t = Pattern::Steady)]
    pub(crate) pattern: Pattern,
}

/// Counters shared by the tasks and read by the sampler.
struct Counters {
    produced: AtomicU64,
    committed: AtomicU64,
    producer_waited_ns: AtomicU64,
    producer_active_ns: AtomicU64,
    producer_done: std::sync::atomic::AtomicBool,
    /// End-to-end latency of the committed events, p50 and p99 in milliseconds.
    latency_ms: Mutex<(f64, f64)>,
}

/// Runs the pipeline to the end (or to its death) and returns.
pub fn run(args: WorkerArgs) -> Result<()> {
    memlimit::apply_to_self(args.cgroup.as_deref(), args.memory_limit)?;
    let db = super::Database::parse(&args.db)?;
    let url = db.sink(&args.mode.table());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let sink = AnySink::open_fresh(&url)
            .await
            .with_context(|| format!("cannot prepare {url}"))?;
        let capacity = Credit::new(args.queue_capacity, args.queue_bytes);
        let (tx, rx) = pipe(args.mode.pipe_config(capacity));
        let observer = tx.observer();
        let counters = Arc::new(Counters {
            produced: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            producer_waited_ns: AtomicU64::new(0),
            producer_active_ns: AtomicU64::new(0),
            producer_done: std::sync::atomic::AtomicBool::new(false),
            latency_ms: Mutex::new((0.0, 0.0)),
        });
        let start = Instant::now();
        let sampler = tokio::spawn(sample_loop(start, observer.clone(), Arc::clone(&counters)));
        let producer = tokio::spawn(produce(tx, args.clone(), start, Arc::clone(&counters)));
        let consumer = consume(rx, sink, &args, Arc::clone(&counters));
        let deadline = Duration::from_millis(args.duration_ms + args.drain_ms);
        // The consumer stops when the producer is gone and the queue is drained, or when the
        // drain deadline passes with events still queued (they are reported, not hidden).
        let consumed = tokio::time::timeout_at((start + deadline).into(), consumer).await;
        producer.await.context("producer task failed")?;
        if let Ok(result) = consumed {
            result?;
        }
        sampler.abort();
        emit(&measure(start, &observer, &counters, Phase::Done));
        anyhow::Ok(())
    })
}

async fn produce(mut tx: Producer, args: WorkerArgs, start: Instant, counters: Arc<Counters>) {
    let burst = (args.producer_rate / PRODUCER_BURST_DIVISOR).max(1);
    let Ok(mut bucket) = TokenBucket::new(args.producer_rate, burst, Duration::ZERO) else {
        return;
    };
    let duration = Duration::from_millis(args.duration_ms);
    let payload_len = usize::try_from(args.payload_size).unwrap_or(usize::MAX);
    let mut next_id = 0u64;
    while start.elapsed() < duration {
        let n = bucket.take_up_to(burst, start.elapsed());
        if n == 0 {
            let wait = bucket.time_until(1, start.elapsed());
            tokio::time::sleep(wait).await;
            continue;
        }
        for _ in 0..n {
            next_id += 1;
            // Distinct bytes per event so nothing can be deduplicated or compressed away.
            let fill = u8::try_from(next_id % 251).unwrap_or(0);
            let event = Event {
                id: EventId::new(0, next_id),
                key: None,
                created_us: flowgate_client::unix_now_us(),
                payload: vec![fill; payload_len],
            };
            if tx.send(event).await.is_err() {
                // The consumer is gone (the run is ending); nothing more can be delivered.
                counters.producer_done.store(true, Ordering::Relaxed);
                return;
            }
            counters.produced.fetch_add(1, Ordering::Relaxed);
            let waited = u64::try_from(tx.stats().waited.as_nanos()).unwrap_or(u64::MAX);
            counters.producer_waited_ns.store(waited, Ordering::Relaxed);
            let active = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            counters.producer_active_ns.store(active, Ordering::Relaxed);
        }
    }
    counters.producer_done.store(true, Ordering::Relaxed);
}

/// The consumer: the same [`SinkDriver`] as `flowgate consume`, over the pipe, into SQLite,
/// with the emulated database's rate and stalls.
async fn consume(
    rx: Consumer,
    sink: AnySink,
    args: &WorkerArgs,
    counters: Arc<Counters>,
) -> Result<()> {
    let batch = (args.consumer_rate / BATCHES_PER_SEC).max(1);
    let (pattern, duration) = (args.pattern, Duration::from_millis(args.duration_ms));
    let config = DriverConfig {
        max_batch: batch,
        max_batch_bytes: args.queue_bytes.max(1),
        // The pipe cannot deliver an event again: a refused event is a dead letter at once.
        max_attempts: 1,
        // The emulated database absorbs `consumer_rate` events per second, a batch at a
        // time, and takes nothing while it is stalled.
        emulation: Some(Emulation {
            rate: args.consumer_rate,
            burst: batch,
            stalls: Some(Arc::new(move |t| pattern.stalled_until(t, duration))),
        }),
        ..DriverConfig::new()
    };
    let mut driver = SinkDriver::new(Pipe(rx), sink, config).context("consumer")?;
    loop {
        // The sink runs SQLite's blocking commit in place (see `AnySink::write_batch`).
        match driver.step().await.context("database commit")? {
            Outcome::Committed(_) => {}
            Outcome::Ended | Outcome::Idle | Outcome::Stopped => return Ok(()),
        }
        let stats = driver.stats();
        counters.committed.store(stats.committed, Ordering::Relaxed);
        if let Ok(mut latency) = counters.latency_ms.lock() {
            *latency = (stats.e2e_latency_ms_p50, stats.e2e_latency_ms_p99);
        }
    }
}

async fn sample_loop(start: Instant, observer: Observer, counters: Arc<Counters>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let phase = if counters.producer_done.load(Ordering::Relaxed) {
            Phase::Draining
        } else {
            Phase::Running
        };
        emit(&measure(start, &observer, &counters, phase));
    }
}

fn measure(start: Instant, observer: &Observer, counters: &Counters, phase: Phase) -> Sample {
    let q = observer.queue_stats();
    let rss = procfs::own_rss();
    let (p50, p99) = counters.latency_ms.lock().map_or((0.0, 0.0), |l| *l);
    Sample {
        t: start.elapsed().as_secs_f64(),
        phase,
        produced: counters.produced.load(Ordering::Relaxed),
        committed: counters.committed.load(Ordering::Relaxed),
        dropped: q.dropped(),
        queued: q.queued,
        queued_bytes: q.queued_bytes,
        peak_queue_depth: q.peak_events,
        peak_queue_bytes: q.peak_bytes,
        rss_bytes: rss.now,
        peak_rss_bytes: rss.peak,
        producer_waited_s: counters.producer_waited_ns.load(Ordering::Relaxed) as f64 / 1e9,
        producer_active_s: counters.producer_active_ns.load(Ordering::Relaxed) as f64 / 1e9,
        latency_ms_p50: p50,
        latency_ms_p99: p99,
    }
}

fn emit(sample: &Sample) {
    if let Ok(line) = serde_json::to_string(sample) {
        let mut out = std::io::stdout().lock();
        // A supervisor that stopped listening cannot be helped; the run goes on regardless.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
