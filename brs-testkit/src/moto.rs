//! A moto server (the venv's `moto_server`) on a loopback port, for tests of the S3 store and the
//! SQS queue, optionally checking every request against IAM policies as AWS does
//! ([`Moto::enforce_iam`]). Killed when dropped.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Credentials moto accepts until it enforces IAM; never real ones.
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";
pub const REGION: &str = "eu-west-1";

/// An access key of a moto IAM user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub id: String,
    pub secret: String,
}

impl Keys {
    /// The environment a child process needs to sign as this user.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts moto_server and waits until it answers.
    pub fn start() -> Moto {
        let python = super::setup::python();
        let bin = python
            .parent()
            .map(|d| d.join("moto_server"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("moto_server"));
        let port = super::free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} (run scripts/setup): {e}", bin.display()));
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates one IAM user per `(name, policy document)` holding exactly that policy, then makes
    /// moto check every later request's signature and permissions against its signer's policies
    /// (what AWS does and moto skips by default). From then on the fixed [`ACCESS_KEY`] is
    /// refused: every client must sign as one of the returned users.
    pub fn enforce_iam(&self, users: &[(&str, String)]) -> HashMap<String, Keys> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/moto_iam.py");
        let doc = users
            .iter()
            .map(|(name, policy)| format!("{name:?}: {policy}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut child = Command::new(super::setup::python())
            .arg(&script)
            .arg(self.endpoint())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{{{doc}}}").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let keys: HashMap<String, Keys> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let (name, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
                let keys = Keys {
                    id: id.into(),
                    secret: secret.into(),
                };
                Some((name.to_string(), keys))
            })
            .collect();
        assert_eq!(keys.len(), users.len(), "one access key per user");
        keys
    }

    /// The environment a child process needs to talk to this moto (before [`Moto::enforce_iam`]).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
