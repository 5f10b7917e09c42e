//! The flags of the HTTP API, shared by `broker --http-addr` and `gateway`: how long a publish
//! waits for room, how much may wait, and the largest body.

use std::time::Duration;

use clap::Args;
use flowgate_http::GatewayConfig;
use flowgate_observe::units::{Size, Span};

/// What the HTTP API lets in.
#[derive(Debug, Args)]
pub(crate) struct HttpArgs {
    /// How long a publish may wait for room before it is refused whole with 503 and a
    /// Retry-After.
    #[arg(long, default_value = "1s")]
    admit_wait: Span,
    /// The most events waiting for room on one topic, over all HTTP clients; each waiting
    /// client's fair share is this over the number waiting (a client over it gets 429).
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_queued: u64,
    /// The largest request body; a larger one is refused with 413.
    #[arg(long, default_value = "8MiB", value_name = "SIZE")]
    max_body: Size,
    /// How long an Idempotency-Key is remembered.
    #[arg(long, default_value = "2m")]
    dedupe_window: Span,
}

impl HttpArgs {
    /// The gateway's settings for a backend at `broker`.
    pub(crate) fn config(&self, broker: String) -> GatewayConfig {
        GatewayConfig {
            admit_wait: self.admit_wait.0.max(Duration::from_millis(1)),
            max_queued: self.max_queued,
            max_body: usize::try_from(self.max_body.0).unwrap_or(usize::MAX),
            dedupe_window: self.dedupe_window.0,
            ..GatewayConfig::new(broker)
        }
    }
}
