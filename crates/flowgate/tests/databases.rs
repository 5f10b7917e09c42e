//! The database sets the pace: a real PostgreSQL server (started by the test in a temp dir on
//! a free port) and SQLite behind `flowgate consume`, with a broker process between them and
//! the producer. Redeliveries leave the tables exact, refused events are dead-lettered with
//! their reasons, and a table lock held for 3 s shrinks demand until the producer stops, after
//! which throughput returns.

mod common;

use std::time::{Duration, Instant};

use common::{BrokerProc, finish, json, spawn};
use flowgate_client::{Producer, ProducerConfig};
use flowgate_core::{Event, EventId};
use flowgate_testkit::PgServer;
use tokio_postgres::NoTls;

async fn pg_query(url: &str, sql: &str) -> Vec<i64> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = client.query_one(sql, &[]).await.unwrap();
    (0..row.len()).map(|i| row.get::<_, i64>(i)).collect()
}

fn sqlite_query(path: &std::path::Path, sql: &str) -> Vec<i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| {
        (0..r.as_ref().column_count())
            .map(|i| r.get::<_, i64>(i))
            .collect()
    })
    .unwrap()
}

fn event(payload: Vec<u8>) -> Event {
    Event {
        id: EventId::default(),
        key: None,
        created_us: 0,
        payload,
    }
}

#[test]
fn postgres_table_is_exact_after_the_consumer_is_killed_and_restarted() {
    let pg = PgServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--capacity 1000");
    let sink = format!("{}?table=orders", pg.url());
    let consume = |json: &str| {
        spawn(&format!(
            "consume --broker {} --topic t --group g --sink {sink} --max-rate 4000 --idle-exit 3s --json {}",
            broker.addr,
            dir.path().join(json).display()
        ))
    };
    let mut first = consume("c1.json");
    let producer = spawn(&format!(
        "produce --broker {} --topic t --rate 8000 --count 20000",
        broker.addr
    ));
    std::thread::sleep(Duration::from_millis(2500));
    first.kill().unwrap();
    first.wait().unwrap();
    let second = consume("c2.json");
    assert!(finish(producer, Duration::from_secs(60)).success());
    assert!(finish(second, Duration::from_secs(60)).success());
    let b = broker.stop();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let counts = rt.block_on(pg_query(
        &pg.url(),
        "SELECT COUNT(*), COUNT(DISTINCT (producer, seq)), MIN(seq), MAX(seq) FROM orders",
    ));
    assert_eq!(
        counts,
        vec![20_000, 20_000, 1, 20_000],
        "no loss, no duplicate rows"
    );
    assert!(
        b["topics"][0]["redelivered"].as_u64().unwrap() > 0,
        "the kill forced redeliveries: {b}"
    );
}

/// Publishes 1,000 events, every 100th not JSON, to a consumer whose table takes JSON only.
fn dead_letters_through(sink: &str, dir: &std::path::Path) -> serde_json::Value {
    let broker = BrokerProc::start(dir, "--capacity 500");
    let summary = dir.join("c.json");
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink {sink} --max-attempts 3 --count 1000 --json {}",
        broker.addr,
        summary.display()
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut p = Producer::connect(ProducerConfig::new(&broker.addr, "t"))
            .await
            .unwrap();
        for i in 0..1_000u64 {
            let payload = if i % 100 == 7 {
                format!("{{bad {i}")
            } else {
                format!(r#"{{"i":{i}}}"#)
            };
            p.send(event(payload.into_bytes())).await.unwrap();
        }
        p.close().await.unwrap();
    });
    assert!(finish(consumer, Duration::from_secs(60)).success());
    broker.stop();
    json(&summary)
}

#[test]
fn refused_events_are_retried_then_dead_lettered_and_their_batches_commit_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let c = dead_letters_through(&format!("sqlite:{}?payload=json", db.display()), dir.path());
    assert_eq!(
        (c["dead_lettered"].as_u64(), c["retried"].as_u64()),
        (Some(10), Some(20)),
        "{c}"
    );
    assert_eq!(sqlite_query(&db, "SELECT COUNT(*) FROM events"), vec![990]);
    assert_eq!(
        sqlite_query(
            &db,
            "SELECT COUNT(*), MIN(attempts), MAX(attempts), SUM(reason LIKE '%CHECK%') FROM events_dead_letters"
        ),
        vec![10, 3, 3, 10]
    );
}

#[test]
fn refused_events_are_retried_then_dead_lettered_and_their_batches_commit_postgres() {
    let pg = PgServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let c = dead_letters_through(&format!("{}?payload=json", pg.url()), dir.path());
    assert_eq!(
        (c["dead_lettered"].as_u64(), c["retried"].as_u64()),
        (Some(10), Some(20)),
        "{c}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        rt.block_on(pg_query(&pg.url(), "SELECT COUNT(*) FROM events")),
        vec![990]
    );
    assert_eq!(
        rt.block_on(pg_query(
            &pg.url(),
            "SELECT COUNT(*), MIN(attempts)::bigint, MAX(attempts)::bigint, \
             SUM((reason ILIKE '%json%')::int)::bigint FROM events_dead_letters"
        )),
        vec![10, 3, 3, 10]
    );
}

/// Events sent in `[from, to)` seconds, per second.
fn rate_between(samples: &[(f64, u64)], from: f64, to: f64) -> f64 {
    let at = |t: f64| {
        samples
            .iter()
            .take_while(|s| s.0 <= t)
            .last()
            .map_or(0, |s| s.1)
    };
    (at(to) - at(from)) as f64 / (to - from)
}

#[test]
fn a_table_lock_shrinks_demand_stops_the_producer_and_throughput_returns() {
    let pg = PgServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let capacity = 2_000;
    let broker = BrokerProc::start(dir.path(), &format!("--capacity {capacity}"));
    let summary = dir.path().join("c.json");
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink {}?table=orders --prefetch 500 \
         --commit-latency-target 200ms --idle-exit 3s --json {}",
        broker.addr,
        pg.url(),
        summary.display()
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (samples, confirmed, stall) = rt.block_on(async {
        // Wait for the consumer to create the table before locking it.
        let (client, conn) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut p = Producer::connect(ProducerConfig::new(&broker.addr, "t"))
            .await
            .unwrap();
        let started = Instant::now();
        let (stall_from, stall_to) = (3.0, 6.0);
        let locker = {
            let url = pg.url();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64(stall_from)).await;
                let (mut c, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
                tokio::spawn(conn);
                let tx = c.transaction().await.unwrap();
                tx.batch_execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs_f64(stall_to - stall_from)).await;
                tx.commit().await.unwrap();
            })
        };
        // 2,000 events/s, 20 every 10 ms, as long as credit allows.
        let mut samples = Vec::new();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(10) {
            let slot = started + Duration::from_millis(sent / 2);
            tokio::time::sleep_until(slot.into()).await;
            for _ in 0..20 {
                p.send(event(format!(r#"{{"n":{sent}}}"#).into_bytes()))
                    .await
                    .unwrap();
                sent += 1;
            }
            samples.push((started.elapsed().as_secs_f64(), sent));
        }
        locker.await.unwrap();
        let stats = p.close().await.unwrap();
        drop(client);
        (samples, stats.confirmed_seq, (stall_from, stall_to))
    });
    assert!(finish(consumer, Duration::from_secs(60)).success());
    let b = broker.stop();
    let c = json(&summary);

    let before = rate_between(&samples, 1.0, stall.0);
    let during = rate_between(&samples, stall.0 + 1.5, stall.1);
    let after = rate_between(&samples, stall.1 + 1.5, 10.0);
    eprintln!("producer: {before:.0}/s before, {during:.0}/s during the lock, {after:.0}/s after");
    assert!(before > 1_600.0, "steady before the stall: {before:.0}/s");
    assert!(
        during < before * 0.2,
        "the producer felt the stall: {during:.0}/s vs {before:.0}/s"
    );
    assert!(
        after > before * 0.8,
        "throughput returned: {after:.0}/s vs {before:.0}/s"
    );
    assert!(
        b["topics"][0]["peak_events"].as_u64().unwrap() <= capacity,
        "{b}"
    );
    assert!(
        c["batch_limit_cuts"].as_u64().unwrap() >= 1,
        "the slow commit cut the batch: {c}"
    );
    assert!(
        c["commit_latency_ms_max"].as_f64().unwrap() >= 2_000.0,
        "{c}"
    );
    let rows = rt.block_on(pg_query(
        &pg.url(),
        "SELECT COUNT(*), COUNT(DISTINCT (producer, seq)) FROM orders",
    ));
    assert_eq!(
        rows,
        vec![confirmed as i64, confirmed as i64],
        "nothing lost, nothing twice"
    );
}

#[test]
fn postgres_stopped_for_10_s_mid_run_the_consumer_rides_through_and_the_table_is_exact() {
    let mut pg = PgServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--capacity 1000");
    let sink = format!("{}?table=orders", pg.url());
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink {sink} --idle-exit 5s --json {}",
        broker.addr,
        dir.path().join("c.json").display()
    ));
    let producer = spawn(&format!(
        "produce --broker {} --topic t --rate 2000 --count 30000",
        broker.addr
    ));
    std::thread::sleep(Duration::from_secs(2));
    pg.stop();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    pg.start_again();
    let was_down = down.elapsed();
    assert!(finish(producer, Duration::from_secs(90)).success());
    assert!(
        finish(consumer, Duration::from_secs(90)).success(),
        "the consumer rode through"
    );
    let c = json(&dir.path().join("c.json"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let counts = rt.block_on(pg_query(
        &pg.url(),
        "SELECT COUNT(*), COUNT(DISTINCT (producer, seq)), \
         (SELECT COUNT(*) FROM orders_dead_letters) FROM orders",
    ));
    assert_eq!(
        counts,
        vec![30_000, 30_000, 0],
        "exact, nothing dead-lettered: {c}"
    );
    let failures = c["commit_failures"].as_u64().unwrap();
    eprintln!(
        "down {was_down:?}: {failures} failed commits tried again, {} redelivered, rows {}",
        c["redelivered"], counts[0]
    );
    assert!(
        failures >= 3,
        "{failures} failed commits tried again over {was_down:?} down: {c}"
    );
    assert_eq!(c["retrying"], false, "{c}");
    broker.stop();
}

#[test]
fn sqlite_on_a_full_disk_waits_and_goes_on_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mounted) = common::Tmpfs::mount(dir.path(), "8m") else {
        return;
    };
    let mnt = mounted.0.clone();
    let broker = BrokerProc::start(dir.path(), "--capacity 1000");
    let db = mnt.join("c.db");
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink sqlite:{} --idle-exit 5s --json {}",
        broker.addr,
        db.display(),
        dir.path().join("c.json").display()
    ));
    let producer = spawn(&format!(
        "produce --broker {} --topic t --rate 2000 --count 16000 --payload-size 100B",
        broker.addr
    ));
    std::thread::sleep(Duration::from_secs(2));
    // Fill what is left of the disk.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    std::thread::sleep(Duration::from_secs(3));
    let full_rows = sqlite_query(&db, "SELECT COUNT(*) FROM events")[0];
    std::fs::remove_file(&filler).unwrap();
    assert!(finish(producer, Duration::from_secs(60)).success());
    assert!(
        finish(consumer, Duration::from_secs(60)).success(),
        "the consumer waited out the full disk"
    );
    let c = json(&dir.path().join("c.json"));
    let rows = sqlite_query(
        &db,
        "SELECT COUNT(*), COUNT(DISTINCT producer || '.' || seq) FROM events",
    );
    eprintln!(
        "full disk: {} rows while full, {} failed commits tried again; {} rows at the end",
        full_rows, c["commit_failures"], rows[0]
    );
    assert_eq!(rows, vec![16_000, 16_000], "exact: {c}");
    assert!(
        c["commit_failures"].as_u64().unwrap() >= 1,
        "the disk was full: {c}"
    );
    broker.stop();
}
