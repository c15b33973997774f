//! The binary's config flags: `--print-config` alone shows the defaults; with a file and flags it
//! shows the effective config, or exits 1 naming what is wrong (how a deployment checks its file).

use std::process::Command;

use brs_serve::Config;

fn brs_serve(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_brs-serve"))
        .args(args)
        .output()
        .expect("run brs-serve")
}

#[test]
fn print_config_shows_defaults_or_the_effective_validated_config() {
    let out = brs_serve(&["--print-config"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        Config::defaults_toml()
    );

    let dir = brs_testkit::tempdir("brs-serve-cli-");
    let file = dir.path().join("serve.toml");
    std::fs::write(
        &file,
        "max_batch = 2\n[styles.default]\npath = \"/mnt/models/run\"\n[queue]\nwait_time = \"5s\"\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf8");
    let out = brs_serve(&["--config", file, "--set", "queue_depth=7", "--print-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let cfg: Config = toml::from_str(&printed).expect("the output parses back");
    assert_eq!((cfg.max_batch, cfg.queue_depth), (2, 7));
    assert_eq!(cfg.queue.wait_time, std::time::Duration::from_secs(5));
    assert!(cfg.styles.contains_key("default"));

    // An unknown key and an invalid value each stop it, naming the key.
    for (set, key) in [("max_batchh=2", "max_batchh"), ("max_batch=0", "max_batch")] {
        let out = brs_serve(&["--config", file, "--set", set, "--print-config"]);
        assert_eq!(out.status.code(), Some(1), "{set}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{set}: {err}");
    }
}

/// `brs-serve --print-config | head -1` and `brs-serve hash-key K | true`: a reader that went away
/// ends the command quietly with exit 0 (both panicked in `print!` before).
#[test]
fn a_reader_that_closes_stdout_early_is_not_a_crash() {
    for args in [&["--print-config"][..], &["hash-key", "a-key"]] {
        let out = brs_testkit::output_into_closed_pipe(
            Command::new(env!("CARGO_BIN_EXE_brs-serve")).args(args),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "{args:?}: {err}");
    }
}
