//! `ckpt`: checkpoints of files and directories that prove every byte they restore.
//!
//! A thin layer: argument parsing, progress bars on a terminal, `--json` reports and exit
//! codes. The work is done by `ckpt-tree`, `ckpt-poolset`, `ckpt-sparse`, `ckpt-frame-core`,
//! `ckpt-io-backends` and `ckpt-object` (`s3://` checkpoints).

mod chain_cmd;
mod demo;
mod object_cmd;
mod pool_cmd;
mod sparse_cmd;
mod tree_cmd;

use ckpt_cli::size::parse_size;
use ckpt_frame_core::scan::{Depth, Region, scan};
use ckpt_frame_core::{CheckpointId, Reader, Style};
use ckpt_io_backends::{
    IoMode, OutputOptions, PublishSink, StreamSink, open_input, stdin_source, stdout_sink,
    stream_source,
};
use ckpt_poolset::native::{Access, NativePool, PublishedReader};
use ckpt_tree::manifest::Kind;
use ckpt_tree::pattern::Excludes;
use ckpt_tree::{
    self as tree, CollectOptions, RestoreOptions, TreeError, Warning, WriteOptions,
    format_exit_code,
};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Exit status: the data is bad (corruption found, heal impossible).
const EXIT_BAD_DATA: u8 = 1;
/// Exit status: usage or environment error.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "ckpt",
    version,
    about = "Checkpoints of files and directories that prove every byte they restore."
)]
#[command(
    after_help = "Exit status: 0 success; 1 the data is bad (corruption found, heal impossible); 2 usage or environment error.\nLogs: set RUST_LOG (e.g. RUST_LOG=info) for tracing on stderr."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum StyleArg {
    Raw,
    Lz4,
}

#[derive(Subcommand)]
enum Command {
    /// Write a checkpoint of files and directories.
    Write {
        /// Output file, `-` for stdout, or `s3://BUCKET/KEY` (multipart upload, visible only
        /// once complete; endpoint and keys from the `AWS_*` environment).
        #[arg(short = 'o', long = "output", value_name = "OUT|-")]
        output: String,
        /// How frames store bytes.
        #[arg(long, value_enum, default_value = "lz4")]
        style: StyleArg,
        /// buffered, direct (`O_DIRECT`), mmap, or auto (direct if the file system allows it).
        #[arg(long = "io", default_value = "buffered", value_parser = parse_io)]
        io: IoMode,
        /// Threads compressing LZ4 frames (default: all cores). Memory is about 4 × N frames;
        /// RAW output is streamed on one thread whatever N is.
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Bytes of file data per frame (e.g. 4M). Frames are the unit of parallel work.
        #[arg(long, default_value = "4MiB", value_parser = parse_frame_size)]
        frame_size: u64,
        /// Checkpoint identity as 32 hex digits, for reproducible output (default: random).
        #[arg(long, value_name = "HEX", value_parser = parse_id)]
        id: Option<CheckpointId>,
        /// Leave out paths matching this shell pattern, with their contents (tar's rules:
        /// `*.o` or `cache` match at any depth, `*` matches `/` too). Repeatable.
        #[arg(long, value_name = "PATTERN")]
        exclude: Vec<String>,
        /// Store directories on another file system without their contents.
        #[arg(long)]
        one_file_system: bool,
        /// Do not store extended attributes and POSIX ACLs (stored by default).
        #[arg(long)]
        no_xattrs: bool,
        /// Fail (exit 2, no checkpoint) if a file changes while it is read, instead of
        /// storing it as read with a warning and exit status 1.
        #[arg(long)]
        strict: bool,
        /// `s3://` only: publish only if no object exists under the key (`If-None-Match:
        /// *`); an existing checkpoint is never replaced, and of two racing writers one wins.
        #[arg(long)]
        no_clobber: bool,
        /// `s3://` only: continue the interrupted upload to this key (recorded in
        /// `$CKPT_STATE_DIR`, else `$XDG_STATE_HOME/ckpt/uploads`, else
        /// `~/.local/state/ckpt/uploads`) with the same checkpoint identity; give the same
        /// paths. Parts the server already holds with the same bytes are not sent again.
        #[arg(long)]
        resume: bool,
        /// Write an incremental checkpoint on top of this one (a local file): only the 4 KiB
        /// blocks that differ from it are stored, the rest is taken from it (and its own
        /// parents) at restore. Keep the parent beside the new checkpoint, or where it was.
        #[arg(long, value_name = "OLD")]
        parent: Option<PathBuf>,
        /// Files and directories to checkpoint.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Restore a checkpoint into a directory.
    Restore {
        /// Checkpoint file, `-` for stdin, or `s3://BUCKET/KEY`.
        #[arg(value_name = "IN|-")]
        input: String,
        /// Directory to restore into (created if missing).
        #[arg(short = 'C', long = "directory", default_value = ".")]
        dir: PathBuf,
        /// buffered, direct, mmap or auto. mmap reads the checkpoint without copying; it must
        /// then not be truncated or rewritten in place while it is restored.
        #[arg(long = "io", default_value = "buffered", value_parser = parse_io)]
        io: IoMode,
        /// Worker threads decoding frames (default: all cores); stdin is restored on one.
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Leave owners to the restoring user (the default when not root). As root, the
        /// recorded numeric owners are restored, and setuid/setgid bits with them.
        #[arg(long)]
        no_same_owner: bool,
        /// Do not restore extended attributes and POSIX ACLs.
        #[arg(long)]
        no_xattrs: bool,
        /// Restore only these paths of the checkpoint (a directory with its contents),
        /// reading only the frames that hold them.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// List a checkpoint's contents (paths; `--long` as `tar -tv`).
    List {
        /// Checkpoint file, `pool:SET`, or `s3://BUCKET/KEY`.
        input: String,
        /// Type, mode, owner, size and time before each path.
        #[arg(short, long)]
        long: bool,
        /// One JSON object per entry, in a JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Compare a checkpoint with a directory, as `tar -d` (exit 1 when anything differs).
    Diff {
        /// Checkpoint file.
        input: PathBuf,
        /// The directory the checkpoint's paths are compared under.
        dir: PathBuf,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Read every chunk and check every checksum; writes nothing.
    Verify {
        /// Checkpoint file, or `s3://BUCKET/KEY`.
        input: PathBuf,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Describe a checkpoint's frames and contents.
    Info {
        /// Checkpoint file, or `s3://BUCKET/KEY`.
        input: PathBuf,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite, in place, the damaged chunks of a checkpoint from a good copy of it.
    ///
    /// Either copy may be `s3://BUCKET/KEY`: a local copy is healed from an object by
    /// fetching only the damaged frames; a damaged object is replaced whole by the local
    /// copy, when that copy is the same checkpoint and verifies.
    Heal {
        /// The damaged copy (rewritten in place), or `s3://BUCKET/KEY`.
        damaged: PathBuf,
        /// A copy of the same checkpoint, or `s3://BUCKET/KEY`.
        #[arg(long = "from", value_name = "GOOD")]
        good: PathBuf,
        /// Report what would be healed without writing.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Make an incremental checkpoint self-contained: its chain's state written as one
    /// checkpoint (same id, so checkpoints built on it stay valid), published atomically.
    Fold {
        /// The incremental checkpoint (replaced in place unless `-o` is given).
        child: PathBuf,
        /// Write the folded checkpoint here instead.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
        /// How frames store bytes.
        #[arg(long, value_enum, default_value = "lz4")]
        style: StyleArg,
        /// Threads compressing LZ4 frames (default: all cores).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
    },
    /// Remove the parent of an incremental checkpoint from its chain: the checkpoint is
    /// rewritten on its grandparent (storing what it took from the parent), then the parent
    /// is deleted unless another checkpoint beside it still builds on it.
    Prune {
        /// The checkpoint whose parent is removed (rewritten in place).
        child: PathBuf,
        /// Keep the parent's file.
        #[arg(long)]
        keep: bool,
        /// How frames store bytes.
        #[arg(long, value_enum, default_value = "lz4")]
        style: StyleArg,
        /// Threads compressing LZ4 frames (default: all cores).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
    },
    /// PMDK pool sets: check, sync (heal) and transform.
    Pool {
        #[command(subcommand)]
        command: pool_cmd::PoolCommand,
    },
    /// Sparse files: layout maps and sparse copies.
    Sparse {
        #[command(subcommand)]
        command: sparse_cmd::SparseCommand,
    },
    /// A tour: generate data, checkpoint, restore, verify, damage a copy and heal it.
    Demo {
        /// Work directory (default: a temporary one, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Size of the generated data set (e.g. 256M).
        #[arg(long, default_value = "256MiB", value_parser = parse_size)]
        size: u64,
    },
}

fn parse_io(s: &str) -> Result<IoMode, String> {
    s.parse::<IoMode>().map_err(|e| e.to_string())
}

fn parse_id(s: &str) -> Result<CheckpointId, String> {
    s.parse().map_err(|e: ckpt_frame_core::ParseIdError| e.to_string())
}

fn parse_frame_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("the frame size must be at least 1 byte".into()),
        n if n > ckpt_tree::manifest::MAX_FRAME_SIZE => {
            Err("the frame size must be at most 1 GiB (it is held in memory)".into())
        }
        n => Ok(n),
    }
}

/// A failure with its exit status.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self { code: EXIT_USAGE, message: message.into() }
    }
    fn bad_data(message: impl Into<String>) -> Self {
        Self { code: EXIT_BAD_DATA, message: message.into() }
    }
}

impl From<TreeError> for Failure {
    fn from(e: TreeError) -> Self {
        Self { code: e.exit_code(), message: e.to_string() }
    }
}

fn format_failure(file: &Path, e: &ckpt_frame_core::Error) -> Failure {
    Failure { code: format_exit_code(e), message: format!("{}: {e}", file.display()) }
}

fn backend_failure(e: &ckpt_io_backends::BackendError) -> Failure {
    Failure::usage(e.to_string())
}

pub(crate) fn progress_bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

fn style_of(s: StyleArg) -> Style {
    match s {
        StyleArg::Raw => Style::Raw,
        StyleArg::Lz4 => Style::Lz4,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("ckpt: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Write {
            output,
            style,
            io,
            threads,
            frame_size,
            id,
            exclude,
            one_file_system,
            no_xattrs,
            strict,
            no_clobber,
            resume,
            parent,
            paths,
        } => {
            let excludes = Excludes::new(&exclude).map_err(|e| Failure::usage(e.to_string()))?;
            let collect = CollectOptions {
                excludes,
                one_file_system,
                xattrs: !no_xattrs,
                ..CollectOptions::new(frame_size)
            };
            let options = WriteOptions {
                style: style_of(style),
                id: id.unwrap_or_else(CheckpointId::generate),
                threads: threads.unwrap_or_else(all_cores).max(1),
                strict,
            };
            let upload = object_cmd::UploadFlags { no_clobber, resume, id_given: id.is_some() };
            if (no_clobber || resume) && !ckpt_object::ObjectLocation::is_object_url(&output) {
                return Err(Failure::usage(
                    "--no-clobber and --resume apply to s3:// outputs only (a local write \
                     publishes atomically by rename)",
                ));
            }
            write(&output, io, &collect, &options, upload, parent.as_deref(), &paths)
        }
        Command::Fold { child, output, style, threads } => chain_cmd::fold(
            &child,
            output.as_deref(),
            style_of(style),
            threads.unwrap_or_else(all_cores).max(1),
        ),
        Command::Prune { child, keep, style, threads } => chain_cmd::prune(
            &child,
            keep,
            style_of(style),
            threads.unwrap_or_else(all_cores).max(1),
        ),
        Command::Restore { input, dir, io, threads, no_same_owner, no_xattrs, paths } => {
            let mut options = RestoreOptions::default();
            options.same_owner &= !no_same_owner;
            options.xattrs = !no_xattrs;
            options.paths = paths.into_iter().map(|p| p.into_os_string().into_vec()).collect();
            restore(&input, &dir, io, threads.unwrap_or_else(all_cores), &options)
        }
        Command::List { input, long, json } => tree_cmd::list(&input, long, json).map(|()| 0),
        Command::Diff { input, dir, json } => tree_cmd::diff(&input, &dir, json),
        Command::Verify { input, json } => verify(&input, json),
        Command::Info { input, json } => info(&input, json).map(|()| 0),
        Command::Heal { damaged, good, dry_run, json } => heal(&damaged, &good, dry_run, json),
        Command::Pool { command } => pool_cmd::run(command),
        Command::Sparse { command } => sparse_cmd::run(command),
        Command::Demo { dir, size } => demo::run(dir.as_deref(), size),
    }
}

pub(crate) fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Writes a checkpoint; returns the exit status (1 when a file changed while it was read).
pub(crate) fn write(
    output: &str,
    io: IoMode,
    collect: &CollectOptions,
    options: &WriteOptions,
    upload: object_cmd::UploadFlags,
    parent: Option<&Path>,
    paths: &[PathBuf],
) -> Result<u8, Failure> {
    let started = Instant::now();
    let local = !(output == "-"
        || output.starts_with("pool:")
        || ckpt_object::ObjectLocation::is_object_url(output));
    if parent.is_some() && !local {
        return Err(Failure::usage(
            "--parent needs a local output file (an incremental checkpoint is restored with \
             its parent beside it)",
        ));
    }
    let collected = tree::collect(paths, collect)?;
    for w in &collected.warnings {
        eprintln!("ckpt: {w}");
    }
    let total = collected.manifest.data_bytes();
    let bar = progress_bar(total, "write");
    let mut tick = |done| bar.set_position(done);
    let summary = if let Some(set) = output.strip_prefix("pool:") {
        // A checkpoint in a native pool: replicated, checksummed per block, published
        // atomically for readers.
        let set = Path::new(set);
        let mut pool = NativePool::open(set, Access::Write)
            .map_err(|e| Failure::usage(format!("{output}: {e}")))?;
        let writer =
            pool.begin_checkpoint().map_err(|e| Failure::usage(format!("{output}: {e}")))?;
        let sink = StreamSink::with_name(writer, output);
        let (sink, summary) = tree::write_checkpoint(sink, &collected, options, &mut tick)?;
        let writer = sink.finish().map_err(|e| backend_failure(&e))?;
        writer.finish().map_err(|e| Failure::usage(format!("{output}: {e}")))?;
        summary
    } else if let Some(remote) = object_cmd::remote_of(output)? {
        // Multipart upload, published only by complete(); a failure aborts it, or keeps it
        // for --resume when a request failed.
        let (sink, id) = remote.sink(upload, options.id)?;
        let options = WriteOptions { id, ..*options };
        let (sink, summary) = tree::write_checkpoint(sink, &collected, &options, &mut tick)?;
        let uploaded = sink.complete().map_err(|e| remote.upload_failure(&e))?;
        if uploaded.parts_reused > 0 {
            eprintln!(
                "ckpt: resumed: {} of {} parts were already on the server and not sent again",
                uploaded.parts_reused, uploaded.parts
            );
        }
        summary
    } else if output == "-" {
        if io != IoMode::Buffered {
            return Err(Failure::usage(format!(
                "--io {io} needs a file; stdout is written with --io buffered"
            )));
        }
        let (sink, summary) =
            tree::write_checkpoint(stdout_sink(), &collected, options, &mut tick)?;
        sink.finish().map_err(|e| backend_failure(&e))?;
        summary
    } else {
        let out = Path::new(output);
        if out.is_dir() {
            return Err(Failure::usage(format!("{output} is a directory; -o needs a file name")));
        }
        if let (Some(dir), Some(name)) = (out.parent(), out.file_name()) {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            // Temporary files of writers that died (killed, power cut) before publishing.
            if let Ok(n) = ckpt_io_backends::remove_stale_temps(dir, name)
                && n > 0
            {
                tracing::info!("removed {n} stale temporary files of {output}");
            }
        }
        let plan = tree::frame_plan(&collected.manifest, options.style);
        let bound = ckpt_frame_core::checkpoint_size_bound(plan);
        let opts = OutputOptions { mode: io, size_bound: bound };
        let parent = parent.map(|p| chain_cmd::parent_for(out, p)).transpose()?;
        let sink = PublishSink::create(out, &opts).map_err(|e| backend_failure(&e))?;
        let (sink, summary) = match &parent {
            Some(parent) => tree::write_incremental(sink, &collected, options, parent, &mut tick)?,
            None => tree::write_checkpoint(sink, &collected, options, &mut tick)?,
        };
        sink.commit().map_err(|e| backend_failure(&e))?;
        summary
    };
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "ckpt: wrote {} ({} entries, {} of file data, {} stored, {} frames) in {:.2} s",
        if output == "-" { "stdout" } else { output },
        collected.manifest.entries.len(),
        human(summary.data_bytes),
        human(summary.stored_bytes),
        summary.frames,
        secs
    );
    if let Some(p) = parent {
        chain_cmd::report_parent(p, &summary);
    }
    for w in &summary.warnings {
        eprintln!("ckpt: {w}");
    }
    let incomplete = summary.warnings.iter().chain(&collected.warnings).any(Warning::incomplete);
    Ok(u8::from(incomplete))
}

/// Restores a checkpoint; returns the exit status (1 when something could not be restored
/// exactly).
pub(crate) fn restore(
    input: &str,
    dir: &Path,
    io: IoMode,
    threads: usize,
    options: &RestoreOptions,
) -> Result<u8, Failure> {
    let bar = progress_bar(0, "restore");
    let tick = |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    };
    if input == "-" && io != IoMode::Buffered {
        return Err(Failure::usage(format!(
            "--io {io} needs a file; stdin is read with --io buffered"
        )));
    }
    let summary = if let Some(set) = input.strip_prefix("pool:") {
        let reader = PublishedReader::open(Path::new(set))
            .map_err(|e| Failure::usage(format!("{input}: {e}")))?;
        tree::restore_checkpoint(stream_source(reader, input), dir, options, &tick)
    } else if let Some(remote) = object_cmd::remote_of(input)? {
        // One HEAD and the tail and index in two ranged GETs, here, so that a missing
        // bucket or key gets its own message; every worker's source shares them and then
        // fetches only the frames it restores.
        let checkpoint = remote.checkpoint()?;
        let open = || Ok::<_, ckpt_frame_core::Error>(checkpoint.source());
        let restored = tree::restore_checkpoint_parallel(open, dir, options, threads, &tick);
        remote.log_fetched();
        restored
    } else if input == "-" {
        tree::restore_checkpoint(stdin_source(), dir, options, &tick)
    } else {
        let path = Path::new(input);
        // Opened once here so that a missing or unreadable input gets the backend's message.
        drop(open_restore_input(path, io).map_err(|e| backend_failure(&e))?);
        let open = || {
            open_restore_input(path, io).map_err(|e| ckpt_frame_core::Error::Io {
                offset: 0,
                error: std::io::Error::from(e).into(),
            })
        };
        match tree::restore_checkpoint_parallel(open, dir, options, threads, &tick) {
            Err(TreeError::NeedsParent) => {
                let chain = chain_cmd::open_chain(path)?;
                tree::restore_chain(&chain, dir, options, threads, &tick)
            }
            other => other,
        }
    }
    .map_err(|e| Failure {
        code: e.exit_code(),
        message: format!("{}: {e}", if input == "-" { "stdin" } else { input }),
    })?;
    bar.finish_and_clear();
    let specials = if summary.special_files + summary.hard_links > 0 {
        format!(", {} hard links, {} special files", summary.hard_links, summary.special_files)
    } else {
        String::new()
    };
    eprintln!(
        "ckpt: restored {} files, {} directories, {} symlinks{specials} ({}) into {}",
        summary.files,
        summary.dirs,
        summary.symlinks,
        human(summary.data_bytes),
        dir.display()
    );
    if summary.privileges_dropped > 0 {
        eprintln!(
            "ckpt: {} setuid/setgid bits not restored: their owners were not restored (not \
             root, --no-same-owner, or an older checkpoint without owners), and the bits \
             would give the restoring user's privileges",
            summary.privileges_dropped
        );
    }
    for w in &summary.warnings {
        eprintln!("ckpt: {w}");
    }
    Ok(u8::from(summary.warnings.iter().any(Warning::incomplete)))
}

/// Opens a checkpoint file to restore in the mode the user chose.
fn open_restore_input(
    path: &Path,
    io: IoMode,
) -> Result<ckpt_io_backends::InputSource, ckpt_io_backends::BackendError> {
    if io == IoMode::Mmap {
        // SAFETY: `--io mmap` is the user's choice, and its help states the condition: the
        // checkpoint must not be truncated or rewritten while it is restored (ckpt's own
        // writers never do: they publish by rename).
        return unsafe { ckpt_io_backends::open_input_mapped(path) };
    }
    open_input(path, io)
}

fn region_json(r: &Region) -> serde_json::Value {
    json!({
        "frame": r.frame,
        "offset": r.offset,
        "len": r.len,
        "kind": r.kind.name(),
        "problem": r.problem,
    })
}

/// A checkpoint to inspect: a file, or an object when `input` is `s3://BUCKET/KEY` (its
/// tail and index fetched once; frames read through them).
fn open_checkpoint(input: &Path) -> Result<Box<dyn ckpt_frame_core::Source>, Failure> {
    if let Some(remote) = object_cmd::remote_of_path(input)? {
        return Ok(Box::new(remote.open()?));
    }
    Ok(Box::new(open_input(input, IoMode::Buffered).map_err(|e| backend_failure(&e))?))
}

pub(crate) fn verify(input: &Path, as_json: bool) -> Result<u8, Failure> {
    // An object is opened once (HEAD, tail, index) and streamed once: the scan reads
    // the frames in order with read-ahead, the tail, index and manifest frame come from
    // what the handle keeps, so the layout check after it sends no request.
    let remote = object_cmd::remote_of_path(input)?;
    let checkpoint = remote.as_ref().map(object_cmd::Remote::checkpoint).transpose()?;
    let mut src: Box<dyn ckpt_frame_core::Source> = match &checkpoint {
        Some(c) => Box::new(c.stream()),
        None => open_checkpoint(input)?,
    };
    let report = scan(&mut src, Depth::Decoded).map_err(|e| format_failure(input, &e))?;
    drop(src);
    if report.regions.is_empty() {
        return Err(Failure::bad_data(format!(
            "{}: not a ckpt checkpoint ({} bytes, no frame, index or tail)",
            input.display(),
            report.len
        )));
    }
    let bad: Vec<&Region> = report.bad_regions().collect();
    if bad.is_empty() {
        // Every check value holds; a tree checkpoint's manifest must also describe its
        // frames, or restore would refuse what verify passed.
        let src: Box<dyn ckpt_frame_core::Source> = match &checkpoint {
            Some(c) => Box::new(c.source()),
            None => open_checkpoint(input)?,
        };
        let mut reader = Reader::open(src).map_err(|e| format_failure(input, &e))?;
        let manifest = tree::check_layout(&mut reader)
            .map_err(|e| Failure::bad_data(format!("{}: {e}", input.display())))?;
        // A block table (manifest version 4) is checked against the blocks stored; an
        // incremental checkpoint's parents are verified the same way.
        let has_table = manifest
            .as_ref()
            .is_some_and(|m| reader.frame_count() == m.data_frame_count().checked_add(2));
        if has_table && remote.is_none() {
            chain_cmd::verify_table(input)?;
        }
        if manifest.is_some_and(|m| m.parent.is_some()) {
            let links = chain_cmd::verify_parents(input)?;
            if !as_json {
                eprintln!("ckpt: {}: chain of {links} checkpoints verified", input.display());
            }
        }
    }
    if let Some(remote) = &remote {
        remote.log_fetched();
    }
    if as_json {
        let bad_chunks: Vec<_> = bad.iter().map(|r| region_json(r)).collect();
        let mut report = json!({ "ok": bad.is_empty(), "bad_chunks": bad_chunks });
        if let Some(remote) = &remote {
            report["fetched"] = json!({
                "requests": remote.client.requests_sent(),
                "bytes": remote.client.bytes_fetched(),
            });
        }
        println!("{report}");
    } else if bad.is_empty() {
        eprintln!("ckpt: {}: ok ({} regions verified)", input.display(), report.regions.len());
    } else {
        for r in &bad {
            let frame = r.frame.map_or(String::new(), |f| format!("frame {f}, "));
            eprintln!(
                "ckpt: {}: {frame}{} at offset {} ({} bytes): {}",
                input.display(),
                r.kind.name(),
                r.offset,
                r.len,
                r.problem.unwrap_or("damaged")
            );
        }
    }
    Ok(if bad.is_empty() { 0 } else { EXIT_BAD_DATA })
}

fn info(input: &Path, as_json: bool) -> Result<(), Failure> {
    let src = open_checkpoint(input)?;
    let mut reader = Reader::open(src).map_err(|e| format_failure(input, &e))?;
    let count = reader.frame_count().unwrap_or(0);
    let frames: Vec<_> = (0..count).filter_map(|i| reader.frame_info(i)).collect();
    let manifest = {
        let mut f = reader.open_frame(0).map_err(|e| format_failure(input, &e))?;
        let bytes = f.read_to_vec().map_err(|e| format_failure(input, &e))?.unwrap_or_default();
        ckpt_tree::manifest::Manifest::decode(&bytes)
            .map_err(|e| Failure::bad_data(format!("{}: {e}", input.display())))?
    };
    let kinds = |k| manifest.entries.iter().filter(|e| e.kind == k).count();
    let stored: u64 = frames.iter().map(|f| f.len).sum();
    let logical: u64 = frames.iter().map(|f| f.user_bytes).sum();
    let id = reader.id().map(|i| i.to_string()).unwrap_or_default();
    let chain = if manifest.parent.is_some() && object_cmd::remote_of_path(input)?.is_none() {
        chain_cmd::chain_info(input)?
    } else {
        None
    };
    if as_json {
        let frames_json: Vec<_> = frames
            .iter()
            .map(|f| {
                json!({
                    "index": f.index, "offset": f.offset,
                    "style": match f.style { Style::Raw => "raw", _ => "lz4" },
                    "stored_bytes": f.len, "logical_bytes": f.user_bytes, "buffers": f.buffer_count,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "id": id, "frames": frames_json, "stored_bytes": stored, "logical_bytes": logical,
                "files": kinds(Kind::File), "directories": kinds(Kind::Dir), "symlinks": kinds(Kind::Symlink),
                "file_bytes": manifest.data_bytes(), "frame_size": manifest.frame_size,
                "format_version": ckpt_frame_core::FORMAT_VERSION,
                "chain": chain,
            })
        );
    } else {
        println!("checkpoint {id} (format v{})", ckpt_frame_core::FORMAT_VERSION);
        println!(
            "  {} files, {} directories, {} symlinks, {} of file data",
            kinds(Kind::File),
            kinds(Kind::Dir),
            kinds(Kind::Symlink),
            human(manifest.data_bytes())
        );
        println!("  {} frames, {} stored, {} logical", frames.len(), human(stored), human(logical));
        if let Some(chain) = &chain {
            chain_cmd::print_chain(chain);
        }
        for f in &frames {
            println!(
                "  frame {:>5} at {:>14}: {:<4} {:>12} stored {:>12} logical {:>8} buffers",
                f.index,
                f.offset,
                match f.style {
                    Style::Raw => "raw",
                    _ => "lz4",
                },
                f.len,
                f.user_bytes,
                f.buffer_count
            );
        }
    }
    Ok(())
}

pub(crate) fn heal(
    damaged: &Path,
    good: &Path,
    dry_run: bool,
    as_json: bool,
) -> Result<u8, Failure> {
    match (object_cmd::remote_of_path(damaged)?, object_cmd::remote_of_path(good)?) {
        (Some(_), Some(_)) => Err(Failure::usage(format!(
            "cannot heal {} from {}: one of the two copies must be a local file",
            damaged.display(),
            good.display()
        ))),
        (None, Some(remote)) => heal_file_from_object(damaged, good, &remote, dry_run, as_json),
        (Some(remote), None) => heal_object(damaged, good, &remote, dry_run, as_json),
        (None, None) => {
            let outcome = tree::heal::heal_file(damaged, good, dry_run)
                .map_err(|e| Failure { code: e.exit_code(), message: e.to_string() })?;
            let report = HealReport {
                damaged,
                good,
                plan: &outcome.plan,
                still_bad: outcome.still_bad,
                dry_run,
                fetched: None,
            };
            Ok(report.print(as_json))
        }
    }
}

/// `heal FILE --from s3://BUCKET/KEY`: only the object's tail, index and damaged frames are
/// fetched; the count is reported.
fn heal_file_from_object(
    damaged: &Path,
    good: &Path,
    remote: &object_cmd::Remote,
    dry_run: bool,
    as_json: bool,
) -> Result<u8, Failure> {
    let outcome =
        ckpt_object::heal_file_from_object(damaged, &remote.client, remote.location.key(), dry_run)
            .map_err(|e| Failure { code: e.exit_code(), message: e.to_string() })?;
    let report = HealReport {
        damaged,
        good,
        plan: &outcome.ranged.plan,
        still_bad: outcome.still_bad,
        dry_run,
        fetched: Some(Fetched {
            bytes: outcome.bytes_fetched,
            requests: outcome.requests,
            object_len: outcome.object_len,
            whole: outcome.ranged.whole_donor,
        }),
    };
    Ok(report.print(as_json))
}

/// What a heal from an object cost.
struct Fetched {
    bytes: u64,
    requests: u64,
    object_len: u64,
    whole: bool,
}

/// A heal of a local copy, to print.
struct HealReport<'a> {
    damaged: &'a Path,
    good: &'a Path,
    plan: &'a ckpt_frame_core::scan::HealPlan,
    still_bad: usize,
    dry_run: bool,
    fetched: Option<Fetched>,
}

impl HealReport<'_> {
    /// Prints the report; returns the exit status.
    fn print(&self, as_json: bool) -> u8 {
        let (plan, dry_run) = (self.plan, self.dry_run);
        let ok = !dry_run && self.still_bad == 0;
        if as_json {
            let regions = |list: &[Region]| list.iter().map(region_json).collect::<Vec<_>>();
            let mut report = json!({
                "ok": ok, "dry_run": dry_run, "id": plan.id.to_string(),
                "healed": regions(&plan.rewrite),
                "unhealable": regions(&plan.unhealable),
                "donor_mismatch": regions(&plan.donor_mismatch),
                "unvouched": regions(&plan.unvouched),
                "differ_but_verify": regions(&plan.differ_but_verify),
                "bad_after": self.still_bad,
            });
            if let (Some(f), Some(map)) = (&self.fetched, report.as_object_mut()) {
                map.insert("donor_bytes_fetched".into(), f.bytes.into());
                map.insert("donor_requests".into(), f.requests.into());
                map.insert("donor_len".into(), f.object_len.into());
                map.insert("donor_read_whole".into(), f.whole.into());
            }
            println!("{report}");
        } else {
            let verb = if dry_run { "would rewrite" } else { "rewrote" };
            eprintln!(
                "ckpt: {}: {verb} {} damaged regions ({} bytes) from {}",
                self.damaged.display(),
                plan.rewrite.len(),
                plan.rewrite.iter().map(|r| r.len).sum::<u64>(),
                self.good.display()
            );
            if let Some(f) = &self.fetched {
                let whole = if f.whole {
                    " (neither copy's frame index verifies, so the whole object was read)"
                } else {
                    ""
                };
                eprintln!(
                    "ckpt: fetched {} bytes of {} in {} requests from {}{whole}",
                    f.bytes,
                    f.object_len,
                    f.requests,
                    self.good.display()
                );
            }
            for line in heal_refusals(plan) {
                eprintln!("ckpt: {line}");
            }
            if !dry_run {
                eprintln!(
                    "ckpt: {}: {}",
                    self.damaged.display(),
                    if ok { "verifies" } else { "still damaged" }
                );
            }
        }
        if ok || (dry_run && !plan.refuses_any()) { 0 } else { EXIT_BAD_DATA }
    }
}

/// `heal s3://BUCKET/KEY --from FILE`: the object is replaced whole by the local copy, only
/// when that copy passes every check.
fn heal_object(
    damaged: &Path,
    good: &Path,
    remote: &object_cmd::Remote,
    dry_run: bool,
    as_json: bool,
) -> Result<u8, Failure> {
    let outcome = ckpt_object::heal_object_from_file(
        &remote.client,
        remote.location.key(),
        good,
        ckpt_object::UploadOptions::default(),
        dry_run,
    )
    .map_err(|e| Failure { code: e.exit_code(), message: e.to_string() })?;
    let scan = outcome.scan();
    let bad: Vec<_> = scan.bad_regions().map(region_json).collect();
    let (action, uploaded) = match &outcome {
        ckpt_object::ObjectHealOutcome::Replaced { upload: Some(u), .. } => {
            ("replaced", Some(u.bytes))
        }
        ckpt_object::ObjectHealOutcome::Replaced { upload: None, .. } => ("would replace", None),
        _ => ("verifies", None),
    };
    if as_json {
        println!(
            "{}",
            json!({
                "ok": action != "would replace",
                "dry_run": dry_run,
                "id": scan.id.map(|id| id.to_string()),
                "action": action,
                "damaged_regions": bad,
                "uploaded_bytes": uploaded,
            })
        );
    } else if action == "verifies" {
        eprintln!("ckpt: {}: verifies; nothing uploaded", damaged.display());
    } else {
        eprintln!(
            "ckpt: {}: {} damaged regions; {action} the object whole with {} ({} bytes), the \
             same checkpoint, which verifies and agrees with the object wherever the object \
             verifies",
            damaged.display(),
            bad.len(),
            good.display(),
            scan.len
        );
    }
    // Refusals are errors (exit 1, nothing uploaded); a replaced object or a dry run whose
    // checks pass is a success.
    Ok(0)
}

/// One line per region `heal` refuses, saying why: damaged in both copies (the donor's own
/// region fails its checks), a donor whose bytes are not the ones the damaged copy's checks
/// record, or nothing left in the damaged copy to check the donor's bytes against.
fn heal_refusals(plan: &ckpt_frame_core::scan::HealPlan) -> Vec<String> {
    let why = |r: &Region| r.problem.unwrap_or("");
    let both = plan.unhealable.iter().map(|r| {
        format!("cannot heal {} at offset {}: damaged in both copies", r.kind.name(), r.offset)
    });
    let mismatch = plan.donor_mismatch.iter().map(|r| {
        format!(
            "cannot heal {} at offset {}: the donor's bytes at offset {} are not the ones this \
             copy's checks record (an impostor copy?): {}; not healed",
            r.kind.name(),
            r.offset,
            r.offset,
            why(r)
        )
    });
    let unvouched = plan.unvouched.iter().map(|r| {
        format!(
            "cannot heal {} at offset {}: nothing left in this copy records what its bytes \
             should be ({}), so the donor's bytes cannot be checked; not healed",
            r.kind.name(),
            r.offset,
            why(r)
        )
    });
    both.chain(mismatch).chain(unvouched).collect()
}

pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 10 * 1024 && unit + 1 < UNITS.len() {
        v /= 1024;
        unit += 1;
    }
    format!("{v} {}", UNITS.get(unit).copied().unwrap_or("B"))
}
