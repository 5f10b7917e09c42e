//! `flowgate demo --chain`: the scenario as a chain of stages, each a process on loopback —
//! a producer into topic `orders`, an enrich stage (`flowgate relay`) from `orders` into
//! `enriched`, and a consumer committing `enriched` to the database. `--slow middle` holds the
//! enrich stage at the consumer rate, `--slow db` the database. Every stage is held to the
//! slowest, wherever it sits; the summary shows each stage's rate and time split, names the
//! slowest stage from the topics' fill, and checks the database against what was confirmed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use flowgate_observe::chain::chain;
use flowgate_observe::units::thousands;
use flowgate_observe::{BrokerSnapshot, TopicSnapshot};
use serde::Serialize;
use serde_json::Value;

use super::distributed::read_json;
use super::supervisor::RunConfig;
use flowgate_observe::child::{start_listening, wait_within};

/// The table the chain's database stage writes.
const TABLE: &str = "events_chain";

/// The chain's topics, in the order events flow through them.
const TOPICS: [&str; 2] = ["orders", "enriched"];

/// Which stage of the chain is slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Slow {
    /// The enrich stage in the middle.
    Middle,
    /// The database at the end.
    Db,
}

/// One stage's measured figures.
#[derive(Debug, Serialize)]
struct StageLine {
    stage: String,
    rate: f64,
    busy: f64,
    backpressured: f64,
    idle: f64,
}

/// What the chain run measured. Field names are the `--json` schema.
#[derive(Debug, Serialize)]
pub(crate) struct ChainResult {
    mode: &'static str,
    slow: &'static str,
    duration_s: f64,
    confirmed: u64,
    committed: u64,
    lost: u64,
    duplicates: u64,
    stages: Vec<StageLine>,
    slowest: String,
    explanation: String,
    db: String,
    table: &'static str,
}

/// Runs the chain and reports.
pub(crate) fn run(config: &RunConfig, slow: Slow, json: Option<&Path>) -> Result<u8> {
    let dir = std::env::temp_dir().join(format!("flowgate-chain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    config.db.reset(TABLE)?;
    let exe = std::env::current_exe().context("cannot find the flowgate executable")?;
    let file = |name: &str| dir.join(name);
    let (mut broker, addr) = start_listening(
        Command::new(&exe)
            .args(["broker", "--listen", "127.0.0.1:0", "--stop-on-stdin-eof"])
            .args(["--capacity", &config.queue_capacity.to_string()])
            .args(["--capacity-bytes", &config.queue_bytes.to_string()])
            .arg("--json")
            .arg(file("broker.json"))
            .stderr(Stdio::null()),
        "broker",
    )?;
    let rate = config.consumer_rate.to_string();
    let slowed = |stage: Slow| {
        if slow == stage {
            vec!["--max-rate", &rate]
        } else {
            vec![]
        }
    };
    let spawn = |args: Vec<String>, what: &str| {
        Command::new(&exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start the {what} process"))
    };
    let strings = |a: &[&str]| a.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    let mut consumer = spawn(
        [
            strings(&[
                "consume", "--broker", &addr, "--from", TOPICS[1], "--group", "db",
            ]),
            strings(&[
                "--sink",
                &config.db.sink_arg(TABLE),
                "--idle-exit",
                "3s",
                "--json",
            ]),
            vec![file("db.json").display().to_string()],
            strings(&slowed(Slow::Db)),
        ]
        .concat(),
        "database stage",
    )?;
    let mut relay = spawn(
        [
            strings(&[
                "relay", "--broker", &addr, "--from", TOPICS[0], "--group", "enrich",
            ]),
            strings(&["--to", TOPICS[1], "--idle-exit", "3s", "--json"]),
            vec![file("enrich.json").display().to_string()],
            strings(&slowed(Slow::Middle)),
        ]
        .concat(),
        "enrich stage",
    )?;
    eprintln!(
        "broker on {addr}; producer at {}/s -> {} -> enrich{} -> {} -> database{} ({})",
        config.producer_rate,
        TOPICS[0],
        if slow == Slow::Middle {
            format!(" at {rate}/s")
        } else {
            String::new()
        },
        TOPICS[1],
        if slow == Slow::Db {
            format!(" at {rate}/s")
        } else {
            String::new()
        },
        config.db
    );
    let mut producer = spawn(
        [
            strings(&["produce", "--broker", &addr, "--topic", TOPICS[0]]),
            strings(&["--rate", &config.producer_rate.to_string()]),
            strings(&["--duration", &format!("{}ms", config.duration.as_millis())]),
            strings(&["--payload-size", &config.payload_size.to_string(), "--json"]),
            vec![file("producer.json").display().to_string()],
        ]
        .concat(),
        "producer",
    )?;
    let started = Instant::now();
    let limit = config.duration + config.drain_timeout + Duration::from_secs(30);
    let ok = [
        wait_within(&mut producer, limit, "producer")?.success(),
        wait_within(&mut relay, limit, "enrich stage")?.success(),
        wait_within(&mut consumer, limit, "database stage")?.success(),
    ];
    drop(broker.stdin.take());
    let broker_ok = wait_within(&mut broker, Duration::from_secs(10), "broker")?.success();
    if !(ok.iter().all(|o| *o) && broker_ok) {
        bail!("a process failed (producer, enrich, database: {ok:?}; broker ok: {broker_ok})");
    }
    let result = measure(config, slow, &dir, started.elapsed().as_secs_f64())?;
    print_summary(&result);
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

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// A consumer stage's line from its summary: its commit rate and time split.
fn consumer_line(name: &str, v: &Value) -> StageLine {
    let s = &v["stage"];
    let total = (num(s, "busy_s") + num(s, "backpressured_s") + num(s, "idle_s")).max(1e-9);
    StageLine {
        stage: name.to_string(),
        rate: num(v, "rate"),
        busy: num(s, "busy_s") / total,
        backpressured: num(s, "backpressured_s") / total,
        idle: num(s, "idle_s") / total,
    }
}

fn measure(config: &RunConfig, slow: Slow, dir: &Path, elapsed: f64) -> Result<ChainResult> {
    let p = read_json(&dir.join("producer.json"))?;
    let b = read_json(&dir.join("broker.json"))?;
    let topics: Vec<TopicSnapshot> = serde_json::from_value(b["topics"].clone())
        .context("the broker's summary lists no topics")?;
    let confirmed = num(&p, "confirmed_seq") as u64;
    let rows = config.db.count(TABLE)?;
    let wait = num(&p, "wait_ratio");
    let mut stages = vec![StageLine {
        stage: "producer".into(),
        // Its second half: the pace the chain held it to, once the topics had filled.
        rate: num(&p, "rate_steady"),
        busy: 1.0 - wait,
        backpressured: wait,
        idle: 0.0,
    }];
    for (name, file) in [
        ("enrich stage", "enrich.json"),
        ("database stage", "db.json"),
    ] {
        stages.push(consumer_line(name, &read_json(&dir.join(file))?));
    }
    let names: Vec<String> = TOPICS.iter().map(|t| (*t).to_string()).collect();
    let whole_run = BrokerSnapshot {
        topics,
        ..BrokerSnapshot::default()
    };
    // From the broker's start: every topic at zero.
    let start = BrokerSnapshot {
        topics: whole_run
            .topics
            .iter()
            .map(|t| TopicSnapshot {
                name: t.name.clone(),
                ..TopicSnapshot::default()
            })
            .collect(),
        ..BrokerSnapshot::default()
    };
    let c = chain(&start, &whole_run, &names, elapsed).map_err(anyhow::Error::msg)?;
    for t in &c.topics {
        stages.insert(
            stages.len().min(if t.name == TOPICS[0] { 1 } else { 3 }),
            StageLine {
                stage: format!("topic {}", t.name),
                rate: t.in_per_s,
                busy: 1.0 - t.full - t.empty,
                backpressured: t.full,
                idle: t.empty,
            },
        );
    }
    Ok(ChainResult {
        mode: "chain",
        slow: match slow {
            Slow::Middle => "middle",
            Slow::Db => "db",
        },
        duration_s: elapsed,
        confirmed,
        committed: rows,
        lost: confirmed.saturating_sub(rows),
        duplicates: rows.saturating_sub(confirmed),
        stages,
        slowest: c.slowest,
        explanation: c.explanation,
        db: config.db.to_string(),
        table: TABLE,
    })
}

fn print_summary(r: &ChainResult) {
    let pct = |x: f64| format!("{:>5.0}%", x * 100.0);
    println!();
    println!(
        "{:<16} {:>10} {:>7} {:>14} {:>7}",
        "stage", "events/s", "busy", "backpressured", "idle"
    );
    for s in &r.stages {
        // A topic's split is its fill: backpressured is full, idle is empty.
        println!(
            "{:<16} {:>10} {:>7} {:>14} {:>7}",
            s.stage,
            thousands(s.rate.round() as u64),
            pct(s.busy),
            pct(s.backpressured),
            pct(s.idle)
        );
    }
    println!(
        "\n(the producer's rate is over its second half, once the topics had filled; a topic's\n backpressured is the time it was full with its producer waiting, its idle the time it\n was empty)"
    );
    println!("=> {}", r.explanation);
    println!(
        "chain: {} of {} confirmed events in the database, {} lost, {} rows beyond them; rows are in {} (table {})",
        thousands(r.committed.min(r.confirmed)),
        thousands(r.confirmed),
        thousands(r.lost),
        thousands(r.duplicates),
        r.db,
        r.table
    );
}
