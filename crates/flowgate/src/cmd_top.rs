//! `flowgate top`: a live view of a running pipeline — each stage's rate and how its time
//! splits into busy, backpressured and idle, the topic's depth and its consumer groups — with
//! the bottleneck named in words. Reads the broker's `/stats` (and the producer's and
//! consumer's where given).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use flowgate_observe::Snapshot;
use flowgate_observe::chain::{Chain, chain};
use flowgate_observe::units::{Span, human_bytes};
use flowgate_observe::window::{Sample, Shares, Window, window};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};

const EXAMPLES: &str = "\
Examples:
  flowgate broker --listen 127.0.0.1:7070 --metrics-addr 127.0.0.1:9100
  flowgate top --broker 127.0.0.1:9100
  flowgate top --broker 127.0.0.1:9100 --producer 127.0.0.1:9101 --consumer 127.0.0.1:9102
  flowgate top --broker 127.0.0.1:9100 --once --json top.json
  flowgate top --broker 127.0.0.1:9100 --chain raw,enriched   a chain of stages: the slowest named

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
    /// The topics of a chain of stages, in the order data flows through them (producer →
    /// first topic → stage → second topic → …): names the slowest stage of the chain.
    #[arg(long, value_name = "TOPIC,TOPIC", value_delimiter = ',')]
    chain: Vec<String>,
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

/// Fetches a process's `/stats`, which must be `role`'s.
fn fetch_as(addr: &str, role: &str) -> Result<Snapshot> {
    let doc = flowgate_observe::fetch(addr)?;
    if doc.role() != role {
        bail!("{addr} serves a {}'s /stats, not a {role}'s", doc.role());
    }
    Ok(doc)
}

impl TopArgs {
    fn sample(&self) -> Result<Sample> {
        let Snapshot::Broker(broker) = fetch_as(&self.broker, "broker").context("broker")? else {
            unreachable!("fetch_as checked the role")
        };
        let producer = match self.producer.as_deref().map(|a| fetch_as(a, "producer")) {
            Some(Ok(Snapshot::Producer(p))) => Some(p),
            Some(Err(e)) => return Err(e.context("producer")),
            _ => None,
        };
        let consumer = match self.consumer.as_deref().map(|a| fetch_as(a, "consumer")) {
            Some(Ok(Snapshot::Consumer(c))) => Some(c),
            Some(Err(e)) => return Err(e.context("consumer")),
            _ => None,
        };
        Ok(Sample {
            at: Instant::now(),
            broker,
            producer,
            consumer,
        })
    }
}

/// Runs `top`.
pub(crate) fn run(args: TopArgs) -> Result<()> {
    if args.once || !std::io::stdout().is_terminal() {
        return print_windows(&args);
    }
    draw_live(&args)
}

/// What `--once --json` writes: the window, and the chain when asked for.
#[derive(serde::Serialize)]
struct Once<'a> {
    #[serde(flatten)]
    window: &'a Window,
    chain: Option<&'a Chain>,
}

impl TopArgs {
    /// The chain between two samples, with `--chain`.
    fn chain(&self, prev: &Sample, now: &Sample) -> Result<Option<Chain>> {
        if self.chain.is_empty() {
            return Ok(None);
        }
        let secs = now.at.duration_since(prev.at).as_secs_f64();
        chain(&prev.broker, &now.broker, &self.chain, secs)
            .map(Some)
            .map_err(anyhow::Error::msg)
    }
}

fn print_windows(args: &TopArgs) -> Result<()> {
    let mut prev = args.sample()?;
    loop {
        std::thread::sleep(args.interval.0);
        let now = args.sample()?;
        let w = window(&prev, &now, args.topic.as_deref())?;
        let c = args.chain(&prev, &now)?;
        println!("{}", w.text());
        if let Some(c) = &c {
            println!("  chain: {}", c.explanation);
        }
        println!();
        if args.once {
            if let Some(path) = &args.json {
                let once = Once {
                    window: &w,
                    chain: c.as_ref(),
                };
                std::fs::write(path, serde_json::to_string_pretty(&once)? + "\n")
                    .with_context(|| format!("cannot write --json {}", path.display()))?;
            }
            return Ok(());
        }
        prev = now;
    }
}

fn draw_live(args: &TopArgs) -> Result<()> {
    let mut terminal = ratatui::init();
    let result = (|| -> Result<()> {
        let mut prev = args.sample()?;
        let mut shown: Option<(Window, Option<Chain>)> = None;
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
            let w = window(&prev, &now, args.topic.as_deref())?;
            shown = Some((w, args.chain(&prev, &now)?));
            prev = now;
        }
    })();
    ratatui::restore();
    result
}

fn render(frame: &mut ratatui::Frame<'_>, args: &TopArgs, shown: Option<&(Window, Option<Chain>)>) {
    let area = frame.area();
    let title = format!(" flowgate top — broker {} — q to quit ", args.broker);
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some((w, chain)) = shown else {
        frame.render_widget(Paragraph::new("measuring the first window…"), inner);
        return;
    };
    let rows = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(w.groups.len() as u16),
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
    let groups: Vec<Line> = w.groups.iter().map(|g| Line::raw(g.text())).collect();
    frame.render_widget(Paragraph::new(groups), rows[4]);
    let color = match w.bottleneck {
        "sink" => Color::Red,
        "producer" => Color::Magenta,
        _ => Color::White,
    };
    let mut words = vec![Line::styled(
        w.explanation.clone(),
        Style::default().fg(color),
    )];
    if let Some(c) = chain {
        words.push(Line::raw(format!("chain: {}", c.explanation)));
    }
    let forecast = w.forecast.iter().flat_map(|f| f.text(&w.topic));
    words.extend(forecast.map(|line| Line::raw(format!("forecast: {line}"))));
    frame.render_widget(Paragraph::new(words).wrap(Wrap { trim: true }), rows[5]);
}
