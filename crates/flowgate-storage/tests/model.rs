//! The log against a model, with a crash injected at every persistence step: whatever step
//! the crash hits, recovery succeeds, every committed and unacknowledged event comes back in
//! order with its bytes, and no event whose ack was committed comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use flowgate_core::EventId;
use flowgate_storage::sim::SimFs;
use flowgate_storage::{Log, LogOptions, OsFs};
use proptest::prelude::*;

/// Events with their position among those held.
type Positions = Vec<(usize, EventId)>;

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` events from producer `p`.
    Append {
        p: u64,
        n: u64,
    },
    /// Ack the held events whose position (mod 7) is in this mask.
    Ack(u8),
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..=3, 1u64..=6).prop_map(|(p, n)| Op::Append { p, n }),
        2 => any::<u8>().prop_map(Op::Ack),
        3 => Just(Op::Commit),
    ]
}

fn data(id: EventId) -> Vec<u8> {
    format!("event {}:{} ", id.producer, id.seq)
        .repeat((id.seq % 5) as usize + 1)
        .into_bytes()
}

const OPTIONS: LogOptions = LogOptions {
    segment_bytes: 400,
    recover_at_most: None,
};

fn open(fs: &SimFs) -> std::io::Result<(Log, flowgate_storage::Recovery)> {
    Log::open(Arc::new(fs.clone()), Path::new("/data/orders"), OPTIONS)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn committed_events_survive_a_crash_at_any_step(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..60),
        crash_step in 1u64..120,
        crash_in_recovery in proptest::option::of(1u64..6),
    ) {
        let fs = SimFs::new(seed);
        let (mut log, first) = open(&fs).unwrap();
        prop_assert!(first.events.is_empty());
        fs.crash_after(crash_step);

        let mut next: BTreeMap<u64, u64> = BTreeMap::new();
        let mut appended: Vec<EventId> = Vec::new();
        let mut held: Vec<EventId> = Vec::new();
        let (mut pending_events, mut pending_acks) = (Vec::new(), Vec::new());
        let (mut confirmed, mut acked) = (BTreeSet::new(), BTreeSet::new());
        let mut maybe_acked = BTreeSet::new();
        for op in ops {
            match op {
                Op::Append { p, n } => {
                    for _ in 0..n {
                        let seq = next.entry(p).or_insert(0);
                        *seq += 1;
                        let id = EventId::new(p, *seq);
                        log.append_event(id, &data(id), false);
                        appended.push(id);
                        held.push(id);
                        pending_events.push(id);
                    }
                }
                Op::Ack(mask) => {
                    let (ack, keep): (Positions, Positions) = held
                        .iter()
                        .copied()
                        .enumerate()
                        .partition(|(i, _)| mask & (1 << (i % 7)) != 0);
                    let ack: Vec<EventId> = ack.into_iter().map(|(_, id)| id).collect();
                    held = keep.into_iter().map(|(_, id)| id).collect();
                    log.append_acks(&ack);
                    pending_acks.extend(ack);
                }
                Op::Commit => match log.commit() {
                    Ok(()) => {
                        confirmed.extend(pending_events.drain(..));
                        acked.extend(pending_acks.drain(..));
                    }
                    Err(_) => {
                        // Unknown outcome: these acks may or may not have become durable.
                        maybe_acked.extend(pending_acks.drain(..));
                        break;
                    }
                },
            }
        }
        drop(log);
        fs.restart();
        if let Some(step) = crash_in_recovery {
            // A crash while recovering: the next start must still succeed.
            fs.crash_after(step);
            let _ = open(&fs);
            fs.restart();
        }
        let (_log, rec) = open(&fs).expect("recovery never fails on content");
        let got: Vec<EventId> = rec.events.iter().map(|(id, _)| *id).collect();

        // In acceptance order, each with its own bytes.
        let position: BTreeMap<EventId, usize> =
            appended.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        prop_assert!(got.windows(2).all(|w| position[&w[0]] < position[&w[1]]));
        for (id, bytes) in &rec.events {
            prop_assert_eq!(bytes, &data(*id));
        }
        let got: BTreeSet<EventId> = got.into_iter().collect();
        for id in confirmed.difference(&acked).filter(|id| !maybe_acked.contains(*id)) {
            prop_assert!(got.contains(id), "confirmed {:?} lost", id);
        }
        for id in &acked {
            prop_assert!(!got.contains(id), "acked {:?} came back", id);
        }
        // The dedup high-water marks cover every confirmed event.
        let high: BTreeMap<u64, u64> =
            rec.high_water.iter().map(|m| (m.producer, m.seq)).collect();
        for id in &confirmed {
            prop_assert!(high.get(&id.producer).copied().unwrap_or(0) >= id.seq);
        }
        // A second start finds the same.
        let (_again, rec2) = open(&fs).unwrap();
        prop_assert_eq!(rec2.events, rec.events);
        prop_assert_eq!(rec2.corrupt_records, 0, "the first recovery repaired the damage");
    }
}

#[test]
fn a_flipped_bit_is_reported_and_cut_and_the_log_opens() {
    let fs = SimFs::new(7);
    let (mut log, _) = open(&fs).unwrap();
    for seq in 1..=3 {
        let id = EventId::new(1, seq);
        log.append_event(id, &data(id), false);
        log.commit().unwrap();
    }
    drop(log);
    // The first segment: header, checkpoint (17 bytes), then event 1's record.
    let segment = Path::new("/data/orders/00000000000000000001.seg");
    fs.flip_bit(segment, 8 + 17 + 20).unwrap();
    let (_log, rec) = open(&fs).unwrap();
    assert_eq!(rec.corrupt_records, 1);
    assert!(rec.truncated_bytes > 0);
    assert!(
        rec.events.is_empty(),
        "everything after the bad record is cut"
    );
}

#[test]
fn on_a_real_disk_acknowledged_segments_are_removed_and_the_rest_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders");
    let options = LogOptions {
        segment_bytes: 4096,
        recover_at_most: None,
    };
    let (mut log, _) = Log::open(Arc::new(OsFs), &path, options).unwrap();
    let ids: Vec<EventId> = (1..=500).map(|s| EventId::new(9, s)).collect();
    for id in &ids {
        log.append_event(*id, &[0u8; 100], false);
        log.commit().unwrap();
    }
    let before = log.segment_count();
    assert!(before > 10, "{before} segments");
    log.append_acks(&ids[..450]);
    log.commit().unwrap();
    let after = log.segment_count();
    // 50 events of 125 bytes span two or three segments, plus the active one.
    assert!(after <= 4, "{after} segments left of {before}");
    assert!(log.disk_bytes() < 4 * 4096 + 200);
    drop(log);
    let (_log, rec) = Log::open(Arc::new(OsFs), &path, options).unwrap();
    let back: Vec<EventId> = rec.events.iter().map(|(id, _)| *id).collect();
    assert_eq!(back, ids[450..].to_vec());
    assert_eq!(rec.high_water, vec![EventId::new(9, 500)]);
}

#[test]
fn spilled_events_are_read_back_in_order_across_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders");
    let options = LogOptions {
        segment_bytes: 512,
        recover_at_most: None,
    };
    let (mut log, _) = Log::open(Arc::new(OsFs), &path, options).unwrap();
    let id = |s| EventId::new(3, s);
    // 1..=10 kept in memory by the broker, 11..=60 spilled; the memory ones are acked.
    for s in 1..=60 {
        log.append_event(id(s), &data(id(s)), s > 10);
        if s % 7 == 0 {
            log.commit().unwrap();
        }
    }
    log.append_acks(&(1..=10).map(id).collect::<Vec<_>>());
    log.commit().unwrap();
    assert!(log.segment_count() > 3, "spans segments");

    let (first, done) = log.read_spilled(5, u64::MAX).unwrap();
    assert_eq!(
        first.iter().map(|e| e.0).collect::<Vec<_>>(),
        (11..=15).map(id).collect::<Vec<_>>()
    );
    assert!(!done);
    for (i, d) in &first {
        assert_eq!(d, &data(*i));
    }
    // A byte limit below one event still yields one.
    let (one, _) = log.read_spilled(100, 1).unwrap();
    assert_eq!(one.iter().map(|e| e.0).collect::<Vec<_>>(), vec![id(16)]);
    log.append_acks(&(11..=16).map(id).collect::<Vec<_>>());
    log.commit().unwrap();
    drop(log);

    // After a restart with room for 4 in memory, the rest is read back from the log.
    let options = LogOptions {
        recover_at_most: Some((4, u64::MAX)),
        ..options
    };
    let (mut log, rec) = Log::open(Arc::new(OsFs), &path, options).unwrap();
    let in_memory: Vec<EventId> = rec.events.iter().map(|e| e.0).collect();
    assert_eq!(in_memory, (17..=20).map(id).collect::<Vec<_>>());
    assert_eq!(rec.spilled_events, 40);
    log.append_event(id(61), &data(id(61)), true);
    let mut back = Vec::new();
    loop {
        let (batch, done) = log.read_spilled(7, u64::MAX).unwrap();
        back.extend(batch.into_iter().map(|e| e.0));
        if done {
            break;
        }
    }
    assert_eq!(back, (21..=61).map(id).collect::<Vec<_>>());
    assert!(log.read_spilled(7, u64::MAX).unwrap().0.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A full disk: a commit fails with part of its write landed; while the disk stays full
    /// every retry fails the same way; once there is room, `recover` cuts the torn tail and the
    /// next commit writes everything kept in memory. After a restart every event appended is
    /// there, once, and no record is corrupt.
    #[test]
    fn a_full_disk_loses_nothing_and_the_log_writes_again_once_there_is_room(
        seed in any::<u64>(),
        before in 1u64..30,
        during in 1u64..20,
        after in 1u64..20,
    ) {
        let fs = SimFs::new(seed);
        let (mut log, _) = open(&fs).unwrap();
        let id = |s: u64| EventId::new(7, s);
        let mut seq = 0;
        let mut append = |log: &mut Log, n: u64| {
            for _ in 0..n {
                seq += 1;
                log.append_event(id(seq), &data(id(seq)), false);
            }
        };
        append(&mut log, before);
        log.commit().unwrap();
        fs.set_full(true);
        append(&mut log, during);
        prop_assert!(log.commit().is_err());
        prop_assert!(log.failure().is_some());
        log.recover().unwrap();
        prop_assert!(log.commit().is_err(), "still full");
        fs.set_full(false);
        prop_assert!(log.commit().is_err(), "failed until recovered");
        log.recover().unwrap();
        prop_assert!(log.failure().is_none());
        append(&mut log, after);
        log.commit().unwrap();
        drop(log);
        fs.restart();
        let (_, rec) = open(&fs).unwrap();
        prop_assert_eq!(rec.corrupt_records, 0);
        let got: Vec<EventId> = rec.events.iter().map(|(id, _)| *id).collect();
        let want: Vec<EventId> = (1..=before + during + after).map(id).collect();
        prop_assert_eq!(got, want);
    }
}
