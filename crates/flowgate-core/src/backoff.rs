//! How long to wait before trying again: a wait that starts short, doubles with each failure
//! up to a ceiling, and starts short again after a success. Used wherever flowgate retries:
//! a client's reconnect, a sink's failed commit, a disk log's failed write. Pure: it hands
//! out durations; the caller sleeps.

use std::time::Duration;

/// A doubling wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits of `first`, then twice that after each failure, at most `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The wait before the next attempt, which doubles the one after it.
    pub fn fail(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// What [`Backoff::fail`] would hand out now, without counting a failure.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// An attempt worked: the next wait is the first again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_the_ceiling_and_a_success_starts_them_over() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let waits: Vec<Duration> = (0..5).map(|_| b.fail()).collect();
        assert_eq!(waits, vec![ms(100), ms(200), ms(400), ms(500), ms(500)]);
        assert_eq!(b.peek(), ms(500));
        b.reset();
        assert_eq!(b.fail(), ms(100));
    }
}
