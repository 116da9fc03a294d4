//! Restoring an entry's owner, mode, extended attributes and time, in the order that keeps
//! each: owner first (a change of owner clears setuid, setgid and file capabilities), then
//! mode, then attributes, then the time (every other change moves it).

use crate::manifest::Entry;
use crate::{TreeError, Warning};
use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Permission bits kept only when the owner is restored too: with another owner they would
/// hand the restoring user's (often root's) privileges to whatever the checkpoint holds.
const PRIVILEGE_BITS: u32 = 0o6000;

/// What restore sets besides the bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttrPolicy {
    /// Restore numeric owners (root only, by default).
    pub same_owner: bool,
    /// Restore extended attributes and ACLs.
    pub xattrs: bool,
}

/// How the restored object is reached.
pub(crate) enum Target<'a> {
    /// An open regular file or directory.
    Fd(BorrowedFd<'a>),
    /// A symlink `name` in directory `dir` (never followed).
    Symlink { dir: BorrowedFd<'a>, name: &'a [u8] },
    /// A FIFO or device node opened with `O_PATH` (its own inode, never what it leads to).
    Node(BorrowedFd<'a>),
}

/// The `/proc` path of an open descriptor (and of `name` under it): how a node opened with
/// `O_PATH`, or a symlink's extended attributes, are reached without following anything
/// another process could swap in.
fn proc_path(fd: BorrowedFd<'_>, name: Option<&[u8]>) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if let Some(name) = name {
        p.push(OsStr::from_bytes(name));
    }
    p
}

/// The POSIX ACLs a new inode inherits from a directory's default ACL.
const INHERITED_ACLS: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

/// Removes the ACLs `target` inherited from its directory that `e` does not have: the
/// restored entry has exactly its own (absent ones report ENODATA, harmlessly).
fn drop_inherited_acls(target: &Target<'_>, e: &Entry) {
    for acl in INHERITED_ACLS {
        if e.xattrs.iter().any(|x| x.name == acl.as_bytes()) {
            continue;
        }
        let _ = match target {
            Target::Fd(fd) => rustix::fs::fremovexattr(fd, acl),
            Target::Node(fd) => rustix::fs::removexattr(proc_path(*fd, None), acl),
            Target::Symlink { .. } => Ok(()),
        };
    }
}

/// Sets `e`'s attributes on `target` (`path` names it in messages); `inherited` says the
/// directory holding it has a default ACL, which a new inode inherits. Returns whether
/// setuid/setgid bits were dropped because the owner was not restored. What the system
/// refuses (an owner without root, a `trusted.` attribute, a file system without xattrs)
/// becomes a warning; a mode or time that cannot be set is an error.
pub(crate) fn apply(
    target: &Target<'_>,
    e: &Entry,
    path: &Path,
    policy: AttrPolicy,
    inherited: bool,
    warnings: &mut Vec<Warning>,
) -> Result<bool, TreeError> {
    let io = |op: &'static str| {
        move |err: Errno| TreeError::Io { path: path.to_path_buf(), op, source: err.into() }
    };
    let mut not_restored = |what: String, err: Errno| {
        warnings.push(Warning::NotRestored {
            path: path.to_path_buf(),
            what,
            reason: std::io::Error::from(err).to_string(),
        });
    };
    let mut owned = false;
    if let (true, Some(owner)) = (policy.same_owner, e.owner) {
        let (uid, gid) = (Uid::from_raw(owner.uid), Gid::from_raw(owner.gid));
        let done = match target {
            Target::Fd(fd) => rustix::fs::fchown(fd, Some(uid), Some(gid)),
            Target::Symlink { dir, name } => {
                rustix::fs::chownat(dir, *name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            }
            Target::Node(fd) => {
                rustix::fs::chownat(fd, "", Some(uid), Some(gid), AtFlags::EMPTY_PATH)
            }
        };
        match done {
            Ok(()) => owned = true,
            Err(err) => not_restored(format!("owner {}:{}", owner.uid, owner.gid), err),
        }
    }
    if policy.xattrs && inherited {
        drop_inherited_acls(target, e);
    }
    let mode = if owned { e.mode } else { e.mode & !PRIVILEGE_BITS };
    let mode_set = match target {
        Target::Fd(fd) => rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)),
        // A symlink's mode is not used by Linux (and cannot be changed).
        Target::Symlink { .. } => Ok(()),
        Target::Node(fd) => rustix::fs::chmodat(
            rustix::fs::CWD,
            proc_path(*fd, None),
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        ),
    };
    mode_set.map_err(io("cannot set mode of"))?;
    if policy.xattrs {
        for x in &e.xattrs {
            let name = std::ffi::CString::new(x.name.as_slice()).map_err(|_| {
                TreeError::Refused { path: path.to_path_buf(), reason: "an xattr name holds NUL" }
            })?;
            let set = match target {
                Target::Fd(fd) => {
                    rustix::fs::fsetxattr(fd, name.as_c_str(), &x.value, XattrFlags::empty())
                }
                Target::Symlink { dir, name: link } => rustix::fs::lsetxattr(
                    proc_path(*dir, Some(link)),
                    name.as_c_str(),
                    &x.value,
                    XattrFlags::empty(),
                ),
                Target::Node(fd) => rustix::fs::setxattr(
                    proc_path(*fd, None),
                    name.as_c_str(),
                    &x.value,
                    XattrFlags::empty(),
                ),
            };
            if let Err(err) = set {
                not_restored(format!("xattr {}", String::from_utf8_lossy(&x.name)), err);
            }
        }
    }
    let times = Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        last_modification: Timespec { tv_sec: e.mtime_sec, tv_nsec: i64::from(e.mtime_nsec) },
    };
    match target {
        Target::Fd(fd) => rustix::fs::futimens(fd, &times),
        Target::Symlink { dir, name } => {
            rustix::fs::utimensat(dir, *name, &times, AtFlags::SYMLINK_NOFOLLOW)
        }
        Target::Node(fd) => {
            rustix::fs::utimensat(rustix::fs::CWD, proc_path(*fd, None), &times, AtFlags::empty())
        }
    }
    .map_err(io("cannot set time of"))?;
    Ok(!owned && e.mode & PRIVILEGE_BITS != 0)
}

/// Whether this process may restore owners: tar restores them by default as root only.
pub(crate) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A descriptor as a [`Target::Fd`].
pub(crate) fn fd_target(fd: &impl AsFd) -> Target<'_> {
    Target::Fd(fd.as_fd())
}
