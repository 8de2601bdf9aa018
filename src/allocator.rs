//! How a long-running `serve` process asks memory of the kernel. Set once, before `serve`
//! starts its threads (and in the benches that report the server's memory, so that they
//! measure what it does).
//!
//! A server's heap is mostly its watch caches, built once from pages of a large list and then
//! kept, with small per-request churn on top. Two mimalloc defaults suit that poorly
//! (`cargo bench --bench inventory_memory`, RSS after the sync with the defaults against these
//! settings: 29–34 MiB against 15 MiB for 10,000 Services, 2,000 StatefulSets and 1,000 Nodes;
//! 58 MiB against 42 MiB for 100,000/20,000/5,000):
//! - freed pages are returned to the kernel 10 ms *later*, but only when the thread that freed
//!   them next allocates; a watch task that goes idle after the list keeps the pages of its
//!   list buffers resident for good. Returning them at once costs at most one more `madvise`
//!   per 100 requests under load (`perf stat -e syscalls:sys_enter_madvise` over 40,000 /mutate
//!   Pod CREATEs: 435–445 against 126–127);
//! - on a kernel whose transparent huge pages are `always` or `madvise`, mimalloc's regions
//!   fault in 2 MiB at a time, which a heap of tens of MiB pays for in RSS and gains little.
//!
//! The one-shot commands keep the defaults: `check` parses thousands of objects and drops
//! them, and returning each freed page at once made its read-and-parse phase about 25% slower
//! (`cargo bench --bench check_throughput` with `MIMALLOC_PURGE_DELAY=0 MIMALLOC_ALLOW_THP=0`:
//! 282–303 ms against 220–241 ms).

use libmimalloc_sys as ffi;
use libmimalloc_sys::mi_option_t;

// libmimalloc-sys names neither option; the bundled v2 header (mimalloc.h) puts `purge_delay`
// right after `eager_commit_delay` and `allow_thp` last. The test pins both by their defaults.
const MI_OPTION_PURGE_DELAY: mi_option_t = ffi::mi_option_eager_commit_delay + 1;
const MI_OPTION_ALLOW_THP: mi_option_t = ffi::_mi_option_last - 1;

/// Frees go back to the kernel at once; no transparent huge pages for this process. Call it
/// before starting other threads.
pub fn keep_resident_memory_low() {
    // SAFETY: plain stores into mimalloc's option table, made before other threads read it.
    unsafe {
        ffi::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        ffi::mi_option_set(MI_OPTION_ALLOW_THP, 0);
    }
    // mimalloc applies `allow_thp` only when it starts, before `main`; this does it now.
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_numbers_are_the_headers() {
        // The defaults documented in mimalloc.h: purge_delay 10 ms, allow_thp on. A renumbered
        // enum in a later libmimalloc-sys reads some other option here.
        let get = |option| unsafe { ffi::mi_option_get(option) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(MI_OPTION_PURGE_DELAY), 10);
        }
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            assert_eq!(get(MI_OPTION_ALLOW_THP), 1);
        }
    }
}
