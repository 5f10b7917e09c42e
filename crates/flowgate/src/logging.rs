//! Where the commands' messages go: through `tracing`, to standard error, as text (the
//! default) or one JSON object per line (`--log-format json`), filtered by `RUST_LOG`
//! (`info` by default; e.g. `RUST_LOG=debug` or `RUST_LOG=warn,flowgate_broker=debug`). The
//! libraries emit their own events, which land here too.

use clap::ValueEnum;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::fail::bad_input;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// A timestamp, a level and the message.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the subscriber.
pub(crate) fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec
            .parse::<Targets>()
            .map_err(|e| bad_input(format!("RUST_LOG={spec}: {e}")))?,
        _ => Targets::new().with_default(Level::INFO),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json().with_filter(filter))
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
