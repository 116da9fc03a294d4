//! Reading a path's extended attributes, for the collector and for diff.

use crate::manifest::{MAX_XATTR_VALUE, Xattr};
use rustix::io::Errno;
use std::path::Path;

/// The extended attributes of `path` (not following a symlink), by ascending name. A file
/// system without them gives none.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<Xattr>, Errno> {
    let names = match read_growing(&|buf| rustix::fs::llistxattr(path, buf)) {
        Ok(names) => names.unwrap_or_default(),
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).map_err(|_| Errno::INVAL)?;
        // Removed since the list was read: nothing to store.
        if let Some(value) =
            read_growing(&|buf| rustix::fs::lgetxattr(path, cname.as_c_str(), buf))?
        {
            out.push(Xattr { name: name.to_vec(), value });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Calls `query` with a buffer that grows on ERANGE up to the kernel's 64 KiB limit on a
/// list or a value; `None` for ENODATA. No size query: rustix reports the size a
/// zero-length buffer needs as 0, and a file without attributes then costs one call.
fn read_growing(
    query: &dyn Fn(&mut [u8]) -> Result<usize, Errno>,
) -> Result<Option<Vec<u8>>, Errno> {
    let mut size = 256;
    loop {
        let mut buf = vec![0u8; size];
        match query(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) if size < MAX_XATTR_VALUE => size = (size * 4).min(MAX_XATTR_VALUE),
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
