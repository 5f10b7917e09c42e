//! Network partitions of 10 s, first between producer and broker, then between broker and
//! consumer, through a userspace proxy that goes silent: it stops moving bytes both ways and
//! sends no FIN or RST, as a cut cable or a dropped route would (the kernel here has no netem
//! or iptables). The broker's idle deadline and the clients' heartbeats must notice, the
//! clients reconnect once the network heals, and the table is exact: lost 0, duplicates 0.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::{BrokerProc, distinct_rows, finish, get_json, json, row_count, spawn};

/// A TCP proxy that can be cut: while cut it reads nothing from either side and opens
/// nothing upstream, so both peers see silence and no FIN.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cut);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, Arc::clone(&flag)));
            }
        });
        Proxy { addr, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

async fn wait_healed(cut: &AtomicBool) {
    while cut.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, cut: Arc<AtomicBool>) {
    wait_healed(&cut).await;
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::join!(pump(cr, sw, Arc::clone(&cut)), pump(sr, cw, cut));
}

/// Copies one direction; while cut, reads nothing (what was sent waits in the kernel, as in
/// a network that holds packets it cannot deliver).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        wait_healed(&cut).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Bytes read just as the cut began are held until it heals.
        wait_healed(&cut).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn idle_timeouts(metrics: &str) -> u64 {
    get_json(metrics, "/stats")["errors_sent"]["idle-timeout"]
        .as_u64()
        .unwrap_or(0)
}

/// Polls `probe` every 20 ms until it holds; how long that took.
fn until(within: Duration, what: &str, mut probe: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !probe() {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Cuts `proxy` for 10 s: the time until the broker noticed (an idle-timeout close), and
/// after healing, until rows reach the table again.
fn partition(proxy: &Proxy, metrics: &str, db: &Path) -> (Duration, Duration) {
    let closed_before = idle_timeouts(metrics);
    proxy.set_cut(true);
    let detected = until(Duration::from_secs(10), "the broker notices", || {
        idle_timeouts(metrics) > closed_before
    });
    std::thread::sleep(Duration::from_secs(10).saturating_sub(detected));
    let rows_at_heal = row_count(db);
    proxy.set_cut(false);
    let recovered = until(Duration::from_secs(20), "rows again after healing", || {
        row_count(db) > rows_at_heal
    });
    (detected, recovered)
}

#[test]
fn ten_second_partitions_are_detected_by_heartbeats_and_healed_with_nothing_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(
        dir.path(),
        "--idle-timeout 3s --capacity 2000 --metrics-addr 127.0.0.1:0",
    );
    let metrics = broker.metrics.clone().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream: SocketAddr = broker.addr.parse().unwrap();
    let to_producer = runtime.block_on(Proxy::start(upstream));
    let to_consumer = runtime.block_on(Proxy::start(upstream));

    let db = dir.path().join("c.db");
    let produced = dir.path().join("p.json");
    // It stops after 15 s with nothing to receive (longer than a partition): a count would
    // include redelivered events the table already holds.
    let consumer = spawn(&format!(
        "consume --broker flowgate://{} --topic t --group g --sink sqlite:{} --idle-exit 15s",
        to_consumer.addr,
        db.display()
    ));
    let producer = spawn(&format!(
        "produce --broker flowgate://{} --topic t --rate 2000 --count 40000 --json {}",
        to_producer.addr,
        produced.display()
    ));
    until(Duration::from_secs(20), "rows flow", || {
        row_count(&db) > 2000
    });
    let (p_detect, p_recover) = partition(&to_producer, &metrics, &db);
    until(Duration::from_secs(20), "rows flow again", || {
        row_count(&db) > 10_000
    });
    let (c_detect, c_recover) = partition(&to_consumer, &metrics, &db);

    assert!(finish(producer, Duration::from_secs(60)).success());
    assert!(finish(consumer, Duration::from_secs(60)).success());
    let summary = json(&produced);
    let rows = distinct_rows(&db);
    eprintln!(
        "producer partition: broker noticed in {p_detect:?}, rows again {p_recover:?} after healing; \
         consumer partition: noticed in {c_detect:?}, rows again {c_recover:?} after healing; \
         confirmed {}, rows {rows}, producer sessions {}",
        summary["confirmed_seq"], summary["sessions"]
    );
    assert_eq!(summary["confirmed_seq"], 40_000);
    assert_eq!(rows, 40_000, "lost {}", 40_000 - rows);
    assert!(summary["sessions"].as_u64().unwrap() >= 2, "it reconnected");
    // Within the idle deadline (3 s) and the poll, not after some longer TCP timeout.
    assert!(p_detect < Duration::from_secs(5), "{p_detect:?}");
    assert!(c_detect < Duration::from_secs(5), "{c_detect:?}");
    broker.stop();
}
