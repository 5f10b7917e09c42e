//! `flowgate top`: a live view of a running pipeline — each stage's rate and how its time
//! splits into busy, backpressured and idle, the topic's depth — with the bottleneck named in
//! words. Reads the broker's `/stats` (and the producer's and consumer's where given).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use flowgate_core::{PipelineView, StageSplit, bottleneck};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};
use serde::Serialize;
use serde_json::Value;

use crate::observe::{fetch_stats, stage_from_json};
use crate::units::{Span, human_bytes};

const EXAMPLES: &str = "\
Examples:
  flowgate broker --listen 127.0.0.1:7070 --metrics-addr 127.0.0.1:9100
  flowgate top --broker 127.0.0.1:9100
  flowgate top --broker 127.0.0.1:9100 --producer 127.0.0.1:9101 --consumer 127.0.0.1:9102
  flowgate top --broker 127.0.0.1:9100 --once --json top.json

The addresses are the --metrics-addr of each process. Press q to quit. Without a terminal
(or with --once) it prints text instead of drawing.";

/// Flags of `flowgate top`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct TopArgs {
    /// The broker's --metrics-addr.
    #[arg(long, value_name = "ADDR")]
    broker: String,
    /// The producer's --metrics-addr, if it has one.
    #[arg(long, value_name = "ADDR")]
    producer: Option<String>,
    /// The consumer's --metrics-addr, if it has one.
    #[arg(long, value_name = "ADDR")]
    consumer: Option<String>,
    /// The topic to show (default: the busiest).
    #[arg(long)]
    topic: Option<String>,
    /// How often to refresh, and the window each figure covers.
    #[arg(long, default_value = "1s")]
    interval: Span,
    /// Measure one window, print it, and exit.
    #[arg(long)]
    once: bool,
    /// With --once: write the measurement here as JSON.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// One window's figures.
#[derive(Debug, Clone, Serialize)]
struct Window {
    topic: String,
    seconds: f64,
    produced_per_s: f64,
    committed_per_s: Option<f64>,
    acked_per_s: f64,
    ready: u64,
    ready_bytes: u64,
    unacked: u64,
    topic_stage: Shares,
    producer_stage: Option<Shares>,
    consumer_stage: Option<Shares>,
    bottleneck: &'static str,
    explanation: String,
}

/// A stage split as shares of the window.
#[derive(Debug, Clone, Copy, Serialize)]
struct Shares {
    busy: f64,
    backpressured: f64,
    idle: f64,
}

impl From<StageSplit> for Shares {
    fn from(s: StageSplit) -> Self {
        let (busy, backpressured, idle) = s.shares();
        Shares {
            busy,
            backpressured,
            idle,
        }
    }
}

/// Snapshots of every reachable process at one moment.
struct Sample {
    at: Instant,
    broker: Value,
    producer: Option<Value>,
    consumer: Option<Value>,
}

impl TopArgs {
    fn sample(&self) -> Result<Sample> {
        Ok(Sample {
            at: Instant::now(),
            broker: fetch_stats(&self.broker).context("broker")?,
            producer: self
                .producer
                .as_deref()
                .map(fetch_stats)
                .transpose()
                .context("producer")?,
            consumer: self
                .consumer
                .as_deref()
                .map(fetch_stats)
                .transpose()
                .context("consumer")?,
        })
    }
}

fn topic_of<'a>(broker: &'a Value, name: Option<&str>) -> Option<&'a Value> {
    let topics = broker.get("topics")?.as_array()?;
    match name {
        Some(n) => topics
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(n)),
        None => topics
            .iter()
            .max_by_key(|t| t.get("accepted").and_then(Value::as_u64).unwrap_or(0)),
    }
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn stage_delta(prev: Option<&Value>, now: Option<&Value>) -> Option<StageSplit> {
    let now = stage_from_json(now?.get("stage")?)?;
    let prev = stage_from_json(prev?.get("stage")?)?;
    Some(now.since(&prev))
}

/// The figures between two samples: rates from counter differences, splits from clock
/// differences, the bottleneck from the splits.
fn window(prev: &Sample, now: &Sample, topic: Option<&str>) -> Result<Window> {
    let Some(t_now) = topic_of(&now.broker, topic) else {
        bail!(
            "the broker has no topic{}",
            topic.map(|t| format!(" named '{t}'")).unwrap_or_default()
        );
    };
    let name = t_now
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let t_prev = topic_of(&prev.broker, Some(&name));
    let secs = now.at.duration_since(prev.at).as_secs_f64().max(1e-3);
    let rate = |key: &str| {
        (num(t_now, key).saturating_sub(t_prev.map_or(0, |t| num(t, key)))) as f64 / secs
    };
    let view = PipelineView {
        producer: stage_delta(prev.producer.as_ref(), now.producer.as_ref()),
        topic: stage_delta(t_prev, Some(t_now)).unwrap_or_default(),
        consumer: stage_delta(prev.consumer.as_ref(), now.consumer.as_ref()),
    };
    let (limit, explanation) = bottleneck(&view);
    let committed_per_s = match (&prev.consumer, &now.consumer) {
        (Some(p), Some(n)) => {
            Some((num(n, "committed").saturating_sub(num(p, "committed"))) as f64 / secs)
        }
        _ => None,
    };
    Ok(Window {
        topic: name,
        seconds: secs,
        produced_per_s: rate("accepted"),
        committed_per_s,
        acked_per_s: rate("acked"),
        ready: num(t_now, "ready"),
        ready_bytes: num(t_now, "ready_bytes"),
        unacked: num(t_now, "unacked"),
        topic_stage: view.topic.into(),
        producer_stage: view.producer.map(Shares::from),
        consumer_stage: view.consumer.map(Shares::from),
        bottleneck: limit.name(),
        explanation,
    })
}

/// Runs `top`.
pub(crate) fn run(args: TopArgs) -> Result<u8> {
    if args.once || !std::io::stdout().is_terminal() {
        return print_windows(&args);
    }
    draw_live(&args)
}

fn text(w: &Window) -> String {
    let pct = |x: f64| format!("{:>3.0}%", x * 100.0);
    let stage = |s: Option<Shares>| {
        s.map_or("—".to_string(), |s| {
            format!(
                "busy {} backpressured {} idle {}",
                pct(s.busy),
                pct(s.backpressured),
                pct(s.idle)
            )
        })
    };
    format!(
        "topic {}: in {:.0}/s out {:.0}/s ready {} ({}) unacked {}\n  producer: {}\n  topic:    full {} empty {}\n  consumer: {}{}\n  => {}",
        w.topic,
        w.produced_per_s,
        w.acked_per_s,
        w.ready,
        human_bytes(w.ready_bytes),
        w.unacked,
        stage(w.producer_stage),
        pct(w.topic_stage.backpressured),
        pct(w.topic_stage.idle),
        stage(w.consumer_stage),
        w.committed_per_s
            .map(|c| format!(" (committing {c:.0}/s)"))
            .unwrap_or_default(),
        w.explanation
    )
}

fn print_windows(args: &TopArgs) -> Result<u8> {
    let mut prev = args.sample()?;
    loop {
        std::thread::sleep(args.interval.0);
        let now = args.sample()?;
        let w = window(&prev, &now, args.topic.as_deref())?;
        println!("{}\n", text(&w));
        if args.once {
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&w)? + "\n")
                    .with_context(|| format!("cannot write --json {}", path.display()))?;
            }
            return Ok(0);
        }
        prev = now;
    }
}

fn draw_live(args: &TopArgs) -> Result<u8> {
    let mut terminal = ratatui::init();
    let result = (|| -> Result<()> {
        let mut prev = args.sample()?;
        let mut shown: Option<Window> = None;
        loop {
            terminal.draw(|frame| render(frame, args, shown.as_ref()))?;
            let deadline = Instant::now() + args.interval.0;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if event::poll(left)?
                    && let TermEvent::Key(key) = event::read()?
                    && matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                {
                    return Ok(());
                }
            }
            let now = args.sample()?;
            shown = Some(window(&prev, &now, args.topic.as_deref())?);
            prev = now;
        }
    })();
    ratatui::restore();
    result.map(|()| 0)
}

fn render(frame: &mut ratatui::Frame<'_>, args: &TopArgs, w: Option<&Window>) {
    let area = frame.area();
    let title = format!(" flowgate top — broker {} — q to quit ", args.broker);
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(w) = w else {
        frame.render_widget(Paragraph::new("measuring the first window…"), inner);
        return;
    };
    let rows = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Min(2),
    ])
    .split(inner);
    frame.render_widget(
        Paragraph::new(format!(
            "topic {}   in {:.0}/s   out {:.0}/s   ready {} ({})   unacked {}",
            w.topic,
            w.produced_per_s,
            w.acked_per_s,
            w.ready,
            human_bytes(w.ready_bytes),
            w.unacked
        )),
        rows[0],
    );
    let gauge = |label: String, s: Option<Shares>, color: Color| {
        let (ratio, detail) = s.map_or(
            (0.0, "not reachable (give its --metrics-addr)".to_string()),
            |s| {
                (
                    s.busy.clamp(0.0, 1.0),
                    format!(
                        "busy {:.0}%  backpressured {:.0}%  idle {:.0}%",
                        s.busy * 100.0,
                        s.backpressured * 100.0,
                        s.idle * 100.0
                    ),
                )
            },
        );
        Gauge::default()
            .block(Block::bordered().title(format!(" {label}: {detail} ")))
            .gauge_style(Style::default().fg(color))
            .ratio(ratio)
    };
    let topic = Shares {
        busy: w.topic_stage.backpressured,
        ..w.topic_stage
    };
    frame.render_widget(
        gauge("producer".into(), w.producer_stage, Color::Cyan),
        rows[1],
    );
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(format!(
                " topic: full {:.0}%  empty {:.0}% ",
                w.topic_stage.backpressured * 100.0,
                w.topic_stage.idle * 100.0
            )))
            .gauge_style(Style::default().fg(Color::Yellow))
            .ratio(topic.busy.clamp(0.0, 1.0)),
        rows[2],
    );
    frame.render_widget(
        gauge("consumer".into(), w.consumer_stage, Color::Green),
        rows[3],
    );
    let color = match w.bottleneck {
        "sink" => Color::Red,
        "producer" => Color::Magenta,
        _ => Color::White,
    };
    frame.render_widget(
        Paragraph::new(Line::styled(
            w.explanation.clone(),
            Style::default().fg(color),
        ))
        .wrap(Wrap { trim: true }),
        rows[4],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn sample(at: Instant, accepted: u64, idle: f64, waiting: f64) -> Sample {
        Sample {
            at,
            broker: json!({"topics": [{"name": "t", "accepted": accepted, "acked": accepted, "ready": 0,
                "ready_bytes": 0, "unacked": 0,
                "stage": {"busy_s": 0.0, "backpressured_s": waiting, "idle_s": idle}}]}),
            producer: None,
            consumer: None,
        }
    }

    #[test]
    fn a_window_reads_rates_and_splits_from_differences() {
        let t0 = Instant::now();
        let w = window(
            &sample(t0, 100, 5.0, 1.0),
            &sample(t0 + Duration::from_secs(2), 300, 5.2, 2.8),
            None,
        )
        .unwrap();
        assert!((w.produced_per_s - 100.0).abs() < 1e-6);
        assert!((w.topic_stage.backpressured - 0.9).abs() < 1e-6);
        assert_eq!(w.bottleneck, "sink");
    }

    #[test]
    fn an_unknown_topic_is_an_error_naming_it() {
        let t0 = Instant::now();
        let s = sample(t0, 0, 0.0, 0.0);
        let err = window(&s, &sample(t0, 0, 0.0, 0.0), Some("orders"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("'orders'"));
    }
}
