//! A local stand-in of the Lambda runtime API, function-URL events, and the brs-lambda process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

pub(crate) const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:brs-api";

/// How the function answered one invocation.
#[derive(Debug)]
pub(crate) enum Outcome {
    Response(Value),
    Error(Value),
}

struct Shared {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_errors: Mutex<Vec<String>>,
    unknown_ids: AtomicUsize,
}

/// The runtime API on loopback: `next` hands out queued events with the Lambda headers (blocking while
/// none is queued, as the real one does), `response` and `error` answer the matching invocation.
pub(crate) struct RuntimeApi {
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<(String, Value)>,
    shared: Arc<Shared>,
    next_id: AtomicUsize,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub(crate) async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(rx),
            waiting: Mutex::new(HashMap::new()),
            init_errors: Mutex::new(Vec::new()),
            unknown_ids: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("runtime api stand-in");
        });
        Self {
            addr,
            tx,
            shared,
            next_id: AtomicUsize::new(0),
            task,
        }
    }

    /// `host:port`, the form `AWS_LAMBDA_RUNTIME_API` takes.
    pub(crate) fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `event` and waits for the function's answer.
    pub(crate) async fn invoke(&self, event: Value, timeout: Duration) -> Outcome {
        let id = format!("req-{}", self.next_id.fetch_add(1, Ordering::SeqCst) + 1);
        let (done, answered) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .expect("lock")
            .insert(id.clone(), done);
        self.tx.send((id.clone(), event)).expect("queue event");
        let errors = self.shared.init_errors.lock().expect("lock").clone();
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(outcome)) => outcome,
            _ => panic!(
                "no answer to invocation {id} within {timeout:?}; init errors so far: {errors:?}"
            ),
        }
    }

    pub(crate) fn unknown_ids(&self) -> usize {
        self.shared.unknown_ids.load(Ordering::SeqCst)
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    let Some((id, event)) = s.events.lock().await.recv().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    (
        [
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", (now_ms + 60_000).to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                FUNCTION_ARN.to_owned(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
            ),
            ("content-type", "application/json".to_owned()),
        ],
        event.to_string(),
    )
        .into_response()
}

fn answer(s: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match s.waiting.lock().expect("lock").remove(id) {
        Some(done) => {
            let _ = done.send(outcome);
            StatusCode::ACCEPTED
        }
        None => {
            s.unknown_ids.fetch_add(1, Ordering::SeqCst);
            StatusCode::BAD_REQUEST
        }
    }
}

async fn response(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    match serde_json::from_slice(&body) {
        Ok(v) => answer(&s, &id, Outcome::Response(v)),
        Err(e) => answer(
            &s,
            &id,
            Outcome::Error(json!({"stand-in": format!("response is not JSON: {e}")})),
        ),
    }
}

async fn error(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
    answer(&s, &id, Outcome::Error(v))
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    s.init_errors
        .lock()
        .expect("lock")
        .push(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// A function URL (API Gateway HTTP API v2) event.
pub(crate) fn url_event(
    method: &str,
    path: &str,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Value {
    let mut headers =
        json!({"host": "abcdef.lambda-url.eu-west-1.on.aws", "user-agent": "brs-lambda-test"});
    if let Some(ct) = content_type {
        headers["content-type"] = json!(ct);
    }
    let params: serde_json::Map<String, Value> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdef",
            "domainName": "abcdef.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "abcdef",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "brs-lambda-test"},
            "requestId": "test-request",
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:14:00:00 +0000",
            "timeEpoch": 1_795_442_400_000_u64
        },
        "isBase64Encoded": !body.is_empty()
    });
    if !params.is_empty() {
        event["queryStringParameters"] = Value::Object(params);
    }
    if !body.is_empty() {
        event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
    }
    event
}

/// The response body bytes of a function URL answer (base64 or text).
pub(crate) fn body_bytes(resp: &Value) -> Vec<u8> {
    let body = resp["body"].as_str().unwrap_or_default();
    if resp["isBase64Encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64 body")
    } else {
        body.as_bytes().to_vec()
    }
}

/// Header lookup in a function URL answer (names are lower-case there).
pub(crate) fn header<'a>(resp: &'a Value, name: &str) -> Option<&'a str> {
    resp["headers"][name].as_str()
}

/// Starts the real brs-lambda binary against `api`, serving the model in `model_dir`.
pub(crate) fn spawn_function(
    api: &RuntimeApi,
    model_dir: &Path,
    results_dir: &Path,
    log: &Path,
) -> tokio::process::Child {
    spawn_function_at(
        Path::new(env!("CARGO_BIN_EXE_brs-lambda")),
        api,
        model_dir,
        results_dir,
        log,
        &[],
    )
}

/// Starts the brs-lambda executable `exe` (this build's, or a release bundle's) the same way, with an
/// environment holding nothing but the Lambda variables (and `extra`, what a function's
/// configuration would add): no LD_LIBRARY_PATH, no venv.
pub(crate) fn spawn_function_at(
    exe: &Path,
    api: &RuntimeApi,
    model_dir: &Path,
    results_dir: &Path,
    log: &Path,
    extra: &[(&str, String)],
) -> tokio::process::Child {
    let log = std::fs::File::create(log).expect("log file");
    tokio::process::Command::new(exe)
        .env_clear()
        .envs(extra.iter().map(|(k, v)| (k, v)))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api.host_port())
        .env("AWS_LAMBDA_FUNCTION_NAME", "brs-api")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("BRS_MODEL_DIR", model_dir)
        .env("BRS_RESULTS_DIR", results_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start brs-lambda")
}
