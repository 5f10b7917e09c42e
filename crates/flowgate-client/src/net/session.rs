//! What producers and consumers share about talking to a broker: connecting with a deadline,
//! the `HELLO`/`WELCOME` exchange, reconnect backoff, and which refusals are permanent.

use std::time::Duration;

use bytes::BytesMut;
use flowgate_proto::io::{FrameReader, ReadError};
use flowgate_proto::{ErrorCode, Frame, Hello, Welcome, encode};
use tokio::io::AsyncWriteExt;

use crate::net::dial::{Dial, ReadHalf, WriteHalf};
use crate::net::error::ClientError;

/// How long a connect plus handshake may take before it counts as failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reconnect backoff: starts here, doubles per failure...
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// ...up to here.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A connected, welcomed session.
pub(crate) struct Session {
    pub reader: FrameReader<ReadHalf>,
    pub writer: WriteHalf,
    pub welcome: Welcome,
}

/// Connects and completes the handshake.
pub(crate) async fn open(dial: &Dial, hello: &Hello) -> Result<Session, ClientError> {
    let attempt = async {
        let (rd, mut writer) = dial.connect().await?;
        let mut buf = BytesMut::new();
        encode(&Frame::Hello(hello.clone()), &mut buf);
        writer.write_all(&buf).await.map_err(ClientError::Io)?;
        let mut reader = FrameReader::new(rd, hello.max_frame);
        match reader.next().await {
            Ok(Frame::Welcome(welcome)) => Ok(Session {
                reader,
                writer,
                welcome,
            }),
            Ok(Frame::Error(e)) => Err(ClientError::Refused {
                code: e.code,
                message: e.message,
            }),
            Ok(other) => Err(ClientError::Protocol(format!(
                "expected WELCOME, got {}",
                other.frame_type().name()
            ))),
            Err(e) => Err(read_error(e)),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Protocol(format!(
                "no WELCOME within {CONNECT_TIMEOUT:?}"
            )))
        })
}

/// Waits for whichever comes first in a session's loop: a frame from the broker (an error if
/// it stays silent for `silence`), a wake-up through `notified`, or the heartbeat time, which
/// queues a `HEARTBEAT` in `buf`. Returns the frame, if that is what came.
pub(crate) async fn wait(
    reader: &mut FrameReader<ReadHalf>,
    notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    heartbeat_at: std::time::Instant,
    silence: Duration,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, ClientError> {
    tokio::select! {
        frame = tokio::time::timeout(silence, reader.next()) => {
            let frame = frame
                .map_err(|_| ClientError::Protocol(format!("broker silent for {silence:?}")))?
                .map_err(read_error)?;
            Ok(Some(frame))
        }
        _ = notified => Ok(None),
        _ = tokio::time::sleep_until(heartbeat_at.into()) => {
            encode(&Frame::Heartbeat(flowgate_proto::Heartbeat), buf);
            Ok(None)
        }
    }
}

/// A read failure as a client error.
pub(crate) fn read_error(e: ReadError) -> ClientError {
    match e {
        ReadError::Eof => ClientError::Disconnected,
        ReadError::Io(e) => ClientError::Io(e),
        ReadError::Proto(e) => ClientError::Protocol(e.to_string()),
    }
}

/// True for refusals that a reconnect cannot fix (bad names, wrong version, group conflict):
/// the client stops and reports them instead of retrying forever.
fn is_permanent(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Refused {
            code: ErrorCode::InvalidName
                | ErrorCode::UnsupportedVersion
                | ErrorCode::GroupConflict
                | ErrorCode::MalformedFrame
                | ErrorCode::Unauthorized
                | ErrorCode::EventTooLarge
                | ErrorCode::FrameTooLarge,
            ..
        } | ClientError::Tls(_)
    )
}

/// The next backoff after `current`.
fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(BACKOFF_MAX)
}

/// How often to send a heartbeat for a broker whose idle deadline is `idle_ms`.
pub(crate) fn heartbeat_every(idle_ms: u32) -> Duration {
    Duration::from_millis(u64::from(idle_ms.max(300)) / 3)
}

/// The current time in microseconds since the Unix epoch: the clock event creation stamps
/// use, and so the one to measure creation-to-commit latency against.
pub fn unix_now_us() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

/// A client's state shared between its handle and its driver task, and the driver's wake-up.
pub(crate) struct Shared<S> {
    state: std::sync::Mutex<S>,
    /// Wakes the driver: something to write, or closing.
    pub driver: tokio::sync::Notify,
}

impl<S> Shared<S> {
    pub(crate) fn new(state: S) -> Self {
        Shared {
            state: std::sync::Mutex::new(state),
            driver: tokio::sync::Notify::new(),
        }
    }

    /// The state. A panic elsewhere while holding the lock leaves nothing half-done that
    /// matters more than the panic, so a poisoned lock is recovered, not propagated.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a client's driver does with its sessions; [`drive`] supplies the reconnect loop.
pub(crate) trait Driven {
    /// A new session was welcomed: reset per-session state.
    fn on_session(&self, session: &Session);
    /// Serves one session until it breaks (`Err`) or the client closes (`Ok`).
    async fn run(&self, session: Session) -> Result<(), ClientError>;
    /// The client is closing; stop reconnecting.
    fn closing(&self) -> bool;
    /// A failure the client cannot recover from: report it to the application.
    fn fail(&self, e: ClientError);
}

/// Serves sessions one after another until the client closes or is refused for good,
/// reconnecting with exponential backoff after a lost connection.
pub(crate) async fn drive<D: Driven>(client: &D, dial: &Dial, hello: &Hello, first: Session) {
    let mut next = Some(first);
    let mut backoff = BACKOFF_MIN;
    loop {
        let current = match next.take() {
            Some(s) => s,
            None => match open(dial, hello).await {
                Ok(s) => {
                    client.on_session(&s);
                    backoff = BACKOFF_MIN;
                    s
                }
                Err(e) if is_permanent(&e) => return client.fail(e),
                Err(_) if client.closing() => return,
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                    continue;
                }
            },
        };
        match client.run(current).await {
            Ok(()) => return,
            Err(e) if is_permanent(&e) => return client.fail(e),
            Err(_) if client.closing() => return,
            Err(_) => {}
        }
    }
}

/// `waited` plus the wait in progress since `since`, if any: what a monitor reports while the
/// handle it watches is still waiting.
pub(crate) fn waited_so_far(waited: Duration, since: Option<std::time::Instant>) -> Duration {
    since.map_or(waited, |s| waited + s.elapsed())
}
