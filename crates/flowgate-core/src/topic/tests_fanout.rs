//! Fan-out's unit tests: every group reads every event, blocking groups hold it until each has
//! acked, best-effort groups skip beyond their lag and hold nothing, groups that come late.

use super::tests::{C, P, batch, delivered, grants, topic};
use super::*;

const AUDIT: ConnId = 4;
const DASH: ConnId = 6;

/// Acks every delivery in `got` for `conn`, returning what left the topic.
fn ack_all(t: &mut Topic<u64>, conn: ConnId, got: &[(u64, u32, u64)]) -> Vec<u64> {
    got.iter()
        .filter_map(|(id, attempt, _)| t.ack(conn, *id, *attempt).unwrap())
        .collect()
}

#[test]
fn two_blocking_groups_each_read_every_event_which_leaves_after_the_second_ack() {
    let mut t = topic(10);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    t.attach_consumer(AUDIT, "audit", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=4)).unwrap();
    t.request(C, Credit::new(10, 10_000)).unwrap();
    t.request(AUDIT, Credit::new(10, 10_000)).unwrap();
    let actions = t.poll_actions();
    let (db, audit) = (delivered(&actions, C), delivered(&actions, AUDIT));
    assert_eq!(db.iter().map(|d| d.2).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(audit, db, "the same events, ids and attempts");
    assert!(ack_all(&mut t, C, &db).is_empty(), "audit still holds them");
    assert_eq!(t.stats().held, 4);
    assert!(grants(&t.poll_actions()).is_empty(), "nothing freed yet");
    assert_eq!(ack_all(&mut t, AUDIT, &audit[..3]), [1, 2, 3]);
    assert_eq!(t.stats().held, 1);
    let g = t.groups();
    assert_eq!((g[0].name.as_str(), g[0].acked), ("db", 4));
    assert_eq!(
        (g[1].name.as_str(), g[1].acked, g[1].unacked),
        ("audit", 3, 1)
    );
}

#[test]
fn the_slowest_blocking_group_holds_the_capacity_and_so_paces_producers() {
    let mut t = topic(4);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "fast", GroupMode::Block).unwrap();
    t.attach_consumer(AUDIT, "slow", GroupMode::Block).unwrap();
    assert_eq!(grants(&t.poll_actions()), [(P, Credit::new(4, 1_000_000))]);
    t.publish(P, batch(1..=4)).unwrap();
    t.request(C, Credit::new(100, 100_000)).unwrap();
    let fast = delivered(&t.poll_actions(), C);
    ack_all(&mut t, C, &fast);
    t.blocked(P, Credit::ZERO, 10).unwrap();
    assert!(
        grants(&t.poll_actions()).is_empty(),
        "the slow group holds all 4"
    );
    t.request(AUDIT, Credit::new(1, 100)).unwrap();
    let slow = delivered(&t.poll_actions(), AUDIT);
    assert_eq!(ack_all(&mut t, AUDIT, &slow), [1]);
    assert_eq!(grants(&t.poll_actions()), [(P, Credit::new(1, 10))]);
}

#[test]
fn a_group_that_appears_later_starts_at_the_oldest_held_event() {
    let mut t = topic(10);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=3)).unwrap();
    t.request(C, Credit::new(2, 10_000)).unwrap();
    let db = delivered(&t.poll_actions(), C);
    assert_eq!(
        ack_all(&mut t, C, &db[..1]),
        [1],
        "the only group's ack frees it"
    );
    // Event 2 is unacked by db and 3 is ready: both still held.
    t.attach_consumer(AUDIT, "audit", GroupMode::Block).unwrap();
    t.request(AUDIT, Credit::new(10, 10_000)).unwrap();
    let audit = delivered(&t.poll_actions(), AUDIT);
    assert_eq!(audit.iter().map(|d| d.2).collect::<Vec<_>>(), [2, 3]);
    assert!(ack_all(&mut t, AUDIT, &audit).is_empty(), "db holds both");
    assert_eq!(ack_all(&mut t, C, &db[1..]), [2]);
    assert_eq!(t.stats().held, 1);
}

#[test]
fn events_held_before_any_group_go_to_the_first() {
    let mut t = topic(10);
    t.attach_producer(P, 7);
    let _ = t.poll_actions();
    t.publish(P, batch(1..=3)).unwrap();
    assert_eq!((t.stats().held, t.stats().groups), (3, 0));
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    t.request(C, Credit::new(10, 10_000)).unwrap();
    let db = delivered(&t.poll_actions(), C);
    assert_eq!(ack_all(&mut t, C, &db), [1, 2, 3]);
    assert_eq!(t.groups().len(), 1, "the lobby became db");
}

#[test]
fn a_best_effort_group_skips_its_oldest_beyond_its_lag_and_holds_nothing() {
    let mut t = topic(10);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    let dash = GroupMode::Skip { max_lag: 2 };
    t.attach_consumer(DASH, "dash", dash).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=5)).unwrap();
    let g = &t.groups()[1];
    assert_eq!((g.ready, g.skipped), (2, 3), "events 1 to 3 skipped");
    t.request(DASH, Credit::new(10, 10_000)).unwrap();
    t.request(C, Credit::new(10, 10_000)).unwrap();
    let actions = t.poll_actions();
    let got = delivered(&actions, DASH);
    assert_eq!(got.iter().map(|d| d.2).collect::<Vec<_>>(), [4, 5]);
    assert!(
        ack_all(&mut t, DASH, &got).is_empty(),
        "best effort holds nothing"
    );
    assert_eq!(t.stats().held, 5, "db holds every event");
    let db = delivered(&actions, C);
    assert_eq!(ack_all(&mut t, C, &db), [1, 2, 3, 4, 5]);
    let s = t.stats();
    assert_eq!((s.held, s.skipped, s.groups), (0, 3, 2));
}

#[test]
fn a_best_effort_group_never_slows_producers() {
    let mut t = topic(4);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    t.attach_consumer(DASH, "dash", GroupMode::Skip { max_lag: 1 })
        .unwrap();
    let _ = t.poll_actions();
    t.request(C, Credit::new(u64::MAX, u64::MAX)).unwrap();
    for round in 0..5u64 {
        t.publish(P, batch(round * 4 + 1..=round * 4 + 4)).unwrap();
        let db = delivered(&t.poll_actions(), C);
        assert_eq!(ack_all(&mut t, C, &db).len(), 4, "db frees all four");
        t.blocked(P, Credit::ZERO, 10).unwrap();
        let g = grants(&t.poll_actions());
        assert_eq!(
            g.len(),
            1,
            "granted again in round {round}, dash reading nothing"
        );
    }
    let dash = &t.groups()[1];
    assert_eq!((dash.ready, dash.skipped), (1, 19));
}

#[test]
fn a_topic_read_only_by_best_effort_groups_hands_every_event_to_its_store() {
    let mut t = topic(4);
    t.attach_producer(P, 7);
    let _ = t.poll_actions();
    t.publish(P, batch(1..=2)).unwrap();
    t.attach_consumer(DASH, "dash", GroupMode::Skip { max_lag: 10 })
        .unwrap();
    assert_eq!(
        t.take_dropped(),
        [1, 2],
        "held for the lobby, now for nobody"
    );
    t.publish(P, batch(3..=4)).unwrap();
    assert_eq!(t.take_dropped(), [3, 4]);
    assert_eq!(t.stats().held, 0);
    t.request(DASH, Credit::new(10, 10_000)).unwrap();
    let got = delivered(&t.poll_actions(), DASH);
    assert_eq!(got.iter().map(|d| d.2).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[test]
fn a_consumer_must_ask_for_its_groups_mode_and_groups_are_bounded() {
    let mut t = topic(4);
    t.set_max_groups(2);
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    let err = t
        .attach_consumer(DASH, "db", GroupMode::Skip { max_lag: 5 })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "group 'db' is blocking, and this consumer asks for it to be best effort with a max \
         lag of 5; every consumer of a group must agree"
    );
    t.attach_consumer(AUDIT, "audit", GroupMode::Block).unwrap();
    let err = t
        .attach_consumer(DASH, "dash", GroupMode::Block)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "read by 2 consumer groups already, the most it takes, so not by a new group 'dash'"
    );
    assert_eq!(t.consumer_count(), 2, "the refused are not attached");
}

#[test]
fn a_nack_or_a_departure_requeues_within_the_group_only() {
    let mut t = topic(10);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    t.attach_consumer(AUDIT, "audit", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=2)).unwrap();
    t.request(C, Credit::new(10, 10_000)).unwrap();
    t.request(AUDIT, Credit::new(10, 10_000)).unwrap();
    let actions = t.poll_actions();
    let db = delivered(&actions, C);
    t.nack(C, db[0].0, 1).unwrap();
    t.detach_consumer(AUDIT);
    let g = t.groups();
    assert_eq!((g[0].ready, g[0].unacked), (1, 1));
    assert_eq!((g[1].ready, g[1].unacked, g[1].consumers), (2, 0, 0));
    t.request(C, Credit::new(10, 10_000)).unwrap();
    let again = delivered(&t.poll_actions(), C);
    assert_eq!(again, [(db[0].0, 2, 1)], "redelivered to db alone");
    assert_eq!(t.stats().held, 2, "audit, gone, still holds both");
}
