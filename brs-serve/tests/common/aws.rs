//! S3 and SQS on a local moto server: clients with moto's fixed credentials, a bucket, a job
//! queue with its dead-letter queue, and the brs-serve config sections that point at them.

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use brs_serve::Config;
use brs_serve::config::{QueueConfig, QueueKind, StoreConfig, StoreKind};
use brs_serve::queue::{Queue, SqsQueue, SqsSettings};
use brs_serve::store::{Backend, S3Settings, S3Store};
use brs_testkit::moto::{ACCESS_KEY, Moto, REGION, SECRET_KEY};

pub(crate) struct LocalAws {
    pub(crate) moto: Moto,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) bucket: String,
    pub(crate) queue_url: String,
    pub(crate) dlq_url: String,
    pub(crate) visibility_secs: u32,
    pub(crate) max_receives: u32,
}

fn credentials() -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "moto")
}

pub(crate) fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub(crate) fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

impl LocalAws {
    /// A moto server with a bucket and a queue whose redrive policy dead-letters a message on
    /// its `max_receives + 1`-th receive.
    pub(crate) async fn start(visibility_secs: u32, max_receives: u32) -> LocalAws {
        let moto = Moto::start();
        let endpoint = moto.endpoint();
        let (s3, sqs) = (s3_client(&endpoint), sqs_client(&endpoint));
        let bucket = "brs-results".to_string();
        s3.create_bucket()
            .bucket(&bucket)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                    .build(),
            )
            .send()
            .await
            .expect("create bucket");
        let dlq_url = sqs
            .create_queue()
            .queue_name("brs-jobs-dlq")
            .send()
            .await
            .expect("create dlq")
            .queue_url()
            .expect("dlq url")
            .to_string();
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dlq arn")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("arn");
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receives.to_string(),
        })
        .to_string();
        let queue_url = sqs
            .create_queue()
            .queue_name("brs-jobs")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_secs.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue url")
            .to_string();
        LocalAws {
            moto,
            s3,
            sqs,
            bucket,
            queue_url,
            dlq_url,
            visibility_secs,
            max_receives,
        }
    }

    pub(crate) fn s3_settings(&self, endpoint: &str) -> S3Settings {
        S3Settings {
            bucket: self.bucket.clone(),
            prefix: String::new(),
            region: Some(REGION.into()),
            endpoint: Some(endpoint.to_string()),
        }
    }

    pub(crate) fn sqs_settings(&self) -> SqsSettings {
        SqsSettings {
            url: self.queue_url.clone(),
            region: Some(REGION.into()),
            endpoint: Some(self.moto.endpoint()),
            visibility_timeout: Duration::from_secs(u64::from(self.visibility_secs)),
            wait_time: Duration::from_secs(1),
            batch_size: 2,
            max_receives: self.max_receives,
        }
    }

    /// Points a server's config at this moto (the store reached through `s3_endpoint`, which
    /// may be a proxy in front of moto); `consume`: whether the HTTP instance runs job images.
    pub(crate) fn configure(&self, c: &mut Config, s3_endpoint: &str, consume: bool) {
        c.store = StoreConfig {
            kind: StoreKind::S3,
            path: None,
            bucket: Some(self.bucket.clone()),
            prefix: String::new(),
            region: Some(REGION.into()),
            endpoint: Some(s3_endpoint.to_string()),
        };
        c.queue = QueueConfig {
            kind: QueueKind::Sqs,
            max_receives: self.max_receives,
            consume,
            url: Some(self.queue_url.clone()),
            region: Some(REGION.into()),
            endpoint: Some(self.moto.endpoint()),
            visibility_timeout: Duration::from_secs(u64::from(self.visibility_secs)),
            wait_time: Duration::from_secs(1),
            batch_size: 2,
        };
    }

    /// The store and queue of an in-process server, with moto's credentials.
    pub(crate) fn backends(&self, s3_endpoint: &str) -> (Backend, Queue) {
        let settings = self.s3_settings(s3_endpoint);
        (
            Backend::S3(S3Store::with_client(s3_client(s3_endpoint), &settings)),
            Queue::Sqs(SqsQueue::with_client(
                sqs_client(&self.moto.endpoint()),
                &self.sqs_settings(),
            )),
        )
    }

    /// Messages waiting in the dead-letter queue.
    pub(crate) async fn dead_letters(&self) -> u64 {
        self.sqs
            .get_queue_attributes()
            .queue_url(&self.dlq_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .expect("dlq attributes")
            .attributes()
            .and_then(|a| {
                a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Keys under `prefix` in the bucket.
    pub(crate) async fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }
}

/// A TCP proxy on loopback in front of `target`, which can be taken down and brought back: an
/// outage of whatever is behind it, as its clients see one (connections refused or cut).
pub(crate) struct Flaky {
    pub(crate) port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Flaky {
    pub(crate) async fn start(target: u16) -> Flaky {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = up.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    // An outage also cuts connections already open.
                    let down = async {
                        while flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        () = down => {}
                    }
                });
            }
        });
        Flaky { port, up, task }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}
