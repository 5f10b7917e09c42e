//! A sink that is another topic, which makes [`SinkDriver`](crate::SinkDriver) a stage of a
//! chain ([`Stage`](crate::Stage)): each event of a batch is transformed and sent to the next
//! topic, and the batch is committed once that topic's broker has confirmed all of it. So the
//! next topic's credit is this stage's commit latency: backpressure from the next stage's
//! consumer reaches this stage's source through the same demand rule as a slow database's,
//! and a batch is acknowledged upstream only after downstream holds it.
//!
//! Every event sent carries the id of the chain's first event in its key
//! ([`EventId::origin_key`]), and the database sinks key their rows by it: a stage killed
//! after sending and before acking sends again when it restarts, and nothing lands twice.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;

use flowgate_client::{AnyProducer, Publish};
use flowgate_core::{Event, EventId};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::{Committed, SinkError};

/// A transform's answer for one event: the next payload, `None` to drop the event (it is
/// acknowledged and goes no further), or why it is refused (it is retried, and dead-lettered
/// after the driver's max attempts).
pub type Transformed = Result<Option<Vec<u8>>, String>;

/// An async function from an event to its [`Transformed`].
pub type TransformFn =
    Box<dyn FnMut(&Event) -> Pin<Box<dyn Future<Output = Transformed> + Send>> + Send>;

/// What a stage does to each event.
pub enum Transform {
    /// The payload as it is.
    Pass,
    /// Each payload, as one line, through a child process: one line in, one line out, an
    /// empty line to drop the event.
    Exec(Box<Exec>),
    /// An async function.
    Fn(TransformFn),
}

impl Transform {
    async fn apply(&mut self, events: &[Event]) -> Result<Vec<Transformed>, SinkError> {
        match self {
            Transform::Pass => Ok(events.iter().map(|e| Ok(Some(e.payload.clone()))).collect()),
            Transform::Exec(exec) => exec.apply(events).await,
            Transform::Fn(f) => {
                let mut out = Vec::with_capacity(events.len());
                for e in events {
                    out.push(f(e).await);
                }
                Ok(out)
            }
        }
    }
}

/// How long a child may take to answer a batch's lines before the stage gives up on it.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// A child process that transforms NDJSON lines (`--exec CMD`, run by `sh -c`).
pub struct Exec {
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Exec {
    /// Starts `command` under `sh -c`, its standard input and output piped to the stage.
    pub fn spawn(command: &str) -> Result<Exec, SinkError> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SinkError::Topic(format!("cannot start --exec '{command}': {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        let Some(stdout) = stdout else {
            return Err(SinkError::Topic(format!(
                "--exec '{command}' has no stdout"
            )));
        };
        Ok(Exec {
            command: command.to_string(),
            child,
            stdin,
            stdout,
        })
    }

    /// Writes the batch's lines while reading as many answers, so a child that answers as it
    /// reads never blocks on a full pipe.
    async fn apply(&mut self, events: &[Event]) -> Result<Vec<Transformed>, SinkError> {
        let mut lines = Vec::new();
        let mut refused = Vec::with_capacity(events.len());
        for e in events {
            match std::str::from_utf8(&e.payload) {
                Ok(s) if !s.contains('\n') && !s.is_empty() => {
                    lines.extend_from_slice(s.as_bytes());
                    lines.push(b'\n');
                    refused.push(None);
                }
                Ok("") => refused.push(Some("an empty payload is no line for --exec".to_string())),
                Ok(_) => refused.push(Some(
                    "the payload holds a newline: --exec takes one line per event".to_string(),
                )),
                Err(_) => refused.push(Some(
                    "the payload is not UTF-8: --exec takes text lines".to_string(),
                )),
            }
        }
        let expected = refused.iter().filter(|r| r.is_none()).count();
        let gone = |what: &str| SinkError::Topic(format!("--exec '{}' {what}", self.command));
        let stdin = self.stdin.as_mut().ok_or_else(|| gone("has no stdin"))?;
        let write = async {
            stdin.write_all(&lines).await?;
            stdin.flush().await
        };
        let read = tokio::time::timeout(ANSWER_WITHIN, async {
            let mut answers = Vec::with_capacity(expected);
            let mut line = String::new();
            for _ in 0..expected {
                line.clear();
                if self.stdout.read_line(&mut line).await? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed its output",
                    ));
                }
                answers.push(line.trim_end_matches(['\n', '\r']).to_string());
            }
            Ok(answers)
        });
        let (written, answers) = tokio::join!(write, read);
        let mut status = |e: std::io::Error| {
            let exited = self
                .child
                .try_wait()
                .ok()
                .flatten()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            SinkError::Topic(format!("--exec '{}' failed{exited}: {e}", self.command))
        };
        written.map_err(&mut status)?;
        let answers = answers.map_err(|_| {
            SinkError::Topic(format!(
                "--exec '{}' did not answer {expected} lines within {ANSWER_WITHIN:?}: it must write one line per line and flush each (sed -u, jq --unbuffered, python -u)",
                self.command
            ))
        })?;
        let mut answers = answers.map_err(&mut status)?.into_iter();
        Ok(refused
            .into_iter()
            .map(|r| match r {
                Some(why) => Err(why),
                None => match answers.next() {
                    Some(a) if a.is_empty() => Ok(None),
                    Some(a) => Ok(Some(a.into_bytes())),
                    None => Err("no answer".to_string()),
                },
            })
            .collect())
    }
}

/// Sends each transformed event to a topic, and commits once it is confirmed.
pub struct TopicSink {
    producer: AnyProducer,
    transform: Transform,
}

impl TopicSink {
    /// Sends to `producer`'s topic what `transform` makes of each event.
    pub fn new(producer: AnyProducer, transform: Transform) -> TopicSink {
        TopicSink {
            producer,
            transform,
        }
    }

    /// Transforms and sends the batch, then waits until the next topic confirmed every event
    /// of it. Refused events (by the transform, or too large for the next topic) are
    /// `rejected`; dropped ones count as neither sent nor refused.
    pub async fn write_batch(&mut self, events: &[Event]) -> Result<Committed, SinkError> {
        let answers = self.transform.apply(events).await?;
        let mut out = Committed::default();
        for (i, (e, answer)) in events.iter().zip(answers).enumerate() {
            let payload = match answer {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(why) => {
                    out.rejected.push((i, why));
                    continue;
                }
            };
            let next = Event {
                id: EventId::default(),
                key: Some(e.origin().origin_key()),
                // The chain's first event's time: end-to-end latency stays end to end.
                created_us: e.created_us,
                payload,
            };
            match self.producer.send(next).await {
                Ok(_) => out.new_rows += 1,
                Err(e) if is_too_large(&e.reason) => {
                    out.rejected.push((i, e.reason.to_string()));
                }
                Err(e) => return Err(SinkError::Topic(format!("sending on: {}", e.reason))),
            }
        }
        self.producer
            .flush()
            .await
            .map_err(|e| SinkError::Topic(format!("the next topic did not confirm: {e}")))?;
        Ok(out)
    }

    /// The next topic's producer's figures (its time waiting for credit is this stage's time
    /// backpressured).
    pub fn monitor(&self) -> flowgate_client::Monitor<flowgate_client::ProducerStats> {
        self.producer.monitor()
    }

    /// Flushes and closes the producer.
    pub async fn close(self) -> Result<(), SinkError> {
        self.producer
            .close()
            .await
            .map(|_| ())
            .map_err(|e| SinkError::Topic(format!("closing: {e}")))
    }
}

/// An event the next topic can never take (larger than it accepts): refused, not fatal.
fn is_too_large(e: &flowgate_client::ClientError) -> bool {
    matches!(e, flowgate_client::ClientError::EventTooLarge { .. })
}
