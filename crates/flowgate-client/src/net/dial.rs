//! Reaching the broker: a TCP connection, wrapped in TLS when the client is given trusted CAs.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use flowgate_proto::tls::{TlsError, client_config};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::backend::BrokerAddr;
use crate::net::error::ClientError;

pub(crate) use flowgate_proto::io::{ReadHalf, WriteHalf};

/// How to speak TLS to the broker: the CAs to trust (and perhaps a client certificate), and
/// the name its certificate must carry.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the CAs in the PEM file `ca` and expects the broker's certificate to name
    /// `server_name` (a DNS name or an IP address); `identity` is a client certificate and key
    /// for brokers that require one.
    pub fn from_files(
        ca: &Path,
        server_name: &str,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Self, TlsError> {
        Self::new(client_config(ca, identity)?, server_name)
    }

    /// From a rustls configuration built elsewhere.
    pub fn new(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, TlsError> {
        let server_name =
            ServerName::try_from(server_name.to_string()).map_err(|e| TlsError::File {
                path: server_name.into(),
                why: format!("not a DNS name or IP address: {e}"),
            })?;
        Ok(ClientTls {
            config,
            server_name,
        })
    }
}

/// Where and how to reach the broker.
#[derive(Debug, Clone)]
pub(crate) struct Dial {
    pub addr: String,
    pub tls: Option<ClientTls>,
}

impl Dial {
    /// The flowgate broker `addr` names (`host:port` or `flowgate://host:port`).
    pub(crate) fn new(addr: &str, tls: Option<ClientTls>) -> Result<Dial, ClientError> {
        match addr.parse::<BrokerAddr>()? {
            BrokerAddr::Flowgate { addr } => Ok(Dial { addr, tls }),
        }
    }

    /// Connects, completing the TLS handshake if configured.
    pub(crate) async fn connect(&self) -> Result<(ReadHalf, WriteHalf), ClientError> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(ClientError::Io)?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            let (rd, wr) = stream.into_split();
            return Ok((Box::new(rd), Box::new(wr)));
        };
        let connector = TlsConnector::from(Arc::clone(&tls.config));
        let stream = connector
            .connect(tls.server_name.clone(), stream)
            .await
            .map_err(|e| {
                // rustls's own refusals (an untrusted certificate, a name mismatch) are
                // permanent; anything else is the connection failing.
                let refused = e
                    .get_ref()
                    .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>());
                if refused {
                    ClientError::Tls(e.to_string())
                } else {
                    ClientError::Io(e)
                }
            })?;
        let (rd, wr) = tokio::io::split(stream);
        Ok((Box::new(rd), Box::new(wr)))
    }
}
