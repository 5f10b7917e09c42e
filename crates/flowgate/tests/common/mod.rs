//! Helpers shared by the process-level tests: the flowgate binary, a broker process on a
//! free port, children with deadlines, JSON summaries.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flowgate");

pub struct BrokerProc {
    child: Child,
    pub addr: String,
    /// The /stats and /metrics address, when started with `--metrics-addr`.
    pub metrics: Option<String>,
    json: PathBuf,
}

impl BrokerProc {
    pub fn start(dir: &Path, extra: &str) -> BrokerProc {
        let json = dir.join("broker.json");
        let mut child = Command::new(BIN)
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--stop-on-stdin-eof",
                "--json",
            ])
            .arg(&json)
            .args(extra.split_whitespace())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        let metrics = extra.contains("--metrics-addr").then(|| {
            line.clear();
            out.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("metrics on ")
                .expect("metrics line")
                .to_string()
        });
        BrokerProc {
            child,
            addr,
            metrics,
            json,
        }
    }

    /// Closes its stdin so it stops, and returns its JSON summary.
    pub fn stop(mut self) -> Value {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
        serde_json::from_str(&std::fs::read_to_string(&self.json).unwrap()).unwrap()
    }
}

pub fn spawn(args: &str) -> Child {
    Command::new(BIN)
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

pub fn finish(mut child: Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Spawns `flowgate ARGS --metrics-addr 127.0.0.1:0` and returns it with the address it
/// announced on stderr (`metrics on ADDR`); the rest of its stderr is drained.
pub fn spawn_with_metrics(args: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args.split_whitespace())
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "exited before announcing metrics"
        );
        if let Some(a) = line.trim().strip_prefix("metrics on ") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});
    (child, addr)
}
