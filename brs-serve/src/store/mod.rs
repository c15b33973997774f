//! The object store behind jobs and results: inputs, translated images and job state, under keys
//! shaped like S3 keys. Two implementations with one contract: [`fs`] (a directory, local or EFS;
//! the default) and, with the `aws` feature, [`s3`]. Everything above this module talks to
//! [`Store`] only.
//!
//! Keys are `/`-separated segments of `[A-Za-z0-9._-]` that never start with a dot, so a key can
//! never name a path outside the store's root nor a writer's temp file.

mod fs;
pub mod namespaces;
#[cfg(feature = "aws")]
mod s3;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::health::StoreHealth;
use crate::metrics::Metrics;

pub use fs::FsStore;
#[cfg(feature = "aws")]
pub use s3::{S3Settings, S3Store};

/// A validated store key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Checks every segment; `None` for anything that is not a plain relative key.
    pub fn new(key: impl Into<String>) -> Option<Key> {
        let key = key.into();
        let ok = !key.is_empty()
            && key.len() <= 512
            && key.split('/').all(|seg| {
                !seg.is_empty()
                    && !seg.starts_with('.')
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        ok.then_some(Key(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One object found by [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    pub bytes: u64,
}

/// What a store operation was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    Delete,
    List,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Delete => "delete",
            Op::List => "list",
        })
    }
}

/// Why a store operation failed. Every failure is worth a retry: a full disk gets room, an
/// unreachable endpoint comes back; callers decide how long to keep trying.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {op} {key}: {source}")]
    Io {
        op: Op,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store {op} {key}: {message}")]
    Remote {
        op: Op,
        key: String,
        message: String,
    },
    #[error("store {op} {key}: the blocking task failed: {message}")]
    Task {
        op: Op,
        key: String,
        message: String,
    },
}

impl StoreError {
    pub fn op(&self) -> Op {
        match self {
            StoreError::Io { op, .. }
            | StoreError::Remote { op, .. }
            | StoreError::Task { op, .. } => *op,
        }
    }
}

/// The two implementations.
#[derive(Debug)]
pub enum Backend {
    Fs(FsStore),
    #[cfg(feature = "aws")]
    S3(S3Store),
}

/// Where inputs, results and job state live: a backend, and (in a server) the health tracker
/// every operation reports to.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    observer: Option<(Arc<StoreHealth>, Arc<Metrics>)>,
    #[cfg(test)]
    before_op: Option<BeforeOp>,
}

/// Awaited before each of a store's operations, in unit tests: puts another party's work
/// between any two operations of this store, to try every interleaving of a race.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct BeforeOp(
    pub(crate) Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
);

#[cfg(test)]
impl std::fmt::Debug for BeforeOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeOp")
    }
}

macro_rules! call {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {{
        #[cfg(test)]
        if let Some(before) = &$self.before_op {
            (before.0)().await;
        }
        let started = std::time::Instant::now();
        let r = match &$self.backend {
            Backend::Fs(s) => s.$method($($arg),*).await,
            #[cfg(feature = "aws")]
            Backend::S3(s) => s.$method($($arg),*).await,
        };
        if let Some((health, metrics)) = &$self.observer {
            metrics.store_op(stringify!($method), started.elapsed());
            health.observe(metrics, &r);
        }
        r
    }};
}

impl Store {
    pub fn new(backend: Backend) -> Store {
        Store {
            backend,
            observer: None,
            #[cfg(test)]
            before_op: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_before_op(mut self, before: BeforeOp) -> Store {
        self.before_op = Some(before);
        self
    }

    /// Reports every operation's outcome to `health`, and its time (and failures) to `metrics`.
    pub(crate) fn observed(mut self, health: Arc<StoreHealth>, metrics: Arc<Metrics>) -> Store {
        self.observer = Some((health, metrics));
        self
    }

    /// Writes `bytes` at `key`; readers see the previous object or the whole new one.
    pub async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StoreError> {
        call!(self, put(key, bytes))
    }

    /// Writes `bytes` at `key` unless an object is there already; true when this call wrote it.
    pub async fn put_if_absent(&self, key: &Key, bytes: Bytes) -> Result<bool, StoreError> {
        call!(self, put_if_absent(key, bytes))
    }

    /// The object at `key`, or `None`.
    pub async fn get(&self, key: &Key) -> Result<Option<Bytes>, StoreError> {
        call!(self, get(key))
    }

    /// Removes the object at `key`; an absent one is not an error.
    pub async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        call!(self, delete(key))
    }

    /// Every object whose key starts with `prefix/`, sorted by key.
    pub async fn list(&self, prefix: &Key) -> Result<Vec<Entry>, StoreError> {
        call!(self, list(prefix))
    }

    /// The names of the segments directly below `prefix/` (S3's common prefixes), sorted.
    pub async fn children(&self, prefix: &Key) -> Result<Vec<String>, StoreError> {
        call!(self, children(prefix))
    }

    /// A URL a client may fetch `key` from directly for `ttl`, where the store has one (S3's
    /// presigned GET); `None` means "serve the bytes yourself".
    pub async fn presigned_get(&self, key: &Key, ttl: Duration) -> Option<String> {
        match &self.backend {
            Backend::Fs(_) => {
                let _ = (key, ttl);
                None
            }
            #[cfg(feature = "aws")]
            Backend::S3(s) => s.presigned_get(key, ttl).await,
        }
    }

    /// `fs` or `s3`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Fs(_) => "fs",
            #[cfg(feature = "aws")]
            Backend::S3(_) => "s3",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_relative_paths() {
        for good in [
            "a",
            "results/2026120214/x.png",
            "jobs/j/items/0.json",
            "A-b_c.d",
        ] {
            assert!(Key::new(good).is_some(), "{good}");
        }
        for bad in [
            "", "/abs", "a//b", "a/", "../x", "a/../b", ".hidden", "a/.tmp-1", "sp ace", "a\\b",
            "é",
        ] {
            assert!(Key::new(bad).is_none(), "{bad}");
        }
        assert!(Key::new("x".repeat(513)).is_none());
    }
}
