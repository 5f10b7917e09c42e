//! The accept loop and the [`Broker`] handle: binds, numbers connections, spawns a driver per
//! connection, and reports what it has seen.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flowgate_core::{GroupStats, StageSplit, TopicStats};
use flowgate_proto::ErrorCode;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::BrokerConfig;
use crate::connection;
use crate::dead_letters::DeadLetter;
use crate::governor::{self, Governor};
use crate::storage::Storage;
use crate::topics::Topics;
use crate::writer;

/// State every connection shares.
pub(crate) struct Shared {
    pub config: BrokerConfig,
    pub topics: Topics,
    /// The memory pool every topic leases from, with a budget.
    pub governor: Option<Arc<Governor>>,
    pub storage: Arc<dyn Storage>,
    pub(crate) open: AtomicU64,
    accepted: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Stopping gracefully: new connections are refused ([`Broker::drain`]).
    pub(crate) draining: AtomicBool,
    /// The drain's last step: connections are closing, and a batch read now is not accepted
    /// (its producer sends it again to the next broker), since its confirm could not be sent.
    pub(crate) closing: AtomicBool,
    /// Batches accepted into the store whose confirms wait for it to say durable.
    pub confirming: AtomicU64,
}

impl Shared {
    /// True once the drain closes connections: publishes are no longer accepted.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Counts an error sent to a peer, by code name.
    pub fn count_error(&self, code: ErrorCode) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(code.name()).or_default() += 1;
    }

    /// Closes the store and waits, off the runtime's threads, until its writers stopped.
    pub(crate) async fn close_storage(&self) {
        let storage = Arc::clone(&self.storage);
        if tokio::task::spawn_blocking(move || storage.close())
            .await
            .is_err()
        {
            tracing::error!("closing the store panicked");
        }
    }
}

/// What the broker has seen, for reports and tests.
#[derive(Debug, Clone, Default)]
pub struct BrokerStats {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Errors sent to peers, by code name.
    pub errors_sent: BTreeMap<&'static str, u64>,
    /// Every topic's counters, by name.
    pub topics: Vec<(String, TopicStats)>,
    /// Every topic's consumer groups, by topic name (the lobby, unnamed, before the first).
    pub groups: Vec<(String, Vec<GroupStats>)>,
    /// Every topic's time split (by `StageState::of_bounded_stage`, through
    /// `Topic::stage_state`), by name, since the broker started.
    pub stages: Vec<(String, StageSplit)>,
    /// Topics whose store cannot write now (a full disk), with why.
    pub storage_failures: BTreeMap<String, String>,
    /// The memory governor, when the broker has a budget.
    pub memory: Option<MemoryStats>,
    /// The latest dead letters of each topic that has any (events past its max age).
    pub dead_letters: BTreeMap<String, Vec<DeadLetter>>,
}

/// The memory governor's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStats {
    /// The budget.
    pub budget: u64,
    /// Bytes all topics may hold and promise now.
    pub pool: u64,
    /// Bytes they hold and have promised.
    pub held: u64,
    /// The resident set at the last sample.
    pub rss: u64,
    /// The highest resident set sampled.
    pub peak_rss: u64,
}

/// What the broker found in its store at start-up.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Topics with a log.
    pub topics: usize,
    /// Accepted, unacknowledged events put back for delivery: in memory...
    pub events: u64,
    /// ...and left on disk to load when there is room.
    pub spilled: u64,
    /// Records cut because they were torn or failed their checksum.
    pub corrupt_records: u64,
    /// Bytes cut with them.
    pub truncated_bytes: u64,
    /// How long reading the store took.
    pub took: std::time::Duration,
}

/// A running broker.
pub struct Broker {
    pub(crate) shared: Arc<Shared>,
    recovery: RecoveryReport,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    /// Tells the topics the time ([`tick_loop`]).
    ticker: tokio::task::JoinHandle<()>,
    /// Samples memory for the governor ([`govern_loop`]).
    governing: tokio::task::JoinHandle<()>,
}

impl Broker {
    /// Recovers what `storage` holds, then binds `addr` and starts serving. Port 0 picks a
    /// free port; see [`Broker::local_addr`].
    pub async fn bind(
        addr: SocketAddr,
        config: BrokerConfig,
        storage: Arc<dyn Storage>,
    ) -> io::Result<Broker> {
        let started = std::time::Instant::now();
        let reader = Arc::clone(&storage);
        let memory = config.clone();
        let recovered =
            tokio::task::spawn_blocking(move || reader.recover(&|t| memory.capacity_of(t)))
                .await
                .map_err(io::Error::other)??;
        let recovery = RecoveryReport {
            topics: recovered.len(),
            events: recovered.iter().map(|t| t.events.len() as u64).sum(),
            spilled: recovered.iter().map(|t| t.spilled.events).sum(),
            corrupt_records: recovered.iter().map(|t| t.corrupt_records).sum(),
            truncated_bytes: recovered.iter().map(|t| t.truncated_bytes).sum(),
            took: started.elapsed(),
        };
        let listener = listen(addr)?;
        let local_addr = listener.local_addr()?;
        let governor = config.memory_budget.map(Governor::new);
        let shared = Arc::new(Shared {
            topics: Topics::new(
                config.clone(),
                Arc::clone(&storage),
                recovered,
                governor.clone(),
            ),
            governor,
            config,
            storage,
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            confirming: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        // A full disk log empties when acks let segments go, on the log's own thread; it says
        // so, and the topic grants the room at once.
        let weak = Arc::downgrade(&shared);
        shared.storage.on_room_freed(Arc::new(move |topic: &str| {
            if let Some(topic) = weak.upgrade().and_then(|s| s.topics.find(topic)) {
                topic.apply(|_| ());
            }
        }));
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        let ticker = tokio::spawn(tick_loop(Arc::downgrade(&shared)));
        let governing = tokio::spawn(govern_loop(Arc::downgrade(&shared)));
        Ok(Broker {
            shared,
            recovery,
            local_addr,
            stop,
            accept,
            ticker,
            governing,
        })
    }

    /// What was recovered from the store at start-up.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that reads the counters from elsewhere (an HTTP endpoint) while the broker
    /// runs.
    pub fn reporter(&self) -> Reporter {
        Reporter {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A snapshot of its counters.
    pub fn stats(&self) -> BrokerStats {
        self.reporter().stats()
    }

    /// Stops accepting, closes every connection at once, and closes the store.
    pub async fn shutdown(self) {
        self.stop_serving().await.close_storage().await;
    }

    /// Stops accepting and closes every connection; the store stays open.
    pub(crate) async fn stop_serving(self) -> Arc<Shared> {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        self.ticker.abort();
        self.governing.abort();
        self.shared
    }
}

/// Connections the kernel may complete before the broker accepts them. When clients reconnect
/// all at once (after a broker restart, say), connections beyond the queue have their SYN
/// dropped and retry only after a second or more; tokio's default of 1,024 is below a few
/// thousand clients. Linux caps it at `net.core.somaxconn` (4,096 by default since 5.4).
const LISTEN_BACKLOG: u32 = 8192;

/// A listener on `addr` with room for a storm of connects.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted broker can bind its port while old
    // connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Reads a running broker's counters; cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    shared: Arc<Shared>,
}

impl Reporter {
    /// A snapshot of the broker's counters.
    pub fn stats(&self) -> BrokerStats {
        let all = self.shared.topics.stats();
        BrokerStats {
            connections_open: self.shared.open.load(Ordering::Relaxed),
            connections_accepted: self.shared.accepted.load(Ordering::Relaxed),
            errors_sent: self
                .shared
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            topics: all.iter().map(|(n, t, _, _)| (n.clone(), *t)).collect(),
            groups: all
                .iter()
                .map(|(n, _, g, _)| (n.clone(), g.clone()))
                .collect(),
            storage_failures: all
                .iter()
                .filter_map(|(n, _, _, _)| Some((n.clone(), self.shared.storage.failure(n)?)))
                .collect(),
            stages: all.into_iter().map(|(n, _, _, s)| (n, s)).collect(),
            dead_letters: self.shared.topics.dead_letters(),
            memory: self.shared.governor.as_ref().map(|g| {
                let (pool, held, rss, peak_rss) = g.figures();
                MemoryStats {
                    budget: g.budget(),
                    pool,
                    held,
                    rss,
                    peak_rss,
                }
            }),
        }
    }
}

/// Tells every topic the time, often enough that ack deadlines and the dedup table's TTL
/// pass on topics no input wakes.
async fn tick_loop(shared: std::sync::Weak<Shared>) {
    let every = match shared.upgrade() {
        Some(s) => s.topics.tick_every(),
        None => return,
    };
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match shared.upgrade() {
            Some(s) => s.topics.tick_all(),
            None => return,
        }
    }
}

/// Samples the resident set for the memory governor; when the pool grows, every topic grants
/// again at once.
async fn govern_loop(shared: std::sync::Weak<Shared>) {
    let mut interval = tokio::time::interval(governor::SAMPLE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(s) = shared.upgrade() else { return };
        let Some(g) = &s.governor else { return };
        if g.sample() {
            s.topics.tick_all();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    let mut next_conn = 1u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors or similar: back off briefly rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                if shared.draining.load(Ordering::SeqCst) {
                    // Stopping: a new connection would only be cut short.
                    drop(stream);
                    continue;
                }
                let conn = next_conn;
                next_conn += 1;
                if shared.open.load(Ordering::Relaxed) >= shared.config.max_connections as u64 {
                    // Told why, without a session or a topic: the open connections go on.
                    sessions.spawn(writer::refuse_busy(Arc::clone(&shared), stream));
                    continue;
                }
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                shared.open.fetch_add(1, Ordering::Relaxed);
                let shared = Arc::clone(&shared);
                sessions.spawn(async move {
                    connection::serve(Arc::clone(&shared), stream, conn).await;
                    shared.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    sessions.shutdown().await;
}
