//! Turns a connection's [`Pending`] outbox into frames: one `CREDIT`, any `REFUSED`, one `CONFIRM`,
//! `DELIVER` frames split to fit the peer's maximum frame, then `ERROR`s.

use bytes::BytesMut;
use flowgate_proto::{Confirm, Deliver, ErrorCode, ErrorFrame, Frame, Grant, Refused, encode};

use crate::outbox::Pending;

/// Appends the frames for `pending` to `buf`.
pub(crate) fn encode_pending(pending: &Pending, peer_max_frame: u32, buf: &mut BytesMut) {
    if !pending.grant.is_zero() {
        encode(
            &Frame::Credit(Grant {
                credit: pending.grant,
            }),
            buf,
        );
    }
    for (from_seq, to_seq, reason) in &pending.refused {
        let refused = Refused {
            from_seq: *from_seq,
            to_seq: *to_seq,
            reason: reason.clone(),
        };
        encode(&Frame::Refused(refused), buf);
    }
    if let Some(up_to_seq) = pending.confirm {
        encode(&Frame::Confirm(Confirm { up_to_seq }), buf);
    }
    // The frame length counts the type byte and the 4-byte count before the deliveries.
    let budget = (peer_max_frame as usize).saturating_sub(1 + 4);
    let mut start = 0;
    let mut used = 0usize;
    for (i, d) in pending.deliveries.iter().enumerate() {
        let len = Deliver::item_len(&d.event);
        if i > start && used + len > budget {
            Deliver::encode_frame(&pending.deliveries[start..i], buf);
            start = i;
            used = 0;
        }
        used += len;
    }
    if start < pending.deliveries.len() {
        Deliver::encode_frame(&pending.deliveries[start..], buf);
    }
    for notice in &pending.notices {
        encode(&Frame::Error(notice.clone()), buf);
    }
    if pending.notices_dropped > 0 {
        let message = format!("{} more ack rejections not shown", pending.notices_dropped);
        encode(
            &Frame::Error(ErrorFrame {
                code: ErrorCode::UnknownDelivery,
                message,
            }),
            buf,
        );
    }
    if let Some(fatal) = &pending.fatal {
        encode(&Frame::Error(fatal.clone()), buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use flowgate_core::EventId;
    use flowgate_proto::{DeliveredEvent, FrameDecoder, WireEvent};

    #[test]
    fn deliveries_are_split_to_fit_the_peer_s_frame_limit() {
        let event = |seq| WireEvent {
            id: EventId::new(1, seq),
            created_us: 0,
            key: None,
            payload: Bytes::from(vec![0u8; 1000]),
        };
        let pending = Pending {
            deliveries: (1..=10)
                .map(|s| DeliveredEvent {
                    delivery_id: s,
                    attempt: 1,
                    event: event(s),
                })
                .collect(),
            ..Pending::default()
        };
        let max = 4096;
        let mut buf = BytesMut::new();
        encode_pending(&pending, max, &mut buf);
        let mut dec = FrameDecoder::new(max);
        let mut ids = Vec::new();
        while let Some(Frame::Deliver(d)) = dec.decode(&mut buf).unwrap() {
            assert!(
                d.deliveries.len() <= 3,
                "1,044-byte items, 4,096-byte frames"
            );
            ids.extend(d.deliveries.iter().map(|d| d.delivery_id));
        }
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    }
}
