//! Fault injection with real processes: SIGKILL of the broker (disk mode), the consumer and
//! the producer at random moments during a run, checked with the ledger checker; the same
//! broker kill in memory mode as a negative control that must show losses; a consumer down
//! for 20 s. Each test prints its figures (run with `--nocapture` to see them).
//!
//! `FLOWGATE_FAULTS_LONG=1` runs the kill test with 30 kills instead of 10.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use flowgate_testkit::ledger::{self, Verdict};

mod common;

use common::{
    BrokerProc, Dice, finish, get_json, json, row_count, rows, spawn, spawn_logged, tail,
};

const PRODUCER_ID: u64 = 7;

struct Pipeline<'a> {
    dir: &'a Path,
    db: std::path::PathBuf,
    broker_flags: String,
    broker: Option<BrokerProc>,
    addr: String,
    consumer: Option<Child>,
    producer: Option<Child>,
    /// Producers (restarted ones too) send until this moment, so they outlast every kill.
    produce_until: Instant,
    restarts: u32,
}

impl<'a> Pipeline<'a> {
    fn start(dir: &'a Path, broker_flags: &str, run_for: Duration) -> Pipeline<'a> {
        let (broker, _) = BrokerProc::start_on(dir, "127.0.0.1:0", "b0.json", broker_flags);
        let mut p = Pipeline {
            dir,
            db: dir.join("c.db"),
            broker_flags: broker_flags.to_string(),
            addr: broker.addr.clone(),
            broker: Some(broker),
            consumer: None,
            producer: None,
            produce_until: Instant::now() + run_for,
            restarts: 0,
        };
        p.consumer = Some(p.consume());
        p.producer = Some(p.produce());
        p
    }

    fn consume(&mut self) -> Child {
        self.restarts += 1;
        spawn(&format!(
            "consume --broker {} --topic t --group g --sink sqlite:{} --prefetch 200 --max-rate 3000 --idle-exit 8s --json {}",
            self.addr,
            self.db.display(),
            self.dir.join(format!("c{}.json", self.restarts)).display()
        ))
    }

    fn produce(&mut self) -> Child {
        self.restarts += 1;
        let left = self.produce_until.saturating_duration_since(Instant::now());
        spawn_logged(
            &format!(
                "produce --broker {} --topic t --rate 4000 --duration {}ms --producer-id {PRODUCER_ID:x} --json {}",
                self.addr,
                left.as_millis().max(500),
                self.dir.join("p.json").display()
            ),
            &self.dir.join("p.log"),
        )
    }

    /// Kills the broker and starts it again on the same address; returns its start-up time.
    fn restart_broker(&mut self) -> Duration {
        if let Some(b) = self.broker.take() {
            b.kill();
        }
        self.restarts += 1;
        let name = format!("b{}.json", self.restarts);
        let (broker, took) = BrokerProc::start_on(self.dir, &self.addr, &name, &self.broker_flags);
        self.broker = Some(broker);
        took
    }

    fn restart_consumer(&mut self) {
        if let Some(mut c) = self.consumer.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.consumer = Some(self.consume());
    }

    fn restart_producer(&mut self) {
        if let Some(mut p) = self.producer.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        self.producer = Some(self.produce());
    }

    /// Waits for the producer and consumer to finish, stops the broker, and checks the
    /// ledger: the producer's final confirmed sequence against the table.
    fn drain_and_check(mut self) -> (Verdict, serde_json::Value) {
        let producer = self.producer.take().unwrap();
        assert!(
            finish(producer, Duration::from_secs(120)).success(),
            "producer failed; its log ends:\n{}",
            tail(&self.dir.join("p.log"), 20)
        );
        let consumer = self.consumer.take().unwrap();
        assert!(
            finish(consumer, Duration::from_secs(120)).success(),
            "consumer failed"
        );
        let summary = self.broker.take().unwrap().stop();
        let p = json(&self.dir.join("p.json"));
        let confirmed = BTreeMap::from([(PRODUCER_ID, p["confirmed_seq"].as_u64().unwrap())]);
        (ledger::check(&confirmed, &rows(&self.db)), summary)
    }
}

/// Rows that prove fresh events flow again after a kill: more than the consumer could have
/// held in hand (its prefetch, 200) when the kill came.
const FRESH_ROWS: u64 = 400;

/// Waits until the table grows by [`FRESH_ROWS`] past `rows_before`; returns how long that
/// took from `since`.
fn until_rows_grow(db: &Path, rows_before: u64, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(30);
    while row_count(db) < rows_before + FRESH_ROWS {
        assert!(Instant::now() < deadline, "no progress 30 s after a kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    since.elapsed()
}

#[test]
fn kill_9_of_broker_consumer_and_producer_loses_no_confirmed_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = format!(
        "--storage disk --data-dir {} --capacity 5000 --segment-bytes 256KiB",
        data.display()
    );
    let kills = if std::env::var_os("FLOWGATE_FAULTS_LONG").is_some() {
        30
    } else {
        10
    };
    let mut dice = Dice::from_env();
    // Every role at least three times, in an order and at moments the dice pick.
    let mut roles: Vec<&str> = ["broker", "consumer", "producer"]
        .iter()
        .cycle()
        .take(kills)
        .copied()
        .collect();
    for i in (1..roles.len()).rev() {
        roles.swap(i, dice.below(i as u64 + 1) as usize);
    }
    let pauses: Vec<Duration> = roles
        .iter()
        .map(|_| Duration::from_millis(400 + dice.below(1200)))
        .collect();
    // The producer sends through the whole schedule and 3 s past it (fresh rows must follow
    // every kill), then the pipeline drains.
    let schedule: Duration = pauses.iter().sum();
    let mut p = Pipeline::start(dir.path(), &flags, schedule + Duration::from_secs(3));
    let mut figures = Vec::new();
    let started = Instant::now();
    for (role, pause) in roles.into_iter().zip(pauses) {
        std::thread::sleep(pause);
        let before = row_count(&p.db);
        let at = Instant::now();
        let startup = match role {
            "broker" => Some(p.restart_broker()),
            "consumer" => {
                p.restart_consumer();
                None
            }
            _ => {
                p.restart_producer();
                None
            }
        };
        eprintln!(
            "  {:5.1} s: killed the {role} ({before} rows)",
            (at - started).as_secs_f64()
        );
        let resumed = until_rows_grow(&p.db, before, at);
        figures.push((role, at - started, startup, resumed));
    }
    let (verdict, _) = p.drain_and_check();
    eprintln!("kill -9 run, disk mode: {} kills", figures.len());
    for (role, at, startup, resumed) in &figures {
        let startup = startup.map_or(String::new(), |s| {
            format!(", broker up (recovered) in {} ms", s.as_millis())
        });
        eprintln!(
            "  at {:5.1} s killed the {role}{startup}; {FRESH_ROWS} new rows after {} ms",
            at.as_secs_f64(),
            resumed.as_millis()
        );
    }
    eprintln!("ledger: {verdict}");
    assert!(verdict.confirmed >= 10_000, "{verdict}");
    // Out-of-order rows are allowed: events delivered before their fsync and committed can
    // precede a resent earlier one after a broker crash. The figure is reported above.
    assert!(verdict.is_clean(), "{verdict}");
}

#[test]
fn negative_control_a_memory_broker_killed_mid_run_loses_confirmed_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::start(dir.path(), "--capacity 5000", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(2500));
    p.restart_broker();
    let (verdict, _) = p.drain_and_check();
    eprintln!("memory mode, broker killed once at 2.5 s: {verdict}");
    assert!(
        verdict.lost > 0,
        "a memory broker's confirmed, undelivered events die with it: {verdict}"
    );
    assert_eq!(verdict.lost_prefix + verdict.lost_suffix, 0, "{verdict}");
}

/// The topic's held events (ready + unacked) and accepted total, from the broker's /stats.
fn topic_levels(metrics: &str) -> (u64, u64) {
    let stats = get_json(metrics, "/stats");
    let t = &stats["topics"][0];
    let held = t["ready"].as_u64().unwrap_or(0) + t["unacked"].as_u64().unwrap_or(0);
    (held, t["accepted"].as_u64().unwrap_or(0))
}

#[test]
fn a_consumer_down_for_20_s_fills_the_topic_to_its_cap_then_it_drains() {
    const CAP: u64 = 2_000;
    // Full means exactly the cap: a producer blocked with credit it cannot use hands it back
    // (`BLOCKED`), so no event of the cap stays ungranted.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let broker = BrokerProc::start(
        dir.path(),
        &format!("--capacity {CAP} --metrics-addr 127.0.0.1:0"),
    );
    let metrics = broker.metrics.clone().unwrap();
    let consume = |name: &str| {
        spawn(&format!(
            "consume --broker {} --topic t --group g --sink sqlite:{} --max-rate 3000 --idle-exit 3s --json {}",
            broker.addr,
            db.display(),
            dir.path().join(name).display()
        ))
    };
    let mut first = consume("c1.json");
    let producer = spawn(&format!(
        "produce --broker {} --topic t --rate 2000 --duration 27s --producer-id {PRODUCER_ID:x} --json {}",
        broker.addr,
        dir.path().join("p.json").display()
    ));
    std::thread::sleep(Duration::from_secs(3));
    first.kill().unwrap();
    first.wait().unwrap();
    let (_, accepted_at_kill) = topic_levels(&metrics);
    let down = Instant::now();
    let mut peak = 0;
    let mut full_after = None;
    while down.elapsed() < Duration::from_secs(20) {
        let (held, _) = topic_levels(&metrics);
        peak = peak.max(held);
        if held >= CAP && full_after.is_none() {
            full_after = Some(down.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (held_at_restart, accepted_at_restart) = topic_levels(&metrics);
    let accepted_while_down = accepted_at_restart - accepted_at_kill;
    let second = consume("c2.json");
    let back = Instant::now();
    // Drained: back below a tenth of the cap while the producer still sends at 2,000/s.
    while topic_levels(&metrics).0 > CAP / 10 {
        assert!(back.elapsed() < Duration::from_secs(30), "never drained");
        std::thread::sleep(Duration::from_millis(50));
    }
    let drained_in = back.elapsed();
    assert!(finish(producer, Duration::from_secs(60)).success());
    assert!(finish(second, Duration::from_secs(60)).success());
    broker.stop();
    let p = json(&dir.path().join("p.json"));
    let confirmed = BTreeMap::from([(PRODUCER_ID, p["confirmed_seq"].as_u64().unwrap())]);
    let verdict = ledger::check(&confirmed, &rows(&db));
    eprintln!(
        "consumer down 20 s: topic full ({CAP} of {CAP}) {:.1} s after the kill, peak held {peak}, \
         held at restart {held_at_restart}; producer accepted {accepted_while_down} events in \
         the 20 s (cap {CAP}); drained below {} in {} ms; ledger: {verdict}",
        full_after.map_or(f64::NAN, |d| d.as_secs_f64()),
        CAP / 10,
        drained_in.as_millis()
    );
    assert_eq!(
        peak, CAP,
        "the topic fills to exactly its cap and never past it"
    );
    assert!(full_after.is_some_and(|d| d < Duration::from_secs(5)));
    assert!(
        accepted_while_down <= CAP,
        "producers wait once the cap is reached: {accepted_while_down} accepted while down"
    );
    assert!(verdict.is_clean(), "nothing dropped: {verdict}");
}

/// Runs a disk broker on `data` on a free port, with `extra` arguments, to its end.
fn disk_broker_output(data: &Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(common::BIN)
        .args(["broker", "--listen", "127.0.0.1:0", "--storage", "disk"])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// Starts a disk broker on `data` for a moment and returns its recovery line from stderr.
fn recovery_line(data: &Path) -> String {
    let out = disk_broker_output(data, &["--duration", "200ms"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the broker must start whatever the log holds: {stderr}"
    );
    stderr
        .lines()
        .find_map(|l| l.find("recovered ").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no recovery line in {stderr}"))
        .to_string()
}

/// The figure before `word` in `line` ("recovered 1,234 events" → 1234).
fn figure_before(line: &str, word: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == word).unwrap();
    words[at - 1].replace(',', "").parse().unwrap()
}

#[test]
fn a_damaged_log_is_cut_reported_and_the_broker_starts_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = format!(
        "--storage disk --data-dir {} --capacity 5000 --segment-bytes 64KiB",
        data.display()
    );
    let broker = BrokerProc::start(dir.path(), &flags);
    let producer = spawn(&format!(
        "produce --broker {} --topic t --rate 20000 --count 2000",
        broker.addr
    ));
    assert!(finish(producer, Duration::from_secs(30)).success());
    broker.kill();
    let clean = recovery_line(&data);
    assert_eq!(figure_before(&clean, "events"), 2_000, "{clean}");

    // A bad sector in the middle of the oldest segment, and a torn tail on the newest.
    let mut segments: Vec<_> = std::fs::read_dir(data.join("t"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let oldest = &segments[0];
    let mut bytes = std::fs::read(oldest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(oldest, bytes).unwrap();
    let newest = segments.last().unwrap();
    let mut tail = std::fs::read(newest).unwrap();
    tail.extend_from_slice(&[0x00, 0x00, 0x10, 0x00, 0xde, 0xad]);
    std::fs::write(newest, tail).unwrap();

    let damaged = recovery_line(&data);
    let cut = figure_before(&damaged, "corrupt");
    let kept = figure_before(&damaged, "events");
    eprintln!("clean: {clean}\ndamaged: {damaged}");
    assert!(cut >= 2, "both damages reported: {damaged}");
    assert!(kept < 2_000 && kept > 0, "{damaged}");
    let again = recovery_line(&data);
    assert_eq!(
        figure_before(&again, "corrupt"),
        0,
        "repaired once: {again}"
    );
    assert_eq!(figure_before(&again, "events"), kept, "{again}");
}

/// Two disk brokers on one data directory would both confirm into the same logs, and after a
/// restart one's confirmed events were gone. The second now refuses to start, naming the
/// directory and the first broker's pid, and exits 2; the first goes on serving.
#[test]
fn a_second_broker_on_the_same_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = BrokerProc::start(
        dir.path(),
        &format!("--storage disk --data-dir {}", data.display()),
    );
    let out = disk_broker_output(&data, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("second broker: {}", stderr.trim());
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "data directory {} is in use by process {}",
            data.display(),
            first.pid()
        )),
        "{stderr}"
    );
    // The first still serves.
    let producer = spawn(&format!(
        "produce --broker {} --topic t --count 100 --rate 10000",
        first.addr
    ));
    assert!(finish(producer, Duration::from_secs(30)).success());
    let stats = first.stop();
    assert_eq!(stats["topics"][0]["accepted"], 100, "{stats}");
}
