//! The poolset(5) file grammar and the size math of a pool set.
//!
//! A poolset file describes a pool made of several part files, and optional replicas (mirrors)
//! of it. This module reads the format exactly as PMDK 1.12 does (`src/common/set.c`:
//! `util_poolset_parse`, `parser_read_line`, `parser_read_replica`, `parser_read_options`;
//! `src/core/util.c`: `util_parse_size`, `util_readline`, `util_fgets`), writes it back in a
//! canonical form, and computes the sizes and the data layout PMDK derives from it
//! (`util_poolset_set_size`, `util_replica_map_local`).
//!
//! # The grammar
//!
//! ```text
//! PMEMPOOLSET                    the first line, exactly (no blanks, no comment)
//! OPTION SINGLEHDR               options: anywhere after the first line, for the whole set
//! 100G /mnt/pmem0/pool.part0     a part: SIZE PATH, the path absolute
//! 200G /mnt/pmem1/pool.part1     # comments start anywhere with '#'
//! REPLICA                        starts the next replica (the first one is implicit)
//! 300G /mnt/pmem2/mirror.part0
//! ```
//!
//! - Lines end with LF or CRLF. Tokens are separated by spaces and tabs.
//! - `#` starts a comment anywhere on a line. A line that is empty once its comment is cut
//!   off is skipped; a line that holds only blanks (with or without a comment after them) is an
//!   error, as in PMDK.
//! - SIZE is a decimal integer with an optional, case-sensitive suffix: `B`; `K M G T P` and
//!   `KiB MiB GiB TiB PiB` (powers of 1024); `kB MB GB TB PB` (powers of 1000). See
//!   [`parse_size`].
//! - `REPLICA` must be alone on its line. `REPLICA host descriptor` is PMDK's remote replica;
//!   it is recognised and refused.
//! - `OPTION` is followed by one or more of `SINGLEHDR` and `NOHDRS`; an unknown option is an
//!   error. Options may appear on any line after the first and apply to the whole set.
//! - A PATH that names an existing directory makes a *directory part* (see
//!   [`PoolSet::resolve_directories`]): the parts of the replica are then the `NNNNNN.pmem`
//!   files inside the directories, and the SIZE is an address space reservation.
//!
//! # Where this module is stricter than PMDK
//!
//! PMDK accepts some sets that can never work, and fails on them later (or silently does the
//! wrong thing). [`parse`] refuses them up front, naming the line:
//! - negative sizes and sizes that overflow 64 bits (PMDK wraps them silently), and sizes over
//!   2^63-1 bytes, which no file can have (PMDK fails when it creates the file);
//! - the same part path twice (PMDK fails later when it locks the file a second time);
//! - `OPTION SINGLEHDR` together with `OPTION NOHDRS` (PMDK logs it and fails on create/open);
//! - control characters (a lone CR, NUL, ...) outside comments, and non-UTF-8 bytes outside
//!   comments (PMDK takes them into paths).
//!
//! # Line numbers
//!
//! Lines and columns are 1-based; columns count characters. Items built in code rather than
//! read from a file carry line 0. Equality of the types here compares what the set means
//! (options, replicas, parts, directories, sizes), never where it was written, so a set and
//! its re-parsed [`PoolSet::to_text`] compare equal.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The size of the pool header at the start of a part (PMDK `POOL_HDR_SIZE`).
pub const POOL_HDR_SIZE: u64 = 4096;

/// The alignment part sizes are rounded down to (PMDK `Mmap_align`, the page size on Linux).
pub const PART_ALIGNMENT: u64 = 4096;

/// The largest size a part can have: the largest file offset (`off_t`), 2^63-1.
pub const MAX_PART_SIZE: u64 = u64::MAX >> 1;

/// The signature line every poolset file starts with.
const SIGNATURE: &[u8] = b"PMEMPOOLSET";
const REPLICA_KEYWORD: &str = "REPLICA";
const OPTION_KEYWORD: &str = "OPTION";
const SINGLEHDR: &str = "SINGLEHDR";
const NOHDRS: &str = "NOHDRS";
/// The extension of the part files PMDK creates in a directory part.
const PMEM_EXT: &[u8] = b".pmem";

/// Pool set options (`OPTION` lines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SetOptions {
    /// `OPTION SINGLEHDR`: only the first part of each replica has a pool header.
    pub single_header: bool,
    /// `OPTION NOHDRS`: no part has a pool header (PMDK allows it only for remote pools).
    pub no_headers: bool,
}

/// A parsed pool set: its options and its replicas, in file order (replica 0 is the master).
///
/// Build one with [`parse`], [`parse_bytes`], [`PoolSet::from_file`] or [`PoolSet::new`].
#[derive(Debug, Clone)]
pub struct PoolSet {
    /// The options of the set.
    pub options: SetOptions,
    /// The replicas; a valid set has at least one.
    pub replicas: Vec<Replica>,
    /// Where each option was first set, for error messages.
    option_lines: OptionLines,
}

#[derive(Debug, Clone, Copy, Default)]
struct OptionLines {
    single_header: Option<(usize, usize)>,
    no_headers: Option<(usize, usize)>,
}

/// One replica: its parts in pool order.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    /// The parts, in the order their data follows in the pool.
    pub parts: Vec<Part>,
    /// The directory lines of a directory-based replica (empty otherwise); filled in by
    /// [`PoolSet::resolve_directories`].
    pub directories: Vec<Directory>,
    /// The line that starts the replica: 1 (the `PMEMPOOLSET` line) for replica 0, else its
    /// `REPLICA` line.
    pub line: usize,
}

/// One part file of a replica.
#[derive(Debug, Clone)]
pub struct Part {
    /// The absolute path of the part file.
    pub path: PathBuf,
    /// The size in bytes: as written on the part's line, or the file's size for a part found
    /// in a directory.
    pub size: u64,
    /// The line of the part (or of its directory).
    pub line: usize,
    /// The column where the part's line (or its directory's line) begins: that of its SIZE.
    pub column: usize,
    /// Where the part comes from.
    pub origin: PartOrigin,
}

/// Where a [`Part`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PartOrigin {
    /// A `SIZE PATH` line of the poolset file.
    Line,
    /// A `NNNNNN.pmem` file of a directory part.
    Directory {
        /// The index of the directory in [`Replica::directories`].
        directory: usize,
        /// The part number, from the file name (`000003.pmem` is 3).
        index: u32,
        /// False when the file is missing from this replica but exists in another one: the
        /// part is then where PMDK would recreate it (the replica's first directory) and its
        /// size is the size of the same part in the first replica that has it.
        exists: bool,
    },
}

/// A directory line of a directory-based replica.
#[derive(Debug, Clone)]
pub struct Directory {
    /// The absolute path of the directory.
    pub path: PathBuf,
    /// The SIZE of the line: how much address space the pool may grow into.
    pub reservation: u64,
    /// The line of the directory.
    pub line: usize,
    /// The column of the SIZE on that line.
    pub column: usize,
}

/// Where the data of one part lies in its file and in the pool.
///
/// The pool's address space is PMDK's: offset 0 is the first byte of part 0 (its pool header,
/// when the set has headers), and the data of each part follows that of the part before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    /// The index of the part in [`Replica::parts`].
    pub part: usize,
    /// Where the data begins in the part file (after its header, if it has one).
    pub file_offset: u64,
    /// Where the data begins in the pool.
    pub pool_offset: u64,
    /// How many bytes of data the part holds.
    pub len: u64,
}

/// The minimum sizes a library enforces when it creates or opens a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The smallest size of a part file.
    pub min_part: u64,
    /// The smallest size of a replica (PMDK's net pool size, see [`PoolSet::replica_size`]).
    pub min_pool: u64,
}

impl Limits {
    /// libpmemobj's limits: `PMEMOBJ_MIN_PART` (2 MiB) and `PMEMOBJ_MIN_POOL` (8 MiB).
    pub const PMEMOBJ: Limits = Limits { min_part: 2 << 20, min_pool: 8 << 20 };
    /// No minimums: [`PoolSet::validate`] then checks only what no local pool may use.
    pub const NONE: Limits = Limits { min_part: 0, min_pool: 0 };
}

/// Why a SIZE token is not a valid size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SizeProblem {
    /// The token is empty.
    Empty,
    /// The token does not start with a decimal digit.
    NotANumber,
    /// The token is a negative number.
    Negative,
    /// The digits are followed by something that is not a known suffix.
    UnknownSuffix(String),
    /// The size is 0.
    Zero,
    /// The number, or the number times its suffix, does not fit in 64 bits.
    Overflow,
    /// The size is over [`MAX_PART_SIZE`].
    TooLarge,
    /// `AUTO`: PMDK takes the size of a Device DAX; ckpt does not support Device DAX.
    Auto,
}

impl fmt::Display for SizeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeProblem::Empty => f.write_str("expected a size, found nothing"),
            SizeProblem::NotANumber => f.write_str("expected a size starting with a decimal digit"),
            SizeProblem::Negative => f.write_str("a size cannot be negative"),
            SizeProblem::UnknownSuffix(suffix) => write!(
                f,
                "unknown suffix {suffix:?} (expected none, B, K, M, G, T, P, KiB, MiB, GiB, TiB, \
                 PiB, kB, MB, GB, TB or PB; suffixes are case-sensitive)"
            ),
            SizeProblem::Zero => f.write_str("a part cannot have size 0"),
            SizeProblem::Overflow => f.write_str("the size overflows 64 bits"),
            SizeProblem::TooLarge => {
                write!(f, "the size is larger than the largest file size ({MAX_PART_SIZE} bytes)")
            }
            SizeProblem::Auto => {
                f.write_str("AUTO sizes are for Device DAX, which is not supported: write the size")
            }
        }
    }
}

/// An error in a poolset file, in resolving its directories, or in checking its sizes.
///
/// Every variant read from a file names its line and column (1-based; see
/// [`GrammarError::position`]) and carries the offending text.
#[derive(Debug)]
#[non_exhaustive]
pub enum GrammarError {
    /// The first line is not exactly `PMEMPOOLSET`.
    Header {
        /// Always 1.
        line: usize,
        /// The first character that differs.
        column: usize,
        /// The first line, or `end of file`.
        found: String,
    },
    /// Bytes that are not UTF-8 outside a comment.
    InvalidUtf8 {
        /// The line.
        line: usize,
        /// The column of the first invalid byte.
        column: usize,
    },
    /// A control character (other than a tab) outside a comment, such as a CR that does not
    /// end a line.
    InvalidCharacter {
        /// The line.
        line: usize,
        /// The column of the character.
        column: usize,
        /// The character.
        found: char,
    },
    /// A line of blanks only (perhaps followed by a comment).
    BlankLine {
        /// The line.
        line: usize,
        /// Always 1.
        column: usize,
    },
    /// A part line with a SIZE but no PATH.
    MissingPath {
        /// The line.
        line: usize,
        /// The column where the path was expected (the end of the line).
        column: usize,
        /// The only token of the line.
        size: String,
    },
    /// A token after the end of a part or remote replica line.
    ExtraToken {
        /// The line.
        line: usize,
        /// The column of the token.
        column: usize,
        /// The token.
        found: String,
    },
    /// A SIZE that is not a valid part size.
    InvalidSize {
        /// The line.
        line: usize,
        /// The column of the size.
        column: usize,
        /// The size token.
        found: String,
        /// What is wrong with it.
        problem: SizeProblem,
    },
    /// A PATH that is not absolute.
    RelativePath {
        /// The line.
        line: usize,
        /// The column of the path.
        column: usize,
        /// The path token.
        found: String,
    },
    /// A line that starts with `REPLICA` but is not exactly `REPLICA` nor a remote replica.
    ReplicaKeyword {
        /// The line.
        line: usize,
        /// The column where the line stops being `REPLICA`.
        column: usize,
        /// The line (without its comment).
        found: String,
    },
    /// `REPLICA host descriptor`: a remote replica, which is not supported.
    RemoteReplica {
        /// The line.
        line: usize,
        /// The column of the host.
        column: usize,
        /// The host token.
        host: String,
        /// The descriptor token, if any.
        descriptor: Option<String>,
    },
    /// `OPTION` with no option after it.
    MissingOption {
        /// The line.
        line: usize,
        /// The column after `OPTION` and its blanks.
        column: usize,
    },
    /// An option other than `SINGLEHDR` and `NOHDRS`.
    UnknownOption {
        /// The line.
        line: usize,
        /// The column of the option.
        column: usize,
        /// The option.
        found: String,
    },
    /// `SINGLEHDR` and `NOHDRS` in one set.
    ConflictingOptions {
        /// The line of the second of the two.
        line: usize,
        /// The column of the second of the two.
        column: usize,
        /// The second of the two.
        found: String,
        /// The line that set the first of the two.
        first_line: usize,
    },
    /// A replica without parts.
    EmptyReplica {
        /// The replica (0 is the master).
        replica: usize,
        /// The line that starts the replica (1 for replica 0).
        line: usize,
        /// Always 1.
        column: usize,
        /// What came instead of a part: a `REPLICA` line, or the end of the file.
        found: String,
    },
    /// A part path that is used twice in the set (also through a link, once resolved).
    DuplicatePath {
        /// The line of the second use.
        line: usize,
        /// The column of the path on that line (of the SIZE, when found through a link).
        column: usize,
        /// The path.
        path: PathBuf,
        /// The line of the first use.
        first_line: usize,
    },
    /// The parts of a replica add up to more than [`MAX_PART_SIZE`] bytes.
    ReplicaTooLarge {
        /// The replica.
        replica: usize,
        /// The line of the part that makes it too large.
        line: usize,
        /// The column of that part's size.
        column: usize,
    },
    /// A directory and a file part in one set.
    MixedDirectoriesAndFiles {
        /// The line of the first part that differs from the set's first part.
        line: usize,
        /// The column where that line's SIZE begins.
        column: usize,
        /// Its path.
        path: PathBuf,
        /// True if it is a directory (and the set's first part a file).
        is_directory: bool,
        /// The line of the set's first part.
        first_line: usize,
    },
    /// The same directory twice in a set.
    DuplicateDirectory {
        /// The line of the second use.
        line: usize,
        /// The column where that line's SIZE begins.
        column: usize,
        /// The directory.
        path: PathBuf,
        /// The line of the first use.
        first_line: usize,
    },
    /// A `*.pmem` file in a directory part that is not a part PMDK would have made.
    BadDirectoryEntry {
        /// The line of the directory.
        line: usize,
        /// The column where that line's SIZE begins.
        column: usize,
        /// The file.
        entry: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A directory-based set where no replica has part `index`, though a later part exists.
    MissingDirectoryPart {
        /// The line of the first directory of replica 0.
        line: usize,
        /// The column where that line's SIZE begins.
        column: usize,
        /// The missing part number.
        index: u32,
    },
    /// An I/O error reading the poolset file or a directory.
    Io {
        /// The line of the directory, or 0 for the poolset file itself.
        line: usize,
        /// The column where that line's SIZE begins, or 0.
        column: usize,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A part smaller than the library's minimum part size.
    PartTooSmall {
        /// The replica.
        replica: usize,
        /// The part.
        part: usize,
        /// The line of the part.
        line: usize,
        /// The column of its size.
        column: usize,
        /// Its size.
        size: u64,
        /// The minimum.
        min: u64,
    },
    /// A replica smaller than the library's minimum pool size.
    PoolTooSmall {
        /// The replica.
        replica: usize,
        /// The line that starts the replica.
        line: usize,
        /// Always 1.
        column: usize,
        /// The replica's size (its reservation for a directory-based replica).
        size: u64,
        /// The minimum.
        min: u64,
    },
    /// `OPTION NOHDRS`, which PMDK supports only in the pool set file of a remote replica.
    NoHeadersUnsupported {
        /// The line of the option.
        line: usize,
        /// The column of `NOHDRS`.
        column: usize,
    },
    /// A directory-based set without `OPTION SINGLEHDR`.
    DirectoryNeedsSingleHeader {
        /// The line of the first directory.
        line: usize,
        /// The column where that line's SIZE begins.
        column: usize,
        /// The directory.
        path: PathBuf,
    },
    /// A set built in code that cannot be written as a poolset file.
    Unwritable {
        /// The replica.
        replica: usize,
        /// The part (or directory) in the replica.
        part: usize,
        /// Its path.
        path: PathBuf,
        /// Why it cannot be written.
        reason: &'static str,
    },
}

impl GrammarError {
    /// The line and column (1-based) the error is about, if it is about a place in a file.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = ckpt_poolset::grammar::parse("PMEMPOOLSET\n1G pool.part\n").unwrap_err();
    /// assert_eq!(err.position(), Some((2, 4)));
    /// ```
    pub fn position(&self) -> Option<(usize, usize)> {
        let (line, column) = match self {
            GrammarError::Header { line, column, .. }
            | GrammarError::InvalidUtf8 { line, column }
            | GrammarError::InvalidCharacter { line, column, .. }
            | GrammarError::BlankLine { line, column }
            | GrammarError::MissingPath { line, column, .. }
            | GrammarError::ExtraToken { line, column, .. }
            | GrammarError::InvalidSize { line, column, .. }
            | GrammarError::RelativePath { line, column, .. }
            | GrammarError::ReplicaKeyword { line, column, .. }
            | GrammarError::RemoteReplica { line, column, .. }
            | GrammarError::MissingOption { line, column }
            | GrammarError::UnknownOption { line, column, .. }
            | GrammarError::ConflictingOptions { line, column, .. }
            | GrammarError::EmptyReplica { line, column, .. }
            | GrammarError::DuplicatePath { line, column, .. }
            | GrammarError::ReplicaTooLarge { line, column, .. }
            | GrammarError::MixedDirectoriesAndFiles { line, column, .. }
            | GrammarError::DuplicateDirectory { line, column, .. }
            | GrammarError::BadDirectoryEntry { line, column, .. }
            | GrammarError::MissingDirectoryPart { line, column, .. }
            | GrammarError::Io { line, column, .. }
            | GrammarError::PartTooSmall { line, column, .. }
            | GrammarError::PoolTooSmall { line, column, .. }
            | GrammarError::NoHeadersUnsupported { line, column }
            | GrammarError::DirectoryNeedsSingleHeader { line, column, .. } => (*line, *column),
            GrammarError::Unwritable { .. } => return None,
        };
        (line > 0).then_some((line, column))
    }

    fn io(line: usize, column: usize, path: &Path, source: io::Error) -> GrammarError {
        GrammarError::Io { line, column, path: path.to_path_buf(), source }
    }
}

impl fmt::Display for GrammarError {
    #[expect(clippy::too_many_lines, reason = "one short arm per variant")]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.position() {
            write!(f, "line {line}, column {column}: ")?;
        }
        match self {
            GrammarError::Header { found, .. } => {
                write!(f, "expected the first line to be exactly `PMEMPOOLSET`, found {found:?}")
            }
            GrammarError::InvalidUtf8 { .. } => f.write_str(
                "expected UTF-8 text, found invalid bytes (only comments may hold other bytes)",
            ),
            GrammarError::InvalidCharacter { found, .. } => write!(
                f,
                "unexpected control character {found:?} (lines end with LF or CRLF; tokens are \
                 separated by spaces and tabs)"
            ),
            GrammarError::BlankLine { .. } => f.write_str(
                "expected `SIZE PATH`, `REPLICA` or `OPTION`, found a line of only blanks \
                 (PMDK rejects it: delete the blanks, or start the line with `#`)",
            ),
            GrammarError::MissingPath { size, .. } => {
                write!(f, "expected `SIZE PATH`, found only {size:?}: the path is missing")
            }
            GrammarError::ExtraToken { found, .. } => {
                write!(f, "expected the end of the line, found the extra token {found:?}")
            }
            GrammarError::InvalidSize { found, problem, .. } => {
                write!(f, "invalid size {found:?}: {problem}")
            }
            GrammarError::RelativePath { found, .. } => {
                write!(f, "expected an absolute path (starting with `/`), found {found:?}")
            }
            GrammarError::ReplicaKeyword { found, .. } => write!(
                f,
                "expected exactly `REPLICA` (alone on its line: PMDK reads anything after it as \
                 a remote replica), found {found:?}"
            ),
            GrammarError::RemoteReplica { host, descriptor, .. } => {
                write!(f, "remote replicas are not supported, found `REPLICA {host}")?;
                if let Some(descriptor) = descriptor {
                    write!(f, " {descriptor}")?;
                }
                f.write_str("`")
            }
            GrammarError::MissingOption { .. } => {
                f.write_str("expected an option (SINGLEHDR or NOHDRS) after OPTION, found nothing")
            }
            GrammarError::UnknownOption { found, .. } => {
                write!(f, "unknown option {found:?} (expected SINGLEHDR or NOHDRS)")
            }
            GrammarError::ConflictingOptions { found, first_line, .. } => {
                let other = if found == SINGLEHDR { NOHDRS } else { SINGLEHDR };
                write!(
                    f,
                    "option {found} conflicts with option {other} on line {first_line}: \
                     SINGLEHDR and NOHDRS are mutually exclusive"
                )
            }
            GrammarError::EmptyReplica { replica, found, .. } => write!(
                f,
                "replica {replica} has no parts: expected at least one `SIZE PATH` line, found \
                 {found}"
            ),
            GrammarError::DuplicatePath { path, first_line, .. } => write!(
                f,
                "duplicate part path {}: the same path is already a part on line {first_line}",
                path.display()
            ),
            GrammarError::ReplicaTooLarge { replica, .. } => write!(
                f,
                "replica {replica} is too large: its parts add up to more than {MAX_PART_SIZE} \
                 bytes"
            ),
            GrammarError::MixedDirectoriesAndFiles { path, is_directory, first_line, .. } => {
                let (this, first) = if *is_directory {
                    ("a directory", "a file")
                } else {
                    ("a file", "a directory")
                };
                write!(
                    f,
                    "cannot mix directories and files in a pool set: {} is {this}, but the part \
                     on line {first_line} is {first}",
                    path.display()
                )
            }
            GrammarError::DuplicateDirectory { path, first_line, .. } => write!(
                f,
                "duplicate directory {}: the same directory is already used on line {first_line}",
                path.display()
            ),
            GrammarError::BadDirectoryEntry { entry, problem, .. } => {
                write!(f, "unexpected file {} in a directory part: {problem}", entry.display())
            }
            GrammarError::MissingDirectoryPart { index, .. } => write!(
                f,
                "no replica has part file {index:06}.pmem, but a later part exists: the \
                 directory pool set has a gap"
            ),
            GrammarError::Io { path, source, .. } => write!(f, "{}: {source}", path.display()),
            GrammarError::PartTooSmall { replica, part, size, min, .. } => write!(
                f,
                "part {part} of replica {replica} is too small: {size} bytes, the minimum is \
                 {min}"
            ),
            GrammarError::PoolTooSmall { replica, size, min, .. } => write!(
                f,
                "replica {replica} is too small: its pool size is {size} bytes, the minimum is \
                 {min}"
            ),
            GrammarError::NoHeadersUnsupported { .. } => f.write_str(
                "the NOHDRS option is not supported for local pool sets (PMDK allows it only in \
                 the pool set file of a remote replica)",
            ),
            GrammarError::DirectoryNeedsSingleHeader { path, .. } => write!(
                f,
                "directory {} needs OPTION SINGLEHDR: PMDK supports directory pool sets only \
                 with it",
                path.display()
            ),
            GrammarError::Unwritable { replica, part, path, reason } => write!(
                f,
                "cannot write part {part} of replica {replica} ({}) as a poolset line: {reason}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for GrammarError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GrammarError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Parses a SIZE token as PMDK's `util_parse_size` does, but refuses what it gets wrong.
///
/// The token is a decimal integer (an optional leading `+` is allowed, as by PMDK) followed
/// by an optional, case-sensitive suffix: `B` (bytes); `K M G T P` and `KiB MiB GiB TiB PiB`
/// (1024, 1024², ...); `kB MB GB TB PB` (1000, 1000², ...). `0` is a valid size here (a part
/// line refuses it).
///
/// # Errors
///
/// [`SizeProblem`] says what is wrong: an empty token, no digits, a negative number, an
/// unknown suffix (`k`, `mb`, `Kb`, `.5G`, ...), a value that overflows 64 bits (PMDK wraps it
/// silently), or `AUTO`.
///
/// # Examples
///
/// ```
/// use ckpt_poolset::grammar::{parse_size, SizeProblem};
/// assert_eq!(parse_size("2M"), Ok(2 << 20));
/// assert_eq!(parse_size("2MiB"), Ok(2 << 20));
/// assert_eq!(parse_size("2MB"), Ok(2_000_000));
/// assert_eq!(parse_size("2mb"), Err(SizeProblem::UnknownSuffix("mb".into())));
/// assert_eq!(parse_size("-2M"), Err(SizeProblem::Negative));
/// assert_eq!(parse_size("20000000P"), Err(SizeProblem::Overflow));
/// ```
pub fn parse_size(token: &str) -> Result<u64, SizeProblem> {
    if token.is_empty() {
        return Err(SizeProblem::Empty);
    }
    if token == "AUTO" {
        return Err(SizeProblem::Auto);
    }
    if let Some(rest) = token.strip_prefix('-') {
        return Err(if rest.starts_with(|c: char| c.is_ascii_digit()) {
            SizeProblem::Negative
        } else {
            SizeProblem::NotANumber
        });
    }
    let unsigned = token.strip_prefix('+').unwrap_or(token);
    let digits_end = unsigned.find(|c: char| !c.is_ascii_digit()).unwrap_or(unsigned.len());
    let (digits, suffix) = unsigned.split_at_checked(digits_end).unwrap_or((unsigned, ""));
    if digits.is_empty() {
        return Err(SizeProblem::NotANumber);
    }
    let multiplier: u64 = match suffix {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "P" | "PiB" => 1 << 50,
        "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "PB" => 1_000_000_000_000_000,
        other => return Err(SizeProblem::UnknownSuffix(other.to_owned())),
    };
    // Only ASCII digits are left, so the only way to fail is to overflow.
    let value: u64 = digits.parse().map_err(|_| SizeProblem::Overflow)?;
    value.checked_mul(multiplier).ok_or(SizeProblem::Overflow)
}

/// Parses the text of a poolset file. Pure: it does not look at the filesystem, so every part
/// is a [`PartOrigin::Line`] part; [`PoolSet::resolve_directories`] then finds which paths
/// are directories.
///
/// # Errors
///
/// A [`GrammarError`] naming the line and column of the first problem (see the
/// [module documentation](self) for the rules).
///
/// # Examples
///
/// ```
/// use ckpt_poolset::grammar::parse;
///
/// let set = parse("PMEMPOOLSET\n\
///                  OPTION SINGLEHDR\n\
///                  16M /mnt/a/pool.0   # first part\n\
///                  16M /mnt/a/pool.1\n\
///                  REPLICA\n\
///                  32M /mnt/b/mirror\n")?;
/// assert!(set.options.single_header);
/// assert_eq!(set.replicas.len(), 2);
/// assert_eq!(set.replicas[0].parts[1].line, 4);
/// assert_eq!(set.pool_size(), 32 << 20);
/// # Ok::<(), ckpt_poolset::grammar::GrammarError>(())
/// ```
pub fn parse(text: &str) -> Result<PoolSet, GrammarError> {
    parse_bytes(text.as_bytes())
}

/// Parses the bytes of a poolset file, like [`parse`]. Comments may hold any bytes; the rest
/// of the file must be UTF-8.
///
/// # Errors
///
/// As [`parse`], and [`GrammarError::InvalidUtf8`] for bytes that are not UTF-8 outside a
/// comment.
///
/// # Examples
///
/// ```
/// use ckpt_poolset::grammar::{parse_bytes, GrammarError};
///
/// assert!(parse_bytes(b"PMEMPOOLSET\n# caf\xe9\n8M /pool\n").is_ok());
/// let err = parse_bytes(b"PMEMPOOLSET\n8M /caf\xe9\n").unwrap_err();
/// assert!(matches!(err, GrammarError::InvalidUtf8 { line: 2, column: 8 }));
/// ```
pub fn parse_bytes(bytes: &[u8]) -> Result<PoolSet, GrammarError> {
    let mut parser = Parser::default();
    let mut segments = bytes.split(|&b| b == b'\n').peekable();
    let mut line = 0usize;
    while let Some(segment) = segments.next() {
        let terminated = segments.peek().is_some();
        if !terminated && segment.is_empty() {
            break;
        }
        line += 1;
        // CRLF ends a line as LF does (PMDK's util_fgets); a CR elsewhere is an error below.
        let content =
            if terminated { segment.strip_suffix(b"\r").unwrap_or(segment) } else { segment };
        if line == 1 {
            check_header(content)?;
            parser.replicas.push(Replica { line: 1, ..Replica::default() });
        } else {
            parser.line(line, content)?;
        }
    }
    parser.finish(line)
}

fn check_header(content: &[u8]) -> Result<(), GrammarError> {
    if content == SIGNATURE {
        return Ok(());
    }
    let mismatch = content.iter().zip(SIGNATURE).take_while(|(a, b)| a == b).count();
    Err(GrammarError::Header {
        line: 1,
        column: byte_column(content, mismatch),
        found: String::from_utf8_lossy(content).into_owned(),
    })
}

/// The 1-based character column of byte `index` of a line that may not be UTF-8.
fn byte_column(content: &[u8], index: usize) -> usize {
    String::from_utf8_lossy(content.get(..index).unwrap_or(content)).chars().count() + 1
}

/// The 1-based character column of byte `index` of `text`.
fn column(text: &str, index: usize) -> usize {
    text.get(..index).map_or(1, |prefix| prefix.chars().count() + 1)
}

/// The blank-separated tokens of `text`, each with the byte offset it starts at.
fn tokens(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c == ' ' || c == '\t' {
            if let Some(s) = start.take()
                && let Some(token) = text.get(s..i)
            {
                out.push((s, token));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start
        && let Some(token) = text.get(s..)
    {
        out.push((s, token));
    }
    out
}

#[derive(Default)]
struct Parser {
    replicas: Vec<Replica>,
    options: SetOptions,
    option_lines: OptionLines,
    /// Every part path so far, with its line.
    paths: HashMap<PathBuf, usize>,
    /// The sum of the sizes of the current replica's parts.
    replica_total: u64,
}

impl Parser {
    fn line(&mut self, line: usize, content: &[u8]) -> Result<(), GrammarError> {
        // A comment starts at the first '#' (PMDK cuts the line there, whatever precedes it).
        let code = content.split(|&b| b == b'#').next().unwrap_or(content);
        if code.is_empty() {
            return Ok(());
        }
        let code = std::str::from_utf8(code).map_err(|e| GrammarError::InvalidUtf8 {
            line,
            column: byte_column(code, e.valid_up_to()),
        })?;
        if let Some((i, c)) = code.char_indices().find(|&(_, c)| c.is_control() && c != '\t') {
            return Err(GrammarError::InvalidCharacter { line, column: column(code, i), found: c });
        }
        if let Some(rest) = code.strip_prefix(OPTION_KEYWORD) {
            self.options_line(line, code, rest)
        } else if let Some(rest) = code.strip_prefix(REPLICA_KEYWORD) {
            self.replica_line(line, code, rest)
        } else {
            self.part_line(line, code)
        }
    }

    fn options_line(&mut self, line: usize, code: &str, rest: &str) -> Result<(), GrammarError> {
        let base = OPTION_KEYWORD.len();
        let options = tokens(rest);
        if options.is_empty() {
            return Err(GrammarError::MissingOption { line, column: column(code, code.len()) });
        }
        for (offset, option) in options {
            let at = (line, column(code, base + offset));
            let other = match option {
                SINGLEHDR => {
                    self.options.single_header = true;
                    self.option_lines.single_header.get_or_insert(at);
                    self.option_lines.no_headers
                }
                NOHDRS => {
                    self.options.no_headers = true;
                    self.option_lines.no_headers.get_or_insert(at);
                    self.option_lines.single_header
                }
                _ => {
                    return Err(GrammarError::UnknownOption {
                        line,
                        column: at.1,
                        found: option.to_owned(),
                    });
                }
            };
            if let Some((first_line, _)) = other {
                // Reported where the conflict arises: at the second of the two options.
                return Err(GrammarError::ConflictingOptions {
                    line,
                    column: at.1,
                    found: option.to_owned(),
                    first_line,
                });
            }
        }
        Ok(())
    }

    fn replica_line(&mut self, line: usize, code: &str, rest: &str) -> Result<(), GrammarError> {
        if rest.is_empty() {
            self.check_replica_not_empty(&format!("`REPLICA` on line {line}"))?;
            self.replicas.push(Replica { line, ..Replica::default() });
            self.replica_total = 0;
            return Ok(());
        }
        if !rest.starts_with([' ', '\t']) {
            // "REPLICAx": PMDK's "exactly 'REPLICA' expected".
            let word = tokens(code).first().map_or(code, |&(_, t)| t);
            return Err(GrammarError::ReplicaKeyword {
                line,
                column: column(code, REPLICA_KEYWORD.len()),
                found: word.to_owned(),
            });
        }
        let base = REPLICA_KEYWORD.len();
        let words = tokens(rest);
        let Some(&(host_at, host)) = words.first() else {
            // "REPLICA " (perhaps before a comment): PMDK reads a remote replica without host.
            return Err(GrammarError::ReplicaKeyword {
                line,
                column: column(code, base),
                found: code.to_owned(),
            });
        };
        Err(GrammarError::RemoteReplica {
            line,
            column: column(code, base + host_at),
            host: host.to_owned(),
            descriptor: words.get(1).map(|&(_, d)| d.to_owned()),
        })
    }

    fn part_line(&mut self, line: usize, code: &str) -> Result<(), GrammarError> {
        let words = tokens(code);
        let (size_at, size_token, path_at, path_token) = match words.as_slice() {
            [] => return Err(GrammarError::BlankLine { line, column: 1 }),
            [(_, size)] => {
                return Err(GrammarError::MissingPath {
                    line,
                    column: column(code, code.len()),
                    size: (*size).to_owned(),
                });
            }
            [(sa, s), (pa, p)] => (*sa, *s, *pa, *p),
            [_, _, (extra_at, extra), ..] => {
                return Err(GrammarError::ExtraToken {
                    line,
                    column: column(code, *extra_at),
                    found: (*extra).to_owned(),
                });
            }
        };
        let size_column = column(code, size_at);
        let size = parse_size(size_token)
            .and_then(|size| match size {
                0 => Err(SizeProblem::Zero),
                s if s > MAX_PART_SIZE => Err(SizeProblem::TooLarge),
                s => Ok(s),
            })
            .map_err(|problem| GrammarError::InvalidSize {
                line,
                column: size_column,
                found: size_token.to_owned(),
                problem,
            })?;
        let path_column = column(code, path_at);
        if !path_token.starts_with('/') {
            return Err(GrammarError::RelativePath {
                line,
                column: path_column,
                found: path_token.to_owned(),
            });
        }
        let path = PathBuf::from(path_token);
        if let Some(&first_line) = self.paths.get(&path) {
            return Err(GrammarError::DuplicatePath {
                line,
                column: path_column,
                path,
                first_line,
            });
        }
        let replica_index = self.replicas.len().saturating_sub(1);
        self.replica_total =
            self.replica_total.checked_add(size).filter(|&total| total <= MAX_PART_SIZE).ok_or(
                GrammarError::ReplicaTooLarge { replica: replica_index, line, column: size_column },
            )?;
        self.paths.insert(path.clone(), line);
        if let Some(replica) = self.replicas.last_mut() {
            replica.parts.push(Part {
                path,
                size,
                line,
                column: size_column,
                origin: PartOrigin::Line,
            });
        }
        Ok(())
    }

    fn check_replica_not_empty(&self, found: &str) -> Result<(), GrammarError> {
        match self.replicas.last() {
            Some(replica) if replica.parts.is_empty() => Err(GrammarError::EmptyReplica {
                replica: self.replicas.len().saturating_sub(1),
                line: replica.line,
                column: 1,
                found: found.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    fn finish(self, lines: usize) -> Result<PoolSet, GrammarError> {
        if lines == 0 {
            return Err(GrammarError::Header {
                line: 1,
                column: 1,
                found: "end of file".to_owned(),
            });
        }
        self.check_replica_not_empty("the end of the file")?;
        Ok(PoolSet {
            options: self.options,
            replicas: self.replicas,
            option_lines: self.option_lines,
        })
    }
}

/// One line of a replica as written: a part or a directory.
struct Entry<'a> {
    path: &'a Path,
    size: u64,
    line: usize,
    column: usize,
}

/// A `NNNNNN.pmem` file found in a directory part.
struct FoundPart {
    path: PathBuf,
    size: u64,
    directory: usize,
}

impl PoolSet {
    /// A pool set built in code (its items carry line 0 unless given others).
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::grammar::{Part, PartOrigin, PoolSet, Replica, SetOptions};
    ///
    /// let part = Part {
    ///     path: "/mnt/pool".into(),
    ///     size: 8 << 20,
    ///     line: 0,
    ///     column: 0,
    ///     origin: PartOrigin::Line,
    /// };
    /// let replica = Replica { parts: vec![part], ..Replica::default() };
    /// let set = PoolSet::new(SetOptions::default(), vec![replica]);
    /// assert_eq!(set.to_text()?, "PMEMPOOLSET\n8M /mnt/pool\n");
    /// # Ok::<(), ckpt_poolset::grammar::GrammarError>(())
    /// ```
    pub fn new(options: SetOptions, replicas: Vec<Replica>) -> PoolSet {
        PoolSet { options, replicas, option_lines: OptionLines::default() }
    }

    /// Reads, parses and resolves a poolset file: [`parse_bytes`] then
    /// [`PoolSet::resolve_directories`], which is what PMDK does when it opens a set.
    ///
    /// # Errors
    ///
    /// [`GrammarError::Io`] if the file cannot be read, [`GrammarError::InvalidUtf8`] (naming
    /// the line) for bytes that are not UTF-8 outside comments, and the errors of
    /// [`parse_bytes`] and [`PoolSet::resolve_directories`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::grammar::PoolSet;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let file = dir.path().join("pool.set");
    /// std::fs::write(&file, "PMEMPOOLSET\r\n8M /mnt/pmem/pool\r\n")?;
    /// let set = PoolSet::from_file(&file)?;
    /// assert_eq!(set.replicas[0].parts[0].size, 8 << 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_file(path: &Path) -> Result<PoolSet, GrammarError> {
        let bytes = fs::read(path).map_err(|e| GrammarError::io(0, 0, path, e))?;
        parse_bytes(&bytes)?.resolve_directories()
    }

    /// Finds which paths of the set are directories, as PMDK does when it parses a set
    /// (`util_parse_add_element`, `util_poolset_directories_load`), and lists their parts.
    ///
    /// A path that names an existing directory (following links) is a directory part: its
    /// SIZE becomes a reservation ([`Replica::directories`]) and the replica's parts become
    /// the regular files named `<digits>.pmem` inside its directories, ordered by their
    /// number, with the file sizes as part sizes. Any other path (a file, or nothing yet) is a
    /// file part, unchanged. As in PMDK, a set is all directories or all files. When a
    /// replica lacks a part file that another replica has, the part is listed as missing
    /// (`exists: false`) where PMDK would recreate it: `<first directory>/<NNNNNN>.pmem`.
    /// Resolving twice gives the same set.
    ///
    /// # Errors
    ///
    /// [`GrammarError::MixedDirectoriesAndFiles`], [`GrammarError::DuplicateDirectory`] (the
    /// same directory twice, through links too), [`GrammarError::DuplicatePath`] (one file
    /// twice through links), [`GrammarError::BadDirectoryEntry`] (a `*.pmem` file whose name
    /// is not a part number, or two files with one number),
    /// [`GrammarError::MissingDirectoryPart`] (a part number that no replica has while a
    /// later one exists), [`GrammarError::ReplicaTooLarge`], and [`GrammarError::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::grammar::{parse, PartOrigin};
    ///
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("000000.pmem"), vec![0u8; 8192])?;
    /// let text = format!("PMEMPOOLSET\nOPTION SINGLEHDR\n1G {}\n", dir.path().display());
    /// let set = parse(&text)?.resolve_directories()?;
    /// assert!(set.is_directory_based());
    /// assert_eq!(set.replicas[0].directories[0].reservation, 1 << 30);
    /// assert_eq!(set.replicas[0].parts[0].size, 8192);
    /// assert!(matches!(set.replicas[0].parts[0].origin, PartOrigin::Directory { index: 0, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolve_directories(self) -> Result<PoolSet, GrammarError> {
        let entries: Vec<Vec<Entry<'_>>> = self.replicas.iter().map(written_entries).collect();
        let mut first: Option<(bool, usize)> = None;
        let mut directories: HashMap<PathBuf, usize> = HashMap::new();
        let mut files: HashMap<(u64, u64), usize> = HashMap::new();
        for entry in entries.iter().flatten() {
            let metadata = fs::metadata(entry.path).ok();
            let is_directory = metadata.as_ref().is_some_and(fs::Metadata::is_dir);
            let column = entry.column;
            match first {
                None => first = Some((is_directory, entry.line)),
                Some((first_is_directory, first_line)) if first_is_directory != is_directory => {
                    return Err(GrammarError::MixedDirectoriesAndFiles {
                        line: entry.line,
                        column,
                        path: entry.path.to_path_buf(),
                        is_directory,
                        first_line,
                    });
                }
                Some(_) => {}
            }
            if is_directory {
                let real = fs::canonicalize(entry.path)
                    .map_err(|e| GrammarError::io(entry.line, column, entry.path, e))?;
                if let Some(&first_line) = directories.get(&real) {
                    return Err(GrammarError::DuplicateDirectory {
                        line: entry.line,
                        column,
                        path: entry.path.to_path_buf(),
                        first_line,
                    });
                }
                directories.insert(real, entry.line);
            } else if let Some(metadata) = metadata {
                let id = (metadata.dev(), metadata.ino());
                if let Some(&first_line) = files.get(&id) {
                    return Err(GrammarError::DuplicatePath {
                        line: entry.line,
                        column,
                        path: entry.path.to_path_buf(),
                        first_line,
                    });
                }
                files.insert(id, entry.line);
            }
        }
        let directory_based = first.is_some_and(|(is_directory, _)| is_directory);
        let mut replicas = Vec::with_capacity(self.replicas.len());
        if !directory_based {
            for (replica, entries) in self.replicas.iter().zip(&entries) {
                let parts = entries.iter().map(|e| line_part(e)).collect();
                replicas.push(Replica { parts, directories: Vec::new(), line: replica.line });
            }
            drop(entries);
            return Ok(PoolSet { replicas, ..self });
        }
        let found = entries.iter().map(|e| load_directories(e)).collect::<Result<Vec<_>, _>>()?;
        let count = part_count(&found, &entries)?;
        for (r, (replica, entries)) in self.replicas.iter().zip(&entries).enumerate() {
            let directories: Vec<Directory> = entries
                .iter()
                .map(|e| Directory {
                    path: e.path.to_path_buf(),
                    reservation: e.size,
                    line: e.line,
                    column: e.column,
                })
                .collect();
            let mut parts = Vec::with_capacity(count);
            let mut total = 0u64;
            for index in 0..count {
                let part = directory_part(r, index, &found, &directories);
                total = total.checked_add(part.size).filter(|&t| t <= MAX_PART_SIZE).ok_or(
                    GrammarError::ReplicaTooLarge {
                        replica: r,
                        line: part.line,
                        column: part.column,
                    },
                )?;
                parts.push(part);
            }
            replicas.push(Replica { parts, directories, line: replica.line });
        }
        drop(entries);
        Ok(PoolSet { replicas, ..self })
    }

    /// True if the parts of the set come from directories (see
    /// [`PoolSet::resolve_directories`]).
    pub fn is_directory_based(&self) -> bool {
        self.replicas.iter().any(|r| !r.directories.is_empty())
    }

    /// Writes the set as a poolset file in canonical form: `PMEMPOOLSET`, the options, then
    /// the replicas, one `SIZE PATH` line per part (or per directory), each size with the
    /// largest binary suffix that divides it exactly. `parse(&set.to_text()?)` equals `set`
    /// (for a directory-based set, once resolved again).
    ///
    /// # Errors
    ///
    /// [`GrammarError::Unwritable`] for a path that a poolset line cannot hold (not UTF-8,
    /// relative, or with a blank, `#` or control character in it), and, for a set built in
    /// code that breaks another rule (an empty replica, a size of 0, the same path twice,
    /// both header options), the error [`parse`] gives on the written text, whose lines are
    /// then those of the text.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::grammar::parse;
    ///
    /// let set = parse("PMEMPOOLSET\r\n# mirror\r\n 1024K\t/a  \r\nREPLICA\r\n1048577 /b\r\n")?;
    /// let text = set.to_text()?;
    /// assert_eq!(text, "PMEMPOOLSET\n1M /a\nREPLICA\n1048577 /b\n");
    /// assert_eq!(parse(&text)?, set);
    /// # Ok::<(), ckpt_poolset::grammar::GrammarError>(())
    /// ```
    pub fn to_text(&self) -> Result<String, GrammarError> {
        let mut out = String::from("PMEMPOOLSET\n");
        if self.options.single_header {
            out.push_str("OPTION SINGLEHDR\n");
        }
        if self.options.no_headers {
            out.push_str("OPTION NOHDRS\n");
        }
        for (r, replica) in self.replicas.iter().enumerate() {
            if r > 0 {
                out.push_str("REPLICA\n");
            }
            let line_parts = replica.parts.iter().filter(|p| p.origin == PartOrigin::Line);
            if !replica.directories.is_empty() && line_parts.clone().next().is_some() {
                let path = replica.directories.first().map(|d| d.path.clone()).unwrap_or_default();
                return Err(GrammarError::Unwritable {
                    replica: r,
                    part: 0,
                    path,
                    reason: "the replica has both directories and part lines",
                });
            }
            let written: Vec<(&Path, u64)> = if replica.directories.is_empty() {
                line_parts.map(|p| (p.path.as_path(), p.size)).collect()
            } else {
                replica.directories.iter().map(|d| (d.path.as_path(), d.reservation)).collect()
            };
            for (i, (path, size)) in written.into_iter().enumerate() {
                let text = writable_path(path).map_err(|reason| GrammarError::Unwritable {
                    replica: r,
                    part: i,
                    path: path.to_path_buf(),
                    reason,
                })?;
                out.push_str(&format_size(size));
                out.push(' ');
                out.push_str(text);
                out.push('\n');
            }
        }
        parse(&out)?;
        Ok(out)
    }

    /// Checks the set against a library's limits, as PMDK does when it creates or opens a
    /// pool (`util_pool_create_uuids`, `util_file_create`, `util_file_open`): no
    /// `OPTION NOHDRS` (remote pools only), `OPTION SINGLEHDR` for a directory-based set,
    /// every replica at least `limits.min_pool` bytes ([`PoolSet::replica_size`], or the
    /// reservation of a directory-based replica), every part at least `limits.min_part`.
    /// Parsing does not check this: the limits belong to the library, not to the grammar.
    ///
    /// # Errors
    ///
    /// [`GrammarError::NoHeadersUnsupported`], [`GrammarError::DirectoryNeedsSingleHeader`],
    /// [`GrammarError::PoolTooSmall`] or [`GrammarError::PartTooSmall`], in that order.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::grammar::{parse, GrammarError, Limits};
    ///
    /// let set = parse("PMEMPOOLSET\n1M /a\n10M /b\n")?;
    /// let err = set.validate(&Limits::PMEMOBJ).unwrap_err();
    /// assert!(matches!(err, GrammarError::PartTooSmall { line: 2, size: 1048576, .. }));
    /// # Ok::<(), GrammarError>(())
    /// ```
    pub fn validate(&self, limits: &Limits) -> Result<(), GrammarError> {
        if self.options.no_headers {
            let (line, column) = self.option_lines.no_headers.unwrap_or((0, 0));
            return Err(GrammarError::NoHeadersUnsupported { line, column });
        }
        if !self.options.single_header
            && let Some(directory) = self.replicas.iter().find_map(|r| r.directories.first())
        {
            return Err(GrammarError::DirectoryNeedsSingleHeader {
                line: directory.line,
                column: directory.column,
                path: directory.path.clone(),
            });
        }
        for (r, replica) in self.replicas.iter().enumerate() {
            let size = self.replica_reservation_size(r).unwrap_or(0);
            if size < limits.min_pool {
                return Err(GrammarError::PoolTooSmall {
                    replica: r,
                    line: replica.line,
                    column: 1,
                    size,
                    min: limits.min_pool,
                });
            }
        }
        for (r, replica) in self.replicas.iter().enumerate() {
            for (p, part) in replica.parts.iter().enumerate() {
                if part.size < limits.min_part {
                    return Err(GrammarError::PartTooSmall {
                        replica: r,
                        part: p,
                        line: part.line,
                        column: part.column,
                        size: part.size,
                        min: limits.min_part,
                    });
                }
            }
        }
        Ok(())
    }

    /// The size of the pool header at the start of part `part` of any replica: 4096, or 0
    /// for every part but the first with `SINGLEHDR`, and for every part with `NOHDRS`
    /// (PMDK's `nhdrs`; `SINGLEHDR` wins if both are set).
    pub fn header_size(&self, part: usize) -> u64 {
        if self.options.single_header {
            if part == 0 { POOL_HDR_SIZE } else { 0 }
        } else if self.options.no_headers {
            0
        } else {
            POOL_HDR_SIZE
        }
    }

    /// The header size of a part ([`PoolSet::header_size`]), or `None` if there is no such
    /// part.
    pub fn part_header_size(&self, replica: usize, part: usize) -> Option<u64> {
        self.part(replica, part).map(|_| self.header_size(part))
    }

    /// The data bytes a part holds: its size rounded down to [`PART_ALIGNMENT`], less its
    /// header; `None` if there is no such part.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::grammar::parse;
    ///
    /// let set = parse("PMEMPOOLSET\n10000 /a\n10000 /b\n")?;
    /// assert_eq!(set.part_usable_size(0, 0), Some(8192 - 4096));
    /// assert_eq!(set.part_usable_size(0, 2), None);
    /// # Ok::<(), ckpt_poolset::grammar::GrammarError>(())
    /// ```
    pub fn part_usable_size(&self, replica: usize, part: usize) -> Option<u64> {
        self.part(replica, part).map(|p| align_down(p.size).saturating_sub(self.header_size(part)))
    }

    /// The data bytes of a replica: the sum of [`PoolSet::part_usable_size`] over its parts;
    /// `None` if there is no such replica.
    pub fn replica_usable_size(&self, replica: usize) -> Option<u64> {
        let parts = &self.replicas.get(replica)?.parts;
        Some((0..parts.len()).fold(0u64, |total, p| {
            total.saturating_add(self.part_usable_size(replica, p).unwrap_or(0))
        }))
    }

    /// The size of a replica as PMDK counts it (`repsize`, the "net pool size" of
    /// poolset(5)): its usable size plus the pool header of its first part, that is the
    /// length of the pool's address space, whose offset 0 is that header. 0 for a replica
    /// without parts; `None` if there is no such replica.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::grammar::parse;
    ///
    /// // poolset(5): sum over parts of (page-aligned size - 4 KiB), plus 4 KiB.
    /// let set = parse("PMEMPOOLSET\n4M /a\n4M /b\n")?;
    /// assert_eq!(set.replica_size(0), Some(8 * 1024 * 1024 - 4096));
    /// assert_eq!(set.replica_usable_size(0), Some(8 * 1024 * 1024 - 2 * 4096));
    /// # Ok::<(), ckpt_poolset::grammar::GrammarError>(())
    /// ```
    pub fn replica_size(&self, replica: usize) -> Option<u64> {
        let usable = self.replica_usable_size(replica)?;
        let parts = &self.replicas.get(replica)?.parts;
        Some(if parts.is_empty() { 0 } else { usable.saturating_add(self.header_size(0)) })
    }

    /// The address space a replica reserves: the sum of its directories' sizes for a
    /// directory-based replica, else [`PoolSet::replica_size`] (PMDK's `resvsize`); `None`
    /// if there is no such replica.
    pub fn replica_reservation_size(&self, replica: usize) -> Option<u64> {
        let directories = &self.replicas.get(replica)?.directories;
        let reserved =
            directories.iter().fold(0u64, |total, d| total.saturating_add(d.reservation));
        if reserved == 0 { self.replica_size(replica) } else { Some(reserved) }
    }

    /// The size of the pool: the smallest [`PoolSet::replica_size`] (PMDK's `poolsize`); 0
    /// for a set without replicas.
    pub fn pool_size(&self) -> u64 {
        (0..self.replicas.len()).filter_map(|r| self.replica_size(r)).min().unwrap_or(0)
    }

    /// The data bytes of the pool: the smallest [`PoolSet::replica_usable_size`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::grammar::parse;
    ///
    /// let set = parse("PMEMPOOLSET\n16M /a\nREPLICA\n8M /b\n8M /c\n")?;
    /// assert_eq!(set.pool_size(), (16 << 20) - 4096);
    /// assert_eq!(set.pool_usable_size(), (16 << 20) - 2 * 4096);
    /// # Ok::<(), ckpt_poolset::grammar::GrammarError>(())
    /// ```
    pub fn pool_usable_size(&self) -> u64 {
        (0..self.replicas.len()).filter_map(|r| self.replica_usable_size(r)).min().unwrap_or(0)
    }

    /// Where the data of each part of a replica lies in its file and in the pool's address
    /// space (as PMDK maps it in `util_replica_map_local`), one [`Extent`] per part, in
    /// order; `None` if there is no such replica. The extents cover the pool from the end of
    /// the first part's header to [`PoolSet::replica_size`] without gaps, so two replicas can
    /// be compared or synced range by range whatever their part layouts.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::grammar::{parse, Extent};
    ///
    /// let set = parse("PMEMPOOLSET\n12K /a\n8K /b\n")?;
    /// assert_eq!(set.replica_extents(0), Some(vec![
    ///     Extent { part: 0, file_offset: 4096, pool_offset: 4096, len: 8192 },
    ///     Extent { part: 1, file_offset: 4096, pool_offset: 12288, len: 4096 },
    /// ]));
    /// # Ok::<(), ckpt_poolset::grammar::GrammarError>(())
    /// ```
    pub fn replica_extents(&self, replica: usize) -> Option<Vec<Extent>> {
        let parts = &self.replicas.get(replica)?.parts;
        let mut pool_offset = self.header_size(0);
        let mut extents = Vec::with_capacity(parts.len());
        for part in 0..parts.len() {
            let len = self.part_usable_size(replica, part).unwrap_or(0);
            extents.push(Extent { part, file_offset: self.header_size(part), pool_offset, len });
            pool_offset = pool_offset.saturating_add(len);
        }
        Some(extents)
    }

    fn part(&self, replica: usize, part: usize) -> Option<&Part> {
        self.replicas.get(replica)?.parts.get(part)
    }
}

impl PartialEq for PoolSet {
    fn eq(&self, other: &Self) -> bool {
        self.options == other.options && self.replicas == other.replicas
    }
}

impl Eq for PoolSet {}

impl PartialEq for Replica {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts && self.directories == other.directories
    }
}

impl Eq for Replica {}

impl PartialEq for Part {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.size == other.size && self.origin == other.origin
    }
}

impl Eq for Part {}

impl PartialEq for Directory {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.reservation == other.reservation
    }
}

impl Eq for Directory {}

fn align_down(size: u64) -> u64 {
    size & !(PART_ALIGNMENT - 1)
}

/// A size with the largest binary suffix that divides it exactly.
fn format_size(size: u64) -> String {
    const SUFFIXES: [(u32, &str); 5] = [(50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, suffix) in SUFFIXES {
        let unit = 1u64 << shift;
        if size != 0 && size.is_multiple_of(unit) {
            return format!("{}{suffix}", size >> shift);
        }
    }
    size.to_string()
}

/// The path as a poolset token, or why it cannot be one.
fn writable_path(path: &Path) -> Result<&str, &'static str> {
    let text = path.to_str().ok_or("the path is not UTF-8")?;
    if !text.starts_with('/') {
        return Err("the path is not absolute");
    }
    if text.contains([' ', '\t']) {
        return Err("the path holds a blank, which separates tokens");
    }
    if text.contains('#') {
        return Err("the path holds `#`, which starts a comment");
    }
    if text.chars().any(char::is_control) {
        return Err("the path holds a control character");
    }
    Ok(text)
}

/// The lines of a replica as written: its directories, or else its line parts.
fn written_entries(replica: &Replica) -> Vec<Entry<'_>> {
    if replica.directories.is_empty() {
        replica
            .parts
            .iter()
            .filter(|p| p.origin == PartOrigin::Line)
            .map(|p| Entry { path: &p.path, size: p.size, line: p.line, column: p.column })
            .collect()
    } else {
        replica
            .directories
            .iter()
            .map(|d| Entry { path: &d.path, size: d.reservation, line: d.line, column: d.column })
            .collect()
    }
}

fn line_part(entry: &Entry<'_>) -> Part {
    Part {
        path: entry.path.to_path_buf(),
        size: entry.size,
        line: entry.line,
        column: entry.column,
        origin: PartOrigin::Line,
    }
}

/// The part files of one replica's directories, by part number.
fn load_directories(entries: &[Entry<'_>]) -> Result<BTreeMap<u32, FoundPart>, GrammarError> {
    let mut found: BTreeMap<u32, FoundPart> = BTreeMap::new();
    for (d, entry) in entries.iter().enumerate() {
        let io_error = |e| GrammarError::io(entry.line, entry.column, entry.path, e);
        for item in fs::read_dir(entry.path).map_err(io_error)? {
            let item = item.map_err(io_error)?;
            let name = item.file_name();
            let Some(stem) = name.as_bytes().strip_suffix(PMEM_EXT).filter(|s| !s.is_empty())
            else {
                continue;
            };
            // PMDK (fs_read with FTS) lists regular files only.
            if !item.file_type().map_err(io_error)?.is_file() {
                continue;
            }
            let path = item.path();
            let bad = |problem: String| GrammarError::BadDirectoryEntry {
                line: entry.line,
                column: entry.column,
                entry: path.clone(),
                problem,
            };
            if !stem.iter().all(u8::is_ascii_digit) {
                return Err(bad(
                    "its name is not a part number (PMDK names parts like 000003.pmem)".to_owned(),
                ));
            }
            let index = std::str::from_utf8(stem)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| bad("its part number is too large".to_owned()))?;
            if let Some(other) = found.get(&index) {
                return Err(bad(format!("part number {index} is also {}", other.path.display())));
            }
            let size = item.metadata().map_err(io_error)?.len();
            found.insert(index, FoundPart { path, size, directory: d });
        }
    }
    Ok(found)
}

/// The number of parts every replica of a directory-based set has: one more than the
/// highest part number found, once it is checked that every lower number exists somewhere.
fn part_count(
    found: &[BTreeMap<u32, FoundPart>],
    entries: &[Vec<Entry<'_>>],
) -> Result<usize, GrammarError> {
    let mut numbers: Vec<u32> = found.iter().flat_map(|f| f.keys().copied()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let mut expected = 0u32;
    for number in numbers {
        if number != expected {
            let (line, column) =
                entries.iter().flatten().next().map_or((0, 0), |e| (e.line, e.column));
            return Err(GrammarError::MissingDirectoryPart { line, column, index: expected });
        }
        expected = expected.saturating_add(1);
    }
    Ok(usize::try_from(expected).unwrap_or(usize::MAX))
}

/// Part `index` of replica `replica` of a directory-based set, found or missing.
fn directory_part(
    replica: usize,
    index: usize,
    found: &[BTreeMap<u32, FoundPart>],
    directories: &[Directory],
) -> Part {
    let number = u32::try_from(index).unwrap_or(u32::MAX);
    let first = directories.first();
    let (line, column) = first.map_or((0, 0), |d| (d.line, d.column));
    if let Some(part) = found.get(replica).and_then(|f| f.get(&number)) {
        let directory = directories.get(part.directory);
        return Part {
            path: part.path.clone(),
            size: part.size,
            line: directory.map_or(line, |d| d.line),
            column: directory.map_or(column, |d| d.column),
            origin: PartOrigin::Directory {
                directory: part.directory,
                index: number,
                exists: true,
            },
        };
    }
    // Missing here: PMDK recreates it in the replica's first directory, with the size the
    // part has in a replica that holds it (part_count checked that one does).
    let size = found.iter().find_map(|f| f.get(&number)).map_or(0, |p| p.size);
    let base = first.map_or_else(PathBuf::new, |d| d.path.clone());
    Part {
        path: base.join(format!("{number:06}.pmem")),
        size,
        line,
        column,
        origin: PartOrigin::Directory { directory: 0, index: number, exists: false },
    }
}
