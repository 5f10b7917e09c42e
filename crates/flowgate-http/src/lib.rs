//! flowgate's HTTP API, for producers and consumers in any language, with the same promise as
//! the native protocol: `200` means the broker holds every event of the request as its storage
//! promises; a refusal (`503` when there is no room within the admit wait, `429` for a client
//! over its fair share while others wait, both with a `Retry-After` from the measured drain
//! rate) means nothing of the request was kept; the pace is the slowest consumer's.
//!
//! The gateway is a client of the broker (through `flowgate-client`'s seam), so the same
//! router serves in-process beside a broker (`flowgate broker --http-addr`) and in front of any
//! backend (`flowgate gateway`).
//!
//! | file | holds |
//! |---|---|
//! | `routes.rs` | the endpoints; checks of names, content types, sizes and queries |
//! | `body.rs` | NDJSON and JSON-array bodies to events, naming the first bad line |
//! | `ingest.rs` | a topic's task: lets requests in by `flowgate_core::Admission`, waits for credit covering a whole request, sends, answers on confirm, `Retry-After` from `flowgate_core::DrainMeter` |
//! | `fetch.rs` | a group's task: one consumer, fetches, acks and nacks by HTTP tag |
//! | `idempotency.rs` | `Idempotency-Key` answers within the dedupe window |
//! | `status.rs` | answers and statuses; client errors mapped to 401, 403, 404, 409, 503 |
//! | `openapi.rs` | the OpenAPI 3 document |

mod body;
mod fetch;
mod idempotency;
mod ingest;
mod openapi;
mod routes;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flowgate_client::ClientTls;
use flowgate_core::Credit;

pub use ingest::IngestFigures;

/// A topic's broker-side figures as JSON, for `GET /v1/topics/{topic}`; `None` if unknown.
pub type TopicStats = Arc<dyn Fn(&str) -> Option<serde_json::Value> + Send + Sync>;

/// How the gateway reaches its backend and what it lets in.
#[derive(Clone)]
pub struct GatewayConfig {
    /// The backend's address (any scheme `flowgate-client` knows).
    pub broker: String,
    /// TLS to the backend.
    pub tls: Option<ClientTls>,
    /// The token for requests that carry no `Authorization` (the gateway is then the trust
    /// boundary); `None`: such requests reach the backend with no token.
    pub default_token: Option<String>,
    /// How long a publish may wait for room before it is refused with 503.
    pub admit_wait: Duration,
    /// The most events waiting for room on one topic.
    pub max_queued: u64,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// How long an `Idempotency-Key` is remembered.
    pub dedupe_window: Duration,
    /// What each group's consumer asks for ahead of the fetches.
    pub prefetch: Credit,
    /// The broker's ack wait, so a fetched delivery not acked within it is given back (and the
    /// group's consumer shown alive); `None`: deliveries wait for ever.
    pub ack_wait: Option<Duration>,
    /// The most topics the gateway publishes to.
    pub max_topics: usize,
    /// The most group consumers the gateway holds.
    pub max_groups: usize,
    /// The broker's own figures of a topic, when the gateway runs beside it.
    pub topic_stats: Option<TopicStats>,
}

impl GatewayConfig {
    /// Defaults for a gateway in front of `broker`: a 1 s admit wait, 10,000 events waiting
    /// per topic, 8 MiB bodies, a 2 min dedupe window, a prefetch of 1,000 events / 8 MiB, the broker's default ack
    /// wait of 30 s.
    pub fn new(broker: impl Into<String>) -> Self {
        GatewayConfig {
            broker: broker.into(),
            tls: None,
            default_token: None,
            admit_wait: Duration::from_secs(1),
            max_queued: 10_000,
            max_body: 8 << 20,
            dedupe_window: Duration::from_secs(120),
            prefetch: Credit::new(1_000, 8 << 20),
            ack_wait: Some(Duration::from_secs(30)),
            max_topics: 1_000,
            max_groups: 256,
            topic_stats: None,
        }
    }

    fn ingest(&self) -> ingest::IngestConfig {
        ingest::IngestConfig {
            broker: self.broker.clone(),
            tls: self.tls.clone(),
            admit_wait: self.admit_wait,
            max_queued: self.max_queued,
        }
    }

    fn group(&self) -> fetch::GroupConfig {
        fetch::GroupConfig {
            broker: self.broker.clone(),
            tls: self.tls.clone(),
            prefetch: self.prefetch,
            ack_wait: self.ack_wait,
        }
    }
}

/// Binds `addr` and serves the API on it in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, config: GatewayConfig) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = routes::router(config).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("HTTP API on {bound} stopped: {e}");
        }
    });
    Ok(bound)
}
