//! Local stand-ins of IMDSv2 and the Auto Scaling Query API, for tests on loopback (feature `testing`).
//!
//! Both are axum servers on `127.0.0.1:0` that check requests the way the real services do, record
//! what they were sent, and can be told to fail, so tests prove behaviour rather than just reachability.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Router};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(router: Router) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "stand-in server stopped");
        }
    });
    Ok((addr, task))
}

// ---------------------------------------------------------------------------------------------------
// IMDSv2

#[derive(Debug)]
struct ImdsShared {
    instance_id: String,
    lifecycle_state: Mutex<Option<String>>,
    available: AtomicBool,
    tokens: Mutex<Vec<(String, Instant)>>,
    token_requests: AtomicUsize,
    unauthorized: AtomicUsize,
    state_reads: AtomicUsize,
    credential_reads: AtomicUsize,
}

/// Role name and access key the IMDS stand-in hands out as instance-profile credentials.
pub const IMDS_ROLE: &str = "brs-serve-instance";
pub const IMDS_ACCESS_KEY: &str = "ASIAIMDSSTANDIN";

/// IMDSv2 stand-in: `PUT /latest/api/token` (TTL header required), then reads that require the token
/// header (401 without a valid one), serving `instance-id`, `autoscaling/target-lifecycle-state` and
/// instance-profile credentials (role [`IMDS_ROLE`], access key [`IMDS_ACCESS_KEY`]) for the SDK's
/// default credential chain.
#[derive(Debug)]
pub struct ImdsStandIn {
    addr: SocketAddr,
    shared: Arc<ImdsShared>,
    task: tokio::task::JoinHandle<()>,
}

impl ImdsStandIn {
    /// Starts with the lifecycle state `InService`.
    pub async fn start(instance_id: &str) -> std::io::Result<Self> {
        let shared = Arc::new(ImdsShared {
            instance_id: instance_id.to_owned(),
            lifecycle_state: Mutex::new(Some("InService".to_owned())),
            available: AtomicBool::new(true),
            tokens: Mutex::new(Vec::new()),
            token_requests: AtomicUsize::new(0),
            unauthorized: AtomicUsize::new(0),
            state_reads: AtomicUsize::new(0),
            credential_reads: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/latest/api/token", put(imds_token))
            .route("/latest/meta-data/instance-id", get(imds_instance_id))
            .route(
                "/latest/meta-data/autoscaling/target-lifecycle-state",
                get(imds_lifecycle_state),
            )
            .route(
                "/latest/meta-data/iam/security-credentials/",
                get(imds_role),
            )
            .route(
                "/latest/meta-data/iam/security-credentials/{role}",
                get(imds_credentials),
            )
            .with_state(shared.clone());
        let (addr, task) = serve(router).await?;
        Ok(Self { addr, shared, task })
    }

    /// Base URL, for `imds_endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The state later reads return; `None` makes the path 404 as outside an Auto Scaling group.
    pub fn set_lifecycle_state(&self, state: Option<&str>) {
        *lock(&self.shared.lifecycle_state) = state.map(str::to_owned);
    }
    /// While unavailable every request gets a 500.
    pub fn set_available(&self, available: bool) {
        self.shared.available.store(available, Ordering::SeqCst);
    }
    /// Invalidates every token handed out so far (as after their TTL), forcing a refresh.
    pub fn revoke_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }
    /// Tokens handed out.
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }
    /// Reads refused for a missing, unknown or expired token.
    pub fn unauthorized(&self) -> usize {
        self.shared.unauthorized.load(Ordering::SeqCst)
    }
    /// Instance-profile credentials handed out.
    pub fn credential_reads(&self) -> usize {
        self.shared.credential_reads.load(Ordering::SeqCst)
    }
    /// Successful reads of the lifecycle state.
    pub fn state_reads(&self) -> usize {
        self.shared.state_reads.load(Ordering::SeqCst)
    }
}

impl Drop for ImdsStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn imds_token(State(s): State<Arc<ImdsShared>>, headers: HeaderMap) -> Response {
    if !s.available.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let ttl = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=21600).contains(t)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let n = s.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("stand-in-token-{n}");
    lock(&s.tokens).push((token.clone(), Instant::now() + Duration::from_secs(ttl)));
    (
        [("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())],
        token,
    )
        .into_response()
}

/// Checks availability and the token; `Err` is the status to answer instead.
fn imds_check(s: &ImdsShared, headers: &HeaderMap) -> Result<(), StatusCode> {
    if !s.available.load(Ordering::SeqCst) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let token = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok());
    let now = Instant::now();
    let valid = token.is_some_and(|t| {
        lock(&s.tokens)
            .iter()
            .any(|(known, exp)| known == t && *exp > now)
    });
    if valid {
        Ok(())
    } else {
        s.unauthorized.fetch_add(1, Ordering::SeqCst);
        Err(StatusCode::UNAUTHORIZED)
    }
}

async fn imds_instance_id(State(s): State<Arc<ImdsShared>>, headers: HeaderMap) -> Response {
    match imds_check(&s, &headers) {
        Ok(()) => s.instance_id.clone().into_response(),
        Err(status) => status.into_response(),
    }
}

async fn imds_lifecycle_state(State(s): State<Arc<ImdsShared>>, headers: HeaderMap) -> Response {
    if let Err(status) = imds_check(&s, &headers) {
        return status.into_response();
    }
    let state = lock(&s.lifecycle_state).clone();
    match state {
        Some(state) => {
            s.state_reads.fetch_add(1, Ordering::SeqCst);
            state.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn imds_role(State(s): State<Arc<ImdsShared>>, headers: HeaderMap) -> Response {
    match imds_check(&s, &headers) {
        Ok(()) => IMDS_ROLE.into_response(),
        Err(status) => status.into_response(),
    }
}

async fn imds_credentials(
    State(s): State<Arc<ImdsShared>>,
    axum::extract::Path(role): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(status) = imds_check(&s, &headers) {
        return status.into_response();
    }
    if role != IMDS_ROLE {
        return StatusCode::NOT_FOUND.into_response();
    }
    s.credential_reads.fetch_add(1, Ordering::SeqCst);
    // Far-future expiry: the SDK refreshes credentials that expire soon, which would only add noise.
    let body = format!(
        "{{\"Code\":\"Success\",\"LastUpdated\":\"2026-01-01T00:00:00Z\",\"Type\":\"AWS-HMAC\",\
         \"AccessKeyId\":\"{IMDS_ACCESS_KEY}\",\"SecretAccessKey\":\"stand-in-secret\",\
         \"Token\":\"stand-in-session-token\",\"Expiration\":\"2099-01-01T00:00:00Z\"}}"
    );
    ([("content-type", "application/json")], body).into_response()
}

// ---------------------------------------------------------------------------------------------------
// Auto Scaling (Query protocol)

/// One request the Auto Scaling stand-in received.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    /// The `Action` parameter, e.g. `CompleteLifecycleAction`.
    pub action: String,
    /// Every form parameter as sent.
    pub params: BTreeMap<String, String>,
    /// Status answered: 200 accepted, 400 refused as invalid, 403 unsigned, 500 injected failure.
    pub status: u16,
    /// Access key id from the SigV4 `Authorization` header.
    pub access_key: Option<String>,
    pub at: Instant,
}

#[derive(Debug)]
struct AsgShared {
    group: String,
    hook: String,
    instance_id: String,
    calls: Mutex<Vec<RecordedCall>>,
    fail_next: AtomicUsize,
    completed: AtomicBool,
}

/// Auto Scaling stand-in for CompleteLifecycleAction, RecordLifecycleActionHeartbeat and
/// SetInstanceProtection: checks the SigV4 header, API version and every required parameter against
/// the group, hook and instance it was started for, records each request, and answers with the XML the
/// SDK parses. After a completed lifecycle action, further lifecycle calls get the `ValidationError`
/// Auto Scaling gives when no action is active.
#[derive(Debug)]
pub struct AutoScalingStandIn {
    addr: SocketAddr,
    shared: Arc<AsgShared>,
    task: tokio::task::JoinHandle<()>,
}

impl AutoScalingStandIn {
    pub async fn start(group: &str, hook: &str, instance_id: &str) -> std::io::Result<Self> {
        let shared = Arc::new(AsgShared {
            group: group.to_owned(),
            hook: hook.to_owned(),
            instance_id: instance_id.to_owned(),
            calls: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
            completed: AtomicBool::new(false),
        });
        let router = Router::new()
            .route("/", post(asg_handle))
            .with_state(shared.clone());
        let (addr, task) = serve(router).await?;
        Ok(Self { addr, shared, task })
    }

    /// Endpoint URL, for `autoscaling_endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The next `n` requests, whatever their action, get a 500 `InternalFailure`.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }
    /// Every request so far, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.shared.calls).clone()
    }
    /// Requests of one action that were accepted (status 200).
    pub fn accepted(&self, action: &str) -> Vec<RecordedCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action && c.status == 200)
            .collect()
    }
    /// Requests of one action, whatever the answer.
    pub fn attempts(&self, action: &str) -> usize {
        self.calls().iter().filter(|c| c.action == action).count()
    }
}

impl Drop for AutoScalingStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const ASG_XMLNS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

fn asg_error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"{ASG_XMLNS}\"><Error><Type>{kind}</Type><Code>{code}</Code>\
         <Message>{message}</Message></Error><RequestId>stand-in</RequestId></ErrorResponse>"
    );
    (status, [("content-type", "text/xml")], body).into_response()
}

/// The parameter checks of each action; `Err` holds the ValidationError message.
fn asg_validate(s: &AsgShared, action: &str, p: &BTreeMap<String, String>) -> Result<(), String> {
    let expect = |key: &str, want: &str| match p.get(key) {
        Some(got) if got == want => Ok(()),
        Some(got) => Err(format!("{key} is {got}, expected {want}")),
        None => Err(format!("{key} is required")),
    };
    match action {
        "CompleteLifecycleAction" | "RecordLifecycleActionHeartbeat" => {
            expect("AutoScalingGroupName", &s.group)?;
            expect("LifecycleHookName", &s.hook)?;
            expect("InstanceId", &s.instance_id)?;
            if action == "CompleteLifecycleAction" {
                match p.get("LifecycleActionResult").map(String::as_str) {
                    Some("CONTINUE" | "ABANDON") => {}
                    other => {
                        return Err(format!(
                            "LifecycleActionResult {other:?} is not CONTINUE or ABANDON"
                        ));
                    }
                }
            }
            if s.completed.load(Ordering::SeqCst) {
                return Err(format!(
                    "No active Lifecycle Action found with instance ID {}",
                    s.instance_id
                ));
            }
            Ok(())
        }
        "SetInstanceProtection" => {
            expect("AutoScalingGroupName", &s.group)?;
            expect("InstanceIds.member.1", &s.instance_id)?;
            if p.keys()
                .any(|k| k.starts_with("InstanceIds.member.") && k != "InstanceIds.member.1")
            {
                return Err("only this instance may be named".to_owned());
            }
            match p.get("ProtectedFromScaleIn").map(String::as_str) {
                Some("true" | "false") => Ok(()),
                other => Err(format!("ProtectedFromScaleIn {other:?} is not a boolean")),
            }
        }
        other => Err(format!("action {other} is not implemented by the stand-in")),
    }
}

async fn asg_handle(
    State(s): State<Arc<AsgShared>>,
    headers: HeaderMap,
    Form(params): Form<BTreeMap<String, String>>,
) -> Response {
    let action = params.get("Action").cloned().unwrap_or_default();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let access_key = authorization
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned);
    let record = |status: StatusCode| {
        lock(&s.calls).push(RecordedCall {
            action: action.clone(),
            params: params.clone(),
            status: status.as_u16(),
            access_key: access_key.clone(),
            at: Instant::now(),
        });
    };
    let signed = access_key.is_some() && authorization.contains("/autoscaling/aws4_request");
    if !signed {
        record(StatusCode::FORBIDDEN);
        return asg_error(
            StatusCode::FORBIDDEN,
            "Sender",
            "MissingAuthenticationToken",
            "request is not signed",
        );
    }
    if s.fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        record(StatusCode::INTERNAL_SERVER_ERROR);
        return asg_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Receiver",
            "InternalFailure",
            "injected failure",
        );
    }
    let checked = if params.get("Version").map(String::as_str) == Some("2011-01-01") {
        asg_validate(&s, &action, &params)
    } else {
        Err("Version must be 2011-01-01".to_owned())
    };
    if let Err(message) = checked {
        record(StatusCode::BAD_REQUEST);
        return asg_error(
            StatusCode::BAD_REQUEST,
            "Sender",
            "ValidationError",
            &message,
        );
    }
    if action == "CompleteLifecycleAction" {
        s.completed.store(true, Ordering::SeqCst);
    }
    record(StatusCode::OK);
    let body = format!(
        "<{action}Response xmlns=\"{ASG_XMLNS}\"><{action}Result/>\
         <ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata></{action}Response>"
    );
    ([("content-type", "text/xml")], body).into_response()
}
