//! The accept loop and the [`Broker`] handle: binds, numbers connections, spawns a driver per
//! connection, and reports what it has seen.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flowgate_core::{StageSplit, TopicStats};
use flowgate_proto::ErrorCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::BrokerConfig;
use crate::connection;
use crate::storage::Storage;
use crate::topics::Topics;

/// State every connection shares.
pub(crate) struct Shared {
    pub config: BrokerConfig,
    pub topics: Topics,
    pub storage: Arc<dyn Storage>,
    open: AtomicU64,
    accepted: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Shared {
    /// Counts an error sent to a peer, by code name.
    pub fn count_error(&self, code: ErrorCode) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(code.name()).or_default() += 1;
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
    /// Every topic's time split (idle = empty, backpressured = holding events no consumer
    /// asked for), by name, since the broker started.
    pub stages: Vec<(String, StageSplit)>,
}

/// A running broker.
pub struct Broker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Broker {
    /// Binds `addr` and starts serving. Port 0 picks a free port; see [`Broker::local_addr`].
    pub async fn bind(
        addr: SocketAddr,
        config: BrokerConfig,
        storage: Arc<dyn Storage>,
    ) -> io::Result<Broker> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            topics: Topics::new(config.clone()),
            config,
            storage,
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        });
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(Broker {
            shared,
            local_addr,
            stop,
            accept,
        })
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

    /// Stops accepting and closes every connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
    }
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
            topics: all.iter().map(|(n, t, _)| (n.clone(), *t)).collect(),
            stages: all.into_iter().map(|(n, _, s)| (n, s)).collect(),
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
                let conn = next_conn;
                next_conn += 1;
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
