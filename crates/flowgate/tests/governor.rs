//! The memory governor against a real limit: a broker in a 256 MiB memory cgroup, 100 topics
//! of 64 MiB capacity each (6.4 GiB of promised room), producers pushing to all of them at
//! once. Without the governor the kernel kills the broker; with it the broker learns its
//! budget from the cgroup, producers wait, and every confirmed event is delivered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flowgate_client::{Consumer, ConsumerConfig, Producer, ProducerConfig};

mod common;

use common::BIN;

const TOPICS: usize = 100;
const LIMIT: u64 = 256 << 20;

/// A memory cgroup (v1) of `LIMIT` under this process's own, removed when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    /// `None`, saying SKIPPED, where none can be made (not root, no v1 memory controller).
    fn make() -> Option<Cgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.trim_start_matches('/').to_string())
        });
        let Some(path) = path else {
            eprintln!("SKIPPED: no cgroup v1 memory controller");
            return None;
        };
        let dir = Path::new("/sys/fs/cgroup/memory")
            .join(path)
            .join(format!("flowgate-governor-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&dir) {
            eprintln!("SKIPPED: cannot make a memory cgroup ({e}); this test needs root");
            return None;
        }
        let group = Cgroup(dir);
        std::fs::write(group.0.join("memory.limit_in_bytes"), LIMIT.to_string()).unwrap();
        // No swap either, where the kernel accounts it: past the limit is the OOM killer.
        let _ = std::fs::write(
            group.0.join("memory.memsw.limit_in_bytes"),
            LIMIT.to_string(),
        );
        Some(group)
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.0.join(file)).unwrap_or_default()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A child killed when dropped, so a failing test leaves no broker in its cgroup.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A broker that joins `group` before it starts (through a shell that moves itself in and
/// then becomes the broker), and the address it announced.
fn broker_in(group: &Cgroup) -> (Killed, String) {
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {BIN} broker --listen 127.0.0.1:0 --capacity 1000000 \
         --capacity-bytes 64MiB --stop-on-stdin-eof",
        group.0.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();
    (Killed(child), addr)
}

/// Pushes 16 KiB events to `topic` until `until`; the events the broker confirmed.
async fn push(addr: String, topic: String, until: tokio::time::Instant) -> u64 {
    let mut p = Producer::connect(ProducerConfig::new(&addr, &topic))
        .await
        .unwrap();
    while let Ok(sent) = tokio::time::timeout_at(until, p.send_payload(vec![7; 16 << 10])).await {
        sent.unwrap();
    }
    p.close().await.unwrap().confirmed_seq
}

/// Receives and acks `topic` until `count` events came; how many did.
async fn drain(addr: String, topic: String, count: u64) -> u64 {
    let mut c = Consumer::connect(ConsumerConfig::new(&addr, &topic, "g"))
        .await
        .unwrap();
    let mut got = 0;
    while got < count {
        let Ok(Ok(Some(batch))) = tokio::time::timeout(Duration::from_secs(20), c.recv()).await
        else {
            break;
        };
        got += batch.len() as u64;
        c.ack(batch.iter().map(|d| d.tag));
    }
    c.close().await;
    got
}

#[test]
fn a_broker_in_a_256_mib_cgroup_with_100_topics_of_64_mib_is_not_killed_and_loses_nothing() {
    let Some(group) = Cgroup::make() else { return };
    let (mut broker, addr) = broker_in(&group);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    let confirmed: Vec<u64> = rt.block_on(async {
        let pushes: Vec<_> = (0..TOPICS)
            .map(|i| tokio::spawn(push(addr.clone(), format!("t{i}"), until)))
            .collect();
        let mut out = Vec::new();
        for p in pushes {
            out.push(p.await.unwrap());
        }
        out
    });
    let peak = group.read("memory.max_usage_in_bytes");
    assert!(
        broker.0.try_wait().unwrap().is_none(),
        "the broker died (OOM: {})",
        group.read("memory.oom_control").replace('\n', " ")
    );
    let drained: Vec<u64> = rt.block_on(async {
        let drains: Vec<_> = confirmed
            .iter()
            .enumerate()
            .map(|(i, n)| tokio::spawn(drain(addr.clone(), format!("t{i}"), *n)))
            .collect();
        let mut out = Vec::new();
        for d in drains {
            out.push(d.await.unwrap());
        }
        out
    });
    let total: u64 = confirmed.iter().sum();
    eprintln!(
        "{TOPICS} topics: {total} events of 16 KiB confirmed in {:?} ({} MiB), cgroup peak {} MiB of {} MiB",
        started.elapsed(),
        total * 16 / 1024,
        peak.trim().parse::<u64>().unwrap_or(0) >> 20,
        LIMIT >> 20
    );
    assert_eq!(drained, confirmed, "every confirmed event was delivered");
    assert!(total > 0);
    drop(broker.0.stdin.take());
    assert!(broker.0.wait().unwrap().success());
}
