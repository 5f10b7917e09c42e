//! The IO around a client session: dial, feed the session what the socket reads and the
//! deadlines it asks for, write what it says to send, and after a lost connection dial again
//! when it says to. Every rule is the session's (`flowgate_proto::session`); this file only
//! moves frames and sleeps.

use bytes::BytesMut;
use flowgate_proto::io::{FrameReader, ReadError};
use flowgate_proto::session::{CONNECT_TIMEOUT, ClientSession, refusal_is_permanent};
use flowgate_proto::{SessionError, encode};
use tokio::io::AsyncWriteExt;

use crate::net::clock::{now, sleep_until};
use crate::net::dial::{Dial, ReadHalf, WriteHalf};
use crate::net::error::ClientError;
use crate::net::shared::Shared;

/// One open connection.
pub(crate) struct Conn {
    reader: FrameReader<ReadHalf>,
    writer: WriteHalf,
}

/// Dials and completes the handshake, all within [`CONNECT_TIMEOUT`].
pub(crate) async fn open<S: ClientSession>(
    shared: &Shared<S>,
    dial: &Dial,
    max_frame: u32,
) -> Result<Conn, ClientError> {
    let started = now();
    shared.lock().session.connect(started);
    let dialed = tokio::time::timeout(CONNECT_TIMEOUT, dial.connect()).await;
    let (rd, writer) = dialed.map_err(|_| SessionError::HandshakeTimeout(CONNECT_TIMEOUT))??;
    let mut conn = Conn {
        reader: FrameReader::new(rd, max_frame),
        writer,
    };
    serve(shared, &mut conn, Until::Connected).await?;
    Ok(conn)
}

/// Serves connections one after another until the session is finished or refused for good,
/// dialing again when the session says to.
pub(crate) async fn drive<S: ClientSession>(
    shared: &Shared<S>,
    dial: &Dial,
    max_frame: u32,
    first: Conn,
) {
    let mut next = Some(first);
    loop {
        let result = match next.take() {
            Some(mut conn) => serve(shared, &mut conn, Until::Finished).await,
            None => match open(shared, dial, max_frame).await {
                Ok(conn) => {
                    next = Some(conn);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        let retry_at = match result {
            Ok(()) => None,
            Err(e) if is_permanent(&e) => {
                tracing::error!(addr = %dial.addr, "{e}; not reconnecting");
                shared.lock().failed = Some(e);
                None
            }
            Err(e) => {
                let at = shared.lock().session.connection_lost(now());
                if let Some(at) = at {
                    let wait = at.saturating_duration_since(now());
                    tracing::info!(addr = %dial.addr, "{e}; reconnecting in {wait:?}");
                }
                at
            }
        };
        match retry_at {
            Some(at) => sleep_until(at).await,
            None => break,
        }
    }
    let mut inner = shared.lock();
    inner.stopped = true;
    inner.wake_all();
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The handshake is done.
    Connected,
    /// The session is finished (`Ok`) or the connection broke (`Err`).
    Finished,
}

/// Runs one connection: write what the session says, feed it frames and deadlines.
async fn serve<S: ClientSession>(
    shared: &Shared<S>,
    conn: &mut Conn,
    until: Until,
) -> Result<(), ClientError> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let notified = shared.driver.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (connected, finished, deadline) = {
            let mut inner = shared.lock();
            let now = now();
            while let Some(frame) = inner.session.poll_transmit(now) {
                encode(&frame, &mut buf);
            }
            let s = &inner.session;
            (s.is_connected(), s.is_finished(), s.poll_timeout())
        };
        if !buf.is_empty() {
            conn.writer.write_all(&buf).await.map_err(ClientError::Io)?;
            buf.clear();
        }
        if until == Until::Connected && connected {
            return Ok(());
        }
        if finished {
            let _ = conn.writer.shutdown().await;
            return Ok(());
        }
        let deadline = deadline.unwrap_or_else(|| now() + CONNECT_TIMEOUT);
        tokio::select! {
            frame = conn.reader.next() => {
                let frame = frame.map_err(read_error)?;
                let mut inner = shared.lock();
                inner.session.handle_frame(now(), frame)?;
                let mut happened = false;
                while inner.session.poll_event().is_some() {
                    happened = true;
                }
                if happened {
                    inner.wake_all();
                }
            }
            _ = notified => {}
            _ = sleep_until(deadline) => shared.lock().session.handle_timeout(now())?,
        }
    }
}

/// A read failure as a client error.
fn read_error(e: ReadError) -> ClientError {
    match e {
        ReadError::Eof => ClientError::Disconnected,
        ReadError::Io(e) => ClientError::Io(e),
        ReadError::Proto(e) => ClientError::Protocol(e.to_string()),
    }
}

/// True for failures a reconnect cannot fix: the session's permanent refusals, and TLS.
fn is_permanent(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { code, .. } => refusal_is_permanent(*code),
        ClientError::Tls(_) => true,
        _ => false,
    }
}
