//! Sizes validated up front: a `--payload-size` no frame to the broker can carry is refused
//! with exit 2 and exact figures before anything is sent or allocated, whatever its size, and
//! an oversized line of a `--from` file is skipped like a line that is not JSON.

use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{BIN, BrokerProc, finish, spawn};

/// Runs `flowgate produce ARGS` against `addr`; its exit code and standard error.
fn produce(addr: &str, args: &str) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["produce", "--broker", addr, "--topic", "t"])
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_payload_size_beyond_the_broker_s_frame_is_refused_up_front_with_exact_figures() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "");
    // The default frame limit is 1 MiB: 1,048,576 bytes, less 37 of framing.
    let (code, err) = produce(&broker.addr, "--payload-size 2MiB --count 1");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--payload-size 2.0 MiB (2097152 bytes) is larger than the largest event")
            && err.contains("accepts: 1048539 bytes of payload")
            && err.contains("nothing was sent"),
        "{err}"
    );
    // Sizes that once panicked (16 EiB: an allocation overflow) or hung (5 GiB) are refused
    // the same way, at once.
    for size in ["16EiB", "5GiB", "1048540B"] {
        let (code, err) = produce(&broker.addr, &format!("--payload-size {size} --count 1"));
        assert_eq!(code, 2, "{size}: {err}");
        assert!(!err.contains("panicked"), "{size}: {err}");
    }
    // The largest that fits goes through.
    let (code, err) = produce(&broker.addr, "--payload-size 1048539B --count 1");
    assert_eq!(code, 0, "{err}");
    let summary = broker.stop();
    assert_eq!(
        summary["topics"][0]["accepted"], 1,
        "only the event that fits: {summary}"
    );
}

#[test]
fn an_oversized_line_of_a_file_is_skipped_and_the_rest_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--max-frame 4KiB");
    let file = dir.path().join("lines.ndjson");
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(5000));
    std::fs::write(&file, format!("{{\"i\":1}}\n{big}\n{{\"i\":3}}\n")).unwrap();
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink null --count 2",
        broker.addr
    ));
    let (code, err) = produce(&broker.addr, &format!("--from {}", file.display()));
    assert_eq!(code, 1, "a skipped line makes the exit 1: {err}");
    assert!(
        err.contains("line 2: event of 5008 payload bytes (and 0 key bytes) exceeds the largest this broker accepts: 4059 bytes; skipped"),
        "{err}"
    );
    assert!(finish(consumer, Duration::from_secs(30)).success());
    let summary = broker.stop();
    assert_eq!(summary["topics"][0]["accepted"], 2, "{summary}");
}
