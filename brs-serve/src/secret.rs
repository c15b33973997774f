//! The per-deployment secret that keys deduplication: a result is found again only by a client
//! that sends the same photo with the same settings, never computed from the photo by anyone else.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::ConfigError;

/// Shortest accepted secret.
const MIN_BYTES: usize = 32;

pub(crate) struct Secret {
    key: Vec<u8>,
    /// Where it came from, for the start-up log (never the value).
    pub(crate) origin: &'static str,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes from {})", self.key.len(), self.origin)
    }
}

impl Secret {
    /// From `config`'s Secrets Manager secret, else [`Secret::load`].
    pub(crate) async fn from_config(config: &crate::Config) -> Result<Secret, ConfigError> {
        #[cfg(feature = "aws")]
        if let Some(id) = &config.secret_arn {
            let value = crate::aws_sdk::secret_string(id)
                .await
                .map_err(|e| ConfigError::Secret(format!("secret_arn {id}: {e}")))?;
            return Secret::checked(trim(value.into_bytes()), "Secrets Manager");
        }
        Secret::load(
            config.secret_file.as_deref(),
            std::env::var("BRS_SECRET").ok(),
        )
    }

    /// From `file`, else the environment variable `BRS_SECRET`, else random for this process.
    pub(crate) fn load(file: Option<&Path>, env: Option<String>) -> Result<Secret, ConfigError> {
        let (key, origin) = if let Some(path) = file {
            let bytes = std::fs::read(path)
                .map_err(|e| ConfigError::Secret(format!("secret_file {}: {e}", path.display())))?;
            (trim(bytes), "secret_file")
        } else if let Some(v) = env.filter(|v| !v.is_empty()) {
            (trim(v.into_bytes()), "BRS_SECRET")
        } else {
            let mut key = vec![0u8; MIN_BYTES];
            getrandom::fill(&mut key)
                .map_err(|e| ConfigError::Secret(format!("the OS random source: {e}")))?;
            (key, "random per process")
        };
        Secret::checked(key, origin)
    }

    fn checked(key: Vec<u8>, origin: &'static str) -> Result<Secret, ConfigError> {
        if key.len() < MIN_BYTES {
            return Err(ConfigError::Secret(format!(
                "{origin} holds {} bytes; use at least {MIN_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
                key.len()
            )));
        }
        Ok(Secret { key, origin })
    }

    /// HMAC-SHA256 of `parts` (each length-prefixed, so no two lists of parts collide), hex.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> String {
        // HMAC takes keys of any length: new_from_slice cannot fail.
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        for p in parts {
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        hex::encode(m.finalize().into_bytes())
    }
}

/// A secret file ends with a newline more often than not; it is not part of the secret.
fn trim(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_in_order_and_short_secrets_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, format!("{}\n", "a".repeat(40))).expect("write");
        let s = Secret::load(Some(&file), Some("b".repeat(40))).expect("file");
        assert_eq!((s.origin, s.key.len()), ("secret_file", 40));
        let s = Secret::load(None, Some("b".repeat(40))).expect("env");
        assert_eq!(s.origin, "BRS_SECRET");
        let r1 = Secret::load(None, None).expect("random");
        let r2 = Secret::load(None, None).expect("random");
        assert_ne!(r1.mac(&[b"x"]), r2.mac(&[b"x"]));
        let err = Secret::load(None, Some("short".into())).expect_err("short");
        assert!(err.to_string().contains("at least 32"), "{err}");
        assert!(
            !format!("{s:?}").contains("bbbb"),
            "Debug must not show the secret"
        );
    }

    #[test]
    fn macs_separate_parts() {
        let s = Secret::load(None, Some("k".repeat(32))).expect("env");
        assert_ne!(s.mac(&[b"ab", b"c"]), s.mac(&[b"a", b"bc"]));
        assert_eq!(s.mac(&[b"ab", b"c"]), s.mac(&[b"ab", b"c"]));
        assert_eq!(s.mac(&[b"x"]).len(), 64);
    }
}
