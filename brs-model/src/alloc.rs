//! glibc's malloc set up for libtorch's large, short-lived tensors.
//!
//! libtorch allocates every CPU tensor with `posix_memalign`. glibc serves blocks over its mmap
//! threshold (at most 32 MiB) with a fresh `mmap` and returns them with `munmap` when freed, so
//! every large activation costs a page fault per 4 KiB and the kernel zeroing each page. A 256 px
//! training iteration allocates gigabytes of such maps: measured here, 44% of its time went to the
//! kernel (`clear_page_erms`, page faults), and the iteration took 16.6 s instead of 7.3 s once
//! freed memory was kept for reuse. The settings below keep it: one arena, no mmap'd blocks, and
//! no trimming of the heap's top below 1 GiB. Peak memory is unchanged (the same blocks are
//! reused); freed memory is simply not handed back to the kernel between iterations.
//!
//! glibc reads these settings (`GLIBC_TUNABLES`) only at process start, so the binaries re-execute
//! themselves once with them set, as the first thing in `main`. Safe Rust, no `mallopt` call:
//! the workspace forbids `unsafe`.

use std::ffi::OsString;

/// The tunables added to the environment.
pub const TUNABLES: &str =
    "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824";

/// Set in the re-executed process, so it does not re-execute again.
const MARK: &str = "BRS_MALLOC_TUNED";

/// Set to `default` to keep glibc's defaults (no re-execution).
pub const OPT_OUT: &str = "BRS_MALLOC";

/// The `GLIBC_TUNABLES` value to run with: ours first, so a user's own settings (later) win.
fn tunables_value(existing: Option<OsString>) -> OsString {
    let mut value = OsString::from(TUNABLES);
    if let Some(user) = existing.filter(|u| !u.is_empty()) {
        value.push(":");
        value.push(user);
    }
    value
}

/// Re-executes the running binary with glibc's malloc tuned (see the module docs), unless that
/// already happened, `BRS_MALLOC=default` is set, or this is not a glibc Linux build. Call it first
/// in `main`, before any thread starts. It returns only when no re-execution happened; if the
/// exec itself fails, it says so on stderr and returns, and the program runs untuned.
pub fn reexec_with_tuned_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        if std::env::var_os(MARK).is_some() || std::env::var(OPT_OUT).is_ok_and(|v| v == "default")
        {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        let err = std::process::Command::new(&exe)
            .arg0(argv0)
            .args(args)
            .env(
                "GLIBC_TUNABLES",
                tunables_value(std::env::var_os("GLIBC_TUNABLES")),
            )
            .env(MARK, "1")
            .exec();
        eprintln!(
            "note: could not re-execute {} with tuned malloc ({err}); running with glibc's defaults",
            exe.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_tunables_come_last_so_they_win() {
        assert_eq!(tunables_value(None), OsString::from(TUNABLES));
        assert_eq!(
            tunables_value(Some(OsString::new())),
            OsString::from(TUNABLES)
        );
        let both = tunables_value(Some("glibc.malloc.arena_max=4".into()));
        assert_eq!(
            both,
            OsString::from(format!("{TUNABLES}:glibc.malloc.arena_max=4"))
        );
    }
}
