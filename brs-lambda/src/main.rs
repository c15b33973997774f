//! brs-lambda: brs-serve's router served through `lambda_http`, weights read from an EFS access point.
//!
//! Configuration, read once at init: `BRS_LAMBDA_CONFIG` names a brs-serve TOML file; `BRS_MODEL_DIR`
//! (default `/mnt/brs/models`, the access point's mount in terraform/lambda.tf) is served as the style
//! `default` when no file is given or the file names no styles; `BRS_RESULTS_DIR` (default
//! `/mnt/brs/results`) overrides the results directory. Models are loaded and warmed up during init, so
//! a cold start pays for them once and every invocation after finds them ready.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use brs_serve::{AppState, Cli, Config};

/// Where terraform mounts the EFS access point and what it holds.
const DEFAULT_MODEL_DIR: &str = "/mnt/brs/models";
const DEFAULT_RESULTS_DIR: &str = "/mnt/brs/results";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // CloudWatch stamps every line and shows no colours.
        .without_time()
        .with_ansi(false)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brs-lambda: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let config = config_from(|key| std::env::var(key).ok())?;
    if config.aws.is_some() {
        tracing::info!("[aws] section ignored: Lambda has no Auto Scaling lifecycle");
    }
    // Blocking model load and warm-up, before the runtime exists (AppState::build's contract).
    let state = AppState::build(config).context("loading the models")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        wait_ready(&state, WARM_UP_LIMIT).await;
        lambda_http::run(brs_serve::app(state)).await
    })
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

/// Longest wait for warm-up during init. Past it invocations are taken anyway and answered 503 with
/// Retry-After until the models are ready, which beats an init that never ends.
const WARM_UP_LIMIT: Duration = Duration::from_secs(120);

/// Holds init until every style is warmed up: Lambda sends the first request as soon as init ends,
/// and a cold start should cost latency, not a failed request.
async fn wait_ready(state: &AppState, limit: Duration) {
    let start = Instant::now();
    while !state.is_ready() {
        if start.elapsed() >= limit {
            tracing::warn!(?limit, "models not warmed up in time; serving anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(elapsed = ?start.elapsed(), "models ready");
}

/// The server config from the environment, looked up through `env` so tests need not set variables.
fn config_from(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
    let file = env("BRS_LAMBDA_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let model_dir = env("BRS_MODEL_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let results_dir = env("BRS_RESULTS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let file_has_styles = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("BRS_LAMBDA_CONFIG {}", path.display()))?;
            !Config::from_toml(&text, path)?.styles.is_empty()
        }
        None => false,
    };
    let cli = Cli {
        config: file,
        // A file's own styles win over the default mount; an explicit BRS_MODEL_DIR adds `default`.
        model_dir: model_dir.or_else(|| (!file_has_styles).then(|| DEFAULT_MODEL_DIR.into())),
        results_dir: results_dir.or_else(|| Some(DEFAULT_RESULTS_DIR.into())),
        ..Cli::default()
    };
    Ok(Config::from_cli(&cli)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_the_efs_mount() {
        let cfg = config_from(env(&[])).expect("config");
        assert_eq!(cfg.styles["default"].path, PathBuf::from("/mnt/brs/models"));
        assert_eq!(cfg.results_dir, Some(PathBuf::from("/mnt/brs/results")));
    }

    #[test]
    fn environment_overrides_the_mount() {
        let cfg = config_from(env(&[
            ("BRS_MODEL_DIR", "/mnt/other/m".into()),
            ("BRS_RESULTS_DIR", "/tmp/r".into()),
        ]))
        .expect("config");
        assert_eq!(cfg.styles["default"].path, PathBuf::from("/mnt/other/m"));
        assert_eq!(cfg.results_dir, Some(PathBuf::from("/tmp/r")));
    }

    #[test]
    fn a_config_file_keeps_its_styles_and_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serve.toml");
        std::fs::write(
            &path,
            "max_batch = 2\ndefault_style = \"male\"\n[styles.male]\npath = \"/mnt/brs/male\"\n\
             [styles.female]\npath = \"/mnt/brs/female\"\n",
        )
        .expect("write");
        let cfg =
            config_from(env(&[("BRS_LAMBDA_CONFIG", path.display().to_string())])).expect("config");
        assert_eq!(cfg.styles.keys().collect::<Vec<_>>(), ["female", "male"]);
        assert_eq!(cfg.max_batch, 2);
        assert_eq!(cfg.default_style.as_deref(), Some("male"));

        let missing = config_from(env(&[(
            "BRS_LAMBDA_CONFIG",
            "/nonexistent/serve.toml".into(),
        )]));
        let err = format!("{:#}", missing.expect_err("missing file"));
        assert!(err.contains("BRS_LAMBDA_CONFIG"), "{err}");
    }
}
