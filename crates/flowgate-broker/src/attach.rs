//! Attaching a welcomed peer to its topic: the topic must exist or be creatable, a consumer's
//! frame limit must carry the topic's largest event and its group mode must be its group's, and a
//! producer's resume point must be durable before it is told. Any refusal names the rule.

use std::sync::Arc;

use flowgate_core::ConnId;
use flowgate_proto::{ErrorCode, Hello, Role, ServerSession};

use crate::outbox::Outbox;
use crate::server::Shared;
use crate::storage::Durable;
use crate::topics::TopicHandle;

/// A peer attached to its topic.
pub(crate) struct Attached {
    pub topic: Arc<TopicHandle>,
    pub outbox: Arc<Outbox>,
    /// Where a producer resumes (0 for a consumer).
    pub resume_seq: u64,
    /// The largest event the topic can ever grant, for `WELCOME`.
    pub largest: u64,
    /// A producer's latest refused runs, for `WELCOME`.
    pub refused: Vec<(u64, u64)>,
}

/// Attaches the peer that said `hello`, or says why not.
pub(crate) async fn attach(
    shared: &Shared,
    session: &ServerSession,
    hello: &Hello,
    conn: ConnId,
) -> Result<Attached, (ErrorCode, String)> {
    let topic = shared
        .topics
        .open(&hello.topic)
        .map_err(|e| (ErrorCode::UnknownTopic, e.to_string()))?;
    let outbox = Arc::new(Outbox::default());
    let (resume_seq, durable, largest, refused) = topic.apply(|t| {
        let largest = t.topic.largest_grant();
        if hello.role == Role::Consumer {
            session
                .check_consumer_frame(largest)
                .map_err(|r| (r.code, r.message))?;
            t.topic
                .attach_consumer(conn, &hello.group, hello.group_mode())
                .map_err(|e| {
                    let why = format!("topic '{}': {e}", hello.topic);
                    (ErrorCode::of_topic_error(&e), why)
                })?;
            t.outboxes.insert(conn, Arc::clone(&outbox));
            Ok((0, Durable::now(), largest, Vec::new()))
        } else {
            t.outboxes.insert(conn, Arc::clone(&outbox));
            let resume = t.topic.attach_producer(conn, hello.producer_id);
            // The producer treats its resume point as confirmed, so it must be durable: a
            // barrier behind everything the topic accepted so far.
            Ok((
                resume,
                shared.storage.append(&hello.topic, &[], 0, None),
                largest,
                t.topic.refused_runs(hello.producer_id),
            ))
        }
    })?;
    if let Err(e) = durable.wait().await {
        topic.apply(|t| {
            t.topic.detach_producer(conn);
            t.outboxes.remove(&conn);
        });
        return Err((ErrorCode::StorageFailed, format!("storage failed: {e}")));
    }
    Ok(Attached {
        topic,
        outbox,
        resume_seq,
        largest,
        refused,
    })
}
