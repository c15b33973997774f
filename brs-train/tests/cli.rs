//! Whole-binary tests of brs-train: a run's outputs, SIGINT/SIGTERM then resume, translate,
//! export, summary, and bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brs_model::checkpoint::{Checkpoint, CheckpointKind, OPTIM_FILE, RNG_FILE};
use brs_model::{Direction, Precision, Translator};
use common::{TINY, bin, config, run, s, synth_dataset, text, train, train_args};

#[test]
fn a_run_writes_checkpoints_samples_metrics_and_plot_then_translates_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth_dataset(&data, 4, 2, 96, 1);
    // An unreadable file in a training folder is skipped and reported, not fatal.
    std::fs::write(data.join("trainA/broken.jpg"), b"not a jpeg").unwrap();
    let cfg = config(
        dir.path(),
        "c.toml",
        &format!("{TINY}iteration = 6\nprint_freq = 3\nsave_freq = 2\nkeep_last = 2\n"),
    );
    let runs = dir.path().join("run");
    let out = train(&cfg, &data, &runs, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trainA: 4 images") && err.contains("skipped 1 unreadable"),
        "{err}"
    );
    assert!(err.contains("broken.jpg"), "{err}");

    // keep_last = 2 of the checkpoints at 2, 4, 6; latest is the last one, and it verifies.
    let ckpts: Vec<String> = brs_testkit::file_names(&runs)
        .into_iter()
        .filter(|n| n.starts_with("ckpt-"))
        .collect();
    assert_eq!(ckpts, ["ckpt-0000004", "ckpt-0000006"]);
    let ckpt = Checkpoint::open(&runs).unwrap();
    ckpt.verify().unwrap();
    assert_eq!(
        (ckpt.meta.iteration, ckpt.meta.kind),
        (6, CheckpointKind::Training)
    );
    assert!(ckpt.meta.files.contains_key(OPTIM_FILE));
    assert!(ckpt.meta.files.contains_key(RNG_FILE));
    assert_eq!(ckpt.meta.training.as_ref().unwrap()["iteration"], 6);

    // Sample grids at 3 and 6: 2 test images x (input | heatmap | translation | cycle).
    for name in ["A2B_0000003.png", "B2A_0000006.png"] {
        let grid = image::open(runs.join("samples").join(name)).unwrap();
        assert_eq!(
            (grid.width(), grid.height()),
            (4 * 96 + 6, 2 * 96 + 2),
            "{name}"
        );
    }
    assert!(image::open(runs.join("losses.png")).is_ok());
    let metrics = std::fs::read_to_string(runs.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 6);
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["iteration"], 6);
    assert!(last["g_loss"].as_f64().unwrap() > 0.0);

    // translate: a folder with two images and one unreadable file.
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(data.join("testA/0000.png"), inputs.join("face.png")).unwrap();
    let fixtures = std::env::var("BRS_FIXTURES").unwrap();
    std::fs::copy(
        Path::new(&fixtures).join("grace_hopper.jpg"),
        inputs.join("hopper.jpg"),
    )
    .unwrap();
    std::fs::write(inputs.join("notes.txt"), b"hello").unwrap();
    let translated = dir.path().join("translated");
    let out = run(&[
        "translate",
        "--checkpoint",
        s(&runs),
        "--input",
        s(&inputs),
        "--output",
        s(&translated),
        "--direction",
        "b2a",
        "--batch",
        "2",
        "--device",
        "cpu",
        "--engine",
        "torch",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("translated 2 images"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notes.txt"),
        "{}",
        text(&out)
    );
    for name in ["face.png", "hopper.png"] {
        let img = image::open(translated.join(name)).unwrap();
        assert_eq!((img.width(), img.height()), (96, 96));
    }
    // It is the generator's output: the same as the library's translation of the same input, in
    // the same (default) precision.
    let translator = Translator::load(&runs, Direction::B2A, tch::Device::Cpu)
        .unwrap()
        .with_precision(brs_model::Precision::Auto);
    let face = image::open(inputs.join("face.png")).unwrap().to_rgb8();
    let want = brs_model::image::tensor_to_rgb(
        &translator
            .translate(&brs_model::image::rgb_to_tensor(&face).unsqueeze(0))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        image::open(translated.join("face.png")).unwrap().to_rgb8(),
        want
    );

    // export: one generator, smaller than the checkpoint, loadable by the serving path.
    let exports = dir.path().join("exports");
    let out = run(&[
        "export",
        "--checkpoint",
        s(&runs),
        "--output",
        s(&exports),
        "--half",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let export = Checkpoint::open(&exports).unwrap();
    assert_eq!(export.meta.kind, CheckpointKind::Export);
    assert_eq!(export.meta.files.len(), 1);
    let bytes = |c: &Checkpoint| c.meta.files.values().map(|f| f.bytes).sum::<u64>();
    assert!(
        bytes(&export) * 4 < bytes(&ckpt),
        "{} vs {}",
        bytes(&export),
        bytes(&ckpt)
    );
    Translator::load(&exports, Direction::A2B, tch::Device::Cpu).unwrap();

    // evaluate: testB holds the known mapping of testA under the same names; the command scores
    // the translation as the library does, and says what the ratio means.
    let eval = |extra: &[&str]| {
        let mut args = vec!["evaluate", "--checkpoint", s(&runs)];
        let (a, b) = (data.join("testA"), data.join("testB"));
        args.extend(["--input", s(&a), "--target", s(&b), "--device", "cpu"]);
        // libtorch, as the library call below: `auto` may pick ONNX Runtime, a rounding away.
        args.extend(["--engine", "torch"]);
        args.extend_from_slice(extra);
        run(&args)
    };
    let out = eval(&["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The command's default precision (auto: bf16 on CPUs with AVX512-BF16, f32 elsewhere).
    let translator = Translator::load(&runs, Direction::A2B, tch::Device::Cpu)
        .unwrap()
        .with_precision(Precision::Auto);
    let pairs =
        brs_train::evaluate::load_pairs(&data.join("testA"), &data.join("testB"), 96).unwrap();
    let want = brs_train::evaluate::score(&pairs, 8, |x| Ok(translator.translate(x)?)).unwrap();
    assert_eq!(json["pairs"], 2);
    for key in ["translation_error", "identity_error", "ratio"] {
        let got = json[key].as_f64().unwrap();
        let expected = serde_json::to_value(&want).unwrap()[key].as_f64().unwrap();
        assert!((got - expected).abs() < 1e-9, "{key}: {got} vs {expected}");
    }
    assert!(
        want.identity_error > 0.05 && want.translation_error > 0.0,
        "{want:?}"
    );
    let out = eval(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("2 held-out pairs") && stdout.contains("closer"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_time_budget_stops_with_a_checkpoint_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth_dataset(&data, 2, 1, 96, 8);
    let cfg = config(
        dir.path(),
        "c.toml",
        &format!("{TINY}iteration = 100000\nprint_freq = 100000\nsave_freq = 100000\n"),
    );
    let runs = dir.path().join("run");
    let started = Instant::now();
    let out = train(&cfg, &data, &runs, &["--max-minutes", "0.05"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("stopped at iteration") && stdout.contains("time budget of 0.05 min"),
        "{}",
        text(&out)
    );
    // 3 s of training plus start-up and one save, not 100000 iterations.
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    let ckpt = Checkpoint::open(&runs).unwrap();
    ckpt.verify().unwrap();
    let done = ckpt.meta.iteration;
    assert!((1..100_000).contains(&done), "{done}");
    let metrics = std::fs::read_to_string(runs.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["iteration"], done);
    // The paper's decay over the second half of the minutes: the learning rate stays at 1e-4 up
    // to the iteration `half` where half the time was gone, then falls linearly to 0 at twice
    // that, where the run ends if the minutes have not.
    let lrs: Vec<(u64, f64)> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["iteration"].as_u64().unwrap(), v["lr"].as_f64().unwrap()))
        .collect();
    let half = lrs
        .iter()
        .filter(|(_, lr)| *lr == 1e-4)
        .map(|(i, _)| *i)
        .max()
        .unwrap();
    assert!(half < done && done <= 2 * half, "{half} {done}: {lrs:?}");
    for &(i, lr) in lrs.iter().filter(|(i, _)| *i > half) {
        let expected = 1e-4 * (1.0 - (i - half) as f64 / half as f64);
        assert!((lr - expected).abs() < 1e-12, "{i}: {lr} vs {expected}");
    }
    let fitted = format!("half the time budget gone at iteration {half}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&fitted)
            && text(&out).contains(&format!("by iteration {}", 2 * half)),
        "{}",
        text(&out)
    );

    // Another budget continues the run from there.
    let out = train(&cfg, &data, &runs, &["--resume", "--max-minutes", "0.01"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(Checkpoint::open(&runs).unwrap().meta.iteration > done);
    // A budget that is not a positive number of minutes is refused.
    for bad in ["0", "NaN"] {
        let out = train(&cfg, &data, &runs, &["--resume", "--max-minutes", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("max minutes"),
            "{bad}: {err}"
        );
    }
}

/// Spawns a long run with `replicas` copies of the networks, waits until it has trained an
/// iteration, sends `signal`, and checks that it saved a loadable checkpoint and exited cleanly;
/// then resumes for one more iteration.
fn stop_with(signal: &str, replicas: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth_dataset(&data, 2, 1, 96, 2);
    let cfg = config(
        dir.path(),
        "c.toml",
        &format!(
            "{TINY}iteration = 100000\nprint_freq = 100000\nsave_freq = 100000\n\
             batch_size = 2\nreplicas = {replicas}\n"
        ),
    );
    let runs = dir.path().join("run");
    let child = Command::new(bin())
        .args(train_args(&cfg, &data, &runs, &[]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = runs.join("metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&metrics).map_or(true, |m| m.lines().count() < 2) {
        assert!(Instant::now() < deadline, "training did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The process the signal goes to (same pid after the re-exec) runs with malloc tuned, an arena
    // per training thread. (Some glibc versions split GLIBC_TUNABLES in place as they parse it:
    // look for each setting on its own.)
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    let has = |needle: &[u8]| environ.windows(needle.len()).any(|w| w == needle);
    let arenas = format!("glibc.malloc.arena_max={replicas}");
    assert!(
        has(b"BRS_MALLOC_TUNED=1") && has(b"glibc.malloc.mmap_max=0") && has(arenas.as_bytes()),
        "brs-train did not re-execute with tuned malloc: {}",
        String::from_utf8_lossy(&environ)
    );
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{signal}: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopped at iteration"),
        "{}",
        text(&out)
    );
    let ckpt = Checkpoint::open(&runs).unwrap();
    ckpt.verify().unwrap();
    let done = ckpt.meta.iteration;
    assert!(done >= 2, "{done}");
    Translator::load(&runs, Direction::A2B, tch::Device::Cpu).unwrap();

    let next = (done + 1).to_string();
    let out = train(&cfg, &data, &runs, &["--resume", "--stop-at", &next]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("at iteration {done}")),
        "{}",
        text(&out)
    );
    assert_eq!(Checkpoint::open(&runs).unwrap().meta.iteration, done + 1);
}

#[test]
fn sigterm_saves_then_exits_and_the_run_resumes() {
    stop_with("TERM", 2);
}

#[test]
fn sigint_saves_then_exits() {
    stop_with("INT", 1);
}

#[test]
fn summary_prints_the_papers_parameter_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", "light = true\n");
    let out = run(&["summary", "--config", s(&cfg)]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for count in ["10589888", "53130176", "3290560"] {
        assert!(stdout.contains(count), "{stdout}");
    }
    let out = run(&["summary", "--config", s(&cfg), "--set", "light=false"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("278959808"),
        "{}",
        text(&out)
    );
}

/// Disk full while saving: a write fails halfway through a checkpoint. Simulated with a file size
/// limit (RLIMIT_FSIZE, with SIGXFSZ ignored so the write returns an error instead of killing the
/// process), which needs no privileges and fails the same write calls a full disk fails.
#[test]
fn a_write_failing_while_saving_leaves_the_previous_checkpoint_and_latest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth_dataset(&data, 2, 1, 96, 7);
    let body = format!("{TINY}iteration = 100\nsave_freq = 1\nprint_freq = 100000\n");
    let cfg = config(dir.path(), "c.toml", &body);
    let runs = dir.path().join("run");
    let args =
        |stop: &'static str| train_args(&cfg, &data, &runs, &["--resume", "--stop-at", stop]);
    let out = run(&args("2"));
    assert!(out.status.success(), "{}", text(&out));
    let before = Checkpoint::open(&runs).unwrap();
    assert_eq!(before.meta.iteration, 2);
    let largest = std::fs::read_dir(&before.dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    // Half the largest checkpoint file: metrics.jsonl and rng.json still fit, the weights do not.
    let limit_kib = largest / 2048;
    assert!(
        limit_kib >= 8,
        "checkpoint files too small for this test: {largest} bytes"
    );
    let script = format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" \"$@\"",);
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(bin())
        .args(args("3"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the save should have failed: {}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("saving the checkpoint at iteration 3 failed")
            && err.contains("the previous checkpoint and `latest` are untouched"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // `latest` still names the previous checkpoint, which verifies; nothing half-written is left.
    let after = Checkpoint::open(&runs).unwrap();
    assert_eq!(after.dir, before.dir);
    after.verify().unwrap();
    let names = brs_testkit::file_names(&runs);
    assert!(
        names
            .iter()
            .all(|n| !n.contains("0000003") && !n.contains(".tmp-")),
        "{names:?}"
    );
    // And the run goes on from it once there is room again.
    let out = run(&args("3"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(Checkpoint::open(&runs).unwrap().meta.iteration, 3);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth_dataset(&data, 2, 1, 96, 4);
    let cfg = config(dir.path(), "c.toml", &format!("{TINY}iteration = 2\n"));
    let runs = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--config", s(&cfg), "--out", s(&runs)];
        args.extend_from_slice(extra);
        run(&args)
    };
    let nowhere = dir.path().join("nowhere");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--data", s(&data), "--set", "batch_size=0"],
            "batch_size = 0 (allowed: 1..=1024)",
        ),
        (
            vec!["--data", s(&data), "--set", "img_size=64"],
            "img_size = 64",
        ),
        (
            vec!["--data", s(&data), "--set", "iterashun=3"],
            "iterashun",
        ),
        (vec!["--data", s(&data), "--device", "tpu"], "tpu"),
        (vec!["--data", s(&nowhere)], "trainA"),
    ];
    for (extra, expect) in cases {
        let out = train(&extra);
        assert!(!out.status.success(), "{extra:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // An empty domain folder names the folder.
    std::fs::remove_dir_all(data.join("trainB")).unwrap();
    std::fs::create_dir_all(data.join("trainB")).unwrap();
    let out = train(&["--data", s(&data)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("trainB") && err.contains("no usable images"),
        "{err}"
    );
    // A missing config file and a checkpoint that is not one.
    let out = run(&[
        "train",
        "--config",
        s(&dir.path().join("none.toml")),
        "--data",
        s(&data),
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("none.toml"));
    let out = run(&["export", "--checkpoint", s(&data), "--output", s(&runs)]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a checkpoint"),
        "{}",
        text(&out)
    );
}

#[test]
fn import_pytorch_converts_an_official_checkpoint_that_training_resumes_from() {
    let dir = tempfile::tempdir().unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../brs-model/tests/make_reference_pt.py");
    let python = std::env::var("BRS_PYTHON").expect("BRS_PYTHON (set by .cargo/config.toml)");
    let status = Command::new(python)
        .arg(&script)
        .arg(dir.path())
        .args(["96", "4", "1", "1", "3"])
        .status()
        .unwrap();
    assert!(status.success(), "make_reference_pt.py failed");
    let pt = dir.path().join("selfie2anime_params_0001000.pt");
    let runs = dir.path().join("run");
    let out = run(&[
        "import-pytorch",
        "--input",
        s(&pt),
        "--output",
        s(&runs),
        "--img-size",
        "96",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("img_size 96 ch 4 n_res 1 light true"),
        "{stdout}"
    );
    let ckpt = Checkpoint::open(&runs).unwrap();
    assert_eq!(ckpt.meta.iteration, 1000);

    // Training continues from the imported weights (Adam starts afresh: the reference saves none).
    let data = dir.path().join("data");
    synth_dataset(&data, 2, 1, 96, 6);
    let cfg = config(dir.path(), "c.toml", &format!("{TINY}iteration = 2000\n"));
    let out = train(&cfg, &data, &runs, &["--resume", "--stop-at", "1001"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no optimizer state") && err.contains("at iteration 1000"),
        "{err}"
    );
    assert_eq!(Checkpoint::open(&runs).unwrap().meta.iteration, 1001);

    let out = run(&[
        "import-pytorch",
        "--input",
        s(&dir.path().join("missing.pt")),
        "--output",
        s(&runs),
    ]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("missing.pt"),
        "{}",
        text(&out)
    );
}

/// `brs-train evaluate | head -1` closes stdout before the second line: the command must end
/// quietly (exit 0, nothing on stderr) rather than panic in `println!`.
#[test]
fn a_reader_that_closes_stdout_early_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", "light = true\n");
    let out = brs_testkit::output_into_closed_pipe(Command::new(bin()).args([
        "summary",
        "--config",
        s(&cfg),
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
}
