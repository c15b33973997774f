//! The AWS SDK configuration the S3 store, the SQS queue and the secret share: the default
//! credential chain (instance role, environment), an optional region, and a bound on every call.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The shared SDK configuration; `operation_timeout` bounds one call, retries included, so an
/// outage fails the call (and its caller retries later) instead of hanging it.
pub(crate) async fn sdk_config(region: Option<&str>, operation_timeout: Duration) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(operation_timeout)
            .build(),
    );
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader.load().await
}

/// How long reading the deployment secret may take, retries included.
const SECRET_TIMEOUT: Duration = Duration::from_secs(20);

/// The string value of a Secrets Manager secret (by ARN or name), with the default chain's
/// credentials and region (a Lambda function's `AWS_REGION`, an instance's metadata).
pub(crate) async fn secret_string(id: &str) -> Result<String, String> {
    let sdk = sdk_config(None, SECRET_TIMEOUT).await;
    let out = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())?;
    out.secret_string()
        .map(str::to_string)
        .ok_or_else(|| "the secret has no string value".to_string())
}
