//! The AWS SDK configuration the S3 store and the SQS queue share: the default credential chain
//! (instance role, environment), an optional region, and a bound on every call.

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
