//! An emulated database pace: a database that takes at most so many events per second, and
//! may be unavailable for stretches of time. For demos and benchmarks of the feedback loop
//! without a slow database at hand; the real sink still commits every event.

use std::sync::Arc;
use std::time::Duration;

use flowgate_core::{TokenBucket, TokenBucketError};

/// When the emulated database is unavailable: given the time since the driver started, the
/// time it is back, or `None` when it is available now.
pub type Stalls = Arc<dyn Fn(Duration) -> Option<Duration> + Send + Sync>;

/// How the emulated database behaves.
#[derive(Clone)]
pub struct Emulation {
    /// Events per second it absorbs.
    pub rate: u64,
    /// The most it takes at once (at least 1); a larger batch is taken in slices.
    pub burst: u64,
    /// Stretches of unavailability, if any.
    pub stalls: Option<Stalls>,
}

impl std::fmt::Debug for Emulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulation")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("stalls", &self.stalls.is_some())
            .finish()
    }
}

/// The emulation's state: its token bucket.
pub(crate) struct Pace {
    bucket: TokenBucket,
    stalls: Option<Stalls>,
}

impl Pace {
    pub(crate) fn new(e: &Emulation) -> Result<Pace, TokenBucketError> {
        Ok(Pace {
            bucket: TokenBucket::new(e.rate, e.burst.max(1), Duration::ZERO)?,
            stalls: e.stalls.clone(),
        })
    }

    /// Waits until the emulated database has taken `n` events: through any stall, then a
    /// burst at a time at its rate. `since` reads the time since the driver started.
    pub(crate) async fn absorb(&mut self, n: u64, since: impl Fn() -> Duration) {
        if let Some(back) = self.stalls.as_ref().and_then(|s| s(since())) {
            tokio::time::sleep(back.saturating_sub(since())).await;
        }
        let mut left = n;
        while left > 0 {
            let slice = left.min(self.bucket.burst());
            let wait = self.bucket.time_until(slice, since());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            // Cannot fall short: the wait above was for exactly this slice.
            let _ = self.bucket.try_take(slice, since());
            left -= slice;
        }
    }
}
