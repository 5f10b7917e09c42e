//! A broker of one in-memory topic, as far as the protocol goes: what the topic does with a
//! `ServerSession`'s [`Input`] and which frames its answer sends to whom. The test harness
//! and the simulator (`flowgate-sim`) serve their sessions with it; the real broker does the
//! same with storage and per-connection outboxes around it (`flowgate-broker`).

use flowgate_core::{Action, ConnId, Topic, TopicError};

use crate::session::{Input, ServerSession};
use crate::{
    Confirm, Deliver, DeliveredEvent, ErrorCode, ErrorFrame, Frame, Grant, Refused, Role, WireEvent,
};

/// Applies `input`, which came from the peer of `session` on `conn`, to `topic`, and appends
/// the frames that answer it (`WELCOME`, `CONFIRM`, ack rejections, and the grants and
/// deliveries the topic decided on) to `out`. `Input::Leave` is the caller's: it detaches.
/// `Err` is a rule the peer broke; end its connection with that error.
pub fn apply(
    topic: &mut Topic<WireEvent>,
    session: &ServerSession,
    conn: ConnId,
    input: Input,
    out: &mut Vec<(ConnId, Frame)>,
) -> Result<(), TopicError> {
    match input {
        Input::Hello(hello) => {
            let resume = match hello.role {
                Role::Producer => topic.attach_producer(conn, hello.producer_id),
                Role::Consumer => {
                    topic.attach_consumer(conn, &hello.group, hello.group_mode())?;
                    0
                }
            };
            let largest = topic.largest_grant();
            let refused = match hello.role {
                Role::Producer => topic.refused_runs(hello.producer_id),
                Role::Consumer => Vec::new(),
            };
            let welcome = session.welcome(resume, largest, refused);
            out.push((conn, Frame::Welcome(welcome)));
        }
        Input::Publish(events) => {
            let batch = events
                .into_iter()
                .map(|e| {
                    let bytes = e.credit_bytes();
                    (e.id.seq, e, bytes)
                })
                .collect();
            let published = topic.publish(conn, batch)?;
            for (from_seq, to_seq) in published.refused_runs() {
                let refused = Refused {
                    from_seq,
                    to_seq,
                    reason: "the topic is full and its policy is reject".to_string(),
                };
                out.push((conn, Frame::Refused(refused)));
            }
            let confirm = Confirm {
                up_to_seq: published.confirm_up_to,
            };
            out.push((conn, Frame::Confirm(confirm)));
        }
        Input::Blocked(b) => topic.blocked(conn, b.returned, b.need_bytes)?,
        Input::Request(credit) => topic.request(conn, credit)?,
        Input::Ack(items) => {
            for s in items {
                if let Err(e) = topic.ack(conn, s.delivery_id, s.attempt) {
                    out.push((conn, notice(&e)));
                }
            }
        }
        Input::Nack(items) => {
            for s in items {
                if let Err(e) = topic.nack(conn, s.delivery_id, s.attempt) {
                    out.push((conn, notice(&e)));
                }
            }
        }
        Input::Progress(items) => {
            for s in items {
                if let Err(e) = topic.progress(conn, s.delivery_id, s.attempt) {
                    out.push((conn, notice(&e)));
                }
            }
        }
        Input::Leave => {}
    }
    route(topic, out);
    Ok(())
}

/// Appends the frames for the topic's pending grants and deliveries to `out`. Spill loads
/// (disk mode) are not this broker's: it has no disk.
pub fn route(topic: &mut Topic<WireEvent>, out: &mut Vec<(ConnId, Frame)>) {
    // Events that left the topic unacked concern a store; this broker has none.
    drop(topic.take_dropped());
    for action in topic.poll_actions() {
        match action {
            Action::Grant { producer, credit } => {
                out.push((producer, Frame::Credit(Grant { credit })));
            }
            Action::Deliver {
                consumer,
                deliveries,
            } => {
                let deliveries = deliveries
                    .into_iter()
                    .map(|d| DeliveredEvent {
                        delivery_id: d.delivery_id,
                        attempt: d.attempt,
                        event: d.item,
                    })
                    .collect();
                out.push((consumer, Frame::Deliver(Deliver { deliveries })));
            }
            Action::Load { .. } => {}
        }
    }
}

/// The `ERROR` notice for a rejected ack or nack (not fatal).
fn notice(e: &TopicError) -> Frame {
    Frame::Error(ErrorFrame {
        code: ErrorCode::of_topic_error(e),
        message: e.to_string(),
    })
}
