//! One connection's driver: a reader that feeds frames and deadlines to the connection's
//! `ServerSession` (the handshake, the frame rules, the deadlines) and turns its inputs into
//! topic calls, and a writer that drains the connection's outbox. All decisions are the
//! session's and the topic's; this file only moves bytes.
//!
//! A peer that breaks a rule is sent an `ERROR` frame naming it and is disconnected; its
//! unacked deliveries go back to the topic and its unused credit returns to the free space,
//! so nobody else notices.

use std::sync::Arc;

use flowgate_core::ConnId;
use flowgate_proto::io::{FrameReader, ReadError};
use flowgate_proto::session::{Input, ServerLimits};
use flowgate_proto::{ErrorCode, Frame, Role, ServerSession};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::attach::{Attached, attach};
use crate::inputs::{fatal_topic_error, notice_rejections, publish};
use crate::outbox::Outbox;
use crate::server::Shared;
use crate::topics::TopicHandle;
use crate::transport::{self, Accepted, ReadHalf};
use crate::writer::{Writer, refuse, write_loop};

/// Why a session ended.
pub(crate) enum End {
    /// The peer left, or the socket failed.
    Gone,
    /// The peer broke a rule; tell it which, then close.
    Fatal(ErrorCode, String),
}

/// Serves one accepted connection to its end.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, conn: ConnId) {
    let config = &shared.config;
    let limits = ServerLimits {
        max_frame: config.max_frame,
        idle_timeout: config.idle_timeout,
        handshake_timeout: config.handshake_timeout,
    };
    let mut session = ServerSession::new(limits, now());
    // One deadline for the TLS handshake (if any) and the HELLO together.
    let deadline = Instant::from_std(session.poll_timeout());
    let (rd, wr) = match transport::accept(stream, config.tls.as_ref(), deadline).await {
        Accepted::Ready(rd, wr) => (rd, wr),
        Accepted::Refused(wr, code, why) => return refuse(&shared, wr, code, why).await,
        Accepted::Failed => return,
    };
    let mut reader = FrameReader::new(rd, config.max_frame);
    let hello = match next_input(&mut session, &mut reader).await {
        Ok(Input::Hello(hello)) => hello,
        Ok(_) | Err(End::Gone) => return,
        Err(End::Fatal(code, why)) => return refuse(&shared, wr, code, why).await,
    };
    if let Err(why) = config.tokens.check(&hello.token, hello.role, &hello.topic) {
        return refuse(&shared, wr, ErrorCode::Unauthorized, why).await;
    }
    let Attached {
        topic,
        outbox,
        resume_seq,
        largest,
        refused,
    } = match attach(&shared, &session, &hello, conn).await {
        Ok(attached) => attached,
        Err((code, why)) => return refuse(&shared, wr, code, why).await,
    };
    let writer_gone = Arc::new(Notify::new());
    let mut writer = Writer(tokio::spawn(write_loop(
        wr,
        Arc::clone(&outbox),
        Frame::Welcome(session.welcome(resume_seq, largest, refused)),
        hello.max_frame,
        config.idle_timeout,
        Arc::clone(&writer_gone),
    )));

    let end = tokio::select! {
        end = read_loop(&shared, &mut session, &mut reader, &topic, &outbox, conn) => end,
        _ = writer_gone.notified() => End::Gone,
    };

    topic.apply(|t| {
        match hello.role {
            Role::Producer => t.topic.detach_producer(conn),
            Role::Consumer => t.topic.detach_consumer(conn),
        }
        t.outboxes.remove(&conn);
    });
    match end {
        End::Fatal(code, why) => {
            tracing::info!(conn, code = code.name(), topic = %hello.topic, "closing a connection that broke a rule: {why}");
            shared.count_error(code);
            outbox.fail(code, why);
        }
        End::Gone => outbox.close(),
    }
    let _ = (&mut writer.0).await;
}

/// The now the sessions take, on tokio's clock.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Reads until the session has an input for the topic, feeding it the deadlines it asks for.
async fn next_input(
    session: &mut ServerSession,
    reader: &mut FrameReader<ReadHalf>,
) -> Result<Input, End> {
    loop {
        let deadline = Instant::from_std(session.poll_timeout());
        let result = match tokio::time::timeout_at(deadline, reader.next()).await {
            Err(_) => session.handle_timeout(now()).map(|()| None),
            Ok(Err(ReadError::Proto(e))) => return Err(End::Fatal(e.code(), e.to_string())),
            Ok(Err(ReadError::Eof | ReadError::Io(_))) => return Err(End::Gone),
            Ok(Ok(frame)) => session.handle_frame(now(), frame),
        };
        match result {
            Ok(Some(input)) => return Ok(input),
            Ok(None) => {}
            Err(refusal) => return Err(End::Fatal(refusal.code, refusal.message)),
        }
    }
}

/// Turns the session's inputs into topic calls until the connection ends.
async fn read_loop(
    shared: &Arc<Shared>,
    session: &mut ServerSession,
    reader: &mut FrameReader<ReadHalf>,
    topic: &TopicHandle,
    outbox: &Arc<Outbox>,
    conn: ConnId,
) -> End {
    loop {
        let input = match next_input(session, reader).await {
            Ok(input) => input,
            Err(end) => return end,
        };
        match input {
            Input::Leave => return End::Gone,
            // A draining broker closing its connections could not confirm it: not accepted,
            // so its producer sends it again to the next broker.
            Input::Publish(_) if shared.closing() => {}
            Input::Publish(events) => {
                if let Err(end) = publish(shared, topic, outbox, conn, events) {
                    return end;
                }
            }
            Input::Blocked(b) => {
                if let Err(e) = topic.apply(|t| t.topic.blocked(conn, b.returned, b.need_bytes)) {
                    return fatal_topic_error(&e);
                }
            }
            Input::Request(credit) => {
                if let Err(e) = topic.apply(|t| t.topic.request(conn, credit)) {
                    return fatal_topic_error(&e);
                }
            }
            Input::Ack(items) => {
                let (acked, rejected) = topic.apply(|t| {
                    let mut acked = Vec::with_capacity(items.len());
                    let mut rejected = Vec::new();
                    for s in &items {
                        match t.topic.ack(conn, s.delivery_id, s.attempt) {
                            Ok(Some(event)) => acked.push(event.id),
                            Ok(None) => {}
                            Err(e) => rejected.push(e),
                        }
                    }
                    (acked, rejected)
                });
                shared.storage.ack(&topic.name, &acked);
                notice_rejections(shared, outbox, rejected);
            }
            Input::Nack(items) => {
                let rejected = topic.apply(|t| {
                    items
                        .iter()
                        .filter_map(|s| t.topic.nack(conn, s.delivery_id, s.attempt).err())
                        .collect::<Vec<_>>()
                });
                notice_rejections(shared, outbox, rejected);
            }
            Input::Progress(items) => {
                let rejected = topic.apply(|t| {
                    items
                        .iter()
                        .filter_map(|s| t.topic.progress(conn, s.delivery_id, s.attempt).err())
                        .collect::<Vec<_>>()
                });
                notice_rejections(shared, outbox, rejected);
            }
            // The session yields HELLO once, before this loop.
            Input::Hello(_) => {}
        }
    }
}
