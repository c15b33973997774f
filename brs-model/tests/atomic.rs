//! Kills checkpoint writers at random moments, many times, and checks after each kill that
//! `latest` still loads with every hash intact and no incomplete checkpoint is visible.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brs_model::ModelConfig;
use brs_model::checkpoint::{
    Checkpoint, CheckpointKind, CheckpointMeta, CheckpointWriter, checkpoint_name, read_latest,
};

const CHILD_ENV: &str = "BRS_ATOMIC_WRITER_DIR";
const TEST_NAME: &str = "killed_writers_never_break_latest";

/// Payload bytes that differ per checkpoint and per file, so a mix-up would fail a hash.
fn payload(iteration: u64, file: u64, len: usize) -> Vec<u8> {
    let mut x = iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ file;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_one(run: &Path, iteration: u64) {
    let mut w = CheckpointWriter::begin(run, &checkpoint_name("ckpt", iteration)).expect("begin");
    for file in 0..4 {
        w.add_file(
            &format!("part{file}.bin"),
            &payload(iteration, file, 1 << 20),
        )
        .expect("add");
    }
    w.commit(CheckpointMeta::new(
        CheckpointKind::Training,
        &ModelConfig::default(),
        iteration,
    ))
    .expect("commit");
}

/// The child: writes checkpoint after checkpoint until killed (bounded in case it is not).
fn writer_loop(run: &Path) {
    let start = Checkpoint::open(run).map(|c| c.meta.iteration).unwrap_or(0);
    for iteration in start + 1..start + 10_000 {
        write_one(run, iteration);
    }
}

fn check_run(run: &Path) -> u64 {
    let ck = Checkpoint::open(run).expect("latest must open after a kill");
    ck.verify().expect("latest must verify after a kill");
    // Every visible checkpoint directory is complete; only hidden temp dirs may be partial.
    for entry in std::fs::read_dir(run).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("ckpt-") {
            Checkpoint::open(&run.join(&name))
                .and_then(|c| c.verify())
                .unwrap_or_else(|e| panic!("visible checkpoint {name} is incomplete: {e}"));
        }
    }
    ck.meta.iteration
}

#[test]
fn killed_writers_never_break_latest() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        writer_loop(Path::new(&dir));
        return;
    }
    let run = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    write_one(run.path(), 0);
    let exe = std::env::current_exe().unwrap();
    let mut last = 0;
    let mut progressed = 0;
    for round in 0..30u64 {
        // Kill delays scale with how long one write takes on this machine right now (timed just
        // before each round, in another directory), so the kills land across all phases of a
        // write however loaded the machine is and however its load changes during the test
        // (timed once at the start, a machine that got busier later let no write finish: seen
        // beside a parallel build).
        let started = std::time::Instant::now();
        write_one(scratch.path(), round + 1);
        let write_time = started.elapsed();
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, run.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the child is writing (its temp dir exists), then spread the kills over
        // the phases of a write: data files, meta.json, rename, pointer.
        let marker = format!(".tmp-{}-", child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !std::fs::read_dir(run.path())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains(&marker))
        {
            assert!(std::time::Instant::now() < deadline, "writer never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(write_time.mul_f64(((round * 7) % 20) as f64 / 10.0));
        child.kill().unwrap(); // SIGKILL: no destructor, no cleanup
        child.wait().unwrap();
        let now = check_run(run.path());
        assert!(now >= last, "latest went backwards: {last} -> {now}");
        if now > last {
            progressed += 1;
        }
        last = now;
    }
    // The kills must have interrupted real writing, not idle processes.
    assert!(
        progressed >= 3,
        "only {progressed} rounds wrote a checkpoint"
    );
    assert!(read_latest(run.path()).unwrap().is_some());
}
