//! Arbitrary bytes into the frame decoder, fed in two pieces: it must never panic, never
//! buffer past its maximum, and every frame it returns must encode back to the bytes it took.

#![no_main]

use bytes::BytesMut;
use flowgate_proto::{FrameDecoder, encode};
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut decoder = FrameDecoder::new(MAX);
    let mut buf = BytesMut::new();
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let mut again = BytesMut::new();
                    encode(&frame, &mut again);
                    let taken = before.len() - buf.len();
                    assert_eq!(&again[..], &before[..taken], "re-encoding differs");
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() <= MAX as usize + 4 + piece.len());
    }
});
