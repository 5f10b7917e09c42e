//! Who is let in next: the requests waiting for room on one topic (the HTTP API's), a queue per
//! client taken in turn (so a client with many requests in flight cannot starve one with a
//! single request), a bound on the events waiting in all, and a fair share of that bound per
//! waiting client. A client over its share while others wait is told to slow down (429); a
//! request that finds no room before its deadline is refused whole (503). No clock is read:
//! times are durations since an origin the caller picks.

use std::collections::VecDeque;
use std::time::Duration;

/// One request waiting for room.
#[derive(Debug)]
pub struct Waiting<R> {
    /// Who sent it: its token's name, or its address.
    pub client: String,
    /// Its events.
    pub events: u64,
    /// Their cost in credit bytes.
    pub bytes: u64,
    /// When it gives up.
    pub deadline: Duration,
    /// What the caller keeps with it (the events, the reply).
    pub request: R,
}

/// Why a request was not queued, and how many events would be let in before a request of its
/// size from its client, for a `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client is over its fair share of the queue while others wait (429).
    OverShare {
        /// Events ahead of it.
        ahead: u64,
    },
    /// The queue has no room for it, and nobody over their share to make room (503).
    Full {
        /// Events ahead of it.
        ahead: u64,
    },
    /// It holds more events than the whole queue: it can never be let in (413).
    LargerThanQueue {
        /// The queue's bound.
        max_queued: u64,
    },
}

/// The waiting requests of one topic.
#[derive(Debug)]
pub struct Admission<R> {
    /// Each waiting client's requests, oldest first; the front client goes next.
    turns: VecDeque<(String, VecDeque<Waiting<R>>)>,
    queued_events: u64,
    max_queued: u64,
}

impl<R> Admission<R> {
    /// An empty queue of at most `max_queued` events.
    pub fn new(max_queued: u64) -> Self {
        Admission {
            turns: VecDeque::new(),
            queued_events: 0,
            max_queued: max_queued.max(1),
        }
    }

    /// Events waiting.
    pub fn queued_events(&self) -> u64 {
        self.queued_events
    }

    /// Requests waiting.
    pub fn queued_requests(&self) -> usize {
        self.turns.iter().map(|(_, q)| q.len()).sum()
    }

    /// Clients with a request waiting.
    pub fn clients(&self) -> usize {
        self.turns.len()
    }

    /// Queues `w`, or refuses it. Making room for a client within its share may push out the
    /// newest requests of clients over theirs: those come back in the `Vec`, to be told 429.
    #[allow(clippy::type_complexity)]
    pub fn offer(&mut self, w: Waiting<R>) -> Result<Vec<Waiting<R>>, (Refusal, Waiting<R>)> {
        let own = self.queued_of(&w.client);
        let others = self.turns.iter().filter(|(c, _)| *c != w.client).count() as u64;
        let share = self.max_queued / (others + 1);
        let ahead = self.ahead_of(&w.client, w.events);
        if w.events > self.max_queued {
            let max_queued = self.max_queued;
            return Err((Refusal::LargerThanQueue { max_queued }, w));
        }
        if others > 0 && own + w.events > share {
            return Err((Refusal::OverShare { ahead }, w));
        }
        let mut pushed_out = Vec::new();
        while self.queued_events + w.events > self.max_queued {
            match self.newest_over_share(&w.client, share) {
                Some(out) => pushed_out.push(out),
                None => break,
            }
        }
        if self.queued_events + w.events > self.max_queued {
            // Put back what was pushed out for nothing: it keeps its place at the back.
            for out in pushed_out {
                self.push(out);
            }
            return Err((Refusal::Full { ahead }, w));
        }
        self.push(w);
        Ok(pushed_out)
    }

    /// The request whose turn it is.
    pub fn head(&self) -> Option<&Waiting<R>> {
        self.turns.front().and_then(|(_, q)| q.front())
    }

    /// Takes the request whose turn it is; its client goes to the back of the turns.
    pub fn pop(&mut self) -> Option<Waiting<R>> {
        let (client, mut queue) = self.turns.pop_front()?;
        let w = queue.pop_front()?;
        if !queue.is_empty() {
            self.turns.push_back((client, queue));
        }
        self.queued_events -= w.events;
        Some(w)
    }

    /// The earliest deadline of a waiting request.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.turns
            .iter()
            .flat_map(|(_, q)| q.iter().map(|w| w.deadline))
            .min()
    }

    /// Takes every request whose deadline has passed at `now`.
    pub fn take_expired(&mut self, now: Duration) -> Vec<Waiting<R>> {
        let mut expired = Vec::new();
        for (_, queue) in &mut self.turns {
            let (gone, kept): (VecDeque<_>, VecDeque<_>) =
                queue.drain(..).partition(|w| w.deadline <= now);
            *queue = kept;
            expired.extend(gone);
        }
        self.turns.retain(|(_, q)| !q.is_empty());
        self.queued_events -= expired.iter().map(|w| w.events).sum::<u64>();
        expired
    }

    /// Events let in before a new request of `events` from `client` would be through, taking
    /// turns: each other client's waiting events up to what `client` would have queued then,
    /// and `client`'s own.
    pub fn ahead_of(&self, client: &str, events: u64) -> u64 {
        let own = self.queued_of(client) + events;
        self.turns
            .iter()
            .filter(|(c, _)| c != client)
            .map(|(_, q)| q.iter().map(|w| w.events).sum::<u64>().min(own))
            .sum::<u64>()
            + own
    }

    fn queued_of(&self, client: &str) -> u64 {
        self.turns
            .iter()
            .find(|(c, _)| c == client)
            .map_or(0, |(_, q)| q.iter().map(|w| w.events).sum())
    }

    fn push(&mut self, w: Waiting<R>) {
        self.queued_events += w.events;
        match self.turns.iter_mut().find(|(c, _)| *c == w.client) {
            Some((_, q)) => q.push_back(w),
            None => self
                .turns
                .push_back((w.client.clone(), VecDeque::from([w]))),
        }
    }

    /// Takes the newest request of the client furthest over `share`, other than `client`.
    fn newest_over_share(&mut self, client: &str, share: u64) -> Option<Waiting<R>> {
        let (i, _) = self
            .turns
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| c != client)
            .map(|(i, (_, q))| (i, q.iter().map(|w| w.events).sum::<u64>()))
            .filter(|&(_, queued)| queued > share)
            .max_by_key(|&(_, queued)| queued)?;
        let w = self.turns[i].1.pop_back()?;
        if self.turns[i].1.is_empty() {
            self.turns.remove(i);
        }
        self.queued_events -= w.events;
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: &str, events: u64, at: Duration, id: u32) -> Waiting<u32> {
        Waiting {
            client: client.into(),
            events,
            bytes: events * 100,
            deadline: at + Duration::from_secs(1),
            request: id,
        }
    }

    #[test]
    fn clients_take_turns_whatever_each_has_queued() {
        let t = Duration::from_secs(100);
        let mut a = Admission::new(10_000);
        for id in 0..3 {
            a.offer(w("hammer", 100, t, id)).unwrap();
        }
        a.offer(w("polite", 100, t, 10)).unwrap();
        let order: Vec<u32> = std::iter::from_fn(|| a.pop().map(|w| w.request)).collect();
        assert_eq!(
            order,
            [0, 10, 1, 2],
            "the polite one goes second, not fourth"
        );
        assert_eq!(a.queued_events(), 0);
    }

    #[test]
    fn a_client_over_its_share_while_others_wait_is_refused_and_told_its_place() {
        let t = Duration::from_secs(100);
        let mut a = Admission::new(1_000);
        a.offer(w("polite", 100, t, 0)).unwrap();
        for id in 1..=5 {
            a.offer(w("hammer", 100, t, id)).unwrap(); // 500 = its share of 1,000 with two
        }
        let (why, back) = a.offer(w("hammer", 100, t, 6)).unwrap_err();
        assert_eq!(back.request, 6);
        // Taking turns: the polite one's 100, then the hammer's 500 and this 100.
        assert_eq!(why, Refusal::OverShare { ahead: 700 });
    }

    #[test]
    fn a_full_queue_makes_room_for_a_client_within_its_share_by_pushing_out_the_greedy() {
        let t = Duration::from_secs(100);
        let mut a = Admission::new(1_000);
        for id in 0..10 {
            a.offer(w("hammer", 100, t, id)).unwrap(); // alone, it may fill the queue
        }
        let out = a.offer(w("polite", 100, t, 99)).unwrap();
        let out: Vec<u32> = out.into_iter().map(|w| w.request).collect();
        assert_eq!(out, [9], "the hammer's newest request makes the room");
        assert_eq!(a.queued_events(), 1_000);
        assert_eq!(a.pop().unwrap().request, 0);
        assert_eq!(a.pop().unwrap().request, 99);
    }

    #[test]
    fn a_request_larger_than_the_queue_is_refused_as_such_and_nothing_is_pushed_out() {
        let t = Duration::from_secs(100);
        let mut a = Admission::new(1_000);
        a.offer(w("a", 600, t, 0)).unwrap();
        let (why, _) = a.offer(w("b", 1_001, t, 1)).unwrap_err();
        assert_eq!(why, Refusal::LargerThanQueue { max_queued: 1_000 });
        assert_eq!((a.queued_events(), a.queued_requests()), (600, 1));
    }

    #[test]
    fn expired_requests_leave_and_the_rest_keep_their_turns() {
        let t = Duration::from_secs(100);
        let mut a = Admission::new(1_000);
        a.offer(w("a", 10, t, 0)).unwrap();
        a.offer(w("b", 10, t + Duration::from_secs(5), 1)).unwrap();
        assert_eq!(a.next_deadline(), Some(t + Duration::from_secs(1)));
        let gone = a.take_expired(t + Duration::from_secs(2));
        assert_eq!(gone.iter().map(|w| w.request).collect::<Vec<_>>(), [0]);
        assert_eq!((a.queued_events(), a.clients()), (10, 1));
        assert_eq!(a.head().unwrap().request, 1);
    }
}
