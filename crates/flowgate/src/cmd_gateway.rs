//! `flowgate gateway`: the HTTP API in front of any backend the client library knows, for
//! producers and consumers in any language. Clients bring their own tokens
//! (`Authorization: Bearer …`), which the gateway passes on, so the broker's scopes hold; a
//! request with none uses the gateway's `--token`, if given.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;

use crate::dial_args::DialArgs;
use crate::http_args::HttpArgs;
use crate::shutdown::Shutdown;

/// Examples shown after `flowgate gateway --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  flowgate gateway --listen 127.0.0.1:8080 --broker 127.0.0.1:7070
  curl -s -X POST -H 'Content-Type: application/x-ndjson' \\
       --data-binary $'{\"id\":1}\\n{\"id\":2}\\n' http://127.0.0.1:8080/v1/topics/orders/events
  curl -s -X POST 'http://127.0.0.1:8080/v1/topics/orders/groups/db/fetch?max=100&wait=2s'

Clients send their own token (Authorization: Bearer SECRET), which the broker checks with its
scopes; --token (or FLOWGATE_TOKEN) is used for requests that carry none.
Every endpoint and status: docs/http.md, or GET /openapi.json.";

/// `flowgate gateway` flags.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Serve the HTTP API here.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    #[command(flatten)]
    dial: DialArgs,
    #[command(flatten)]
    http: HttpArgs,
    /// The broker's --ack-wait: a fetched delivery not acked within it goes back to its group.
    /// "0s": the broker waits for ever.
    #[arg(long, default_value = "30s")]
    ack_wait: flowgate_observe::units::Span,
}

/// Serves until SIGTERM or Ctrl-C.
pub(crate) fn run(args: GatewayArgs) -> Result<()> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let mut config = args.http.config(args.dial.broker.clone());
        config.tls = args.dial.tls()?;
        config.default_token = args.dial.token();
        config.ack_wait = Some(args.ack_wait.0).filter(|w| !w.is_zero());
        let bound = flowgate_http::serve(args.listen, config)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!("HTTP API on {bound}, in front of {}", args.dial.broker);
        let why = Shutdown::new().wait().await;
        tracing::info!("gateway stopping: {why}");
        Ok(())
    })
}
