//! Sizes end to end. `WELCOME` announces the largest event a topic accepts (what a lone
//! `DELIVER` within the broker's frame limit holds, and one grant of the topic covers): a
//! `--payload-size` beyond it is refused with exit 2 and exact figures before anything is sent
//! or allocated, and an oversized line of a `--from` file is skipped like a line that is not
//! JSON. A consumer gets an event larger than its `--prefetch-bytes` alone, and one whose
//! frame limit could not carry the largest event is refused at `HELLO` with the numbers.

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
    // The default frame limit is 1 MiB: 1,048,576 bytes, less 49 of a lone DELIVER's framing.
    let (code, err) = produce(&broker.addr, "--payload-size 2MiB --count 1");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--payload-size 2.0 MiB (2097152 bytes) is larger than the largest event")
            && err.contains("accepts: 1048527 bytes of payload")
            && err.contains("nothing was sent"),
        "{err}"
    );
    // Sizes that once panicked (16 EiB: an allocation overflow) or hung (5 GiB) are refused
    // the same way, at once.
    for size in ["16EiB", "5GiB", "1048528B"] {
        let (code, err) = produce(&broker.addr, &format!("--payload-size {size} --count 1"));
        assert_eq!(code, 2, "{size}: {err}");
        assert!(!err.contains("panicked"), "{size}: {err}");
    }
    // The largest that fits goes through.
    let (code, err) = produce(&broker.addr, "--payload-size 1048527B --count 1");
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
        err.contains("line 2: event of 5008 payload bytes (and 0 key bytes) exceeds the largest this topic accepts: 4047 bytes; skipped"),
        "{err}"
    );
    assert!(finish(consumer, Duration::from_secs(30)).success());
    let summary = broker.stop();
    assert_eq!(summary["topics"][0]["accepted"], 2, "{summary}");
}

#[test]
fn a_topic_smaller_than_a_frame_announces_its_largest_event_and_a_larger_one_is_refused_locally() {
    let dir = tempfile::tempdir().unwrap();
    // A frame holds 1 MiB, the topic 64 KiB: its largest event is 65,536 bytes of credit less
    // 64 of overhead. Before WELCOME said so, the 100 KB event was sent, could never be
    // granted, and the broker's refusal ended the producer with the small event unsent.
    let broker = BrokerProc::start(dir.path(), "--capacity-bytes 64KiB");
    let file = dir.path().join("lines.ndjson");
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(100_000));
    std::fs::write(&file, format!("{big}\n{{\"i\":2}}\n")).unwrap();
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink null --count 1",
        broker.addr
    ));
    let (code, err) = produce(&broker.addr, &format!("--from {}", file.display()));
    assert_eq!(code, 1, "a skipped line makes the exit 1: {err}");
    assert!(
        err.contains("line 1: event of 100008 payload bytes (and 0 key bytes) exceeds the largest this topic accepts: 65472 bytes; skipped"),
        "{err}"
    );
    assert!(finish(consumer, Duration::from_secs(30)).success());
    let summary = broker.stop();
    assert_eq!(summary["topics"][0]["accepted"], 1, "{summary}");
    assert_eq!(summary["topics"][0]["acked"], 1, "{summary}");
}

#[test]
fn an_event_larger_than_the_consumer_s_prefetch_bytes_comes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--max-frame 4MiB");
    let file = dir.path().join("lines.ndjson");
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2 << 20));
    std::fs::write(&file, format!("{{\"i\":1}}\n{big}\n{{\"i\":3}}\n")).unwrap();
    let (code, err) = produce(&broker.addr, &format!("--from {}", file.display()));
    assert_eq!(code, 0, "{err}");
    // Before, the 2 MiB event waited at the front for ever: the consumer asked for 1 MiB at
    // a time, and it and the event behind it never came ("nothing received for 5s").
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink null --count 3 --prefetch-bytes 1MiB --idle-exit 10s",
        broker.addr
    ));
    let status = finish(consumer, Duration::from_secs(30));
    assert!(status.success(), "all three arrived");
    let summary = broker.stop();
    assert_eq!(summary["topics"][0]["acked"], 3, "{summary}");
}

#[test]
fn a_consumer_that_could_not_read_the_largest_event_is_refused_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--max-frame 4MiB");
    let out = Command::new(BIN)
        .args([
            "consume",
            "--broker",
            &broker.addr,
            "--topic",
            "t",
            "--group",
            "g",
        ])
        .args(["--sink", "null", "--max-frame", "1MiB"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // A 4 MiB frame holds 4,194,304 - 49 bytes of key and payload in a lone DELIVER.
    assert!(
        err.contains("this topic accepts events of up to 4194255 bytes of key and payload, which take a 4194304-byte DELIVER frame; the consumer's max_frame is 1048576 bytes: raise it to at least 4194304"),
        "{err}"
    );
    // Refused at HELLO, it never joined: a consumer that can read it still gets everything.
    let (code, err) = produce(&broker.addr, "--count 5");
    assert_eq!(code, 0, "{err}");
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink null --count 5",
        broker.addr
    ));
    assert!(finish(consumer, Duration::from_secs(30)).success());
}
