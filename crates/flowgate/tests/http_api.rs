//! The HTTP API with real third-party clients: Python producers and consumers (`requests`,
//! from the virtualenv `scripts/test` makes under `target/pyenv`), `curl` running the README's
//! examples, and `schemathesis` against `/openapi.json` on a live broker.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BrokerProc, distinct_rows, finish, finish_ok, get_json, json, spawn_logged};
use serde_json::Value;

/// The virtualenv `scripts/test` creates.
fn pyenv(tool: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/pyenv/bin")
        .join(tool);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which creates the virtualenv (requests, schemathesis)",
        path.display()
    );
    path
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Runs a Python script of the repo with `args`, its output to `log`.
fn python(script: &str, args: &[&str], log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(pyenv("python"))
        .arg(repo(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// The `n` of every row's JSON payload in a SQLite sink's table.
fn numbers(db: &Path) -> Vec<u64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT json_extract(payload, '$.n') FROM events")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|n| n.unwrap() as u64)
        .collect()
}

fn consumer(broker: &BrokerProc, dir: &Path, extra: &str) -> Child {
    spawn_logged(
        &format!(
            "consume --broker {} --topic t --group db --sink sqlite:{}?payload=json --max-rate 1000 --idle-exit 3s --json {} {extra}",
            broker.addr,
            dir.join("db.sqlite").display(),
            dir.join("c.json").display()
        ),
        &dir.join("c.log"),
    )
}

#[test]
fn a_python_producer_that_honours_retry_after_is_held_to_a_1000_per_s_consumer_and_nothing_is_lost()
{
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A small topic, so the producer's head start (what fills it before the consumer's pace
    // reaches the producer) is 2% of the run.
    let broker = BrokerProc::start(d, "--capacity 200 --http-addr 127.0.0.1:0");
    let url = format!("http://{}", broker.http.clone().unwrap());
    let c = consumer(&broker, d, "");
    let count = 10_000;
    let p = python(
        "examples/python/producer.py",
        &[
            "--url",
            &url,
            "--topic",
            "t",
            "--count",
            &count.to_string(),
            "--json",
            d.join("p.json").to_str().unwrap(),
        ],
        &d.join("p.log"),
    );
    let within = Duration::from_secs(120);
    finish_ok(p, &d.join("p.log"), within);
    finish_ok(c, &d.join("c.log"), within);
    broker.stop();
    let p = json(&d.join("p.json"));
    let c = json(&d.join("c.json"));
    let (produced, consumed) = (p["rate"].as_f64().unwrap(), c["rate"].as_f64().unwrap());
    eprintln!("python producer {produced:.0}/s, consumer {consumed:.0}/s: {p}");
    assert_eq!(p["sent"], count);
    assert_eq!(distinct_rows(&d.join("db.sqlite")), count);
    let got: BTreeSet<u64> = numbers(&d.join("db.sqlite")).into_iter().collect();
    assert_eq!(got, (1..=count).collect(), "every event once, none lost");
    assert!(
        (produced - consumed).abs() / consumed <= 0.10,
        "the producer ran at {produced:.0}/s against the consumer's {consumed:.0}/s"
    );
}

#[test]
fn an_impolite_client_gets_429_and_503_the_broker_stays_bounded_and_a_polite_one_keeps_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("broker.toml");
    std::fs::write(
        &config,
        "[[token]]\nname = \"polite\"\nsecret = \"p-secret\"\nproduce = [\"t\"]\nconsume = []\n\n\
         [[token]]\nname = \"hammer\"\nsecret = \"h-secret\"\nproduce = [\"t\"]\nconsume = []\n\n\
         [[token]]\nname = \"db\"\nsecret = \"c-secret\"\nproduce = []\nconsume = [\"t\"]\n",
    )
    .unwrap();
    let broker = BrokerProc::start(
        d,
        &format!(
            "--capacity 200 --config {} --metrics-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --admit-wait 500ms --max-queued 400",
            config.display()
        ),
    );
    let url = format!("http://{}", broker.http.clone().unwrap());
    let c = consumer(&broker, d, "--token c-secret");
    let seconds = "8";
    let hammer = python(
        "crates/flowgate/tests/http_api/hammer.py",
        &[
            "--url",
            &url,
            "--topic",
            "t",
            "--threads",
            "8",
            "--seconds",
            seconds,
            "--token",
            "h-secret",
            "--json",
            d.join("hammer.json").to_str().unwrap(),
        ],
        &d.join("hammer.log"),
    );
    let polite = python(
        "examples/python/producer.py",
        &[
            "--url",
            &url,
            "--topic",
            "t",
            "--count",
            "1000000",
            "--seconds",
            seconds,
            "--token",
            "p-secret",
            "--json",
            d.join("polite.json").to_str().unwrap(),
        ],
        &d.join("polite.log"),
    );
    let within = Duration::from_secs(60);
    finish_ok(hammer, &d.join("hammer.log"), within);
    finish_ok(polite, &d.join("polite.log"), within);
    finish_ok(c, &d.join("c.log"), within);
    let stats = get_json(broker.metrics.as_ref().unwrap(), "/stats");
    broker.stop();
    let b = json(&d.join("broker.json"));
    let h = json(&d.join("hammer.json"));
    let p = json(&d.join("polite.json"));
    let topic = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "t")
        .unwrap();
    eprintln!(
        "hammer {h}\npolite {p}\nbroker peak {} events, {b}",
        topic["peak_events"]
    );
    let count = |v: &Value, s: &str| v["statuses"][s].as_u64().unwrap_or(0);
    assert!(
        count(&h, "429") > 0,
        "the hammer is told it is over its share: {h}"
    );
    assert!(count(&h, "503") > 0, "and that there is no room: {h}");
    assert_eq!(count(&h, "500") + count(&p, "500"), 0);
    assert!(
        topic["peak_events"].as_u64().unwrap() <= 200,
        "the topic stays within its capacity: {topic}"
    );
    // Every accepted event is in the table, once; nothing refused is.
    let rows = numbers(&d.join("db.sqlite"));
    assert_eq!(distinct_rows(&d.join("db.sqlite")), rows.len() as u64);
    let (hammered, polite_sent) = (h["accepted"].as_u64().unwrap(), p["sent"].as_u64().unwrap());
    assert_eq!(
        rows.len() as u64,
        hammered + polite_sent,
        "the table holds what was accepted"
    );
    // Two clients waiting take turns: the polite one, with one request at a time against
    // eight, still gets close to half.
    let share = polite_sent as f64 / (hammered + polite_sent) as f64;
    assert!(
        share >= 0.4,
        "the polite client got {:.0}% of what was accepted",
        share * 100.0
    );
}

#[test]
fn a_python_consumer_acks_every_event_and_one_that_never_acks_gets_its_deliveries_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = BrokerProc::start(d, "--capacity 5000 --ack-wait 2s --http-addr 127.0.0.1:0");
    let url = format!("http://{}", broker.http.clone().unwrap());
    let produce = spawn_logged(
        &format!(
            "produce --broker {} --topic t --count 2000 --payload-size 40 --json {}",
            broker.addr,
            d.join("p.json").display()
        ),
        &d.join("p.log"),
    );
    assert!(finish(produce, Duration::from_secs(60)).success());
    // One consumer of group "lazy" fetches 50 and never acks them.
    let fetch = |group: &str, max: u32| -> Value {
        let out = Command::new("curl")
            .args(["-s", "-X", "POST"])
            .arg(format!(
                "{url}/v1/topics/t/groups/{group}/fetch?max={max}&wait=1s"
            ))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = fetch("lazy", 50);
    let first: Vec<&Value> = first["events"].as_array().unwrap().iter().collect();
    assert_eq!(first.len(), 50);
    assert!(first.iter().all(|e| e["attempt"] == 1));
    // The Python consumer of group "db" takes everything and acks it.
    let out = d.join("events.ndjson");
    let c = python(
        "examples/python/consumer.py",
        &[
            "--url",
            &url,
            "--topic",
            "t",
            "--group",
            "db",
            "--idle-exit",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        &d.join("c.log"),
    );
    finish_ok(c, &d.join("c.log"), Duration::from_secs(60));
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 2000, "every event fetched once");
    // The lazy group goes on fetching and never acks: past the ack deadline (2 s), the 50 it
    // fetched first come back to it, attempt 2 or more.
    let first: BTreeSet<String> = first.iter().map(|e| e["payload"].to_string()).collect();
    let mut back = BTreeSet::new();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while back.len() < first.len() && std::time::Instant::now() < until {
        let got = fetch("lazy", 500);
        for e in got["events"].as_array().unwrap() {
            let payload = e["payload"].to_string();
            if e["attempt"].as_u64() >= Some(2) && first.contains(&payload) {
                back.insert(payload);
            }
        }
    }
    assert_eq!(
        back, first,
        "every unacked delivery came back after the deadline"
    );
    let topic = get_json_http(&url, "/v1/topics/t");
    let groups = topic["broker"]["groups"].as_array().unwrap();
    let db = groups.iter().find(|g| g["name"] == "db").unwrap();
    assert_eq!(db["acked"], 2000, "{topic}");
    broker.stop();
}

fn get_json_http(url: &str, path: &str) -> Value {
    let out = Command::new("curl")
        .args(["-s", "--fail-with-body"])
        .arg(format!("{url}{path}"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// The README's curl block, between its markers.
fn readme_curl_block() -> String {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let start = readme
        .find("<!-- http-example -->")
        .expect("the README's HTTP example marker");
    let block = &readme[start..];
    let body = block.split("```sh\n").nth(1).expect("a sh block");
    body.split("\n```").next().unwrap().to_string()
}

#[test]
fn the_readme_curl_examples_work_against_a_live_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--http-addr 127.0.0.1:0");
    let http = broker.http.clone().unwrap();
    let script = readme_curl_block().replace("127.0.0.1:8080", &http);
    assert!(script.contains("curl"), "{script}");
    // The block's commands, without the lines that start servers (this test started one).
    let commands: Vec<&str> = script.lines().filter(|l| l.starts_with("curl")).collect();
    let outputs: Vec<Value> = commands
        .iter()
        .map(|cmd| {
            let out = Command::new("bash").args(["-c", cmd]).output().unwrap();
            assert!(out.status.success(), "{cmd}: {out:?}");
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{cmd}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
        })
        .collect();
    eprintln!("{outputs:#?}");
    assert_eq!(outputs[0]["accepted"], 2, "publish NDJSON");
    assert_eq!(outputs[1]["accepted"], 2, "publish a JSON array");
    let events = outputs[2]["events"].as_array().unwrap();
    assert_eq!(events.len(), 4, "fetch");
    assert_eq!(outputs[3]["acked"], 4, "ack: {}", outputs[3]);
    assert_eq!(
        outputs[4]["broker"]["groups"][0]["acked"], 4,
        "topic figures"
    );
    broker.stop();
}

#[test]
fn schemathesis_finds_no_server_error_and_every_response_matches_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(
        dir.path(),
        "--capacity 1000 --ack-wait 2s --http-addr 127.0.0.1:0",
    );
    let http = broker.http.clone().unwrap();
    let out = Command::new(pyenv("schemathesis"))
        .args(["run", &format!("http://{http}/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "60",
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "2",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    broker.stop();
}

#[test]
fn bench_http_measures_http_ingest_next_to_the_native_producer_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let status = Command::new(common::BIN)
        .args([
            "bench",
            "--http",
            "--events",
            "20000",
            "--http-batch",
            "500",
            "--json",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let b = json(&out);
    assert_eq!(b["reference"], "native producer");
    assert!(b["reference_events_per_s"].as_f64() > Some(0.0), "{b}");
    assert!(b["flowgate_events_per_s"].as_f64() > Some(0.0), "{b}");
    assert_eq!(b["run_ratios"].as_array().unwrap().len(), 1, "{b}");
}

/// `curl` with `args`; the status and the body as JSON.
fn curl(args: &[&str]) -> (u16, Value, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/stderr"])
        .args(args)
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_string();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_slice(&out.stderr).unwrap_or(Value::Null);
    (status, body, headers)
}

#[test]
fn a_gateway_in_front_of_a_broker_names_every_refusal_and_a_retried_key_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("broker.toml");
    std::fs::write(
        &config,
        "[[token]]\nname = \"writer\"\nsecret = \"w-secret\"\nproduce = [\"t\"]\nconsume = [\"t\"]\n\n\
         [[token]]\nname = \"reader\"\nsecret = \"r-secret\"\nproduce = []\nconsume = [\"t\"]\n",
    )
    .unwrap();
    let broker = BrokerProc::start(
        d,
        &format!("--config {} --metrics-addr 127.0.0.1:0", config.display()),
    );
    let mut gateway = Command::new(common::BIN)
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--broker",
            &broker.addr,
            "--max-body",
            "4KiB",
            "--max-queued",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(gateway.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let http = line
        .strip_prefix("HTTP API on ")
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("gateway said {line:?}"))
        .to_string();
    let url = format!("http://{http}/v1/topics/t/events");
    let ndjson = ["-H", "Content-Type: application/x-ndjson"];
    let post = |extra: &[&str], body: &str| {
        let mut args = vec!["-X", "POST", &url[..]];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--data-binary", body]);
        curl(&args)
    };
    let writer = "Authorization: Bearer w-secret";
    let (s, b, _) = post(&ndjson, "1\n");
    assert_eq!(s, 401, "no token: {b}");
    assert!(
        b["error"].as_str().unwrap().contains("requires a token"),
        "{b}"
    );
    let (s, b, _) = post(
        &[ndjson[0], ndjson[1], "-H", "Authorization: Bearer r-secret"],
        "1\n",
    );
    assert_eq!(s, 403, "a reader may not produce: {b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("may not produce to topic 't'"),
        "{b}"
    );
    let (s, b, _) = post(&[ndjson[0], ndjson[1], "-H", writer], "1\n2\n{oops\n");
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"].as_str().unwrap().starts_with("line 3: not JSON"),
        "{b}"
    );
    let (s, b, _) = post(&["-H", "Content-Type: text/csv", "-H", writer], "1,2\n");
    assert_eq!(s, 415, "{b}");
    let big = format!("\"{}\"\n", "x".repeat(5000));
    let (s, b, _) = post(&[ndjson[0], ndjson[1], "-H", writer], &big);
    assert_eq!(s, 413, "over --max-body: {b}");
    let many = "1\n".repeat(20);
    let (s, b, _) = post(&[ndjson[0], ndjson[1], "-H", writer], &many);
    assert_eq!(s, 413, "more events than --max-queued: {b}");
    assert!(b["error"].as_str().unwrap().contains("--max-queued"), "{b}");
    // Nothing of the refused requests reached the broker.
    let accepted = || {
        let stats = get_json(broker.metrics.as_ref().unwrap(), "/stats");
        stats["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "t")
            .map_or(0, |t| t["accepted"].as_u64().unwrap())
    };
    assert_eq!(accepted(), 0);
    // A request retried with its Idempotency-Key gets the first answer and is stored once.
    let keyed = [
        ndjson[0],
        ndjson[1],
        "-H",
        writer,
        "-H",
        "Idempotency-Key: k-1",
    ];
    let (s1, first, _) = post(&keyed, "{\"n\":1}\n{\"n\":2}\n");
    let (s2, again, _) = post(&keyed, "{\"n\":1}\n{\"n\":2}\n");
    assert_eq!((s1, s2), (200, 200), "{first} {again}");
    assert_eq!(first, again, "the retry gets the original answer");
    assert_eq!(accepted(), 2, "stored once");
    // The reader consumes them through the gateway.
    let fetch = format!("http://{http}/v1/topics/t/groups/g/fetch?max=10&wait=1s");
    let (s, b, _) = curl(&["-X", "POST", &fetch, "-H", "Authorization: Bearer r-secret"]);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["events"].as_array().unwrap().len(), 2, "{b}");
    let bad = format!("http://{http}/v1/topics/t/groups/g/fetch?max=0");
    let (s, b, _) = curl(&["-X", "POST", &bad]);
    assert_eq!(s, 400, "max=0 is refused by name: {b}");
    let _ = gateway.kill();
    let _ = gateway.wait();
    broker.stop();
}

#[test]
fn an_http_consumer_that_stops_fetching_holds_the_producer_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = BrokerProc::start(d, "--capacity 200 --http-addr 127.0.0.1:0");
    let http = broker.http.clone().unwrap();
    // One fetch makes the blocking group "g" and its consumer in the API; then nobody fetches.
    let fetch = format!("http://{http}/v1/topics/t/groups/g/fetch?max=1&wait=100ms");
    let (s, b, _) = curl(&["-X", "POST", &fetch]);
    assert_eq!(
        (s, b["events"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{b}"
    );
    let produce = spawn_logged(
        &format!(
            "produce --broker {} --topic t --count 5000 --rate 100000 --duration 3s --json {}",
            broker.addr,
            d.join("p.json").display()
        ),
        &d.join("p.log"),
    );
    let _ = finish(produce, Duration::from_secs(30));
    let p = json(&d.join("p.json"));
    let confirmed = p["confirmed_seq"].as_u64().unwrap();
    // The topic's 200: what the API's consumer received and nobody fetched or acked is still
    // held by the group, so it counts against the capacity.
    eprintln!("confirmed {confirmed} of 5000 in 3 s: {p}");
    assert!(
        confirmed <= 200,
        "the producer got past the topic's bound: {p}"
    );
    assert!(
        p["waited_s"].as_f64() > Some(2.0),
        "it waited for credit: {p}"
    );
    broker.stop();
}
