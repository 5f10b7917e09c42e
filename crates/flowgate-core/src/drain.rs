//! A topic's measured drain rate (events confirmed per second over the last few seconds), and
//! the `Retry-After` it gives a caller with events ahead of it. Times are durations since an
//! origin the caller picks.

use std::collections::VecDeque;
use std::time::Duration;

/// How far back the rate looks.
const WINDOW: Duration = Duration::from_secs(5);

/// The longest `Retry-After` given.
pub const MAX_RETRY_AFTER_S: u64 = 60;

/// Confirmed events over time.
#[derive(Debug, Default)]
pub struct DrainMeter {
    /// (when, events confirmed in all by then), oldest first, within [`WINDOW`].
    samples: VecDeque<(Duration, u64)>,
    total: u64,
}

impl DrainMeter {
    /// `events` more were confirmed at `now`.
    pub fn record(&mut self, now: Duration, events: u64) {
        self.total += events;
        self.samples.push_back((now, self.total));
        while self
            .samples
            .front()
            .is_some_and(|&(at, _)| now.saturating_sub(at) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Events per second over the window up to `now`; `None` before two samples a moment
    /// apart, or when the last is older than the window (nothing drains).
    pub fn rate(&self, now: Duration) -> Option<f64> {
        let &(first_at, first) = self.samples.front()?;
        let &(last_at, last) = self.samples.back()?;
        if now.saturating_sub(last_at) > WINDOW {
            return Some(0.0);
        }
        let secs = now.saturating_sub(first_at).as_secs_f64();
        (secs >= 0.05 && last > first).then(|| (last - first) as f64 / secs)
    }

    /// Seconds until `ahead` events have drained at the measured rate, at least 1 and at
    /// most [`MAX_RETRY_AFTER_S`]; with no rate measured yet, `fallback`.
    pub fn retry_after(&self, now: Duration, ahead: u64, fallback: Duration) -> u64 {
        match self.rate(now) {
            Some(rate) if rate > 0.0 => ((ahead as f64 / rate).ceil() as u64).max(1),
            Some(_) => MAX_RETRY_AFTER_S,
            None => fallback.as_secs().max(1),
        }
        .min(MAX_RETRY_AFTER_S)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_the_place_over_the_measured_rate() {
        let t = Duration::from_secs(100);
        let mut m = DrainMeter::default();
        assert_eq!(
            m.retry_after(t, 5_000, Duration::from_secs(2)),
            2,
            "no rate yet"
        );
        for i in 1..=10 {
            m.record(t + Duration::from_millis(100 * i), 100); // 1,000/s
        }
        let now = t + Duration::from_secs(1);
        let rate = m.rate(now).unwrap();
        assert!((rate - 1_000.0).abs() < 1e-6, "{rate}");
        assert_eq!(m.retry_after(now, 4_500, Duration::ZERO), 5);
        assert_eq!(
            m.retry_after(now, 10, Duration::ZERO),
            1,
            "at least a second"
        );
        assert_eq!(
            m.retry_after(now, 10_000_000, Duration::ZERO),
            MAX_RETRY_AFTER_S
        );
    }

    #[test]
    fn a_topic_that_stopped_draining_says_the_longest_wait() {
        let t = Duration::from_secs(100);
        let mut m = DrainMeter::default();
        m.record(t, 10);
        m.record(t + Duration::from_secs(1), 10);
        let later = t + Duration::from_secs(30);
        assert_eq!(m.rate(later), Some(0.0));
        assert_eq!(m.retry_after(later, 1, Duration::ZERO), MAX_RETRY_AFTER_S);
    }
}
