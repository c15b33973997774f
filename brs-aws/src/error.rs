//! The one error type of brs-aws; every variant is logged and counted by the watcher, none stops serving.

/// What can go wrong talking to IMDS or Auto Scaling.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// A bad value in the `[aws]` section.
    #[error("invalid aws config: {0}")]
    Config(String),
    /// IMDS could not be reached, timed out or answered with an unexpected status.
    #[error("instance metadata {path}: {message}")]
    Imds { path: String, message: String },
    /// An Auto Scaling call failed after its retries.
    #[error("autoscaling {action}: {message}")]
    AutoScaling {
        action: &'static str,
        /// The AWS error code when the service answered with one (e.g. `ValidationError`).
        code: Option<String>,
        message: String,
    },
}

impl AwsError {
    /// True when Auto Scaling refused the request itself, so sending it again cannot succeed
    /// (e.g. the lifecycle action already timed out or was completed by someone else).
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::AutoScaling { code: Some(code), .. } if code == "ValidationError")
    }
}
