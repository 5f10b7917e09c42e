//! `Idempotency-Key`: a request retried with the same key (by the same client, to the same
//! topic) inside the dedupe window is not stored again; it gets the first one's answer, or
//! waits for it while the first is in flight. Only a request whose events were kept holds its
//! key: a refusal (nothing kept) frees it, so the retry is a new attempt. The table is bounded:
//! the oldest keys go first past [`MAX_KEYS`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::status::Answer;

/// The most keys remembered.
pub const MAX_KEYS: usize = 100_000;

type Key = (String, String, String);

/// The entries, and the keys in the order they were claimed or answered.
type Table = (HashMap<Key, Entry>, VecDeque<(Key, Instant)>);

enum Entry {
    /// The first request is in flight; its answer will be sent here.
    InFlight(watch::Receiver<Option<Answer>>),
    /// Answered at this time.
    Done(Answer, Instant),
}

/// What to do with a request carrying a key.
pub enum Claim {
    /// The first with this key: go on, and report the answer with [`Keys::finish`].
    First(watch::Sender<Option<Answer>>),
    /// Answered before: give this.
    Answered(Answer),
    /// In flight: wait on this for its answer.
    Wait(watch::Receiver<Option<Answer>>),
}

/// The keys seen within the window.
pub struct Keys {
    window: Duration,
    table: Mutex<Table>,
}

impl Keys {
    /// Keys remembered for `window`.
    pub fn new(window: Duration) -> Keys {
        Keys {
            window,
            table: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Claims `key` of `client` on `topic` at `now`.
    pub fn claim(&self, client: &str, topic: &str, key: &str, now: Instant) -> Claim {
        let mut guard = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        while let Some((k, at)) = order.front() {
            if now.duration_since(*at) <= self.window && map.len() <= MAX_KEYS {
                break;
            }
            let over = map.len() > MAX_KEYS;
            if let Some(Entry::Done(_, done)) = map.get(k)
                && (over || now.duration_since(*done) > self.window)
            {
                map.remove(k);
            }
            order.pop_front();
        }
        let k: Key = (client.into(), topic.into(), key.into());
        match map.get(&k) {
            Some(Entry::Done(answer, at)) if now.duration_since(*at) <= self.window => {
                return Claim::Answered(answer.clone());
            }
            Some(Entry::InFlight(rx)) => return Claim::Wait(rx.clone()),
            _ => {}
        }
        let (tx, rx) = watch::channel(None);
        map.insert(k.clone(), Entry::InFlight(rx));
        order.push_back((k, now));
        Claim::First(tx)
    }

    /// The first request with `key` was answered `answer` at `now`: remember it if its events
    /// were kept, forget the key otherwise; either way, wake those waiting.
    pub fn finish(
        &self,
        client: &str,
        topic: &str,
        key: &str,
        answer: &Answer,
        tx: watch::Sender<Option<Answer>>,
        now: Instant,
    ) {
        let k: Key = (client.into(), topic.into(), key.into());
        let mut guard = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if answer.status.is_success() {
            map.insert(k.clone(), Entry::Done(answer.clone(), now));
            order.push_back((k, now));
        } else {
            map.remove(&k);
        }
        let _ = tx.send(Some(answer.clone()));
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use flowgate_core::EventId;

    use super::*;

    #[test]
    fn a_kept_request_answers_its_retries_and_a_refused_one_frees_its_key() {
        let keys = Keys::new(Duration::from_secs(60));
        let t = Instant::now();
        let Claim::First(tx) = keys.claim("c", "t", "k1", t) else {
            panic!("first claim")
        };
        assert!(matches!(keys.claim("c", "t", "k1", t), Claim::Wait(_)));
        let ok = Answer::accepted(3, EventId::new(7, 1), EventId::new(7, 3));
        keys.finish("c", "t", "k1", &ok, tx, t);
        match keys.claim("c", "t", "k1", t + Duration::from_secs(1)) {
            Claim::Answered(a) => assert_eq!(a, ok),
            _ => panic!("the original answer"),
        }
        assert!(
            matches!(keys.claim("other", "t", "k1", t), Claim::First(_)),
            "keys are per client"
        );
        let Claim::First(tx) = keys.claim("c", "t", "k2", t) else {
            panic!("first claim")
        };
        let refused = Answer::unavailable("no room", 1);
        keys.finish("c", "t", "k2", &refused, tx, t);
        assert!(matches!(keys.claim("c", "t", "k2", t), Claim::First(_)));
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn keys_are_forgotten_after_the_window() {
        let keys = Keys::new(Duration::from_secs(60));
        let t = Instant::now();
        let Claim::First(tx) = keys.claim("c", "t", "k", t) else {
            panic!()
        };
        let ok = Answer::accepted(1, EventId::new(1, 1), EventId::new(1, 1));
        keys.finish("c", "t", "k", &ok, tx, t);
        let later = t + Duration::from_secs(61);
        assert!(matches!(keys.claim("c", "t", "k", later), Claim::First(_)));
    }
}
