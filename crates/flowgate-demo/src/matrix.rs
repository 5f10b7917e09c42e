//! `flowgate demo --matrix`: "is backpressure always needed, or only when the consumer is
//! slow?" answered with measurements — every consumer behaviour (faster than the producer,
//! slower, bursty, down for a while) against naive, drop-newest and backpressure, each cell a
//! real run of the pipeline process under the memory limit.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::mode::Mode;
use super::pattern::Pattern;
use super::result::RunResult;
use super::supervisor::{self, RunConfig};
use flowgate_observe::units::{human_bytes, thousands};

/// A consumer behaviour: its rate as a fraction of the producer's, and its pattern.
struct Behaviour {
    name: &'static str,
    rate_num: u64,
    rate_den: u64,
    pattern: Pattern,
}

const BEHAVIOURS: [Behaviour; 4] = [
    Behaviour {
        name: "faster (2x the producer)",
        rate_num: 2,
        rate_den: 1,
        pattern: Pattern::Steady,
    },
    Behaviour {
        name: "slower (1/10 of the producer)",
        rate_num: 1,
        rate_den: 10,
        pattern: Pattern::Steady,
    },
    Behaviour {
        name: "bursty (2x, stalls 1 s in 3)",
        rate_num: 2,
        rate_den: 1,
        pattern: Pattern::Bursty,
    },
    Behaviour {
        name: "down, then back (2x, down 40%)",
        rate_num: 2,
        rate_den: 1,
        pattern: Pattern::Down,
    },
];

const MODES: [Mode; 3] = [Mode::Naive, Mode::DropNewest, Mode::Backpressure];

/// One cell of the matrix.
#[derive(Debug, Serialize)]
struct Cell {
    consumer: &'static str,
    consumer_rate: u64,
    #[serde(flatten)]
    result: RunResult,
    /// Commit rate (committed per second of the run, drain included) relative to the best
    /// cell of the same consumer behaviour.
    throughput_vs_best_in_row: f64,
}

/// Runs every cell and prints the table.
pub(crate) fn run(base: &RunConfig, json: Option<&Path>) -> Result<u8> {
    let mut cells: Vec<Cell> = Vec::new();
    for b in &BEHAVIOURS {
        let consumer_rate = (base.producer_rate * b.rate_num / b.rate_den).max(1);
        let config = RunConfig {
            consumer_rate,
            pattern: b.pattern,
            ..base.clone()
        };
        let mut row = Vec::new();
        for mode in MODES {
            eprintln!(
                "\n{} consumer at {consumer_rate}/s ({}), {mode}:",
                b.name,
                b.pattern.name()
            );
            let result = supervisor::run_mode(&config, mode)
                .with_context(|| format!("cell '{}' x {mode}", b.name))?;
            row.push(result);
        }
        let best = row
            .iter()
            .map(|r| r.committed_rate)
            .fold(0.0, f64::max)
            .max(1e-9);
        for result in row {
            let relative = result.committed_rate / best;
            cells.push(Cell {
                consumer: b.name,
                consumer_rate,
                result,
                throughput_vs_best_in_row: relative,
            });
        }
    }
    println!();
    print!("{}", table(&cells, base));
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&cells)? + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(0)
}

/// The matrix as a Markdown table, one row per cell, grouped by consumer behaviour.
fn table(cells: &[Cell], base: &RunConfig) -> String {
    let mut out = format!(
        "producer {}/s for {} per cell, {} payloads, queue {} events, memory limit {}\n\n",
        thousands(base.producer_rate),
        humantime::format_duration(base.duration),
        human_bytes(base.payload_size),
        thousands(base.queue_capacity),
        human_bytes(base.memory_limit),
    );
    out.push_str("| consumer | mode | produced/s | committed | committed/s | vs best in row | lost | dropped | peak RSS | p99 latency | outcome |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for c in cells {
        let r = &c.result;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0}% | {} | {} | {} | {} ms | {} |\n",
            c.consumer,
            r.mode,
            thousands(r.producer_rate.round() as u64),
            thousands(r.committed),
            thousands(r.committed_rate.round() as u64),
            c.throughput_vs_best_in_row * 100.0,
            thousands(r.lost),
            thousands(r.dropped),
            human_bytes(r.peak_rss_bytes),
            thousands(r.latency_ms_p99.round() as u64),
            if r.crashed {
                format!("crashed at {:.1} s", r.crashed_at_s.unwrap_or(r.duration_s))
            } else {
                "finished".into()
            },
        ));
    }
    out
}
