//! One connection's driver: the handshake under a deadline, then a reader that turns frames
//! into topic inputs and a writer that drains the connection's outbox. All decisions are the
//! topic state machine's; this file only moves bytes and enforces deadlines.
//!
//! A peer that breaks a rule is sent an `ERROR` frame naming it and is disconnected; its
//! unacked deliveries go back to the topic and its unused credit returns to the free space,
//! so nobody else notices.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use flowgate_core::{ConnId, TopicError};
use flowgate_proto::io::{FrameReader, ReadError};
use flowgate_proto::{ErrorCode, Frame, Hello, Role, VERSION, Welcome, WireEvent, encode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::names;
use crate::outbox::Outbox;
use crate::server::Shared;
use crate::topics::TopicHandle;
use crate::transport::{self, Accepted, ReadHalf, WriteHalf};

/// Why a session ended.
enum End {
    /// The peer left, or the socket failed.
    Gone,
    /// The peer broke a rule; tell it which, then close.
    Fatal(ErrorCode, String),
}

/// Serves one accepted connection to its end.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, conn: ConnId) {
    let config = &shared.config;
    // One deadline for the TLS handshake (if any) and the HELLO together.
    let deadline = tokio::time::Instant::now() + config.handshake_timeout;
    let (rd, wr) = match transport::accept(stream, config.tls.as_ref(), deadline).await {
        Accepted::Ready(rd, wr) => (rd, wr),
        Accepted::Refused(wr, code, why) => return refuse(&shared, wr, code, why).await,
        Accepted::Failed => return,
    };
    let mut reader = FrameReader::new(rd, config.max_frame);
    let hello = match tokio::time::timeout_at(deadline, reader.next()).await {
        Err(_) => {
            let why = format!("no HELLO within {:?}", config.handshake_timeout);
            return refuse(&shared, wr, ErrorCode::HandshakeTimeout, why).await;
        }
        Ok(Err(ReadError::Proto(e))) => return refuse(&shared, wr, e.code(), e.to_string()).await,
        Ok(Err(_)) => return,
        Ok(Ok(Frame::Hello(hello))) => hello,
        Ok(Ok(other)) => {
            let why = format!("expected HELLO, got {}", other.frame_type().name());
            return refuse(&shared, wr, ErrorCode::UnexpectedFrame, why).await;
        }
    };
    if let Err((code, why)) = check_hello(&hello) {
        return refuse(&shared, wr, code, why).await;
    }
    if let Err(why) = config.tokens.check(&hello.token, hello.role, &hello.topic) {
        return refuse(&shared, wr, ErrorCode::Unauthorized, why).await;
    }
    let topic = shared.topics.get_or_create(&hello.topic);
    let outbox = Arc::new(Outbox::default());
    let attached = topic.apply(|t| {
        if hello.role == Role::Consumer {
            match &t.group {
                Some(g) if *g != hello.group => {
                    return Err(format!(
                        "topic '{}' is consumed by group '{g}'; one group per topic is supported",
                        hello.topic
                    ));
                }
                _ => t.group = Some(hello.group.clone()),
            }
            t.topic.attach_consumer(conn);
            t.outboxes.insert(conn, Arc::clone(&outbox));
            Ok((0, crate::storage::Durable::now()))
        } else {
            t.outboxes.insert(conn, Arc::clone(&outbox));
            let resume = t.topic.attach_producer(conn, hello.producer_id);
            // The producer treats its resume point as confirmed, so it must be durable: a
            // barrier behind everything the topic accepted so far.
            Ok((resume, shared.storage.append(&hello.topic, &[], 0)))
        }
    });
    let resume_seq = match attached {
        Ok((seq, durable)) => match durable.wait().await {
            Ok(()) => seq,
            Err(e) => {
                topic.apply(|t| {
                    t.topic.detach_producer(conn);
                    t.outboxes.remove(&conn);
                });
                let why = format!("storage failed: {e}");
                return refuse(&shared, wr, ErrorCode::StorageFailed, why).await;
            }
        },
        Err(why) => return refuse(&shared, wr, ErrorCode::GroupConflict, why).await,
    };
    let welcome = Welcome {
        version: VERSION,
        max_frame: config.max_frame,
        resume_seq,
        idle_timeout_ms: u32::try_from(config.idle_timeout.as_millis()).unwrap_or(u32::MAX),
    };
    let writer_gone = Arc::new(Notify::new());
    let writer = tokio::spawn(write_loop(
        wr,
        Arc::clone(&outbox),
        Frame::Welcome(welcome),
        hello.max_frame,
        config.idle_timeout,
        Arc::clone(&writer_gone),
    ));

    let end = tokio::select! {
        end = read_loop(&shared, &mut reader, &topic, &outbox, &hello, conn) => end,
        _ = writer_gone.notified() => End::Gone,
    };

    topic.apply(|t| {
        match hello.role {
            Role::Producer => t.topic.detach_producer(conn),
            Role::Consumer => t.topic.detach_consumer(conn),
        }
        t.outboxes.remove(&conn);
        if t.topic.consumer_count() == 0 {
            t.group = None;
        }
    });
    match end {
        End::Fatal(code, why) => {
            shared.count_error(code);
            outbox.fail(code, why);
        }
        End::Gone => outbox.close(),
    }
    let _ = writer.await;
}

/// Checks a `HELLO` before anything is attached.
fn check_hello(hello: &Hello) -> Result<(), (ErrorCode, String)> {
    if hello.version != VERSION {
        return Err((
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} offered; this broker speaks {VERSION}",
                hello.version
            ),
        ));
    }
    names::validate("topic", &hello.topic).map_err(|e| (ErrorCode::InvalidName, e))?;
    match hello.role {
        Role::Consumer => {
            names::validate("group", &hello.group).map_err(|e| (ErrorCode::InvalidName, e))?
        }
        Role::Producer if hello.producer_id == 0 => {
            return Err((
                ErrorCode::MalformedFrame,
                "producer id 0 is reserved; pick any other".into(),
            ));
        }
        Role::Producer => {}
    }
    if hello.max_frame < flowgate_proto::MIN_MAX_FRAME {
        return Err((
            ErrorCode::MalformedFrame,
            format!(
                "max_frame {} is below the minimum {}",
                hello.max_frame,
                flowgate_proto::MIN_MAX_FRAME
            ),
        ));
    }
    Ok(())
}

async fn read_loop(
    shared: &Arc<Shared>,
    reader: &mut FrameReader<ReadHalf>,
    topic: &TopicHandle,
    outbox: &Arc<Outbox>,
    hello: &Hello,
    conn: ConnId,
) -> End {
    let idle = shared.config.idle_timeout;
    loop {
        let frame = match tokio::time::timeout(idle, reader.next()).await {
            Err(_) => {
                return End::Fatal(
                    ErrorCode::IdleTimeout,
                    format!("nothing received for {idle:?}"),
                );
            }
            Ok(Err(ReadError::Proto(e))) => return End::Fatal(e.code(), e.to_string()),
            Ok(Err(ReadError::Eof | ReadError::Io(_))) => return End::Gone,
            Ok(Ok(frame)) => frame,
        };
        match (hello.role, frame) {
            (_, Frame::Heartbeat(_)) => {}
            (_, Frame::Error(_)) => return End::Gone,
            (Role::Producer, Frame::Publish(p)) => {
                if let Some(e) = p.events.iter().find(|e| e.id.producer != hello.producer_id) {
                    return End::Fatal(
                        ErrorCode::SequenceGap,
                        format!(
                            "event {} names producer {:016x}; this session is producer {:016x}",
                            e.id, e.id.producer, hello.producer_id
                        ),
                    );
                }
                if let Err(end) = publish(shared, topic, outbox, conn, p.events) {
                    return end;
                }
            }
            (Role::Producer, Frame::Blocked(b)) => {
                if let Err(e) = topic.apply(|t| t.topic.blocked(conn, b.returned, b.need_bytes)) {
                    return fatal_topic_error(&e);
                }
            }
            (Role::Consumer, Frame::Request(r)) => {
                if let Err(e) = topic.apply(|t| t.topic.request(conn, r.credit)) {
                    return fatal_topic_error(&e);
                }
            }
            (Role::Consumer, Frame::Ack(a)) => {
                let (acked, rejected) = topic.apply(|t| {
                    let mut acked = Vec::with_capacity(a.items.len());
                    let mut rejected = Vec::new();
                    for s in &a.items {
                        match t.topic.ack(conn, s.delivery_id, s.attempt) {
                            Ok(event) => acked.push(event.id),
                            Err(e) => rejected.push(e),
                        }
                    }
                    (acked, rejected)
                });
                shared.storage.ack(&topic.name, &acked);
                notice_rejections(shared, outbox, rejected);
            }
            (Role::Consumer, Frame::Nack(n)) => {
                let rejected = topic.apply(|t| {
                    n.items
                        .iter()
                        .filter_map(|s| t.topic.nack(conn, s.delivery_id, s.attempt).err())
                        .collect::<Vec<_>>()
                });
                notice_rejections(shared, outbox, rejected);
            }
            (role, other) => {
                return End::Fatal(
                    ErrorCode::UnexpectedFrame,
                    format!(
                        "{} is not valid from a {role:?} after the handshake",
                        other.frame_type().name()
                    ),
                );
            }
        }
    }
}

/// Accepts a producer's batch into the topic and its store, and confirms it once the store
/// says it is durable. The store is written under the topic's lock, before the events can be
/// delivered, so an ack can never reach the log ahead of its event. The confirm waits in its
/// own task, so the producer's next batch is read (and can join the same disk sync) meanwhile;
/// confirms are cumulative and the log answers in order.
fn publish(
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
    if shared.storage.capacity().is_none() {
        let batch: Vec<_> = events.into_iter().map(to_batch).collect();
        let out = topic
            .apply(|t| t.topic.publish(conn, batch))
            .map_err(|e| fatal_topic_error(&e))?;
        outbox.confirm(out.confirm_up_to);
        return Ok(());
    }
    let batch: Vec<_> = events.iter().cloned().map(to_batch).collect();
    let (out, durable) = topic
        .apply(|t| {
            let out = t.topic.publish(conn, batch)?;
            // The accepted events are the batch's last ones; the rest were duplicates.
            let fresh = &events[events.len() - out.accepted as usize..];
            let spilled = out.spilled as usize;
            Ok((out, shared.storage.append(&topic.name, fresh, spilled)))
        })
        .map_err(|e| fatal_topic_error(&e))?;
    let outbox = Arc::clone(outbox);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        match durable.wait().await {
            Ok(()) => outbox.confirm(out.confirm_up_to),
            Err(e) => {
                shared.count_error(ErrorCode::StorageFailed);
                outbox.fail(
                    ErrorCode::StorageFailed,
                    format!("storage failed, batch not confirmed: {e}"),
                );
            }
        }
    });
    Ok(())
}

fn notice_rejections(shared: &Shared, outbox: &Outbox, rejected: Vec<TopicError>) {
    for e in rejected {
        let code = topic_error_code(&e);
        shared.count_error(code);
        outbox.notice(code, e.to_string());
    }
}

fn topic_error_code(e: &TopicError) -> ErrorCode {
    match e {
        TopicError::UnknownConnection(_) => ErrorCode::UnexpectedFrame,
        TopicError::ZeroRequest => ErrorCode::ZeroRequest,
        TopicError::DataWithoutCredit { .. } => ErrorCode::DataWithoutCredit,
        TopicError::SequenceGap { .. } => ErrorCode::SequenceGap,
        TopicError::ReturnedMoreThanHeld { .. } => ErrorCode::CreditMismatch,
        TopicError::EventTooLarge { .. } => ErrorCode::EventTooLarge,
        TopicError::UnknownDelivery(_) => ErrorCode::UnknownDelivery,
        TopicError::StaleAttempt { .. } => ErrorCode::StaleAttempt,
    }
}

fn fatal_topic_error(e: &TopicError) -> End {
    End::Fatal(topic_error_code(e), e.to_string())
}

/// Sends one `ERROR` and closes, for peers refused before a session exists.
async fn refuse(shared: &Shared, mut wr: WriteHalf, code: ErrorCode, message: String) {
    shared.count_error(code);
    let mut buf = BytesMut::new();
    encode(
        &Frame::Error(flowgate_proto::ErrorFrame { code, message }),
        &mut buf,
    );
    let write = async {
        wr.write_all(&buf).await?;
        wr.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Writes the outbox to the socket until it is closed. A peer that stops reading cannot
/// stall the broker: a write that makes no progress for the idle deadline ends the session.
async fn write_loop(
    mut wr: WriteHalf,
    outbox: Arc<Outbox>,
    first: Frame,
    peer_max_frame: u32,
    idle: Duration,
    gone: Arc<Notify>,
) {
    let result = write_until_closed(&mut wr, &outbox, first, peer_max_frame, idle).await;
    if result.is_err() {
        gone.notify_one();
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
}

async fn write_until_closed(
    wr: &mut WriteHalf,
    outbox: &Outbox,
    first: Frame,
    peer_max_frame: u32,
    idle: Duration,
) -> io::Result<()> {
    let heartbeat_every = idle / 3;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    encode(&first, &mut buf);
    loop {
        if !buf.is_empty() {
            match tokio::time::timeout(idle, wr.write_all(&buf)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "peer stopped reading",
                    ));
                }
            }
            buf.clear();
        }
        let notified = outbox.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let pending = outbox.take();
        if pending.is_idle() {
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(heartbeat_every) => {
                    encode(&Frame::Heartbeat(flowgate_proto::Heartbeat), &mut buf);
                }
            }
            continue;
        }
        crate::encode_out::encode_pending(&pending, peer_max_frame, &mut buf);
        if pending.fatal.is_some() || pending.closed {
            if !buf.is_empty() {
                let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&buf)).await;
            }
            return Ok(());
        }
    }
}
