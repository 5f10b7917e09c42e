//! The network [`Consumer`]: asks the broker for up to its prefetch (events and bytes),
//! receives deliveries only within that demand, and asks again as the application takes
//! them. The application acknowledges after it has committed; an unacknowledged delivery is
//! redelivered by the broker (attempt + 1) if this consumer nacks it or disconnects.
//!
//! After a reconnect, deliveries from the old session are gone from this consumer (the broker
//! redelivers them); acks for them are dropped here, since the broker would reject them.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flowgate_core::{Credit, Demand, Event, REFILL_AT_HALF};
use flowgate_proto::{Ack, DEFAULT_MAX_FRAME, Frame, Hello, Nack, Request, Settle, encode};
use tokio::io::AsyncWriteExt;

use crate::net::dial::{ClientTls, Dial};
use crate::net::error::ClientError;
use crate::net::session::{self, Session};

/// How to reach the broker and how much to take at once.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `host:port` of the broker.
    pub addr: String,
    /// The topic to consume.
    pub topic: String,
    /// The consumer group; consumers of a group share the topic's events by their demand.
    pub group: String,
    /// The most this consumer has requested but not yet taken, in events and bytes.
    pub prefetch: Credit,
    /// The largest frame this consumer accepts.
    pub max_frame: u32,
    /// The token for a broker that requires one.
    pub token: Option<String>,
    /// TLS to the broker; `None` for plain TCP.
    pub tls: Option<ClientTls>,
}

impl ConsumerConfig {
    /// Defaults: a prefetch of 1,000 events / 8 MiB.
    pub fn new(
        addr: impl Into<String>,
        topic: impl Into<String>,
        group: impl Into<String>,
    ) -> Self {
        ConsumerConfig {
            addr: addr.into(),
            topic: topic.into(),
            group: group.into(),
            prefetch: Credit::new(1_000, 8 << 20),
            max_frame: DEFAULT_MAX_FRAME,
            token: None,
            tls: None,
        }
    }
}

/// Settles one delivery: names the session it came in, the delivery and the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryTag {
    session: u64,
    settle: Settle,
}

impl DeliveryTag {
    /// 1 on first delivery, more on redeliveries.
    pub fn attempt(&self) -> u32 {
        self.settle.attempt
    }
}

/// One received event and the tag to settle it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event.
    pub event: Event,
    /// Pass to [`Consumer::ack`] or [`Consumer::nack`].
    pub tag: DeliveryTag,
}

/// What a consumer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerStats {
    /// Events handed to the application.
    pub received: u64,
    /// Of those, redeliveries (attempt > 1).
    pub redelivered: u64,
    /// Acks sent.
    pub acked: u64,
    /// Nacks sent.
    pub nacked: u64,
    /// Acks or nacks dropped because their session had ended.
    pub stale_settles: u64,
    /// Sessions opened.
    pub sessions: u64,
    /// Time `recv` spent waiting for events.
    pub waited: Duration,
}

struct State {
    session: u64,
    demand: Demand,
    inbox: VecDeque<Delivery>,
    acks: Vec<Settle>,
    nacks: Vec<Settle>,
    stats: ConsumerStats,
    /// When the current wait (for credit, or for deliveries) began.
    waiting_since: Option<Instant>,
    closing: bool,
    failed: Option<ClientError>,
    recv_waker: Option<Waker>,
}

type Shared = session::Shared<State>;

/// Receives a topic's events as a member of a consumer group.
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), flowgate_client::ClientError> {
/// use flowgate_client::{Consumer, ConsumerConfig};
/// let mut consumer = Consumer::connect(ConsumerConfig::new("127.0.0.1:7070", "orders", "db")).await?;
/// while let Some(batch) = consumer.recv().await? {
///     // ... commit the batch to the database, then:
///     consumer.ack(batch.iter().map(|d| d.tag));
/// }
/// # Ok(()) }
/// ```
pub struct Consumer {
    shared: Arc<Shared>,
    driver: Option<tokio::task::JoinHandle<()>>,
    max_batch: usize,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects, completes the handshake, requests the prefetch and starts the driver.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let hello = Hello::consumer(&config.topic, &config.group, config.max_frame)
            .with_token(config.token.clone().unwrap_or_default());
        let dial = Dial {
            addr: config.addr.clone(),
            tls: config.tls.clone(),
        };
        let demand = Demand::new(config.prefetch, REFILL_AT_HALF)
            .map_err(|e| ClientError::Protocol(format!("prefetch {}: {e}", config.prefetch)))?;
        let session = session::open(&dial, &hello).await?;
        let shared = Arc::new(Shared::new(State {
            session: 0,
            demand,
            inbox: VecDeque::new(),
            acks: Vec::new(),
            nacks: Vec::new(),
            stats: ConsumerStats::default(),
            closing: false,
            failed: None,
            recv_waker: None,
            waiting_since: None,
        }));
        start_session(&shared);
        let driver = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { session::drive(&*shared, &dial, &hello, session).await })
        };
        let max_batch = usize::try_from(config.prefetch.events).unwrap_or(usize::MAX);
        Ok(Consumer {
            shared,
            driver: Some(driver),
            max_batch,
        })
    }

    /// Waits for deliveries and returns those received, oldest first (at most the prefetch).
    /// `Ok(None)` after [`Consumer::close`].
    ///
    /// # Cancel safety
    /// Cancel safe: deliveries leave the inbox only in the call that returns them.
    pub async fn recv(&mut self) -> Result<Option<Vec<Delivery>>, ClientError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Acknowledges deliveries: they are committed and the broker may forget them.
    pub fn ack(&mut self, tags: impl IntoIterator<Item = DeliveryTag>) {
        self.settle(tags, true);
    }

    /// Refuses deliveries: the broker redelivers them, first in line.
    pub fn nack(&mut self, tags: impl IntoIterator<Item = DeliveryTag>) {
        self.settle(tags, false);
    }

    /// Sends pending acks, then closes the connection; unacked deliveries are redelivered to
    /// other consumers.
    pub async fn close(mut self) -> ConsumerStats {
        self.shared.lock().closing = true;
        self.shared.driver.notify_one();
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
        self.stats()
    }

    /// Changes how much this consumer asks for ahead of processing (for adaptive limits):
    /// a smaller prefetch takes effect as outstanding demand drains, a larger one at once.
    /// `recv` then returns at most `prefetch.events` per call. A zero dimension is ignored.
    pub fn set_prefetch(&mut self, prefetch: Credit) {
        let mut state = self.shared.lock();
        if state.demand.set_target(prefetch).is_ok() {
            self.max_batch = usize::try_from(prefetch.events).unwrap_or(usize::MAX);
        }
        drop(state);
        self.shared.driver.notify_one();
    }

    /// What this consumer has done so far (a wait in progress included).
    pub fn stats(&self) -> ConsumerStats {
        self.monitor().stats()
    }

    /// A handle that reads this consumer's stats from elsewhere (a metrics endpoint) while
    /// the consumer is busy in `recv`.
    pub fn monitor(&self) -> ConsumerMonitor {
        ConsumerMonitor {
            shared: Arc::clone(&self.shared),
        }
    }

    fn settle(&mut self, tags: impl IntoIterator<Item = DeliveryTag>, ack: bool) {
        let mut state = self.shared.lock();
        for tag in tags {
            if tag.session != state.session {
                state.stats.stale_settles += 1;
            } else if ack {
                state.acks.push(tag.settle);
                state.stats.acked += 1;
            } else {
                state.nacks.push(tag.settle);
                state.stats.nacked += 1;
            }
        }
        drop(state);
        self.shared.driver.notify_one();
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Vec<Delivery>>, ClientError>> {
        let mut state = self.shared.lock();
        if !state.inbox.is_empty() {
            let n = state.inbox.len().min(self.max_batch);
            let batch: Vec<Delivery> = state.inbox.drain(..n).collect();
            let bytes: u64 = batch.iter().map(|d| d.event.size_bytes()).sum();
            // Cannot fail: the broker delivers only within demand (checked on receipt).
            let _ = state.demand.on_delivered(batch.len() as u64, bytes);
            state.stats.received += batch.len() as u64;
            state.stats.redelivered += batch.iter().filter(|d| d.tag.attempt() > 1).count() as u64;
            if let Some(since) = state.waiting_since.take() {
                state.stats.waited += since.elapsed();
            }
            drop(state);
            // Taking events frees demand: the driver may ask for more.
            self.shared.driver.notify_one();
            return Poll::Ready(Ok(Some(batch)));
        }
        if let Some(e) = &state.failed {
            return Poll::Ready(Err(e.duplicate()));
        }
        if state.closing {
            return Poll::Ready(Ok(None));
        }
        state.waiting_since.get_or_insert_with(Instant::now);
        state.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Reads a consumer's stats; cheap to clone, keeps nothing alive but the counters.
#[derive(Clone)]
pub struct ConsumerMonitor {
    shared: Arc<Shared>,
}

impl ConsumerMonitor {
    /// What the consumer has done so far, a wait for deliveries in progress included.
    pub fn stats(&self) -> ConsumerStats {
        let state = self.shared.lock();
        let mut stats = state.stats;
        stats.waited = session::waited_so_far(stats.waited, state.waiting_since);
        stats
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

impl futures_core::Stream for Consumer {
    type Item = Result<Vec<Delivery>, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.poll_recv(cx) {
            Poll::Ready(Ok(Some(batch))) => Poll::Ready(Some(Ok(batch))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A new session: old deliveries and settles are void (the broker redelivers what was not
/// acked), and demand starts from nothing.
fn start_session(shared: &Shared) {
    let mut state = shared.lock();
    state.session += 1;
    state.stats.sessions += 1;
    let dropped = state.acks.len() + state.nacks.len();
    state.stats.stale_settles += dropped as u64;
    state.acks.clear();
    state.nacks.clear();
    state.inbox.clear();
    let target = state.demand.target();
    if let Ok(fresh) = Demand::new(target, REFILL_AT_HALF) {
        state.demand = fresh;
    }
}

impl session::Driven for Shared {
    fn on_session(&self, _s: &Session) {
        start_session(self);
    }

    async fn run(&self, s: Session) -> Result<(), ClientError> {
        run_session(self, s).await
    }

    fn closing(&self) -> bool {
        self.lock().closing
    }

    fn fail(&self, e: ClientError) {
        let mut state = self.lock();
        state.failed = Some(e);
        if let Some(w) = state.recv_waker.take() {
            w.wake();
        }
    }
}

async fn run_session(shared: &Shared, mut s: Session) -> Result<(), ClientError> {
    let heartbeat_every = session::heartbeat_every(s.welcome.idle_timeout_ms);
    let broker_silence = Duration::from_millis(u64::from(s.welcome.idle_timeout_ms));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut last_write = Instant::now();
    loop {
        let notified = shared.driver.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let closing = {
            let mut state = shared.lock();
            if !state.acks.is_empty() {
                encode(
                    &Frame::Ack(Ack {
                        items: std::mem::take(&mut state.acks),
                    }),
                    &mut buf,
                );
            }
            if !state.nacks.is_empty() {
                encode(
                    &Frame::Nack(Nack {
                        items: std::mem::take(&mut state.nacks),
                    }),
                    &mut buf,
                );
            }
            if !state.closing
                && let Some(credit) = state.demand.poll_request()
            {
                encode(&Frame::Request(Request { credit }), &mut buf);
            }
            state.closing
        };
        if !buf.is_empty() {
            s.writer.write_all(&buf).await.map_err(ClientError::Io)?;
            buf.clear();
            last_write = Instant::now();
        }
        if closing {
            let _ = s.writer.shutdown().await;
            let mut state = shared.lock();
            if let Some(w) = state.recv_waker.take() {
                w.wake();
            }
            return Ok(());
        }
        let heartbeat_at = last_write + heartbeat_every;
        let waited = session::wait(
            &mut s.reader,
            notified.as_mut(),
            heartbeat_at,
            broker_silence,
            &mut buf,
        );
        if let Some(frame) = waited.await? {
            handle_frame(shared, frame)?;
        }
    }
}

fn handle_frame(shared: &Shared, frame: Frame) -> Result<(), ClientError> {
    let mut state = shared.lock();
    match frame {
        Frame::Deliver(d) => {
            let session = state.session;
            // Outstanding demand covers the inbox too, so the inbox never exceeds the prefetch.
            let bytes: u64 = d.deliveries.iter().map(|x| x.event.credit_bytes()).sum();
            let outstanding = state.demand.outstanding();
            let in_inbox = state.inbox.len() as u64;
            let inbox_bytes: u64 = state.inbox.iter().map(|x| x.event.size_bytes()).sum();
            if in_inbox + d.deliveries.len() as u64 > outstanding.events
                || inbox_bytes + bytes > outstanding.bytes
            {
                return Err(ClientError::Protocol(format!(
                    "broker delivered {} events / {bytes} bytes beyond the outstanding demand of {outstanding}",
                    d.deliveries.len()
                )));
            }
            for x in d.deliveries {
                state.inbox.push_back(Delivery {
                    event: x.event.to_event(),
                    tag: DeliveryTag {
                        session,
                        settle: Settle {
                            delivery_id: x.delivery_id,
                            attempt: x.attempt,
                        },
                    },
                });
            }
            if let Some(w) = state.recv_waker.take() {
                w.wake();
            }
        }
        Frame::Heartbeat(_) => {}
        Frame::Error(e) if !e.code.is_fatal() => {}
        Frame::Error(e) => {
            return Err(ClientError::Refused {
                code: e.code,
                message: e.message,
            });
        }
        other => {
            return Err(ClientError::Protocol(format!(
                "{} is not valid for a consumer",
                other.frame_type().name()
            )));
        }
    }
    Ok(())
}
