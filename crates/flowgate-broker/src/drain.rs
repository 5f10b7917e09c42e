//! A graceful stop: the broker refuses new connections, stops delivering and granting, waits
//! for what is in flight (confirms of accepted batches, acks of deliveries), then closes each
//! connection after its last frames and lets its logs write the acks it took.

use std::sync::atomic::Ordering;

use crate::server::{Broker, Shared};

/// How often a draining broker looks whether it is done.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// How long a draining broker waits for its connections to write their last frames.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What a graceful stop left behind when its grace ran out (zeros: nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Deliveries still unsettled: they go back to their topic (and, on disk, are delivered
    /// again after a restart).
    pub unacked: u64,
    /// Accepted batches the store had not yet made durable: not confirmed, so their
    /// producers send them again.
    pub unconfirmed: u64,
    /// How long the wait took.
    pub took: std::time::Duration,
}

impl Shared {
    /// Nothing left to finish: every accepted batch confirmed and written out, every
    /// delivery settled.
    pub(crate) fn quiet(&self) -> bool {
        self.confirming.load(Ordering::SeqCst) == 0
            && self.topics.all().iter().all(|t| {
                t.apply(|t| {
                    t.topic.stats().unacked == 0 && t.outboxes.values().all(|o| o.is_empty())
                })
            })
    }
}

impl Broker {
    /// Stops gracefully: refuses new connections, stops delivering and granting
    /// ([`flowgate_core::Topic::drain`]), and waits up to `grace` for what is in flight to
    /// finish: every accepted batch made durable and confirmed, every delivery acked or
    /// nacked. Then it closes each connection once its last frames are written, and stops.
    /// Producers resend only what was never accepted; consumers are sent again only what
    /// they had not settled when `grace` ran out.
    pub async fn drain(self, grace: std::time::Duration) -> DrainReport {
        let started = tokio::time::Instant::now();
        self.shared.draining.store(true, Ordering::SeqCst);
        let topics = self.shared.topics.all();
        for topic in &topics {
            topic.apply(|t| t.topic.drain());
        }
        while !self.shared.quiet() && started.elapsed() < grace {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let report = DrainReport {
            unacked: topics.iter().map(|t| t.stats().0.unacked).sum(),
            unconfirmed: self.shared.confirming.load(Ordering::SeqCst),
            took: started.elapsed(),
        };
        // From here no batch is accepted; the ones accepted since the check above still
        // get their confirms out before their connections close.
        self.shared.closing.store(true, Ordering::SeqCst);
        let closing = tokio::time::Instant::now();
        while self.shared.confirming.load(Ordering::SeqCst) > 0 && closing.elapsed() < CLOSE_WAIT {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        for topic in &topics {
            topic.apply(|t| t.outboxes.values().for_each(|o| o.close()));
        }
        let written = tokio::time::Instant::now();
        while self.shared.open.load(Ordering::SeqCst) > 0 && written.elapsed() < CLOSE_WAIT {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let shared = self.stop_serving().await;
        // The acks taken during the drain are queued to the logs behind everything else; a
        // barrier per topic returns once they are written, so a restart does not deliver
        // again what was acknowledged.
        for topic in &topics {
            let _ = shared
                .storage
                .append(&topic.name, &[], 0, None)
                .wait()
                .await;
        }
        shared.close_storage().await;
        report
    }
}
