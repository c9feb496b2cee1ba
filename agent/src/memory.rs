//! The agent's malloc settings: it should stay a few MiB however long it runs.
//!
//! Two glibc behaviours cost an agent more than its live data (measured with 50 running
//! servers, BENCHMARKS.md "Round 4", "Item 6"):
//! - every thread that allocates gets an arena of its own, up to eight per core, and the
//!   blocking threads that walk volumes (`smol::unblock`) come and go: each arena keeps
//!   pages after its thread is gone. The agent's allocation rate is low (a few thousand a
//!   second under a log flood), so one arena shared by every thread costs no measurable
//!   contention;
//! - memory freed after a burst (adopting 50 containers decodes Docker's whole container
//!   list; a file transfer's chunks) stays in the heap below live allocations. `trim` gives
//!   such free pages back; the load sampler calls it every few seconds, where it costs a
//!   walk of a small heap.
//!
//! Elsewhere than glibc both are no-ops.

#![allow(unsafe_code, reason = "mallopt and malloc_trim are plain glibc calls")]

/// Arenas glibc may create (see the module docs).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 1;

/// Call before the agent starts any thread.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Returns free heap pages to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory malloc considers free.
    unsafe {
        libc::malloc_trim(0);
    }
}
