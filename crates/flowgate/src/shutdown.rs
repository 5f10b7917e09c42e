//! Being asked to stop: SIGTERM or Ctrl-C. The long-running commands race their waits against
//! a [`Shutdown`] and, when it fires, stop taking new work, finish what is in flight (a
//! commit, an fsync, the acks and confirms), and exit 0 with their summary.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::signal::unix::{SignalKind, signal};

/// Resolves with the reason once the process is asked to stop, and at once on every poll
/// after that, so one `Shutdown` can end several waits in turn.
pub(crate) struct Shutdown {
    signal: Pin<Box<dyn Future<Output = &'static str> + Send>>,
    fired: Option<&'static str>,
}

impl Shutdown {
    /// Listens for SIGTERM and Ctrl-C from now on. Call within the tokio runtime.
    pub(crate) fn new() -> Shutdown {
        let mut term = signal(SignalKind::terminate()).ok();
        let signal = Box::pin(async move {
            let sigterm = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted",
                () = sigterm => "SIGTERM",
            }
        });
        Shutdown {
            signal,
            fired: None,
        }
    }

    /// Why the process was asked to stop, if it was.
    pub(crate) fn fired(&self) -> Option<&'static str> {
        self.fired
    }
}

impl Future for Shutdown {
    type Output = &'static str;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
        if let Some(why) = self.fired {
            return Poll::Ready(why);
        }
        let why = std::task::ready!(self.signal.as_mut().poll(cx));
        self.fired = Some(why);
        Poll::Ready(why)
    }
}
