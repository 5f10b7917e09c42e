//! Framing: [`encode`] appends `length u32 | type u8 | body` to a buffer; [`FrameDecoder`] takes
//! frames off the front of a buffer as they complete.
//!
//! The decoder checks a frame's claimed length against its maximum as soon as the four length
//! bytes arrive, before buffering any of the body, and asks the caller to reserve at most
//! that maximum, so a peer claiming 4 GiB costs nothing.

use bytes::{Buf, BufMut, BytesMut};

use crate::HEADER_LEN;
use crate::error::ProtoError;
use crate::frame::{Frame, FrameType};

/// Appends one encoded frame to `buf`.
pub fn encode(frame: &Frame, buf: &mut BytesMut) {
    let start = buf.len();
    buf.put_u32(0); // length, patched below
    buf.put_u8(frame.frame_type() as u8);
    frame.encode_body(buf);
    let len = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Takes complete frames off the front of a buffer, refusing any longer than `max_frame`.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: u32,
}

impl FrameDecoder {
    /// A decoder accepting frames of at most `max_frame` bytes (type byte and body).
    pub fn new(max_frame: u32) -> Self {
        FrameDecoder { max_frame }
    }

    /// The maximum in force.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the error that makes
    /// the stream unusable (the caller reports it and closes the connection).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len == 0 {
            return Err(ProtoError::Empty);
        }
        if len > self.max_frame {
            return Err(ProtoError::FrameTooLarge {
                len: u64::from(len),
                max: self.max_frame,
            });
        }
        let total = 4 + len as usize;
        if buf.len() < total {
            // Bounded by the check above: never more than max_frame + 4 bytes.
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let type_byte = buf[4];
        let Some(ty) = FrameType::from_byte(type_byte) else {
            return Err(ProtoError::UnknownFrameType(type_byte));
        };
        let mut frame = buf.split_to(total);
        frame.advance(HEADER_LEN);
        Frame::decode_body(ty, frame.freeze()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Confirm, Heartbeat};

    #[test]
    fn a_frame_arriving_byte_by_byte_decodes_once_complete() {
        let mut wire = BytesMut::new();
        encode(&Frame::Confirm(Confirm { up_to_seq: 42 }), &mut wire);
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            buf.put_u8(*b);
            let got = dec.decode(&mut buf).unwrap();
            if i + 1 < wire.len() {
                assert_eq!(got, None);
            } else {
                assert_eq!(got, Some(Frame::Confirm(Confirm { up_to_seq: 42 })));
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn an_oversized_claim_is_refused_from_the_length_alone() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let mut dec = FrameDecoder::new(4096);
        assert_eq!(
            dec.decode(&mut buf),
            Err(ProtoError::FrameTooLarge {
                len: u64::from(u32::MAX),
                max: 4096
            })
        );
        assert!(
            buf.capacity() < 4096,
            "nothing reserved for a refused frame"
        );
    }

    #[test]
    fn an_unknown_type_and_an_empty_frame_are_errors() {
        let mut dec = FrameDecoder::new(4096);
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 0x7f][..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(ProtoError::UnknownFrameType(0x7f))
        );
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert_eq!(dec.decode(&mut buf), Err(ProtoError::Empty));
    }

    #[test]
    fn two_frames_in_one_read_come_out_one_at_a_time() {
        let mut buf = BytesMut::new();
        encode(&Frame::Heartbeat(Heartbeat), &mut buf);
        encode(&Frame::Confirm(Confirm { up_to_seq: 1 }), &mut buf);
        let mut dec = FrameDecoder::new(4096);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(Frame::Heartbeat(Heartbeat))
        );
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(Frame::Confirm(Confirm { up_to_seq: 1 }))
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    }
}
