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

/// `secret_arn`: the result secret is read from Secrets Manager at start (moto here, reached
/// through the SDK's standard `AWS_ENDPOINT_URL`), and a secret that is missing or too short
/// stops the start naming it.
#[tokio::test]
async fn the_result_secret_comes_from_secrets_manager() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let moto = brs_testkit::moto::Moto::start();
    let conf = aws_sdk_secretsmanager::config::Builder::new()
        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
        .region(aws_sdk_secretsmanager::config::Region::new(
            brs_testkit::moto::REGION,
        ))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            brs_testkit::moto::ACCESS_KEY,
            brs_testkit::moto::SECRET_KEY,
            None,
            None,
            "moto",
        ))
        .endpoint_url(moto.endpoint())
        .build();
    let sm = aws_sdk_secretsmanager::Client::from_conf(conf);
    let mut arns = Vec::new();
    for (name, value) in [("good", "s".repeat(40)), ("short", "tiny".to_string())] {
        let out = sm
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("create secret");
        arns.push(out.arn().expect("arn").to_string());
    }
    let dir = brs_testkit::tempdir("brs-serve-secret-");
    let start = |arn: &str| {
        Command::new(env!("CARGO_BIN_EXE_brs-serve"))
            .args([
                "--model-dir",
                dir.path().join("no-run-yet").to_str().expect("utf8"),
            ])
            .args(["--set", &format!("secret_arn={arn:?}")])
            .args([
                "--set",
                &format!("store.path={:?}", dir.path().join("results")),
            ])
            .args(["--bind", &format!("127.0.0.1:{}", brs_testkit::free_port())])
            .envs(moto.env())
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn brs-serve")
    };
    let missing = format!("{}-nope", arns[0]);
    for (arn, want) in [
        (arns[1].as_str(), "holds 4 bytes"),
        (missing.as_str(), "secret_arn"),
    ] {
        let out = start(arn).wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{arn}: {err}");
        assert!(err.contains(want), "{arn}: {err}");
    }
    let mut good = start(&arns[0]);
    let stderr = good.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let t = Instant::now();
    let mut seen = Vec::new();
    let loaded = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("result secret loaded") => break Some(line),
            Ok(line) => seen.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if t.elapsed() > Duration::from_secs(30) {
            break None;
        }
    };
    let _ = good.kill();
    let _ = good.wait();
    let line = loaded.unwrap_or_else(|| panic!("no secret loaded: {seen:#?}"));
    assert!(line.contains("Secrets Manager"), "{line}");
}

/// The access log names the matched route, never the path a client sent: job ids and result names
/// are capabilities, and more people read logs than hold results.
#[test]
fn the_access_log_names_routes_not_capabilities() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = brs_testkit::tempdir("brs-serve-log-");
    let port = brs_testkit::free_port();
    // A style with no model yet: the server starts and answers without one.
    let mut child = Command::new(env!("CARGO_BIN_EXE_brs-serve"))
        .args([
            "--model-dir",
            dir.path().join("no-run-yet").to_str().expect("utf8"),
        ])
        .args([
            "--set",
            &format!("store.path={:?}", dir.path().join("results")),
        ])
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn brs-serve");
    let job = "2026120700aaaabbbbccccddddeeeeffff00001111";
    let result = "2026120700ffffeeeeddddccccbbbbaaaa99998888-3.png";
    let get = |path: &str| -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let t = Instant::now();
    while get("/healthz").is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "brs-serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for path in [format!("/v1/jobs/{job}"), format!("/v1/results/{result}")] {
        let answer = get(&path).expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
    // The answers are logged before they are sent; give the writer a moment, then stop.
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("route=/v1/jobs/{id}"), "{log}");
    assert!(log.contains("route=/v1/results/{name}"), "{log}");
    assert!(!log.contains(job) && !log.contains(result), "{log}");
}
