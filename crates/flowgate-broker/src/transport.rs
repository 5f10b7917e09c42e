//! The byte stream under a session: plain TCP, or TLS when the broker has a certificate. A
//! plaintext client of a TLS broker is told so in a plaintext `ERROR` it can read.

use std::sync::Arc;

use flowgate_proto::ErrorCode;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

pub(crate) use flowgate_proto::io::{ReadHalf, WriteHalf};

/// The first byte of every TLS connection (a handshake record). A flowgate frame starts with
/// its length's high byte, which is 0 for any frame a broker accepts.
const TLS_HANDSHAKE: u8 = 0x16;

/// What became of an accepted socket.
pub(crate) enum Accepted {
    /// Ready for `HELLO`.
    Ready(ReadHalf, WriteHalf),
    /// Refuse in plaintext with this code and reason.
    Refused(WriteHalf, ErrorCode, String),
    /// The TLS handshake failed (the peer has had its TLS alert); nothing more to say.
    Failed,
}

/// Wraps `stream` as this broker serves: as it is, or after a TLS handshake finished by
/// `deadline`.
pub(crate) async fn accept(
    stream: TcpStream,
    tls: Option<&Arc<ServerConfig>>,
    deadline: Instant,
) -> Accepted {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        let (rd, wr) = stream.into_split();
        return Accepted::Ready(Box::new(rd), Box::new(wr));
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
        Ok(Ok(1)) => {
            let (_, wr) = stream.into_split();
            return Accepted::Refused(
                Box::new(wr),
                ErrorCode::Unauthorized,
                "this broker requires TLS; connect with TLS (flowgate: --tls-ca FILE)".into(),
            );
        }
        Ok(_) => return Accepted::Failed,
        Err(_) => {
            let (_, wr) = stream.into_split();
            return Accepted::Refused(
                Box::new(wr),
                ErrorCode::HandshakeTimeout,
                "no TLS handshake within the handshake deadline".into(),
            );
        }
    }
    let acceptor = TlsAcceptor::from(Arc::clone(tls));
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let (rd, wr) = tokio::io::split(tls);
            Accepted::Ready(Box::new(rd), Box::new(wr))
        }
        _ => Accepted::Failed,
    }
}
