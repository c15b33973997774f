//! A small IMDSv2 client: a session token from `PUT /latest/api/token`, then metadata reads with it.
//!
//! The SDK's own IMDS client lives in aws-config, but it hides the status of a read (a 404 for
//! "not in an Auto Scaling group" must not look like an outage) and cannot be given our retry policy
//! per read, so the two reads the watcher needs are done here with reqwest.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::config::AwsConfig;
use crate::error::AwsError;

const TOKEN_PATH: &str = "/latest/api/token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Path of the Auto Scaling target lifecycle state (`InService`, `Terminated`, `Warmed:Stopped`, ...).
pub(crate) const LIFECYCLE_STATE_PATH: &str =
    "/latest/meta-data/autoscaling/target-lifecycle-state";
/// Path of the instance id.
pub(crate) const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
/// A token this close to expiry is replaced before use, so a read never races its expiry.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

/// The target lifecycle state as IMDS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleState {
    InService,
    Terminated,
    /// Any other state (`Pending`, `Warmed:*`, ...): nothing to do yet.
    Other(String),
}

impl LifecycleState {
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "InService" => Self::InService,
            "Terminated" => Self::Terminated,
            other => Self::Other(other.to_owned()),
        }
    }
}

#[derive(Debug)]
struct Token {
    value: String,
    expires: Instant,
}

/// An IMDSv2 client with a cached session token.
#[derive(Debug)]
pub struct Imds {
    http: reqwest::Client,
    base: String,
    ttl: Duration,
    attempts: u32,
    cfg: AwsConfig,
    token: Mutex<Option<Token>>,
}

/// Outcome of one metadata read.
enum Read {
    Found(String),
    NotFound,
    /// The token was refused; a fresh one may succeed.
    Unauthorized,
}

impl Imds {
    pub fn new(cfg: &AwsConfig) -> Result<Self, AwsError> {
        let http = reqwest::Client::builder()
            // IMDS is link-local: a proxy from the environment would only get in the way.
            .no_proxy()
            .connect_timeout(cfg.call_timeout())
            .timeout(cfg.call_timeout())
            .build()
            .map_err(|e| AwsError::Config(format!("aws.imds_endpoint: http client: {e}")))?;
        Ok(Self {
            http,
            base: cfg.imds_endpoint.trim_end_matches('/').to_owned(),
            ttl: Duration::from_secs(cfg.imds_token_ttl_secs),
            attempts: cfg.max_attempts,
            cfg: cfg.clone(),
            token: Mutex::new(None),
        })
    }

    /// The instance id, e.g. `i-0123456789abcdef0`.
    pub async fn instance_id(&self) -> Result<String, AwsError> {
        match self.get(INSTANCE_ID_PATH).await? {
            Some(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
            _ => Err(imds_error(INSTANCE_ID_PATH, "no instance id")),
        }
    }

    /// The target lifecycle state; `None` when IMDS has none (the instance is not in an Auto Scaling group).
    pub async fn lifecycle_state(&self) -> Result<Option<LifecycleState>, AwsError> {
        Ok(self
            .get(LIFECYCLE_STATE_PATH)
            .await?
            .map(|s| LifecycleState::parse(&s)))
    }

    /// Reads one metadata path with bounded retries; `None` on 404.
    pub async fn get(&self, path: &str) -> Result<Option<String>, AwsError> {
        let mut attempt = 1;
        let mut refreshed = false;
        loop {
            let result = match self.token().await {
                Ok(token) => self.read(path, &token).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(Read::Found(body)) => return Ok(Some(body)),
                Ok(Read::NotFound) => return Ok(None),
                Ok(Read::Unauthorized) => {
                    self.forget_token();
                    // An expired token is routine, so the first refusal costs no attempt; a fresh
                    // token is fetched at once, as waiting would not make the old one valid.
                    if !refreshed {
                        refreshed = true;
                        continue;
                    }
                    if attempt >= self.attempts {
                        return Err(imds_error(path, "token refused"));
                    }
                }
                Err(e) => {
                    if attempt >= self.attempts {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, attempt, "imds read failed, retrying");
                    tokio::time::sleep(self.cfg.backoff(attempt)).await;
                }
            }
            attempt += 1;
        }
    }

    async fn read(&self, path: &str, token: &str) -> Result<Read, AwsError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(TOKEN_HEADER, token)
            .send()
            .await
            .map_err(|e| imds_error(path, e))?;
        match response.status() {
            StatusCode::OK => {
                let body = response.text().await.map_err(|e| imds_error(path, e))?;
                Ok(Read::Found(body))
            }
            StatusCode::NOT_FOUND => Ok(Read::NotFound),
            StatusCode::UNAUTHORIZED => Ok(Read::Unauthorized),
            other => Err(imds_error(path, format!("status {other}"))),
        }
    }

    async fn token(&self) -> Result<String, AwsError> {
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        let requested = Instant::now();
        let response = self
            .http
            .put(format!("{}{TOKEN_PATH}", self.base))
            .header(TTL_HEADER, self.ttl.as_secs().to_string())
            .send()
            .await
            .map_err(|e| imds_error(TOKEN_PATH, e))?;
        if response.status() != StatusCode::OK {
            return Err(imds_error(
                TOKEN_PATH,
                format!("status {}", response.status()),
            ));
        }
        // IMDS echoes the lifetime it granted; trust it over the one asked for when present.
        let ttl = response
            .headers()
            .get(TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(self.ttl, Duration::from_secs);
        let value = response
            .text()
            .await
            .map_err(|e| imds_error(TOKEN_PATH, e))?;
        if value.trim().is_empty() {
            return Err(imds_error(TOKEN_PATH, "empty token"));
        }
        let value = value.trim().to_owned();
        let mut slot = self
            .token
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(Token {
            value: value.clone(),
            expires: requested + ttl,
        });
        Ok(value)
    }

    fn cached_token(&self) -> Option<String> {
        let slot = self
            .token
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.as_ref()
            .filter(|t| Instant::now() + TOKEN_MARGIN.min(self.ttl / 2) < t.expires)
            .map(|t| t.value.clone())
    }

    fn forget_token(&self) {
        *self
            .token
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

fn imds_error(path: &str, message: impl std::fmt::Display) -> AwsError {
    AwsError::Imds {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_states_parse() {
        assert_eq!(
            LifecycleState::parse("InService\n"),
            LifecycleState::InService
        );
        assert_eq!(
            LifecycleState::parse("Terminated"),
            LifecycleState::Terminated
        );
        assert_eq!(
            LifecycleState::parse("Warmed:Stopped"),
            LifecycleState::Other("Warmed:Stopped".into())
        );
    }
}
