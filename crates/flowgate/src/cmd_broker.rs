//! `flowgate broker`: serve bounded topics on a TCP address until interrupted, printing a
//! line of measured figures per topic every interval and, with `--json`, a summary at exit.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use flowgate_broker::{
    Broker, BrokerConfig, BrokerStats, DiskOptions, DiskStorage, MemoryStorage, Storage,
};
use flowgate_core::Credit;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::fail::bad_input;
use flowgate_observe::units::{Size, Span, human_bytes, thousands};
use flowgate_observe::{BrokerSnapshot, Snapshot, TopicSnapshot, dashboard, procfs};

const EXAMPLES: &str = "\
Examples:
  flowgate broker --listen 127.0.0.1:7070
  flowgate broker --listen 0.0.0.0:7070 --capacity 100000 --capacity-bytes 256MiB
  flowgate broker --listen 127.0.0.1:0 --config topics.toml --json broker.json
  flowgate broker --storage disk --data-dir /var/lib/flowgate --max-disk-bytes 10GiB
  flowgate broker --listen 0.0.0.0:7070 --config topics.toml --tls-cert broker.pem --tls-key broker.key

With --storage disk a producer's batch is confirmed only after it is fsynced to the topic's
log in --data-dir; a restarted broker recovers every confirmed, unacknowledged event. Memory
keeps --capacity per topic; a backlog beyond it waits on disk (up to --max-disk-bytes) and
is read back, in order, as consumers make room.
Tokens, each allowed to produce to and consume from named topics, are declared in the
--config file ([[token]] name, secret, produce, consume); with any declared, every client
needs one. With --tls-cert every client must use TLS.

The first line on stdout is 'listening on ADDR' (useful with port 0). Stops on Ctrl-C,
SIGTERM, after --duration, or with --stop-on-stdin-eof when its standard input closes.";

/// Flags of `flowgate broker`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct BrokerArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Events a topic (created on first use) holds in memory. With --storage disk, more wait
    /// on disk up to --max-disk-bytes and are read back as memory frees.
    #[arg(long, default_value_t = 10_000, value_name = "EVENTS")]
    capacity: u64,
    /// Bytes a topic (created on first use) holds in memory.
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    capacity_bytes: Size,
    /// TOML file declaring topics (and default capacity); see the crate docs for the format.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Largest frame accepted from a peer.
    #[arg(long, default_value = "1MiB", value_name = "SIZE")]
    max_frame: Size,
    /// A connection must send HELLO within this.
    #[arg(long, default_value = "5s")]
    handshake_timeout: Span,
    /// A connection that sends nothing for this long is closed.
    #[arg(long, default_value = "30s")]
    idle_timeout: Span,
    /// How often to print per-topic figures to stderr.
    #[arg(long, default_value = "1s")]
    stats_every: Span,
    /// Stop after this long.
    #[arg(long)]
    duration: Option<Span>,
    /// Stop when standard input reaches end of file (for supervisors).
    #[arg(long)]
    stop_on_stdin_eof: bool,
    /// Serve /stats (JSON, for `flowgate top`) and /metrics (Prometheus) on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Write a summary of measured figures here at exit.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Where accepted events are kept until acknowledged: memory (lost if the broker dies)
    /// or disk (a checksummed log per topic; confirms wait for fsync).
    #[arg(long, value_enum, default_value = "memory")]
    storage: StorageKind,
    /// Directory of the disk logs (required with --storage disk).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A topic's disk backlog: past this size of its log, producers get no more credit until
    /// acknowledgements free segments.
    #[arg(long, default_value = "1GiB", value_name = "SIZE")]
    max_disk_bytes: Size,
    /// Log segment size: a full segment is closed and removed once all of it is acknowledged.
    #[arg(long, default_value = "16MiB", value_name = "SIZE")]
    segment_bytes: Size,
    /// Serve TLS only, with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require every client to present a certificate signed by a CA in this PEM file.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

/// Where the broker keeps accepted events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StorageKind {
    /// In the broker's memory only.
    Memory,
    /// In an append-only log on disk, fsynced before each confirm.
    Disk,
}

/// The `--json` summary.
#[derive(Debug, Serialize)]
struct Summary {
    listen: String,
    duration_s: f64,
    connections_accepted: u64,
    errors_sent: std::collections::BTreeMap<&'static str, u64>,
    peak_rss_bytes: u64,
    /// RSS once a second, for judging whether memory stayed flat.
    rss_samples: Vec<u64>,
    storage: &'static str,
    recovery: RecoverySummary,
    topics: Vec<TopicSnapshot>,
}

#[derive(Debug, Serialize)]
struct RecoverySummary {
    topics: usize,
    events: u64,
    spilled: u64,
    corrupt_records: u64,
    truncated_bytes: u64,
    took_ms: f64,
}

impl BrokerArgs {
    fn config(&self) -> Result<BrokerConfig> {
        if self.capacity == 0 || self.capacity_bytes.0 == 0 {
            anyhow::bail!("--capacity and --capacity-bytes must be at least 1");
        }
        let max_frame = u32::try_from(self.max_frame.0)
            .ok()
            .filter(|m| *m >= flowgate_proto::MIN_MAX_FRAME)
            .with_context(|| {
                format!(
                    "--max-frame {} must be between {} and 4 GiB",
                    self.max_frame,
                    human_bytes(u64::from(flowgate_proto::MIN_MAX_FRAME))
                )
            })?;
        let mut config = BrokerConfig {
            default_capacity: Credit::new(self.capacity, self.capacity_bytes.0),
            max_frame,
            handshake_timeout: self.handshake_timeout.0,
            idle_timeout: self.idle_timeout.0,
            ..BrokerConfig::default()
        };
        if let Some(path) = &self.config {
            config.load_file(path)?;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let tls = flowgate_proto::tls::server_config(cert, key, self.tls_client_ca.as_deref())
                .context("cannot set up TLS")?;
            config.tls = Some(tls);
        }
        Ok(config)
    }

    fn storage(&self) -> Result<Arc<dyn Storage>> {
        match (self.storage, &self.data_dir) {
            (StorageKind::Memory, None) => Ok(Arc::new(MemoryStorage)),
            (StorageKind::Memory, Some(_)) => {
                anyhow::bail!("--data-dir is only used with --storage disk")
            }
            (StorageKind::Disk, None) => anyhow::bail!("--storage disk needs --data-dir DIR"),
            (StorageKind::Disk, Some(dir)) => {
                if self.segment_bytes.0 < 4096 || self.max_disk_bytes.0 < self.segment_bytes.0 {
                    anyhow::bail!(
                        "--segment-bytes must be at least 4KiB and --max-disk-bytes at least one segment"
                    );
                }
                Ok(Arc::new(DiskStorage::locked(DiskOptions {
                    data_dir: dir.clone(),
                    max_disk_bytes: self.max_disk_bytes.0,
                    segment_bytes: self.segment_bytes.0,
                })?))
            }
        }
    }
}

/// Runs the broker until told to stop.
pub(crate) fn run(args: BrokerArgs) -> Result<()> {
    let config = args
        .config()
        .and_then(|c| Ok((c, args.storage()?)))
        .map_err(|e| bad_input(format!("{e:#}")))?;
    // One descriptor per connection: take the hard limit, not the default soft 1,024.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: cannot raise the open-file limit: {e}");
    }
    let runtime = crate::runtime()?;
    runtime.block_on(serve(args, config))
}

async fn serve(
    args: BrokerArgs,
    (config, storage): (BrokerConfig, Arc<dyn Storage>),
) -> Result<()> {
    let promise = storage.promise();
    let tokens_required = config.tokens.required();
    let broker = Broker::bind(args.listen, config, storage)
        .await
        .with_context(|| match &args.data_dir {
            Some(dir) => format!(
                "cannot recover {} or listen on {}",
                dir.display(),
                args.listen
            ),
            None => format!("cannot listen on {}", args.listen),
        })?;
    let addr = broker.local_addr();
    let recovery = broker.recovery().clone();
    println!("listening on {addr}");
    eprintln!("storage {promise}");
    eprintln!(
        "{}; {}",
        match (&args.tls_cert, &args.tls_client_ca) {
            (None, _) => "plain TCP (no TLS)",
            (Some(_), None) => "TLS required",
            (Some(_), Some(_)) => "TLS with client certificates required",
        },
        if tokens_required {
            "every client needs a token"
        } else {
            "open: no tokens declared"
        }
    );
    if let Some(dir) = &args.data_dir {
        eprintln!(
            "recovered {} events in {} topic(s) from {} in {:.1} ms ({} in memory, {} left on disk); {} corrupt records cut ({})",
            thousands(recovery.events + recovery.spilled),
            recovery.topics,
            dir.display(),
            recovery.took.as_secs_f64() * 1e3,
            thousands(recovery.events),
            thousands(recovery.spilled),
            recovery.corrupt_records,
            human_bytes(recovery.truncated_bytes)
        );
    }
    let started = Instant::now();
    let history = dashboard::History::default();
    if let Some(metrics_addr) = args.metrics_addr {
        let reporter = broker.reporter();
        let page_history = history.clone();
        let bound = flowgate_observe::serve(
            metrics_addr,
            Arc::new(move || Snapshot::Broker(snapshot(&reporter.stats(), started))),
            Some(Arc::new(move |refresh| {
                dashboard::page(&page_history, refresh)
            })),
        )
        .await?;
        println!("metrics on {bound}");
    }
    std::io::stdout().flush()?;
    let mut rss_samples = Vec::new();
    let mut tick = tokio::time::interval(args.stats_every.0);
    let mut last: Option<(Instant, BrokerStats)> = None;
    let stop = stop_signal(args.stop_on_stdin_eof, args.duration.map(|d| d.0));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let stats = broker.stats();
                let rss = procfs::own_rss();
                rss_samples.push(rss.now);
                history.record(&snapshot(&stats, started));
                print_stats(started, &stats, last.as_ref(), rss.now);
                last = Some((Instant::now(), stats));
            }
            reason = &mut stop => {
                eprintln!("broker stopping: {reason}");
                break;
            }
        }
    }
    let stats = broker.stats();
    broker.shutdown().await;
    if let Some(path) = &args.json {
        let summary = Summary {
            listen: addr.to_string(),
            duration_s: started.elapsed().as_secs_f64(),
            connections_accepted: stats.connections_accepted,
            errors_sent: stats.errors_sent.clone(),
            peak_rss_bytes: procfs::own_rss().peak,
            rss_samples,
            storage: match args.storage {
                StorageKind::Memory => "memory",
                StorageKind::Disk => "disk",
            },
            recovery: RecoverySummary {
                topics: recovery.topics,
                events: recovery.events,
                spilled: recovery.spilled,
                corrupt_records: recovery.corrupt_records,
                truncated_bytes: recovery.truncated_bytes,
                took_ms: recovery.took.as_secs_f64() * 1e3,
            },
            topics: snapshot(&stats, started).topics,
        };
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    Ok(())
}

/// The `/stats` document: every figure read from the broker's counters now.
fn snapshot(stats: &BrokerStats, started: Instant) -> BrokerSnapshot {
    BrokerSnapshot {
        uptime_s: started.elapsed().as_secs_f64(),
        connections_open: stats.connections_open,
        connections_accepted: stats.connections_accepted,
        errors_sent: stats
            .errors_sent
            .iter()
            .map(|(code, n)| ((*code).to_string(), *n))
            .collect(),
        rss_bytes: procfs::own_rss().now,
        topics: stats
            .topics
            .iter()
            .zip(&stats.stages)
            .map(|((name, t), (_, stage))| TopicSnapshot::new(name, t, *stage))
            .collect(),
    }
}

/// Resolves with the reason the broker should stop.
async fn stop_signal(stdin_eof: bool, duration: Option<Duration>) -> &'static str {
    let stdin = async {
        if stdin_eof {
            let mut sink = [0u8; 256];
            let mut stdin = tokio::io::stdin();
            while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
        } else {
            std::future::pending::<()>().await;
        }
    };
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = sigterm => "SIGTERM",
        _ = stdin => "standard input closed",
        _ = timer => "--duration elapsed",
    }
}

fn print_stats(
    started: Instant,
    now: &BrokerStats,
    last: Option<&(Instant, BrokerStats)>,
    rss: u64,
) {
    let elapsed = started.elapsed().as_secs_f64();
    for (name, t) in &now.topics {
        let (accepted_rate, acked_rate) = last
            .and_then(|(at, prev)| {
                let (_, p) = prev.topics.iter().find(|(n, _)| n == name)?;
                let dt = at.elapsed().as_secs_f64().max(1e-3);
                Some((
                    (t.accepted - p.accepted) as f64 / dt,
                    (t.acked - p.acked) as f64 / dt,
                ))
            })
            .unwrap_or((0.0, 0.0));
        eprintln!(
            "{elapsed:>6.1}s topic {name}: in {accepted_rate:>8.0}/s out {acked_rate:>8.0}/s ready {:>7} ({:>10}) unacked {:>6} conns {:>3} rss {}",
            t.ready,
            human_bytes(t.ready_bytes),
            t.unacked,
            now.connections_open,
            human_bytes(rss),
        );
    }
}
