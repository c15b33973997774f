use super::*;
use clap::Parser;

#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    cli: Cli,
}

fn cli(args: &[&str]) -> Cli {
    let mut all = vec!["brs-serve"];
    all.extend_from_slice(args);
    Flags::parse_from(all).cli
}

#[test]
fn toml_with_styles_sections_and_aws_parses() {
    let text = r#"
        bind = "0.0.0.0:9000"
        max_batch = 8
        precision = "bf16"
        device = "cpu"
        request_timeout = "10s"
        results_max_age = "2days"
        default_style = "female"
        trusted_proxies = ["10.0.0.0/16"]
        [styles.male]
        path = "/efs/male"
        [styles.female]
        path = "/efs/female"
        direction = "b2a"
        [crop]
        margin_top = 1.0
        pad = { mode = "color", rgb = [255, 255, 255] }
        [clients]
        images_per_sec = 1.5
        [store]
        kind = "fs"
        path = "/efs/results"
        [queue]
        kind = "local"
        max_receives = 4
        visibility_timeout = "2m"
        [aws]
        region = "eu-west-1"
        asg_name = "brs"
        lifecycle_hook = "drain"
        drain_timeout_secs = 300
    "#;
    let cfg = Config::from_toml(text, Path::new("x.toml")).expect("parses");
    assert_eq!(cfg.max_batch, 8);
    assert_eq!(cfg.precision, Precision::Bf16);
    assert_eq!(cfg.request_timeout, Duration::from_secs(10));
    assert_eq!(cfg.results_max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(cfg.crop.margin_top, 1.0);
    assert_eq!(cfg.crop.margin_side, CropConfig::default().margin_side);
    assert_eq!(cfg.styles["female"].direction, Direction::B2A);
    assert_eq!(cfg.styles["male"].direction, Direction::A2B);
    assert_eq!(cfg.default_style_name(), "female");
    assert_eq!(cfg.clients.images_per_sec, 1.5);
    assert_eq!(cfg.store.fs_path(), Some(PathBuf::from("/efs/results")));
    assert_eq!(
        (cfg.queue.kind, cfg.queue.max_receives),
        (QueueKind::Local, 4)
    );
    assert_eq!(cfg.queue.visibility_timeout, Duration::from_secs(120));
    assert_eq!(cfg.trusted_proxies.len(), 1);
    #[cfg(feature = "aws")]
    {
        assert_eq!(cfg.aws.as_ref().map(|a| a.drain_timeout_secs), Some(300));
        cfg.validate().expect("valid");
    }
    // A build without the lifecycle watcher must not silently ignore the section.
    #[cfg(not(feature = "aws"))]
    {
        let err = cfg
            .validate()
            .expect_err("no aws in this build")
            .to_string();
        assert!(err.contains("aws") && err.contains("feature"), "{err}");
    }
}

#[cfg(feature = "aws")]
#[test]
fn s3_store_and_sqs_queue_parse_with_defaults() {
    let text = r#"
        [styles.a]
        path = "/efs/a"
        [store]
        kind = "s3"
        bucket = "brs-results"
        region = "eu-west-1"
        [queue]
        kind = "sqs"
        url = "https://sqs.eu-west-1.amazonaws.com/1/brs"
        max_receives = 7
    "#;
    let cfg = Config::from_toml(text, Path::new("x.toml")).expect("parses");
    cfg.validate().expect("valid");
    let (s, q) = (cfg.store.s3().expect("s3"), cfg.queue.sqs().expect("sqs"));
    assert_eq!(s.bucket, "brs-results");
    assert_eq!((q.max_receives, q.batch_size), (7, 4));
    assert_eq!(q.wait_time, Duration::from_secs(20));
    // A key of the other kind is a mistake worth naming.
    let mixed = text.replace("region = \"eu-west-1\"", "path = \"/x\"");
    let err = Config::from_toml(&mixed, Path::new("x.toml"))
        .expect("parses")
        .validate()
        .expect_err("path with s3");
    assert!(err.to_string().contains("store.path"), "{err}");
    let bad = text.replace("max_receives = 7", "batch_size = 11");
    let err = Config::from_toml(&bad, Path::new("x.toml"))
        .expect("parses")
        .validate()
        .expect_err("batch too big");
    assert!(err.to_string().contains("batch_size"), "{err}");
}

#[test]
fn unknown_keys_are_refused() {
    let err = Config::from_toml("max_bath = 3\n[styles.a]\npath='x'", Path::new("c.toml"))
        .expect_err("typo must fail");
    assert!(err.to_string().contains("max_bath"), "{err}");
    let err = Config::from_toml("[store]\nkind = 'fs'\npaht = 'x'", Path::new("c.toml"))
        .expect_err("typo in a section must fail");
    assert!(err.to_string().contains("paht"), "{err}");
    // Durations take units: a bare number is refused with the key named.
    let err = Config::from_toml("request_timeout = 30", Path::new("c.toml"))
        .expect_err("unit-less duration");
    assert!(err.to_string().contains("request_timeout"), "{err}");
}

#[test]
fn set_overrides_the_file_and_reaches_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "max_batch = 8\nqueue_depth = 3\n[styles.a]\npath = 'x'\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf8");
    let cfg = Config::from_cli(&cli(&[
        "--config",
        path,
        "--set",
        "max_batch=2",
        "--set",
        "precision=f32",
        "--set",
        "max_side=4096",
        "--set",
        "request_timeout=5s",
        "--set",
        "clients.max_concurrent=9",
        "--set",
        "store.path=/tmp/r",
    ]))
    .expect("config");
    assert_eq!(cfg.max_batch, 2);
    assert_eq!(cfg.precision, Precision::F32);
    assert_eq!(cfg.max_side, 4096);
    assert_eq!(cfg.request_timeout, Duration::from_secs(5));
    assert_eq!(cfg.clients.max_concurrent, 9);
    assert_eq!(cfg.queue_depth, 3);
    assert_eq!(cfg.store.fs_path(), Some(PathBuf::from("/tmp/r")));
    assert_eq!(cfg.default_style_name(), "a");
    let err = Config::from_cli(&cli(&["--model-dir", "x", "--set", "nonsense"])).expect_err("no =");
    assert!(err.to_string().contains("KEY=VALUE"), "{err}");
}

#[test]
fn invalid_values_name_the_key() {
    let err =
        Config::from_cli(&cli(&["--model-dir", "x", "--set", "max_batch=0"])).expect_err("invalid");
    assert!(err.to_string().contains("max_batch"), "{err}");
    let bad_crop = "[styles.a]\npath = 'x'\n[crop]\nmargin_side = 99.0\n";
    let err = Config::from_toml(bad_crop, Path::new("c.toml"))
        .expect("parses")
        .validate()
        .expect_err("out of range");
    assert!(err.to_string().contains("crop.margin_side"), "{err}");
    let err = Config::from_cli(&cli(&[])).expect_err("no styles");
    assert!(err.to_string().contains("no styles"), "{err}");
    let err = Config::from_cli(&cli(&["--model-dir", "x", "--set", "auth.keys=['abc']"]))
        .expect_err("unhashed key");
    assert!(err.to_string().contains("sha256"), "{err}");
    let err = Config::from_cli(&cli(&["--model-dir", "x", "--set", "device=tpu"]))
        .expect_err("bad device");
    assert!(err.to_string().contains("tpu"), "{err}");
}

#[test]
fn the_engine_is_auto_unless_told_and_a_bad_one_is_named() {
    assert_eq!(Config::default().engine, brs_engine::EngineSpec::Auto);
    let cfg = Config::from_cli(&cli(&["--model-dir", "x", "--set", "engine=onnx"])).expect("onnx");
    assert_eq!(cfg.engine, brs_engine::EngineSpec::Onnx);
    let cfg = Config::from_toml(
        "engine = \"torch\"\n[styles.a]\npath = 'x'\n",
        Path::new("e.toml"),
    )
    .expect("torch");
    assert_eq!(cfg.engine, brs_engine::EngineSpec::Torch);
    let err = Config::from_cli(&cli(&["--model-dir", "x", "--set", "engine=tensorrt"]))
        .expect_err("no such engine");
    let msg = err.to_string();
    assert!(
        msg.contains("tensorrt") && msg.contains("auto") && msg.contains("onnx"),
        "{msg}"
    );
    // ONNX Runtime computes float32 on the CPU: asking it for bfloat16 or a GPU is refused by name.
    for (set, says) in [("precision=bf16", "float32"), ("device=cuda", "cuda:0")] {
        let err = Config::from_cli(&cli(&[
            "--model-dir",
            "x",
            "--set",
            "engine=onnx",
            "--set",
            set,
        ]))
        .expect_err(set);
        let msg = err.to_string();
        assert!(msg.contains("engine") && msg.contains(says), "{set}: {msg}");
    }
}

/// `onnx_lanes` takes a mode's name, and still the flag it first was (`true` is "timed").
#[test]
fn onnx_lanes_takes_a_mode_or_the_flag_it_was() {
    use brs_engine::OnnxLanes;
    assert_eq!(Config::default().onnx_lanes, OnnxLanes::Timed);
    for (set, mode) in [
        ("onnx_lanes=false", OnnxLanes::Off),
        ("onnx_lanes=true", OnnxLanes::Timed),
        ("onnx_lanes=off", OnnxLanes::Off),
        ("onnx_lanes=timed", OnnxLanes::Timed),
        ("onnx_lanes=\"always\"", OnnxLanes::Always),
    ] {
        let cfg = Config::from_cli(&cli(&["--model-dir", "x", "--set", set])).expect(set);
        assert_eq!(cfg.onnx_lanes, mode, "{set}");
    }
    let err = Config::from_cli(&cli(&["--model-dir", "x", "--set", "onnx_lanes=sometimes"]))
        .expect_err("no such mode");
    let msg = err.to_string();
    assert!(
        msg.contains("sometimes") && msg.contains("always") && msg.contains("timed"),
        "{msg}"
    );
}

/// docs/serving.md shows the defaults as `--print-config` prints them: one source of truth.
#[test]
fn the_documented_defaults_are_the_real_ones() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/serving.md"))
        .expect("docs/serving.md");
    let start = docs
        .find("<!-- defaults:begin -->")
        .expect("docs/serving.md has a defaults block");
    let end = docs.find("<!-- defaults:end -->").expect("end marker");
    let block = &docs[start..end];
    let body = block
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.rsplit_once("```"))
        .map(|(b, _)| b)
        .expect("a toml code block between the markers");
    assert_eq!(
        body,
        Config::defaults_toml(),
        "docs/serving.md's defaults differ from the code: paste the output of \
         `brs-serve --print-config` between the markers"
    );
}

/// `worker.ops_bind`: off unless set, shown by `--print-config` either way, an address or "off".
#[test]
fn the_worker_ops_port_is_off_by_default_and_named_when_wrong() {
    assert_eq!(Config::default().worker.ops_bind, Listen::Off);
    assert!(
        Config::defaults_toml().contains("[worker]\nops_bind = \"off\"\n"),
        "{}",
        Config::defaults_toml()
    );
    let cfg = Config::from_cli(&cli(&[
        "--model-dir",
        "x",
        "--set",
        "worker.ops_bind=0.0.0.0:9091",
    ]))
    .expect("an address");
    assert_eq!(
        cfg.worker.ops_bind.addr(),
        Some("0.0.0.0:9091".parse().expect("addr"))
    );
    assert!(cfg.to_toml().contains("ops_bind = \"0.0.0.0:9091\""));
    assert_eq!(
        Config::from_toml(&cfg.to_toml(), Path::new("x")).expect("round trip"),
        cfg
    );
    let off =
        Config::from_cli(&cli(&["--model-dir", "x", "--set", "worker.ops_bind=off"])).expect("off");
    assert_eq!(off.worker.ops_bind, Listen::Off);
    for bad in ["9091", "localhost:9091", "on", "0.0.0.0:0"] {
        let set = format!("worker.ops_bind={bad}");
        let err = Config::from_cli(&cli(&["--model-dir", "x", "--set", &set]))
            .expect_err(bad)
            .to_string();
        assert!(err.contains("worker.ops_bind"), "{bad}: {err}");
    }
}

#[test]
fn one_client_holds_half_the_decode_permits_unless_told() {
    let with = |decodes: usize, per_client: usize| Config {
        decode_concurrency: decodes,
        clients: ClientLimits {
            max_decodes: per_client,
            ..ClientLimits::default()
        },
        ..Config::default()
    };
    assert_eq!(with(1, 0).decodes_per_client(), 1, "at least one");
    assert_eq!(with(2, 0).decodes_per_client(), 1);
    assert_eq!(with(8, 0).decodes_per_client(), 4);
    assert_eq!(with(8, 6).decodes_per_client(), 6);
    let err = Config::from_cli(&cli(&[
        "--model-dir",
        "x",
        "--set",
        "clients.turn_quantum=0s",
    ]))
    .expect_err("a zero quantum")
    .to_string();
    assert!(err.contains("clients.turn_quantum"), "{err}");
}
