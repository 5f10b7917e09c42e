//! Property tests of the codec: encode-then-decode is the identity for every frame, and no
//! sequence of bytes makes the decoder panic or buffer beyond its maximum.

use bytes::{Bytes, BytesMut};
use flowgate_core::{Credit, EventId};
use flowgate_proto::{
    Ack, Blocked, Confirm, Deliver, DeliveredEvent, ErrorCode, ErrorFrame, Frame, FrameDecoder,
    Grant, Heartbeat, Hello, Nack, Publish, Refused, Request, Role, Settle, Welcome, WireEvent,
    encode,
};
use proptest::prelude::*;

fn event() -> impl Strategy<Value = WireEvent> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(p, s, t, key, payload)| WireEvent {
            id: EventId::new(p, s),
            created_us: t,
            key: key.map(Bytes::from),
            payload: Bytes::from(payload),
        })
}

fn settles() -> impl Strategy<Value = Vec<Settle>> {
    prop::collection::vec(
        (any::<u64>(), any::<u32>()).prop_map(|(d, a)| Settle {
            delivery_id: d,
            attempt: a,
        }),
        0..8,
    )
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u16>(),
            any::<bool>(),
            any::<u64>(),
            "[a-z0-9._-]{0,20}",
            "[a-z]{0,10}",
            any::<u32>(),
            any::<u64>(),
            "[A-Za-z0-9]{0,12}"
        )
            .prop_map(
                |(version, producer, producer_id, topic, group, max_frame, max_lag, token)| {
                    Frame::Hello(Hello {
                        version,
                        role: if producer {
                            Role::Producer
                        } else {
                            Role::Consumer
                        },
                        producer_id,
                        topic,
                        group,
                        max_frame,
                        max_lag,
                        token,
                    })
                }
            ),
        (
            any::<u16>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            prop::collection::vec((1u64..1000, 0u64..1000), 0..4)
        )
            .prop_map(|(v, m, r, i, l, runs)| {
                Frame::Welcome(Welcome {
                    version: v,
                    max_frame: m,
                    resume_seq: r,
                    idle_timeout_ms: i,
                    largest_payload: l,
                    refused: runs.into_iter().map(|(from, n)| (from, from + n)).collect(),
                })
            }),
        (1u64..u64::MAX / 2, 0u64..1000, "[a-z ]{0,40}").prop_map(|(from, n, reason)| {
            Frame::Refused(Refused {
                from_seq: from,
                to_seq: from + n,
                reason,
            })
        }),
        prop::collection::vec(event(), 0..6).prop_map(|events| Frame::Publish(Publish { events })),
        any::<u64>().prop_map(|s| Frame::Confirm(Confirm { up_to_seq: s })),
        (any::<u64>(), any::<u64>()).prop_map(|(e, b)| Frame::Credit(Grant {
            credit: Credit::new(e, b)
        })),
        (any::<u64>(), any::<u64>()).prop_map(|(e, b)| Frame::Request(Request {
            credit: Credit::new(e, b)
        })),
        prop::collection::vec((any::<u64>(), any::<u32>(), event()), 0..6).prop_map(|ds| {
            Frame::Deliver(Deliver {
                deliveries: ds
                    .into_iter()
                    .map(|(delivery_id, attempt, event)| DeliveredEvent {
                        delivery_id,
                        attempt,
                        event,
                    })
                    .collect(),
            })
        }),
        settles().prop_map(|items| Frame::Ack(Ack { items })),
        settles().prop_map(|items| Frame::Nack(Nack { items })),
        (1u16..20, ".{0,40}").prop_map(|(c, m)| Frame::Error(ErrorFrame {
            code: ErrorCode::from_wire(c),
            message: m
        })),
        Just(Frame::Heartbeat(Heartbeat)),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(e, b, n)| Frame::Blocked(Blocked {
            returned: Credit::new(e, b),
            need_bytes: n,
        })),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_is_the_identity(frames in prop::collection::vec(frame(), 1..5), split in any::<prop::sample::Index>()) {
        let mut wire = BytesMut::new();
        for f in &frames {
            encode(f, &mut wire);
        }
        // Deliver the bytes in two reads split anywhere.
        let cut = split.index(wire.len() + 1);
        let mut dec = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut out = Vec::new();
        while let Some(f) = dec.decode(&mut buf).expect("valid frames decode") {
            out.push(f);
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(f) = dec.decode(&mut buf).expect("valid frames decode") {
            out.push(f);
        }
        prop_assert_eq!(out, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_grow_the_buffer_past_the_maximum(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let max = 4096u32;
        let mut dec = FrameDecoder::new(max);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
        prop_assert!(buf.capacity() <= (max as usize + 4).max(bytes.len()));
    }
}
