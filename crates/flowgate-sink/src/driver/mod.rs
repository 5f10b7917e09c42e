//! The feedback loop as a library: a [`SinkDriver`] receives a batch from a [`Source`],
//! commits it to an [`AnySink`], acknowledges what the database took, hands back (nacks) what
//! it refused, dead-letters what it refused on the last attempt, and feeds the commit's
//! latency to an [`AimdLimit`] whose limit becomes the source's demand. A database that slows
//! down asks for less, and the producer upstream feels it; one that recovers asks for more.
//!
//! A commit that fails for a reason that may pass (a lost connection, a full disk, a lock
//! timeout: [`SinkError::is_transient`](crate::SinkError::is_transient)) is tried again with
//! backoff, 100 ms doubling to 5 s, reconnecting as needed, while the batch stays unsettled;
//! any other failure ends the driver with [`DriverError::Commit`].
//!
//! ```text
//! Source::recv ─► [emulated pace] ─► AnySink::write_batch ─► verdicts ─► Source::settle
//!      ▲                                    │ latency
//!      └── Source::set_demand ◄── AimdLimit ┘
//! ```
//!
//! | module | responsibility |
//! |---|---|
//! | [`source`] | the [`Source`] trait, for any consumer of the client's seam and the in-process pipe |
//! | [`verdict`] | ack, retry or dead letter, per event (pure) |
//! | [`emulate`] | an emulated database pace: a rate, and stalls |
//! | [`stats`] | [`DriverStats`]: counts, the limit, latency quantiles |

pub mod emulate;
pub mod source;
pub mod stats;
pub mod verdict;

use std::future::Future;
use std::time::{Duration, Instant};

use flowgate_core::{AimdLimit, Backoff, Credit};

use crate::{AnySink, DeadLetter, SinkError};
pub use emulate::Emulation;
pub use source::{Batch, Pipe, Source};
pub use stats::DriverStats;
pub use verdict::Verdict;

/// The first wait before a failed commit is tried again; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between attempts of a failed commit.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// How a driver paces itself.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The largest batch, in events: the source's demand at most.
    pub max_batch: u64,
    /// Bytes asked for ahead of processing at most.
    pub max_batch_bytes: u64,
    /// Keep commits at most this slow: a slower commit halves the batch limit, a faster full
    /// one grows it by an eighth.
    pub commit_latency_target: Duration,
    /// Deliveries of an event the database refuses before it is dead-lettered.
    pub max_attempts: u32,
    /// Give up waiting for a batch after this long ([`Outcome::Idle`]).
    pub idle_exit: Option<Duration>,
    /// Emulate a database slower than the real sink.
    pub emulation: Option<Emulation>,
    /// While a batch is being committed (the emulated pace, the write, retries of a failed
    /// one), tell the source this often that it is in progress, so a broker's ack deadline
    /// (`--ack-wait`, 30 s by default) does not take it back. Keep it well below that.
    pub progress_every: Duration,
}

impl DriverConfig {
    /// Defaults: batches of up to 1,000 events / 8 MiB, a 250 ms commit target, 3 attempts.
    pub fn new() -> DriverConfig {
        DriverConfig {
            max_batch: 1_000,
            max_batch_bytes: 8 << 20,
            commit_latency_target: Duration::from_millis(250),
            max_attempts: 3,
            idle_exit: None,
            emulation: None,
            progress_every: Duration::from_secs(10),
        }
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a driver stopped with an error. A batch whose commit failed is not acknowledged: the
/// source delivers it again (a broker, to this consumer or another).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The configuration cannot work; names the setting.
    #[error("{0}")]
    Config(String),
    /// The source failed to deliver or to settle.
    #[error("the source failed: {0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The sink could not commit the batch, and trying again would not help.
    #[error("the sink failed for good; the batch is not acknowledged: {0}")]
    Commit(#[source] SinkError),
    /// The sink could not record dead letters.
    #[error("cannot record dead letters; the batch is not acknowledged: {0}")]
    DeadLetter(#[source] SinkError),
}

/// What one [`SinkDriver::step`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A batch was committed and settled.
    Committed(BatchReport),
    /// The source has ended.
    Ended,
    /// Nothing arrived within the idle limit.
    Idle,
    /// The stop given to [`SinkDriver::step_until`] came before a batch did.
    Stopped,
}

/// One committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Events in the batch.
    pub events: u64,
    /// Rows that were new.
    pub new_rows: u64,
    /// Events handed back for another attempt.
    pub retried: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// How long the commit (and dead letters) took.
    pub latency: Duration,
    /// The batch limit after this commit.
    pub batch_limit: u64,
}

/// Runs receive → commit → ack / nack / dead letter → limit → demand.
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate_client::{Consumer, ConsumerConfig};
/// use flowgate_sink::{AnySink, DriverConfig, SinkDriver};
///
/// let consumer = Consumer::connect(ConsumerConfig::new("127.0.0.1:7070", "orders", "db")).await?;
/// let sink = AnySink::open(&"sqlite:orders.db".parse()?).await?;
/// let mut driver = SinkDriver::new(consumer, sink, DriverConfig::new())?;
/// driver.run().await?;
/// # Ok(()) }
/// ```
pub struct SinkDriver<S: Source> {
    source: S,
    sink: AnySink,
    config: DriverConfig,
    limit: AimdLimit,
    pace: Option<emulate::Pace>,
    stats: DriverStats,
    latencies: stats::Latencies,
    started: Instant,
}

/// A stage of a chain: a [`SinkDriver`] whose sink is the next topic
/// ([`TopicSink`](crate::TopicSink)). It consumes from one topic, applies its
/// [`Transform`](crate::Transform), sends on, and acks its source only once the next topic
/// confirmed; the next topic's backpressure is its commit latency, so the slowest stage of a
/// chain, wherever it sits, sets the pace of every stage before it.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate_client::{AnyConsumer, AnyProducer, ConsumerConfig, ProducerConfig};
/// use flowgate_sink::{DriverConfig, Stage, Transform};
/// let from = AnyConsumer::connect(ConsumerConfig::new("127.0.0.1:7070", "raw", "enrich")).await?;
/// let to = AnyProducer::connect(ProducerConfig::new("127.0.0.1:7070", "enriched")).await?;
/// let upper = Transform::Fn(Box::new(|e| {
///     let payload = e.payload.to_ascii_uppercase();
///     Box::pin(async move { Ok(Some(payload)) })
/// }));
/// let mut stage = Stage::stage(from, to, upper, DriverConfig::new())?;
/// stage.run().await?;
/// # Ok(()) }
/// ```
pub type Stage<S> = SinkDriver<S>;

impl<S: Source> SinkDriver<S> {
    /// A [`Stage`]: from `source`, through `transform`, to the topic `next` sends to.
    pub fn stage(
        source: S,
        next: flowgate_client::AnyProducer,
        transform: crate::Transform,
        config: DriverConfig,
    ) -> Result<Self, DriverError> {
        let sink = AnySink::Topic(crate::TopicSink::new(next, transform));
        SinkDriver::new(source, sink, config)
    }

    /// A driver over `source` into `sink`; sets the source's demand to the largest batch.
    pub fn new(mut source: S, sink: AnySink, config: DriverConfig) -> Result<Self, DriverError> {
        if config.max_batch == 0 || config.max_batch_bytes == 0 || config.max_attempts == 0 {
            return Err(DriverError::Config(
                "the largest batch (events and bytes) and the attempts must be at least 1".into(),
            ));
        }
        let pace = match &config.emulation {
            Some(e) => Some(emulate::Pace::new(e).map_err(|err| {
                DriverError::Config(format!("emulated database rate {}: {err}", e.rate))
            })?),
            None => None,
        };
        let limit = AimdLimit::new(
            config.max_batch,
            1,
            config.max_batch,
            config.commit_latency_target,
        );
        source.set_demand(Credit::new(config.max_batch, config.max_batch_bytes));
        let stats = DriverStats {
            batch_limit: limit.limit(),
            ..DriverStats::default()
        };
        Ok(SinkDriver {
            source,
            sink,
            config,
            limit,
            pace,
            stats,
            latencies: stats::Latencies::new(),
            started: Instant::now(),
        })
    }

    /// Receives one batch, commits it, settles it and sets the next demand.
    ///
    /// # Cancel safety
    /// Not cancel safe once a batch is received: cancelling mid-commit leaves the batch
    /// unsettled (a broker delivers it again). Use [`DriverConfig::idle_exit`] to bound the
    /// wait instead of a timeout around this call.
    pub async fn step(&mut self) -> Result<Outcome, DriverError> {
        self.step_until(&mut std::future::pending::<()>()).await
    }

    /// As [`SinkDriver::step`], but stops waiting for a batch when `stop` completes
    /// ([`Outcome::Stopped`]). A batch already received is committed and settled whatever
    /// `stop` does, so a consumer asked to stop finishes the commit in flight and acks it.
    pub async fn step_until(
        &mut self,
        stop: &mut (impl Future + Unpin),
    ) -> Result<Outcome, DriverError> {
        let next = self.source.recv();
        let wait = async {
            match self.config.idle_exit {
                Some(limit) => tokio::time::timeout(limit, next).await.ok(),
                None => Some(next.await),
            }
        };
        let received = tokio::select! {
            biased;
            _ = &mut *stop => return Ok(Outcome::Stopped),
            received = wait => match received {
                Some(received) => received,
                None => return Ok(Outcome::Idle),
            },
        };
        let Some(Batch { events, tags }) = received.map_err(|e| DriverError::Source(e.into()))?
        else {
            return Ok(Outcome::Ended);
        };
        self.latencies.delivered(Instant::now());
        let n = events.len() as u64;
        self.stats.received += n;
        let every = self.config.progress_every;
        if let Some(pace) = &mut self.pace {
            let started = self.started;
            let absorb = pace.absorb(n, || started.elapsed());
            with_progress(&mut self.source, &tags, every, absorb).await;
        }

        let t0 = Instant::now();
        let commit = commit(&mut self.sink, &mut self.stats, &events, stop);
        let Some(result) = with_progress(&mut self.source, &tags, every, commit).await? else {
            // Stopped while the database was down: nothing settled, all of it comes again.
            return Ok(Outcome::Stopped);
        };
        let mut reasons: Vec<Option<String>> = vec![None; events.len()];
        for (i, reason) in result.rejected {
            reasons[i] = Some(reason);
        }
        let refused: Vec<bool> = reasons.iter().map(Option::is_some).collect();
        let attempts: Vec<u32> = tags.iter().map(|t| self.source.attempt(t)).collect();
        let verdicts = verdict::decide(&refused, &attempts, self.config.max_attempts);
        let (mut acks, mut nacks, mut letters) = (Vec::new(), Vec::new(), Vec::new());
        for (i, verdict) in verdicts.iter().enumerate() {
            match verdict {
                Verdict::Ack => acks.push(tags[i]),
                Verdict::Retry => nacks.push(tags[i]),
                Verdict::DeadLetter => {
                    letters.push(DeadLetter {
                        event: &events[i],
                        attempts: attempts[i],
                        reason: reasons[i].as_deref().unwrap_or_default(),
                    });
                    acks.push(tags[i]);
                }
            }
        }
        let dead = letters.len() as u64;
        if !letters.is_empty() {
            self.sink
                .dead_letter(&letters)
                .await
                .map_err(DriverError::DeadLetter)?;
        }
        let latency = t0.elapsed();
        self.latencies.committed(
            Instant::now(),
            latency,
            flowgate_client::unix_now_us(),
            events.iter().map(|e| e.created_us),
        );

        let (settled, retried) = (acks.len() as u64, nacks.len() as u64);
        self.source
            .settle(acks, nacks)
            .map_err(|e| DriverError::Source(e.into()))?;
        // The database's pace becomes the source's demand.
        let batch_limit = self.limit.on_commit(n, latency);
        self.source
            .set_demand(Credit::new(batch_limit, self.config.max_batch_bytes));

        let s = &mut self.stats;
        s.commits += 1;
        s.committed += settled;
        s.already_present += (settled - dead).saturating_sub(result.new_rows);
        s.dead_lettered += dead;
        s.retried += retried;
        s.batch_limit = batch_limit;
        s.batch_limit_cuts = self.limit.decreases();
        Ok(Outcome::Committed(BatchReport {
            events: n,
            new_rows: result.new_rows,
            retried,
            dead_lettered: dead,
            latency,
            batch_limit,
        }))
    }

    /// Steps until the source ends or the idle limit passes; returns which.
    ///
    /// With a stop: `run_until(&mut stop)` steps until `stop` completes too.
    pub async fn run(&mut self) -> Result<Outcome, DriverError> {
        self.run_until(&mut std::future::pending::<()>()).await
    }

    /// As [`SinkDriver::run`], ending also when `stop` completes ([`Outcome::Stopped`]),
    /// after the commit in flight.
    pub async fn run_until(
        &mut self,
        stop: &mut (impl Future + Unpin),
    ) -> Result<Outcome, DriverError> {
        loop {
            match self.step_until(stop).await? {
                Outcome::Committed(_) => {}
                end => return Ok(end),
            }
        }
    }

    /// What the driver has done so far.
    pub fn stats(&self) -> DriverStats {
        let mut stats = self.stats.clone();
        self.latencies.fill(&mut stats);
        stats
    }

    /// The source, to read its own figures.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Ends the driver, handing back the source (to close it) and the sink.
    pub fn into_parts(self) -> (S, AnySink) {
        (self.source, self.sink)
    }
}

/// Commits `events`, trying again with backoff while the failure is transient (the
/// batch stays unsettled meanwhile, so nothing is lost and the source holds it);
/// `Ok(None)` when `stop` completes first.
async fn commit(
    sink: &mut AnySink,
    stats: &mut DriverStats,
    events: &[crate::Event],
    stop: &mut (impl Future + Unpin),
) -> Result<Option<crate::Committed>, DriverError> {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut failures = 0u64;
    loop {
        let failure = match sink.write_batch(events).await {
            Ok(committed) => {
                if failures > 0 {
                    tracing::info!("commit succeeded after {failures} failed attempts");
                }
                stats.retrying = false;
                return Ok(Some(committed));
            }
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(DriverError::Commit(e)),
        };
        failures += 1;
        stats.commit_failures += 1;
        stats.retrying = true;
        let wait = backoff.fail();
        tracing::warn!(
            "commit of {} events failed: {failure}; trying again in {wait:?}, the batch unacknowledged",
            events.len()
        );
        tokio::select! {
            biased;
            _ = &mut *stop => return Ok(None),
            () = tokio::time::sleep(wait) => {}
        }
        if let Err(e) = sink.recover().await {
            if !e.is_transient() {
                return Err(DriverError::Commit(e));
            }
            tracing::warn!("cannot reach the database yet: {e}");
        }
    }
}

/// Runs `work` (a batch's commit), telling `source` every `every` that `tags` are still in
/// progress, so an ack deadline does not take the batch back while it is being written.
async fn with_progress<S: Source, R>(
    source: &mut S,
    tags: &[S::Tag],
    every: Duration,
    work: impl Future<Output = R>,
) -> R {
    tokio::pin!(work);
    let start = tokio::time::Instant::now() + every;
    let mut ticks = tokio::time::interval_at(start, every);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => source.progress(tags),
        }
    }
}
