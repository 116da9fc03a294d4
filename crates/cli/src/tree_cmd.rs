//! `ckpt list` and `ckpt diff`: printing over `ckpt-tree`.

use crate::{Failure, backend_failure, format_failure};
use ckpt_frame_core::Reader;
use ckpt_io_backends::{IoMode, open_input, stream_source};
use ckpt_poolset::native::PublishedReader;
use ckpt_tree::diff::{DiffOptions, diff as diff_tree};
use ckpt_tree::manifest::{Entry, Kind, Manifest};
use serde_json::json;
use std::path::Path;

/// The manifest of a checkpoint file or `s3://` object (checked against its index) or of `pool:SET`'s
/// published checkpoint (read from its start).
fn manifest_of(input: &str) -> Result<Manifest, Failure> {
    let bad =
        |e: ckpt_tree::TreeError| Failure { code: e.exit_code(), message: format!("{input}: {e}") };
    let manifest = if let Some(set) = input.strip_prefix("pool:") {
        let reader = PublishedReader::open(Path::new(set))
            .map_err(|e| Failure::usage(format!("{input}: {e}")))?;
        let mut reader = Reader::new(stream_source(reader, input));
        ckpt_tree::read_first_manifest(&mut reader).map_err(bad)?
    } else if let Some(remote) = crate::object_cmd::remote_of(input)? {
        let mut reader = Reader::open(remote.open()?).map_err(|e| Failure {
            code: ckpt_tree::format_exit_code(&e),
            message: format!("{input}: {e}"),
        })?;
        ckpt_tree::check_layout(&mut reader).map_err(bad)?
    } else {
        let path = Path::new(input);
        let src = open_input(path, IoMode::Buffered).map_err(|e| backend_failure(&e))?;
        let mut reader = Reader::open(src).map_err(|e| format_failure(path, &e))?;
        ckpt_tree::check_layout(&mut reader).map_err(bad)?
    };
    manifest.ok_or_else(|| {
        Failure::bad_data(format!("{input}: not a tree checkpoint (no manifest in frame 0)"))
    })
}

/// `ls -l`'s mode string.
fn mode_string(e: &Entry) -> String {
    let mut s = String::with_capacity(10);
    s.push(match e.kind {
        Kind::HardLink => '-',
        k => k.letter(),
    });
    let m = e.mode;
    for (shift, special, set, unset) in
        [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')]
    {
        let bits = (m >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, m & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `YYYY-MM-DD HH:MM` in UTC (tar prints local time; UTC keeps the listing the same on
/// every machine).
fn utc_minutes(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", rest / 3600, rest % 3600 / 60)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ckpt list`.
pub(crate) fn list(input: &str, long: bool, as_json: bool) -> Result<(), Failure> {
    let manifest = manifest_of(input)?;
    if let Some(parent) = &manifest.parent {
        eprintln!(
            "ckpt: {input} is incremental on {} ({}): files list whole, their bytes partly \
             there; `ckpt info` shows the chain",
            lossy(&parent.name),
            ckpt_frame_core::CheckpointId::from_bytes(parent.id)
        );
    }
    if as_json {
        let entries: Vec<_> = manifest
            .entries
            .iter()
            .map(|e| {
                let mut v = json!({
                    "path": lossy(&e.path),
                    "type": e.kind.name(),
                    "size": e.size,
                    "stored_bytes": e.data_len(),
                    "inherited_bytes": e.content_len() - e.data_len(),
                    "mode": e.mode,
                    "mtime": e.mtime_sec,
                    "mtime_nsec": e.mtime_nsec,
                    "sparse": e.extents.is_some(),
                    "xattrs": e.xattrs.iter().map(|x| lossy(&x.name)).collect::<Vec<_>>(),
                });
                if let Some(o) = e.owner {
                    v["uid"] = json!(o.uid);
                    v["gid"] = json!(o.gid);
                }
                if !e.target.is_empty() {
                    v["target"] = json!(lossy(&e.target));
                }
                if let Some((major, minor)) = e.device {
                    v["device"] = json!([major, minor]);
                }
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(entries));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for e in &manifest.entries {
        let path = lossy(&e.path);
        let suffix = match e.kind {
            Kind::Dir => "/".to_owned(),
            Kind::Symlink => format!(" -> {}", lossy(&e.target)),
            Kind::HardLink => format!(" link to {}", lossy(&e.target)),
            _ => String::new(),
        };
        let line = if long {
            let owner =
                e.owner.map_or_else(|| "-/-".to_owned(), |o| format!("{}/{}", o.uid, o.gid));
            let size = match e.device {
                Some((major, minor)) => format!("{major},{minor}"),
                None => e.size.to_string(),
            };
            format!(
                "{} {owner} {size:>12} {} {path}{suffix}",
                mode_string(e),
                utc_minutes(e.mtime_sec)
            )
        } else {
            format!("{path}{}", if e.kind == Kind::Dir { "/" } else { "" })
        };
        if std::io::Write::write_all(&mut out, line.as_bytes())
            .and_then(|()| std::io::Write::write_all(&mut out, b"\n"))
            .is_err()
        {
            // A closed pipe (`ckpt list | head`): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}

/// `ckpt diff`: exit 0 when the directory matches, 1 when anything differs.
pub(crate) fn diff(input: &Path, dir: &Path, as_json: bool) -> Result<u8, Failure> {
    let src = open_input(input, IoMode::Buffered).map_err(|e| backend_failure(&e))?;
    let found = diff_tree(src, dir, &DiffOptions::default()).map_err(|e| Failure {
        code: e.exit_code().max(2),
        message: format!("{}: {e}", input.display()),
    })?;
    if as_json {
        let list: Vec<_> = found
            .iter()
            .map(|d| json!({ "path": lossy(&d.path), "what": format!("{:?}", d.what), "detail": d.detail }))
            .collect();
        println!("{}", json!({ "same": found.is_empty(), "differences": list }));
    } else {
        for d in &found {
            println!("{}: {}", lossy(&d.path), d.detail);
        }
    }
    Ok(u8::from(!found.is_empty()))
}
