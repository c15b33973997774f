//! Translated images in the store, and what clients may do with them.
//!
//! A result's name is an unguessable id (128 random bits from the OS; for a job image, its job's
//! id and its index), never a hash of the photo: holding a photo tells nobody whether it was
//! translated here, nor where its result is. A repeated photo still costs no inference for the
//! client that sent it: a deduplication entry keyed by an HMAC of the client's identity, the
//! photo's hash, the model version, the precision and every parameter (under the deployment's
//! secret) points at the earlier result, for the current and the previous hour; a hit is copied
//! under a fresh name, so a client never learns another request's result name.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::ids::{Hour, hour_of};
use crate::pipeline::{OutFormat, Params};
use crate::secret::Secret;
use crate::store::namespaces::{DEDUP, RESULTS};
use crate::store::{Key, Store, StoreError};

/// A result's public name: `<id>.<ext>`, where `<id>` is a new id or `<job id>-<index>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResultName {
    pub(crate) id: String,
    pub(crate) format: OutFormat,
}

impl ResultName {
    /// Parses what a client sends back; `None` for anything not made by us.
    pub(crate) fn parse(name: &str) -> Option<ResultName> {
        let (id, ext) = name.split_once('.')?;
        let format = OutFormat::from_ext(ext)?;
        let job = match id.split_once('-') {
            Some((job, index)) => {
                (!index.is_empty() && index.len() <= 4 && index.bytes().all(|b| b.is_ascii_digit()))
                    .then_some(job)?
            }
            None => id,
        };
        hour_of(job)?;
        Some(ResultName {
            id: id.to_string(),
            format,
        })
    }

    /// The result of image `index` of job `job`.
    pub(crate) fn of_item(job: &str, index: usize, format: OutFormat) -> ResultName {
        ResultName {
            id: format!("{job}-{index}"),
            format,
        }
    }

    fn hour(&self) -> Option<Hour> {
        hour_of(self.id.split('-').next().unwrap_or(&self.id))
    }

    /// Where it lives in the store.
    pub(crate) fn key(&self) -> Option<Key> {
        Key::new(format!(
            "{RESULTS}/{}/{}.{}",
            self.hour()?,
            self.id,
            self.format.ext()
        ))
    }

    /// `<id>.<ext>`, as URLs carry it.
    pub(crate) fn file_name(&self) -> String {
        format!("{}.{}", self.id, self.format.ext())
    }

    pub(crate) fn url(&self) -> String {
        format!("/v1/results/{}", self.file_name())
    }
}

/// Everything that decides a result's bytes, and who asked.
pub(crate) struct DedupParts<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) input_sha256: [u8; 32],
    pub(crate) version: &'a str,
    pub(crate) precision: &'a str,
    pub(crate) params: &'a Params,
    pub(crate) crop: &'a brs_image::crop::CropConfig,
}

impl DedupParts<'_> {
    /// The HMAC naming this combination; nothing without the secret can compute it.
    pub(crate) fn mac(&self, secret: &Secret) -> String {
        let size = self.params.out_size().to_le_bytes();
        let crop = if self.params.crop_face {
            serde_json::to_vec(self.crop).unwrap_or_default()
        } else {
            b"none".to_vec()
        };
        secret.mac(&[
            b"brs-dedup-v2",
            self.tenant.as_bytes(),
            &self.input_sha256,
            self.version.as_bytes(),
            self.precision.as_bytes(),
            self.params.style.name.as_bytes(),
            self.params.style.direction.to_string().as_bytes(),
            self.params.format.ext().as_bytes(),
            &size,
            &crop,
        ])
    }
}

fn dedup_key(hour: Hour, mac: &str) -> Option<Key> {
    Key::new(format!("{DEDUP}/{hour}/{mac}"))
}

/// SHA-256 of an upload, on the blocking pool (10 MB take a few tens of milliseconds).
pub(crate) async fn input_sha256(input: Bytes) -> [u8; 32] {
    let hash = move || -> [u8; 32] { Sha256::digest(&input).into() };
    tokio::task::spawn_blocking(hash).await.unwrap_or_default()
}

/// The bytes of a result found again for the same client, photo and settings. Never its name:
/// a name is a capability (a job image's names its job), and a tenant may be many people behind
/// one address, so a hit is stored again under a name of the caller's own.
pub(crate) async fn lookup(store: &Store, mac: &str) -> Result<Option<Bytes>, StoreError> {
    let now = Hour::now();
    for hour in [now, now.minus(1)] {
        let Some(key) = dedup_key(hour, mac) else {
            continue;
        };
        let Some(name) = store.get(&key).await? else {
            continue;
        };
        let Some(name) = std::str::from_utf8(&name).ok().and_then(ResultName::parse) else {
            continue;
        };
        let Some(result_key) = name.key() else {
            continue;
        };
        // The result may have been deleted since (DELETE, expiry): then it is no hit.
        if let Some(bytes) = store.get(&result_key).await? {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// Stores a result and, when `mac` is given, the entry that finds it again.
pub(crate) async fn save(
    store: &Store,
    name: &ResultName,
    bytes: Bytes,
    mac: Option<&str>,
) -> Result<(), StoreError> {
    let Some(key) = name.key() else {
        return Ok(());
    };
    store.put(&key, bytes).await?;
    if let Some(dk) = mac.and_then(|m| dedup_key(Hour::now(), m)) {
        store.put(&dk, Bytes::from(name.file_name())).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_nothing_else_does() {
        let id = crate::ids::new_id().expect("rng");
        let single = ResultName::parse(&format!("{id}.png")).expect("single");
        assert_eq!(single.id, id);
        assert!(single.key().expect("key").as_str().starts_with("results/"));
        let item = ResultName::of_item(&id, 3, OutFormat::Webp);
        assert_eq!(ResultName::parse(&item.file_name()), Some(item.clone()));
        assert_eq!(item.url(), format!("/v1/results/{id}-3.webp"));
        for bad in [
            "../../etc/passwd".to_string(),
            format!("{id}.exe"),
            format!("{id}-x.png"),
            format!("{id}-12345.png"),
            format!("{}.png", &id[..40]),
            "a".repeat(64) + ".png",
        ] {
            assert_eq!(ResultName::parse(&bad), None, "{bad}");
        }
    }
}
