//! What the process keeps of the heap it freed. glibc's allocator keeps freed memory in its
//! arenas for reuse: after a query tick decoded a large answer, or a stream tick folded the
//! whole fleet, the process would stay at that peak for good (docs/benchmarks.md, issue 20:
//! the steady stream ticks never fell below the warm-up's query ticks). Other allocators and
//! platforms return memory on their own; there these are no-ops.

/// Caps glibc's arenas at two (one per core of the usual deployment; the default is eight per
/// core), as `MALLOC_ARENA_MAX=2` does: each arena holds on to its own freed memory. An
/// operator's `MALLOC_ARENA_MAX` wins. Before the runtime starts threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    set_unless_the_operator_did("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2);
}

/// Serves every allocation of 1 MiB or more with its own mapping, returned to the OS when it
/// is freed, as `MALLOC_MMAP_THRESHOLD_=1048576` does. glibc's default threshold rises with
/// each large block freed, up to 32 MiB, after which a tick's lists of a large fleet (tens of
/// MB each) come from the arenas, between the windows' long-lived blocks, and the process
/// peaks higher than the memory it uses. An operator's `MALLOC_MMAP_THRESHOLD_` wins.
pub fn map_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    set_unless_the_operator_did("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 1 << 20);
}

/// `mallopt(param, value)`, unless the environment variable that sets the same parameter is
/// there (glibc read it at start). Before the runtime starts threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_unless_the_operator_did(variable: &str, param: libc::c_int, value: libc::c_int) {
    if std::env::var_os(variable).is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before other threads exist
        unsafe {
            libc::mallopt(param, value);
        }
    }
}

/// Returns the heap freed since the last call to the OS (after a tick, whose transient
/// readings and answers are gone by then). A few milliseconds for a heap of hundreds of MB.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim walks the allocator's own free lists; no Rust object is touched
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops `leftovers` (a tick's readings, changes and inputs) on a thread of its own, then
/// returns the freed heap to the OS ([`release_freed`]). Freeing a large fleet's readings takes
/// a tenth of a stream tick; the tick's answer does not wait for it. Where no thread can be
/// started they are dropped here.
pub fn free_beside<T: Send + 'static>(leftovers: T) {
    let freeing = std::thread::Builder::new()
        .name("monit-free".into())
        .spawn(move || {
            drop(leftovers);
            release_freed();
        });
    if let Err(e) = freeing {
        tracing::debug!("freeing a tick's leftovers in the tick: no thread ({e})");
    }
}
