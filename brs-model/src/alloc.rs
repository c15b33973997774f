//! glibc's malloc set up for each kind of process: the trainer keeps freed memory for reuse, the
//! server gives it back.
//!
//! **Training.**
//! libtorch allocates every CPU tensor with `posix_memalign`. glibc serves blocks over its mmap
//! threshold (at most 32 MiB) with a fresh `mmap` and returns them with `munmap` when freed, so
//! every large activation costs a page fault per 4 KiB and the kernel zeroing each page. A 256 px
//! training iteration allocates gigabytes of such maps: measured here, 44% of its time went to the
//! kernel (`clear_page_erms`, page faults), and the iteration took 16.6 s instead of 7.3 s once
//! freed memory was kept for reuse. The settings below keep it: no mmap'd blocks, and no trimming
//! of the heap's top below 1 GiB. Peak memory is unchanged (the same blocks are reused); freed
//! memory is simply not handed back to the kernel between iterations. One arena per training
//! thread: a run with `replicas` copies of the networks trains each on its own thread, and with a
//! single arena they queued for its lock (configs/demo.toml with replicas = 2 on 2 cores: 0.436
//! s/it with one arena, 0.386 with two over 12 alternating rounds; docs/training.md, "Data
//! parallelism on the CPU"). One replica keeps one arena: a second one changed nothing there.
//!
//! **Serving.** A server must give memory back: a burst of large uploads must not become the
//! new floor of a long-lived process. It must also keep freed memory while it works: a 256 px
//! forward pass allocates hundreds of MiB in blocks of 16 MiB per image (64 MiB for a batch of
//! four), and when each block was mapped on its own and unmapped when freed (the earlier profile,
//! an mmap threshold of 256 KiB), every pass paid a page fault per 4 KiB and the kernel zeroing
//! each page again: forward passes ran about 2x slower than the same process with the trainer's
//! settings (docs/benchmarks.md). So the server keeps freed blocks while busy and gives them back
//! once idle: no block is mapped on its own (`mmap_max=0`, as the trainer: glibc's largest mmap
//! threshold, 32 MiB, still mapped a batch's 64 MiB activations afresh, which cost 10% of the
//! throughput at saturation), the heaps are not trimmed while working (1 GiB trim threshold), and
//! the server calls [`release_free_memory`] once it has been idle for a few seconds, which returns
//! every whole free page of every arena, not just a heap's top. Two arenas instead of eight per
//! core keep the small allocations of many threads from spreading over many heaps. Measured with
//! `scripts/bench-abuse` (docs/benchmarks.md): peak RSS under attack and the RSS over idle 30 s
//! after it.
//!
//! A server also tells libtorch's OpenMP threads to sleep when idle (`OMP_WAIT_POLICY=PASSIVE`,
//! unless the operator set a policy): by default they spin for a while after each parallel
//! region, which on a host shared with decoding threads, a second inference process (a web
//! instance beside a queue worker) or anything else made forward passes many times slower
//! (docs/benchmarks.md). The trainer keeps the spinning: it owns its cores, and there the spin
//! saves a wake-up between the many small parallel regions of an iteration.
//!
//! glibc reads these settings (`GLIBC_TUNABLES`) and libgomp its own only at process start, so the
//! binaries re-execute themselves once with them set, as the first thing in `main`: no `mallopt`
//! call. The one `unsafe` call of the workspace is `malloc_trim`, in [`release_free_memory`].

use std::ffi::OsString;

/// Which settings a process runs with (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A process that trains (or translates) on `threads` threads of its own, each given a malloc
    /// arena: the trainer's `replicas`, 1 for everything else.
    Training {
        threads: usize,
    },
    Serving,
}

impl Profile {
    /// The tunables added to the environment.
    pub fn tunables(self) -> String {
        match self {
            Profile::Training { threads } => format!(
                "glibc.malloc.arena_max={}:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824",
                threads.max(1)
            ),
            Profile::Serving => "glibc.malloc.arena_max=2:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824".to_string(),
        }
    }

    /// Environment variables set for the process unless the operator set them.
    pub fn defaults(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::Training { .. } => &[],
            Profile::Serving => &[("OMP_WAIT_POLICY", "PASSIVE")],
        }
    }
}

/// Gives every whole free page of every malloc arena back to the kernel (glibc's `malloc_trim(0)`,
/// which since glibc 2.8 releases free pages anywhere in a heap, not only at its top). Returns
/// whether anything was given back; elsewhere than glibc it does nothing and returns `false`.
/// glibc locks each arena in turn while it walks it, so call it when the process is idle.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and has no precondition; glibc serialises it with
        // every other allocator call (MT-Safe, malloc_trim(3)).
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Set in the re-executed process, so it does not re-execute again.
const MARK: &str = "BRS_MALLOC_TUNED";

/// Set to `default` to keep glibc's defaults (no re-execution), or to `training` or `serving` to
/// run a binary with the other profile (benchmarks compare them).
pub const OPT_OUT: &str = "BRS_MALLOC";

/// The `GLIBC_TUNABLES` value to run with: ours first, so a user's own settings (later) win.
fn tunables_value(profile: Profile, existing: Option<OsString>) -> OsString {
    let mut value = OsString::from(profile.tunables());
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
pub fn reexec_with_tuned_malloc(profile: Profile) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        if std::env::var_os(MARK).is_some() {
            return;
        }
        let profile = match std::env::var(OPT_OUT).as_deref() {
            Ok("default") => return,
            Ok("training") => Profile::Training { threads: 1 },
            Ok("serving") => Profile::Serving,
            _ => profile,
        };
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        let mut command = std::process::Command::new(&exe);
        for (key, value) in profile.defaults() {
            if std::env::var_os(key).is_none() {
                command.env(key, value);
            }
        }
        let err = command
            .arg0(argv0)
            .args(args)
            .env(
                "GLIBC_TUNABLES",
                tunables_value(profile, std::env::var_os("GLIBC_TUNABLES")),
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
    fn a_training_thread_gets_an_arena_of_its_own() {
        let arenas = |threads| {
            let t = Profile::Training { threads }.tunables();
            t.split(':')
                .find_map(|kv| kv.strip_prefix("glibc.malloc.arena_max="))
                .map(str::to_string)
        };
        assert_eq!(arenas(1).as_deref(), Some("1"));
        assert_eq!(arenas(2).as_deref(), Some("2"));
        assert_eq!(arenas(0).as_deref(), Some("1"));
    }

    #[test]
    fn user_tunables_come_last_so_they_win() {
        let training = Profile::Training { threads: 1 };
        let t = training.tunables();
        assert_eq!(tunables_value(training, None), OsString::from(&t));
        assert_eq!(
            tunables_value(training, Some(OsString::new())),
            OsString::from(&t)
        );
        let both = tunables_value(Profile::Serving, Some("glibc.malloc.arena_max=4".into()));
        assert_eq!(
            both,
            OsString::from(format!(
                "{}:glibc.malloc.arena_max=4",
                Profile::Serving.tunables()
            ))
        );
    }
}
