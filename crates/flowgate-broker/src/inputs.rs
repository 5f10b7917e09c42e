//! What a connection's inputs do beyond the topic's own rules: a producer's batch goes into
//! the topic and its store under the topic's lock and is confirmed once the store says it is
//! durable, and told which events a `reject` policy refused; rejected acks and nacks go back
//! to the consumer as notices.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use flowgate_core::{ConnId, Published, TopicError};
use flowgate_proto::{ErrorCode, WireEvent};

use crate::connection::End;
use crate::outbox::Outbox;
use crate::server::Shared;
use crate::topics::TopicHandle;

/// Accepts a producer's batch into the topic and its store, and confirms it once the store
/// says it is durable. The store is written under the topic's lock, before the events can be
/// delivered, so an ack can never reach the log ahead of its event. The confirm waits in its
/// own task, so the producer's next batch is read (and can join the same disk sync) meanwhile;
/// confirms are cumulative and the log answers in order.
pub(crate) fn publish(
    shared: &Arc<Shared>,
    topic: &TopicHandle,
    outbox: &Arc<Outbox>,
    conn: ConnId,
    events: Vec<WireEvent>,
) -> Result<(), End> {
    let to_batch = |e: WireEvent| {
        let bytes = e.credit_bytes();
        (e.id.seq, e, bytes)
    };
    if shared.storage.capacity(&topic.name).is_none() {
        let batch: Vec<_> = events.into_iter().map(to_batch).collect();
        let out = topic
            .apply(|t| t.topic.publish(conn, batch))
            .map_err(|e| fatal_topic_error(&e))?;
        tell_refused(topic, outbox, &out);
        outbox.confirm(out.confirm_up_to);
        return Ok(());
    }
    let batch: Vec<_> = events.iter().cloned().map(to_batch).collect();
    let (out, durable) = topic
        .apply(|t| {
            let out = t.topic.publish(conn, batch)?;
            // The stored events are one run: after the duplicates, before what the policy
            // dropped or refused.
            let first = out.duplicates as usize;
            let fresh = &events[first..first + out.accepted as usize];
            let spilled = out.spilled as usize;
            // A dropped or refused tail is confirmed too: the log keeps the producer's mark
            // past it, or a restart would expect those sequence numbers again.
            let mark = (out.dropped > 0).then(|| events[events.len() - 1].id);
            Ok((
                out,
                shared.storage.append(&topic.name, fresh, spilled, mark),
            ))
        })
        .map_err(|e| fatal_topic_error(&e))?;
    // Refusals are queued now, in the order the batches came, and go out with the confirm
    // that reaches them, once the log holds the producer's mark past them: a producer told of
    // a refusal never finds the broker expecting those numbers again.
    tell_refused(topic, outbox, &out);
    let outbox = Arc::clone(outbox);
    let shared = Arc::clone(shared);
    let topic_name = topic.name.clone();
    shared.confirming.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        match durable.wait().await {
            Ok(()) => outbox.confirm(out.confirm_up_to),
            Err(e) => {
                tracing::error!(topic = %topic_name, "storage failed, a batch is not confirmed: {e}");
                shared.count_error(ErrorCode::StorageFailed);
                outbox.fail(
                    ErrorCode::StorageFailed,
                    format!("storage failed, batch not confirmed: {e}"),
                );
            }
        }
        shared.confirming.fetch_sub(1, Ordering::SeqCst);
    });
    Ok(())
}

/// Tells the producer which of its events the topic's policy refused.
fn tell_refused(topic: &TopicHandle, outbox: &Outbox, out: &Published) {
    for (from, to, reason) in refusals(topic, out) {
        outbox.refuse(from, to, reason);
    }
}

/// The runs of events the topic's policy refused, `(from, to, reason)`: any retried ones it
/// refused before, then the batch's last ones, up to the sequence number confirmed.
fn refusals(topic: &TopicHandle, out: &Published) -> Vec<(u64, u64, String)> {
    let reason = format!(
        "topic '{}' is full and its policy is reject: the event was not stored",
        topic.name
    );
    out.refused_runs()
        .into_iter()
        .map(|(from, to)| (from, to, reason.clone()))
        .collect()
}

pub(crate) fn notice_rejections(shared: &Shared, outbox: &Outbox, rejected: Vec<TopicError>) {
    for e in rejected {
        let code = ErrorCode::of_topic_error(&e);
        shared.count_error(code);
        outbox.notice(code, e.to_string());
    }
}

pub(crate) fn fatal_topic_error(e: &TopicError) -> End {
    End::Fatal(ErrorCode::of_topic_error(e), e.to_string())
}
