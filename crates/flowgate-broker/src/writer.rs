//! The writing side of a connection: the one `ERROR` for a peer refused before it has a
//! session (or past `--max-connections`), and the loop that drains a session's outbox to its
//! socket (with heartbeats when idle, and a deadline on a peer that stops reading).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use flowgate_proto::{ErrorCode, Frame, encode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::outbox::Outbox;
use crate::server::Shared;
use crate::transport::{self, Accepted, WriteHalf};

/// Sends one `ERROR` and closes, for peers refused before a session exists.
pub(crate) async fn refuse(shared: &Shared, mut wr: WriteHalf, code: ErrorCode, message: String) {
    shared.count_error(code);
    tracing::info!(code = code.name(), "refused a connection: {message}");
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

/// Refuses a connection past `--max-connections` with `too-many-connections` (after the TLS
/// handshake, if the broker has TLS, so the client can read it).
pub(crate) async fn refuse_busy(shared: Arc<Shared>, stream: TcpStream) {
    let config = &shared.config;
    let deadline = Instant::now() + config.handshake_timeout;
    if let Accepted::Ready(_, wr) | Accepted::Refused(wr, ..) =
        transport::accept(stream, config.tls.as_ref(), deadline).await
    {
        let why = format!(
            "the broker has {} connections open, its limit (--max-connections); try again later",
            config.max_connections
        );
        refuse(&shared, wr, ErrorCode::TooManyConnections, why).await;
    }
}

/// The connection's writer task, aborted if the connection's task is (a broker shutting down
/// aborts them all): otherwise it would hold the socket open, and the peer would never learn
/// that the broker has gone.
pub(crate) struct Writer(pub tokio::task::JoinHandle<()>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes the outbox to the socket until it is closed. A peer that stops reading cannot
/// stall the broker: a write that makes no progress for the idle deadline ends the session.
pub(crate) async fn write_loop(
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
