//! Test support shared by brs's crates, so each helper exists once: where scripts/setup put
//! things ([`setup`]), small images ([`images`]), tiny real models ([`model`]), and a moto
//! server on loopback for the S3 and SQS tests ([`moto`]), the TensorFlow port's runs
//! ([`tfport`]), exported ONNX models run by ONNX Runtime ([`onnx`]), a reader that leaves
//! early ([`output_into_closed_pipe`]), and a process's memory ([`status_kib`]).
//!
//! Test code: a failed expectation here panics with a message saying what to fix.
#![allow(clippy::unwrap_used)]

pub mod images;
pub mod model;
pub mod moto;
pub mod onnx;
pub mod setup;
pub mod tfport;

/// The names of the entries of `dir`, sorted.
pub fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A memory field of `/proc/PID/status` in KiB (`VmRSS`, the resident set now; `VmHWM`, its peak).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// A fresh temp directory whose name says which crate's test made it.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// A loopback port nobody listens on right now, for a server spawned as its own process. Chosen
/// below the kernel's ephemeral range (32768-60999 on Linux): a port taken from `bind(0)` and
/// released could be handed to another test's in-process server (they bind port 0) before the
/// child binds it, and the test would then talk to the wrong server.
pub fn free_port() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    (0..12_000u32)
        .map(|i| 20_000 + (seed.wrapping_add(i * 7_919) % 12_000) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free loopback port in 20000-31999")
}

/// Runs `cmd` with stdout a pipe whose reader is gone before the child starts, as `cmd | head`
/// leaves it once head has read enough, so the child's very first write meets a closed pipe.
/// Stderr is captured; a command line tool should end quietly here, not panic in `println!`.
pub fn output_into_closed_pipe(cmd: &mut std::process::Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    cmd.stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run the command")
}
