//! `flowgate demo --distributed`: the scenario as three processes on loopback — a broker, a
//! consumer committing to SQLite at the consumer rate, a producer at the producer rate — run
//! for the duration, then drained, and checked against the database file.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use super::supervisor::RunConfig;
use flowgate_observe::child::{start_listening, wait_within};
use flowgate_observe::units::{human_bytes, thousands};

/// The table the distributed run writes.
const TABLE: &str = "events_distributed";

/// How long the consumer waits for more after the queue drained before it stops.
const CONSUMER_IDLE_EXIT: &str = "3s";

/// What the distributed run measured. Field names are the `--json` schema.
#[derive(Debug, Serialize)]
pub(crate) struct DistributedResult {
    mode: &'static str,
    duration_s: f64,
    produced: u64,
    confirmed: u64,
    committed: u64,
    /// Confirmed events missing from the database.
    lost: u64,
    /// Rows beyond the confirmed events (JSON key kept as `duplicates`): the key on
    /// (producer, seq) already makes a second row per event impossible, so this counts rows
    /// the broker never confirmed, which would mean a counting error somewhere.
    duplicates: u64,
    producer_rate: f64,
    producer_rate_steady: f64,
    producer_wait_ratio: f64,
    consumer_rate: f64,
    broker_peak_queue_depth: u64,
    broker_peak_queue_bytes: u64,
    broker_peak_rss_bytes: u64,
    /// Broker RSS at the end of the run minus its RSS a quarter of the way in.
    broker_rss_growth_after_warmup_bytes: i64,
    redelivered: u64,
    db: String,
    table: &'static str,
}

/// Runs the three processes and reports.
pub(crate) fn run(config: &RunConfig, json: Option<&Path>) -> Result<u8> {
    let dir = std::env::temp_dir().join(format!("flowgate-distributed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    config.db.reset(TABLE)?;
    let exe = std::env::current_exe().context("cannot find the flowgate executable")?;
    let broker_json = dir.join("broker.json");
    let (mut broker, addr) = start_listening(
        Command::new(&exe)
            .args(["broker", "--listen", "127.0.0.1:0", "--stop-on-stdin-eof"])
            .args(["--capacity", &config.queue_capacity.to_string()])
            .args(["--capacity-bytes", &config.queue_bytes.to_string()])
            .arg("--json")
            .arg(&broker_json)
            .stderr(Stdio::piped()),
        "broker",
    )?;
    forward_stats(&mut broker, "broker");
    eprintln!(
        "broker on {addr}; consumer at {}/s into {}; producer at {}/s",
        config.consumer_rate, config.db, config.producer_rate
    );

    let consumer_json = dir.join("consumer.json");
    let mut consumer = Command::new(&exe)
        .args([
            "consume", "--broker", &addr, "--topic", "demo", "--group", "demo",
        ])
        .arg("--sink")
        .arg(config.db.sink_arg(TABLE))
        .args(["--max-rate", &config.consumer_rate.to_string()])
        .args(["--idle-exit", CONSUMER_IDLE_EXIT])
        .arg("--json")
        .arg(&consumer_json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the consumer process")?;
    let producer_json = dir.join("producer.json");
    let mut producer = Command::new(&exe)
        .args(["produce", "--broker", &addr, "--topic", "demo"])
        .args(["--rate", &config.producer_rate.to_string()])
        .args(["--duration", &format!("{}ms", config.duration.as_millis())])
        .args(["--payload-size", &config.payload_size.to_string()])
        .arg("--json")
        .arg(&producer_json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the producer process")?;

    let started = Instant::now();
    let limit = config.duration + config.drain_timeout + Duration::from_secs(30);
    let producer_ok = wait_within(&mut producer, limit, "producer")?.success();
    let consumer_ok = wait_within(&mut consumer, limit, "consumer")?.success();
    drop(broker.stdin.take());
    let broker_ok = wait_within(&mut broker, Duration::from_secs(10), "broker")?.success();
    if !(producer_ok && consumer_ok && broker_ok) {
        bail!(
            "a process failed (producer ok: {producer_ok}, consumer ok: {consumer_ok}, broker ok: {broker_ok})"
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let p = read_json(&producer_json)?;
    let c = read_json(&consumer_json)?;
    let b = read_json(&broker_json)?;
    let result = measure(config, &p, &c, &b, elapsed)?;
    print_summary(&result, config.consumer_rate);
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(if result.lost > 0 || result.duplicates > 0 {
        super::EXIT_PROMISE_BROKEN
    } else {
        0
    })
}

/// Passes the broker's per-second lines through, prefixed, so the run shows progress.
fn forward_stats(child: &mut Child, name: &'static str) {
    let Some(stderr) = child.stderr.take() else {
        return;
    };
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{name:>8} {line}");
        }
    });
}

/// A child process's `--json` summary.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("'{key}' missing from a process's JSON summary"))
}

fn measure(
    config: &RunConfig,
    p: &Value,
    c: &Value,
    b: &Value,
    elapsed: f64,
) -> Result<DistributedResult> {
    let confirmed = num(p, "confirmed_seq")? as u64;
    // The table is fresh and the producer waited for every confirm before exiting, so every
    // row is a confirmed event: confirmed − rows were lost, rows − confirmed would be extra.
    let rows = config.db.count(TABLE)?;
    let topic = &b["topics"][0];
    let samples: Vec<u64> = b["rss_samples"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let growth = match (samples.get(samples.len() / 4), samples.last()) {
        (Some(warm), Some(end)) => *end as i64 - *warm as i64,
        _ => 0,
    };
    Ok(DistributedResult {
        mode: "distributed",
        duration_s: elapsed,
        produced: num(p, "sent")? as u64,
        confirmed,
        committed: rows,
        lost: confirmed.saturating_sub(rows),
        duplicates: rows.saturating_sub(confirmed),
        producer_rate: num(p, "rate")?,
        producer_rate_steady: num(p, "rate_steady")?,
        producer_wait_ratio: num(p, "wait_ratio")?,
        consumer_rate: num(c, "rate")?,
        broker_peak_queue_depth: topic["peak_events"].as_u64().unwrap_or(0),
        broker_peak_queue_bytes: topic["peak_bytes"].as_u64().unwrap_or(0),
        broker_peak_rss_bytes: num(b, "peak_rss_bytes")? as u64,
        broker_rss_growth_after_warmup_bytes: growth,
        redelivered: topic["redelivered"].as_u64().unwrap_or(0),
        db: config.db.to_string(),
        table: TABLE,
    })
}

fn print_summary(r: &DistributedResult, consumer_rate: u64) {
    let rows = [
        ("ran for", format!("{:.1} s", r.duration_s)),
        ("produced (sent)", thousands(r.produced)),
        ("confirmed by the broker", thousands(r.confirmed)),
        ("committed (rows in db)", thousands(r.committed)),
        ("confirmed but missing", thousands(r.lost)),
        ("rows beyond the confirmed", thousands(r.duplicates)),
        (
            "producer rate",
            format!("{}/s", thousands(r.producer_rate.round() as u64)),
        ),
        (
            "producer rate, 2nd half",
            format!("{}/s", thousands(r.producer_rate_steady.round() as u64)),
        ),
        (
            "producer waiting",
            format!("{:.0}%", r.producer_wait_ratio * 100.0),
        ),
        (
            "consumer commit rate",
            format!("{}/s", thousands(r.consumer_rate.round() as u64)),
        ),
        (
            "broker peak queue",
            format!(
                "{} events, {}",
                thousands(r.broker_peak_queue_depth),
                human_bytes(r.broker_peak_queue_bytes)
            ),
        ),
        ("broker peak RSS", human_bytes(r.broker_peak_rss_bytes)),
        (
            "broker RSS growth after warm-up",
            format!(
                "{:+.1} MiB",
                r.broker_rss_growth_after_warmup_bytes as f64 / (1 << 20) as f64
            ),
        ),
    ];
    println!();
    for (label, value) in rows {
        println!("{label:<32} {value:>20}");
    }
    let held = (r.producer_rate_steady - consumer_rate as f64) / consumer_rate as f64 * 100.0;
    println!(
        "\ndistributed: producer held at {}/s ({held:+.1}% of the consumer's {}/s); {} of {} confirmed events in the database, {} rows beyond them.",
        thousands(r.producer_rate_steady.round() as u64),
        thousands(consumer_rate),
        thousands(r.confirmed - r.lost),
        thousands(r.confirmed),
        thousands(r.duplicates),
    );
    println!("rows are in {} (table {})", r.db, r.table);
}
