//! [`Producer`] as a `futures::Sink<Event>`: `poll_ready` waits for credit, `start_send` takes
//! an event (parking it when its bytes are not covered yet), `poll_flush` waits for confirms.

use std::pin::Pin;
use std::task::{Context, Poll};

use flowgate_core::Event;

use super::Producer;
use crate::net::error::ClientError;

impl futures_sink::Sink<Event> for Producer {
    type Error = ClientError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        // A parked item goes first; then one event of any size needs at least one event of
        // credit, and its bytes are checked when it arrives.
        match self.as_mut().poll_parked(cx) {
            Poll::Ready(Ok(())) => self.poll_credit(cx, 0),
            other => other,
        }
    }

    fn start_send(mut self: Pin<&mut Self>, event: Event) -> Result<(), ClientError> {
        self.check_size(event.payload.len() as u64, super::key_len(&event))?;
        if let Err(event) = self.enqueue(event) {
            self.parked = Some(event);
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        match self.as_mut().poll_parked(cx) {
            Poll::Ready(Ok(())) => self.poll_confirmed(cx),
            other => other,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        self.poll_flush(cx)
    }
}

impl Producer {
    /// Sends the item `start_send` parked, once credit covers it.
    fn poll_parked(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        let this = self.get_mut();
        let Some(bytes) = this.parked.as_ref().map(Event::size_bytes) else {
            return Poll::Ready(Ok(()));
        };
        match this.poll_credit(cx, bytes) {
            Poll::Ready(Ok(())) => {
                if let Some(event) = this.parked.take()
                    && let Err(event) = this.enqueue(event)
                {
                    this.parked = Some(event);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}
