//! An in-memory world for the sessions: client sessions and a broker made of `ServerSession`s
//! around one core `Topic`, joined by byte pipes that go through the real encoder and a
//! `FrameDecoder` with each receiver's frame limit, all on a fake clock. No sockets, no sleeps,
//! no threads: each step moves what is written to where it is read, in a fixed order.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flowgate_core::{ConnId, Credit, Topic};
use flowgate_proto::session::{ClientSession, Input, ServerLimits, heartbeat_every, memory};
use flowgate_proto::{
    ConsumerSession, ErrorCode, ErrorFrame, Frame, FrameDecoder, Heartbeat, Hello, ProducerSession,
    Role, ServerSession, SessionError, WireEvent, encode,
};

/// One direction of a connection: bytes written, not yet read.
#[derive(Default)]
struct Pipe {
    bytes: BytesMut,
    /// Frames that went through, by type name, for assertions.
    sent: Vec<&'static str>,
}

impl Pipe {
    fn write(&mut self, frame: &Frame) {
        self.sent.push(frame.frame_type().name());
        encode(frame, &mut self.bytes);
    }
}

/// The broker's end of one connection.
struct ServerConn {
    session: ServerSession,
    decoder: FrameDecoder,
    /// Client to broker.
    up: Pipe,
    /// Broker to client.
    down: Pipe,
    role: Option<Role>,
    last_write: Instant,
    /// The broker ended it, or the client went away.
    closed: bool,
    /// The broker writes nothing more (a hung broker).
    silenced: bool,
    /// The broker does not read this connection for now (a slow one); its bytes wait.
    held: bool,
    /// Nothing the client writes arrives (a black hole).
    deaf: bool,
}

/// A client: a producer or a consumer session, its connection if any, and its decoder.
pub struct Client<S> {
    pub session: S,
    pub conn: Option<ConnId>,
    decoder: FrameDecoder,
    /// The error that ended the last connection, if one did.
    pub last_error: Option<SessionError>,
    /// When the session asked to dial again.
    pub retry_at: Option<Instant>,
}

/// The world.
pub struct World {
    pub now: Instant,
    pub limits: ServerLimits,
    pub topic: Topic<WireEvent>,
    conns: BTreeMap<ConnId, ServerConn>,
    next_conn: ConnId,
    pub producers: Vec<Client<ProducerSession>>,
    pub consumers: Vec<Client<ConsumerSession>>,
    /// Every refusal the broker sent, in order.
    pub refusals: Vec<(ConnId, ErrorCode, String)>,
}

/// Broker limits for tests: 1 MiB frames, a 3 s idle deadline, a 2 s handshake deadline.
pub fn limits() -> ServerLimits {
    ServerLimits {
        max_frame: 1 << 20,
        idle_timeout: Duration::from_secs(3),
        handshake_timeout: Duration::from_secs(2),
    }
}

impl World {
    /// A broker with one topic of `capacity`; the clock starts at an arbitrary instant.
    pub fn new(capacity: Credit, limits: ServerLimits) -> Self {
        World {
            // The one reading of a real clock: every later instant is this plus fake time.
            #[allow(clippy::disallowed_methods)]
            now: Instant::now(),
            limits,
            topic: Topic::new(capacity),
            conns: BTreeMap::new(),
            next_conn: 1,
            producers: Vec::new(),
            consumers: Vec::new(),
            refusals: Vec::new(),
        }
    }

    /// Adds a producer with id `producer_id` and a frame limit of `max_frame`; not connected.
    pub fn add_producer(&mut self, producer_id: u64, max_frame: u32) -> usize {
        let hello = Hello::producer("orders", producer_id, max_frame);
        self.producers.push(Client::new(
            ProducerSession::new(hello, self.now),
            max_frame,
        ));
        self.producers.len() - 1
    }

    /// Adds a consumer of group "db" with `prefetch`; not connected.
    pub fn add_consumer(&mut self, prefetch: Credit, max_frame: u32) -> usize {
        self.add_consumer_of("db", prefetch, max_frame)
    }

    /// Adds a consumer of `group` with `prefetch`; not connected.
    pub fn add_consumer_of(&mut self, group: &str, prefetch: Credit, max_frame: u32) -> usize {
        self.add_consumer_lagging(group, None, prefetch, max_frame)
    }

    /// Adds a consumer of `group`, best effort with `max_lag` (`None`: blocking); not connected.
    pub fn add_consumer_lagging(
        &mut self,
        group: &str,
        max_lag: Option<u64>,
        prefetch: Credit,
        max_frame: u32,
    ) -> usize {
        let hello = Hello::consumer("orders", group, max_frame).with_max_lag(max_lag);
        let session = ConsumerSession::new(hello, prefetch, self.now).expect("prefetch");
        self.consumers.push(Client::new(session, max_frame));
        self.consumers.len() - 1
    }

    /// Starts a connection for producer `i` (the session queues `HELLO`).
    pub fn connect_producer(&mut self, i: usize) {
        let conn = self.open_conn();
        let p = &mut self.producers[i];
        p.session.connect(self.now);
        p.conn = Some(conn);
    }

    /// Starts a connection for consumer `i`.
    pub fn connect_consumer(&mut self, i: usize) {
        let conn = self.open_conn();
        let c = &mut self.consumers[i];
        c.session.connect(self.now);
        c.conn = Some(conn);
    }

    fn open_conn(&mut self) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        let server = ServerConn {
            session: ServerSession::new(self.limits, self.now),
            decoder: FrameDecoder::new(self.limits.max_frame),
            up: Pipe::default(),
            down: Pipe::default(),
            role: None,
            last_write: self.now,
            closed: false,
            silenced: false,
            held: false,
            deaf: false,
        };
        self.conns.insert(conn, server);
        conn
    }

    /// Producer `i`'s connection drops, as a reset would: the client loses it at once; bytes
    /// it wrote that the broker has not read stay readable when `keep_in_flight`, and are
    /// read before the broker notices the loss.
    pub fn cut_producer(&mut self, i: usize, keep_in_flight: bool) {
        let now = self.now;
        let p = &mut self.producers[i];
        if let Some(conn) = p.conn.take() {
            p.retry_at = p.session.connection_lost(now);
            p.decoder = FrameDecoder::new(p.decoder.max_frame());
            self.end_conn(conn, keep_in_flight);
        }
    }

    /// Consumer `i`'s connection drops.
    pub fn cut_consumer(&mut self, i: usize) {
        let now = self.now;
        let c = &mut self.consumers[i];
        if let Some(conn) = c.conn.take() {
            c.retry_at = c.session.connection_lost(now);
            c.decoder = FrameDecoder::new(c.decoder.max_frame());
            self.end_conn(conn, false);
        }
    }

    fn end_conn(&mut self, conn: ConnId, keep_in_flight: bool) {
        if let Some(server) = self.conns.get_mut(&conn) {
            if !keep_in_flight {
                server.up.bytes.clear();
            }
            server.down.bytes.clear();
            server.closed = true;
        }
    }

    /// Frames that went from the client to the broker on `conn`, by type name.
    pub fn sent_up(&self, conn: ConnId) -> Vec<&'static str> {
        self.conns[&conn].up.sent.clone()
    }

    /// Frames that went from the broker to the client on `conn`, by type name.
    pub fn sent_down(&self, conn: ConnId) -> Vec<&'static str> {
        self.conns[&conn].down.sent.clone()
    }

    /// Moves everything until nothing moves: clients write, the broker reads and answers,
    /// clients read.
    pub fn run(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the world did not settle in 10,000 steps");
    }

    /// Lets `d` pass in steps of at most `tick`, with deadlines handled and everything moved
    /// after each step.
    pub fn advance(&mut self, d: Duration, tick: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = (self.now + tick).min(end);
            self.timeouts();
            self.run();
        }
    }

    /// One round; true if anything moved.
    fn step(&mut self) -> bool {
        let mut moved = false;
        let now = self.now;
        for p in &mut self.producers {
            if let Some(conn) = p.conn {
                let server = self.conns.get_mut(&conn).expect("conn");
                while let Some(frame) = p.session.poll_transmit(now) {
                    if !server.deaf {
                        server.up.write(&frame);
                    }
                    moved = true;
                }
            }
        }
        for c in &mut self.consumers {
            if let Some(conn) = c.conn {
                let server = self.conns.get_mut(&conn).expect("conn");
                while let Some(frame) = c.session.poll_transmit(now) {
                    if !server.deaf {
                        server.up.write(&frame);
                    }
                    moved = true;
                }
            }
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            moved |= self.serve(conn);
        }
        moved |= self.route_actions();
        for i in 0..self.producers.len() {
            moved |= self.read_down(Side::Producer(i));
        }
        for i in 0..self.consumers.len() {
            moved |= self.read_down(Side::Consumer(i));
        }
        moved
    }

    /// Deadlines: the broker's sessions, its heartbeats, the clients'.
    fn timeouts(&mut self) {
        let now = self.now;
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            let server = self.conns.get_mut(&conn).expect("conn");
            if server.closed {
                continue;
            }
            if let Err(r) = server.session.handle_timeout(now) {
                self.refuse(conn, r.code, r.message);
                continue;
            }
            let beat = heartbeat_every(self.limits.idle_timeout);
            if server.role.is_some() && !server.silenced && now >= server.last_write + beat {
                server.down.write(&Frame::Heartbeat(Heartbeat));
                server.last_write = now;
            }
        }
        for i in 0..self.producers.len() {
            let p = &mut self.producers[i];
            if p.conn.is_some()
                && p.session.poll_timeout().is_some_and(|t| t <= now)
                && let Err(e) = p.session.handle_timeout(now)
            {
                self.lose(Side::Producer(i), e);
            }
        }
        for i in 0..self.consumers.len() {
            let c = &mut self.consumers[i];
            if c.conn.is_some()
                && c.session.poll_timeout().is_some_and(|t| t <= now)
                && let Err(e) = c.session.handle_timeout(now)
            {
                self.lose(Side::Consumer(i), e);
            }
        }
    }

    /// The broker reads what came on `conn`.
    fn serve(&mut self, conn: ConnId) -> bool {
        let now = self.now;
        let mut moved = false;
        loop {
            let server = self.conns.get_mut(&conn).expect("conn");
            if server.up.bytes.is_empty() || server.held {
                break;
            }
            let frame = match server.decoder.decode(&mut server.up.bytes) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    server.up.bytes.clear();
                    self.refuse(conn, e.code(), e.to_string());
                    return true;
                }
            };
            moved = true;
            match server.session.handle_frame(now, frame) {
                Ok(Some(input)) => self.apply(conn, input),
                Ok(None) => {}
                Err(r) => {
                    self.refuse(conn, r.code, r.message);
                    return true;
                }
            }
        }
        let server = self.conns.get_mut(&conn).expect("conn");
        if server.closed && server.up.bytes.is_empty() && !server.held {
            // The broker notices the loss once it has read everything before it.
            self.detach(conn);
        }
        moved
    }

    /// What the broker does with an input: the topic decides.
    fn apply(&mut self, conn: ConnId, input: Input) {
        let server = self.conns.get_mut(&conn).expect("conn");
        if let Input::Hello(hello) = &input {
            server.role = Some(hello.role);
        }
        if input == Input::Leave {
            self.detach(conn);
            return;
        }
        let mut out = Vec::new();
        let result = memory::apply(&mut self.topic, &server.session, conn, input, &mut out);
        for (to, frame) in out {
            self.write_down(to, frame);
        }
        if let Err(e) = result {
            self.refuse(conn, ErrorCode::of_topic_error(&e), e.to_string());
        }
    }

    /// Sends the topic's grants and deliveries.
    fn route_actions(&mut self) -> bool {
        let mut out = Vec::new();
        memory::route(&mut self.topic, &mut out);
        let moved = !out.is_empty();
        for (to, frame) in out {
            self.write_down(to, frame);
        }
        moved
    }

    fn write_down(&mut self, conn: ConnId, frame: Frame) {
        let now = self.now;
        if let Some(server) = self.conns.get_mut(&conn)
            && !server.closed
            && !server.silenced
        {
            server.down.write(&frame);
            server.last_write = now;
        }
    }

    /// The broker ends `conn` with an `ERROR`.
    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: String) {
        self.refusals.push((conn, code, message.clone()));
        self.write_down(conn, error(code, message));
        self.detach(conn);
        if let Some(server) = self.conns.get_mut(&conn) {
            server.closed = true;
            server.up.bytes.clear();
        }
    }

    fn detach(&mut self, conn: ConnId) {
        let Some(server) = self.conns.get_mut(&conn) else {
            return;
        };
        match server.role.take() {
            Some(Role::Producer) => self.topic.detach_producer(conn),
            Some(Role::Consumer) => self.topic.detach_consumer(conn),
            None => {}
        }
    }

    /// A client reads what came down its connection.
    fn read_down(&mut self, side: Side) -> bool {
        let now = self.now;
        let conn = match side {
            Side::Producer(i) => self.producers[i].conn,
            Side::Consumer(i) => self.consumers[i].conn,
        };
        let Some(conn) = conn else { return false };
        let mut moved = false;
        loop {
            let server = self.conns.get_mut(&conn).expect("conn");
            let decoded = match side {
                Side::Producer(i) => self.producers[i].decoder.decode(&mut server.down.bytes),
                Side::Consumer(i) => self.consumers[i].decoder.decode(&mut server.down.bytes),
            };
            let result = match decoded {
                Ok(Some(frame)) => {
                    moved = true;
                    match side {
                        Side::Producer(i) => self.producers[i].session.handle_frame(now, frame),
                        Side::Consumer(i) => self.consumers[i].session.handle_frame(now, frame),
                    }
                }
                Ok(None) => {
                    if server.closed && server.down.bytes.is_empty() {
                        // The broker closed after its last frame.
                        self.lose(side, SessionError::Protocol("broker closed".into()));
                        return true;
                    }
                    return moved;
                }
                Err(e) => Err(SessionError::Protocol(e.to_string())),
            };
            if let Err(e) = result {
                self.lose(side, e);
                return true;
            }
        }
    }

    /// A client's connection ends with `e`.
    fn lose(&mut self, side: Side, e: SessionError) {
        let now = self.now;
        let conn = match side {
            Side::Producer(i) => {
                let p = &mut self.producers[i];
                p.retry_at = p.session.connection_lost(now);
                p.last_error = Some(e);
                p.decoder = FrameDecoder::new(p.decoder.max_frame());
                p.conn.take()
            }
            Side::Consumer(i) => {
                let c = &mut self.consumers[i];
                c.retry_at = c.session.connection_lost(now);
                c.last_error = Some(e);
                c.decoder = FrameDecoder::new(c.decoder.max_frame());
                c.conn.take()
            }
        };
        if let Some(conn) = conn {
            self.end_conn(conn, false);
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Producer(usize),
    Consumer(usize),
}

impl<S> Client<S> {
    fn new(session: S, max_frame: u32) -> Self {
        Client {
            session,
            conn: None,
            decoder: FrameDecoder::new(max_frame),
            last_error: None,
            retry_at: None,
        }
    }
}

fn error(code: ErrorCode, message: String) -> Frame {
    Frame::Error(ErrorFrame { code, message })
}

/// An event of `payload` bytes (no key), as an application would hand it to `send`.
pub fn event(payload: usize) -> flowgate_core::Event {
    flowgate_core::Event {
        id: flowgate_core::EventId::default(),
        key: None,
        created_us: 1,
        payload: vec![7; payload],
    }
}

impl World {
    /// Writes `frame` on `conn` as though its client had.
    pub fn inject_up(&mut self, conn: ConnId, frame: &Frame) {
        self.conns.get_mut(&conn).expect("conn").up.write(frame);
    }

    /// From now on nothing the client writes on `conn` arrives.
    pub fn deafen(&mut self, conn: ConnId) {
        self.conns.get_mut(&conn).expect("conn").deaf = true;
    }

    /// The broker stops reading `conn` (and so does not notice it end) until released.
    pub fn hold(&mut self, conn: ConnId, held: bool) {
        self.conns.get_mut(&conn).expect("conn").held = held;
    }

    /// From now on the broker writes nothing on `conn`.
    pub fn silence_down(&mut self, conn: ConnId) {
        let server = self.conns.get_mut(&conn).expect("conn");
        server.down.bytes.clear();
        server.silenced = true;
    }
}
