//! The result store: translated images kept by a key hashing the input bytes, the model version
//! and every output parameter, in a directory that may be shared by all instances (EFS), so any
//! instance serves any result and a repeated image costs no inference. Writes go to a temp file
//! renamed into place, so a reader never sees half an image.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use brs_image::crop::{CropConfig, Pad};
use brs_image::files::write_atomic;

use crate::metrics::Metrics;
use sha2::{Digest, Sha256};

use crate::pipeline::OutFormat;

/// Everything that determines a result's bytes.
#[derive(Debug, Clone)]
pub(crate) struct KeyParts<'a> {
    pub(crate) input_sha256: &'a [u8; 32],
    pub(crate) version: &'a str,
    pub(crate) direction: &'a str,
    pub(crate) format: OutFormat,
    pub(crate) size: u32,
    /// `None` without cropping; the face framing with crop=face.
    pub(crate) crop: Option<&'a CropConfig>,
}

impl KeyParts<'_> {
    /// `<64 hex>.<ext>`: the file name and the URL segment.
    pub(crate) fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"brs-result-v1\0");
        h.update(self.input_sha256);
        for part in [self.version, self.direction, self.format.ext()] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        h.update(self.size.to_le_bytes());
        match self.crop {
            Some(c) => {
                h.update(b"face");
                for v in [c.margin_top, c.margin_bottom, c.margin_side] {
                    h.update(v.to_le_bytes());
                }
                match c.pad {
                    Pad::Reflect => h.update(b"reflect"),
                    Pad::Color(rgb) => h.update(rgb),
                }
            }
            None => h.update(b"none"),
        }
        format!("{}.{}", hex::encode(h.finalize()), self.format.ext())
    }
}

/// A key as clients send it back; anything else is refused before touching the disk.
pub(crate) fn parse_key(key: &str) -> Option<OutFormat> {
    let (hash, ext) = key.split_once('.')?;
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    OutFormat::from_ext(ext)
}

#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(crate) fn open(dir: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        // Two levels of fan-out keep directories small on a store shared by many instances.
        self.dir.join(&key[..2]).join(key)
    }

    /// The stored bytes, or None when absent; `key` must have passed `parse_key`.
    pub(crate) fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Publishes a result atomically; concurrent writers of the same key write the same bytes.
    pub(crate) fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        write_atomic(&self.path(key), bytes)
    }

    /// Deletes results and published jobs last written more than `max_age` ago, and temp files
    /// of writers that died (older than an hour). Every instance sharing the directory may run it
    /// at once: a file another pruner removed first is simply not counted. Returns the number of
    /// files removed.
    pub(crate) fn prune(&self, max_age: Duration) -> std::io::Result<u64> {
        let now = SystemTime::now();
        let mut removed = 0;
        for sub in std::fs::read_dir(&self.dir)? {
            let sub = sub?.path();
            if !sub.is_dir() {
                continue;
            }
            let entries = match std::fs::read_dir(&sub) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let limit = if name.to_string_lossy().starts_with(".tmp-") {
                    Duration::from_secs(3600).min(max_age)
                } else {
                    max_age
                };
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age > limit);
                if old && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Prunes `store` every `every` until the store is dropped, counting removals in `metrics`.
pub(crate) fn spawn_pruner(
    store: Weak<Store>,
    metrics: Weak<Metrics>,
    max_age: Duration,
    every: Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("results-pruner".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let (Some(store), Some(metrics)) = (store.upgrade(), metrics.upgrade()) else {
                    return;
                };
                match store.prune(max_age) {
                    Ok(n) => metrics.pruned(n),
                    Err(e) => tracing::warn!(error = %e, "pruning the result store failed"),
                }
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: &str) -> String {
        cropped(version, None)
    }

    fn cropped(version: &str, crop: Option<&CropConfig>) -> String {
        KeyParts {
            input_sha256: &[7; 32],
            version,
            direction: "a2b",
            format: OutFormat::Png,
            size: 96,
            crop,
        }
        .key()
    }

    #[test]
    fn key_depends_on_the_face_framing() {
        let framing = CropConfig::default();
        let looser = CropConfig {
            margin_side: 0.5,
            ..framing
        };
        let flat = CropConfig {
            pad: Pad::Color([255, 255, 255]),
            ..framing
        };
        let keys = [
            parts("v1"),
            cropped("v1", Some(&framing)),
            cropped("v1", Some(&looser)),
            cropped("v1", Some(&flat)),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(keys[1], cropped("v1", Some(&CropConfig::default())));
    }

    #[test]
    fn key_depends_on_model_version_and_parses_back() {
        let (a, b) = (parts("v1"), parts("v2"));
        assert_ne!(a, b);
        assert_eq!(parse_key(&a), Some(OutFormat::Png));
        assert_eq!(parse_key("../../etc/passwd"), None);
        assert_eq!(parse_key(&a.replace(".png", ".exe")), None);
    }

    #[test]
    fn prune_removes_only_what_is_older_than_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (old, new) = (parts("old"), parts("new"));
        store.put(&old, b"old").expect("put");
        store.put(&new, b"new").expect("put");
        let job = dir
            .path()
            .join("jobs")
            .join("0123456789abcdef01234567.json");
        write_atomic(&job, b"{}").expect("job");
        let dead_tmp = dir.path().join("jobs").join(".tmp-writer-died");
        std::fs::write(&dead_tmp, b"x").expect("tmp");
        let age = |path: &Path, secs: u64| {
            let f = std::fs::File::options()
                .write(true)
                .open(path)
                .expect("open");
            f.set_modified(SystemTime::now() - Duration::from_secs(secs))
                .expect("set mtime");
        };
        age(&store.path(&old), 3 * 86_400);
        age(&job, 3 * 86_400);
        age(&dead_tmp, 2 * 3600);
        assert_eq!(store.prune(Duration::from_secs(86_400)).expect("prune"), 3);
        assert_eq!(store.get(&old).expect("get"), None);
        assert!(!job.exists() && !dead_tmp.exists());
        assert_eq!(store.get(&new).expect("get").as_deref(), Some(&b"new"[..]));
        assert_eq!(store.prune(Duration::from_secs(86_400)).expect("again"), 0);
    }

    #[test]
    fn put_then_get_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let key = parts("v1");
        assert_eq!(store.get(&key).expect("get"), None);
        store.put(&key, b"abc").expect("put");
        store.put(&key, b"abc").expect("put twice");
        assert_eq!(store.get(&key).expect("get").as_deref(), Some(&b"abc"[..]));
        let names: Vec<String> = std::fs::read_dir(dir.path().join(&key[..2]))
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![key]);
    }
}
