//! The `flowgate` command: a thin shell over the libraries. Each subcommand lives in its own
//! module (the demo and the bench in crates of their own); errors are reported here, once:
//! `anyhow` is used in the binary and its application crates, and nowhere in the libraries.

#![forbid(unsafe_code)]

mod cmd_broker;
mod cmd_consume;
mod cmd_gateway;
mod cmd_produce;
mod cmd_top;
mod cmd_topics;
mod dial_args;
mod fail;
mod frame_flag;
mod http_args;
mod logging;
mod shutdown;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  flowgate demo                       the 10,000/s -> 1,000/s scenario, naive vs backpressure
  flowgate demo --distributed         the same as three processes on loopback
  flowgate broker --listen 127.0.0.1:7070
  flowgate produce --broker 127.0.0.1:7070 --topic t --rate 10000 --count 100000
  flowgate consume --broker 127.0.0.1:7070 --topic t --group g --sink sqlite:t.db --max-rate 1000
  flowgate relay --broker 127.0.0.1:7070 --from raw --group enrich --to enriched --exec ./enrich
  flowgate top --broker 127.0.0.1:9100   live rates, time split, bottleneck (broker --metrics-addr)
  flowgate topics --broker 127.0.0.1:9100   every topic, its groups and forecasts
  flowgate <command> --help           every flag, with units";

/// Backpressure for event pipelines: credit-based flow control from the database's commit
/// latency back to the producer's send().await.
#[derive(Debug, Parser)]
#[command(name = "flowgate", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on standard error are written (filter them with RUST_LOG, e.g.
    /// RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scenario end to end: a fast producer, a slow database, with and without
    /// backpressure, under a real memory limit.
    Demo(flowgate_demo::DemoArgs),
    /// Serve bounded topics over TCP: credit from free space, deliveries within demand.
    Broker(cmd_broker::BrokerArgs),
    /// Publish events to a broker, waiting for credit.
    Produce(cmd_produce::ProduceArgs),
    /// Consume a topic into a sink, acknowledging after each commit.
    Consume(cmd_consume::ConsumeArgs),
    /// A stage of a chain: consume a topic and send each event on to another, acknowledging
    /// once the next topic confirmed it.
    #[command(after_help = cmd_consume::RELAY_EXAMPLES)]
    Relay(cmd_consume::ConsumeArgs),
    /// Serve the HTTP API in front of a broker: publish and consume from any language, with
    /// 503/429 and Retry-After when there is no room.
    #[command(after_help = cmd_gateway::EXAMPLES)]
    Gateway(cmd_gateway::GatewayArgs),
    /// Live view of a running pipeline: rates, time split per stage, the bottleneck named.
    Top(cmd_top::TopArgs),
    /// Every topic of a broker with live figures, its groups and forecasts.
    Topics(cmd_topics::TopicsArgs),
    /// Measure end-to-end throughput through a broker next to a raw-TCP reference.
    Bench(flowgate_bench::BenchArgs),
    /// The raw-TCP reference `bench` measures against (internal).
    #[command(hide = true)]
    BenchRaw(flowgate_bench::BenchRawArgs),
    /// The pipeline process `demo` supervises (internal).
    #[command(hide = true)]
    DemoWorker(flowgate_demo::WorkerArgs),
}

/// The async runtime the network commands run on: two workers, one per core of the machines
/// flowgate is sized for, which is enough to keep IO and commits apart.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = logging::init(cli.log_format) {
        return fail::report(&err);
    }
    let outcome = match cli.command {
        Command::Demo(args) => flowgate_demo::run(args),
        Command::DemoWorker(args) => flowgate_demo::run_worker(args).map(|()| 0),
        Command::Broker(args) => cmd_broker::run(args).map(|()| 0),
        Command::Produce(args) => cmd_produce::run(args),
        Command::Consume(args) => cmd_consume::run(args).map(|()| 0),
        Command::Relay(args) => cmd_consume::run_relay(args).map(|()| 0),
        Command::Bench(args) => flowgate_bench::run(args),
        Command::Gateway(args) => cmd_gateway::run(args).map(|()| 0),
        Command::Top(args) => cmd_top::run(args).map(|()| 0),
        Command::Topics(args) => cmd_topics::run(args).map(|()| 0),
        Command::BenchRaw(args) => flowgate_bench::run_raw(args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => fail::report(&err),
    }
}
