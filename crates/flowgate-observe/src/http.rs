//! The HTTP face of a running broker, producer or consumer (`--metrics-addr`): `/stats`, the
//! role's [`Snapshot`] as JSON, which `flowgate top` reads; `/metrics`, the same figures in
//! Prometheus text format through the metrics table; and, for the broker, its dashboard at `/`.
//!
//! Figures are read at request time from the process's own counters; nothing is sampled on a
//! timer, so a scrape never misses a burst between samples.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::snapshot::Snapshot;
use crate::table;

/// Produces the current snapshot.
pub type Source = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// Renders an HTML page (the broker's live dashboard); the flag says whether the page should
/// refresh itself (`/?refresh=0` turns that off, for screenshots and tests).
pub type Page = Arc<dyn Fn(bool) -> String + Send + Sync>;

/// Why the endpoints could not be served or read.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The metrics recorder could not be installed (one per process).
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
    /// The address could not be bound.
    #[error("cannot listen on --metrics-addr {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server could not be reached or did not answer.
    #[error("{addr}: {why}")]
    Fetch {
        /// The server.
        addr: String,
        /// What went wrong.
        why: String,
    },
}

/// Serves `/stats`, `/metrics` and, if given, a page at `/` on `addr` in the background;
/// returns the bound address. Call from within a tokio runtime.
pub async fn serve(
    addr: SocketAddr,
    snapshot: Source,
    page: Option<Page>,
) -> Result<SocketAddr, ObserveError> {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| ObserveError::Recorder(e.to_string()))?;
    table::describe();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ObserveError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ObserveError::Bind { addr, source })?;
    let stats = Arc::clone(&snapshot);
    let app = Router::new()
        .route(
            "/stats",
            get(move || {
                let stats = Arc::clone(&stats);
                async move { axum::Json(stats()) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let (snapshot, prometheus) = (Arc::clone(&snapshot), prometheus.clone());
                async move {
                    table::publish(&snapshot());
                    prometheus.render()
                }
            }),
        );
    let app = match page {
        Some(page) => app.route(
            "/",
            get(
                move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                    let page = Arc::clone(&page);
                    let refresh = query.as_deref() != Some("refresh=0");
                    async move { axum::response::Html(page(refresh)) }
                },
            ),
        ),
        None => app,
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(bound)
}

/// Fetches and parses `http://addr/stats`. A plain HTTP/1.0 GET over a socket: `flowgate top`
/// needs nothing more, and an HTTP client crate would add a dependency tree for one request.
pub fn fetch(addr: &str) -> Result<Snapshot, ObserveError> {
    let fail = |why: String| ObserveError::Fetch {
        addr: addr.to_string(),
        why,
    };
    let mut stream = TcpStream::connect(addr).map_err(|e| fail(format!("cannot connect: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| fail(e.to_string()))?;
    write!(
        stream,
        "GET /stats HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )
    .map_err(|e| fail(format!("cannot send the request: {e}")))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| fail(format!("no answer: {e}")))?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        return Err(fail("sent no HTTP response".into()));
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or("");
        return Err(fail(format!("/stats answered {status}")));
    }
    serde_json::from_str(body)
        .map_err(|e| fail(format!("/stats is not a flowgate stats document: {e}")))
}
