//! The `flowgate` command: a thin shell over the libraries. Each subcommand lives in its own
//! module; `anyhow` is used here and nowhere in the libraries.

#![forbid(unsafe_code)]

mod demo;
mod procfs;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  flowgate demo                       the 10,000/s -> 1,000/s scenario, naive vs backpressure
  flowgate demo --mode backpressure   one mode only
  flowgate demo --help                every flag, with units";

/// Backpressure for event pipelines: credit-based flow control from the database's commit
/// latency back to the producer's send().await.
#[derive(Debug, Parser)]
#[command(name = "flowgate", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scenario end to end: a fast producer, a slow database, with and without
    /// backpressure, under a real memory limit.
    Demo(demo::DemoArgs),
    /// The pipeline process `demo` supervises (internal).
    #[command(hide = true)]
    DemoWorker(demo::worker::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::DemoWorker(args) => demo::worker::run(args).map(|()| 0),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
