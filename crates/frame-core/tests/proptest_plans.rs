//! Random frame/buffer plans round-trip through every sink and source, with exact RAW sizes
//! and LZ4 within its bound. Failures are persisted under `proptest-regressions/` and
//! replayed first on every run; commit those files.

mod common;
use ckpt_frame_core::{Style, checkpoint_size_bound};
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

fn buffer_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..64,
        3 => 64usize..20_000,
        2 => prop::sample::select(vec![4095usize, 4096, 4097, 16383, 16384, 16385, 65535, 65536, 65537]),
        1 => 20_000usize..200_000,
    ]
}

/// A frame's buffers, described compactly so that shrunk failures persist as a few lines:
/// a few buffers of any size, or thousands of tiny ones so that length prefixes and
/// buffers land across 64 KiB chunk boundaries at every position.
#[derive(Debug, Clone)]
enum Buffers {
    Few(Vec<(usize, u64, bool)>),
    Tiny { count: usize, seed: u64, text: bool },
}

impl Buffers {
    fn build(&self) -> Vec<Vec<u8>> {
        match self {
            Self::Few(bufs) => {
                bufs.iter().map(|&(len, seed, text)| content(seed, len, text)).collect()
            }
            Self::Tiny { count, seed, text } => {
                let lens = content(*seed, *count, false);
                let lens = lens.iter().map(|l| usize::from(*l % 100));
                lens.enumerate().map(|(i, l)| content(seed ^ i as u64, l, *text)).collect()
            }
        }
    }
}

fn buffers() -> impl Strategy<Value = Buffers> {
    prop_oneof![
        3 => prop::collection::vec((buffer_len(), any::<u64>(), prop::bool::ANY), 0..12).prop_map(Buffers::Few),
        1 => (500usize..3000, any::<u64>(), prop::bool::ANY)
            .prop_map(|(count, seed, text)| Buffers::Tiny { count, seed, text }),
    ]
}

fn plan() -> impl Strategy<Value = Vec<(bool, Buffers)>> {
    prop::collection::vec((prop::bool::ANY, buffers()), 0..5)
}

fn build(spec: &[(bool, Buffers)]) -> Plan {
    spec.iter().map(|(lz4, b)| (if *lz4 { Style::Lz4 } else { Style::Raw }, b.build())).collect()
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    })]

    #[test]
    fn random_plans_round_trip(spec in plan()) {
        let plan = build(&spec);
        let outs = write_every_way(&plan);
        for (name, bytes) in &outs[1..] {
            prop_assert!(bytes == &outs[0].1, "{} differs from VecSink", name);
        }
        let bytes = &outs[0].1;
        let bound = checkpoint_size_bound(plan.iter().map(|(s, b)| (*s, b.iter().map(Vec::len)))).unwrap();
        let raw_only = plan.iter().all(|(s, _)| *s == Style::Raw);
        let len = bytes.len() as u64;
        let within = if raw_only { len == bound } else { len <= bound };
        prop_assert!(within, "size {} against bound {} (raw only: {})", len, bound, raw_only);
        for (name, restored) in restore_every_way(bytes, &plan) {
            restored.assert_equals(&plan, name);
        }
    }
}
