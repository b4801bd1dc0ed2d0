//! The C edge: the only place with raw pointers and `unsafe`. Each exported function checks its
//! pointers, turns them into safe values, calls `crate::fns`, and maps the outcome to a `CK_RV`
//! inside one `entry!` that also catches panics, so nothing unwinds into the host.

#![allow(unsafe_code)]

mod functions;
mod interface;
mod mechanism;

use cryptoki_sys::*;

use crate::error::{Ckr, Result};
use crate::fns::{Attribute, OutBuf};

/// Forks this process went through since the module was loaded, counted in the child by a
/// `pthread_atfork` handler. Every call compares it with the count its module was made under,
/// which notices a forked child (whose module, SQLite connection included, is the parent's)
/// without a `getpid` system call on the hot path. glibc unregisters the handler if the module
/// is unloaded.
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The fork count of this process (see [`FORKS`]); the first call installs the handler.
pub(crate) fn process_generation() -> u64 {
    static WATCH: std::sync::Once = std::sync::Once::new();
    WATCH.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic, as fork handlers must.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
        if rc != 0 {
            tracing::warn!(rc, "pthread_atfork failed: a forked child must not reuse the module");
        }
    });
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs a function body: `Ok` is `CKR_OK`, an error its code, a panic `CKR_GENERAL_ERROR`.
macro_rules! entry {
    ($name:expr, $body:block) => {{
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> $crate::error::Result<()> { $body }));
        match outcome {
            Ok(Ok(())) => cryptoki_sys::CKR_OK,
            Ok(Err(e)) => {
                tracing::debug!(function = $name, "{e}");
                e.rv()
            }
            Err(_) => {
                tracing::error!(function = $name, "panic caught at the C boundary");
                cryptoki_sys::CKR_GENERAL_ERROR
            }
        }
    }};
}
pub(crate) use entry;

/// A caller's input buffer.
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes (elements) that stay valid and unchanged
/// for `'a`.
unsafe fn input<'a, T>(ptr: *const T, len: CK_ULONG) -> Result<&'a [T]> {
    let len = usize::try_from(len).map_err(|_| Ckr::CKR_ARGUMENTS_BAD)?;
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Ckr::CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-null, and the caller vouches for `len` readable elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A caller's array, writable in place.
///
/// # Safety
/// `ptr` must be null or point to `len` writable elements valid for `'a`.
unsafe fn input_mut<'a, T>(ptr: *mut T, len: CK_ULONG) -> Result<&'a mut [T]> {
    let len = usize::try_from(len).map_err(|_| Ckr::CKR_ARGUMENTS_BAD)?;
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(Ckr::CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-null, and the caller vouches for `len` writable elements.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// A caller's out-parameter.
///
/// # Safety
/// `ptr` must be null or point to a writable `T` valid for `'a`.
unsafe fn out<'a, T>(ptr: *mut T) -> Result<&'a mut T> {
    // SAFETY: the caller vouches for a writable T when non-null.
    unsafe { ptr.as_mut() }.ok_or(Ckr::CKR_ARGUMENTS_BAD)
}

/// A caller's output buffer and its length, with PKCS#11's length-query convention.
///
/// # Safety
/// `len` must be null or point to a writable `CK_ULONG`; `buf` must be null or point to `*len`
/// writable bytes; both valid for `'a`.
unsafe fn out_buf<'a>(buf: *mut CK_BYTE, len: *mut CK_ULONG) -> Result<OutBuf<'a>> {
    // SAFETY: forwarded from the caller's contract.
    let len = unsafe { out(len) }?;
    let slice = if buf.is_null() {
        None
    } else {
        let n = usize::try_from(*len).map_err(|_| Ckr::CKR_ARGUMENTS_BAD)?;
        // SAFETY: non-null, and the caller says `*len` bytes are writable there.
        Some(unsafe { std::slice::from_raw_parts_mut(buf, n) })
    };
    Ok(OutBuf::new(slice, len))
}

/// A caller's template, copied.
///
/// # Safety
/// `ptr` must be null or point to `count` `CK_ATTRIBUTE`s whose values are readable as their
/// lengths say.
unsafe fn template(ptr: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Vec<Attribute>> {
    // SAFETY: forwarded from the caller's contract.
    let borrowed = unsafe { template_ref(ptr, count) }?;
    Ok(borrowed.iter().map(|(t, v)| (*t, v.to_vec())).collect())
}

/// A caller's template, borrowed for the call (kept on the stack up to eight attributes).
///
/// # Safety
/// As [`template`]; the values must stay valid and unchanged for `'a`.
unsafe fn template_ref<'a>(
    ptr: *const CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Result<smallvec::SmallVec<[crate::fns::AttributeRef<'a>; 8]>> {
    // SAFETY: forwarded from the caller's contract.
    let attributes = unsafe { input(ptr, count) }?;
    attributes
        .iter()
        .map(|a| {
            // SAFETY: the caller vouches for `ulValueLen` readable bytes at `pValue`.
            let value = unsafe { input(a.pValue as *const u8, a.ulValueLen) }?;
            Ok((a.type_, value))
        })
        .collect()
}

/// Writes a list with the length-query convention (slot and mechanism lists, handles).
///
/// # Safety
/// `count` must be null or point to a writable `CK_ULONG`; `list` null or pointing to `*count`
/// writable elements.
unsafe fn write_list<T: Copy>(list: *mut T, count: *mut CK_ULONG, items: &[T]) -> Result<()> {
    // SAFETY: forwarded from the caller's contract.
    let count = unsafe { out(count) }?;
    let n = CK_ULONG::try_from(items.len()).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
    if list.is_null() {
        *count = n;
        return Ok(());
    }
    if *count < n {
        *count = n;
        return Err(Ckr::CKR_BUFFER_TOO_SMALL);
    }
    // SAFETY: non-null with room for `*count >= n` elements.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), list, items.len()) };
    *count = n;
    Ok(())
}
