//! `flowgate bench`: end-to-end throughput of small events through flowgate — producer process
//! → broker process → consumer process with a null sink — next to a raw-TCP reference (the
//! same events, length-prefixed, batched writes, one hop) measured in the same run, with the
//! broker's memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::children::{start_listening, wait_within};
use crate::units::{Size, human_bytes, thousands};

const EXAMPLES: &str = "\
Examples:
  flowgate bench
  flowgate bench --events 5000000 --runs 3 --json bench.json

Each run measures the raw-TCP reference, then flowgate, on the same machine, one after the
other; the best of --runs is reported for each, and their ratio.";

/// Flags of `flowgate bench`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct BenchArgs {
    /// Events per measurement.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Payload bytes per event.
    #[arg(long, default_value = "100B", value_name = "SIZE")]
    payload_size: Size,
    /// Measurements of each path; the best is reported.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Write the results here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Serialize)]
struct BenchResult {
    events: u64,
    payload_bytes: u64,
    raw_tcp_events_per_s: f64,
    flowgate_events_per_s: f64,
    flowgate_vs_raw: f64,
    broker_peak_rss_bytes: u64,
    broker_rss_samples: Vec<u64>,
    machine: String,
}

/// Runs the benchmark.
pub(crate) fn run(args: BenchArgs) -> Result<u8> {
    if args.events == 0 || args.runs == 0 {
        eprintln!("error: --events and --runs must be at least 1");
        return Ok(2);
    }
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("flowgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (mut best_raw, mut best_fg) = (0.0f64, 0.0f64);
    let mut rss = (0, Vec::new());
    for run in 1..=args.runs {
        let raw = raw_tcp(&exe, &args)?;
        eprintln!("run {run}: raw TCP      {:>12}/s", thousands(raw as u64));
        let (fg, peak, samples) = through_flowgate(&exe, &args, &dir)?;
        eprintln!(
            "run {run}: flowgate     {:>12}/s (broker peak RSS {})",
            thousands(fg as u64),
            human_bytes(peak)
        );
        best_raw = best_raw.max(raw);
        if fg > best_fg {
            best_fg = fg;
            rss = (peak, samples);
        }
    }
    let result = BenchResult {
        events: args.events,
        payload_bytes: args.payload_size.0,
        raw_tcp_events_per_s: best_raw,
        flowgate_events_per_s: best_fg,
        flowgate_vs_raw: best_fg / best_raw.max(1e-9),
        broker_peak_rss_bytes: rss.0,
        broker_rss_samples: rss.1,
        machine: machine(),
    };
    println!(
        "\n{} events of {} payload, best of {} run(s) on {}",
        thousands(args.events),
        args.payload_size,
        args.runs,
        result.machine
    );
    println!(
        "raw TCP, one hop (reference)        {:>12} events/s",
        thousands(best_raw as u64)
    );
    println!(
        "producer -> broker -> consumer      {:>12} events/s",
        thousands(best_fg as u64)
    );
    println!(
        "flowgate / raw TCP                  {:>12.2}",
        result.flowgate_vs_raw
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

fn through_flowgate(exe: &Path, args: &BenchArgs, dir: &Path) -> Result<(f64, u64, Vec<u64>)> {
    let broker_json = dir.join("broker.json");
    let consumer_json = dir.join("consumer.json");
    let (mut broker, addr) = start_listening(
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
            .stderr(Stdio::null()),
        "broker",
    )?;
    let count = args.events.to_string();
    let mut consumer = Command::new(exe)
        .args([
            "consume", "--broker", &addr, "--topic", "bench", "--group", "bench", "--sink", "null",
        ])
        .args([
            "--prefetch",
            "20000",
            "--prefetch-bytes",
            "32MiB",
            "--count",
            &count,
            "--json",
        ])
        .arg(&consumer_json)
        .stderr(Stdio::null())
        .spawn()?;
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
    drop(broker.stdin.take());
    wait_within(&mut broker, Duration::from_secs(10), "broker")?;
    let c: Value = serde_json::from_str(&std::fs::read_to_string(&consumer_json)?)?;
    let b: Value = serde_json::from_str(&std::fs::read_to_string(&broker_json)?)?;
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
