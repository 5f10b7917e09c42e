//! `flowgate broker`: serve bounded topics on a TCP address until told to stop, logging a
//! line of measured figures per topic every interval, draining on the way out, and, with
//! `--json`, writing a summary at exit.

mod forecasts;
mod report;
mod setup;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use flowgate_broker::{Broker, BrokerConfig, BrokerStats, Storage};
use flowgate_observe::units::{Size, Span};
use flowgate_observe::{Snapshot, dashboard, procfs};
use tokio::io::AsyncReadExt;
use tracing::info;

use crate::fail::bad_input;
use crate::shutdown::Shutdown;
use forecasts::Forecasts;

const EXAMPLES: &str = "\
Examples:
  flowgate broker --listen 127.0.0.1:7070
  flowgate broker --listen 0.0.0.0:7070 --capacity 100000 --capacity-bytes 256MiB
  flowgate broker --listen 127.0.0.1:0 --config topics.toml --json broker.json
  flowgate broker --storage disk --data-dir /var/lib/flowgate --max-disk-bytes 10GiB
  flowgate broker --listen 0.0.0.0:7070 --config topics.toml --tls-cert broker.pem --tls-key broker.key
  flowgate broker --memory-budget 512MiB --ack-wait 1m --max-topics 100 --max-connections 2000

With --storage disk a producer's batch is confirmed only after it is fsynced to the topic's
log in --data-dir; a restarted broker recovers every confirmed, unacknowledged event. Memory
keeps --capacity per topic; a backlog beyond it waits on disk (up to --max-disk-bytes) and
is read back, in order, as consumers make room.
A --config file declares topics, each with its own capacity and, optionally, what it does
when full (policy: block, the default, drop-newest, drop-oldest, reject or conflate), how old
an event may get (max_age), its ack deadline, its log's size and its consumer groups:

  [[topic]]
  name = \"telemetry\"
  capacity_events = 10000
  capacity_bytes = 8388608
  policy = \"drop-oldest\"
  max_age = \"30s\"
  ack_wait = \"10s\"
  max_disk_bytes = 1073741824
  group = [{ name = \"db\" }, { name = \"dashboard\", max_lag = 5000 }]

Every drop is counted in /stats and the metrics (flowgate topics lists them).
Tokens, each allowed to produce to and consume from named topics, are declared in the
--config file ([[token]] name, secret, produce, consume); with any declared, every client
needs one. With --tls-cert every client must use TLS. In a memory cgroup the broker keeps to
its limit (or to --memory-budget): producers wait before memory runs out.

The first line on stdout is 'listening on ADDR' (useful with port 0). Stops on Ctrl-C,
SIGTERM, after --duration, or with --stop-on-stdin-eof when its standard input closes, and
drains first: no new connections, deliveries or credit; up to --drain-timeout for the acks
of deliveries in flight and for every accepted batch to be made durable and confirmed.";

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
    /// TOML file declaring topics (and default capacity, tokens); the format is below.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Largest frame accepted from a peer. Events take at most this, less 49 bytes of
    /// framing, and consumers must accept frames this large.
    #[arg(long, default_value = "1MiB", value_name = "SIZE", value_parser = crate::frame_flag::max_frame)]
    max_frame: u32,
    /// A connection must send HELLO within this.
    #[arg(long, default_value = "5s")]
    handshake_timeout: Span,
    /// A connection that sends nothing for this long is closed.
    #[arg(long, default_value = "30s")]
    idle_timeout: Span,
    /// A delivery not acknowledged within this is taken back and given to another consumer
    /// of its group (counted as an ack timeout); its consumer gets nothing more until it
    /// settles something. A consumer that is still committing says so (PROGRESS) to keep it.
    /// "0s" waits for ever.
    #[arg(long, default_value = "30s")]
    ack_wait: Span,
    /// The memory the broker may use: as its resident set nears this, the grants of every
    /// topic shrink together, so producers wait instead of the broker being killed. Default:
    /// the memory limit of its cgroup (v2 memory.max or v1 memory.limit_in_bytes), if any.
    #[arg(long, value_name = "SIZE")]
    memory_budget: Option<Size>,
    /// The most topics the broker holds; a client naming one more is refused (unknown-topic).
    /// Set `create_topics = false` in the --config file to serve only declared topics.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_topics: u64,
    /// The most consumer groups a topic takes; a consumer of one more is refused
    /// (too-many-groups). Groups stay for the topic's life, and a blocking group without
    /// consumers keeps holding what it has not acked.
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_groups: u64,
    /// The most connections open at once; one more is refused (too-many-connections), and
    /// the open ones go on.
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// A producer id is remembered for deduplication this long after its last connection
    /// closed; a producer returning later may have its unconfirmed retries stored twice.
    #[arg(long, default_value = "1h")]
    dedup_ttl: Span,
    /// The most producer ids a topic remembers for deduplication; past it the longest idle
    /// are forgotten first (ids connected now never are).
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    dedup_max_ids: u64,
    /// How often to print per-topic figures to stderr.
    #[arg(long, default_value = "1s")]
    stats_every: Span,
    /// Stop after this long.
    #[arg(long)]
    duration: Option<Span>,
    /// Stop when standard input reaches end of file (for supervisors).
    #[arg(long)]
    stop_on_stdin_eof: bool,
    /// When stopping, wait at most this long for deliveries in flight to be acked and
    /// accepted batches to be confirmed.
    #[arg(long, default_value = "5s")]
    drain_timeout: Span,
    /// Serve /stats (JSON, for `flowgate top`) and /metrics (Prometheus) on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Serve the HTTP API (docs/http.md) on this address, in-process: publishes are let in by
    /// the topics' credit and refused whole with 503 or 429 and a Retry-After.
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<SocketAddr>,
    #[command(flatten)]
    http: crate::http_args::HttpArgs,
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

/// Runs the broker until told to stop.
pub(crate) fn run(args: BrokerArgs) -> Result<()> {
    let config = args
        .config()
        .and_then(|c| {
            let storage = args.storage(&c.disk_limits)?;
            Ok((c, storage))
        })
        .map_err(|e| bad_input(format!("{e:#}")))?;
    // One descriptor per connection: take the hard limit, not the default soft 1,024.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
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
    println!("listening on {addr}");
    report::started(&args, promise, tokens_required, broker.recovery());
    let started = Instant::now();
    let history = dashboard::History::default();
    let forecasts = Forecasts::default();
    if let Some(metrics_addr) = args.metrics_addr {
        let reporter = broker.reporter();
        let page_history = history.clone();
        let forecasts = forecasts.clone();
        let bound = flowgate_observe::serve(
            metrics_addr,
            Arc::new(move || {
                let mut snapshot = report::snapshot(&reporter.stats(), started);
                forecasts.fill(&mut snapshot);
                Snapshot::Broker(snapshot)
            }),
            Some(Arc::new(move |refresh| {
                dashboard::page(&page_history, refresh)
            })),
        )
        .await?;
        println!("metrics on {bound}");
    }
    if let Some(http_addr) = args.http_addr {
        let bound = serve_http(&args, http_addr, addr, broker.reporter(), started).await?;
        println!("HTTP API on {bound}");
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
                let mut snapshot = report::snapshot(&stats, started);
                forecasts.record(&snapshot);
                forecasts.fill(&mut snapshot);
                history.record(&snapshot);
                report::log_stats(started, &stats, last.as_ref(), rss.now);
                last = Some((Instant::now(), stats));
            }
            reason = &mut stop => {
                info!("broker stopping: {reason}; draining for at most {}", args.drain_timeout);
                break;
            }
        }
    }
    let recovery = broker.recovery().clone();
    let reporter = broker.reporter();
    let drained = broker.drain(args.drain_timeout.0).await;
    info!(
        "drained in {:.0} ms: {} deliveries left unacknowledged, {} batches unconfirmed",
        drained.took.as_secs_f64() * 1e3,
        drained.unacked,
        drained.unconfirmed
    );
    if let Some(path) = &args.json {
        let summary = report::summary(
            &args,
            addr,
            started,
            &reporter.stats(),
            &recovery,
            rss_samples,
        );
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    Ok(())
}

/// Serves the HTTP API on `http_addr`, a client of this broker at `addr` over loopback, with
/// the broker's own figures for `GET /v1/topics/{topic}`.
async fn serve_http(
    args: &BrokerArgs,
    http_addr: SocketAddr,
    addr: SocketAddr,
    reporter: flowgate_broker::Reporter,
    started: Instant,
) -> Result<SocketAddr> {
    if args.tls_cert.is_some() {
        return Err(bad_input(
            "--http-addr with --tls-cert: the in-process API would dial the broker in plain TCP; \
             run `flowgate gateway --broker ADDR --tls-ca FILE` beside it instead",
        ));
    }
    let loopback = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => {
            SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        _ => addr,
    };
    let mut config = args.http.config(loopback.to_string());
    config.ack_wait = Some(args.ack_wait.0).filter(|w| !w.is_zero());
    config.topic_stats = Some(Arc::new(move |name: &str| {
        let snapshot = report::snapshot(&reporter.stats(), started);
        let topic = snapshot.topics.into_iter().find(|t| t.name == name)?;
        serde_json::to_value(topic).ok()
    }));
    flowgate_http::serve(http_addr, config)
        .await
        .with_context(|| format!("cannot serve the HTTP API on {http_addr}"))
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
    let shutdown = Shutdown::new();
    tokio::select! {
        why = shutdown.wait() => why,
        _ = stdin => "standard input closed",
        _ = timer => "--duration elapsed",
    }
}
