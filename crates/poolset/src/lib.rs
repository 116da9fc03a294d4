//! PMDK-compatible pool sets: parse, check, sync and transform replicated pools.
//!
//! The crate reads PMDK 1.12 poolset files (poolset(5)) and pmemobj pool headers, reports
//! the health of every part and replica, heals a set from its healthy data, and adds or
//! removes replicas.
//!
//! - [`grammar`]: the poolset file grammar and the size math.
//! - [`header`]: the 4 KiB pool header, the pmemobj descriptor, uuid rings.
//! - [`health`]: what is wrong with which part, as PMDK judges it.
//! - [`agreement`]: where the poolset file disagrees with what the pool records about itself.
//! - [`journal`]: the intent journal that makes sync and transform crash-safe.
//! - [`sync`]: rebuild missing and broken parts from healthy data, range by range.
//! - [`transform`]: add or remove replicas, add or remove `OPTION SINGLEHDR`.
//! - [`native`]: ckpt's own pool type, a replicated address space with per-block checksums,
//!   read-repair, scrub and a published state for one writer and many readers.
//!
//! Linux only: PMDK pools, `flock` and the durable paths are built on Linux file semantics; other systems get a `compile_error!`.

#![forbid(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!("ckpt-poolset supports Linux only");

pub mod agreement;
mod build;
mod error;
pub mod grammar;
pub mod header;
pub mod health;
pub mod journal;
mod lock;
pub mod native;
mod rings;
pub mod sync;
pub mod transform;

pub use build::SourceRange;
pub use error::PoolError;
