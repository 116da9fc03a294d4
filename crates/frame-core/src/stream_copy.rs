//! Copies that write around the cache (`x86_64` streaming stores), for bulk data the copier
//! will not read again: a normal store first reads each destination line into the cache,
//! which for a bulk copy is a third stream of memory traffic next to reading the source and
//! writing the destination. All unsafe code for it lives in this module.
//!
//! Elsewhere (other architectures, or without `std`, which a streaming store's memory
//! ordering rules are not worth for) both functions are a plain copy and nothing.

/// Copies `src` into `dst`; the lengths must be equal (a mismatch copies the shorter).
#[inline]
pub fn copy(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        // SAFETY: both ranges are valid for `n` bytes (the shorter length) and cannot
        // overlap, as `dst` is a unique borrow.
        unsafe { x86::copy_streaming(dst.as_mut_ptr(), src.as_ptr(), n) };
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
            d.copy_from_slice(s);
        }
    }
}

/// Orders the streaming stores of [`copy`] before any later store, so that another thread
/// that sees a later write (a flag, a channel message) also sees the copied bytes. Call it
/// once after a run of copies.
#[inline]
pub fn finish() {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    // SAFETY: `sfence` has no preconditions; SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_sfence();
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod x86 {
    use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};

    /// Copies `n` bytes; the aligned middle with 16-byte streaming stores (SSE2, part of
    /// the `x86_64` baseline), the unaligned head and the tail with ordinary copies.
    ///
    /// # Safety
    /// `src` must be valid for reads and `dst` for writes of `n` bytes, and the ranges must
    /// not overlap.
    #[allow(clippy::many_single_char_names, clippy::cast_ptr_alignment)]
    pub unsafe fn copy_streaming(dst: *mut u8, src: *const u8, n: usize) {
        let head = dst.align_offset(16).min(n);
        let body = (n - head) / 64 * 64;
        // SAFETY: head <= n; the caller's promise covers every range below, which all lie
        // within the first `n` bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(src, dst, head);
            let (mut d, mut s) = (dst.add(head), src.add(head));
            let end = d.add(body);
            while d < end {
                // `d` is 16-byte aligned (head aligned it and we step by 16s); `s` may not
                // be, so it is read with unaligned loads.
                let a = _mm_loadu_si128(s.cast::<__m128i>());
                let b = _mm_loadu_si128(s.add(16).cast::<__m128i>());
                let c = _mm_loadu_si128(s.add(32).cast::<__m128i>());
                let e = _mm_loadu_si128(s.add(48).cast::<__m128i>());
                _mm_stream_si128(d.cast::<__m128i>(), a);
                _mm_stream_si128(d.add(16).cast::<__m128i>(), b);
                _mm_stream_si128(d.add(32).cast::<__m128i>(), c);
                _mm_stream_si128(d.add(48).cast::<__m128i>(), e);
                d = d.add(64);
                s = s.add(64);
            }
            core::ptr::copy_nonoverlapping(s, d, n - head - body);
        }
    }
}
