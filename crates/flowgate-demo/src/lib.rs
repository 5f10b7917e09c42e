//! `flowgate demo`, as a library the binary dispatches to: the 10,000/s producer and the 1,000/s database, without and with
//! backpressure, each as a real process under a real memory limit, measured live and checked
//! against the database file.
//!
//! | file | responsibility |
//! |---|---|
//! | `mode.rs` | the modes and the pipe each one builds |
//! | `worker.rs` | the pipeline process: producer → pipe → consumer → SQLite |
//! | `sample.rs` | the JSON lines the pipeline reports on |
//! | `supervisor.rs` | runs one mode as a child process, shows it live, sees how it ended |
//! | `memlimit.rs` | the cgroup (or rlimit) memory limit |
//! | `database.rs` | the SQLite file or PostgreSQL database the demo commits to |
//! | `result.rs` | one run's measured figures (the `--json` schema) |
//! | `summary.rs` | the side-by-side table |
//! | `report.rs` | the self-contained HTML report with charts |
//! | `pattern.rs` | the emulated database's behaviour: steady, bursty, down then back |
//! | `matrix.rs` | `--matrix`: every behaviour against naive, drop-newest and backpressure |
//! | `distributed.rs` | `--distributed`: broker, producer and consumer as three processes |
//! | `chain.rs` | `--chain`: producer, enrich stage and database stage as processes, one slow |

mod chain;
mod database;
mod distributed;
mod matrix;
mod memlimit;
mod mode;
mod pattern;
mod report;
mod result;
mod sample;
mod summary;
mod supervisor;
mod worker;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use flowgate_core::Event;

pub(crate) use database::Database;
pub(crate) use memlimit::LimitWith;
pub(crate) use mode::Mode;
use supervisor::RunConfig;
pub use worker::{WorkerArgs, run as run_worker};

use flowgate_observe::units::{Rate, Size, Span, human_bytes};

/// Exit code when a bounded mode crashed or lost events: flowgate broke its promise.
pub const EXIT_PROMISE_BROKEN: u8 = 3;

/// How long each mode runs by default: long enough for the naive queue to reach the default
/// 64 MiB limit (about 12 s at 10,000/s) and for backpressure to show a steady state.
const DEFAULT_DURATION: std::time::Duration = std::time::Duration::from_secs(30);

/// How long each matrix cell runs by default: twelve cells at 8 s take about two minutes.
const MATRIX_CELL: std::time::Duration = std::time::Duration::from_secs(8);

/// The smallest memory limit a pipeline process can start under (runtime, SQLite, buffers).
const MIN_MEMORY_LIMIT: u64 = 16 << 20;

const DEMO_EXAMPLES: &str = "\
Examples:
  flowgate demo
      naive, then backpressure, 30 s each, side by side
  flowgate demo --mode backpressure --duration 10s --json run.json
  flowgate demo --mode drop-oldest --queue-capacity 500 --consumer-rate 200
  flowgate demo --mode naive --memory-limit 48MiB --payload-size 4KiB
  flowgate demo --matrix
      every consumer behaviour x naive, drop-newest, backpressure: when is backpressure needed?
  flowgate demo --distributed --duration 60s
      broker, producer and consumer as three processes on loopback
  flowgate demo --chain --slow middle
      producer -> orders -> enrich stage -> enriched -> database, the enrich stage slow:
      every stage held to it, and the slowest named

The memory limit is enforced for real: each mode's pipeline runs as a child process in a
memory cgroup of its own (the kernel OOM-kills it past the limit), or, where no cgroup can
be made, under RLIMIT_DATA (an allocation past the limit aborts it).

Exit status: 0 when every run completed (a naive crash is the expected outcome),
3 when a bounded mode crashed or lost events, 1 on any other error, 2 on bad flags.";

/// Flags of `flowgate demo`.
#[derive(Debug, Args)]
#[command(after_help = DEMO_EXAMPLES)]
pub struct DemoArgs {
    /// Which pipeline to run.
    #[arg(long, value_enum, default_value_t = Mode::Compare)]
    mode: Mode,
    /// Events the producer makes per second (it waits when it has no credit).
    #[arg(long, default_value = "10000", value_name = "N[/s]")]
    producer_rate: Rate,
    /// Events the database absorbs per second (the slow stage).
    #[arg(long, default_value = "1000", value_name = "N[/s]")]
    consumer_rate: Rate,
    /// How long the producer runs in each mode [default: 30s; 8s per cell with --matrix].
    #[arg(long)]
    duration: Option<Span>,
    /// Queue bound in events (bounded modes).
    #[arg(long, default_value_t = 1000, value_name = "EVENTS")]
    queue_capacity: u64,
    /// Queue bound in bytes (bounded modes).
    #[arg(long, default_value = "8MiB", value_name = "SIZE")]
    queue_bytes: Size,
    /// Payload bytes per event.
    #[arg(long, default_value = "512B", value_name = "SIZE")]
    payload_size: Size,
    /// Memory limit of each pipeline process.
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    memory_limit: Size,
    /// How long the consumer may keep committing after the producer stops.
    #[arg(long, default_value = "10s")]
    drain_timeout: Span,
    /// How to enforce --memory-limit: a memory cgroup where one can be made, else
    /// RLIMIT_DATA (auto); or insist on one.
    #[arg(long, value_enum, default_value_t = LimitWith::Auto)]
    limit_with: LimitWith,
    /// Database to commit to: a SQLite file path (default: one in the temp dir) or a
    /// postgres://USER@HOST:PORT/DB URL. One table per mode, recreated each run.
    #[arg(long, value_name = "PATH|URL")]
    db: Option<String>,
    /// Run every consumer behaviour (faster, slower, bursty, down then back) against naive,
    /// drop-newest and backpressure, and print the measured matrix.
    #[arg(long, conflicts_with = "distributed")]
    matrix: bool,
    /// Run the backpressure pipeline as three processes on loopback (broker, producer,
    /// consumer) instead of in one process; --queue-* set the broker's topic capacity.
    #[arg(long)]
    distributed: bool,
    /// Run a chain of stages as processes on loopback: producer -> topic orders -> enrich
    /// stage (flowgate relay) -> topic enriched -> database; --slow picks which stage runs at
    /// --consumer-rate, and the summary shows every stage held to it.
    #[arg(long, conflicts_with_all = ["distributed", "matrix"])]
    chain: bool,
    /// With --chain: the slow stage.
    #[arg(long, value_enum, default_value_t = chain::Slow::Middle, requires = "chain")]
    slow: chain::Slow,
    /// Write the HTML report (charts over time, modes side by side) here [default:
    /// report.html beside the default database, in the temp dir].
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Write the measured results as a JSON array, one object per mode.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

impl DemoArgs {
    fn validate(&self) -> Result<RunConfig> {
        if self.queue_capacity == 0 {
            bail!("--queue-capacity 0 can hold no event; give at least 1");
        }
        let template = Event {
            id: flowgate_core::EventId::default(),
            key: None,
            created_us: 0,
            payload: vec![0; usize::try_from(self.payload_size.0).unwrap_or(usize::MAX)],
        };
        let event_bytes = template.size_bytes();
        if self.queue_bytes.0 < event_bytes {
            bail!(
                "--queue-bytes {} cannot hold one event of {} (--payload-size {} plus the record); give at least {}",
                self.queue_bytes,
                human_bytes(event_bytes),
                self.payload_size,
                human_bytes(event_bytes)
            );
        }
        if self.memory_limit.0 < MIN_MEMORY_LIMIT {
            bail!(
                "--memory-limit {} is below the {} a pipeline process needs to start",
                self.memory_limit,
                human_bytes(MIN_MEMORY_LIMIT)
            );
        }
        let db = match &self.db {
            Some(s) => Database::parse(s)?,
            None => Database::default_sqlite()?,
        };
        Ok(RunConfig {
            producer_rate: self.producer_rate.0,
            consumer_rate: self.consumer_rate.0,
            duration: match self.duration {
                Some(d) => d.0,
                None if self.matrix => MATRIX_CELL,
                None => DEFAULT_DURATION,
            },
            drain_timeout: self.drain_timeout.0,
            queue_capacity: self.queue_capacity,
            queue_bytes: self.queue_bytes.0,
            payload_size: self.payload_size.0,
            memory_limit: self.memory_limit.0,
            limit_with: self.limit_with,
            pattern: pattern::Pattern::Steady,
            db,
        })
    }
}

/// The flags parse but cannot work together; says why (the command exits 2 on it).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct BadFlags(anyhow::Error);

/// Runs the demo; returns the process exit code: 0 when every run completed (a naive crash
/// is the expected outcome), [`EXIT_PROMISE_BROKEN`] when a bounded mode crashed or lost
/// events. Flags that cannot work together are a [`BadFlags`] error.
pub fn run(args: DemoArgs) -> Result<u8> {
    let config = args
        .validate()
        .map_err(|e| anyhow::Error::new(BadFlags(e)))?;
    if args.distributed {
        return distributed::run(&config, args.json.as_deref());
    }
    if args.chain {
        return chain::run(&config, args.slow, args.json.as_deref());
    }
    if args.matrix {
        return matrix::run(&config, args.json.as_deref());
    }
    eprintln!(
        "flowgate demo: producer {}/s -> queue -> consumer {}/s -> {}; {} per mode, memory limit {}",
        config.producer_rate,
        config.consumer_rate,
        config.db,
        humantime::format_duration(config.duration),
        args.memory_limit,
    );
    let mut results = Vec::new();
    for mode in args.mode.runs() {
        let result = supervisor::run_mode(&config, mode)?;
        eprintln!(
            "{:>13} limit enforced by {}",
            mode.name(),
            result.memory_limit_mechanism
        );
        results.push(result);
    }
    println!();
    print!("{}", summary::render(&results, config.consumer_rate));
    println!("\nrows are in {} (one table per mode)", config.db);
    let report_path = match &args.report {
        Some(p) => p.clone(),
        None => {
            let dir = std::env::temp_dir().join("flowgate-demo");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.join("report.html")
        }
    };
    let headline = format!(
        "Producer {}/s, consumer {}/s committing to {}; {} per mode; memory limit {} ({}).",
        config.producer_rate,
        config.consumer_rate,
        config.db,
        humantime::format_duration(config.duration),
        args.memory_limit,
        results.first().map_or("", |r| r.memory_limit_mechanism),
    );
    std::fs::write(&report_path, report::render(&results, &headline)?)
        .with_context(|| format!("cannot write --report {}", report_path.display()))?;
    println!("report written to {}", report_path.display());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&results)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    let broken = results
        .iter()
        .any(|r| r.mode != Mode::Naive.name() && (r.crashed || r.lost > 0));
    Ok(if broken { EXIT_PROMISE_BROKEN } else { 0 })
}
