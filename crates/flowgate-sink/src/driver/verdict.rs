//! What becomes of each event of a committed batch: acknowledged, handed back for another
//! attempt, or dead-lettered. Pure: the sink's refusals and the attempts in, the verdicts out.

/// The fate of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Committed (new or already present): acknowledge it.
    Ack,
    /// Refused, with attempts left: hand it back (nack) so it is delivered again.
    Retry,
    /// Refused on its last attempt: record it as a dead letter, then acknowledge it.
    DeadLetter,
}

/// Decides each event's verdict. `refused[i]` says whether the sink refused event `i`,
/// `attempts[i]` on which delivery it was (1 on the first); an event refused on delivery
/// `max_attempts` or later is dead-lettered.
pub fn decide(refused: &[bool], attempts: &[u32], max_attempts: u32) -> Vec<Verdict> {
    refused
        .iter()
        .zip(attempts)
        .map(|(&refused, &attempt)| match refused {
            false => Verdict::Ack,
            true if attempt >= max_attempts => Verdict::DeadLetter,
            true => Verdict::Retry,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_retried_until_the_last_attempt() {
        let v = decide(&[false, true, true, true], &[1, 1, 2, 3], 3);
        assert_eq!(
            v,
            vec![
                Verdict::Ack,
                Verdict::Retry,
                Verdict::Retry,
                Verdict::DeadLetter
            ]
        );
    }

    #[test]
    fn one_attempt_dead_letters_at_once_and_later_attempts_still_count() {
        assert_eq!(decide(&[true], &[1], 1), vec![Verdict::DeadLetter]);
        // Redelivered past the limit (the limit was lowered between runs).
        assert_eq!(
            decide(&[true, false], &[9, 9], 3),
            vec![Verdict::DeadLetter, Verdict::Ack]
        );
    }
}
