//! PMDK-compatible pool sets: parse, check, sync and transform replicated pools.
//!
//! **Status: placeholder.** This crate will read PMDK 1.12 poolset files (poolset(5)) and
//! pmemobj pool headers, report the health of every part and replica, heal a set from its
//! healthy data (crash-safely, through an intent journal), and add or remove replicas. It
//! will also hold ckpt's native pool type with per-block checksums, scrub and read-repair.
#![forbid(unsafe_code)]
