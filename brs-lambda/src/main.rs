//! brs-lambda: brs-serve as an AWS Lambda function, weights read from an EFS access point.
//!
//! Two modes (`BRS_LAMBDA_MODE`): `http` (the default) serves brs-serve's router through
//! `lambda_http` (function URL or API Gateway); `sqs` takes the job queue's messages from an SQS
//! event source mapping and reports the images that must be retried as `batchItemFailures`
//! (the mapping's `ReportBatchItemFailures`), so one bad image does not redeliver its neighbours.
//!
//! Configuration, read once at init: `BRS_LAMBDA_CONFIG` names a brs-serve TOML file; `BRS_MODEL_DIR`
//! (default `/mnt/brs/models`, the access point's mount in terraform/lambda.tf) is served as the style
//! `default` when no file is given or the file names no styles; `BRS_RESULTS_DIR` (default
//! `/mnt/brs/results`) is the `fs` store's directory. `BRS_STORE_S3_BUCKET` (and
//! `BRS_STORE_S3_PREFIX`) select the S3 store, `BRS_QUEUE_SQS_URL` (and `BRS_QUEUE_MAX_RECEIVES`)
//! the SQS queue; `BRS_SECRET_ARN` names the result secret in Secrets Manager, read once at init
//! (`BRS_SECRET`, the secret itself, is for local runs); `BRS_ENGINE` sets the key `engine` (`auto`,
//! `torch` or `onnx`). Models are loaded and warmed up during init (with `auto`, the timing of both
//! engines too), so a cold start pays for them once and every invocation after finds them ready.
//! `onnx_lanes` is `off` unless the file sets it: an instance takes one request at a time.
// The runtime future around axum's router and the tower stack is deeper than the default
// limit lets clippy lay out.
#![recursion_limit = "256"]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use brs_serve::{AppState, Cli, Config, Outcome, Role};
use lambda_http::request::RequestContext;
use lambda_http::{LambdaEvent, RequestExt, service_fn};
use serde::{Deserialize, Serialize};

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

/// What the function is invoked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Http,
    Sqs,
}

fn mode_from(env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Mode> {
    match env("BRS_LAMBDA_MODE").as_deref() {
        None | Some("") | Some("http") => Ok(Mode::Http),
        Some("sqs") => Ok(Mode::Sqs),
        Some(other) => anyhow::bail!("BRS_LAMBDA_MODE={other:?}: expected http or sqs"),
    }
}

fn run() -> anyhow::Result<()> {
    let env = |key: &str| std::env::var(key).ok();
    let mode = mode_from(&env)?;
    let config = config_from(env)?;
    if config.aws.is_some() {
        tracing::info!("[aws] section ignored: Lambda has no Auto Scaling lifecycle");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let state = AppState::start(config, Role::Lambda)
            .await
            .context("loading the models")?;
        wait_ready(&state, WARM_UP_LIMIT).await;
        match mode {
            Mode::Http => {
                let app = tower::ServiceBuilder::new()
                    .map_request(with_peer)
                    .service(brs_serve::app(state));
                lambda_http::run(app).await
            }
            Mode::Sqs => {
                lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
                    let state = state.clone();
                    async move { Ok::<_, lambda_http::Error>(handle_batch(&state, event.payload).await) }
                }))
                .await
            }
        }
        .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
    })
}

/// Gives the request the caller's address as Lambda's front door saw it (a function URL's or API
/// Gateway's `sourceIp`), where brs-serve looks for a socket's peer: without it every caller is
/// one client (one rate-limit bucket, one deduplication tenant). brs-serve's trusted-proxy rules
/// then apply as behind any socket: `X-Forwarded-For` counts only when this address is a trusted
/// proxy. An ALB or VPC Lattice event carries no caller address; it stays unknown (loopback).
fn with_peer(mut req: lambda_http::Request) -> lambda_http::Request {
    if let Some(ip) = req.request_context_ref().and_then(source_ip) {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::new(ip, 0)));
    }
    req
}

fn source_ip(ctx: &RequestContext) -> Option<IpAddr> {
    let ip = match ctx {
        RequestContext::ApiGatewayV2(c) => c.http.source_ip.as_deref(),
        RequestContext::ApiGatewayV1(c) => c.identity.source_ip.as_deref(),
        _ => None,
    }?;
    ip.parse().ok()
}

/// An SQS event source mapping's batch (the fields brs reads).
#[derive(Debug, Deserialize)]
struct SqsEvent {
    #[serde(rename = "Records", default)]
    records: Vec<SqsRecord>,
}

#[derive(Debug, Deserialize)]
struct SqsRecord {
    #[serde(rename = "messageId")]
    message_id: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    attributes: SqsAttributes,
}

#[derive(Debug, Default, Deserialize)]
struct SqsAttributes {
    #[serde(rename = "ApproximateReceiveCount", default)]
    receive_count: Option<String>,
}

/// The partial-batch response: the messages to redeliver.
#[derive(Debug, Serialize, PartialEq)]
struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    failures: Vec<ItemFailure>,
}

#[derive(Debug, Serialize, PartialEq)]
struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    id: String,
}

/// Processes every record; those to try again (and those given up on, which the redrive policy
/// then dead-letters) are reported as failures, the rest are deleted by Lambda.
async fn handle_batch(state: &AppState, event: SqsEvent) -> BatchResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let count = record
            .attributes
            .receive_count
            .as_deref()
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let outcome = state.process_message(&record.body, count).await;
        let redeliver = match outcome {
            Ok(Outcome::Done | Outcome::Failed) => false,
            Ok(Outcome::Retry | Outcome::GaveUp) => true,
            // Not a brs message: nothing will ever process it; let the redrive policy take it.
            Err(e) => {
                tracing::warn!(message = %record.message_id, error = %e, "unprocessable message");
                true
            }
        };
        if redeliver {
            failures.push(ItemFailure {
                id: record.message_id,
            });
        }
    }
    BatchResponse { failures }
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
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let file = var("BRS_LAMBDA_CONFIG").map(PathBuf::from);
    let model_dir = var("BRS_MODEL_DIR").map(PathBuf::from);
    let (file_has_styles, file_sets_lanes) = match &file {
        Some(path) => {
            // Only which keys it sets: the file is read and checked as a config below, by `Cli`.
            let table = std::fs::read_to_string(path)
                .map_err(anyhow::Error::from)
                .and_then(|text| Ok(text.parse::<toml::Table>()?))
                .with_context(|| format!("BRS_LAMBDA_CONFIG {}", path.display()))?;
            let has_styles = table
                .get("styles")
                .and_then(toml::Value::as_table)
                .is_some_and(|styles| !styles.is_empty());
            (has_styles, table.contains_key("onnx_lanes"))
        }
        None => (false, false),
    };
    let quoted = |v: String| toml::Value::String(v).to_string();
    let mut set = Vec::new();
    match var("BRS_STORE_S3_BUCKET") {
        Some(bucket) => {
            set.push("store.kind=s3".to_string());
            set.push(format!("store.bucket={}", quoted(bucket)));
            if let Some(prefix) = var("BRS_STORE_S3_PREFIX") {
                set.push(format!("store.prefix={}", quoted(prefix)));
            }
        }
        None => {
            let dir = var("BRS_RESULTS_DIR").unwrap_or_else(|| DEFAULT_RESULTS_DIR.into());
            set.push(format!("store.path={}", quoted(dir)));
        }
    }
    if let Some(engine) = var("BRS_ENGINE") {
        set.push(format!("engine={}", quoted(engine)));
    }
    // An instance takes one request at a time, so no image waits beside another: ONNX Runtime's
    // lanes would only add their timing to every cold start. A config file may still ask.
    if !file_sets_lanes {
        set.push("onnx_lanes=\"off\"".to_string());
    }
    if let Some(arn) = var("BRS_SECRET_ARN") {
        set.push(format!("secret_arn={}", quoted(arn)));
    }
    if let Some(url) = var("BRS_QUEUE_SQS_URL") {
        set.push("queue.kind=sqs".to_string());
        set.push(format!("queue.url={}", quoted(url)));
        if let Some(n) = var("BRS_QUEUE_MAX_RECEIVES") {
            set.push(format!("queue.max_receives={n}"));
        }
    }
    let cli = Cli {
        config: file,
        // A file's own styles win over the default mount; an explicit BRS_MODEL_DIR adds `default`.
        model_dir: model_dir.or_else(|| (!file_has_styles).then(|| DEFAULT_MODEL_DIR.into())),
        bind: None,
        set,
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
        assert_eq!(cfg.store.path, Some(PathBuf::from("/mnt/brs/results")));
        assert_eq!(mode_from(&env(&[])).expect("mode"), Mode::Http);
        assert!(mode_from(&env(&[("BRS_LAMBDA_MODE", "smtp".into())])).is_err());
    }

    #[test]
    fn environment_overrides_the_mount_and_picks_s3_and_sqs() {
        let cfg = config_from(env(&[
            ("BRS_MODEL_DIR", "/mnt/other/m".into()),
            ("BRS_RESULTS_DIR", "/tmp/r".into()),
        ]))
        .expect("config");
        assert_eq!(cfg.styles["default"].path, PathBuf::from("/mnt/other/m"));
        assert_eq!(cfg.store.path, Some(PathBuf::from("/tmp/r")));
        let cfg = config_from(env(&[
            ("BRS_STORE_S3_BUCKET", "brs-results".into()),
            ("BRS_STORE_S3_PREFIX", "prod/".into()),
            (
                "BRS_QUEUE_SQS_URL",
                "https://sqs.eu-west-1.amazonaws.com/1/brs".into(),
            ),
            ("BRS_QUEUE_MAX_RECEIVES", "4".into()),
            (
                "BRS_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:brs-AbCdEf".into(),
            ),
        ]))
        .expect("config");
        assert_eq!(
            cfg.secret_arn.as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:1:secret:brs-AbCdEf")
        );
        assert_eq!(cfg.store.kind, brs_serve::config::StoreKind::S3);
        assert_eq!(
            (cfg.store.bucket.as_deref(), cfg.store.prefix.as_str()),
            (Some("brs-results"), "prod/")
        );
        assert_eq!(cfg.queue.kind, brs_serve::config::QueueKind::Sqs);
        assert_eq!(cfg.queue.max_receives, 4);
    }

    #[test]
    fn the_engine_comes_from_the_environment_and_a_bad_one_is_refused() {
        let cfg = config_from(env(&[])).expect("config");
        assert_eq!(cfg.engine.to_string(), "auto");
        assert_eq!(
            format!("{:?}", cfg.onnx_lanes),
            "Off",
            "one request at a time"
        );
        let cfg = config_from(env(&[("BRS_ENGINE", "onnx".into())])).expect("config");
        assert_eq!(cfg.engine.to_string(), "onnx");
        let err = config_from(env(&[("BRS_ENGINE", "fastest".into())])).expect_err("bad engine");
        let err = format!("{err:#}");
        assert!(err.contains("fastest") && err.contains("onnx"), "{err}");
    }

    #[test]
    fn a_config_file_keeps_its_styles_and_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serve.toml");
        std::fs::write(
            &path,
            "max_batch = 2\nonnx_lanes = \"always\"\ndefault_style = \"male\"\n\
             [styles.male]\npath = \"/mnt/brs/male\"\n\
             [styles.female]\npath = \"/mnt/brs/female\"\n",
        )
        .expect("write");
        let cfg =
            config_from(env(&[("BRS_LAMBDA_CONFIG", path.display().to_string())])).expect("config");
        assert_eq!(cfg.styles.keys().collect::<Vec<_>>(), ["female", "male"]);
        assert_eq!(cfg.max_batch, 2);
        assert_eq!(format!("{:?}", cfg.onnx_lanes), "Always");
        assert_eq!(cfg.default_style.as_deref(), Some("male"));

        let missing = config_from(env(&[(
            "BRS_LAMBDA_CONFIG",
            "/nonexistent/serve.toml".into(),
        )]));
        let err = format!("{:#}", missing.expect_err("missing file"));
        assert!(err.contains("BRS_LAMBDA_CONFIG"), "{err}");
    }

    #[test]
    fn batch_records_parse_like_the_runtime_sends_them() {
        let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
            {"messageId": "m1", "body": "{\"job\":\"x\",\"index\":0}", "attributes": {"ApproximateReceiveCount": "3"}, "eventSource": "aws:sqs"}
        ]}))
        .expect("event");
        assert_eq!(
            event.records[0].attributes.receive_count.as_deref(),
            Some("3")
        );
        let r = serde_json::to_value(BatchResponse {
            failures: vec![ItemFailure { id: "m1".into() }],
        })
        .expect("json");
        assert_eq!(
            r,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m1"}]})
        );
    }
}
