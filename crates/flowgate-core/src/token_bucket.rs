//! A token bucket (rate + burst) with time passed in, used to pace a producer or emulate a
//! database that absorbs a fixed number of events per second.
//!
//! Time is a [`Duration`] since an epoch the caller picks (e.g. the run's start); the bucket
//! never reads a clock, so tests drive it with exact instants. Tokens are kept in
//! nano-token units (tokens × 10⁹) so no fraction of a token is ever lost to rounding: over
//! any interval the bucket releases exactly `rate × seconds` tokens (plus the initial burst).

use std::fmt;
use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Why a bucket could not be built or a take can never succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenBucketError {
    /// A rate of zero tokens per second would never refill.
    ZeroRate,
    /// A burst of zero could never release a token.
    ZeroBurst,
    /// A take of more tokens than the burst can ever hold.
    ExceedsBurst {
        /// Tokens asked for.
        wanted: u64,
        /// The bucket's burst.
        burst: u64,
    },
}

impl fmt::Display for TokenBucketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenBucketError::ZeroRate => f.write_str("token bucket rate must be at least 1/s"),
            TokenBucketError::ZeroBurst => f.write_str("token bucket burst must be at least 1"),
            TokenBucketError::ExceedsBurst { wanted, burst } => {
                write!(
                    f,
                    "take of {wanted} tokens can never succeed with a burst of {burst}"
                )
            }
        }
    }
}

impl std::error::Error for TokenBucketError {}

/// Why [`TokenBucket::try_take`] took nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// The tokens will be there after this long.
    Wait(Duration),
    /// The take can never succeed.
    Never(TokenBucketError),
}

/// Releases `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate_per_sec: u64,
    burst: u64,
    /// Tokens held, in units of 10⁻⁹ token.
    nano_tokens: u128,
    /// When `nano_tokens` was last brought up to date.
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(rate_per_sec: u64, burst: u64, now: Duration) -> Result<Self, TokenBucketError> {
        if rate_per_sec == 0 {
            return Err(TokenBucketError::ZeroRate);
        }
        if burst == 0 {
            return Err(TokenBucketError::ZeroBurst);
        }
        Ok(TokenBucket {
            rate_per_sec,
            burst,
            nano_tokens: u128::from(burst) * NANOS_PER_SEC,
            last: now,
        })
    }

    /// Tokens per second.
    pub fn rate(&self) -> u64 {
        self.rate_per_sec
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Duration) -> u64 {
        self.refill(now);
        self.whole_tokens()
    }

    /// Takes `n` tokens if they are there; otherwise says how long until they will be, or
    /// that they never can be.
    pub fn try_take(&mut self, n: u64, now: Duration) -> Result<(), Shortfall> {
        if n > self.burst {
            return Err(Shortfall::Never(TokenBucketError::ExceedsBurst {
                wanted: n,
                burst: self.burst,
            }));
        }
        self.refill(now);
        let need = u128::from(n) * NANOS_PER_SEC;
        if self.nano_tokens >= need {
            self.nano_tokens -= need;
            Ok(())
        } else {
            Err(Shortfall::Wait(self.wait_for(need - self.nano_tokens)))
        }
    }

    /// Takes as many tokens as are available, up to `max`, and returns how many.
    pub fn take_up_to(&mut self, max: u64, now: Duration) -> u64 {
        self.refill(now);
        let n = self.whole_tokens().min(max);
        self.nano_tokens -= u128::from(n) * NANOS_PER_SEC;
        n
    }

    /// How long from `now` until `n` tokens (at most the burst) are available; zero if they
    /// already are. Does not take them.
    pub fn time_until(&mut self, n: u64, now: Duration) -> Duration {
        self.refill(now);
        let need = u128::from(n.min(self.burst)) * NANOS_PER_SEC;
        if self.nano_tokens >= need {
            Duration::ZERO
        } else {
            self.wait_for(need - self.nano_tokens)
        }
    }

    fn whole_tokens(&self) -> u64 {
        // At most `burst`, which is a u64.
        u64::try_from(self.nano_tokens / NANOS_PER_SEC).unwrap_or(u64::MAX)
    }

    /// Time for `missing` nano-tokens to accrue, rounded up to the next nanosecond.
    fn wait_for(&self, missing: u128) -> Duration {
        let nanos = missing.div_ceil(u128::from(self.rate_per_sec));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn refill(&mut self, now: Duration) {
        // A clock that went backwards adds nothing and keeps the later instant.
        let Some(elapsed) = now.checked_sub(self.last) else {
            return;
        };
        self.last = now;
        let cap = u128::from(self.burst) * NANOS_PER_SEC;
        let added = elapsed
            .as_nanos()
            .saturating_mul(u128::from(self.rate_per_sec));
        self.nano_tokens = self.nano_tokens.saturating_add(added).min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn starts_full_then_refills_at_the_rate() {
        let mut b = TokenBucket::new(1_000, 10, ms(0)).unwrap();
        assert_eq!(b.take_up_to(100, ms(0)), 10);
        assert_eq!(b.available(ms(0)), 0);
        assert_eq!(b.available(ms(5)), 5);
        assert_eq!(b.available(ms(1_000)), 10, "capped at the burst");
    }

    #[test]
    fn releases_exactly_rate_times_seconds_with_no_rounding_loss() {
        // 3 tokens/s taken every 100 ms: fractions must add up, not be discarded.
        let mut b = TokenBucket::new(3, 10, ms(0)).unwrap();
        let _ = b.take_up_to(10, ms(0));
        let taken: u64 = (1..=100).map(|i| b.take_up_to(1, ms(i * 100))).sum();
        assert_eq!(taken, 30);
    }

    #[test]
    fn try_take_reports_the_wait() {
        let mut b = TokenBucket::new(100, 5, ms(0)).unwrap();
        assert_eq!(b.try_take(5, ms(0)), Ok(()));
        assert_eq!(b.try_take(2, ms(0)), Err(Shortfall::Wait(ms(20))));
        assert_eq!(b.try_take(2, ms(20)), Ok(()));
    }

    #[test]
    fn a_take_larger_than_the_burst_is_an_error_not_a_wait() {
        let mut b = TokenBucket::new(100, 5, ms(0)).unwrap();
        assert_eq!(
            b.try_take(6, ms(0)),
            Err(Shortfall::Never(TokenBucketError::ExceedsBurst {
                wanted: 6,
                burst: 5
            }))
        );
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(1_000, 100, ms(100)).unwrap();
        let _ = b.take_up_to(100, ms(100));
        assert_eq!(b.available(ms(50)), 0);
        assert_eq!(b.available(ms(110)), 10);
    }

    #[test]
    fn zero_rate_and_zero_burst_are_refused() {
        assert_eq!(
            TokenBucket::new(0, 1, ms(0)),
            Err(TokenBucketError::ZeroRate)
        );
        assert_eq!(
            TokenBucket::new(1, 0, ms(0)),
            Err(TokenBucketError::ZeroBurst)
        );
    }

    #[test]
    fn time_until_is_zero_when_tokens_are_there() {
        let mut b = TokenBucket::new(10, 10, ms(0)).unwrap();
        assert_eq!(b.time_until(10, ms(0)), Duration::ZERO);
        let _ = b.take_up_to(10, ms(0));
        assert_eq!(b.time_until(1, ms(0)), ms(100));
    }
}
