//! S3 and SQS on a local moto server that enforces IAM as AWS does: a bucket, a job queue with
//! its dead-letter queue, one IAM user per role of the deployment holding exactly the policy
//! terraform renders for that role (terraform/tests/policies.json, kept equal to terraform by
//! scripts/checks/terraform), and the brs-serve config sections that point at them. Every brs
//! process signs as its role: a store or queue call the role was not granted fails here as it
//! would on AWS.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use brs_serve::Config;
use brs_serve::config::{QueueConfig, QueueKind, StoreConfig, StoreKind};
use brs_serve::queue::{Queue, SqsQueue, SqsSettings};
use brs_serve::store::{Backend, S3Settings, S3Store};
use brs_testkit::moto::{ACCESS_KEY, Keys, Moto, REGION, SECRET_KEY};

/// The kinds of process terraform gives a role (terraform/iam.tf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AwsRole {
    /// An HTTP instance, which also consumes the queue.
    Serve,
    /// A `brs-serve worker` instance.
    Worker,
    /// The Lambda HTTP function: takes jobs, runs none (an HTTP process that does not consume).
    LambdaApi,
    /// The Lambda queue worker.
    LambdaWorker,
}

impl AwsRole {
    pub(crate) const ALL: [AwsRole; 4] = [
        AwsRole::Serve,
        AwsRole::Worker,
        AwsRole::LambdaApi,
        AwsRole::LambdaWorker,
    ];

    /// The role's key in terraform's `local.roles` and in policies.json.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AwsRole::Serve => "serve",
            AwsRole::Worker => "worker",
            AwsRole::LambdaApi => "lambda-api",
            AwsRole::LambdaWorker => "lambda-worker",
        }
    }
}

/// The user the tests themselves sign as (to create, inspect and list): allowed everything.
const ADMIN: &str = "admin";
const ADMIN_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}"#;

/// Calls that AWS authorizes as the first action and moto as the second: a listing is
/// `s3:ListBucket` to IAM, and a batch call needs the permission of its single form (IAM has no
/// batch actions for SQS), while moto checks each under its API name.
const MOTO_ACTION_NAMES: [(&str, &str); 4] = [
    ("s3:ListBucket", "s3:ListObjectsV2"),
    ("sqs:SendMessage", "sqs:SendMessageBatch"),
    ("sqs:DeleteMessage", "sqs:DeleteMessageBatch"),
    (
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
    ),
];

/// The inline policy terraform renders for `role`, for this bucket and queue, with each action
/// of [`MOTO_ACTION_NAMES`] also granted under moto's name, on the same terms.
fn rendered_policy(role: AwsRole, bucket_arn: &str, queue_arn: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../terraform/tests/policies.json"
    );
    let text = std::fs::read_to_string(path).expect("terraform/tests/policies.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("policies.json is JSON");
    let mut policy = doc["roles"][role.name()].clone();
    assert!(policy.is_object(), "{path} has no role {}", role.name());
    if let Some(statements) = policy["Statement"].as_array_mut() {
        for st in statements {
            let actions = match &st["Action"] {
                serde_json::Value::String(a) => vec![serde_json::json!(a)],
                serde_json::Value::Array(a) => a.clone(),
                _ => continue,
            };
            let mut actions = actions;
            for (aws, moto) in MOTO_ACTION_NAMES {
                if actions.iter().any(|a| a == aws) {
                    actions.push(serde_json::json!(moto));
                }
            }
            st["Action"] = serde_json::Value::Array(actions);
        }
    }
    policy
        .to_string()
        .replace("${bucket_arn}", bucket_arn)
        .replace("${queue_arn}", queue_arn)
        // No test here reads the deployment secret through a role (moto checks Secrets Manager
        // calls against resource "*", unlike AWS): any well-formed ARN will do.
        .replace(
            "${secret_arn}",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:brs-deployment-AbCdEf",
        )
}

pub(crate) struct LocalAws {
    pub(crate) moto: Moto,
    /// Clients signing as the admin user, for the tests' own calls.
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) sqs: aws_sdk_sqs::Client,
    keys: HashMap<AwsRole, Keys>,
    /// The admin user's key, for tests of the store itself rather than of a role.
    pub(crate) admin: Keys,
    pub(crate) bucket: String,
    pub(crate) queue_url: String,
    pub(crate) dlq_url: String,
    pub(crate) visibility_secs: u32,
    pub(crate) max_receives: u32,
}

fn credentials(keys: &Keys) -> Credentials {
    Credentials::new(&keys.id, &keys.secret, None, None, "moto")
}

/// moto's fixed keys, which work only until it enforces IAM.
fn bootstrap() -> Keys {
    Keys {
        id: ACCESS_KEY.into(),
        secret: SECRET_KEY.into(),
    }
}

/// One attribute of the queue at `url`.
async fn queue_attribute(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    which: QueueAttributeName,
) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(which.clone())
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&which).cloned())
        .unwrap_or_else(|| panic!("no {which:?} for {url}"))
}

pub(crate) fn s3_client(endpoint: &str, keys: &Keys) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials(keys))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub(crate) fn sqs_client(endpoint: &str, keys: &Keys) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials(keys))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

impl LocalAws {
    /// A moto server enforcing IAM, with a bucket and a queue whose redrive policy dead-letters
    /// a message on its `max_receives + 1`-th receive.
    pub(crate) async fn start(visibility_secs: u32, max_receives: u32) -> LocalAws {
        let moto = Moto::start();
        let endpoint = moto.endpoint();
        let (s3, sqs) = (
            s3_client(&endpoint, &bootstrap()),
            sqs_client(&endpoint, &bootstrap()),
        );
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
        let dlq_arn = queue_attribute(&sqs, &dlq_url, QueueAttributeName::QueueArn).await;
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
        let queue_arn = queue_attribute(&sqs, &queue_url, QueueAttributeName::QueueArn).await;
        let bucket_arn = format!("arn:aws:s3:::{bucket}");
        let policies: Vec<(&str, String)> = AwsRole::ALL
            .iter()
            .map(|&r| (r.name(), rendered_policy(r, &bucket_arn, &queue_arn)))
            .chain([(ADMIN, ADMIN_POLICY.to_string())])
            .collect();
        let mut users = moto.enforce_iam(&policies);
        let admin = users.remove(ADMIN).expect("admin keys");
        let keys = AwsRole::ALL
            .iter()
            .map(|&r| (r, users.remove(r.name()).expect("role keys")))
            .collect();
        LocalAws {
            s3: s3_client(&endpoint, &admin),
            sqs: sqs_client(&endpoint, &admin),
            admin,
            moto,
            keys,
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

    /// The access key of `role`'s user.
    pub(crate) fn role_keys(&self, role: AwsRole) -> &Keys {
        &self.keys[&role]
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

    /// The store and queue of an in-process server, signing as `role`.
    pub(crate) fn backends(&self, s3_endpoint: &str, role: AwsRole) -> (Backend, Queue) {
        let settings = self.s3_settings(s3_endpoint);
        let keys = self.role_keys(role);
        (
            Backend::S3(S3Store::with_client(
                s3_client(s3_endpoint, keys),
                &settings,
            )),
            Queue::Sqs(SqsQueue::with_client(
                sqs_client(&self.moto.endpoint(), keys),
                &self.sqs_settings(),
            )),
        )
    }

    /// Messages waiting in the dead-letter queue.
    pub(crate) async fn dead_letters(&self) -> u64 {
        self.count(
            &self.dlq_url,
            QueueAttributeName::ApproximateNumberOfMessages,
        )
        .await
    }

    /// A numeric attribute (a message count) of the queue at `url`.
    pub(crate) async fn count(&self, url: &str, which: QueueAttributeName) -> u64 {
        queue_attribute(&self.sqs, url, which)
            .await
            .parse()
            .expect("a count")
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

/// A `brs-serve worker` process on this moto and `api`'s model, signing as the worker role; its
/// log goes to `<api dir>/<name>.log`; `extra`: flags after `--config`.
pub(crate) fn spawn_worker(
    aws: &LocalAws,
    api: &super::Server,
    name: &str,
    extra: &[&str],
) -> super::Kill {
    let dir = api.dir.path();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"reload_jitter = "0s"
drain_grace = "3s"
[styles.default]
path = {run:?}
[store]
kind = "s3"
bucket = "{bucket}"
region = "{REGION}"
endpoint = "{endpoint}"
[queue]
kind = "sqs"
url = "{queue}"
region = "{REGION}"
endpoint = "{endpoint}"
visibility_timeout = "{vis}s"
wait_time = "1s"
batch_size = 2
max_receives = {max}
"#,
            run = api.run_dir,
            bucket = aws.bucket,
            endpoint = aws.moto.endpoint(),
            queue = aws.queue_url,
            vis = aws.visibility_secs,
            max = aws.max_receives,
        ),
    )
    .expect("worker config");
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("worker log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_brs-serve"))
        .args(["worker", "--config", config.to_str().expect("utf8")])
        .args(extra)
        .envs(aws.role_keys(AwsRole::Worker).env())
        .env("BRS_SECRET", "w".repeat(32))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn worker");
    super::Kill(child)
}
