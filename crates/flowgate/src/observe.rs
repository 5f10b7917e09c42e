//! The HTTP face of a running broker, producer or consumer (`--metrics-addr`): `/stats`, a
//! JSON snapshot that `flowgate top` reads, and `/metrics`, the same figures in Prometheus
//! text format (every metric named and described in `docs/metrics.md`).
//!
//! Figures are read at request time from the command's own counters; nothing is sampled on a
//! timer, so a scrape never misses a burst between samples.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::get;
use flowgate_core::StageSplit;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};

/// Produces the current snapshot.
pub(crate) type Snapshot = Arc<dyn Fn() -> Value + Send + Sync>;

/// Copies a snapshot into the process's metrics (counters set absolutely, gauges set).
pub(crate) type Publish = Arc<dyn Fn(&Value) + Send + Sync>;

/// Renders an HTML page (the broker's live dashboard); the flag says whether the page should
/// refresh itself (`/?refresh=0` turns that off, for screenshots and tests).
pub(crate) type Page = Arc<dyn Fn(bool) -> String + Send + Sync>;

/// Serves `/stats`, `/metrics` and, if given, a dashboard page at `/` on `addr` in the
/// background; returns the bound address.
pub(crate) async fn serve(
    addr: SocketAddr,
    snapshot: Snapshot,
    publish: Publish,
    page: Option<Page>,
) -> Result<SocketAddr> {
    let prometheus: PrometheusHandle = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    describe();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
    let bound = listener.local_addr()?;
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
                let (snapshot, publish, prometheus) = (
                    Arc::clone(&snapshot),
                    Arc::clone(&publish),
                    prometheus.clone(),
                );
                async move {
                    publish(&snapshot());
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

/// Every metric's HELP text, as listed in docs/metrics.md.
fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!("flowgate_broker_connections_open", "Connections open now.");
    describe_counter!(
        "flowgate_broker_connections_accepted_total",
        "Connections accepted since start."
    );
    describe_counter!(
        "flowgate_broker_errors_sent_total",
        "ERROR frames sent to peers, by code name."
    );
    describe_gauge!(
        "flowgate_broker_rss_bytes",
        "Resident set size of the broker process."
    );
    describe_counter!(
        "flowgate_topic_accepted_total",
        "Events accepted from producers."
    );
    describe_counter!(
        "flowgate_topic_duplicates_total",
        "Retried events dropped as already held."
    );
    describe_counter!(
        "flowgate_topic_delivered_total",
        "Deliveries to consumers, redeliveries included."
    );
    describe_counter!(
        "flowgate_topic_redelivered_total",
        "Redeliveries (after a nack or a consumer leaving)."
    );
    describe_counter!(
        "flowgate_topic_acked_total",
        "Events acknowledged by consumers."
    );
    describe_counter!(
        "flowgate_topic_nacked_total",
        "Events refused by consumers (redelivered)."
    );
    describe_gauge!("flowgate_topic_ready", "Events queued for delivery.");
    describe_gauge!("flowgate_topic_ready_bytes", "Bytes queued for delivery.");
    describe_gauge!(
        "flowgate_topic_unacked",
        "Events delivered and not yet acknowledged."
    );
    describe_gauge!(
        "flowgate_topic_unacked_bytes",
        "Bytes delivered and not yet acknowledged."
    );
    describe_gauge!(
        "flowgate_topic_producer_credit_events",
        "Credit granted to producers, unused."
    );
    describe_gauge!(
        "flowgate_topic_consumer_demand_events",
        "Demand requested by consumers, undelivered."
    );
    for (prefix, what) in [
        ("topic", "topic"),
        ("producer", "producer"),
        ("consumer", "consumer"),
    ] {
        describe_gauge!(
            format!("flowgate_{prefix}_busy_seconds"),
            format!("Cumulative seconds the {what} was busy.")
        );
        describe_gauge!(
            format!("flowgate_{prefix}_backpressured_seconds"),
            format!("Cumulative seconds the {what} had work but no credit.")
        );
        describe_gauge!(
            format!("flowgate_{prefix}_idle_seconds"),
            format!("Cumulative seconds the {what} had no work.")
        );
    }
    describe_counter!(
        "flowgate_producer_sent_total",
        "Events the producer sent (paid for with credit)."
    );
    describe_gauge!(
        "flowgate_producer_confirmed_seq",
        "Highest sequence number the broker confirmed."
    );
    describe_counter!("flowgate_consumer_received_total", "Events received.");
    describe_counter!(
        "flowgate_consumer_committed_total",
        "Events settled: committed or dead-lettered."
    );
    describe_counter!(
        "flowgate_consumer_dead_lettered_total",
        "Events written to the dead-letter table."
    );
    describe_counter!(
        "flowgate_consumer_retried_total",
        "Deliveries the database refused and that were nacked."
    );
    describe_gauge!(
        "flowgate_consumer_batch_limit",
        "The adaptive batch limit (events)."
    );
    describe_gauge!(
        "flowgate_sink_commit_latency_p99_seconds",
        "99th percentile of commit latency so far."
    );
}

/// A stage split as JSON seconds.
pub(crate) fn stage_json(split: &StageSplit) -> Value {
    json!({
        "busy_s": split.busy.as_secs_f64(),
        "backpressured_s": split.backpressured.as_secs_f64(),
        "idle_s": split.idle.as_secs_f64(),
    })
}

/// A stage split back from JSON seconds.
pub(crate) fn stage_from_json(v: &Value) -> Option<StageSplit> {
    let secs = |k: &str| v.get(k)?.as_f64().map(Duration::from_secs_f64);
    Some(StageSplit {
        busy: secs("busy_s")?,
        backpressured: secs("backpressured_s")?,
        idle: secs("idle_s")?,
    })
}

/// Publishes a stage split as three `<prefix>_{busy,backpressured,idle}_seconds` gauges:
/// cumulative fractional seconds (the metrics API's counters are whole numbers, and seconds
/// are the Prometheus base unit), so `rate()` over them gives the share of time.
pub(crate) fn publish_stage(prefix: &str, labels: &[(&'static str, String)], stage: &Value) {
    for state in ["busy", "backpressured", "idle"] {
        if let Some(secs) = stage.get(format!("{state}_s")).and_then(Value::as_f64) {
            let name = format!("{prefix}_{state}_seconds");
            let labels: Vec<(&'static str, String)> = labels.to_vec();
            metrics::gauge!(name, &labels).set(secs);
        }
    }
}

/// Fetches `http://addr/stats`. A plain HTTP/1.0 GET over a socket: `flowgate top` needs
/// nothing more, and an HTTP client crate would add a dependency tree for one request.
pub(crate) fn fetch_stats(addr: &str) -> Result<Value> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("cannot reach {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /stats HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("no answer from {addr}"))?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("{addr} sent no HTTP response");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "{addr}/stats answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    serde_json::from_str(body).with_context(|| format!("{addr}/stats is not JSON"))
}
