//! The HTTP ingest load of `flowgate bench --http`: a few concurrent HTTP/1.1 clients, each on
//! one keep-alive connection, posting NDJSON batches of events to the broker's HTTP API until
//! the count is reached; a refusal (503 or 429) is sent again after its `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// What the clients did.
#[derive(Debug, Default)]
pub(crate) struct Load {
    /// Requests answered 200.
    pub accepted_requests: u64,
    /// Requests refused (503 or 429) and sent again.
    pub refused: u64,
}

/// Posts `count` events of `payload_size` bytes (each a JSON string) in batches of `batch`,
/// from `clients` connections to `http_addr`, topic `topic`.
pub(crate) async fn run(
    http_addr: &str,
    topic: &str,
    count: u64,
    payload_size: u64,
    batch: u64,
    clients: u32,
) -> Result<Load> {
    // One event: a JSON string of `payload_size` bytes with its quotes.
    let event = format!(
        "\"{}\"\n",
        "x".repeat(usize::try_from(payload_size.saturating_sub(2)).unwrap_or(0))
    );
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (addr, path, event, next) = (
            http_addr.to_string(),
            format!("/v1/topics/{topic}/events"),
            event.clone(),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            client(&addr, &path, &event, &next, count, batch).await
        }));
    }
    let mut load = Load::default();
    for t in tasks {
        let l = t.await.context("an HTTP client task")??;
        load.accepted_requests += l.accepted_requests;
        load.refused += l.refused;
    }
    Ok(load)
}

async fn client(
    addr: &str,
    path: &str,
    event: &str,
    next: &AtomicU64,
    count: u64,
    batch: u64,
) -> Result<Load> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the HTTP API at {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut load = Load::default();
    loop {
        let first = next.fetch_add(batch, Ordering::Relaxed);
        if first >= count {
            return Ok(load);
        }
        let n = batch.min(count - first);
        let body = Bytes::from(event.repeat(usize::try_from(n).unwrap_or(0)));
        loop {
            let request = Request::post(path)
                .header("host", addr)
                .header("content-type", "application/x-ndjson")
                .body(Full::new(body.clone()))?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let retry = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let text = response.into_body().collect().await?.to_bytes();
            match status.as_u16() {
                200 => {
                    load.accepted_requests += 1;
                    break;
                }
                429 | 503 => {
                    load.refused += 1;
                    tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await;
                }
                other => bail!("HTTP {other}: {}", String::from_utf8_lossy(&text)),
            }
        }
    }
}
