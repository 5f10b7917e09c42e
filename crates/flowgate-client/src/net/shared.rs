//! What a client's handle and its driver share: the session under one lock, the failure that
//! ended it, the handle's wakers and wait clock, and the driver's wake-up.

use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use flowgate_proto::session::ClientSession;

use crate::net::clock::now;
use crate::net::error::ClientError;

/// A session and what its handle waits on.
pub(crate) struct Inner<S> {
    pub session: S,
    /// A failure the client cannot recover from.
    pub failed: Option<ClientError>,
    /// The driver has stopped.
    pub stopped: bool,
    /// Handles waiting for the session to change.
    waiters: Vec<Waker>,
    /// Time the handle has waited (for credit, for deliveries), and since when it waits now.
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl<S> Inner<S> {
    /// Parks a waiting handle's waker and starts its wait clock.
    pub fn park(&mut self, waker: &Waker) {
        self.waiting_since.get_or_insert_with(now);
        self.listen(waker);
    }

    /// Parks a handle's waker without starting its wait clock: a wait that is not for credit
    /// or deliveries (a flush waiting for confirms).
    pub fn listen(&mut self, waker: &Waker) {
        if !self.waiters.iter().any(|w| w.will_wake(waker)) {
            self.waiters.push(waker.clone());
        }
    }

    /// The handle's wait is over.
    pub fn stop_waiting(&mut self) {
        if let Some(since) = self.waiting_since.take() {
            self.waited += now().saturating_duration_since(since);
        }
    }

    /// Time waited so far, a wait in progress included.
    pub fn waited(&self) -> Duration {
        self.waiting_since.map_or(self.waited, |s| {
            self.waited + now().saturating_duration_since(s)
        })
    }

    /// Wakes every waiting handle.
    pub(crate) fn wake_all(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }
}

/// A session shared between its handle and its driver task, and the driver's wake-up.
pub(crate) struct Shared<S> {
    state: Mutex<Inner<S>>,
    /// Wakes the driver: something to write, or closing.
    pub driver: tokio::sync::Notify,
}

impl<S: ClientSession> Shared<S> {
    pub(crate) fn new(session: S) -> Self {
        Shared {
            state: Mutex::new(Inner {
                session,
                failed: None,
                stopped: false,
                waiters: Vec::new(),
                waited: Duration::ZERO,
                waiting_since: None,
            }),
            driver: tokio::sync::Notify::new(),
        }
    }

    /// The state. A panic elsewhere while holding the lock leaves nothing half-done that
    /// matters more than the panic, so a poisoned lock is recovered, not propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
