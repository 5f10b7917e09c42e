//! The client's two clocks: tokio's monotonic clock for the sessions' deadlines (so paused
//! test time works), and the wall clock for event creation stamps.

use std::time::Instant;

/// Now, on tokio's clock, as the sessions take it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleeps until `at` on tokio's clock.
pub(crate) async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}

/// The current time in microseconds since the Unix epoch: the clock event creation stamps
/// use, and so the one to measure creation-to-commit latency against.
pub fn unix_now_us() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}
