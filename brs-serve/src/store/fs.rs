//! The store as a directory tree (local disk, or EFS shared by every instance): a key is a path
//! below the root. Writes go to a hidden temp file in the target directory and are renamed into
//! place after an fsync, so a reader never sees half an object; keys never start with a dot, so
//! no key names a temp file. File I/O runs on tokio's blocking pool.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{Entry, Key, Op, StoreError};

#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
}

/// Temp files of writers: hidden, so listings and keys never see them.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

impl FsStore {
    pub fn open(root: &Path) -> std::io::Result<FsStore> {
        std::fs::create_dir_all(root)?;
        Ok(FsStore {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    async fn blocking<T: Send + 'static>(
        op: Op,
        key: &Key,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let name = key.to_string();
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(StoreError::Io {
                op,
                key: name,
                source,
            }),
            Err(e) => Err(StoreError::Task {
                op,
                key: name,
                message: e.to_string(),
            }),
        }
    }

    pub(super) async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key);
        Self::blocking(Op::Put, key, move || {
            temp_beside(&path, &bytes)?
                .persist(&path)
                .map_err(|e| e.error)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn put_if_absent(&self, key: &Key, bytes: Bytes) -> Result<bool, StoreError> {
        let path = self.path(key);
        Self::blocking(Op::Put, key, move || {
            match temp_beside(&path, &bytes)?.persist_noclobber(&path) {
                Ok(_) => Ok(true),
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e.error),
            }
        })
        .await
    }

    pub(super) async fn get(&self, key: &Key) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key);
        Self::blocking(Op::Get, key, move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if not_there(&e) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    pub(super) async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let path = self.path(key);
        let root = self.root.clone();
        Self::blocking(Op::Delete, key, move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if not_there(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
            // Empty directories left behind would make listings of old prefixes slow forever.
            let mut dir = path.parent().map(Path::to_path_buf);
            while let Some(d) = dir {
                if d == root || std::fs::remove_dir(&d).is_err() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn list(&self, prefix: &Key) -> Result<Vec<Entry>, StoreError> {
        let base = self.path(prefix);
        let prefix = prefix.clone();
        Self::blocking(Op::List, &prefix.clone(), move || {
            let mut out = Vec::new();
            let mut stack = vec![(base, prefix.as_str().to_string())];
            while let Some((dir, key)) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if not_there(&e) => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name();
                    let Some(child) = Key::new(format!("{key}/{}", name.to_string_lossy())) else {
                        continue;
                    };
                    let meta = match entry.metadata() {
                        Ok(m) => m,
                        // Deleted by another instance between the listing and the stat.
                        Err(e) if not_there(&e) => continue,
                        Err(e) => return Err(e),
                    };
                    if meta.is_dir() {
                        stack.push((entry.path(), child.0));
                    } else {
                        out.push(Entry {
                            key: child,
                            bytes: meta.len(),
                        });
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    pub(super) async fn children(&self, prefix: &Key) -> Result<Vec<String>, StoreError> {
        let base = self.path(prefix);
        Self::blocking(Op::List, prefix, move || {
            let entries = match std::fs::read_dir(&base) {
                Ok(e) => e,
                Err(e) if not_there(&e) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for entry in entries {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if Key::new(name.clone()).is_some() {
                    out.push(name);
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }
}

/// How many times a put creates its directory again after a delete removed it (each try loses
/// only to a delete that empties the directory in between).
const DIR_RACE_ATTEMPTS: u32 = 16;

/// A fsynced temp file holding `bytes` in `path`'s directory (created if needed), ready to be
/// renamed over `path`.
fn temp_beside(path: &Path, bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // A delete of a directory's last object removes the directory, and one racing this put can
    // do so between its creation and the temp file's: create_dir_all then fails with EEXIST
    // (the directory was there, then gone), the temp file with ENOENT. Try again; once the temp
    // file is in, the directory is not empty and stays.
    let mut attempt = 0;
    let mut tmp = loop {
        let made = std::fs::create_dir_all(dir).and_then(|()| {
            tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(dir)
        });
        match made {
            Ok(tmp) => break tmp,
            Err(e)
                if attempt < DIR_RACE_ATTEMPTS
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::AlreadyExists
                    ) =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    Ok(tmp)
}

/// Absent. A path through something that is not a directory is not "absent" but a damaged
/// store, and must count against its health like any other failure.
fn not_there(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}
