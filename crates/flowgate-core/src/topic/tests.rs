//! The topic's unit tests: grants, dispatch, dedup, spill and deadlines, one behaviour each
//! (fan-out's: `tests_fanout.rs`).

use super::*;

pub(super) const P: ConnId = 1;
pub(super) const C: ConnId = 2;

pub(super) fn topic(events: u64) -> Topic<u64> {
    Topic::new(Credit::new(events, 1_000_000))
}

pub(super) fn grants<T>(actions: &[Action<T>]) -> Vec<(ConnId, Credit)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Grant { producer, credit } => Some((*producer, *credit)),
            _ => None,
        })
        .collect()
}

pub(super) fn delivered(actions: &[Action<u64>], to: ConnId) -> Vec<(u64, u32, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver {
                consumer,
                deliveries,
            } if *consumer == to => Some(deliveries),
            _ => None,
        })
        .flatten()
        .map(|d| (d.delivery_id, d.attempt, d.item))
        .collect()
}

pub(super) fn batch(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64, u64)> {
    seqs.map(|s| (s, s, 10)).collect()
}

#[test]
fn a_new_producer_is_granted_the_free_space() {
    let mut t = topic(100);
    assert_eq!(t.attach_producer(P, 7), 0);
    assert_eq!(
        grants(&t.poll_actions()),
        vec![(P, Credit::new(100, 1_000_000))]
    );
    assert!(t.poll_actions().is_empty(), "granted once, not twice");
}

#[test]
fn a_draining_topic_delivers_and_grants_nothing_but_takes_publishes_and_acks() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=4)).unwrap();
    t.request(C, Credit::new(2, 1_000)).unwrap();
    let first = delivered(&t.poll_actions(), C);
    assert_eq!(first.len(), 2);
    t.drain();
    // Within the credit already granted, a publish is still accepted.
    assert_eq!(t.publish(P, batch(5..=6)).unwrap().accepted, 2);
    t.request(C, Credit::new(10, 10_000)).unwrap();
    t.ack(C, first[0].0, 1).unwrap();
    assert!(t.poll_actions().is_empty(), "nothing delivered or granted");
    let s = t.stats();
    assert_eq!((s.ready, s.unacked, s.acked), (4, 1, 1));
}

#[test]
fn two_producers_split_the_space_evenly() {
    let mut t = topic(100);
    t.attach_producer(1, 7);
    t.attach_producer(3, 8);
    let g = grants(&t.poll_actions());
    assert_eq!(
        g,
        vec![(1, Credit::new(50, 500_000)), (3, Credit::new(50, 500_000))]
    );
}

#[test]
fn publishing_beyond_credit_is_refused_whole() {
    let mut t = topic(3);
    t.attach_producer(P, 7);
    let _ = t.poll_actions();
    let err = t.publish(P, batch(1..=4)).unwrap_err();
    assert!(matches!(err, TopicError::DataWithoutCredit { .. }));
    assert_eq!(t.stats().ready, 0);
}

#[test]
fn a_retried_batch_is_dropped_as_duplicate_and_confirmed_again() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    let _ = t.poll_actions();
    assert_eq!(t.publish(P, batch(1..=3)).unwrap().confirm_up_to, 3);
    let again = t.publish(P, batch(2..=5)).unwrap();
    assert_eq!(
        (again.accepted, again.duplicates, again.confirm_up_to),
        (2, 2, 5)
    );
    assert_eq!(t.stats().ready, 5);
}

#[test]
fn a_reconnecting_producer_learns_where_to_resume() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    let _ = t.poll_actions();
    t.publish(P, batch(1..=4)).unwrap();
    t.detach_producer(P);
    assert_eq!(t.attach_producer(9, 7), 4);
    assert_eq!(
        t.attach_producer(10, 8),
        0,
        "another producer id starts afresh"
    );
}

#[test]
fn a_sequence_gap_is_refused() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    let _ = t.poll_actions();
    t.publish(P, batch(1..=2)).unwrap();
    let err = t.publish(P, batch(4..=5)).unwrap_err();
    assert_eq!(
        err,
        TopicError::SequenceGap {
            expected: 3,
            got: 4
        }
    );
}

#[test]
fn an_unknown_producer_may_resume_anywhere_but_a_known_one_may_not() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    let _ = t.poll_actions();
    assert_eq!(t.publish(P, batch(500..=501)).unwrap().confirm_up_to, 501);
    t.detach_producer(P);
    t.restore([(8, 40)], []);
    t.attach_producer(3, 8);
    let _ = t.poll_actions();
    assert!(matches!(
        t.publish(3, batch(42..=42)),
        Err(TopicError::SequenceGap { expected: 41, .. })
    ));
}

#[test]
fn restored_events_are_delivered_first_and_grants_fit_the_room_left() {
    let mut t = topic(10);
    t.restore([(7, 3)], [(1, 10, 1), (2, 10, 1), (3, 10, 1)]);
    t.limit_grants(Some(0), 0);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    t.request(C, Credit::new(10, 10_000)).unwrap();
    let actions = t.poll_actions();
    assert_eq!(
        delivered(&actions, C)
            .iter()
            .map(|d| d.2)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(grants(&actions).is_empty(), "no room on disk, no grant");
    t.limit_grants(Some(50), 0);
    assert_eq!(
        grants(&t.poll_actions()),
        vec![(P, Credit::new(1, 50))],
        "events shrink with the bytes"
    );
    t.limit_grants(Some(500_000), 0);
    assert_eq!(
        grants(&t.poll_actions()),
        vec![(P, Credit::new(2, 499_950))]
    );
    assert_eq!(t.attach_producer(9, 7), 3, "the restored high-water mark");
}

#[test]
fn a_consumer_gets_no_more_than_it_asked_for() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=10)).unwrap();
    assert!(
        delivered(&t.poll_actions(), C).is_empty(),
        "no demand, no delivery"
    );
    t.request(C, Credit::new(3, 1_000)).unwrap();
    let got = delivered(&t.poll_actions(), C);
    assert_eq!(got.iter().map(|d| d.2).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(
        t.request(C, Credit::new(0, 5)),
        Err(TopicError::ZeroRequest)
    );
}

#[test]
fn an_event_larger_than_the_byte_demand_goes_alone_to_a_consumer_holding_nothing() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    // 500 bytes, then two small ones; the consumer asks for 100 bytes at a time.
    t.publish(P, vec![(1, 1, 500), (2, 2, 10), (3, 3, 10)])
        .unwrap();
    t.request(C, Credit::new(5, 100)).unwrap();
    let got = delivered(&t.poll_actions(), C);
    assert_eq!(
        got.iter().map(|d| d.2).collect::<Vec<_>>(),
        vec![1],
        "alone"
    );
    assert!(
        delivered(&t.poll_actions(), C).is_empty(),
        "its byte demand is used up: nothing more while it holds that one"
    );
    // The 400 bytes beyond its demand are a debt its next requests pay first, as its own
    // `Demand` counts them.
    t.request(C, Credit::new(1, 100)).unwrap();
    assert!(
        delivered(&t.poll_actions(), C).is_empty(),
        "300 bytes still owed"
    );
    t.request(C, Credit::new(1, 400)).unwrap();
    let next = delivered(&t.poll_actions(), C);
    assert_eq!(
        next.iter().map(|d| d.2).collect::<Vec<_>>(),
        vec![2, 3],
        "small events within what it asked for since"
    );
    // Another large one waits while the consumer holds anything at all.
    t.publish(P, vec![(4, 4, 500)]).unwrap();
    t.ack(C, got[0].0, got[0].1).unwrap();
    t.ack(C, next[0].0, next[0].1).unwrap();
    assert!(delivered(&t.poll_actions(), C).is_empty(), "it holds one");
    t.ack(C, next[1].0, next[1].1).unwrap();
    let last = delivered(&t.poll_actions(), C);
    assert_eq!(last.iter().map(|d| d.2).collect::<Vec<_>>(), vec![4]);
}

#[test]
fn unacked_events_count_against_capacity_until_acked() {
    let mut t = topic(4);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=4)).unwrap();
    t.request(C, Credit::new(4, 1_000)).unwrap();
    let got = delivered(&t.poll_actions(), C);
    assert_eq!(got.len(), 4);
    assert!(
        grants(&t.poll_actions()).is_empty(),
        "delivered but unacked: still full"
    );
    for (id, attempt, item) in got {
        assert_eq!(t.ack(C, id, attempt).unwrap(), Some(item));
    }
    // The events come back; the bytes were never spent beyond the 40 published.
    assert_eq!(grants(&t.poll_actions()), vec![(P, Credit::new(4, 40))]);
}

#[test]
fn a_departing_consumer_s_deliveries_are_redelivered_in_order_with_a_higher_attempt() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=3)).unwrap();
    t.request(C, Credit::new(10, 10_000)).unwrap();
    let first = delivered(&t.poll_actions(), C);
    t.detach_consumer(C);
    t.attach_consumer(5, "g", GroupMode::Block).unwrap();
    t.request(5, Credit::new(10, 10_000)).unwrap();
    let again = delivered(&t.poll_actions(), 5);
    assert_eq!(
        again.iter().map(|d| (d.0, d.1, d.2)).collect::<Vec<_>>(),
        first.iter().map(|d| (d.0, 2, d.2)).collect::<Vec<_>>()
    );
    assert_eq!(t.stats().redelivered, 3);
}

#[test]
fn a_stale_ack_is_rejected_and_changes_nothing() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=1)).unwrap();
    t.request(C, Credit::new(10, 10_000)).unwrap();
    let (id, attempt, _) = delivered(&t.poll_actions(), C)[0];
    t.nack(C, id, attempt).unwrap();
    let (id2, attempt2, _) = delivered(&t.poll_actions(), C)[0];
    assert_eq!((id2, attempt2), (id, 2));
    assert_eq!(
        t.ack(C, id, 1),
        Err(TopicError::StaleAttempt {
            delivery_id: id,
            got: 1,
            current: 2
        })
    );
    assert_eq!(t.stats().unacked, 1);
    t.ack(C, id, 2).unwrap();
    assert_eq!(t.ack(C, id, 2), Err(TopicError::UnknownDelivery(id)));
}

#[test]
fn consumers_take_turns_and_share_by_demand() {
    let mut t = topic(1_000);
    t.attach_producer(P, 7);
    t.attach_consumer(10, "g", GroupMode::Block).unwrap();
    t.attach_consumer(11, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=100)).unwrap();
    t.request(10, Credit::new(2, 10_000)).unwrap(); // slow: asks for little
    t.request(11, Credit::new(90, 100_000)).unwrap(); // fast: asks for a lot
    let actions = t.poll_actions();
    assert_eq!(delivered(&actions, 10).len(), 2);
    assert_eq!(delivered(&actions, 11).len(), 90);
}

#[test]
fn another_consumer_cannot_ack_what_it_does_not_hold() {
    let mut t = topic(100);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    t.attach_consumer(9, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=1)).unwrap();
    t.request(C, Credit::new(1, 1_000)).unwrap();
    let (id, attempt, _) = delivered(&t.poll_actions(), C)[0];
    assert_eq!(t.ack(9, id, attempt), Err(TopicError::UnknownDelivery(id)));
}

fn loads(actions: &[Action<u64>]) -> Vec<Credit> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Load { room } => Some(*room),
            _ => None,
        })
        .collect()
}

#[test]
fn in_spill_mode_events_beyond_memory_wait_on_disk_and_come_back_in_order() {
    // Room for 100 on disk and in memory together, 4 in memory.
    let mut t: Topic<u64> = Topic::new(Credit::new(100, 10_000_000));
    t.spill_beyond(Credit::new(4, 1_000_000));
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let first = grants(&t.poll_actions());
    assert_eq!(
        first,
        vec![(P, Credit::new(4, 1_000_000))],
        "in flight <= memory"
    );
    let out = t.publish(P, batch(1..=4)).unwrap();
    assert_eq!((out.accepted, out.spilled), (4, 0));
    let _ = t.poll_actions();
    let out = t.publish(P, batch(5..=7)).unwrap();
    assert_eq!((out.accepted, out.spilled), (3, 3));
    assert_eq!((t.stats().ready, t.stats().on_disk), (4, 3));

    t.request(C, Credit::new(10, 10_000)).unwrap();
    let actions = t.poll_actions();
    let got = delivered(&actions, C);
    assert_eq!(
        got.iter().map(|d| d.2).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(
        loads(&actions).is_empty(),
        "memory is full of unacked events"
    );
    for (id, attempt, _) in &got[..2] {
        t.ack(C, *id, *attempt).unwrap();
    }
    let actions = t.poll_actions();
    assert_eq!(loads(&actions), vec![Credit::new(2, 1_000_000 - 20)]);
    assert!(loads(&t.poll_actions()).is_empty(), "one load at a time");
    // While events wait on disk, new ones queue behind them there.
    let _ = t.publish(P, batch(8..=8)).unwrap();
    assert_eq!(t.stats().on_disk, 4);
    t.loaded(vec![(5, 10, 1), (6, 10, 1)]);
    let got = delivered(&t.poll_actions(), C);
    assert_eq!(got.iter().map(|d| d.2).collect::<Vec<_>>(), vec![5, 6]);
    assert_eq!(t.stats().on_disk, 2);
    assert!(t.stats().peak_events <= 4, "memory never held more than 4");
}

#[test]
fn events_spilled_while_a_load_is_answered_stay_counted_on_disk() {
    let mut t = topic(100);
    t.spill_beyond(Credit::new(2, 1_000_000));
    t.attach_producer(P, 7);
    t.restore_spilled(Credit::new(3, 30));
    assert_eq!(loads(&t.poll_actions()), vec![Credit::new(2, 1_000_000)]);
    // The store reads all three it has; before its answer lands, one more spills.
    t.publish(P, batch(1..=1)).unwrap();
    t.loaded(vec![(101, 10, 1), (102, 10, 1), (103, 10, 1)]);
    assert_eq!(t.stats().on_disk, 1, "the late one is still to load");
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    t.request(C, Credit::new(10, 10_000)).unwrap();
    let got = delivered(&t.poll_actions(), C);
    assert_eq!(
        got.iter().map(|d| d.2).collect::<Vec<_>>(),
        vec![101, 102, 103]
    );
    for (id, attempt, _) in got {
        t.ack(C, id, attempt).unwrap();
    }
    assert_eq!(loads(&t.poll_actions()).len(), 1, "and gets loaded");
}

#[test]
fn a_store_handing_back_more_than_was_spilled_breaks_the_books_and_the_topic_stops() {
    let mut t = topic(100);
    t.spill_beyond(Credit::new(2, 1_000_000));
    // After a restart, two events wait in the log.
    t.restore_spilled(Credit::new(2, 20));
    t.attach_producer(P, 7);
    let _ = t.poll_actions();
    assert!(t.broken().is_none());
    // Three events back where two were on disk: the books cannot add up.
    t.loaded(vec![(3, 10, 1), (4, 10, 1), (99, 10, 1)]);
    let broken = t.broken().cloned().expect("the books are broken");
    assert_eq!(broken.tally, "on disk");
    assert_eq!(
        t.publish(P, batch(5..=5)),
        Err(TopicError::Books(broken.clone())),
        "no more work"
    );
    t.attach_consumer(C, "g", GroupMode::Block).unwrap_err();
    assert!(
        t.poll_actions().is_empty(),
        "nothing more is granted or delivered"
    );
    assert!(
        TopicError::Books(broken)
            .to_string()
            .ends_with("the topic takes no more work")
    );
}

/// A topic with `wait` as its ack wait (if any) whose consumer `C` holds events 1..=n.
fn consumer_holding(wait: Option<Duration>, n: u64) -> (Topic<u64>, Vec<(u64, u32, u64)>) {
    let mut t = topic(100);
    t.set_ack_wait(wait);
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=n)).unwrap();
    t.request(C, Credit::new(10, 10_000)).unwrap();
    let held = delivered(&t.poll_actions(), C);
    assert_eq!(held.len() as u64, n);
    (t, held)
}

#[test]
fn a_delivery_past_its_ack_deadline_goes_to_another_consumer_and_its_holder_gets_nothing_more() {
    let secs = Duration::from_secs;
    let (mut t, held) = consumer_holding(Some(secs(30)), 3);
    t.attach_consumer(5, "g", GroupMode::Block).unwrap();
    t.request(5, Credit::new(10, 10_000)).unwrap();
    t.tick(secs(29));
    assert!(delivered(&t.poll_actions(), 5).is_empty(), "not yet due");
    t.tick(secs(30));
    let again = delivered(&t.poll_actions(), 5);
    assert_eq!(
        again,
        held.iter().map(|d| (d.0, 2, d.2)).collect::<Vec<_>>(),
        "in order, attempt 2"
    );
    assert_eq!(t.stats().ack_timeouts, 3);
    assert_eq!(t.stats().unacked, 3);
    // The late holder's ack is refused: the delivery is another consumer's now.
    assert_eq!(
        t.ack(C, held[0].0, 1),
        Err(TopicError::UnknownDelivery(held[0].0))
    );
    t.detach_consumer(5);
    t.publish(P, batch(4..=4)).unwrap();
    // Its refused ack still showed it alive, so it may have the redeliveries now.
    let back = delivered(&t.poll_actions(), C);
    assert_eq!(back.len(), 4);
}

#[test]
fn a_stalled_consumer_gets_nothing_until_it_settles_or_shows_progress() {
    let secs = Duration::from_secs;
    let (mut t, held) = consumer_holding(Some(secs(10)), 1);
    let id = held[0].0;
    t.tick(secs(10));
    assert!(delivered(&t.poll_actions(), C).is_empty(), "stalled");
    assert_eq!(t.stats().ready, 1);
    assert_eq!(t.progress(C, id, 1), Err(TopicError::UnknownDelivery(id)));
    // The failed progress still showed it alive.
    assert_eq!(delivered(&t.poll_actions(), C), vec![(id, 2, 1)]);
}

#[test]
fn progress_restarts_the_deadline() {
    let secs = Duration::from_secs;
    let (mut t, held) = consumer_holding(Some(secs(10)), 1);
    let (id, attempt, _) = held[0];
    t.tick(secs(8));
    t.progress(C, id, attempt).unwrap();
    t.tick(secs(17));
    assert_eq!(t.stats().ack_timeouts, 0);
    t.ack(C, id, attempt).unwrap();
    t.tick(secs(100));
    assert_eq!(t.stats().ack_timeouts, 0);
    assert_eq!(t.stats().acked, 1);
}

#[test]
fn without_an_ack_wait_a_delivery_is_held_for_ever() {
    let (mut t, _) = consumer_holding(None, 1);
    t.tick(Duration::from_secs(1_000_000));
    assert_eq!(t.stats().unacked, 1);
    assert_eq!(t.stats().ack_timeouts, 0);
}

#[test]
fn recorded_attempts_are_reported_and_restored_events_keep_theirs() {
    let (mut t, held) = consumer_holding(None, 2);
    t.record_attempts();
    t.nack(C, held[0].0, 1).unwrap();
    t.detach_consumer(C);
    let mut raised = t.take_requeued();
    raised.sort_unstable();
    assert_eq!(
        raised,
        vec![(1, 2), (2, 2)],
        "the nacked one, then the one held at departure"
    );
    assert!(t.take_requeued().is_empty());
    // A restarted topic delivers a restored event with the attempt the store kept.
    let mut again = topic(100);
    again.restore([(7, 2)], [(1, 10, 3), (2, 10, 2)]);
    again.attach_consumer(C, "g", GroupMode::Block).unwrap();
    again.request(C, Credit::new(10, 10_000)).unwrap();
    let attempts: Vec<(u32, u64)> = delivered(&again.poll_actions(), C)
        .into_iter()
        .map(|(_, attempt, item)| (attempt, item))
        .collect();
    assert_eq!(attempts, vec![(3, 1), (2, 2)]);
}

#[test]
fn deadlines_are_looked_at_only_once_the_earliest_can_have_passed() {
    let mut t: Topic<u64> = Topic::new(Credit::new(100_000, 100_000_000));
    t.set_ack_wait(Some(Duration::from_secs(30)));
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=10)).unwrap();
    t.request(C, Credit::new(u64::MAX, u64::MAX)).unwrap();
    let first = delivered(&t.poll_actions(), C);
    assert_eq!(t.groups[0].next_due, Some(Duration::from_secs(30)));
    // Every one acked but the last: the bound stays until the clock passes it.
    for (id, attempt, _) in &first[..9] {
        t.ack(C, *id, *attempt).unwrap();
    }
    t.tick(Duration::from_secs(10));
    t.publish(P, batch(11..=11)).unwrap();
    let later = delivered(&t.poll_actions(), C);
    assert_eq!(t.groups[0].next_due, Some(Duration::from_secs(30)));
    // At 30 s the last of the first ten is overdue and taken back; the one delivered at
    // 10 s is due at 40 s, the new bound.
    t.tick(Duration::from_secs(30));
    assert_eq!(t.stats().ack_timeouts, 1);
    assert_eq!(t.groups[0].next_due, Some(Duration::from_secs(40)));
    t.ack(C, later[0].0, later[0].1).unwrap();
    t.tick(Duration::from_secs(41));
    assert_eq!((t.stats().ack_timeouts, t.groups[0].next_due), (1, None));
}

#[test]
fn a_consumer_is_given_no_event_alone_while_it_has_taken_back_deliveries_unanswered() {
    let secs = Duration::from_secs;
    let mut t = topic(100);
    t.set_ack_wait(Some(secs(10)));
    t.attach_producer(P, 7);
    t.attach_consumer(C, "g", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=2)).unwrap();
    // Room for both events' bytes and a little more, not for a third.
    t.request(C, Credit::new(10, 25)).unwrap();
    let held = delivered(&t.poll_actions(), C);
    assert_eq!(held.len(), 2);
    t.tick(secs(10));
    // Answering one shows it alive, but it still counts the other as held: an event given
    // alone now would be beyond the demand it believes it has.
    let _ = t.ack(C, held[0].0, held[0].1);
    assert!(delivered(&t.poll_actions(), C).is_empty());
    let _ = t.ack(C, held[1].0, held[1].1);
    assert_eq!(delivered(&t.poll_actions(), C).len(), 1, "now alone");
}
