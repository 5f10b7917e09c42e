//! The seam a backend implements. A producer or consumer of any backend does the same few
//! things (send paced by credit and confirmed; receive within demand, then ack or nack), and
//! reports the same figures; [`Publish`] and [`Subscribe`] say so, and [`AnyProducer`] /
//! [`AnyConsumer`] pick the backend from the broker address's scheme ([`BrokerAddr`]).
//!
//! | scheme | backend |
//! |---|---|
//! | `host:port`, `flowgate://host:port` | the flowgate broker ([`crate::net`]) |
//!
//! A new backend adds a variant to [`BrokerAddr`], [`AnyProducer`] and [`AnyConsumer`], and
//! implements the two traits for its handles.

mod any;

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use flowgate_core::{Credit, Event, EventId};

pub use any::{AnyConsumer, AnyProducer};

use crate::net::error::{ClientError, SendError};
use crate::{ConsumerStats, Delivery, DeliveryTag, ProducerStats};

/// Where the events go, by scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerAddr {
    /// A flowgate broker at `host:port`.
    Flowgate {
        /// `host:port`.
        addr: String,
    },
}

impl BrokerAddr {
    /// The host part, for TLS server names.
    pub fn host(&self) -> &str {
        match self {
            BrokerAddr::Flowgate { addr } => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr.as_str(), |(host, _)| host);
                host.trim_start_matches('[').trim_end_matches(']')
            }
        }
    }
}

impl FromStr for BrokerAddr {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<BrokerAddr, ClientError> {
        let bad = |why: &str| ClientError::Address(format!("broker address '{s}': {why}"));
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("flowgate", s),
        };
        match scheme {
            "flowgate" => {
                let Some((host, port)) = rest.rsplit_once(':') else {
                    return Err(bad("expected host:port"));
                };
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(bad("expected host:port with a port of 0-65535"));
                }
                Ok(BrokerAddr::Flowgate { addr: rest.into() })
            }
            other => Err(bad(&format!(
                "unknown scheme '{other}'; this build knows flowgate:// (or plain host:port)"
            ))),
        }
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerAddr::Flowgate { addr } => write!(f, "flowgate://{addr}"),
        }
    }
}

/// Reads a handle's figures from elsewhere (a metrics endpoint) while the handle is busy.
pub struct Monitor<T>(Arc<dyn Fn() -> T + Send + Sync>);

impl<T> Monitor<T> {
    /// A monitor that reads with `read`.
    pub fn new(read: impl Fn() -> T + Send + Sync + 'static) -> Monitor<T> {
        Monitor(Arc::new(read))
    }

    /// The figures now.
    pub fn stats(&self) -> T {
        (self.0)()
    }
}

impl<T> Clone for Monitor<T> {
    fn clone(&self) -> Self {
        Monitor(Arc::clone(&self.0))
    }
}

/// A producer of any backend: `send` waits for credit, and an event counts as kept only once
/// confirmed (`flush`, `close`).
pub trait Publish: Send + Sized {
    /// This producer's id, which with a sequence number names each event it sends.
    fn producer_id(&self) -> u64;
    /// The largest payload one event may carry; larger ones are refused before sending.
    fn largest_payload(&self) -> u64;
    /// Sends an event once there is credit for it; returns the id it was given. On failure
    /// the event comes back with the reason.
    fn send(&mut self, event: Event) -> impl Future<Output = Result<EventId, SendError>> + Send;
    /// Sends a payload as a new event (no key, created now).
    fn send_payload(
        &mut self,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<EventId, SendError>> + Send {
        self.send(Event {
            id: EventId::default(),
            key: None,
            created_us: 0,
            payload,
        })
    }
    /// Waits until credit covers `events` events of `bytes` in all, so that many sends in a
    /// row go out without waiting (all of a batch or none of it). Holds no borrow; cancel
    /// safe.
    fn room_for(
        &self,
        events: u64,
        bytes: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static;
    /// Waits until every sequence number of this producer up to `seq` is confirmed. Holds no
    /// borrow, so sends may go on meanwhile.
    fn confirmed_through(
        &self,
        seq: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static;
    /// Waits until everything sent so far is confirmed.
    fn flush(&mut self) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// Flushes, then closes.
    fn close(self) -> impl Future<Output = Result<ProducerStats, ClientError>> + Send;
    /// Credit available now.
    fn credit(&self) -> Credit;
    /// Events sent and not yet confirmed.
    fn unconfirmed(&self) -> usize;
    /// What this producer has done so far.
    fn stats(&self) -> ProducerStats;
    /// Reads the stats from elsewhere.
    fn monitor(&self) -> Monitor<ProducerStats>;
    /// The events the broker refused since the last call (their topic's policy is `reject`
    /// and it was full), oldest first: counted in [`ProducerStats::refused`], never stored.
    fn take_refused(&mut self) -> Vec<Event>;
}

/// A consumer of any backend: receives only what it asked for, and acknowledges after it has
/// committed; a nacked or unacknowledged delivery comes again.
pub trait Subscribe: Send + Sized {
    /// Waits for deliveries; `Ok(None)` once closed.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Vec<Delivery>>, ClientError>> + Send;
    /// These deliveries are committed.
    fn ack(&mut self, tags: Vec<DeliveryTag>);
    /// These deliveries are refused: deliver them again.
    fn nack(&mut self, tags: Vec<DeliveryTag>);
    /// These deliveries are still being worked on: restart their ack deadline.
    fn progress(&mut self, tags: Vec<DeliveryTag>);
    /// How much to ask for ahead of processing from now on.
    fn set_prefetch(&mut self, prefetch: Credit);
    /// Sends what is pending, then closes.
    fn close(self) -> impl Future<Output = ConsumerStats> + Send;
    /// What this consumer has done so far.
    fn stats(&self) -> ConsumerStats;
    /// Reads the stats from elsewhere.
    fn monitor(&self) -> Monitor<ConsumerStats>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_flowgate_addresses_name_the_built_in_broker() {
        for (s, host) in [
            ("127.0.0.1:7070", "127.0.0.1"),
            ("flowgate://broker.example:7070", "broker.example"),
            ("[::1]:7070", "::1"),
        ] {
            let addr: BrokerAddr = s.parse().unwrap();
            assert!(matches!(&addr, BrokerAddr::Flowgate { .. }), "{s}");
            assert_eq!(addr.host(), host);
        }
        let addr: BrokerAddr = "flowgate://h:1".parse().unwrap();
        assert_eq!(addr.to_string(), "flowgate://h:1");
    }

    #[test]
    fn an_unknown_scheme_or_a_missing_port_is_named() {
        let err = "kafka://h:9092"
            .parse::<BrokerAddr>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown scheme 'kafka'"), "{err}");
        for bad in ["localhost", "flowgate://h:", "h:99999", ":7070"] {
            let err = bad.parse::<BrokerAddr>().unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }
}
