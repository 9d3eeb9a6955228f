//! mimalloc, the `gka` program's global allocator, and the options it runs with.
//!
//! A simulated group of thousands allocates and frees many small objects per message, and
//! glibc's allocator spent about a third of the simulator's time in them (docs/performance.md,
//! "Scale"). mimalloc's defaults keep freed memory for a while (which is what makes it fast)
//! and back it with transparent huge pages; under 4 MiB broadcasts that raised the daemon's
//! peak memory above its bound, so the daemon calls [`return_freed_memory_at_once`].
//!
//! mimalloc is built to also serve `malloc` and `free` (its `override` feature), which the
//! program exports, so the plugin libraries it loads, which allocate through the system's
//! `malloc`, use the same allocator. Plugins must not carry an allocator of their own: with
//! one mimalloc in each plugin library, loading several side by side on several threads
//! crashed the process (`tests/tests/loading.rs`).

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// mimalloc's option numbers (`mi_option_e` in its `mimalloc.h`, version 3), which its Rust
/// binding does not name; the tests check them against mimalloc's defaults.
const ARENA_EAGER_COMMIT: mi_option_t = 4;
const PURGE_DELAY: mi_option_t = 15;
const ALLOW_THP: mi_option_t = 43;

/// Sets this program's mimalloc to return freed memory to the system at once, to commit arena
/// memory only as it is used, and not to use transparent huge pages: less memory held, for
/// more time spent in the system's allocator (the simulator runs about a quarter slower so).
/// Call before allocating anything; `gka daemon` does (from `.init_array`, see `main.rs`).
pub(crate) fn return_freed_memory_at_once() {
    // SAFETY: mi_option_set only stores an option's value; any value is valid for these.
    unsafe {
        mi_option_set(PURGE_DELAY, 0);
        mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi_option_set(ALLOW_THP, 0);
    }
}

/// An option's current value.
#[cfg(test)]
fn option(option: mi_option_t) -> std::os::raw::c_long {
    use libmimalloc_sys::mi_option_get;
    // SAFETY: reads an option's value; the option numbers are in range (checked in tests).
    unsafe { mi_option_get(option) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_numbers_are_mimallocs_and_are_set() {
        // mimalloc's defaults (unless the environment, or a first argument `daemon` to this
        // test program, set them already): they identify the option numbers.
        for (number, default, name) in
            [(PURGE_DELAY, 1000, "PURGE_DELAY"), (ALLOW_THP, 1, "ALLOW_THP")]
        {
            let value = option(number);
            let unset = std::env::var_os(format!("MIMALLOC_{name}")).is_none();
            assert!(value == 0 || !unset || value == default, "{name}: {value}");
        }
        assert!([0, 2].contains(&option(ARENA_EAGER_COMMIT)), "arena_eager_commit");
        return_freed_memory_at_once();
        assert_eq!((option(PURGE_DELAY), option(ARENA_EAGER_COMMIT), option(ALLOW_THP)), (0, 0, 0));
    }
}
