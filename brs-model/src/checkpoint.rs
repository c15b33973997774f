//! The checkpoint directory: the contract between the trainer and the servers on shared storage.
//!
//! ```text
//! RUN/
//!   ckpt-0001000/      meta.json + one safetensors file per network + optimizer/RNG state
//!   latest             names the newest complete checkpoint directory
//! ```
//! A writer builds a hidden `.ckpt-0001000.tmp-<pid>-<nanos>/`, fsyncs every file, writes
//! `meta.json` (with the SHA-256 of every file) last, renames the directory into place, and only
//! then replaces `latest` by renaming a fsynced temp file over it. A reader (on another machine,
//! over NFS/EFS) that resolves `latest` therefore always finds a complete directory, whenever the
//! writer was killed. Loading verifies every hash, so a damaged file is a clear error.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
#[cfg(feature = "torch")]
use tch::{Kind, Tensor};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::floats::{self, Floats};
use crate::names::Direction;
#[cfg(feature = "torch")]
use crate::tensors;

/// Version of the on-disk layout; readers refuse newer versions instead of misreading them.
/// Version 2 added [`META_SHA256`]; version 1 checkpoints (without it) are still read.
pub const FORMAT_VERSION: u32 = 2;
/// The pointer file in a run directory.
pub const LATEST: &str = "latest";
/// The metadata file in a checkpoint directory.
pub const META: &str = "meta.json";
/// The SHA-256 of meta.json, so the file that lists every other file's hash (and sizes the
/// network a reader allocates) is covered by the same integrity check.
pub const META_SHA256: &str = "meta.json.sha256";
/// Prefix of training checkpoint directories in a run directory (brs-train's and imported ones
/// alike, so pruning sees both).
pub const CKPT_PREFIX: &str = "ckpt";
/// The training checkpoint file holding both optimizers' moments and step counts.
pub const OPTIM_FILE: &str = "optim.safetensors";
/// The optimizer of both generators, as [`OPTIM_FILE`] names it.
pub const G_OPTIMIZER: &str = "G";
/// The optimizer of the four discriminators, as [`OPTIM_FILE`] names it.
pub const D_OPTIMIZER: &str = "D";

/// The key of one Adam moment (`m` or `v`) of a parameter (named by [`adam_param_name`]) in
/// [`OPTIM_FILE`]: `G/genA2B.encoder.conv_in.weight/m`.
pub fn adam_moment_key(optimizer: &str, param: &str, moment: &str) -> String {
    format!("{optimizer}/{param}/{moment}")
}

/// How an optimizer names a network's variable: `genA2B.encoder.conv_in.weight`.
pub fn adam_param_name(network: &str, variable: &str) -> String {
    format!("{network}.{variable}")
}

/// The key of an optimizer's step count in [`OPTIM_FILE`].
pub fn adam_step_key(optimizer: &str) -> String {
    format!("{optimizer}/step")
}

/// The training checkpoint file holding the data stream's position.
pub const RNG_FILE: &str = "rng.json";

/// Whether a checkpoint holds everything to resume training or one generator for serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    Training,
    Export,
}

/// Size and SHA-256 of one file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

/// `meta.json`: what a checkpoint is, and the hash of every other file in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    pub format_version: u32,
    pub kind: CheckpointKind,
    pub model: ModelConfig,
    /// Training iterations done when it was written.
    pub iteration: u64,
    /// RFC 3339 UTC time of writing.
    pub created: String,
    /// File name -> size and hash, for every file but meta.json.
    pub files: BTreeMap<String, FileEntry>,
    /// The generator's direction, for exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The trainer's whole configuration, for training checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    /// Where the weights came from when not from brs-train (e.g. an imported PyTorch file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl CheckpointMeta {
    /// A fresh description; files are filled in by the writer.
    pub fn new(kind: CheckpointKind, model: &ModelConfig, iteration: u64) -> Self {
        CheckpointMeta {
            format_version: FORMAT_VERSION,
            kind,
            model: model.clone(),
            iteration,
            created: now_rfc3339(),
            files: BTreeMap::new(),
            direction: None,
            training: None,
            source: None,
        }
    }

    /// A short content id of the weights: changes whenever any file changes.
    pub fn version_id(&self) -> String {
        let mut h = Sha256::new();
        for (name, entry) in &self.files {
            h.update(name.as_bytes());
            h.update(entry.sha256.as_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// The directory name of the checkpoint at `iteration`: sorts by iteration.
pub fn checkpoint_name(prefix: &str, iteration: u64) -> String {
    format!("{prefix}-{iteration:07}")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| ModelError::io(dir, e))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| ModelError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| ModelError::io(path, e))
}

fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name != META
        && name != META_SHA256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Builds one checkpoint in a hidden temp directory and publishes it atomically.
/// Dropped without `commit`, it removes its temp directory and publishes nothing.
#[derive(Debug)]
pub struct CheckpointWriter {
    run_dir: PathBuf,
    name: String,
    tmp: PathBuf,
    files: BTreeMap<String, FileEntry>,
    committed: bool,
}

impl CheckpointWriter {
    /// Starts checkpoint `name` in `run_dir` (created if missing).
    pub fn begin(run_dir: &Path, name: &str) -> Result<Self> {
        if !valid_file_name(name) {
            return Err(ModelError::CheckpointName(name.to_string()));
        }
        fs::create_dir_all(run_dir).map_err(|e| ModelError::io(run_dir, e))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = run_dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
        fs::create_dir(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        Ok(CheckpointWriter {
            run_dir: run_dir.to_path_buf(),
            name: name.to_string(),
            tmp,
            files: BTreeMap::new(),
            committed: false,
        })
    }

    /// Adds a file (fsynced, hashed).
    pub fn add_file(&mut self, file: &str, bytes: &[u8]) -> Result<()> {
        if !valid_file_name(file) {
            return Err(ModelError::FileName(file.to_string()));
        }
        if self.files.contains_key(file) {
            return Err(ModelError::DuplicateFile(file.to_string()));
        }
        write_synced(&self.tmp.join(file), bytes)?;
        self.files.insert(
            file.to_string(),
            FileEntry {
                sha256: sha256_hex(bytes),
                bytes: bytes.len() as u64,
            },
        );
        Ok(())
    }

    /// Adds a safetensors file of named tensors, optionally converting floats to `as_kind`.
    #[cfg(feature = "torch")]
    pub fn add_tensors(
        &mut self,
        file: &str,
        named: &[(String, Tensor)],
        as_kind: Option<Kind>,
    ) -> Result<()> {
        let bytes = tensors::to_safetensors(named, as_kind)?;
        self.add_file(file, &bytes)
    }

    /// Writes meta.json, moves the directory into place, then points `latest` at it.
    /// Refuses to replace an existing checkpoint of the same name.
    pub fn commit(mut self, mut meta: CheckpointMeta) -> Result<PathBuf> {
        meta.files = std::mem::take(&mut self.files);
        let json = serde_json::to_vec_pretty(&meta).map_err(ModelError::Metadata)?;
        write_synced(&self.tmp.join(META), &json)?;
        write_synced(
            &self.tmp.join(META_SHA256),
            format!("{}\n", sha256_hex(&json)).as_bytes(),
        )?;
        fsync_dir(&self.tmp)?;
        let dest = self.run_dir.join(&self.name);
        if dest.exists() {
            // A writer killed between its rename and the pointer update leaves a complete but
            // unpublished directory; a resumed run then writes the same iteration again. Move the
            // orphan aside (prune removes it) rather than fail; never replace what `latest` names.
            if read_latest(&self.run_dir)?.as_deref() == Some(self.name.as_str()) {
                return Err(ModelError::io(
                    &dest,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "checkpoint already exists and is the latest",
                    ),
                ));
            }
            let tmp_name = self
                .tmp
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            let aside = self
                .run_dir
                .join(tmp_name.unwrap_or_default().replace(".tmp-", ".orphan-"));
            fs::rename(&dest, &aside).map_err(|e| ModelError::io(&dest, e))?;
        }
        fs::rename(&self.tmp, &dest).map_err(|e| ModelError::io(&dest, e))?;
        self.committed = true;
        fsync_dir(&self.run_dir)?;
        set_latest(&self.run_dir, &self.name)?;
        Ok(dest)
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover hidden temp dir is never read, and `prune` removes it.
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Replaces `run_dir/latest` atomically so it names `name`.
pub fn set_latest(run_dir: &Path, name: &str) -> Result<()> {
    let tmp = run_dir.join(format!(".{LATEST}.tmp-{}", std::process::id()));
    write_synced(&tmp, format!("{name}\n").as_bytes())?;
    let latest = run_dir.join(LATEST);
    fs::rename(&tmp, &latest).map_err(|e| ModelError::io(&latest, e))?;
    fsync_dir(run_dir)
}

/// The checkpoint name `latest` points at, or None when the run has none yet.
pub fn read_latest(run_dir: &Path) -> Result<Option<String>> {
    let path = run_dir.join(LATEST);
    match fs::read_to_string(&path) {
        Ok(s) => {
            let name = s.trim().to_string();
            if valid_file_name(&name) {
                Ok(Some(name))
            } else {
                Err(ModelError::Corrupt {
                    path,
                    reason: format!("names an invalid directory {name:?}"),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ModelError::io(path, e)),
    }
}

/// Resolves a user's path: a checkpoint directory (holding meta.json) is itself; a run directory
/// resolves through its `latest` pointer.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join(META).is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(ModelError::NotACheckpoint {
            path: path.to_path_buf(),
            reason: "no such directory".into(),
        });
    }
    match read_latest(path)? {
        Some(name) => Ok(path.join(name)),
        None => Err(ModelError::NotACheckpoint {
            path: path.to_path_buf(),
            reason: format!("neither {META} nor a `{LATEST}` pointer inside"),
        }),
    }
}

/// An opened checkpoint: its directory and metadata. Files are verified as they are read.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub meta: CheckpointMeta,
}

impl Checkpoint {
    /// Opens a checkpoint or run directory (see `resolve`) and reads its metadata.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = resolve(path)?;
        let meta_path = dir.join(META);
        let bytes = fs::read(&meta_path).map_err(|e| ModelError::io(&meta_path, e))?;
        let recorded = match fs::read_to_string(dir.join(META_SHA256)) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ModelError::io(dir.join(META_SHA256), e)),
        };
        if let Some(expected) = &recorded {
            let found = sha256_hex(&bytes);
            if &found != expected {
                return Err(ModelError::HashMismatch {
                    path: dir.clone(),
                    file: META.into(),
                    expected: expected.clone(),
                    found,
                });
            }
        }
        let meta: CheckpointMeta =
            serde_json::from_slice(&bytes).map_err(|e| ModelError::Corrupt {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?;
        if meta.format_version > FORMAT_VERSION {
            return Err(ModelError::Corrupt {
                path: meta_path,
                reason: format!(
                    "format version {} is newer than this build understands ({FORMAT_VERSION}); upgrade brs",
                    meta.format_version
                ),
            });
        }
        if meta.format_version >= 2 && recorded.is_none() {
            return Err(ModelError::Corrupt {
                path: dir.clone(),
                reason: format!(
                    "{META_SHA256} is missing (format version {})",
                    meta.format_version
                ),
            });
        }
        meta.model.validate()?;
        Ok(Checkpoint { dir, meta })
    }

    /// meta.json's entry for one of the checkpoint's files.
    fn entry(&self, file: &str) -> Result<&FileEntry> {
        self.meta
            .files
            .get(file)
            .ok_or_else(|| ModelError::MissingFile {
                path: self.dir.clone(),
                file: file.to_string(),
                available: self
                    .meta
                    .files
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Reads one file, checking its size and SHA-256 against meta.json.
    pub fn read_file(&self, file: &str) -> Result<Vec<u8>> {
        let entry = self.entry(file)?;
        let path = self.dir.join(file);
        let bytes = fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        let found = sha256_hex(&bytes);
        if bytes.len() as u64 != entry.bytes || found != entry.sha256 {
            return Err(ModelError::HashMismatch {
                path: self.dir.clone(),
                file: file.to_string(),
                expected: entry.sha256.clone(),
                found,
            });
        }
        Ok(bytes)
    }

    /// Streams a safetensors file of the checkpoint into `vs`'s variables (see
    /// [`tensors::stream_into`]), checking its size and SHA-256 against meta.json as it goes. On
    /// an error the variables may hold part of the file: the caller discards the store.
    #[cfg(feature = "torch")]
    pub fn load_into(&self, file: &str, vs: &tch::nn::VarStore) -> Result<()> {
        let entry = self.entry(file)?;
        let path = self.dir.join(file);
        let f = fs::File::open(&path).map_err(|e| ModelError::io(&path, e))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
        let mut hash = Sha256::new();
        let loaded = tensors::stream_into(vs, &mut reader, &mut |b: &[u8]| hash.update(b));
        // Whatever the tensors left (nothing, in a file we wrote) still counts for the hash.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut rest).map_err(|e| ModelError::io(&path, e))?;
        hash.update(&rest);
        let found = hex::encode(hash.finalize());
        // Every byte went through the hash, so it covers the size too; a damaged file is reported
        // as such, whatever the parse made of it.
        if found != entry.sha256 {
            return Err(ModelError::HashMismatch {
                path: self.dir.clone(),
                file: file.to_string(),
                expected: entry.sha256.clone(),
                found,
            });
        }
        loaded.map(|_| ()).map_err(|e| ModelError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Reads and verifies a safetensors file.
    #[cfg(feature = "torch")]
    pub fn read_tensors(&self, file: &str) -> Result<BTreeMap<String, Tensor>> {
        tensors::from_safetensors(&self.read_file(file)?).map_err(|e| self.corrupt(file, e))
    }

    /// Reads and verifies a safetensors file of floats, as float32 arrays without libtorch.
    pub fn read_floats(&self, file: &str) -> Result<BTreeMap<String, Floats>> {
        floats::from_safetensors(&self.read_file(file)?).map_err(|e| self.corrupt(file, e))
    }

    fn corrupt(&self, file: &str, e: ModelError) -> ModelError {
        ModelError::Corrupt {
            path: self.dir.join(file),
            reason: e.to_string(),
        }
    }

    /// Verifies every file of the checkpoint.
    pub fn verify(&self) -> Result<()> {
        for file in self.meta.files.keys() {
            self.read_file(file)?;
        }
        Ok(())
    }
}

/// Removes all but the newest `keep` checkpoints named `<prefix>-NNNNNNN` (never the one `latest`
/// names) and any temp directory a killed writer left. One writer per run directory is assumed.
/// Returns what was removed.
pub fn prune(run_dir: &Path, prefix: &str, keep: usize) -> Result<Vec<PathBuf>> {
    let latest = read_latest(run_dir)?;
    let mut ours = Vec::new();
    let mut removed = Vec::new();
    let entries = fs::read_dir(run_dir).map_err(|e| ModelError::io(run_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ModelError::io(run_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let own_pid = format!(".tmp-{}-", std::process::id());
        let leftover =
            (name.contains(".tmp-") && !name.contains(&own_pid)) || name.contains(".orphan-");
        if name.starts_with('.') && leftover {
            let path = entry.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
            removed.push(path);
            continue;
        }
        let iteration = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(it) = iteration {
            ours.push((it, name));
        }
    }
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    for (_, name) in ours.into_iter().take(excess) {
        if Some(&name) == latest.as_ref() {
            continue;
        }
        let path = run_dir.join(&name);
        fs::remove_dir_all(&path).map_err(|e| ModelError::io(&path, e))?;
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write(run: &Path, it: u64, payload: &[u8]) -> PathBuf {
        let mut w = CheckpointWriter::begin(run, &checkpoint_name("ckpt", it)).unwrap();
        w.add_file("data.bin", payload).unwrap();
        w.commit(CheckpointMeta::new(
            CheckpointKind::Training,
            &ModelConfig::default(),
            it,
        ))
        .unwrap()
    }

    #[test]
    fn latest_names_the_newest_and_hashes_are_checked() {
        let run = tempfile::tempdir().unwrap();
        assert!(Checkpoint::open(run.path()).is_err());
        write(run.path(), 1, b"one");
        let second = write(run.path(), 2, b"two");
        let ck = Checkpoint::open(run.path()).unwrap();
        assert_eq!(ck.dir, second);
        assert_eq!(ck.meta.iteration, 2);
        assert_eq!(ck.read_file("data.bin").unwrap(), b"two");
        fs::write(second.join("data.bin"), b"tw0").unwrap();
        let err = ck.read_file("data.bin").unwrap_err();
        assert!(matches!(err, ModelError::HashMismatch { .. }), "{err}");
        assert!(matches!(
            ck.read_file("nope.bin").unwrap_err(),
            ModelError::MissingFile { .. }
        ));
    }

    #[test]
    fn bad_names_are_refused_by_what_is_wrong() {
        let run = tempfile::tempdir().unwrap();
        for name in ["", ".hidden", "../up", "a/b"] {
            assert!(
                matches!(
                    CheckpointWriter::begin(run.path(), name),
                    Err(ModelError::CheckpointName(n)) if n == name
                ),
                "{name:?}"
            );
        }
        let mut w = CheckpointWriter::begin(run.path(), "ckpt-0000001").unwrap();
        for file in [META, META_SHA256, ".x", "a b"] {
            let err = w.add_file(file, b"x").unwrap_err();
            assert!(
                matches!(&err, ModelError::FileName(f) if f == file),
                "{err}"
            );
        }
        w.add_file("data.bin", b"x").unwrap();
        let err = w.add_file("data.bin", b"y").unwrap_err();
        assert!(
            matches!(&err, ModelError::DuplicateFile(f) if f == "data.bin"),
            "{err}"
        );
    }

    #[test]
    fn an_abandoned_writer_leaves_nothing_visible() {
        let run = tempfile::tempdir().unwrap();
        write(run.path(), 1, b"one");
        {
            let mut w = CheckpointWriter::begin(run.path(), "ckpt-0000002").unwrap();
            w.add_file("data.bin", b"partial").unwrap();
        }
        let names: Vec<_> = fs::read_dir(run.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(
            read_latest(run.path()).unwrap().as_deref(),
            Some("ckpt-0000001")
        );
    }

    #[test]
    fn prune_keeps_the_newest_and_latest() {
        let run = tempfile::tempdir().unwrap();
        for it in 1..=5 {
            write(run.path(), it, b"x");
        }
        // A stale temp dir from a killed writer of another process.
        fs::create_dir(run.path().join(".ckpt-0000009.tmp-1-2")).unwrap();
        // Point latest at an old one (e.g. a rollback): pruning must keep it.
        set_latest(run.path(), "ckpt-0000002").unwrap();
        let removed = prune(run.path(), "ckpt", 2).unwrap();
        let mut left: Vec<_> = fs::read_dir(run.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["ckpt-0000002", "ckpt-0000004", "ckpt-0000005", "latest"]
        );
        assert_eq!(removed.len(), 3);
        Checkpoint::open(run.path()).unwrap().verify().unwrap();
    }

    #[test]
    fn an_unpublished_orphan_is_replaced_but_latest_never_is() {
        let run = tempfile::tempdir().unwrap();
        write(run.path(), 1, b"one");
        // Simulate a writer killed after its rename, before moving `latest`.
        write(run.path(), 2, b"orphan");
        set_latest(run.path(), "ckpt-0000001").unwrap();
        write(run.path(), 2, b"again");
        let ck = Checkpoint::open(run.path()).unwrap();
        assert_eq!(ck.read_file("data.bin").unwrap(), b"again");
        // Rewriting the checkpoint `latest` names is refused.
        let mut w = CheckpointWriter::begin(run.path(), "ckpt-0000002").unwrap();
        w.add_file("data.bin", b"x").unwrap();
        let meta = CheckpointMeta::new(CheckpointKind::Training, &ModelConfig::default(), 2);
        assert!(w.commit(meta).is_err());
        assert_eq!(ck.read_file("data.bin").unwrap(), b"again");
        prune(run.path(), "ckpt", 5).unwrap();
        let hidden = fs::read_dir(run.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(hidden, 0, "prune removes orphans moved aside");
    }

    #[test]
    fn bad_metadata_is_a_clear_error() {
        let run = tempfile::tempdir().unwrap();
        let dir = write(run.path(), 1, b"x");
        // meta.json sizes the network a reader allocates: an edit is caught by its own hash.
        let meta = fs::read_to_string(dir.join(META)).unwrap();
        fs::write(dir.join(META), meta.replace("\"ch\": 64", "\"ch\": 1024")).unwrap();
        let err = Checkpoint::open(run.path()).unwrap_err();
        assert!(
            matches!(&err, ModelError::HashMismatch { file, .. } if file == META),
            "{err}"
        );
        // Without its hash a current-format checkpoint is refused...
        fs::remove_file(dir.join(META_SHA256)).unwrap();
        let err = Checkpoint::open(run.path()).unwrap_err();
        assert!(err.to_string().contains(META_SHA256), "{err}");
        // ...and a legacy one (format 1, before the hash existed) still has to parse.
        fs::write(dir.join(META), b"{not json").unwrap();
        let err = Checkpoint::open(run.path()).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }), "{err}");
        fs::write(run.path().join(LATEST), "../../etc\n").unwrap();
        assert!(Checkpoint::open(run.path()).is_err());
    }
}
