//! The sessions against each other in memory, on a fake clock: a producer and a consumer
//! session talk to a broker of `ServerSession`s around a core `Topic`, through the real
//! encoder and decoder. Handshake, credit, resend after a reconnect, dedup, stale acks, every
//! deadline and oversized frames, with no socket and no sleep.

mod harness;

use std::time::Duration;

use flowgate_core::Credit;
use flowgate_proto::session::{CONNECT_TIMEOUT, ClientSession};
use flowgate_proto::{ErrorCode, SessionError};
use harness::{World, event, limits};

const MIB: u32 = 1 << 20;
const MS: Duration = Duration::from_millis(1);

/// A world with a topic of `capacity` events (and plenty of bytes), one connected producer
/// and one connected consumer with a prefetch of `prefetch` events.
fn pipeline(capacity: u64, prefetch: u64) -> World {
    let mut w = World::new(Credit::new(capacity, 64 << 20), limits());
    w.add_producer(7, MIB);
    w.add_consumer(Credit::new(prefetch, 8 << 20), MIB);
    w.connect_producer(0);
    w.connect_consumer(0);
    w.run();
    w
}

/// Sends events of `payload` bytes until credit runs out or `n` went; returns how many went.
fn send_up_to(w: &mut World, n: usize, payload: usize) -> usize {
    let mut sent = 0;
    while sent < n && w.producers[0].session.send(event(payload)).is_ok() {
        sent += 1;
    }
    sent
}

/// Takes and acks everything the consumer has; returns the sequence numbers taken.
fn take_and_ack(w: &mut World) -> Vec<u64> {
    let batch = w.consumers[0].session.take();
    let seqs = batch.iter().map(|d| d.event.id.seq).collect();
    w.consumers[0].session.ack(batch.iter().map(|d| d.tag));
    w.run();
    seqs
}

#[test]
fn the_handshake_welcomes_a_producer_and_grants_it_the_topic_s_room() {
    let w = pipeline(100, 10);
    let p = &w.producers[0];
    assert!(p.session.is_connected());
    assert_eq!(p.session.stats().sessions, 1);
    assert_eq!(p.session.credit().events, 100);
    let conn = p.conn.unwrap();
    assert_eq!(w.sent_up(conn), ["HELLO"]);
    assert_eq!(w.sent_down(conn), ["WELCOME", "CREDIT"]);
    assert!(w.consumers[0].session.is_connected());
    assert_eq!(
        w.sent_up(w.consumers[0].conn.unwrap()),
        ["HELLO", "REQUEST"]
    );
}

#[test]
fn a_producer_sends_no_more_than_its_credit_and_more_once_the_consumer_acks() {
    let mut w = pipeline(20, 5);
    assert_eq!(send_up_to(&mut w, 1000, 10), 20, "credit covers 20 events");
    assert!(!w.producers[0].session.admits(74));
    w.run();
    assert_eq!(w.producers[0].session.unconfirmed(), 0);
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.extend(take_and_ack(&mut w));
        send_up_to(&mut w, 1000, 10);
        w.run();
    }
    assert!(w.refusals.is_empty(), "{:?}", w.refusals);
    assert!(seen.len() >= 20);
    assert!(
        seen.windows(2).all(|p| p[1] == p[0] + 1),
        "in order, no gaps"
    );
    assert!(
        w.topic.stats().ready <= 20,
        "the topic never holds more than its cap"
    );
}

#[test]
fn a_blocked_producer_hands_back_its_credit_and_is_granted_when_its_event_fits() {
    let mut w = World::new(Credit::new(100, 1000), limits());
    w.add_producer(7, MIB);
    w.add_consumer(Credit::new(100, 8 << 20), MIB);
    w.connect_producer(0);
    w.run();
    // 1,000 bytes of room: ten 36-byte events (100 with overhead), then a 900-byte event
    // does not fit what is left.
    assert_eq!(send_up_to(&mut w, 10, 36), 10);
    let big = event(900);
    assert!(!w.producers[0].session.admits(big.size_bytes()));
    assert!(
        w.producers[0].session.wait_for(big.size_bytes()),
        "a notice is due"
    );
    w.run();
    let conn = w.producers[0].conn.unwrap();
    assert!(w.sent_up(conn).contains(&"BLOCKED"));
    assert_eq!(
        w.producers[0].session.credit(),
        Credit::ZERO,
        "everything handed back"
    );
    w.connect_consumer(0);
    w.run();
    take_and_ack(&mut w);
    assert!(
        w.producers[0].session.admits(big.size_bytes()),
        "granted once it fits"
    );
    assert!(w.producers[0].session.send(big).is_ok());
    w.run();
    assert!(w.refusals.is_empty(), "{:?}", w.refusals);
}

#[test]
fn after_a_reconnect_the_producer_resends_only_what_the_broker_does_not_hold() {
    let mut w = pipeline(100, 100);
    assert_eq!(send_up_to(&mut w, 10, 10), 10);
    w.run();
    // The first ten are confirmed; the next five are written, then the connection drops
    // before the broker reads them.
    assert_eq!(send_up_to(&mut w, 5, 10), 5);
    let retry = w.producers[0].session.connection_lost(w.now);
    assert_eq!(retry, Some(w.now), "a welcomed session redials at once");
    w.cut_producer(0, false);
    w.connect_producer(0);
    w.run();
    let p = &w.producers[0].session;
    assert_eq!(p.stats().sessions, 2);
    assert_eq!(p.stats().resent, 5);
    assert_eq!(p.stats().confirmed_seq, 15);
    assert_eq!(p.unconfirmed(), 0);
    let mut seqs = take_and_ack(&mut w);
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=15).collect::<Vec<_>>(), "each event once");
}

#[test]
fn a_publish_the_broker_reads_after_the_reconnect_is_dropped_as_a_duplicate() {
    let mut w = pipeline(100, 100);
    // The broker is slow to read the producer's connection; the connection drops with the
    // PUBLISH of ten events still unread, and the new connection is welcomed first, with a
    // resume point of 0: the producer will resend all ten.
    let old = w.producers[0].conn.unwrap();
    w.hold(old, true);
    assert_eq!(send_up_to(&mut w, 10, 10), 10);
    w.run();
    w.cut_producer(0, true);
    w.connect_producer(0);
    w.run();
    assert_eq!(w.producers[0].session.stats().confirmed_seq, 0);
    // Now the broker reads the old connection: its publish goes in, it ends, and its credit
    // goes to the new connection, which resends.
    w.hold(old, false);
    w.run();
    assert_eq!(w.producers[0].session.stats().resent, 10);
    assert_eq!(w.topic.stats().duplicates, 10, "the resend was recognised");
    assert_eq!(w.producers[0].session.unconfirmed(), 0);
    let mut seqs = take_and_ack(&mut w);
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<_>>(),
        "each event delivered once"
    );
}

#[test]
fn acks_for_a_lost_connection_s_deliveries_are_dropped_and_the_events_come_again() {
    let mut w = pipeline(100, 100);
    send_up_to(&mut w, 3, 10);
    w.run();
    let batch = w.consumers[0].session.take();
    assert_eq!(batch.len(), 3);
    w.cut_consumer(0);
    w.connect_consumer(0);
    w.run();
    w.consumers[0].session.ack(batch.iter().map(|d| d.tag));
    assert_eq!(w.consumers[0].session.stats().stale_settles, 3);
    w.run();
    assert!(!w.sent_up(w.consumers[0].conn.unwrap()).contains(&"ACK"));
    let again = w.consumers[0].session.take();
    assert_eq!(again.len(), 3, "redelivered");
    assert!(again.iter().all(|d| d.tag.attempt() == 2));
    w.consumers[0].session.ack(again.iter().map(|d| d.tag));
    w.run();
    assert!(w.refusals.is_empty(), "{:?}", w.refusals);
    assert_eq!(w.topic.stats().acked, 3);
}

#[test]
fn quiet_sessions_heartbeat_and_stay_up_through_many_idle_deadlines() {
    let mut w = pipeline(10, 10);
    w.advance(Duration::from_secs(30), 100 * MS);
    assert!(w.producers[0].session.is_connected());
    assert!(w.consumers[0].session.is_connected());
    assert!(w.refusals.is_empty(), "{:?}", w.refusals);
    let beats = w
        .sent_up(w.producers[0].conn.unwrap())
        .iter()
        .filter(|f| **f == "HEARTBEAT")
        .count();
    // A 3 s idle deadline: a heartbeat each second.
    assert!((28..=31).contains(&beats), "{beats} heartbeats in 30 s");
}

#[test]
fn a_peer_that_never_says_hello_is_cut_at_the_handshake_deadline() {
    let mut w = World::new(Credit::new(10, 1 << 20), limits());
    w.add_producer(7, MIB);
    w.connect_producer(0);
    // The client's HELLO never reaches the broker.
    w.deafen(w.producers[0].conn.unwrap());
    w.advance(Duration::from_millis(1999), 100 * MS);
    assert!(w.refusals.is_empty());
    w.advance(Duration::from_millis(1), MS);
    assert_eq!(w.refusals[0].1, ErrorCode::HandshakeTimeout);
    assert_eq!(w.refusals[0].2, "no HELLO within 2s");
}

#[test]
fn a_peer_silent_past_the_idle_deadline_is_cut() {
    let mut w = pipeline(10, 10);
    let conn = w.producers[0].conn.unwrap();
    // From now on nothing the producer writes arrives.
    w.producers[0].conn = None;
    w.advance(Duration::from_millis(2999), 100 * MS);
    assert!(w.refusals.is_empty());
    w.advance(Duration::from_millis(1), MS);
    assert_eq!(
        w.refusals,
        [(
            conn,
            ErrorCode::IdleTimeout,
            "nothing received for 3s".to_string()
        )]
    );
    assert_eq!(w.topic.producer_count(), 0, "its credit went back");
}

#[test]
fn a_client_gives_up_on_a_silent_broker_at_its_idle_deadline() {
    let mut w = pipeline(10, 10);
    // The broker stops writing (its heartbeats too).
    w.silence_down(w.consumers[0].conn.unwrap());
    w.advance(Duration::from_millis(2999), 100 * MS);
    assert!(w.consumers[0].session.is_connected());
    w.advance(Duration::from_millis(1), MS);
    assert_eq!(
        w.consumers[0].last_error,
        Some(SessionError::Silent(Duration::from_secs(3)))
    );
}

#[test]
fn a_missing_welcome_fails_the_connect_and_backoff_doubles_per_failure() {
    // A broker that would wait long for HELLO, so the client's own deadline comes first.
    let mut limits = limits();
    limits.handshake_timeout = Duration::from_secs(60);
    let mut w = World::new(Credit::new(10, 1 << 20), limits);
    w.add_producer(7, MIB);
    let mut waits = Vec::new();
    for _ in 0..7 {
        w.connect_producer(0);
        w.deafen(w.producers[0].conn.unwrap());
        let started = w.now;
        w.advance(CONNECT_TIMEOUT, 100 * MS);
        let p = &w.producers[0];
        assert_eq!(
            p.last_error,
            Some(SessionError::HandshakeTimeout(CONNECT_TIMEOUT))
        );
        assert_eq!(p.conn, None);
        waits.push(p.retry_at.unwrap() - started - CONNECT_TIMEOUT);
    }
    let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [50, 100, 200, 400, 800, 1600, 2000]);
    // A welcome resets the backoff.
    w.connect_producer(0);
    w.run();
    assert!(w.producers[0].session.is_connected());
    w.cut_producer(0, false);
    w.connect_producer(0);
    w.deafen(w.producers[0].conn.unwrap());
    let started = w.now;
    w.advance(CONNECT_TIMEOUT, 100 * MS);
    assert_eq!(
        w.producers[0].retry_at.unwrap() - started - CONNECT_TIMEOUT,
        50 * MS
    );
}

#[test]
fn batches_fit_the_broker_s_frame_limit() {
    let mut limits = limits();
    limits.max_frame = 4096;
    let mut w = World::new(Credit::new(1000, 1 << 30), limits);
    w.add_producer(7, MIB);
    w.add_consumer(Credit::new(1000, 1 << 30), MIB);
    w.connect_producer(0);
    w.connect_consumer(0);
    w.run();
    assert_eq!(send_up_to(&mut w, 100, 1000), 100);
    w.run();
    assert!(w.refusals.is_empty(), "{:?}", w.refusals);
    let publishes = w
        .sent_up(w.producers[0].conn.unwrap())
        .iter()
        .filter(|f| **f == "PUBLISH")
        .count();
    // About 1,070 bytes an event: three to a 4 KiB frame.
    assert_eq!(publishes, 34);
    assert_eq!(w.producers[0].session.stats().confirmed_seq, 100);
}

#[test]
fn an_event_beyond_the_broker_s_frame_limit_is_refused_for_good() {
    let mut limits = limits();
    limits.max_frame = 4096;
    let mut w = World::new(Credit::new(10, 1 << 30), limits);
    w.add_producer(7, MIB);
    w.connect_producer(0);
    w.run();
    assert!(w.producers[0].session.send(event(5000)).is_ok());
    w.run();
    assert_eq!(w.refusals[0].1, ErrorCode::FrameTooLarge);
    let e = w.producers[0].last_error.clone().unwrap();
    assert!(e.is_permanent(), "{e}");
}

#[test]
fn a_frame_beyond_the_client_s_limit_ends_its_connection() {
    let mut w = World::new(Credit::new(100, 1 << 30), limits());
    w.add_producer(7, MIB);
    // The consumer accepts frames of at most 4 KiB; the harness's broker sends one DELIVER
    // for everything ready, so ten 1,000-byte events overflow it.
    w.add_consumer(Credit::new(100, 1 << 30), 4096);
    w.connect_producer(0);
    w.run();
    send_up_to(&mut w, 10, 1000);
    w.run();
    w.connect_consumer(0);
    w.run();
    let e = w.consumers[0].last_error.clone().unwrap();
    assert!(e.to_string().contains("exceeds"), "{e}");
    assert!(!w.consumers[0].session.is_connected());
}

#[test]
fn frames_outside_a_role_s_matrix_are_refused() {
    let mut w = pipeline(10, 10);
    let conn = w.consumers[0].conn.unwrap();
    let publish = flowgate_proto::Frame::Publish(flowgate_proto::Publish { events: vec![] });
    w.inject_up(conn, &publish);
    w.run();
    assert_eq!(w.refusals[0].1, ErrorCode::UnexpectedFrame);
    assert_eq!(
        w.refusals[0].2,
        "PUBLISH is not valid from a Consumer after the handshake"
    );
}

#[test]
fn a_consumer_with_nothing_in_hand_asks_for_its_whole_prefetch_so_a_big_event_can_come() {
    // Prefetch 10,000 bytes. After a 4,000-byte event, 6,000 bytes stay outstanding: above
    // the refill-at-half point, below the next event's 9,064. Before the top-up rule the
    // consumer never asked again and the broker could never deliver it (found by flowgate-sim,
    // seed 44).
    let mut w = World::new(Credit::new(100, 64 << 20), limits());
    w.add_producer(7, MIB);
    w.add_consumer(Credit::new(100, 10_000), MIB);
    w.connect_producer(0);
    w.connect_consumer(0);
    w.run();
    assert!(w.producers[0].session.send(event(3_936)).is_ok());
    assert!(w.producers[0].session.send(event(9_000)).is_ok());
    w.run();
    assert_eq!(take_and_ack(&mut w), [1]);
    assert_eq!(take_and_ack(&mut w), [2], "the big event came");
    let requests = w.sent_up(w.consumers[0].conn.unwrap());
    assert_eq!(requests.iter().filter(|f| **f == "REQUEST").count(), 3);
}

#[test]
fn a_second_group_reads_every_event_too() {
    let mut w = pipeline(10, 10);
    w.add_consumer_of("audit", Credit::new(10, 1 << 20), MIB);
    w.connect_consumer(1);
    w.run();
    assert_eq!(send_up_to(&mut w, 3, 10), 3);
    w.run();
    let audit = w.consumers[1].session.take();
    let seqs: Vec<u64> = audit.iter().map(|d| d.event.id.seq).collect();
    assert_eq!(take_and_ack(&mut w), [1, 2, 3]);
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(w.topic.stats().held, 3, "audit has not acked them");
    w.consumers[1].session.ack(audit.iter().map(|d| d.tag));
    w.run();
    assert_eq!(w.topic.stats().held, 0);
}

#[test]
fn a_consumer_asking_another_mode_of_its_group_is_refused_for_good() {
    let mut w = pipeline(10, 10);
    w.add_consumer_lagging("db", Some(5), Credit::new(10, 1 << 20), MIB);
    w.connect_consumer(1);
    w.run();
    assert_eq!(w.refusals[0].1, ErrorCode::GroupConflict);
    assert!(
        w.refusals[0].2.contains("group 'db' is blocking"),
        "{}",
        w.refusals[0].2
    );
    let e = w.consumers[1].last_error.clone().unwrap();
    assert!(e.is_permanent(), "{e}");
    assert!(
        w.consumers[0].session.is_connected(),
        "the first group's consumer is untouched"
    );
}
