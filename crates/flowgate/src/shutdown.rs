//! Being asked to stop: SIGTERM or Ctrl-C. The long-running commands race their waits against
//! a [`Shutdown`] and, when it fires, stop taking new work, finish what is in flight (a
//! commit, an fsync, the acks and confirms), and exit 0 with their summary.

use std::sync::{Arc, OnceLock};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

/// Whether, and why, the process was asked to stop. Cheap to look at (one atomic read), so a
/// producer can look before every send.
#[derive(Clone)]
pub(crate) struct Shutdown(Arc<State>);

struct State {
    fired: OnceLock<&'static str>,
    notify: Notify,
}

impl Shutdown {
    /// Listens for SIGTERM and Ctrl-C from now on, on a task of its own. Call within the
    /// tokio runtime.
    pub(crate) fn new() -> Shutdown {
        let state = Arc::new(State {
            fired: OnceLock::new(),
            notify: Notify::new(),
        });
        let mut term = signal(SignalKind::terminate()).ok();
        let listener = Arc::clone(&state);
        tokio::spawn(async move {
            let sigterm = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let why = tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted",
                () = sigterm => "SIGTERM",
            };
            let _ = listener.fired.set(why);
            listener.notify.notify_waiters();
        });
        Shutdown(state)
    }

    /// Why the process was asked to stop, if it was; never waits.
    pub(crate) fn fired(&self) -> Option<&'static str> {
        self.0.fired.get().copied()
    }

    /// Waits until the process is asked to stop (at once if it was); says why.
    pub(crate) async fn wait(&self) -> &'static str {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(why) = self.fired() {
                return why;
            }
            notified.await;
        }
    }
}
