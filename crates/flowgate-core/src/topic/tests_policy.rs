//! The overflow policies' and the max age's unit tests: exact counts of what each drops,
//! refuses, replaces or expires, and that producers wait only under block and conflate.

use std::time::Duration;

use super::tests::{C, P, batch, delivered, grants, topic};
use super::*;

fn with(policy: Overflow, capacity: u64) -> Topic<u64> {
    let mut t = topic(capacity);
    t.set_policy(
        TopicPolicy {
            overflow: policy,
            max_age: None,
        },
        None,
    );
    t.attach_producer(P, 7);
    t
}

/// What a consumer of group "db" asking for everything is handed, by item.
fn drain(t: &mut Topic<u64>) -> Vec<u64> {
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    t.request(C, Credit::new(1_000, 1_000_000)).unwrap();
    delivered(&t.poll_actions(), C)
        .iter()
        .map(|d| d.2)
        .collect()
}

/// Takes every grant and publishes seqs from `from` on with it, until `until` or until no
/// credit comes; what the batches did, summed (`confirm_up_to` the last one's).
fn publish_through(t: &mut Topic<u64>, from: u64, until: u64) -> Published {
    let mut next = from;
    let mut total = Published::default();
    while next <= until {
        let granted: u64 = grants(&t.poll_actions()).iter().map(|g| g.1.events).sum();
        if granted == 0 {
            break;
        }
        let last = (next + granted - 1).min(until);
        let out = t.publish(P, batch(next..=last)).unwrap();
        total.accepted += out.accepted;
        total.dropped += out.dropped;
        total.refused += out.refused;
        total.confirm_up_to = out.confirm_up_to;
        next = last + 1;
    }
    total
}

#[test]
fn block_grants_only_the_room_so_the_producer_waits_with_the_topic_full() {
    let mut t = with(Overflow::Block, 10);
    let out = publish_through(&mut t, 1, 100);
    assert_eq!(
        (out.accepted, out.confirm_up_to),
        (10, 10),
        "then no credit"
    );
    assert!(grants(&t.poll_actions()).is_empty());
    let s = t.stats();
    assert_eq!((s.held, s.dropped_newest, s.dropped_oldest), (10, 0, 0));
    assert_eq!(drain(&mut t), (1..=10).collect::<Vec<_>>());
}

#[test]
fn drop_newest_keeps_the_first_events_and_counts_every_later_one() {
    let mut t = with(Overflow::DropNewest, 10);
    let out = publish_through(&mut t, 1, 100);
    assert_eq!(out.confirm_up_to, 100, "the producer never waited");
    assert_eq!((out.accepted, out.dropped, out.refused), (10, 90, 0));
    let s = t.stats();
    assert_eq!(
        (s.held, s.accepted, s.dropped_newest, s.rejected),
        (10, 10, 90, 0)
    );
    assert_eq!(drain(&mut t), (1..=10).collect::<Vec<_>>());
}

#[test]
fn reject_refuses_the_batch_tail_that_does_not_fit_and_counts_it() {
    let mut t = with(Overflow::Reject, 10);
    let _ = t.poll_actions();
    let out = t.publish(P, batch(1..=4)).unwrap();
    assert_eq!((out.accepted, out.refused), (4, 0));
    let _ = t.poll_actions();
    let out = t.publish(P, batch(5..=14)).unwrap();
    assert_eq!((out.accepted, out.dropped, out.refused), (6, 4, 4));
    assert_eq!(
        out.confirm_up_to, 14,
        "refused are 11..=14, the batch's last"
    );
    let rest = publish_through(&mut t, 15, 40);
    assert_eq!(rest.confirm_up_to, 40, "reject never holds a producer back");
    assert_eq!(rest.refused, 26);
    assert_eq!(t.stats().rejected, 30);
    assert_eq!(drain(&mut t), (1..=10).collect::<Vec<_>>());
}

#[test]
fn drop_oldest_keeps_the_newest_events() {
    let mut t = with(Overflow::DropOldest, 10);
    let out = publish_through(&mut t, 1, 100);
    assert_eq!((out.accepted, out.dropped), (100, 0));
    let s = t.stats();
    assert_eq!((s.held, s.dropped_oldest, s.dropped_newest), (10, 90, 0));
    assert_eq!(
        t.take_dropped(),
        (1..=90).collect::<Vec<_>>(),
        "the store forgets them"
    );
    assert_eq!(drain(&mut t), (91..=100).collect::<Vec<_>>());
}

#[test]
fn drop_oldest_never_takes_a_delivered_event_and_drops_the_new_one_instead() {
    let mut t = with(Overflow::DropOldest, 4);
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=4)).unwrap();
    t.request(C, Credit::new(2, 1_000)).unwrap();
    assert_eq!(delivered(&t.poll_actions(), C).len(), 2);
    let out = t.publish(P, batch(5..=6)).unwrap();
    assert_eq!((out.accepted, out.dropped), (2, 0), "3 and 4 gave way");
    t.request(C, Credit::new(2, 1_000)).unwrap();
    let got: Vec<u64> = delivered(&t.poll_actions(), C)
        .iter()
        .map(|d| d.2)
        .collect();
    assert_eq!(got, [5, 6]);
    let out = t.publish(P, batch(7..=7)).unwrap();
    assert_eq!(
        out.dropped, 1,
        "all four held are delivered: the new one goes"
    );
    let s = t.stats();
    assert_eq!((s.dropped_oldest, s.dropped_newest, s.held), (2, 1, 4));
}

fn keyed(e: &(u64, Vec<u8>)) -> Option<&[u8]> {
    Some(&e.1)
}

#[test]
fn conflate_keeps_the_newest_waiting_event_per_key() {
    let mut t: Topic<(u64, Vec<u8>)> = Topic::new(Credit::new(10, 1_000_000));
    t.set_policy(
        TopicPolicy {
            overflow: Overflow::Conflate,
            max_age: None,
        },
        Some(keyed),
    );
    t.attach_producer(P, 7);
    let mut next = 1;
    for _ in 0..20 {
        let granted: u64 = grants(&t.poll_actions()).iter().map(|g| g.1.events).sum();
        let batch: Vec<_> = (next..next + granted)
            .map(|s| (s, (s, vec![(s % 3) as u8]), 10))
            .collect();
        next += granted;
        t.publish(P, batch).unwrap();
    }
    let sent = next - 1;
    assert!(sent > 30, "three keys never fill ten places: {sent}");
    let s = t.stats();
    assert_eq!(s.held, 3);
    assert_eq!(s.conflated, sent - 3);
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    t.request(C, Credit::new(100, 1_000_000)).unwrap();
    let got: Vec<u64> = delivered_keyed(&t.poll_actions());
    assert_eq!(got, [sent - 2, sent - 1, sent], "the last of each key");
}

fn delivered_keyed(actions: &[Action<(u64, Vec<u8>)>]) -> Vec<u64> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Deliver { deliveries, .. } => deliveries.iter().map(|d| d.item.0).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn max_age_expires_what_waited_too_long_per_group_and_hands_back_its_age() {
    let mut t = topic(100);
    t.set_policy(
        TopicPolicy {
            overflow: Overflow::Block,
            max_age: Some(Duration::from_millis(500)),
        },
        None,
    );
    t.attach_producer(P, 7);
    t.attach_consumer(C, "db", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=5)).unwrap();
    t.tick(Duration::from_millis(300));
    t.publish(P, batch(6..=8)).unwrap();
    t.request(C, Credit::new(1, 1_000)).unwrap();
    assert_eq!(delivered(&t.poll_actions(), C)[0].2, 1, "young enough");
    t.tick(Duration::from_millis(600));
    let expired = t.take_expired();
    assert_eq!(
        expired.iter().map(|e| e.item).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    assert!(
        expired
            .iter()
            .all(|e| e.group == "db" && e.age == Duration::from_millis(600))
    );
    assert_eq!(t.take_dropped(), [2, 3, 4, 5], "no group holds them now");
    let s = t.stats();
    assert_eq!((s.expired, s.held), (4, 4), "1 is unacked, 6-8 are young");
    t.request(C, Credit::new(10, 10_000)).unwrap();
    let got: Vec<u64> = delivered(&t.poll_actions(), C)
        .iter()
        .map(|d| d.2)
        .collect();
    assert_eq!(got, [6, 7, 8]);
    assert_eq!(t.groups()[0].expired, 4);
}

#[test]
fn max_age_combines_with_drop_newest() {
    let mut t = with(Overflow::DropNewest, 4);
    t.set_policy(
        TopicPolicy {
            overflow: Overflow::DropNewest,
            max_age: Some(Duration::from_secs(1)),
        },
        None,
    );
    let _ = t.poll_actions();
    t.publish(P, batch(1..=4)).unwrap();
    let _ = t.poll_actions();
    let out = t.publish(P, batch(5..=6)).unwrap();
    assert_eq!((out.accepted, out.dropped), (0, 2));
    t.tick(Duration::from_secs(2));
    let _ = t.poll_actions();
    let out = t.publish(P, batch(7..=8)).unwrap();
    assert_eq!(
        (out.accepted, out.dropped),
        (2, 0),
        "the old ones expired, room again"
    );
    let s = t.stats();
    assert_eq!((s.expired, s.dropped_newest, s.held), (4, 2, 2));
    assert_eq!(drain(&mut t), [7, 8]);
}

#[test]
fn policy_names_parse_back_and_a_wrong_one_names_the_choices() {
    for p in Overflow::ALL {
        assert_eq!(p.name().parse::<Overflow>(), Ok(p));
    }
    let e = "drop".parse::<Overflow>().unwrap_err().to_string();
    assert!(e.contains("'drop'") && e.contains("drop-oldest"), "{e}");
}

#[test]
fn a_retried_refused_event_is_refused_again_and_a_reattached_producer_is_told_its_runs() {
    let mut t = with(Overflow::Reject, 2);
    let _ = t.poll_actions();
    let out = t.publish(P, batch(1..=2)).unwrap();
    assert!(out.refused_runs().is_empty());
    let _ = t.poll_actions();
    let out = t.publish(P, batch(3..=4)).unwrap();
    assert_eq!(out.refused_runs(), [(3, 4)]);
    let _ = t.poll_actions();
    let out = t.publish(P, batch(5..=5)).unwrap();
    assert_eq!(out.refused_runs(), [(5, 5)]);
    assert_eq!(t.refused_runs(7), [(3, 5)], "adjacent runs join");
    // The producer never read those refusals and sends 2..=6 again on a new connection.
    t.detach_producer(P);
    assert_eq!(t.attach_producer(P, 7), 5);
    let _ = t.poll_actions();
    let out = t.publish(P, batch(2..=3)).unwrap();
    assert_eq!(
        (out.duplicates, out.refused_again.clone()),
        (2, vec![(3, 5)]),
        "every refusal from the batch to the mark, since the confirm reaches the mark"
    );
    assert_eq!(t.stats().rejected, 3, "counted once");
}

#[test]
fn drop_oldest_with_two_blocking_groups_looks_past_fronts_another_group_holds() {
    const B: ConnId = 4;
    let mut t = with(Overflow::DropOldest, 3);
    t.attach_consumer(C, "a", GroupMode::Block).unwrap();
    t.attach_consumer(B, "b", GroupMode::Block).unwrap();
    let _ = t.poll_actions();
    t.publish(P, batch(1..=3)).unwrap();
    t.request(C, Credit::new(1, 1_000)).unwrap();
    t.request(B, Credit::new(2, 1_000)).unwrap();
    let actions = t.poll_actions();
    assert_eq!(delivered(&actions, C).len(), 1, "a holds 1");
    let b = delivered(&actions, B);
    t.nack(B, b[0].0, b[0].1).unwrap();
    // a waits on [2, 3]; b waits on [1, 3] and holds 2: only 3 is held by nobody.
    let _ = t.poll_actions();
    let out = t.publish(P, batch(4..=4)).unwrap();
    assert_eq!((out.accepted, out.dropped), (1, 0), "3 gave way");
    assert_eq!(t.take_dropped(), [3]);
    assert_eq!(t.stats().dropped_oldest, 1);
}
