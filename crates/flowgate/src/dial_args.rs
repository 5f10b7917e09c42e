//! The flags that say how to reach a broker, shared by `produce` and `consume`: its address,
//! a token, and TLS.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use flowgate_client::{BrokerAddr, ClientTls};

/// How to reach the broker.
#[derive(Debug, Args)]
pub(crate) struct DialArgs {
    /// The broker: host:port, or flowgate://host:port.
    #[arg(long, value_name = "ADDR", value_parser = broker_addr)]
    pub broker: String,
    /// Token for a broker that requires one. Prefer the FLOWGATE_TOKEN environment variable:
    /// a flag shows in the process list.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Connect with TLS, trusting the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// The name the broker's certificate must carry [default: the host of --broker].
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
    /// Client certificate (PEM) for a broker that requires one.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Checks `--broker` at parse time, so a bad address is a bad flag.
fn broker_addr(s: &str) -> Result<String, String> {
    s.parse::<BrokerAddr>()
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

impl DialArgs {
    /// `--token`, else `FLOWGATE_TOKEN`.
    pub(crate) fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            std::env::var("FLOWGATE_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
        })
    }

    /// The TLS setting the flags ask for, if any.
    pub(crate) fn tls(&self) -> Result<Option<ClientTls>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let addr: BrokerAddr = self.broker.parse()?;
        let name = self.tls_server_name.as_deref().unwrap_or(addr.host());
        let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        let tls = ClientTls::from_files(ca, name, identity)
            .with_context(|| format!("cannot set up TLS to {}", self.broker))?;
        Ok(Some(tls))
    }
}
