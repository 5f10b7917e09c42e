//! The network [`Consumer`]: asks the broker for up to its prefetch (events and bytes),
//! receives deliveries only within that demand, and asks again as the application takes
//! them. The application acknowledges after it has committed; an unacknowledged delivery is
//! redelivered by the broker (attempt + 1) if this consumer nacks it or disconnects.
//!
//! The protocol is `flowgate_proto::ConsumerSession`'s (after a reconnect, deliveries and
//! settles of the old connection are void there); a background driver (`driver.rs`) carries
//! it over the connection. This file is the application's handle.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use flowgate_core::Credit;
use flowgate_proto::{ConsumerSession, Hello};

pub use flowgate_proto::session::{ConsumerStats, Delivery, DeliveryTag};

use crate::net::clock::now;
use crate::net::dial::{ClientTls, Dial};
use crate::net::driver;
use crate::net::error::ClientError;
use crate::net::shared;

/// The largest frame a consumer accepts unless told otherwise: 64 MiB. It only guards against
/// absurd length claims (the prefetch bounds what is in flight), so it is well above any
/// usual `--max-frame` of a broker.
pub const CONSUMER_MAX_FRAME: u32 = 64 << 20;

/// How to reach the broker and how much to take at once.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The broker: `host:port` or `flowgate://host:port`.
    pub addr: String,
    /// The topic to consume.
    pub topic: String,
    /// The consumer group; consumers of a group share the topic's events by their demand.
    pub group: String,
    /// The most this consumer has requested but not yet taken, in events and bytes.
    pub prefetch: Credit,
    /// The largest frame this consumer accepts. The broker refuses a consumer that could not
    /// read the largest event of its topic delivered alone.
    pub max_frame: u32,
    /// `None` (the default): the group blocks, its lag pacing the topic's producers.
    /// `Some(n)`: the group is best effort, and its oldest unread events are skipped (counted
    /// by the broker) when more than `n` wait for it. Every consumer of a group must agree.
    pub max_lag: Option<u64>,
    /// The token for a broker that requires one.
    pub token: Option<String>,
    /// TLS to the broker; `None` for plain TCP.
    pub tls: Option<ClientTls>,
}

impl ConsumerConfig {
    /// Defaults: a prefetch of 1,000 events / 8 MiB, frames of up to 64 MiB (enough for any
    /// broker's `--max-frame` up to that).
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
            max_frame: CONSUMER_MAX_FRAME,
            max_lag: None,
            token: None,
            tls: None,
        }
    }
}

type Shared = shared::Shared<ConsumerSession>;

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
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects, completes the handshake, requests the prefetch and starts the driver.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        if config.max_lag == Some(0) {
            return Err(ClientError::Protocol(
                "a max lag of 0 would skip every event; give at least 1, or none to block".into(),
            ));
        }
        let hello = Hello::consumer(&config.topic, &config.group, config.max_frame)
            .with_max_lag(config.max_lag)
            .with_token(config.token.clone().unwrap_or_default());
        let dial = Dial::new(&config.addr, config.tls.clone())?;
        let session = ConsumerSession::new(hello, config.prefetch, now())
            .map_err(|e| ClientError::Protocol(format!("prefetch {}: {e}", config.prefetch)))?;
        let shared = Arc::new(Shared::new(session));
        let conn = driver::open(&shared, &dial, config.max_frame).await?;
        let driver = {
            let shared = Arc::clone(&shared);
            let max_frame = config.max_frame;
            tokio::spawn(async move { driver::drive(&*shared, &dial, max_frame, conn).await })
        };
        Ok(Consumer {
            shared,
            driver: Some(driver),
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
        self.shared.lock().session.ack(tags);
        self.shared.driver.notify_one();
    }

    /// Refuses deliveries: the broker redelivers them, first in line.
    pub fn nack(&mut self, tags: impl IntoIterator<Item = DeliveryTag>) {
        self.shared.lock().session.nack(tags);
        self.shared.driver.notify_one();
    }

    /// Says these deliveries are still being worked on (a long commit): the broker restarts
    /// their ack deadline instead of taking them back and giving them to another consumer.
    pub fn progress(&mut self, tags: impl IntoIterator<Item = DeliveryTag>) {
        self.shared.lock().session.progress(tags);
        self.shared.driver.notify_one();
    }

    /// Sends pending acks, then closes the connection; unacked deliveries are redelivered to
    /// other consumers.
    pub async fn close(mut self) -> ConsumerStats {
        self.shared.lock().session.close();
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
        let _ = self.shared.lock().session.set_prefetch(prefetch);
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

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Vec<Delivery>>, ClientError>> {
        let mut inner = self.shared.lock();
        if inner.session.has_deliveries() {
            let batch = inner.session.take();
            inner.stop_waiting();
            drop(inner);
            // Taking events frees demand: the driver may ask for more.
            self.shared.driver.notify_one();
            return Poll::Ready(Ok(Some(batch)));
        }
        if let Some(e) = &inner.failed {
            return Poll::Ready(Err(e.duplicate()));
        }
        if inner.session.is_closing() || inner.stopped {
            return Poll::Ready(Ok(None));
        }
        inner.park(cx.waker());
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
        let inner = self.shared.lock();
        ConsumerStats {
            waited: inner.waited(),
            ..inner.session.stats()
        }
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
