//! Transcript tests: raw frames written to a real broker on a loopback port, and the frames
//! it answers with, checked one by one. Read them like the wire.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flowgate_broker::{Broker, BrokerConfig, MemoryStorage};
use flowgate_core::{Credit, EventId};
use flowgate_proto::io::{FrameReader, ReadError};
use flowgate_proto::{
    Ack, Blocked, ErrorCode, Frame, Hello, Publish, Request, Settle, WireEvent, encode,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const MAX: u32 = 64 * 1024;

async fn broker(config: BrokerConfig) -> Broker {
    Broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Arc::new(MemoryStorage),
    )
    .await
    .unwrap()
}

fn small() -> BrokerConfig {
    BrokerConfig {
        default_capacity: Credit::new(10, 100_000),
        max_frame: MAX,
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        ..BrokerConfig::default()
    }
}

struct Peer {
    rd: FrameReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

impl Peer {
    async fn connect(b: &Broker) -> Peer {
        let stream = TcpStream::connect(b.local_addr()).await.unwrap();
        let (rd, wr) = stream.into_split();
        Peer {
            rd: FrameReader::new(rd, 1 << 20),
            wr,
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut buf = BytesMut::new();
        encode(&frame, &mut buf);
        self.wr.write_all(&buf).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    /// The next frame that is not a heartbeat.
    async fn recv(&mut self) -> Frame {
        loop {
            match tokio::time::timeout(Duration::from_secs(3), self.rd.next()).await {
                Ok(Ok(Frame::Heartbeat(_))) => continue,
                Ok(Ok(f)) => return f,
                Ok(Err(e)) => panic!("expected a frame, got {e}"),
                Err(_) => panic!("expected a frame, got silence"),
            }
        }
    }

    async fn expect_error(&mut self, code: ErrorCode) -> String {
        match self.recv().await {
            Frame::Error(e) => {
                assert_eq!(e.code, code, "{}", e.message);
                e.message
            }
            other => panic!("expected ERROR {code}, got {other:?}"),
        }
    }

    async fn expect_closed(&mut self) {
        loop {
            match tokio::time::timeout(Duration::from_secs(3), self.rd.next()).await {
                Ok(Ok(Frame::Heartbeat(_))) => continue,
                Ok(Err(ReadError::Eof | ReadError::Io(_))) => return,
                other => panic!("expected the broker to close, got {other:?}"),
            }
        }
    }

    /// A producer past `WELCOME`, before any `CREDIT`.
    async fn welcomed_producer(b: &Broker, topic: &str, id: u64) -> Peer {
        let mut p = Peer::connect(b).await;
        p.send(Frame::Hello(Hello::producer(topic, id, MAX))).await;
        assert!(matches!(p.recv().await, Frame::Welcome(w) if w.resume_seq == 0));
        p
    }

    async fn producer(b: &Broker, topic: &str, id: u64) -> (Peer, Credit) {
        let mut p = Peer::welcomed_producer(b, topic, id).await;
        let Frame::Credit(g) = p.recv().await else {
            panic!("expected CREDIT")
        };
        (p, g.credit)
    }

    async fn consumer(b: &Broker, topic: &str) -> Peer {
        let mut c = Peer::connect(b).await;
        c.send(Frame::Hello(Hello::consumer(topic, "g", MAX))).await;
        assert!(matches!(c.recv().await, Frame::Welcome(_)));
        c
    }
}

fn events(producer: u64, seqs: std::ops::RangeInclusive<u64>) -> Vec<WireEvent> {
    seqs.map(|seq| WireEvent {
        id: EventId::new(producer, seq),
        created_us: 1,
        key: None,
        payload: Bytes::from_static(b"0123456789"),
    })
    .collect()
}

#[tokio::test]
async fn hello_welcome_credit_publish_confirm_request_deliver_ack() {
    let b = broker(small()).await;
    // producer -> HELLO; broker -> WELCOME, CREDIT(10 events, 100000 bytes)
    let (mut p, credit) = Peer::producer(&b, "t", 7).await;
    assert_eq!(credit, Credit::new(10, 100_000));
    // producer -> PUBLISH(7:1..=3); broker -> CONFIRM(3)
    p.send(Frame::Publish(Publish {
        events: events(7, 1..=3),
    }))
    .await;
    assert!(matches!(p.recv().await, Frame::Confirm(c) if c.up_to_seq == 3));
    // consumer -> HELLO, REQUEST(2); broker -> WELCOME, DELIVER(2 events, attempt 1)
    let mut c = Peer::consumer(&b, "t").await;
    c.send(Frame::Request(Request {
        credit: Credit::new(2, 10_000),
    }))
    .await;
    let Frame::Deliver(d) = c.recv().await else {
        panic!("expected DELIVER")
    };
    assert_eq!(d.deliveries.len(), 2, "no more than requested");
    assert!(d.deliveries.iter().all(|x| x.attempt == 1));
    // consumer -> ACK(both); broker -> CREDIT to the producer for the freed space
    let items: Vec<Settle> = d
        .deliveries
        .iter()
        .map(|x| Settle {
            delivery_id: x.delivery_id,
            attempt: x.attempt,
        })
        .collect();
    c.send(Frame::Ack(Ack { items })).await;
    // 3 held + 7 granted = 10; acking 2 frees 2 events, below the refill-at-half mark, so no
    // grant yet: the topic stats show the acks.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = b.stats().topics[0].1;
    assert_eq!((s.accepted, s.acked, s.ready), (3, 2, 1));
}

#[tokio::test]
async fn a_retried_batch_is_confirmed_but_stored_once() {
    let b = broker(small()).await;
    let (mut p, _) = Peer::producer(&b, "t", 7).await;
    p.send(Frame::Publish(Publish {
        events: events(7, 1..=2),
    }))
    .await;
    assert!(matches!(p.recv().await, Frame::Confirm(c) if c.up_to_seq == 2));
    p.send(Frame::Publish(Publish {
        events: events(7, 1..=2),
    }))
    .await;
    assert!(matches!(p.recv().await, Frame::Confirm(c) if c.up_to_seq == 2));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = b.stats().topics[0].1;
    assert_eq!((s.accepted, s.duplicates), (2, 2));
}

#[tokio::test]
async fn request_zero_is_refused_and_the_healthy_producer_carries_on() {
    let b = broker(small()).await;
    let (mut p, _) = Peer::producer(&b, "t", 7).await;
    let mut c = Peer::consumer(&b, "t").await;
    c.send(Frame::Request(Request {
        credit: Credit::new(0, 100),
    }))
    .await;
    assert!(
        c.expect_error(ErrorCode::ZeroRequest)
            .await
            .contains("request(0)")
    );
    c.expect_closed().await;
    p.send(Frame::Publish(Publish {
        events: events(7, 1..=1),
    }))
    .await;
    assert!(matches!(p.recv().await, Frame::Confirm(_)));
}

#[tokio::test]
async fn publishing_without_credit_is_refused() {
    let b = broker(small()).await;
    let (mut p, _) = Peer::producer(&b, "t", 7).await;
    p.send(Frame::Publish(Publish {
        events: events(7, 1..=11),
    }))
    .await;
    assert!(
        p.expect_error(ErrorCode::DataWithoutCredit)
            .await
            .contains("credit")
    );
    p.expect_closed().await;
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_length() {
    let b = broker(small()).await;
    let (mut p, _) = Peer::producer(&b, "t", 7).await;
    p.send_raw(&(MAX + 1).to_be_bytes()).await;
    assert!(
        p.expect_error(ErrorCode::FrameTooLarge)
            .await
            .contains("exceeds the maximum")
    );
    p.expect_closed().await;
}

#[tokio::test]
async fn unknown_frame_types_and_garbage_are_refused() {
    let b = broker(small()).await;
    let (mut p, _) = Peer::producer(&b, "t", 7).await;
    p.send_raw(&[0, 0, 0, 1, 0x6f]).await;
    assert!(
        p.expect_error(ErrorCode::UnknownFrameType)
            .await
            .contains("0x6f")
    );
    let mut g = Peer::connect(&b).await;
    g.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    match g.recv().await {
        Frame::Error(e) => assert!(e.code.is_fatal(), "{e:?}"),
        other => panic!("{other:?}"),
    }
    g.expect_closed().await;
}

#[tokio::test]
async fn a_silent_peer_misses_the_handshake_deadline() {
    let b = broker(small()).await;
    let mut p = Peer::connect(&b).await;
    assert!(
        p.expect_error(ErrorCode::HandshakeTimeout)
            .await
            .contains("no HELLO")
    );
    p.expect_closed().await;
}

#[tokio::test]
async fn a_dribbling_peer_misses_the_idle_deadline() {
    let b = broker(small()).await;
    let (mut p, _) = Peer::producer(&b, "t", 7).await;
    // One byte every 100 ms of a frame that never completes.
    let mut frame = BytesMut::new();
    encode(
        &Frame::Publish(Publish {
            events: events(7, 1..=1),
        }),
        &mut frame,
    );
    let dribble = async {
        for byte in frame.iter().take(frame.len() - 1) {
            if p.wr.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(900), dribble).await;
    assert!(
        p.expect_error(ErrorCode::IdleTimeout)
            .await
            .contains("nothing received")
    );
}

#[tokio::test]
async fn a_stale_ack_is_rejected_without_closing_the_session() {
    let b = broker(small()).await;
    let (mut p, _) = Peer::producer(&b, "t", 7).await;
    p.send(Frame::Publish(Publish {
        events: events(7, 1..=1),
    }))
    .await;
    let _ = p.recv().await;
    let mut c = Peer::consumer(&b, "t").await;
    c.send(Frame::Request(Request {
        credit: Credit::new(5, 10_000),
    }))
    .await;
    let Frame::Deliver(d) = c.recv().await else {
        panic!()
    };
    let first = Settle {
        delivery_id: d.deliveries[0].delivery_id,
        attempt: 1,
    };
    c.send(Frame::Nack(flowgate_proto::Nack { items: vec![first] }))
        .await;
    let Frame::Deliver(again) = c.recv().await else {
        panic!()
    };
    assert_eq!(again.deliveries[0].attempt, 2);
    c.send(Frame::Ack(Ack { items: vec![first] })).await;
    assert!(
        c.expect_error(ErrorCode::StaleAttempt)
            .await
            .contains("attempt 1")
    );
    // Still connected: the current attempt is accepted.
    let current = Settle {
        delivery_id: first.delivery_id,
        attempt: 2,
    };
    c.send(Frame::Ack(Ack {
        items: vec![current],
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.stats().topics[0].1.acked, 1);
}

#[tokio::test]
async fn wrong_version_wrong_role_and_bad_names_are_refused() {
    let b = broker(small()).await;
    let mut p = Peer::connect(&b).await;
    p.send(Frame::Hello(Hello {
        version: 99,
        ..Hello::producer("t", 7, MAX)
    }))
    .await;
    assert!(
        p.expect_error(ErrorCode::UnsupportedVersion)
            .await
            .contains("99")
    );
    let mut q = Peer::connect(&b).await;
    q.send(Frame::Hello(Hello::consumer("t", "g h", MAX))).await;
    q.expect_error(ErrorCode::InvalidName).await;
    let mut c = Peer::consumer(&b, "t").await;
    c.send(Frame::Publish(Publish {
        events: events(7, 1..=1),
    }))
    .await;
    assert!(
        c.expect_error(ErrorCode::UnexpectedFrame)
            .await
            .contains("PUBLISH")
    );
    let mut r = Peer::connect(&b).await;
    r.send(Frame::Request(Request {
        credit: Credit::new(1, 1),
    }))
    .await;
    assert!(
        r.expect_error(ErrorCode::UnexpectedFrame)
            .await
            .contains("expected HELLO")
    );
}

#[tokio::test]
async fn unbounded_requests_are_accepted_and_stay_unbounded() {
    let b = broker(small()).await;
    let (mut p, _) = Peer::producer(&b, "t", 7).await;
    let mut c = Peer::consumer(&b, "t").await;
    for _ in 0..3 {
        c.send(Frame::Request(Request {
            credit: Credit::UNBOUNDED,
        }))
        .await;
    }
    p.send(Frame::Publish(Publish {
        events: events(7, 1..=5),
    }))
    .await;
    let Frame::Deliver(d) = c.recv().await else {
        panic!()
    };
    assert_eq!(d.deliveries.len(), 5);
    assert_eq!(b.stats().topics[0].1.consumer_demand, Credit::UNBOUNDED);
}

#[tokio::test]
async fn a_blocked_producer_hands_back_stranded_credit_and_the_room_goes_to_whoever_can_use_it() {
    let b = broker(small()).await;
    // Capacity 10 events / 100,000 bytes; the first producer is granted all of it.
    let (mut p1, c1) = Peer::producer(&b, "t", 1).await;
    assert_eq!(c1, Credit::new(10, 100_000));
    let mut p2 = Peer::welcomed_producer(&b, "t", 2).await;
    // Nothing is left for the second producer: it says it waits for a 74-byte event.
    p2.send(Frame::Blocked(Blocked {
        returned: Credit::ZERO,
        need_bytes: 74,
    }))
    .await;
    // The first says its next event needs more bytes than it holds and hands everything back.
    p1.send(Frame::Blocked(Blocked {
        returned: c1,
        need_bytes: 200_000 - 1,
    }))
    .await;
    p1.expect_error(ErrorCode::EventTooLarge).await;
    p1.expect_closed().await;
    // Its departure returned its credit; the waiting producer gets it.
    let Frame::Credit(g) = p2.recv().await else {
        panic!("expected CREDIT for the waiting producer")
    };
    assert_eq!(g.credit, Credit::new(10, 100_000));
    // Handing back more than it holds is refused, naming both amounts.
    p2.send(Frame::Blocked(Blocked {
        returned: Credit::new(11, 100_000),
        need_bytes: 74,
    }))
    .await;
    let msg = p2.expect_error(ErrorCode::CreditMismatch).await;
    assert!(msg.contains("11 events / 100000 bytes"), "{msg}");
    p2.expect_closed().await;
}

#[tokio::test]
async fn returned_credit_is_granted_again_to_the_producer_that_can_use_it() {
    let b = broker(small()).await;
    let (mut p1, c1) = Peer::producer(&b, "t", 1).await;
    // Publish 3, then hand back the rest: a grant of all the room left follows at once.
    p1.send(Frame::Publish(Publish {
        events: events(1, 1..=3),
    }))
    .await;
    assert!(matches!(p1.recv().await, Frame::Confirm(c) if c.up_to_seq == 3));
    let spent = Credit::new(3, 3 * 74);
    let left = c1.checked_sub(spent).unwrap();
    p1.send(Frame::Blocked(Blocked {
        returned: left,
        need_bytes: 74,
    }))
    .await;
    let Frame::Credit(g) = p1.recv().await else {
        panic!("expected CREDIT")
    };
    assert_eq!(g.credit, left, "what it handed back, and nothing more");
}
