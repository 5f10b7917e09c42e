//! Whole frames from a tokio `AsyncRead`: the sans-IO [`FrameDecoder`] driven by `read_buf`.
//! Never buffers more than one maximum frame beyond what it has already decoded.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::codec::FrameDecoder;
use crate::error::ProtoError;
use crate::frame::Frame;

/// The reading side of a connection, plain TCP or TLS alike.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing side of a connection, plain TCP or TLS alike.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Why no frame came.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection cleanly between frames.
    Eof,
    /// The socket failed.
    Io(std::io::Error),
    /// The bytes were not valid frames; the stream is unusable.
    Proto(ProtoError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => f.write_str("connection closed by peer"),
            ReadError::Io(e) => write!(f, "read failed: {e}"),
            ReadError::Proto(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads frames from `R`.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader accepting frames up to `max_frame` bytes.
    pub fn new(inner: R, max_frame: u32) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: FrameDecoder::new(max_frame),
        }
    }

    /// The next frame.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes already read stay buffered for the next call.
    pub async fn next(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(ReadError::Proto)?
            {
                return Ok(frame);
            }
            match self.inner.read_buf(&mut self.buf).await {
                Ok(0) => return Err(ReadError::Eof),
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}
