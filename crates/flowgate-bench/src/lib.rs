//! `flowgate bench`, as a library the binary dispatches to: end-to-end throughput of small events through flowgate — producer process
//! → broker process → consumer process — next to a reference measured in the same run: with
//! the null sink, raw TCP (the same events, length-prefixed, batched writes, one hop); with a
//! database sink, the database's own batched load rate (the same events written straight
//! through the sink, no pipeline); with `--http`, the native producer, against batched HTTP
//! ingest through the broker's HTTP API (`http_load.rs`).

mod http_load;
mod raw;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use flowgate_client::unix_now_us;
use serde::Serialize;
use serde_json::Value;

use flowgate_core::{Event, EventId};
use flowgate_sink::{AnySink, SinkUrl};

pub use raw::{BenchRawArgs, run as run_raw};

use flowgate_observe::child::{start_announcing, start_listening, wait_within};
use flowgate_observe::units::{Size, human_bytes, thousands};

const EXAMPLES: &str = "\
Examples:
  flowgate bench
  flowgate bench --events 5000000 --runs 3 --json bench.json
  flowgate bench --storage disk --runs 3
  flowgate bench --http --events 1000000 --runs 3

  flowgate bench --sink sqlite:/tmp/bench.db --events 500000
  flowgate bench --sink postgres://bench@127.0.0.1:5432/bench --events 500000

Each run measures the reference, then flowgate, on the same machine, one after the other;
the best rate of --runs is reported for each, and the median of the per-run ratios. With a database sink the tables
bench_direct and bench_flowgate are recreated for every measurement.";

/// Flags of `flowgate bench`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct BenchArgs {
    /// Events per measurement.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Payload bytes per event.
    #[arg(long, default_value = "100B", value_name = "SIZE")]
    payload_size: Size,
    /// Measurements of each path; the best is reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Where the consumer commits: null (reference: raw TCP) or a database sink URL
    /// (reference: the database's direct batched load rate).
    #[arg(long, default_value = "null", value_name = "URL", value_parser = bench_sink)]
    sink: SinkUrl,
    /// Events per batch, for the direct load and as the consumer's largest batch.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// The broker's storage: memory, or disk (a log in the run's temporary directory, every
    /// confirm after an fsync).
    #[arg(long, default_value = "memory", value_parser = ["memory", "disk"])]
    storage: String,
    /// Measure batched HTTP ingest (the broker's HTTP API) against the native producer as
    /// the reference, both into the same broker and consumer.
    #[arg(long)]
    http: bool,
    /// With --http: concurrent HTTP clients, each on one keep-alive connection.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    http_clients: u32,
    /// With --http: events per HTTP request.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    http_batch: u64,
    /// Write the results here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Serialize)]
struct BenchResult {
    events: u64,
    payload_bytes: u64,
    sink: String,
    storage: String,
    reference: &'static str,
    reference_events_per_s: f64,
    flowgate_events_per_s: f64,
    /// Median over runs of flowgate's rate divided by the reference's in the same run.
    flowgate_vs_reference: f64,
    run_ratios: Vec<f64>,
    broker_peak_rss_bytes: u64,
    broker_rss_samples: Vec<u64>,
    machine: String,
}

/// `--sink`: null or a database; what `bench` can compare against.
fn bench_sink(s: &str) -> Result<SinkUrl, String> {
    match s.parse::<SinkUrl>() {
        Ok(url @ (SinkUrl::Null | SinkUrl::Sqlite { .. } | SinkUrl::Postgres { .. })) => Ok(url),
        Ok(_) => Err("bench takes null or a database URL".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The async runtime the direct load runs on.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the benchmark; returns the exit code.
pub fn run(args: BenchArgs) -> Result<u8> {
    let sink = args.sink.clone();
    let reference_name = if args.http {
        "native producer"
    } else if sink == SinkUrl::Null {
        "raw TCP, one hop"
    } else {
        "direct batched load"
    };
    let measured_name = if args.http {
        "HTTP ingest"
    } else {
        "through flowgate"
    };
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("flowgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (mut best_raw, mut best_fg) = (0.0f64, 0.0f64);
    let mut rss = (0, Vec::new());
    // Each run measures both paths back to back; the ratio of a pair is robust to the machine
    // being faster or slower in one run than another, so the median pair ratio is reported.
    let mut ratios = Vec::new();
    for run in 1..=args.runs {
        let raw = match &sink {
            _ if args.http => through_flowgate(&exe, &args, &dir, &sink, false)?.0,
            SinkUrl::Null => raw_tcp(&exe, &args)?,
            db => direct_load(db, &args)?,
        };
        eprintln!(
            "run {run}: {reference_name:<20} {:>12}/s",
            thousands(raw as u64)
        );
        let (fg, peak, samples) = through_flowgate(&exe, &args, &dir, &sink, args.http)?;
        eprintln!(
            "run {run}: {:<20} {:>12}/s (broker peak RSS {})",
            measured_name,
            thousands(fg as u64),
            human_bytes(peak)
        );
        ratios.push(fg / raw.max(1e-9));
        best_raw = best_raw.max(raw);
        if fg > best_fg {
            best_fg = fg;
            rss = (peak, samples);
        }
    }
    let result = BenchResult {
        events: args.events,
        payload_bytes: args.payload_size.0,
        sink: sink.to_string(),
        storage: args.storage.clone(),
        reference: reference_name,
        reference_events_per_s: best_raw,
        flowgate_events_per_s: best_fg,
        flowgate_vs_reference: median(&mut ratios),
        run_ratios: ratios.clone(),
        broker_peak_rss_bytes: rss.0,
        broker_rss_samples: rss.1,
        machine: machine(),
    };
    println!(
        "\n{} events of {} payload, best rates of {} run(s) on {}",
        thousands(args.events),
        args.payload_size,
        args.runs,
        result.machine
    );
    println!("sink                                {:>12}", result.sink);
    if args.http {
        println!(
            "HTTP clients x events per request   {:>12}",
            format!("{} x {}", args.http_clients, args.http_batch)
        );
    }
    println!("broker storage                      {:>12}", result.storage);
    println!(
        "{:<36}{:>12} events/s",
        format!("{reference_name} (reference)"),
        thousands(best_raw as u64)
    );
    println!(
        "{:<36}{:>12} events/s",
        if args.http {
            "HTTP -> broker -> consumer"
        } else {
            "producer -> broker -> consumer"
        },
        thousands(best_fg as u64)
    );
    println!(
        "flowgate / reference (median of runs) {:>11.2}",
        result.flowgate_vs_reference
    );
    println!(
        "broker peak RSS                     {:>12}",
        human_bytes(result.broker_peak_rss_bytes)
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn raw_tcp(exe: &Path, args: &BenchArgs) -> Result<f64> {
    let result =
        std::env::temp_dir().join(format!("flowgate-bench-raw-{}.json", std::process::id()));
    let (mut recv, addr) = start_listening(
        Command::new(exe)
            .args([
                "bench-raw",
                "recv",
                "--count",
                &args.events.to_string(),
                "--json",
            ])
            .arg(&result)
            .stderr(Stdio::null()),
        "raw receiver",
    )?;
    let send = Command::new(exe)
        .args([
            "bench-raw",
            "send",
            "--to",
            &addr,
            "--count",
            &args.events.to_string(),
        ])
        .args(["--payload-size", &args.payload_size.0.to_string()])
        .stderr(Stdio::null())
        .status()?;
    if !send.success() {
        bail!("raw sender failed");
    }
    drop(recv.stdin.take());
    wait_within(&mut recv, Duration::from_secs(600), "raw receiver")?;
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&result)?).context("raw receiver output")?;
    let _ = std::fs::remove_file(&result);
    v["rate"].as_f64().context("raw receiver rate")
}

/// The database's own rate: the same events written straight through the sink in batches.
fn direct_load(sink: &SinkUrl, args: &BenchArgs) -> Result<f64> {
    let url = sink.with_table("bench_direct");
    let rt = runtime()?;
    rt.block_on(async {
        let mut db = AnySink::open_fresh(&url)
            .await
            .with_context(|| format!("cannot open {url}"))?;
        let payload = vec![b'x'; usize::try_from(args.payload_size.0).unwrap_or(usize::MAX)];
        let started = Instant::now();
        let mut seq = 0u64;
        while seq < args.events {
            let n = args.batch.min(args.events - seq);
            let batch: Vec<Event> = (seq + 1..=seq + n)
                .map(|s| Event {
                    id: EventId::new(1, s),
                    key: None,
                    created_us: s,
                    payload: payload.clone(),
                })
                .collect();
            db.write_batch(&batch).await?;
            seq += n;
        }
        Ok(args.events as f64 / started.elapsed().as_secs_f64())
    })
}

/// Producer (native, or over HTTP with `http`) -> broker -> consumer; the consumer's rate,
/// the broker's peak RSS and its samples.
fn through_flowgate(
    exe: &Path,
    args: &BenchArgs,
    dir: &Path,
    sink: &SinkUrl,
    http: bool,
) -> Result<(f64, u64, Vec<u64>)> {
    let consumer_sink = match sink {
        SinkUrl::Null => "null".to_string(),
        db => {
            let url = db.with_table("bench_flowgate");
            let rt = runtime()?;
            rt.block_on(AnySink::open_fresh(&url))
                .with_context(|| format!("cannot prepare {url}"))?;
            url.to_arg()
        }
    };
    let broker_json = dir.join("broker.json");
    let consumer_json = dir.join("consumer.json");
    // With --http the broker announces its HTTP API on the next line, once it serves it.
    let announced: &[&str] = if http {
        &["listening on ", "HTTP API on "]
    } else {
        &["listening on "]
    };
    let (mut broker, mut addrs) = start_announcing(
        Command::new(exe)
            .args(["broker", "--listen", "127.0.0.1:0", "--stop-on-stdin-eof"])
            .args([
                "--capacity",
                "100000",
                "--capacity-bytes",
                "64MiB",
                "--json",
            ])
            .arg(&broker_json)
            .args(if http {
                vec!["--http-addr", "127.0.0.1:0"]
            } else {
                Vec::new()
            })
            .args(match args.storage.as_str() {
                "disk" => vec![
                    "--storage".to_string(),
                    "disk".to_string(),
                    "--data-dir".to_string(),
                    dir.join(format!("data-{}", unix_now_us()))
                        .display()
                        .to_string(),
                ],
                _ => Vec::new(),
            })
            .stderr(Stdio::null()),
        "broker",
        announced,
    )?;
    let addr = addrs.remove(0);
    let http_addr = addrs.pop();
    let count = args.events.to_string();
    // The null sink takes big batches; a database takes the batch the direct load used.
    let prefetch = if *sink == SinkUrl::Null {
        "20000".to_string()
    } else {
        args.batch.to_string()
    };
    let mut consumer = Command::new(exe)
        .args([
            "consume",
            "--broker",
            &addr,
            "--topic",
            "bench",
            "--group",
            "bench",
            "--sink",
            &consumer_sink,
        ])
        .args([
            "--prefetch",
            &prefetch,
            "--prefetch-bytes",
            "32MiB",
            "--count",
            &count,
            "--json",
        ])
        .arg(&consumer_json)
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(http_addr) = &http_addr {
        let load = runtime()?.block_on(http_load::run(
            http_addr,
            "bench",
            args.events,
            args.payload_size.0,
            args.http_batch,
            args.http_clients,
        ))?;
        if load.refused > 0 {
            eprintln!(
                "  HTTP: {} requests accepted, {} refused and sent again",
                load.accepted_requests, load.refused
            );
        }
        let status = wait_within(&mut consumer, Duration::from_secs(600), "consumer")?;
        if !status.success() {
            bail!("the consumer failed ({status})");
        }
        return finish_run(&mut broker, &consumer_json, &broker_json);
    }
    let mut producer = Command::new(exe)
        .args([
            "produce",
            "--broker",
            &addr,
            "--topic",
            "bench",
            "--rate",
            "1000000000",
        ])
        .args([
            "--count",
            &count,
            "--payload-size",
            &args.payload_size.0.to_string(),
        ])
        .stderr(Stdio::null())
        .spawn()?;
    let limit = Duration::from_secs(600);
    for (child, name) in [(&mut producer, "producer"), (&mut consumer, "consumer")] {
        let status = wait_within(child, limit, name)?;
        if !status.success() {
            bail!("the {name} failed ({status})");
        }
    }
    finish_run(&mut broker, &consumer_json, &broker_json)
}

/// Stops the broker and reads the consumer's rate and the broker's memory.
fn finish_run(
    broker: &mut std::process::Child,
    consumer_json: &Path,
    broker_json: &Path,
) -> Result<(f64, u64, Vec<u64>)> {
    drop(broker.stdin.take());
    wait_within(broker, Duration::from_secs(10), "broker")?;
    let c: Value = serde_json::from_str(&std::fs::read_to_string(consumer_json)?)?;
    let b: Value = serde_json::from_str(&std::fs::read_to_string(broker_json)?)?;
    let samples = b["rss_samples"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    Ok((
        c["rate"].as_f64().context("consumer rate")?,
        b["peak_rss_bytes"].as_u64().unwrap_or(0),
        samples,
    ))
}
