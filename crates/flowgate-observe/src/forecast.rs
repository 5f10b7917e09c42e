//! Forecasts from two samples of a topic, measured and never configured: when it will be full
//! or empty at the rates of the window, how large it must be to ride out a consumer stall
//! (Little's law: what flows in during the stall), and, when a blocking group holds it full,
//! how many more consumers like its current ones would keep up with what the producers offer.
//!
//! What producers offer is not what they send while they are held back: it is estimated as
//! the rate accepted divided by the share of the window they were not waiting for credit (a
//! producer blocked 90% of the time at 1,000/s would send 10,000/s unblocked). The closer that
//! share is to all of the window, the less exact the estimate: from the broker's side (the
//! share of the window the topic was full with a producer blocked) it read 40,000/s for a
//! producer asking 20,000/s that waited 96% of the time; `top --producer`, with the producer's
//! own split, reads closer. Held back beyond [`MOST_BACKPRESSURED`] of the window, the
//! producers' accepted rate is all that is known: the forecast then says "at least" that, and
//! sizes the topic and its consumers as lower bounds ([`Forecast::offered_at_least`]).

use serde::{Deserialize, Serialize};

use crate::snapshot::{GroupSnapshot, TopicSnapshot};

/// The stall a topic's size is measured against: a database restart, a deploy.
pub const STALL_SECONDS: f64 = 5.0;

/// Beyond this share of the window backpressured, the offered rate cannot be estimated.
pub const MOST_BACKPRESSURED: f64 = 0.98;

/// A topic's forecast over one window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Forecast {
    /// The window's length.
    pub window_s: f64,
    /// Events accepted per second.
    pub in_per_s: f64,
    /// Events freed per second (acknowledged by every blocking group, or skipped by all).
    pub out_per_s: f64,
    /// What producers would send if never held back. When they were held back almost the whole
    /// window it is only what they got accepted, a lower bound ([`Self::offered_at_least`]);
    /// `None` when nothing was accepted then.
    pub offered_per_s: Option<f64>,
    /// `offered_per_s` (and with it `stall_events` and `scale`) is a lower bound: producers were
    /// held back almost the whole window, so how much more they wanted cannot be measured.
    #[serde(default)]
    pub offered_at_least: bool,
    /// At the window's net fill rate, seconds until the topic is full; `None` when it is not
    /// filling.
    pub seconds_to_full: Option<f64>,
    /// At the window's net drain rate, seconds until it is empty; `None` when not draining.
    pub seconds_to_drain: Option<f64>,
    /// Events the topic needs to ride out a [`STALL_SECONDS`] consumer stall at the offered
    /// rate (Little's law); `None` without an offered rate; a lower bound when it is.
    pub stall_events: Option<u64>,
    /// Their bytes, at the held events' mean size; `None` when nothing is held.
    pub stall_bytes: Option<u64>,
    /// The blocking group holding the topic full, and how many more consumers like its
    /// current ones would keep up, when it is held full.
    pub scale: Option<Scale>,
}

/// More consumers for the group that holds a topic full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// The group.
    pub group: String,
    /// Its consumers now.
    pub consumers: u64,
    /// What it acknowledges per second now.
    pub acked_per_s: f64,
    /// How many more consumers at today's rate per consumer would keep up with the offered
    /// rate; when the offered rate is a lower bound, how many more are needed at least (one,
    /// at least, since the group held the topic full).
    pub more_consumers: u64,
}

impl Forecast {
    /// The forecast between two samples of one topic, `secs` apart, `backpressured` being the
    /// share of the window the topic was full with a producer blocked.
    pub fn between(
        prev: &TopicSnapshot,
        now: &TopicSnapshot,
        secs: f64,
        backpressured: f64,
    ) -> Forecast {
        let secs = secs.max(1e-3);
        let in_per_s = now.accepted.saturating_sub(prev.accepted) as f64 / secs;
        let held_change = now.held() as f64 - prev.held() as f64;
        let out_per_s = (in_per_s - held_change / secs).max(0.0);
        let net = held_change / secs;
        let free = now.capacity_events.saturating_sub(now.held()) as f64;
        let seconds_to_full = (net > 0.0).then(|| free / net);
        let seconds_to_drain = (net < 0.0 && now.held() > 0).then(|| now.held() as f64 / -net);
        let offered_at_least = backpressured >= MOST_BACKPRESSURED;
        let offered_per_s = if offered_at_least {
            (in_per_s > 0.0).then_some(in_per_s)
        } else {
            Some(in_per_s / (1.0 - backpressured))
        };
        let stall_events = offered_per_s.map(|o| (o * STALL_SECONDS).ceil() as u64);
        let mean_bytes = (now.held_events > 0).then(|| now.held_bytes / now.held_events);
        let stall_bytes = stall_events.zip(mean_bytes).map(|(e, b)| e * b);
        let scale = if backpressured >= 0.5 {
            offered_per_s
                .and_then(|offered| scale_for(prev, now, secs, offered))
                .map(|s| Scale {
                    // Held full all along: what it has now is too few.
                    more_consumers: if offered_at_least {
                        s.more_consumers.max(1)
                    } else {
                        s.more_consumers
                    },
                    ..s
                })
        } else {
            None
        };
        Forecast {
            window_s: secs,
            in_per_s,
            out_per_s,
            offered_per_s,
            offered_at_least,
            seconds_to_full,
            seconds_to_drain,
            stall_events,
            stall_bytes,
            scale,
        }
    }

    /// The forecast in words, one sentence each.
    pub fn text(&self, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        match (self.seconds_to_full, self.seconds_to_drain) {
            (Some(s), _) => out.push(format!(
                "at {:.0}/s in and {:.0}/s out, {topic} is full in {}",
                self.in_per_s,
                self.out_per_s,
                seconds(s)
            )),
            (_, Some(s)) => out.push(format!(
                "at {:.0}/s in and {:.0}/s out, {topic} is empty in {}",
                self.in_per_s,
                self.out_per_s,
                seconds(s)
            )),
            _ => out.push(format!(
                "{topic} holds steady: {:.0}/s in, {:.0}/s out",
                self.in_per_s, self.out_per_s
            )),
        }
        match (self.offered_per_s, self.stall_events) {
            (Some(offered), Some(events)) if self.offered_at_least => out.push(format!(
                "producers were held back almost the whole window, so they offer at least {offered:.0}/s: to ride out a {STALL_SECONDS:.0} s consumer stall, {topic} needs at least {events} events{}",
                self.stall_bytes
                    .map(|b| format!(" ({})", crate::units::human_bytes(b)))
                    .unwrap_or_default()
            )),
            (Some(offered), Some(events)) => out.push(format!(
                "to ride out a {STALL_SECONDS:.0} s consumer stall at today's {offered:.0}/s offered, {topic} needs {events} events{}",
                self.stall_bytes
                    .map(|b| format!(" ({})", crate::units::human_bytes(b)))
                    .unwrap_or_default()
            )),
            _ => out.push(
                "producers were held back the whole window: what they offer cannot be measured"
                    .to_string(),
            ),
        }
        if let Some(s) = &self.scale {
            let consumers = match s.consumers {
                1 => "1 consumer".to_string(),
                n => format!("{n} consumers"),
            };
            out.push(match s.more_consumers {
                more if self.offered_at_least => format!(
                    "group {} holds the topic full with {consumers} at {:.0}/s: at least {more} more like them are needed",
                    s.group, s.acked_per_s
                ),
                0 => format!(
                    "group {} holds the topic full with {consumers} at {:.0}/s",
                    s.group, s.acked_per_s
                ),
                more => format!(
                    "group {} holds the topic full with {consumers} at {:.0}/s: {more} more like them would keep up, if its database keeps up with them",
                    s.group, s.acked_per_s
                ),
            });
        }
        out
    }
}

/// The blocking group with the most not acked, and how many more of its consumers the
/// offered rate needs.
fn scale_for(prev: &TopicSnapshot, now: &TopicSnapshot, secs: f64, offered: f64) -> Option<Scale> {
    let g: &GroupSnapshot = now
        .groups
        .iter()
        .filter(|g| g.max_lag.is_none() && g.consumers > 0)
        .max_by_key(|g| g.lag())?;
    let before = prev.groups.iter().find(|p| p.name == g.name);
    let acked_per_s = g.acked.saturating_sub(before.map_or(0, |p| p.acked)) as f64 / secs;
    if acked_per_s <= 0.0 {
        return None;
    }
    let per_consumer = acked_per_s / g.consumers as f64;
    // A hair below whole, so 10.000000000000002 consumers' worth is ten, not eleven.
    let needed = (offered / per_consumer - 1e-9).ceil() as u64;
    Some(Scale {
        group: g.name.clone(),
        consumers: g.consumers,
        acked_per_s,
        more_consumers: needed.saturating_sub(g.consumers),
    })
}

/// `12 s`, `3 min 20 s`, `2 h 5 min`.
fn seconds(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(accepted: u64, held: u64, acked: u64) -> TopicSnapshot {
        TopicSnapshot {
            name: "orders".into(),
            capacity_events: 10_000,
            accepted,
            held_events: held,
            held_bytes: held * 120,
            groups: vec![GroupSnapshot {
                name: "db".into(),
                consumers: 1,
                acked,
                ready: held,
                ..GroupSnapshot::default()
            }],
            ..TopicSnapshot::default()
        }
    }

    #[test]
    fn a_filling_topic_says_when_it_is_full_and_how_large_it_must_be() {
        // 2 s: 20,000 in, held 1,000 -> 5,000, so 18,000 freed; never backpressured.
        let f = Forecast::between(&topic(0, 1_000, 0), &topic(20_000, 5_000, 16_000), 2.0, 0.0);
        assert_eq!((f.in_per_s, f.out_per_s), (10_000.0, 8_000.0));
        assert_eq!(f.seconds_to_full, Some(2.5), "5,000 free at +2,000/s");
        assert_eq!(f.seconds_to_drain, None);
        assert_eq!(f.stall_events, Some(50_000), "10,000/s for 5 s");
        assert_eq!(f.stall_bytes, Some(50_000 * 120));
        assert_eq!(f.scale, None, "not held full");
        let text = f.text("orders");
        assert_eq!(
            text[0],
            "at 10000/s in and 8000/s out, orders is full in 3 s"
        );
        assert!(
            text[1].contains("needs 50000 events (5.7 MiB)"),
            "{}",
            text[1]
        );
    }

    #[test]
    fn a_topic_held_full_estimates_the_offer_and_the_consumers_it_needs() {
        // Full all along: 1,000/s in and out, backpressured 90% of the window.
        let f = Forecast::between(&topic(0, 10_000, 0), &topic(2_000, 10_000, 2_000), 2.0, 0.9);
        let offered = f.offered_per_s.unwrap();
        assert!((offered - 10_000.0).abs() < 1e-6, "{offered}");
        let scale = f.scale.clone().unwrap();
        assert_eq!((scale.group.as_str(), scale.more_consumers), ("db", 9));
        assert!(f.text("orders")[2].contains("9 more like them would keep up"));
    }

    #[test]
    fn producers_held_back_all_the_time_give_lower_bounds() {
        // Full all along at 10/s; the producers waited the whole window.
        let f = Forecast::between(&topic(0, 10_000, 0), &topic(10, 10_000, 10), 1.0, 1.0);
        assert!(f.offered_at_least);
        assert_eq!((f.offered_per_s, f.stall_events), (Some(10.0), Some(50)));
        let scale = f.scale.clone().unwrap();
        assert_eq!(
            (scale.group.as_str(), scale.more_consumers),
            ("db", 1),
            "too few now, so at least one more"
        );
        let text = f.text("orders");
        assert!(text[1].contains("at least 10/s") && text[1].contains("at least 50 events"));
        assert!(text[2].contains("at least 1 more"), "{}", text[2]);
    }

    #[test]
    fn producers_held_back_with_nothing_accepted_give_no_estimate() {
        let f = Forecast::between(&topic(0, 10_000, 0), &topic(0, 10_000, 0), 1.0, 1.0);
        assert_eq!(
            (f.offered_per_s, f.stall_events, f.scale.clone()),
            (None, None, None)
        );
        assert!(f.text("orders")[1].contains("cannot be measured"));
    }

    #[test]
    fn a_draining_topic_says_when_it_is_empty() {
        let f = Forecast::between(&topic(0, 6_000, 0), &topic(1_000, 3_000, 4_000), 1.0, 0.0);
        assert_eq!(f.seconds_to_drain, Some(1.0));
        assert_eq!(
            f.text("orders")[0],
            "at 1000/s in and 4000/s out, orders is empty in 1 s"
        );
    }
}
