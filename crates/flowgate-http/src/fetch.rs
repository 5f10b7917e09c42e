//! One consumer group's HTTP consumers: a task that holds one consumer of the group and hands
//! its deliveries to `fetch` requests, and passes their `ack` and `nack` on. It receives from
//! the broker only while a fetch waits and nothing is buffered, so an HTTP consumer that
//! stops fetching stops the group's demand and, through the topic, slows the producers. A
//! delivery fetched and never settled goes back to the group at the ack deadline: the broker
//! takes it back, and the gateway, told the same ack wait, forgets its tag and nacks it, which
//! also shows the broker this consumer is alive (a consumer that let a delivery pass its
//! deadline gets nothing more until it settles something). A delivery received and not
//! fetched by then goes the same way.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use flowgate_client::{AnyConsumer, ClientTls, ConsumerConfig, Delivery, DeliveryTag, Subscribe};
use flowgate_core::{Credit, EventId};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::status::{Answer, client_error};

/// A group consumer closes after this long without a request; what it holds unsettled goes
/// back to the group.
const IDLE: Duration = Duration::from_secs(60);

/// How a group's consumer reaches the broker.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The broker's address.
    pub broker: String,
    /// TLS to the broker.
    pub tls: Option<ClientTls>,
    /// What the consumer asks for ahead of the fetches.
    pub prefetch: Credit,
    /// The group's ack wait on the broker; `None`: none.
    pub ack_wait: Option<Duration>,
}

/// One fetch: at most `max` events and `max_bytes` of payload (at least one event), waiting up
/// to `wait` for the first.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Events.
    pub max: u64,
    /// Payload bytes.
    pub max_bytes: u64,
    /// How long to wait for a first event.
    pub wait: Duration,
}

enum Command {
    Fetch(FetchLimits, oneshot::Sender<Answer>),
    Settle {
        ack: bool,
        tags: Vec<u64>,
        reply: oneshot::Sender<Answer>,
    },
}

/// The handle of a group's task.
#[derive(Clone)]
pub struct Group {
    tx: mpsc::Sender<Command>,
}

impl Group {
    /// Connects a consumer of `group` on `topic` with `token` and starts its task; a refusal
    /// comes back as the answer to give.
    pub async fn connect(
        config: &GroupConfig,
        topic: &str,
        group: &str,
        token: Option<String>,
    ) -> Result<Group, Answer> {
        let mut c = ConsumerConfig::new(config.broker.clone(), topic, group);
        c.prefetch = config.prefetch;
        c.tls = config.tls.clone();
        let had_token = token.is_some();
        c.token = token;
        let consumer = tokio::time::timeout(Duration::from_secs(5), AnyConsumer::connect(c))
            .await
            .map_err(|_| Answer::unavailable("the broker did not answer within 5 s", 1))?
            .map_err(|e| client_error(&e, had_token, topic))?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(run(consumer, rx, config.ack_wait));
        Ok(Group { tx })
    }

    /// Whether the task still runs.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Fetches.
    pub async fn fetch(&self, limits: FetchLimits) -> Answer {
        self.ask(|reply| Command::Fetch(limits, reply)).await
    }

    /// Acknowledges (`ack`) or refuses the deliveries of `tags`.
    pub async fn settle(&self, ack: bool, tags: Vec<u64>) -> Answer {
        self.ask(|reply| Command::Settle { ack, tags, reply }).await
    }

    async fn ask(&self, command: impl FnOnce(oneshot::Sender<Answer>) -> Command) -> Answer {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(command(reply)).await.is_err() {
            return Answer::unavailable("the group's consumer closed; ask again", 1);
        }
        answer
            .await
            .unwrap_or_else(|_| Answer::unavailable("the group's consumer closed; ask again", 1))
    }
}

struct Task {
    consumer: AnyConsumer,
    /// Received, not yet fetched, and when.
    buffer: VecDeque<(Delivery, Instant)>,
    /// Fetched, not yet settled: the HTTP tag's event, delivery tag, and when fetched.
    outstanding: HashMap<u64, (EventId, DeliveryTag, Instant)>,
    /// The HTTP tag each outstanding event was last fetched with.
    tag_of: HashMap<EventId, u64>,
    next_tag: u64,
    /// Fetches waiting for a first event, oldest first, with their deadlines.
    fetches: VecDeque<(FetchLimits, Instant, oneshot::Sender<Answer>)>,
}

async fn run(consumer: AnyConsumer, mut rx: mpsc::Receiver<Command>, ack_wait: Option<Duration>) {
    let mut task = Task {
        consumer,
        buffer: VecDeque::new(),
        outstanding: HashMap::new(),
        tag_of: HashMap::new(),
        next_tag: 1,
        fetches: VecDeque::new(),
    };
    let mut last_request = Instant::now();
    // Looks for deliveries past the ack wait a few times per wait.
    let sweep_every = ack_wait.map_or(IDLE, |w| (w / 4).max(Duration::from_millis(50)));
    let mut sweep = tokio::time::interval(sweep_every);
    loop {
        task.answer_fetches();
        let receiving = !task.fetches.is_empty() && task.buffer.is_empty();
        let deadline = task.fetches.iter().map(|(_, at, _)| *at).min();
        tokio::select! {
            command = rx.recv() => {
                last_request = Instant::now();
                match command {
                    Some(Command::Fetch(limits, reply)) => {
                        task.fetches.push_back((limits, Instant::now() + limits.wait, reply));
                    }
                    Some(Command::Settle { ack, tags, reply }) => {
                        let _ = reply.send(task.settle(ack, tags));
                    }
                    None => break,
                }
            }
            received = task.consumer.recv(), if receiving => match received {
                Ok(Some(batch)) => task.receive(batch),
                Ok(None) | Err(_) => break,
            },
            _ = sweep.tick() => {
                if let Some(wait) = ack_wait {
                    task.give_back_overdue(wait);
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or(last_request + IDLE)) => {
                if deadline.is_none() && last_request.elapsed() >= IDLE {
                    break;
                }
                task.answer_expired();
            }
        }
    }
    for (_, _, reply) in task.fetches.drain(..) {
        let _ = reply.send(Answer::unavailable(
            "the group's consumer lost the broker; fetch again",
            1,
        ));
    }
    let _ = task.consumer.close().await;
}

impl Task {
    /// Buffers a batch; a redelivery (the broker took an event back at its ack deadline)
    /// replaces a copy of the same event still buffered, whose tag is void now.
    fn receive(&mut self, batch: Vec<Delivery>) {
        for d in batch {
            if d.tag.attempt() > 1 {
                self.buffer.retain(|(b, _)| b.event.id != d.event.id);
            }
            self.buffer.push_back((d, Instant::now()));
        }
    }

    /// Nacks every delivery fetched or received more than `wait` ago and not settled: the
    /// broker has taken it back (or does now), and the nack tells it this consumer is alive.
    fn give_back_overdue(&mut self, wait: Duration) {
        let now = Instant::now();
        let overdue = |at: &Instant| now.duration_since(*at) >= wait;
        let mut back = Vec::new();
        let tags: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, (_, _, at))| overdue(at))
            .map(|(tag, _)| *tag)
            .collect();
        for tag in tags {
            if let Some((id, delivery, _)) = self.outstanding.remove(&tag) {
                self.tag_of.remove(&id);
                back.push(delivery);
            }
        }
        while self.buffer.front().is_some_and(|(_, at)| overdue(at)) {
            let (d, _) = self.buffer.pop_front().expect("a front");
            back.push(d.tag);
        }
        if !back.is_empty() {
            self.consumer.nack(back);
        }
    }

    /// Answers waiting fetches from the buffer, oldest first.
    fn answer_fetches(&mut self) {
        while !self.buffer.is_empty() {
            let Some((limits, _, reply)) = self.fetches.pop_front() else {
                return;
            };
            let events = self.take(limits);
            let _ = reply.send(events_answer(events));
        }
    }

    /// Fetches whose wait is over get what there is: nothing.
    fn answer_expired(&mut self) {
        let now = Instant::now();
        while self.fetches.front().is_some_and(|(_, at, _)| *at <= now) {
            let (_, _, reply) = self.fetches.pop_front().expect("a front");
            let _ = reply.send(events_answer(Vec::new()));
        }
    }

    /// Takes up to the fetch's limits from the buffer, giving each a fresh HTTP tag.
    fn take(&mut self, limits: FetchLimits) -> Vec<Value> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        while let Some((d, _)) = self.buffer.front() {
            let size = d.event.payload.len() as u64;
            let full = out.len() as u64 >= limits.max
                || (!out.is_empty() && bytes + size > limits.max_bytes);
            if full {
                break;
            }
            let (d, _) = self.buffer.pop_front().expect("a front");
            bytes += size;
            let tag = self.next_tag;
            self.next_tag += 1;
            // Fetched again after the broker took it back: the old tag is void.
            if let Some(old) = self.tag_of.insert(d.event.id, tag) {
                self.outstanding.remove(&old);
            }
            out.push(json!({
                "tag": tag,
                "attempt": d.tag.attempt(),
                "payload": payload_value(&d.event.payload),
            }));
            self.outstanding
                .insert(tag, (d.event.id, d.tag, Instant::now()));
        }
        out
    }

    fn settle(&mut self, ack: bool, tags: Vec<u64>) -> Answer {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for tag in tags {
            match self.outstanding.remove(&tag) {
                Some((id, delivery, _)) => {
                    self.tag_of.remove(&id);
                    known.push(delivery);
                }
                None => unknown.push(tag),
            }
        }
        let count = known.len();
        if ack {
            self.consumer.ack(known);
        } else {
            self.consumer.nack(known);
        }
        let verb = if ack { "acked" } else { "nacked" };
        Answer {
            status: axum::http::StatusCode::OK,
            body: json!({ verb: count, "unknown": unknown }),
            retry_after: None,
        }
    }
}

fn events_answer(events: Vec<Value>) -> Answer {
    Answer {
        status: axum::http::StatusCode::OK,
        body: json!({ "events": events }),
        retry_after: None,
    }
}

/// A payload as the JSON value it holds; one that is not JSON (published natively) as a
/// string of its text.
fn payload_value(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}
