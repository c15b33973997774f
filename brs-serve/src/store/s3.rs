//! The store in an S3 bucket (or any S3-compatible endpoint), through aws-sdk-s3. S3 is strongly
//! consistent for reads after writes and for listings, so job state written by one instance is
//! read by any other at once; objects are written whole, so no reader sees half of one.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{Entry, Key, Op, StoreError};

/// Where the bucket is and how to reach it (`[store]` of `kind = "s3"`, explained there).
#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

#[derive(Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

/// Longest a single S3 call may take, retries included: an outage fails the call (and the
/// caller retries later) instead of hanging a request.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

impl S3Store {
    /// A client from the SDK's default chain (instance role, environment) and `settings`.
    pub async fn connect(settings: &S3Settings) -> S3Store {
        let shared =
            crate::aws_sdk::sdk_config(settings.region.as_deref(), OPERATION_TIMEOUT).await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(url) = &settings.endpoint {
            conf = conf.endpoint_url(url).force_path_style(true);
        }
        S3Store::with_client(Client::from_conf(conf.build()), settings)
    }

    /// A store on an already configured client (tests give one with fixed credentials).
    pub fn with_client(client: Client, settings: &S3Settings) -> S3Store {
        let prefix = if settings.prefix.is_empty() || settings.prefix.ends_with('/') {
            settings.prefix.clone()
        } else {
            format!("{}/", settings.prefix)
        };
        S3Store {
            client,
            bucket: settings.bucket.clone(),
            prefix,
        }
    }

    fn full(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    fn remote(op: Op, key: &Key, e: impl std::fmt::Display) -> StoreError {
        StoreError::Remote {
            op,
            key: key.to_string(),
            message: e.to_string(),
        }
    }

    pub(super) async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| Self::remote(Op::Put, key, aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    pub(super) async fn put_if_absent(&self, key: &Key, bytes: Bytes) -> Result<bool, StoreError> {
        // S3's conditional write: 412 when the key exists.
        match self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .if_none_match("*")
            .body(ByteStream::from(bytes))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            Err(e) => Err(Self::remote(
                Op::Put,
                key,
                aws_sdk_s3::error::DisplayErrorContext(e),
            )),
        }
    }

    pub(super) async fn get(&self, key: &Key) -> Result<Option<Bytes>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => {
                return Err(Self::remote(
                    Op::Get,
                    key,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                ));
            }
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| Self::remote(Op::Get, key, e))?;
        Ok(Some(body.into_bytes()))
    }

    pub(super) async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| {
                Self::remote(Op::Delete, key, aws_sdk_s3::error::DisplayErrorContext(e))
            })?;
        Ok(())
    }

    pub(super) async fn list(&self, prefix: &Key) -> Result<Vec<Entry>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}/", self.full(prefix)))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                Self::remote(Op::List, prefix, aws_sdk_s3::error::DisplayErrorContext(e))
            })?;
            for obj in page.contents() {
                let Some(key) = obj
                    .key()
                    .and_then(|k| k.strip_prefix(&self.prefix))
                    .and_then(Key::new)
                else {
                    continue;
                };
                out.push(Entry {
                    key,
                    bytes: obj.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub(super) async fn children(&self, prefix: &Key) -> Result<Vec<String>, StoreError> {
        let base = format!("{}/", self.full(prefix));
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&base)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                Self::remote(Op::List, prefix, aws_sdk_s3::error::DisplayErrorContext(e))
            })?;
            let dirs = page
                .common_prefixes()
                .iter()
                .filter_map(|p| p.prefix())
                .map(|p| p.trim_end_matches('/'));
            let files = page.contents().iter().filter_map(|o| o.key());
            for name in dirs.chain(files).filter_map(|k| k.strip_prefix(&base)) {
                if Key::new(name).is_some() {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub(super) async fn presigned_get(&self, key: &Key, ttl: Duration) -> Option<String> {
        let config = PresigningConfig::expires_in(ttl).ok()?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .presigned(config)
            .await
            .ok()?;
        Some(req.uri().to_string())
    }
}
