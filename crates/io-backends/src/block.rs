//! The file writer under buffered and `O_DIRECT` output: one reused buffer, written at
//! explicit offsets in whole blocks, the unaligned tail padded and later truncated away.

use crate::BackendError;
use crate::align::AlignedBuf;
use rustix::fs::OFlags;
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, IoSlice};
use std::path::PathBuf;

/// The most bytes one buffered `pwrite` hands the page cache. Measured on this project's
/// Linux 6.18 / ext4 machines (`dd bs=...` of 1 GiB into the page cache, five runs each):
/// 128 KiB writes take 0.41-0.67 s, 1 MiB writes 1.5-2.7 s, all of it system time, because
/// the write size sets the page-cache folio size and large folios are slow to allocate.
const BUFFERED_WRITE_PIECE: usize = 128 * 1024;

/// Writeback is started every this many bytes. Measured on ext4 here: a 1 GiB RAW
/// checkpoint's final `fsync` waited about 0.5 s without this.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Buffered writes at least this long skip the copy into the buffer and go to the kernel
/// straight from the caller's memory (with whatever the buffer held, in one `pwritev`).
const PASS_THROUGH_MIN: usize = 16 * 1024;

/// Appends bytes to a file through an aligned buffer.
///
/// Invariants: `file_off` is the file offset of `buf[0]`. With `O_DIRECT` it is a multiple
/// of `align` and every write goes from `buf[0]` for a multiple of `align` bytes, so the
/// address, the offset and the length are all aligned. Buffered I/O (`align == 1`, or after
/// an `auto` fallback) has no such constraint, and large writes bypass the buffer.
pub(crate) struct BlockWriter {
    file: File,
    /// The file being written (the temporary file), for messages.
    path: PathBuf,
    /// The checkpoint's final path, for `DirectUnsupported`.
    final_path: PathBuf,
    buf: AlignedBuf,
    len: usize,
    file_off: u64,
    align: usize,
    reserved: usize,
    /// `O_DIRECT` is on.
    direct: bool,
    /// A direct write has succeeded, so a later EINVAL is a real error, not a refusal.
    direct_proven: bool,
    /// Fall back to buffered I/O when the first direct write is refused.
    auto: bool,
    /// Why `auto` fell back, once it has.
    fallback: Option<String>,
    /// Bytes before this offset have had their writeback started.
    kicked: u64,
}

impl BlockWriter {
    pub(crate) fn new(
        file: File,
        path: PathBuf,
        final_path: PathBuf,
        align: usize,
        direct: bool,
        auto: bool,
    ) -> Self {
        debug_assert!(align.is_power_of_two() && crate::IO_BUF_LEN.is_multiple_of(align));
        Self {
            file,
            path,
            final_path,
            // At least a cache line (see `AlignedBuf`).
            buf: AlignedBuf::new(crate::IO_BUF_LEN, align),
            len: 0,
            file_off: 0,
            align,
            reserved: 0,
            direct,
            direct_proven: false,
            auto,
            fallback: None,
            kicked: 0,
        }
    }

    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    pub(crate) fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    fn io(&self, op: &'static str, source: io::Error) -> BackendError {
        BackendError::Io { path: self.path.clone(), op, source }
    }

    pub(crate) fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), BackendError> {
        self.reserved = 0;
        if !self.direct && bytes.len() >= PASS_THROUGH_MIN {
            return self.write_through(bytes);
        }
        while !bytes.is_empty() {
            let room = self.buf.cap() - self.len;
            let n = room.min(bytes.len());
            let (now, later) = bytes.split_at(n);
            if let Some(dst) = self.buf.as_mut_slice().get_mut(self.len..self.len + n) {
                dst.copy_from_slice(now);
            }
            self.len += n;
            bytes = later;
            if self.len == self.buf.cap() {
                self.flush_blocks()?;
            }
        }
        Ok(())
    }

    /// Writes the buffered bytes, then `bytes` straight from the caller's memory (buffered
    /// I/O only: `O_DIRECT` needs the aligned buffer), in pieces of at most
    /// [`BUFFERED_WRITE_PIECE`] bytes. Leaves the buffer empty.
    fn write_through(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        let mut head = 0..self.len;
        let mut rest = bytes;
        while !head.is_empty() || !rest.is_empty() {
            let head_end = head.end.min(head.start + BUFFERED_WRITE_PIECE);
            let buffered = self.buf.as_slice().get(head.start..head_end).unwrap_or_default();
            let take = rest.len().min(BUFFERED_WRITE_PIECE.saturating_sub(buffered.len()));
            let (now, _) = rest.split_at(take);
            let pieces = [IoSlice::new(buffered), IoSlice::new(now)];
            // No empty slice: strace stops dumping a vector write's data at the first one,
            // and crashsim records the data through strace.
            let pieces = match pieces {
                [a, b] if a.is_empty() => &[b][..],
                [a, b] if b.is_empty() => &[a][..],
                ref both => &both[..],
            };
            match rustix::io::pwritev(&self.file, pieces, self.file_off) {
                Ok(0) => return Err(self.io("write", io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    let from_buffer = n.min(buffered.len());
                    head.start += from_buffer;
                    rest = rest.get(n - from_buffer..).unwrap_or_default();
                    self.file_off += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(self.io("write", e.into())),
            }
        }
        self.len = 0;
        self.kick_writeback();
        Ok(())
    }

    /// Starts writeback of every whole [`WRITEBACK_STEP`] written since the last call, so
    /// the disk works while the checkpoint is produced (buffered I/O only).
    fn kick_writeback(&mut self) {
        let written = self.file_off - self.file_off % WRITEBACK_STEP;
        if !self.direct && written > self.kicked {
            crate::writeback::start_writeback(&self.file, self.kicked, written - self.kicked);
            self.kicked = written;
        }
    }

    /// Lends `len` bytes of the buffer, writing out whole blocks first if needed.
    /// `Ok(None)` when `len` can never fit.
    pub(crate) fn reserve(&mut self, len: usize) -> Result<Option<&mut [u8]>, BackendError> {
        self.reserved = 0;
        if self.buf.cap() - self.len < len {
            self.flush_blocks()?;
        }
        let end = self.len + len;
        if end > self.buf.cap() {
            return Ok(None);
        }
        self.reserved = len;
        Ok(self.buf.as_mut_slice().get_mut(self.len..end))
    }

    /// Makes `len` bytes of the last reservation part of the output.
    pub(crate) fn commit(&mut self, len: usize) -> Result<(), BackendError> {
        if len > self.reserved {
            let source =
                io::Error::new(io::ErrorKind::InvalidInput, "commit beyond the reservation");
            return Err(self.io("write", source));
        }
        self.reserved = 0;
        self.len += len;
        if self.len == self.buf.cap() {
            self.flush_blocks()?;
        }
        Ok(())
    }

    /// Writes out every whole block in the buffer and moves the rest to its front.
    fn flush_blocks(&mut self) -> Result<(), BackendError> {
        let full = self.len / self.align * self.align;
        if full == 0 {
            return Ok(());
        }
        self.write_out(full)?;
        self.buf.as_mut_slice().copy_within(full..self.len, 0);
        self.len -= full;
        self.file_off += full as u64;
        self.kick_writeback();
        Ok(())
    }

    /// Writes out everything: whole blocks, then the unaligned tail padded with zeros to a
    /// whole block (kept in the buffer: the next write rewrites that block, and the commit
    /// truncates the padding away).
    pub(crate) fn flush(&mut self) -> Result<(), BackendError> {
        self.flush_blocks()?;
        if self.len == 0 {
            return Ok(());
        }
        let padded = self.len.next_multiple_of(self.align);
        if let Some(pad) = self.buf.as_mut_slice().get_mut(self.len..padded) {
            pad.fill(0);
        }
        self.write_out(padded)
    }

    /// Flushes and cuts the file to `real_len` (dropping the padding of the last block);
    /// gives back the file for the `fsync`.
    pub(crate) fn finish(mut self, real_len: u64) -> Result<File, BackendError> {
        self.flush()?;
        debug_assert_eq!(self.file_off + self.len as u64, real_len);
        rustix::fs::ftruncate(&self.file, real_len)
            .map_err(|e| self.io("truncate to its real length", e.into()))?;
        Ok(self.file)
    }

    /// `pwrite`s `buf[..upto]` at `file_off`.
    fn write_out(&mut self, upto: usize) -> Result<(), BackendError> {
        let mut done = 0;
        while done < upto {
            let end = if self.direct { upto } else { upto.min(done + BUFFERED_WRITE_PIECE) };
            let chunk = self.buf.as_slice().get(done..end).unwrap_or_default();
            match rustix::io::pwrite(&self.file, chunk, self.file_off + done as u64) {
                Ok(0) => {
                    return Err(self.io("write", io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => {
                    done += n;
                    if self.direct {
                        self.direct_proven = true;
                        if !done.is_multiple_of(self.align) && done < upto {
                            let source = io::Error::other(
                                "a short O_DIRECT write left an unaligned remainder (device full?)",
                            );
                            return Err(self.io("write", source));
                        }
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::INVAL) if self.direct && !self.direct_proven => {
                    let reason = "the filesystem refused the first O_DIRECT write (EINVAL)";
                    if !self.auto {
                        return Err(BackendError::DirectUnsupported {
                            path: self.final_path.clone(),
                            reason: reason.to_owned(),
                        });
                    }
                    self.disable_direct()?;
                    tracing::warn!(
                        path = %self.final_path.display(),
                        "{reason}; falling back to buffered I/O"
                    );
                    self.fallback = Some(reason.to_owned());
                }
                Err(e) => return Err(self.io("write", e.into())),
            }
        }
        Ok(())
    }

    fn disable_direct(&mut self) -> Result<(), BackendError> {
        rustix::fs::fcntl_getfl(&self.file)
            .and_then(|fl| rustix::fs::fcntl_setfl(&self.file, fl - OFlags::DIRECT))
            .map_err(|e| self.io("clear O_DIRECT on", e.into()))?;
        self.direct = false;
        Ok(())
    }
}
