//! Reads TensorFlow checkpoints (tensor bundles, as `tf.compat.v1.train.Saver` and
//! `tf.train.Checkpoint` write them) into plain tensors, without TensorFlow.
//!
//! A checkpoint `PREFIX` is `PREFIX.index`, a LevelDB table (`table`) mapping the empty key to a
//! `BundleHeaderProto` and each tensor name to a `BundleEntryProto` (`proto`), plus the data
//! shards `PREFIX.data-0000K-of-0000N` that hold each tensor's bytes where its entry says
//! (`tensorflow/core/util/tensor_bundle/tensor_bundle.cc`). [`state`] finds the checkpoints in a
//! directory and the latest one, as TensorFlow does from its `checkpoint` file.
//!
//! The files are untrusted input, like the `.pt` files of [`crate::pickle`]: every block's and
//! every tensor's crc32c is verified, every varint, length, offset and shape is checked with
//! checked arithmetic, and nothing read from a file can panic. What the index can make this
//! reader hold is capped in proportion to the index's size (prefix-compressed keys could
//! otherwise expand quadratically), and a tensor's memory is allocated only once its declared
//! size has been checked against its shape and against the shard file's real length.
//! Big-endian bundles, compressed index blocks and partitioned (sliced) tensors are refused
//! with errors that say so.

mod dtype;
mod proto;
pub mod state;
mod table;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use dtype::DataType;
pub use state::{
    CheckpointState, Prefix, checkpoint_state, latest_checkpoint, list_prefixes, prefix_for_step,
};

use crate::error::TfBundleError;

type Result<T> = std::result::Result<T, TfBundleError>;

/// The bundle format version this reader implements (`kTensorBundleVersion`).
const BUNDLE_VERSION: i32 = 1;
/// TensorFlow's `TensorShape::MaxDimensions()`.
const MAX_DIMS: usize = 254;
/// Tensor bytes are checksummed and converted through a buffer of this size (a multiple of
/// every element width).
const CHUNK: usize = 64 << 10;

/// One tensor of a bundle, as its index entry describes it (validated at open).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<usize>,
    /// Where its bytes are; `None` for a partitioned variable saved in slices.
    pub location: Option<Location>,
    /// How many slices a partitioned variable was saved in (0 for a whole tensor).
    pub slices: usize,
}

impl Entry {
    /// Number of elements (1 for a scalar). Fits: checked at open.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// Where a tensor's bytes are: `size` bytes at `offset` in data shard `shard`, whose crc32c
/// (unmasked) is `crc32c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub shard: u32,
    pub offset: u64,
    pub size: u64,
    pub crc32c: u32,
}

/// How to decode one element: its width in bytes and the function reading it from exactly
/// that many little-endian bytes.
type Decoder<T> = (usize, fn(&[u8]) -> T);

/// A tensor's values in row-major order, and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// An opened checkpoint: its index read and checked; tensors are read on demand.
#[derive(Debug)]
pub struct Bundle {
    prefix: PathBuf,
    num_shards: u32,
    entries: BTreeMap<String, Entry>,
    /// Entries holding the slices of partitioned variables (keys TensorFlow encodes in binary,
    /// starting with a NUL byte): counted, not listed.
    slice_parts: usize,
}

impl Bundle {
    /// Opens the checkpoint `PREFIX` (also accepted: `PREFIX.index`, `PREFIX.meta` or one of
    /// its data shards). Reads the whole index and checks that every data shard a tensor is in
    /// exists and is long enough for it; tensor bytes are read later.
    pub fn open(path: &Path) -> Result<Bundle> {
        if path.is_dir() {
            return Err(TfBundleError::NotABundle {
                path: path.to_owned(),
                reason: "it is a directory; give a checkpoint prefix (DIR/model.ckpt-1000 for \
                         DIR/model.ckpt-1000.index), or find one with tfbundle::latest_checkpoint \
                         or tfbundle::prefix_for_step"
                    .to_owned(),
            });
        }
        let prefix = strip_suffix(path);
        let index_path = index_path(&prefix);
        let mut file = match File::open(&index_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A file given by mistake (a PyTorch `.pt`, say) deserves more than "not found".
                if path.is_file() {
                    let reason = sniff_file(path).unwrap_or_else(|| {
                        format!("there is no {} beside it", index_path.display())
                    });
                    return Err(TfBundleError::NotABundle {
                        path: path.to_owned(),
                        reason,
                    });
                }
                return Err(TfBundleError::MissingIndex {
                    path: prefix,
                    index: index_path,
                });
            }
            Err(cause) => {
                return Err(TfBundleError::Io {
                    path: index_path,
                    cause,
                });
            }
        };
        if let Some(reason) = sniff(&mut file) {
            return Err(TfBundleError::NotABundle {
                path: index_path,
                reason,
            });
        }
        let (num_shards, entries, slice_parts) = read_index(&mut file, &index_path)?;
        let bundle = Bundle {
            prefix,
            num_shards,
            entries,
            slice_parts,
        };
        bundle.check_shards()?;
        Ok(bundle)
    }

    /// The prefix the bundle was opened as.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// How many data shards the header declares.
    pub fn num_shards(&self) -> u32 {
        self.num_shards
    }

    /// Every tensor, sorted by name (TensorFlow's order). The slices of partitioned variables
    /// are not listed; their variable is, with its `slices` count.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// How many slice entries (of partitioned variables) the index holds besides `entries()`.
    pub fn slice_parts(&self) -> usize {
        self.slice_parts
    }

    /// The path of data shard `shard`.
    pub fn shard_path(&self, shard: u32) -> PathBuf {
        suffixed(
            &self.prefix,
            &format!(".data-{shard:05}-of-{:05}", self.num_shards),
        )
    }

    /// Reads a floating-point tensor as f32: DT_FLOAT as is, DT_HALF and DT_BFLOAT16 widened
    /// exactly, DT_DOUBLE rounded to nearest.
    pub fn read_f32(&self, name: &str) -> Result<TensorData<f32>> {
        self.read_as(
            name,
            "only DT_FLOAT, DT_HALF, DT_BFLOAT16 and DT_DOUBLE tensors can be read as f32",
            |dtype| -> Option<Decoder<f32>> {
                match dtype {
                    DataType::FLOAT => Some((4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
                    DataType::HALF => {
                        Some((2, |b| dtype::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))))
                    }
                    DataType::BFLOAT16 => {
                        Some((2, |b| dtype::bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))))
                    }
                    DataType::DOUBLE => Some((8, |b| {
                        f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                    })),
                    _ => None,
                }
            },
        )
    }

    /// Reads an integer tensor (DT_INT64, or DT_INT32 widened) as i64: `global_step`, say.
    pub fn read_i64(&self, name: &str) -> Result<TensorData<i64>> {
        self.read_as(
            name,
            "only DT_INT64 and DT_INT32 tensors can be read as i64",
            |dtype| -> Option<Decoder<i64>> {
                match dtype {
                    DataType::INT64 => Some((8, |b| {
                        i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                    })),
                    DataType::INT32 => Some((4, |b| {
                        i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    })),
                    _ => None,
                }
            },
        )
    }

    /// Verifies the checksum of every tensor stored as a plain array, whatever its type, and
    /// returns how many were checked. Strings and variants are skipped: TensorFlow checksums
    /// them over a re-encoding of their bytes, not over the bytes in the file.
    pub fn verify(&self) -> Result<usize> {
        let mut checked = 0;
        for entry in self.entries.values() {
            if let (Some(loc), Some(_)) = (entry.location, entry.dtype.element_size()) {
                let (file, path) = self.open_shard(entry, loc)?;
                self.stream(entry, loc, file, &path, |_| {})?;
                checked += 1;
            }
        }
        Ok(checked)
    }

    /// Looks `name` up, checks its type has a decoder of `width` bytes per element, then
    /// allocates for its values (only after the shard is known to hold them) and decodes them
    /// while checksumming.
    fn read_as<T>(
        &self,
        name: &str,
        wanted: &'static str,
        decoder: impl Fn(DataType) -> Option<Decoder<T>>,
    ) -> Result<TensorData<T>> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| TfBundleError::NoSuchTensor {
                prefix: self.prefix.clone(),
                tensor: name.to_owned(),
                count: self.entries.len(),
            })?;
        let Some(loc) = entry.location else {
            return Err(TfBundleError::Sliced {
                prefix: self.prefix.clone(),
                tensor: name.to_owned(),
                slices: entry.slices,
            });
        };
        let (width, decode) =
            decoder(entry.dtype).ok_or_else(|| TfBundleError::UnsupportedDtype {
                prefix: self.prefix.clone(),
                tensor: name.to_owned(),
                dtype: entry.dtype.name().into_owned(),
                wanted,
            })?;
        // Checked at open through the type's element size; repeated here because decoding
        // relies on whole elements.
        let numel = usize::try_from(entry.numel())
            .ok()
            .filter(|&n| n.checked_mul(width).is_some_and(|b| b as u64 == loc.size))
            .ok_or_else(|| self.shape_size(entry, loc, width))?;
        let (file, path) = self.open_shard(entry, loc)?;
        let mut data = Vec::with_capacity(numel);
        self.stream(entry, loc, file, &path, |chunk| {
            data.extend(chunk.chunks_exact(width).map(decode));
        })?;
        Ok(TensorData {
            shape: entry.shape.clone(),
            data,
        })
    }

    /// The shard file positioned at the tensor, after checking (on the open file, which is
    /// what will be read) that it is long enough.
    fn open_shard(&self, entry: &Entry, loc: Location) -> Result<(File, PathBuf)> {
        let path = self.shard_path(loc.shard);
        let mut file =
            File::open(&path).map_err(|cause| self.shard_error(entry, loc, &path, cause))?;
        let len = file
            .metadata()
            .map_err(|cause| self.shard_error(entry, loc, &path, cause))?
            .len();
        self.check_fits(entry, loc, &path, len)?;
        file.seek(SeekFrom::Start(loc.offset))
            .map_err(|cause| TfBundleError::Io {
                path: path.clone(),
                cause,
            })?;
        Ok((file, path))
    }

    /// Feeds the tensor's bytes to `sink` chunk by chunk (each a whole number of elements),
    /// then checks their crc32c.
    fn stream(
        &self,
        entry: &Entry,
        loc: Location,
        mut file: File,
        path: &Path,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<()> {
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(loc.size).unwrap_or(CHUNK))];
        let mut left = loc.size;
        let mut crc = 0u32;
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
            let chunk = &mut buf[..n];
            file.read_exact(chunk).map_err(|cause| {
                if cause.kind() == std::io::ErrorKind::UnexpectedEof {
                    // The file shrank after its length was checked.
                    self.truncated(entry, loc, path, loc.offset + (loc.size - left))
                } else {
                    TfBundleError::Io {
                        path: path.to_owned(),
                        cause,
                    }
                }
            })?;
            crc = crc32c::crc32c_append(crc, chunk);
            sink(chunk);
            left -= n as u64;
        }
        if crc != loc.crc32c {
            return Err(TfBundleError::TensorChecksum {
                path: path.to_owned(),
                tensor: entry.name.clone(),
                stored: loc.crc32c,
                computed: crc,
            });
        }
        Ok(())
    }

    /// Every shard a tensor is in must exist and hold it, so that a damaged checkpoint fails
    /// at open rather than halfway through an import. Each shard is looked at once; shards
    /// no tensor uses are not looked at.
    fn check_shards(&self) -> Result<()> {
        let mut lens: BTreeMap<u32, u64> = BTreeMap::new();
        for entry in self.entries.values() {
            let Some(loc) = entry.location else { continue };
            let len = match lens.get(&loc.shard) {
                Some(&len) => len,
                None => {
                    let path = self.shard_path(loc.shard);
                    let meta = std::fs::metadata(&path)
                        .map_err(|cause| self.shard_error(entry, loc, &path, cause))?;
                    if !meta.is_file() {
                        return Err(TfBundleError::NotABundle {
                            path,
                            reason: "a data shard that is not a file".to_owned(),
                        });
                    }
                    lens.insert(loc.shard, meta.len());
                    meta.len()
                }
            };
            self.check_fits(entry, loc, &self.shard_path(loc.shard), len)?;
        }
        Ok(())
    }

    fn check_fits(&self, entry: &Entry, loc: Location, path: &Path, len: u64) -> Result<()> {
        // The sum cannot overflow: checked at open.
        if loc.offset.saturating_add(loc.size) > len {
            return Err(self.truncated(entry, loc, path, len));
        }
        Ok(())
    }

    fn truncated(&self, entry: &Entry, loc: Location, path: &Path, len: u64) -> TfBundleError {
        TfBundleError::TruncatedShard {
            path: path.to_owned(),
            tensor: entry.name.clone(),
            offset: loc.offset,
            end: loc.offset.saturating_add(loc.size),
            len,
        }
    }

    fn shard_error(
        &self,
        entry: &Entry,
        loc: Location,
        path: &Path,
        cause: std::io::Error,
    ) -> TfBundleError {
        if cause.kind() == std::io::ErrorKind::NotFound {
            TfBundleError::MissingShard {
                path: path.to_owned(),
                shard: loc.shard,
                num_shards: self.num_shards,
                tensor: entry.name.clone(),
            }
        } else {
            TfBundleError::Io {
                path: path.to_owned(),
                cause,
            }
        }
    }

    fn shape_size(&self, entry: &Entry, loc: Location, width: usize) -> TfBundleError {
        TfBundleError::ShapeSize {
            path: index_path(&self.prefix),
            tensor: entry.name.clone(),
            dtype: entry.dtype.name().into_owned(),
            shape: entry.shape.clone(),
            expected: entry.numel().saturating_mul(width as u64),
            size: loc.size,
        }
    }
}

/// What the index may make the reader hold, beyond the index itself: sixteen times its size
/// (keys are prefix-compressed, so stored keys can be several times the bytes that encode
/// them) plus a floor for small files.
struct Budget {
    cap: u64,
    left: u64,
}

impl Budget {
    fn for_index(len: u64) -> Budget {
        let cap = len.saturating_mul(16).saturating_add(16 << 20);
        Budget { cap, left: cap }
    }

    fn take(&mut self, n: usize, key: &[u8], path: &Path) -> Result<()> {
        let n = n as u64;
        if n > self.left {
            return Err(TfBundleError::TooLarge {
                path: path.to_owned(),
                reason: format!(
                    "entry {:?} brings what its keys and shapes need past {} bytes",
                    String::from_utf8_lossy(&key[..key.len().min(80)]),
                    self.cap
                ),
            });
        }
        self.left -= n;
        Ok(())
    }
}

type Index = (u32, BTreeMap<String, Entry>, usize);

/// Reads the header and every entry of an index.
fn read_index<R: Read + Seek>(file: &mut R, path: &Path) -> Result<Index> {
    let table = table::Table::open(file, path)?;
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(|cause| TfBundleError::Io {
            path: path.to_owned(),
            cause,
        })?;
    let mut budget = Budget::for_index(len);
    let mut shards: Option<u32> = None;
    let mut entries = BTreeMap::new();
    let mut slice_parts = 0;
    let corrupt = |reason: String| TfBundleError::CorruptIndex {
        path: path.to_owned(),
        reason,
    };
    table.for_each(file, |key, value| {
        let Some(num_shards) = shards else {
            // Keys are sorted and TensorFlow's header key is "", so the header comes first.
            if !key.is_empty() {
                return Err(corrupt(format!(
                    "the first key is {:?}, not the header's empty key",
                    String::from_utf8_lossy(key)
                )));
            }
            let header = proto::header(value).map_err(|r| corrupt(format!("header: {r}")))?;
            shards = Some(check_header(&header, path)?);
            return Ok(());
        };
        budget.take(key.len() + std::mem::size_of::<Entry>(), key, path)?;
        let raw = proto::entry(value)
            .map_err(|r| corrupt(format!("entry {:?}: {r}", String::from_utf8_lossy(key))))?;
        budget.take(raw.dims.len() * 16, key, path)?;
        // TensorFlow keys the slices of a partitioned variable by a binary encoding that starts
        // with a NUL byte (`EncodeTensorNameSlice`); no variable name does.
        if key.first() == Some(&0) {
            slice_parts += 1;
            return Ok(());
        }
        let name = std::str::from_utf8(key)
            .map_err(|_| {
                corrupt(format!(
                    "key {:?} is not UTF-8",
                    String::from_utf8_lossy(key)
                ))
            })?
            .to_owned();
        let entry = check_entry(raw, name, num_shards, path)?;
        entries.insert(entry.name.clone(), entry);
        Ok(())
    })?;
    let num_shards =
        shards.ok_or_else(|| corrupt("the table is empty: no header entry".to_owned()))?;
    Ok((num_shards, entries, slice_parts))
}

/// The header's shard count, after refusing what this reader cannot read.
fn check_header(h: &proto::Header, path: &Path) -> Result<u32> {
    match h.endianness {
        0 => {}
        1 => {
            return Err(TfBundleError::BigEndian {
                path: path.to_owned(),
            });
        }
        e => {
            return Err(TfBundleError::CorruptIndex {
                path: path.to_owned(),
                reason: format!("header: unknown endianness {e}"),
            });
        }
    }
    // TensorFlow's CheckVersions with kTensorBundleVersion and a minimum producer of 0.
    let version = |detail: String| TfBundleError::Version {
        path: path.to_owned(),
        detail,
    };
    if h.producer < 0 {
        return Err(version(format!(
            "producer version {} is negative",
            h.producer
        )));
    }
    if h.min_consumer > BUNDLE_VERSION {
        return Err(version(format!(
            "the bundle needs a reader of version {} or later; this one is version \
             {BUNDLE_VERSION}",
            h.min_consumer
        )));
    }
    if h.bad_consumers.contains(&BUNDLE_VERSION) {
        return Err(version(format!(
            "the bundle rules out readers of version {BUNDLE_VERSION}"
        )));
    }
    u32::try_from(h.num_shards)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| TfBundleError::CorruptIndex {
            path: path.to_owned(),
            reason: format!("header: {} data shards", h.num_shards),
        })
}

/// An entry as stored, checked: a fully defined shape whose element count fits, a location
/// inside a declared shard, and a size that matches the shape for fixed-width types.
fn check_entry(raw: proto::Entry, name: String, num_shards: u32, path: &Path) -> Result<Entry> {
    let shape_err = |reason: String| TfBundleError::Shape {
        path: path.to_owned(),
        tensor: name.clone(),
        reason,
    };
    if raw.unknown_rank {
        return Err(shape_err("its rank is unknown".to_owned()));
    }
    if raw.dims.len() > MAX_DIMS {
        return Err(shape_err(format!(
            "{} dimensions, more than TensorFlow's {MAX_DIMS}",
            raw.dims.len()
        )));
    }
    let shape = raw
        .dims
        .iter()
        .enumerate()
        .map(|(i, &d)| usize::try_from(d).map_err(|_| shape_err(format!("dimension {i} is {d}"))))
        .collect::<Result<Vec<usize>>>()?;
    // TensorFlow caps a tensor's element count at i64::MAX.
    let numel = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| i64::try_from(n).is_ok())
        .ok_or_else(|| shape_err(format!("{shape:?} has too many elements")))?;
    let dtype = DataType(raw.dtype);
    if raw.slices > 0 {
        // The whole variable's entry: its shard, offset, size and crc are meaningless.
        return Ok(Entry {
            name,
            dtype,
            shape,
            location: None,
            slices: raw.slices,
        });
    }
    let corrupt = |reason: String| TfBundleError::CorruptIndex {
        path: path.to_owned(),
        reason: format!("tensor {name:?}: {reason}"),
    };
    let shard = u32::try_from(raw.shard_id)
        .ok()
        .filter(|&s| s < num_shards)
        .ok_or_else(|| {
            corrupt(format!(
                "in shard {} of a bundle of {num_shards}",
                raw.shard_id
            ))
        })?;
    let offset = u64::try_from(raw.offset)
        .map_err(|_| corrupt(format!("negative offset {}", raw.offset)))?;
    let size =
        u64::try_from(raw.size).map_err(|_| corrupt(format!("negative size {}", raw.size)))?;
    if offset.checked_add(size).is_none() {
        return Err(corrupt(format!("offset {offset} + size {size} overflows")));
    }
    if let Some(width) = dtype.element_size() {
        let expected = numel.checked_mul(width as u64);
        if expected != Some(size) {
            return Err(TfBundleError::ShapeSize {
                path: path.to_owned(),
                tensor: name,
                dtype: dtype.name().into_owned(),
                shape,
                expected: expected.unwrap_or(u64::MAX),
                size,
            });
        }
    }
    Ok(Entry {
        name,
        dtype,
        shape,
        location: Some(Location {
            shard,
            offset,
            size,
            crc32c: table::unmask(raw.crc32c),
        }),
        slices: 0,
    })
}

fn suffixed(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `PREFIX.index`.
pub fn index_path(prefix: &Path) -> PathBuf {
    suffixed(prefix, ".index")
}

/// The prefix of `PREFIX.index`, `PREFIX.meta` (TF1's graph beside a checkpoint) and
/// `PREFIX.data-00000-of-00001`, which are what shells complete a prefix to; other paths as
/// they are.
fn strip_suffix(path: &Path) -> PathBuf {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return path.to_owned();
    };
    let stem = name
        .strip_suffix(".index")
        .or_else(|| name.strip_suffix(".meta"))
        .or_else(|| {
            let (stem, shard) = name.rsplit_once(".data-")?;
            let (k, n) = shard.split_once("-of-")?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            (digits(k) && digits(n)).then_some(stem)
        });
    match stem {
        Some(stem) if !stem.is_empty() => path.with_file_name(stem),
        _ => path.to_owned(),
    }
}

/// What a file that is not a bundle index is, from its first bytes, when it is a format people
/// confuse with one.
fn sniff(file: &mut File) -> Option<String> {
    let mut head = Vec::with_capacity(8);
    file.by_ref().take(8).read_to_end(&mut head).ok()?;
    file.seek(SeekFrom::Start(0)).ok()?;
    let what = match head.as_slice() {
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => {
            "it is a zip archive, as PyTorch's torch.save writes (PyTorch checkpoints are read by \
             brs-train import-pytorch)"
        }
        [0x80, 2..=5, ..] => "it is a pickle stream, as a legacy PyTorch checkpoint is",
        [0x89, b'H', b'D', b'F', ..] => "it is an HDF5 file (Keras weights?)",
        _ => return None,
    };
    Some(what.to_owned())
}

fn sniff_file(path: &Path) -> Option<String> {
    sniff(&mut File::open(path).ok()?)
}

#[cfg(test)]
mod tests;
