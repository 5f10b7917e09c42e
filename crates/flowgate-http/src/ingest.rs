//! One topic's ingest: a task that takes HTTP publish requests, lets them in by turns
//! ([`Admission`]) as the broker's credit allows, sends each whole request once the topic's
//! one producer holds credit for all of it, and answers only when the broker confirmed every
//! event. One producer per topic, not per client: the topic's room split among several would
//! leave each too little for a whole request. A client's token is checked by the broker
//! itself, with a connection of its own the first time it is seen (again after
//! [`RECHECK`]). A request that finds no room within the admit wait is refused whole (503), and one
//! from a client over its fair share while others wait is refused at once (429); both say when
//! to come back, from the drain rate measured here. Nothing of a refused request was sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate_client::{AnyProducer, ClientError, ClientTls, ProducerConfig, Publish};
use flowgate_core::{Admission, DrainMeter, Event, EventId, Refusal, Waiting};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::status::{Answer, client_error};

/// How long a token the broker accepted for a topic is taken as accepted.
pub const RECHECK: Duration = Duration::from_secs(60);

/// The most accepted tokens remembered per topic.
const MAX_TOKENS: usize = 10_000;

/// How to reach the broker, and how long and how much to let wait.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The broker's address (any scheme the client library knows).
    pub broker: String,
    /// TLS to the broker.
    pub tls: Option<ClientTls>,
    /// How long a request may wait for room before it is refused with 503.
    pub admit_wait: Duration,
    /// The most events waiting for room on one topic, over all clients.
    pub max_queued: u64,
}

/// One publish request.
#[derive(Debug)]
pub struct Request {
    /// Who sent it (fair shares are per client).
    pub client: String,
    /// The bearer token it came with, passed to the broker.
    pub token: Option<String>,
    /// Its events' payloads, with the body line each started on.
    pub events: Vec<(usize, Vec<u8>)>,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Answer>,
}

/// A topic's ingest figures, for `GET /v1/topics/{topic}`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestFigures {
    /// Events confirmed by the broker through this gateway.
    pub accepted_events: u64,
    /// Requests answered 200.
    pub accepted_requests: u64,
    /// Requests refused with 429 (over their client's share).
    pub refused_over_share: u64,
    /// Requests refused with 503 (no room within the admit wait).
    pub refused_no_room: u64,
    /// Events waiting for room now.
    pub queued_events: u64,
    /// Requests waiting for room now.
    pub queued_requests: u64,
    /// Clients with a request waiting now.
    pub waiting_clients: u64,
    /// Events confirmed per second over the last seconds; `None` before any.
    pub drain_per_s: Option<f64>,
}

/// The handle of a topic's ingest task.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Request>,
    figures: Arc<Mutex<IngestFigures>>,
}

impl Ingest {
    /// Starts the task for `topic`.
    pub fn start(config: IngestConfig, topic: String) -> Ingest {
        let (tx, rx) = mpsc::channel(1024);
        let figures = Arc::new(Mutex::new(IngestFigures::default()));
        tokio::spawn(run(config, topic, rx, Arc::clone(&figures)));
        Ingest { tx, figures }
    }

    /// Hands a request to the task; gives it back if the task is gone or too busy to take it.
    pub fn submit(&self, request: Request) -> Result<(), Request> {
        self.tx.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
        })
    }

    /// The figures now.
    pub fn figures(&self) -> IngestFigures {
        self.figures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A request waiting for room: its events, built and costed, and its reply.
struct Pending {
    events: Vec<Event>,
    reply: oneshot::Sender<Answer>,
}

struct Task {
    config: IngestConfig,
    /// The origin of the times given to the queue and the drain meter.
    origin: Instant,
    topic: String,
    /// The topic's producer, connected with the first accepted client's token.
    producer: Option<AnyProducer>,
    /// Tokens the broker accepted for this topic, and when.
    accepted: HashMap<Option<String>, Instant>,
    queue: Admission<Pending>,
    drained: Arc<Mutex<DrainMeter>>,
    figures: Arc<Mutex<IngestFigures>>,
}

async fn run(
    config: IngestConfig,
    topic: String,
    mut rx: mpsc::Receiver<Request>,
    figures: Arc<Mutex<IngestFigures>>,
) {
    let mut task = Task {
        origin: Instant::now(),
        queue: Admission::new(config.max_queued),
        config,
        topic,
        producer: None,
        accepted: HashMap::new(),
        drained: Arc::new(Mutex::new(DrainMeter::default())),
        figures,
    };
    loop {
        task.admit_what_fits().await;
        task.publish_figures();
        let room = task.head_room();
        let deadline = task.queue.next_deadline().map(|d| task.origin + d);
        tokio::select! {
            request = rx.recv() => match request {
                Some(r) => task.offer(r).await,
                None => break,
            },
            Some(result) = room => {
                if let Err(e) = result {
                    task.fail_all(e);
                }
            }
            _ = sleep_until(deadline) => task.expire(),
        }
    }
    if let Some(producer) = task.producer.take() {
        let _ = producer.close().await;
    }
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Task {
    /// Connects the client's producer if need be, checks the events' sizes, and queues the
    /// request, or answers it at once.
    async fn offer(&mut self, r: Request) {
        let largest = match self.check(&r.token).await {
            Ok(largest) => largest,
            Err(e) => {
                let _ = r
                    .reply
                    .send(client_error(&e, r.token.is_some(), &self.topic));
                return;
            }
        };
        if let Some((line, payload)) = r.events.iter().find(|(_, p)| p.len() as u64 > largest) {
            let why = format!(
                "line {line}: an event of {} bytes is over the broker's largest of {largest}",
                payload.len()
            );
            let _ = r.reply.send(Answer::too_large(why));
            return;
        }
        let events: Vec<Event> = r
            .events
            .into_iter()
            .map(|(_, payload)| Event {
                id: EventId::default(),
                key: None,
                created_us: 0,
                payload,
            })
            .collect();
        let now = self.now();
        let waiting = Waiting {
            client: r.client,
            events: events.len() as u64,
            bytes: events.iter().map(Event::size_bytes).sum(),
            deadline: now + self.config.admit_wait,
            request: Pending {
                events,
                reply: r.reply,
            },
        };
        match self.queue.offer(waiting) {
            Ok(pushed_out) => {
                for w in pushed_out {
                    let ahead = self.queue.ahead_of(&w.client, w.events);
                    self.refuse(w, Refusal::OverShare { ahead });
                }
            }
            Err((why, w)) => self.refuse(w, why),
        }
    }

    /// Has the broker check `token` for producing to this topic (once per [`RECHECK`]), and
    /// connects the topic's producer if there is none; returns the largest payload it takes.
    async fn check(&mut self, token: &Option<String>) -> Result<u64, ClientError> {
        let now = Instant::now();
        let fresh = self
            .accepted
            .get(token)
            .is_some_and(|at| now.duration_since(*at) < RECHECK);
        if !fresh || self.producer.is_none() {
            let producer = self.connect(token).await?;
            if self.accepted.len() >= MAX_TOKENS {
                // An open broker accepts any token: keep the table bounded all the same.
                self.accepted.clear();
            }
            self.accepted.insert(token.clone(), now);
            match &self.producer {
                // Only a check: the topic has its producer.
                Some(_) => drop(producer.close().await),
                None => self.producer = Some(producer),
            }
        }
        Ok(self.producer.as_ref().map_or(0, |p| p.largest_payload()))
    }

    async fn connect(&self, token: &Option<String>) -> Result<AnyProducer, ClientError> {
        let mut config = ProducerConfig::new(self.config.broker.clone(), self.topic.clone());
        config.token = token.clone();
        config.tls = self.config.tls.clone();
        let wait = self.config.admit_wait.max(Duration::from_secs(1));
        tokio::time::timeout(wait, AnyProducer::connect(config))
            .await
            .map_err(|_| ClientError::Disconnected)?
    }

    /// Sends every request at the head of the turns that credit covers now.
    async fn admit_what_fits(&mut self) {
        while let Some(head) = self.queue.head() {
            let Some(producer) = &self.producer else {
                break;
            };
            let credit = producer.credit();
            if credit.events < head.events || credit.bytes < head.bytes {
                break;
            }
            let w = self.queue.pop().expect("a head");
            self.send(w).await;
        }
    }

    /// Sends a whole request (credit covers it), then answers it once it is confirmed.
    async fn send(&mut self, w: Waiting<Pending>) {
        let Pending { events, reply } = w.request;
        let count = events.len() as u64;
        let Some(producer) = self.producer.as_mut() else {
            return;
        };
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            match producer.send(event).await {
                Ok(id) => ids.push(id),
                Err(e) => {
                    // The producer failed mid-request; what it sent is resent on a new
                    // connection only while it lives, so say what happened.
                    let _ = reply.send(Answer::unavailable(
                        format!(
                            "the broker connection failed after {} of {count} events: {}",
                            ids.len(),
                            e.reason
                        ),
                        1,
                    ));
                    self.producer = None;
                    return;
                }
            }
        }
        let (first, last) = (ids[0], ids[ids.len() - 1]);
        let confirmed = producer.confirmed_through(last.seq);
        let drained = Arc::clone(&self.drained);
        let figures = Arc::clone(&self.figures);
        let origin = self.origin;
        tokio::spawn(async move {
            let answer = match confirmed.await {
                Ok(()) => {
                    drained
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(origin.elapsed(), count);
                    let mut f = figures.lock().unwrap_or_else(|p| p.into_inner());
                    f.accepted_events += count;
                    f.accepted_requests += 1;
                    Answer::accepted(count, first, last)
                }
                Err(e) => Answer::unavailable(
                    format!("the broker connection failed before it confirmed: {e}"),
                    1,
                ),
            };
            let _ = reply.send(answer);
        });
    }

    /// Resolves when the head request's producer has credit for all of it.
    fn head_room(
        &self,
    ) -> impl std::future::Future<Output = Option<Result<(), ClientError>>> + Send + 'static {
        let wait = self.queue.head().and_then(|head| {
            self.producer
                .as_ref()
                .map(|p| p.room_for(head.events, head.bytes))
        });
        async move {
            match wait {
                Some(w) => Some(w.await),
                None => std::future::pending().await,
            }
        }
    }

    /// The producer failed for good: answer every waiting request (nothing of them was
    /// sent), drop the producer (the next request connects again).
    fn fail_all(&mut self, e: ClientError) {
        self.producer = None;
        while let Some(w) = self.queue.pop() {
            let answer = Answer::unavailable(format!("the broker connection failed: {e}"), 1);
            let _ = w.request.reply.send(answer);
        }
    }

    /// Refuses every request whose admit wait is over.
    fn expire(&mut self) {
        for w in self.queue.take_expired(self.now()) {
            let ahead = self.queue.ahead_of(&w.client, w.events);
            self.refuse(w, Refusal::Full { ahead });
        }
    }

    /// Now, as the queue and the drain meter count time.
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn refuse(&mut self, w: Waiting<Pending>, why: Refusal) {
        let now = self.now();
        let drained = self.drained.lock().unwrap_or_else(|p| p.into_inner());
        let after = |ahead| drained.retry_after(now, ahead, self.config.admit_wait);
        let mut figures = self.figures.lock().unwrap_or_else(|p| p.into_inner());
        let answer = match why {
            Refusal::LargerThanQueue { max_queued } => Answer::too_large(format!(
                "a request of {} events is over the {max_queued} that may wait for room on a topic (--max-queued): send it in smaller requests",
                w.events
            )),
            Refusal::OverShare { ahead } => {
                figures.refused_over_share += 1;
                Answer::over_share(
                    format!(
                        "client '{}' is over its share of topic '{}' while others wait: {ahead} events would go before this request",
                        w.client, self.topic
                    ),
                    after(ahead),
                )
            }
            Refusal::Full { ahead } => {
                figures.refused_no_room += 1;
                Answer::unavailable(
                    format!(
                        "no room on topic '{}' within {} ms; nothing of the request was kept",
                        self.topic,
                        self.config.admit_wait.as_millis()
                    ),
                    after(ahead),
                )
            }
        };
        let _ = w.request.reply.send(answer);
    }

    fn publish_figures(&self) {
        let rate = self
            .drained
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rate(self.now());
        let mut f = self.figures.lock().unwrap_or_else(|p| p.into_inner());
        f.queued_events = self.queue.queued_events();
        f.queued_requests = self.queue.queued_requests() as u64;
        f.waiting_clients = self.queue.clients() as u64;
        f.drain_per_s = rate;
    }
}
