//! Invariant: decoding arbitrary bytes with `ckpt_sparse::proto` never panics and never
//! allocates beyond the max payload (one frame of at most `MAX_FRAME_LEN` bytes; run with
//! `-malloc_limit_mb=32` and libFuzzer checks it); any message that decodes re-encodes to
//! exactly the bytes consumed. `decode` (slices) and `read_message` (streams) agree message for
//! message, error for error, over a whole input read as a stream of frames.
//!
//! The check value keeps mutated frames from reaching the payload decoders, so each input is
//! also wrapped, as it stands, in a frame with a correct length and check value (first byte
//! modulo 11 as the type code, the rest as the payload); the same invariant holds there.
#![no_main]

use ckpt_sparse::proto::{self, MAX_PAYLOAD_LEN, Message, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;
use xxhash_rust::xxh3::xxh3_64;

fn reencode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode(msg, &mut out);
    out
}

/// Walks `data` as a stream of frames with both entry points.
fn check_stream(data: &[u8]) {
    let mut rest = data;
    let mut reader = data;
    loop {
        match (proto::decode(rest), proto::read_message(&mut reader)) {
            (Ok((msg, used)), Ok(Some(read))) => {
                assert_eq!(msg, read, "decode and read_message decoded different messages");
                assert_eq!(reencode(&msg), rest[..used], "re-encoding differs from the input");
                rest = &rest[used..];
                assert_eq!(rest.len(), reader.len(), "read_message consumed a different length");
            }
            (Err(_), Ok(None)) => {
                assert!(rest.is_empty(), "read_message saw a clean end inside the input");
                break;
            }
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "decode and read_message disagree");
                break;
            }
            (a, b) => panic!("decode gave {a:?} but read_message {b:?}"),
        }
    }
}

/// Frames `data[1..]` as the payload of type `data[0] % 11` with a correct check value.
fn check_framed_payload(data: &[u8]) {
    let Some((&kind, payload)) = data.split_first() else { return };
    if payload.len() > MAX_PAYLOAD_LEN as usize {
        return;
    }
    let mut frame = Vec::with_capacity(payload.len() + 20);
    frame.extend_from_slice(b"CKSP");
    frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    frame.extend_from_slice(&u16::from(kind % 11).to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    let check = xxh3_64(&frame);
    frame.extend_from_slice(&check.to_le_bytes());
    if let Ok((msg, used)) = proto::decode(&frame) {
        assert_eq!(used, frame.len());
        assert_eq!(reencode(&msg), frame, "re-encoding differs from the framed input");
    }
    check_stream(&frame);
}

fuzz_target!(|data: &[u8]| {
    check_stream(data);
    check_framed_payload(data);
});
