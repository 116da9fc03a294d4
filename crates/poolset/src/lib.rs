//! PMDK-compatible pool sets: parse, check, sync and transform replicated pools.
//!
//! The crate reads PMDK 1.12 poolset files (poolset(5)) and pmemobj pool headers, reports
//! the health of every part and replica, heals a set from its healthy data, and adds or
//! removes replicas.
#![forbid(unsafe_code)]

pub mod grammar;
pub mod header;
