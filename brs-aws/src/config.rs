//! The `[aws]` section of brs-serve's TOML: which Auto Scaling group and hook this instance answers to.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::AwsError;

/// Settings for the lifecycle watcher and scale-in protection.
///
/// The first four keys are written by terraform into `/etc/brs/serve.toml`; the rest have defaults that
/// suit production and exist so tests can point the watcher at local stand-ins with short intervals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region of the Auto Scaling group, e.g. `eu-west-1`. Required.
    pub region: String,
    /// Name of the Auto Scaling group this instance belongs to. Required.
    pub asg_name: String,
    /// Name of the termination lifecycle hook to complete. Required.
    pub lifecycle_hook: String,
    /// Longest time to wait for outstanding work before completing the lifecycle action anyway
    /// (default 300 s, the ALB's default deregistration delay).
    #[serde(default = "defaults::drain_timeout_secs")]
    pub drain_timeout_secs: u64,
    /// Base URL of the instance metadata service (default `http://169.254.169.254`).
    #[serde(default = "defaults::imds_endpoint")]
    pub imds_endpoint: String,
    /// Auto Scaling endpoint URL; `None` (the default) uses the regional endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_endpoint: Option<String>,
    /// How often the target lifecycle state and the pending job count are polled (default 1000 ms).
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Heartbeat timeout of the lifecycle hook, as terraform configured it (optional). Only used to
    /// derive the heartbeat interval and to check an explicit one against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_secs: Option<u64>,
    /// Interval between RecordLifecycleActionHeartbeat calls while draining. Default: a third of
    /// `heartbeat_timeout_secs` (so two lost heartbeats are survived), or 60 s when that is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_secs: Option<u64>,
    /// Protect the instance from scale-in while async jobs are unfinished (default true).
    #[serde(default = "defaults::protect_while_jobs_pending")]
    pub protect_while_jobs_pending: bool,
    /// Timeout of one attempt of one AWS or IMDS call (default 5000 ms).
    #[serde(default = "defaults::call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Attempts per AWS or IMDS call, the first included (default 4).
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// First retry backoff; later ones grow exponentially with jitter (default 200 ms).
    #[serde(default = "defaults::initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Lifetime asked for an IMDSv2 session token (default 21600 s, the maximum).
    #[serde(default = "defaults::imds_token_ttl_secs")]
    pub imds_token_ttl_secs: u64,
}

mod defaults {
    pub(super) fn drain_timeout_secs() -> u64 {
        300
    }
    pub(super) fn imds_endpoint() -> String {
        "http://169.254.169.254".to_owned()
    }
    pub(super) fn poll_interval_ms() -> u64 {
        1000
    }
    pub(super) fn protect_while_jobs_pending() -> bool {
        true
    }
    pub(super) fn call_timeout_ms() -> u64 {
        5000
    }
    pub(super) fn max_attempts() -> u32 {
        4
    }
    pub(super) fn initial_backoff_ms() -> u64 {
        200
    }
    pub(super) fn imds_token_ttl_secs() -> u64 {
        21600
    }
}

impl AwsConfig {
    /// A config with the required keys and every default; handy for tests and programmatic use.
    pub fn new(region: &str, asg_name: &str, lifecycle_hook: &str) -> Self {
        Self {
            region: region.to_owned(),
            asg_name: asg_name.to_owned(),
            lifecycle_hook: lifecycle_hook.to_owned(),
            drain_timeout_secs: defaults::drain_timeout_secs(),
            imds_endpoint: defaults::imds_endpoint(),
            autoscaling_endpoint: None,
            poll_interval_ms: defaults::poll_interval_ms(),
            heartbeat_timeout_secs: None,
            heartbeat_interval_secs: None,
            protect_while_jobs_pending: defaults::protect_while_jobs_pending(),
            call_timeout_ms: defaults::call_timeout_ms(),
            max_attempts: defaults::max_attempts(),
            initial_backoff_ms: defaults::initial_backoff_ms(),
            imds_token_ttl_secs: defaults::imds_token_ttl_secs(),
        }
    }

    /// Rejects values the watcher cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), AwsError> {
        let bad = |key: &'static str, why: &str| Err(AwsError::Config(format!("aws.{key}: {why}")));
        for (key, value) in [
            ("region", &self.region),
            ("asg_name", &self.asg_name),
            ("lifecycle_hook", &self.lifecycle_hook),
            ("imds_endpoint", &self.imds_endpoint),
        ] {
            if value.trim().is_empty() {
                return bad(key, "must not be empty");
            }
        }
        if !self.imds_endpoint.starts_with("http://") && !self.imds_endpoint.starts_with("https://")
        {
            return bad("imds_endpoint", "must be an http:// or https:// URL");
        }
        if let Some(url) = &self.autoscaling_endpoint
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            return bad("autoscaling_endpoint", "must be an http:// or https:// URL");
        }
        if self.poll_interval_ms == 0 {
            return bad("poll_interval_ms", "must be at least 1");
        }
        if self.heartbeat_interval_secs == Some(0) {
            return bad("heartbeat_interval_secs", "must be at least 1");
        }
        if let (Some(interval), Some(timeout)) =
            (self.heartbeat_interval_secs, self.heartbeat_timeout_secs)
            && interval >= timeout
        {
            return bad(
                "heartbeat_interval_secs",
                "must be shorter than heartbeat_timeout_secs",
            );
        }
        if self.call_timeout_ms == 0 {
            return bad("call_timeout_ms", "must be at least 1");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1");
        }
        // IMDS refuses token lifetimes outside 1 s ..= 6 h.
        if !(1..=21600).contains(&self.imds_token_ttl_secs) {
            return bad("imds_token_ttl_secs", "must be between 1 and 21600");
        }
        Ok(())
    }

    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
    /// The interval actually used between heartbeats (see `heartbeat_interval_secs`).
    pub fn heartbeat_interval(&self) -> Duration {
        let secs = self
            .heartbeat_interval_secs
            .unwrap_or_else(|| self.heartbeat_timeout_secs.map_or(60, |t| (t / 3).max(1)));
        Duration::from_secs(secs)
    }
    pub(crate) fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
    pub(crate) fn initial_backoff(&self) -> Duration {
        Duration::from_millis(self.initial_backoff_ms)
    }

    /// Bound on one AWS call: every attempt plus the backoffs between them.
    pub(crate) fn operation_timeout(&self) -> Duration {
        let backoffs: Duration = (1..self.max_attempts).map(|a| self.backoff(a)).sum();
        self.call_timeout() * self.max_attempts + backoffs
    }

    /// Backoff before retry number `attempt` (1-based): doubling from the initial backoff, capped at 30 s.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(16);
        Duration::from_millis(self.initial_backoff_ms.saturating_mul(factor).min(30_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_keys_alone_give_documented_defaults() {
        let cfg: AwsConfig = toml::from_str(
            r#"
            region = "eu-west-1"
            asg_name = "brs"
            lifecycle_hook = "brs-drain"
            drain_timeout_secs = 120
            "#,
        )
        .expect("parse");
        assert_eq!(cfg.drain_timeout_secs, 120);
        assert_eq!(cfg.imds_endpoint, "http://169.254.169.254");
        assert_eq!(cfg.autoscaling_endpoint, None);
        assert_eq!(cfg.poll_interval_ms, 1000);
        assert_eq!(cfg.heartbeat_interval(), Duration::from_secs(60));
        assert!(cfg.protect_while_jobs_pending);
        assert_eq!(cfg.max_attempts, 4);
        let mut expected = AwsConfig::new("eu-west-1", "brs", "brs-drain");
        expected.drain_timeout_secs = 120;
        assert_eq!(cfg, expected);
        cfg.validate().expect("valid");
    }

    #[test]
    fn heartbeat_interval_follows_the_hook_timeout() {
        // The section exactly as terraform/asg.tf writes it.
        let cfg: AwsConfig = toml::from_str(
            "region = \"eu-west-1\"\nasg_name = \"brs-serve\"\nlifecycle_hook = \"brs-drain\"\n\
             drain_timeout_secs = 300\nheartbeat_timeout_secs = 300\n",
        )
        .expect("parse");
        cfg.validate().expect("valid");
        assert_eq!(cfg.heartbeat_interval(), Duration::from_secs(100));
        let mut cfg = cfg;
        cfg.heartbeat_interval_secs = Some(20);
        assert_eq!(cfg.heartbeat_interval(), Duration::from_secs(20));
        cfg.heartbeat_interval_secs = Some(300);
        let err = cfg
            .validate()
            .expect_err("interval not under the timeout")
            .to_string();
        assert!(err.contains("heartbeat_interval_secs"), "{err}");
    }

    #[test]
    fn serializes_back_to_the_same_section() {
        let mut cfg = AwsConfig::new("eu-west-1", "brs", "brs-drain");
        cfg.heartbeat_timeout_secs = Some(300);
        let text = toml::to_string(&cfg).expect("serialize");
        assert!(!text.contains("autoscaling_endpoint"), "{text}");
        assert_eq!(toml::from_str::<AwsConfig>(&text).expect("parse"), cfg);
    }

    #[test]
    fn unknown_and_missing_keys_are_refused() {
        let unknown = toml::from_str::<AwsConfig>(
            "region='r'\nasg_name='a'\nlifecycle_hook='h'\npoll_interval='1s'",
        );
        assert!(unknown.is_err());
        let missing = toml::from_str::<AwsConfig>("region='r'\nasg_name='a'");
        assert!(missing.is_err());
    }

    #[test]
    fn validate_names_the_bad_key() {
        let mut cfg = AwsConfig::new("r", "a", "h");
        cfg.max_attempts = 0;
        let err = cfg.validate().expect_err("zero attempts").to_string();
        assert!(err.contains("aws.max_attempts"), "{err}");
        let mut cfg = AwsConfig::new("r", "", "h");
        assert!(cfg.validate().is_err());
        cfg.asg_name = "a".into();
        cfg.imds_endpoint = "169.254.169.254".into();
        assert!(
            cfg.validate()
                .expect_err("no scheme")
                .to_string()
                .contains("imds_endpoint")
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = AwsConfig::new("r", "a", "h");
        assert_eq!(cfg.backoff(1), Duration::from_millis(200));
        assert_eq!(cfg.backoff(2), Duration::from_millis(400));
        assert_eq!(cfg.backoff(4), Duration::from_millis(1600));
        assert_eq!(cfg.backoff(60), Duration::from_secs(30));
    }
}
