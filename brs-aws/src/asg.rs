//! The three Auto Scaling calls the watcher makes, with the SDK's timeout and retry settings from config.

use aws_sdk_autoscaling::config::retry::RetryConfig;
use aws_sdk_autoscaling::config::timeout::TimeoutConfig;
use aws_sdk_autoscaling::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_autoscaling::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::config::AwsConfig;
use crate::error::AwsError;

/// A client for one Auto Scaling group and its termination lifecycle hook.
#[derive(Debug, Clone)]
pub struct AutoScaling {
    client: aws_sdk_autoscaling::Client,
    group: String,
    hook: String,
}

impl AutoScaling {
    /// Credentials from the default chain (environment, profile, then the instance profile through
    /// the configured IMDS endpoint), region and endpoint from `cfg`.
    pub async fn from_environment(cfg: &AwsConfig) -> Result<Self, AwsError> {
        let imds = aws_config::imds::Client::builder()
            .endpoint(&cfg.imds_endpoint)
            .map_err(|e| AwsError::Config(format!("aws.imds_endpoint: {e}")))?
            .build();
        let credentials = aws_config::default_provider::credentials::Builder::default()
            .region(Region::new(cfg.region.clone()))
            .imds_client(imds)
            .build()
            .await;
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(credentials)
            .load()
            .await;
        let builder = aws_sdk_autoscaling::config::Builder::from(&shared);
        Ok(Self::build(cfg, builder))
    }

    /// Fixed credentials; for tests against a local endpoint, where no credential chain should run.
    pub fn with_static_credentials(cfg: &AwsConfig, access_key: &str, secret_key: &str) -> Self {
        let builder = aws_sdk_autoscaling::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(Credentials::new(
                access_key,
                secret_key,
                None,
                None,
                "brs-aws-static",
            ));
        Self::build(cfg, builder)
    }

    fn build(cfg: &AwsConfig, mut builder: aws_sdk_autoscaling::config::Builder) -> Self {
        if let Some(url) = &cfg.autoscaling_endpoint {
            builder = builder.endpoint_url(url);
        }
        let attempt = cfg.call_timeout();
        let builder = builder
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(attempt)
                    .operation_attempt_timeout(attempt)
                    .operation_timeout(cfg.operation_timeout())
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(cfg.max_attempts)
                    .with_initial_backoff(cfg.initial_backoff()),
            );
        Self {
            client: aws_sdk_autoscaling::Client::from_conf(builder.build()),
            group: cfg.asg_name.clone(),
            hook: cfg.lifecycle_hook.clone(),
        }
    }

    /// CompleteLifecycleAction with result CONTINUE for this instance.
    pub async fn complete_lifecycle_action(&self, instance_id: &str) -> Result<(), AwsError> {
        self.client
            .complete_lifecycle_action()
            .lifecycle_hook_name(&self.hook)
            .auto_scaling_group_name(&self.group)
            .instance_id(instance_id)
            .lifecycle_action_result("CONTINUE")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("CompleteLifecycleAction", e))
    }

    /// RecordLifecycleActionHeartbeat: restarts the hook's heartbeat timeout.
    pub async fn record_heartbeat(&self, instance_id: &str) -> Result<(), AwsError> {
        self.client
            .record_lifecycle_action_heartbeat()
            .lifecycle_hook_name(&self.hook)
            .auto_scaling_group_name(&self.group)
            .instance_id(instance_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("RecordLifecycleActionHeartbeat", e))
    }

    /// SetInstanceProtection for this one instance.
    pub async fn set_instance_protection(
        &self,
        instance_id: &str,
        protected: bool,
    ) -> Result<(), AwsError> {
        self.client
            .set_instance_protection()
            .auto_scaling_group_name(&self.group)
            .instance_ids(instance_id)
            .protected_from_scale_in(protected)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("SetInstanceProtection", e))
    }
}

fn sdk_error<E, R>(action: &'static str, error: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    AwsError::AutoScaling {
        action,
        code: error.code().map(str::to_owned),
        message: DisplayErrorContext(&error).to_string(),
    }
}
