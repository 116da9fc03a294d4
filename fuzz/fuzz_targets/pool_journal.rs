//! Invariant: `ckpt_poolset::journal::Journal::decode` never panics on arbitrary bytes and
//! never allocates more than the input justifies (each action takes input bytes; a write
//! payload is at most 1 MiB and present in the input). A journal that decodes re-encodes to
//! exactly its input, and decode(encode(j)) == j.
//!
//! The trailing xxh3-64 keeps mutated inputs from reaching the action decoder, so each
//! input is also decoded as the body of a journal, sealed with a correct check value; the
//! same invariant holds there. Finally the input drives `arbitrary` to build a journal
//! (paths of 1..=4096 bytes, write payloads of up to 64 KiB), which must survive
//! encode -> decode unchanged.
//!
//! Only the pure decoder and encoder run: `load`, `store`, `recover` and `apply` touch the
//! filesystem and stay out of the fuzzer.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ckpt_poolset::journal::{Action, Journal, State};
use libfuzzer_sys::fuzz_target;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use xxhash_rust::xxh3::xxh3_64;

fn check_decode(bytes: &[u8]) {
    match Journal::decode(bytes) {
        Ok(j) => {
            let encoded = j.encode();
            assert!(encoded == bytes, "a decoded journal re-encodes to other bytes");
            assert_eq!(Journal::decode(&encoded).as_ref(), Ok(&j), "decode(encode(j)) != j");
        }
        Err(e) => assert!(!e.is_empty(), "an empty error message"),
    }
}

fn sealed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(body);
    out.extend_from_slice(&xxh3_64(body).to_le_bytes());
    out
}

fn path(u: &mut Unstructured<'_>) -> arbitrary::Result<PathBuf> {
    let len = u.int_in_range(1..=4096usize)?;
    let mut bytes: Vec<u8> = u.bytes(len.min(u.len()))?.to_vec();
    if bytes.is_empty() {
        bytes.push(b'/');
    }
    Ok(PathBuf::from(OsStr::from_bytes(&bytes)))
}

fn journal(u: &mut Unstructured<'_>) -> arbitrary::Result<Journal> {
    let state = if bool::arbitrary(u)? { State::Committed } else { State::Prepared };
    let mut actions = Vec::new();
    u.arbitrary_loop(None, Some(64), |u| {
        actions.push(match u.int_in_range(0..=3u8)? {
            0 => Action::Temp(path(u)?),
            1 => Action::Rename { from: path(u)?, to: path(u)? },
            2 => {
                let path = path(u)?;
                let offset = u64::arbitrary(u)?;
                let len = u.int_in_range(0..=(1usize << 20))?;
                let fill = u8::arbitrary(u)?;
                Action::Write { path, offset, bytes: vec![fill; len.min(64 * 1024)] }
            }
            _ => Action::Remove(path(u)?),
        });
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    Ok(Journal { state, actions })
}

fuzz_target!(|data: &[u8]| {
    check_decode(data);
    check_decode(&sealed(data));
    if let Ok(j) = journal(&mut Unstructured::new(data)) {
        let encoded = j.encode();
        assert_eq!(Journal::decode(&encoded).as_ref(), Ok(&j), "a built journal does not survive");
    }
});
