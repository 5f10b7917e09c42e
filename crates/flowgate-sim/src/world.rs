//! The simulated world: a broker (the real `Topic` behind real `ServerSession`s), producers
//! and consumers (the real client sessions) and the links between them, run by one event
//! queue in virtual time. Every step handles one event (a frame arriving, a wake-up, a commit,
//! a crash, a cut), then checks the invariants (`check.rs`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use flowgate_core::{ConnId, Credit, Event, EventId, Overflow, Topic};
use flowgate_proto::session::{ClientSession, Input, ServerLimits, memory};
use flowgate_proto::{
    ConsumerSession, Frame, Hello, ProducerSession, Role, ServerSession, WireEvent,
};

use crate::check::{Report, Violation};
use crate::rng::Rng;
use crate::scenario::{GROUPS, Scenario, group_mode};

/// Who is at the client end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    Producer(usize),
    Consumer(usize),
}

#[derive(Debug)]
enum Ev {
    /// A frame reaches the broker on `conn`.
    Up(ConnId, Frame),
    /// A frame reaches the client of `conn`.
    Down(ConnId, Frame),
    /// The broker notices `conn` is gone (after reading what was in flight).
    Gone(ConnId),
    /// A producer may send again (its rate), or dials.
    Wake(usize),
    Connect(Client),
    /// A consumer's commit of `batch` finishes (if it has not crashed since: `life`).
    Committed(usize, u64, Vec<flowgate_proto::session::Delivery>),
    Crash(usize, u64),
    Cut(usize),
    /// The topic checks its ack deadlines.
    Tick,
    /// A consumer still committing says so (life, the batch's tags), as `SinkDriver` does.
    Progress(usize, u64, Vec<flowgate_proto::session::DeliveryTag>),
}

struct Scheduled(u64, u64, Ev);

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

/// A connection: one `ServerSession`, a delay each way, and whether each end still has it.
struct Conn {
    client: Client,
    server: ServerSession,
    role: Option<Role>,
    delay_ns: u64,
    /// Arrival time of the last frame each way, so each direction stays in order (TCP).
    last_up: u64,
    last_down: u64,
    client_open: bool,
    server_open: bool,
    /// Credit in this connection's frames not yet arrived: grants going down, publishes and
    /// hand-backs going up.
    inflight: Credit,
}

pub(crate) struct ProducerActor {
    pub session: ProducerSession,
    pub conn: Option<ConnId>,
    /// The event it is trying to send.
    pub pending: Option<Event>,
    /// Events not yet handed to the session.
    pub remaining: u64,
    pub sent: u64,
    sizes: Vec<u64>,
    interval_ns: u64,
    stop_ns: Option<u64>,
    wake_at: Option<u64>,
    /// When its current connection was asked for, until its first grant.
    pub connect_at: Option<u64>,
}

pub(crate) struct ConsumerActor {
    pub session: ConsumerSession,
    pub conn: Option<ConnId>,
    /// Bumped by each crash: a commit from an earlier life is void.
    life: u64,
    busy: bool,
    crashed: bool,
    commit_ns: (u64, u64),
}

/// The whole simulated system.
pub struct World {
    pub(crate) scenario: Scenario,
    pub(crate) now_ns: u64,
    base: Instant,
    rng: Rng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    pub(crate) topic: Topic<WireEvent>,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    pub(crate) producers: Vec<ProducerActor>,
    pub(crate) consumers: Vec<ConsumerActor>,
    /// Committed rows: (producer id, seq) → times written, per consumer group.
    pub(crate) rows: Vec<BTreeMap<(u64, u64), u32>>,
    pub(crate) frames_inflight: u64,
    pub(crate) commits_pending: u64,
    pub(crate) steps: u64,
    pub(crate) report: Report,
    /// A `Tick` is scheduled.
    tick_due: bool,
    /// Print every event as it is handled (`--seed N --trace`).
    pub trace: bool,
}

const LIMITS: ServerLimits = ServerLimits {
    max_frame: 1 << 20,
    // Quiet links never time out within a run: deadlines have their own tests
    // (flowgate-proto/tests/sessions.rs); this world is about credit.
    idle_timeout: Duration::from_secs(100_000),
    handshake_timeout: Duration::from_secs(100_000),
};

/// An event's key, for a topic that conflates.
fn wire_key(e: &WireEvent) -> Option<&[u8]> {
    e.key.as_deref()
}

impl World {
    /// The world for `scenario`, nothing run yet.
    pub fn new(scenario: Scenario) -> World {
        // The one clock reading: every session instant is this plus virtual time.
        let base = Instant::now();
        let mut w = World {
            rng: Rng::new(scenario.seed ^ 0x5eed),
            now_ns: 0,
            base,
            queue: BinaryHeap::new(),
            seq: 0,
            topic: Topic::new(scenario.capacity),
            conns: HashMap::new(),
            next_conn: 1,
            producers: Vec::new(),
            consumers: Vec::new(),
            rows: vec![BTreeMap::new(); GROUPS.len()],
            frames_inflight: 0,
            commits_pending: 0,
            steps: 0,
            report: Report::default(),
            tick_due: false,
            trace: false,
            scenario,
        };
        w.topic
            .set_ack_wait(w.scenario.ack_wait_ns.map(Duration::from_nanos));
        w.topic.set_policy(w.scenario.policy, Some(wire_key));
        // With several groups, all exist from the start, as a broker's declared groups do: a
        // group that appeared later would start at the oldest event still held.
        if w.scenario.consumers.iter().any(|c| c.group > 0) {
            for (i, name) in GROUPS.iter().enumerate() {
                let declared = w.topic.declare_group(name, group_mode(i));
                debug_assert!(declared.is_ok(), "{declared:?}");
            }
        }
        for (i, p) in w.scenario.producers.clone().into_iter().enumerate() {
            let hello = Hello::producer("t", i as u64 + 1, LIMITS.max_frame);
            w.producers.push(ProducerActor {
                session: ProducerSession::new(hello, base),
                conn: None,
                pending: None,
                remaining: p.events,
                sent: 0,
                sizes: p.sizes,
                interval_ns: p.interval_ns,
                stop_ns: p.stop_ns,
                wake_at: None,
                connect_at: None,
            });
            w.at(p.start_ns, Ev::Connect(Client::Producer(i)));
        }
        for (j, c) in w.scenario.consumers.clone().into_iter().enumerate() {
            let hello = Hello::consumer("t", GROUPS[c.group], LIMITS.max_frame)
                .with_max_lag(group_mode(c.group).max_lag());
            let session = ConsumerSession::new(hello, c.prefetch, base).expect("prefetch");
            w.consumers.push(ConsumerActor {
                session,
                conn: None,
                life: 0,
                busy: false,
                crashed: false,
                commit_ns: c.commit_ns,
            });
            w.at(c.start_ns, Ev::Connect(Client::Consumer(j)));
            for (at, pause) in c.crashes {
                w.at(at, Ev::Crash(j, pause));
            }
        }
        for (i, at) in w.scenario.cuts.clone() {
            w.at(at, Ev::Cut(i));
        }
        w
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.now_ns)
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled(t, self.seq, ev)));
    }

    /// Runs until everything sent is acked and nothing is left to happen, or a violation.
    pub fn run(&mut self) -> Result<(), Violation> {
        while let Some(Reverse(Scheduled(t, _, ev))) = self.queue.pop() {
            if t > self.scenario.deadline_ns {
                break;
            }
            self.now_ns = t;
            self.steps += 1;
            if self.trace {
                println!("{:>12.6} {:?}", t as f64 / 1e9, brief(&ev));
            }
            // As the broker does before each input: the time, then what it takes back (or
            // the room expired events leave) goes out.
            let before = self.topic.stats();
            self.topic.tick(Duration::from_nanos(t));
            let after = self.topic.stats();
            if after.ack_timeouts > before.ack_timeouts || after.expired > before.expired {
                self.route();
            }
            self.handle(ev)?;
            self.schedule_tick();
            self.check_step()?;
        }
        self.check_end()
    }

    /// While deliveries are outstanding, the topic checks its deadlines four times per ack
    /// wait, and while events wait, their age four times per max age (as the broker ticks its
    /// topics); what it takes back is delivered again.
    fn schedule_tick(&mut self) {
        let s = self.topic.stats();
        let wait = self.scenario.ack_wait_ns.filter(|_| s.unacked > 0);
        let age = self.scenario.policy.max_age.map(|a| a.as_nanos() as u64);
        let age = age.filter(|_| s.ready > 0);
        let Some(every) = wait.into_iter().chain(age).min() else {
            return;
        };
        if !self.tick_due {
            self.tick_due = true;
            self.at(self.now_ns + (every / 4).max(1), Ev::Tick);
        }
    }

    fn handle(&mut self, ev: Ev) -> Result<(), Violation> {
        match ev {
            Ev::Tick => {
                self.tick_due = false;
                self.route();
                Ok(())
            }
            Ev::Progress(j, life, tags) => {
                let c = &mut self.consumers[j];
                if c.life == life && c.busy {
                    c.session.progress(tags);
                    self.flush(Client::Consumer(j));
                }
                Ok(())
            }
            Ev::Up(conn, frame) => self.arrive_up(conn, frame),
            Ev::Down(conn, frame) => self.arrive_down(conn, frame),
            Ev::Gone(conn) => {
                self.detach(conn);
                Ok(())
            }
            Ev::Wake(i) => {
                self.producers[i].wake_at = None;
                self.pump_producer(i);
                self.close_if_done(i);
                Ok(())
            }
            Ev::Connect(client) => {
                self.connect(client);
                Ok(())
            }
            Ev::Committed(j, life, batch) => {
                self.commits_pending -= 1;
                let c = &mut self.consumers[j];
                if c.life != life {
                    return Ok(());
                }
                c.busy = false;
                let group = self.scenario.consumers[j].group;
                for d in &batch {
                    *self.rows[group]
                        .entry((d.event.id.producer, d.event.id.seq))
                        .or_default() += 1;
                }
                c.session.ack(batch.iter().map(|d| d.tag));
                // Now and then a new prefetch, as an adaptive limit sets after a commit; at
                // times below the largest event, which then comes alone.
                if self.scenario.vary_prefetch && self.rng.chance(0.2) {
                    let cap = self.scenario.capacity.bytes;
                    let events = self.rng.range(1, 500);
                    let bytes = self.rng.range(cap / 8, 4 * cap);
                    let _ = c.session.set_prefetch(Credit::new(events, bytes));
                }
                self.flush(Client::Consumer(j));
                self.pump_consumer(j);
                Ok(())
            }
            Ev::Crash(j, pause) => {
                let now = self.now();
                let c = &mut self.consumers[j];
                c.life += 1;
                c.busy = false;
                c.crashed = true;
                if let Some(conn) = c.conn.take() {
                    let _ = c.session.connection_lost(now);
                    self.cut_conn(conn);
                }
                self.at(self.now_ns + pause, Ev::Connect(Client::Consumer(j)));
                Ok(())
            }
            Ev::Cut(i) => {
                let now = self.now();
                let p = &mut self.producers[i];
                if let Some(conn) = p.conn.take() {
                    let retry = p.session.connection_lost(now);
                    self.cut_conn(conn);
                    if let Some(retry) = retry {
                        let at = self.ns_of(retry);
                        self.at(at, Ev::Connect(Client::Producer(i)));
                    }
                }
                Ok(())
            }
        }
    }

    fn ns_of(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.base).as_nanos() as u64).max(self.now_ns)
    }

    fn connect(&mut self, client: Client) {
        // A restart scheduled before the first start (a crash before it connected) finds it
        // connected already.
        let connected = match client {
            Client::Producer(i) => self.producers[i].conn.is_some(),
            Client::Consumer(j) => self.consumers[j].conn.is_some(),
        };
        if connected {
            return;
        }
        let now = self.now();
        let conn = self.next_conn;
        self.next_conn += 1;
        let delay_ns = self
            .rng
            .range(self.scenario.delay_ns.0, self.scenario.delay_ns.1);
        self.conns.insert(
            conn,
            Conn {
                client,
                server: ServerSession::new(LIMITS, now),
                role: None,
                delay_ns,
                last_up: 0,
                last_down: 0,
                client_open: true,
                server_open: true,
                inflight: Credit::ZERO,
            },
        );
        match client {
            Client::Producer(i) => {
                let p = &mut self.producers[i];
                p.session.connect(now);
                p.conn = Some(conn);
                p.connect_at = Some(self.now_ns);
            }
            Client::Consumer(j) => {
                let c = &mut self.consumers[j];
                c.session.connect(now);
                c.conn = Some(conn);
                c.crashed = false;
            }
        }
        self.flush(client);
    }

    /// The client end of `conn` drops it; the broker notices after what is in flight.
    fn cut_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.client_open = false;
            let at = c.last_up.max(self.now_ns) + c.delay_ns;
            self.at(at, Ev::Gone(conn));
        }
    }

    /// Sends what the client's session has to send.
    fn flush(&mut self, client: Client) {
        let now = self.now();
        let (conn, frames) = match client {
            Client::Producer(i) => {
                let p = &mut self.producers[i];
                let frames: Vec<Frame> =
                    std::iter::from_fn(|| p.session.poll_transmit(now)).collect();
                (p.conn, frames)
            }
            Client::Consumer(j) => {
                let c = &mut self.consumers[j];
                let frames: Vec<Frame> =
                    std::iter::from_fn(|| c.session.poll_transmit(now)).collect();
                (c.conn, frames)
            }
        };
        let Some(conn) = conn else { return };
        for frame in frames {
            let c = self.conns.get_mut(&conn).expect("conn");
            c.inflight = c.inflight.saturating_add(credit_of(&frame));
            let at = c.last_up.max(self.now_ns + c.delay_ns);
            c.last_up = at;
            self.frames_inflight += 1;
            self.at(at, Ev::Up(conn, frame));
        }
    }

    fn send_down(&mut self, conn: ConnId, frame: Frame) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.server_open {
            return;
        }
        c.inflight = c.inflight.saturating_add(credit_of(&frame));
        let at = c.last_down.max(self.now_ns + c.delay_ns);
        c.last_down = at;
        self.frames_inflight += 1;
        self.at(at, Ev::Down(conn, frame));
    }

    /// Removes a frame's credit from its connection's in-flight count as it arrives.
    fn landed(&mut self, conn: ConnId, frame: &Frame) {
        self.frames_inflight -= 1;
        let credit = credit_of(frame);
        let c = self.conns.get_mut(&conn).expect("conn");
        c.inflight = Credit::new(
            c.inflight.events - credit.events,
            c.inflight.bytes - credit.bytes,
        );
    }

    /// The credit the producers hold plus what is in flight, over the connections the topic
    /// still counts: at most what the topic counts as granted.
    pub(crate) fn credit_outside(&self) -> Credit {
        let mut sum = Credit::ZERO;
        for (id, c) in &self.conns {
            if !c.server_open {
                continue;
            }
            sum = sum.saturating_add(c.inflight);
            if let Client::Producer(i) = c.client
                && self.producers[i].conn == Some(*id)
            {
                sum = sum.saturating_add(self.producers[i].session.credit());
            }
        }
        sum
    }

    fn arrive_up(&mut self, conn: ConnId, frame: Frame) -> Result<(), Violation> {
        self.landed(conn, &frame);
        let now = self.now();
        let c = self.conns.get_mut(&conn).expect("conn");
        if !c.server_open {
            return Ok(());
        }
        let input = match c.server.handle_frame(now, frame) {
            Ok(Some(input)) => input,
            Ok(None) => return Ok(()),
            Err(r) => {
                let detail = format!("broker refused conn {conn}: {} {}", r.code, r.message);
                return Err(self.violation("refusal", detail));
            }
        };
        if let Input::Hello(hello) = &input {
            c.role = Some(hello.role);
        }
        if input == Input::Leave {
            self.detach(conn);
            return Ok(());
        }
        let mut out = Vec::new();
        let result = memory::apply(&mut self.topic, &c.server, conn, input, &mut out);
        self.send_all(out);
        if let Err(e) = result {
            return Err(self.violation("refusal", format!("the topic refused conn {conn}: {e}")));
        }
        Ok(())
    }

    /// Sends the topic's grants and deliveries.
    fn route(&mut self) {
        let mut out = Vec::new();
        memory::route(&mut self.topic, &mut out);
        self.send_all(out);
    }

    fn send_all(&mut self, frames: Vec<(ConnId, Frame)>) {
        for (to, frame) in frames {
            if matches!(frame, Frame::Error(_)) {
                self.report.notices += 1;
            }
            self.send_down(to, frame);
        }
    }

    fn detach(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.server_open = false;
        match c.role.take() {
            Some(Role::Producer) => self.topic.detach_producer(conn),
            Some(Role::Consumer) => self.topic.detach_consumer(conn),
            None => {}
        }
        self.route();
    }

    fn arrive_down(&mut self, conn: ConnId, frame: Frame) -> Result<(), Violation> {
        self.landed(conn, &frame);
        let now = self.now();
        let c = self.conns.get(&conn).expect("conn");
        if !c.client_open {
            return Ok(());
        }
        let client = c.client;
        let granted = matches!(frame, Frame::Credit(_));
        let result = match client {
            Client::Producer(i) => self.producers[i].session.handle_frame(now, frame),
            Client::Consumer(j) => self.consumers[j].session.handle_frame(now, frame),
        };
        if let Err(e) = result {
            return Err(self.violation("session", format!("{client:?} failed on conn {conn}: {e}")));
        }
        match client {
            Client::Producer(i) => {
                if granted && let Some(since) = self.producers[i].connect_at.take() {
                    self.report.first_grant_ns.push(self.now_ns - since);
                }
                while self.producers[i].session.poll_event().is_some() {}
                self.pump_producer(i);
                self.close_if_done(i);
            }
            Client::Consumer(j) => {
                while self.consumers[j].session.poll_event().is_some() {}
                self.pump_consumer(j);
                self.flush(client);
            }
        }
        Ok(())
    }

    /// A producer sends what its credit allows, at its rate.
    fn pump_producer(&mut self, i: usize) {
        let p = &mut self.producers[i];
        if !p.session.is_connected() || p.wake_at.is_some() {
            return;
        }
        loop {
            if p.stop_ns.is_some_and(|stop| self.now_ns >= stop) {
                p.remaining = 0;
            }
            if p.pending.is_none() && p.remaining > 0 {
                let size = p.sizes[self.rng.range(0, p.sizes.len() as u64 - 1) as usize];
                p.remaining -= 1;
                // Three keys when the topic conflates, so events replace each other.
                let key = (self.scenario.policy.overflow == Overflow::Conflate)
                    .then(|| vec![(p.sent % 3) as u8]);
                p.pending = Some(Event {
                    id: EventId::default(),
                    key,
                    created_us: 1,
                    payload: vec![0; size as usize],
                });
            }
            let Some(event) = p.pending.take() else { break };
            let bytes = event.size_bytes();
            match p.session.send(event) {
                Ok(_) => {
                    p.sent += 1;
                    if p.interval_ns > 0 {
                        let at = self.now_ns + p.interval_ns;
                        p.wake_at = Some(at);
                        self.seq += 1;
                        self.queue
                            .push(Reverse(Scheduled(at, self.seq, Ev::Wake(i))));
                        break;
                    }
                }
                Err(event) => {
                    p.pending = Some(event);
                    p.session.wait_for(bytes);
                    break;
                }
            }
        }
        self.flush(Client::Producer(i));
    }

    /// A producer with nothing left to send closes once everything is confirmed, as the
    /// client's `close()` does: its connection ends and the topic takes back its credit.
    fn close_if_done(&mut self, i: usize) {
        let p = &mut self.producers[i];
        if p.remaining > 0 || p.pending.is_some() {
            return;
        }
        p.session.close();
        if p.session.is_finished()
            && let Some(conn) = p.conn.take()
        {
            self.cut_conn(conn);
        }
    }

    /// A consumer takes what it has and commits it, one batch at a time.
    fn pump_consumer(&mut self, j: usize) {
        let c = &mut self.consumers[j];
        if c.busy || c.crashed || !c.session.has_deliveries() {
            return;
        }
        let batch = c.session.take();
        c.busy = true;
        let took = self.rng.range(c.commit_ns.0, c.commit_ns.1);
        let life = c.life;
        self.commits_pending += 1;
        // A commit longer than a third of the ack wait reports progress every third of it.
        if let Some(wait) = self.scenario.ack_wait_ns {
            let every = (wait / 3).max(1);
            let tags: Vec<_> = batch.iter().map(|d| d.tag).collect();
            for k in 1..=took / every {
                let at = self.now_ns + k * every;
                self.at(at, Ev::Progress(j, life, tags.clone()));
            }
        }
        self.at(self.now_ns + took, Ev::Committed(j, life, batch));
        self.flush(Client::Consumer(j));
    }

    pub(crate) fn violation(&self, rule: &'static str, detail: String) -> Violation {
        Violation {
            seed: self.scenario.seed,
            step: self.steps,
            at_ns: self.now_ns,
            rule,
            detail,
        }
    }

    /// Events each producer sent (paid for with credit), in producer order.
    pub fn sent(&self) -> Vec<u64> {
        self.producers.iter().map(|p| p.sent).collect()
    }

    /// The topic's peak of events and bytes held at once.
    pub fn topic_peak(&self) -> Credit {
        let s = self.topic.stats();
        Credit::new(s.peak_events, s.peak_bytes)
    }

    /// How many steps ran.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Figures of the run.
    pub fn report(&self) -> &Report {
        &self.report
    }
}

/// The credit a frame carries: granted (`CREDIT`), spent (`PUBLISH`) or handed back
/// (`BLOCKED`).
fn credit_of(frame: &Frame) -> Credit {
    match frame {
        Frame::Publish(p) => Credit::new(
            p.events.len() as u64,
            p.events.iter().map(WireEvent::credit_bytes).sum(),
        ),
        Frame::Blocked(b) => b.returned,
        Frame::Credit(g) => g.credit,
        _ => Credit::ZERO,
    }
}

/// An event without its payloads, for traces.
fn brief(ev: &Ev) -> String {
    let frame = |f: &Frame| match f {
        Frame::Publish(p) => format!("PUBLISH {} events", p.events.len()),
        Frame::Deliver(d) => format!("DELIVER {} events", d.deliveries.len()),
        Frame::Credit(g) => format!("CREDIT {}", g.credit),
        Frame::Blocked(b) => format!("BLOCKED returned {} need {}", b.returned, b.need_bytes),
        Frame::Request(r) => format!("REQUEST {}", r.credit),
        Frame::Confirm(c) => format!("CONFIRM {}", c.up_to_seq),
        Frame::Refused(r) => format!("REFUSED {}..={}", r.from_seq, r.to_seq),
        Frame::Welcome(w) if !w.refused.is_empty() => {
            format!("WELCOME resume {} refused {:?}", w.resume_seq, w.refused)
        }
        Frame::Ack(a) => format!("ACK {}", a.items.len()),
        other => other.frame_type().name().to_string(),
    };
    match ev {
        Ev::Up(c, f) => format!("up   conn {c}: {}", frame(f)),
        Ev::Down(c, f) => format!("down conn {c}: {}", frame(f)),
        Ev::Committed(j, life, b) => format!("consumer {j} (life {life}) committed {}", b.len()),
        other => format!("{other:?}"),
    }
}
