//! Reads PyTorch `torch.save` checkpoints (zip + pickle) into plain tensors, without Python.
//!
//! Two layouts are understood: the zip archive of PyTorch >= 1.6 (`<name>/data.pkl` plus one
//! `<name>/data/<key>` entry per storage) and the older single-stream format
//! (`_use_new_zipfile_serialization=False`: magic, version and system-info pickles, the object
//! pickle, the list of storage keys, then the raw storages).
//!
//! The pickle is run by a tiny stack machine that knows only the opcodes `torch.save` emits
//! (protocols 2 to 5) and a fixed allow-list of globals. Nothing is ever imported or executed:
//! a global outside the list stops the load, because a `.pt` from the internet is untrusted
//! input. Containers live in one flat arena and the stack holds indices into it, so a deeply
//! nested pickle can neither overflow the Rust stack nor build recursive drops. Every length,
//! index and shape read from the file is checked, and the bytes this reader allocates for
//! tensors and decompressed entries are capped relative to the file size.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::Path;
use std::rc::Rc;

/// Element type of a tensor read from a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F16,
    BF16,
    F32,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(&self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// PyTorch's name for the type, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    fn is_float(&self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// `torch.FloatStorage` and friends: the typed-storage classes named in persistent ids.
    fn from_storage_class(name: &str) -> Option<DType> {
        Some(match name {
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    /// `torch.float32` and its aliases, as pickled for `_rebuild_tensor_v3`.
    fn from_torch_attr(name: &str) -> Option<DType> {
        Some(match name {
            "float16" | "half" => DType::F16,
            "bfloat16" => DType::BF16,
            "float32" | "float" => DType::F32,
            "float64" | "double" => DType::F64,
            "int64" | "long" => DType::I64,
            "int32" | "int" => DType::I32,
            "uint8" => DType::U8,
            "bool" => DType::Bool,
            _ => return None,
        })
    }
}

/// One tensor, copied out of its storage.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Contiguous row-major little-endian elements, exactly `numel * dtype.size()` bytes:
    /// the saved strides and storage offset are already applied.
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Number of elements (1 for a 0-dim tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements widened or narrowed to f32; only floating-point tensors convert.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let size = self.dtype.size();
        if !self.dtype.is_float() {
            return Err(PickleError::Unsupported(format!(
                "unsupported conversion of a {} tensor to float32",
                self.dtype.name()
            )));
        }
        let chunks = self.data.chunks_exact(size);
        Ok(match self.dtype {
            DType::F32 => chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F64 => chunks
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            DType::F16 => chunks
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            DType::BF16 => chunks
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            _ => Vec::new(),
        })
    }
}

/// IEEE half to single; exact for every input, subnormals and NaN payloads included.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: renormalise so the implicit leading one appears.
            let mut e: u32 = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Tensor name -> tensor, as in a module's `state_dict()`.
pub type StateDict = BTreeMap<String, RawTensor>;

#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    #[error("cannot read the checkpoint: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid zip archive: {0}")]
    Zip(String),
    /// Valid PyTorch content this reader deliberately does not handle (including any pickle
    /// global outside the allow-list).
    #[error("{0}")]
    Unsupported(String),
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The file asks for more memory than its size can justify.
    #[error("checkpoint too large: {0}")]
    TooLarge(String),
}

type Result<T> = std::result::Result<T, PickleError>;

fn malformed(msg: impl Into<String>) -> PickleError {
    PickleError::Malformed(msg.into())
}

/// What a checkpoint held. The top-level object must be a dict; each of its values that is a
/// dict of tensors becomes a [`StateDict`], every other value is skipped and its key listed.
/// A top level that is itself one state_dict comes back as `dicts[""]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PtFile {
    pub dicts: BTreeMap<String, StateDict>,
    pub skipped: Vec<String>,
}

/// Reads a `torch.save` file from disk.
pub fn read_pt(path: &Path) -> Result<PtFile> {
    let bytes = std::fs::read(path).map_err(|e| {
        PickleError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    })?;
    read_pt_bytes(&bytes)
}

/// Reads a `torch.save` file already in memory.
pub fn read_pt_bytes(bytes: &[u8]) -> Result<PtFile> {
    let mut budget = Budget::for_input(bytes.len());
    match bytes {
        [] => Err(malformed("the file is empty")),
        [b'P', b'K', ..] => read_zip(bytes, &mut budget),
        [0x80, ..] => read_legacy(bytes, &mut budget),
        _ => Err(malformed(
            "not a PyTorch checkpoint: neither a zip archive nor a pickle stream \
             (the tar format of PyTorch < 0.4 is not supported)",
        )),
    }
}

/// Caps what a file can make us allocate: a small file must not be able to claim gigabytes
/// through a huge shape over a stride-0 storage or a zip bomb. Legitimate checkpoints stay far
/// below the cap (views can repeat bytes, hence the factor).
struct Budget {
    left: usize,
}

impl Budget {
    fn for_input(len: usize) -> Budget {
        Budget {
            left: len.saturating_mul(4).max(64 << 20),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<()> {
        if n > self.left {
            return Err(PickleError::TooLarge(format!(
                "{what} needs {n} bytes, more than this file's size allows ({} left)",
                self.left
            )));
        }
        self.left -= n;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// zip layout

fn zip_err(e: zip::result::ZipError) -> PickleError {
    PickleError::Zip(e.to_string())
}

fn read_zip(bytes: &[u8], budget: &mut Budget) -> Result<PtFile> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_err)?;
    // The folder name is whatever the file was called when saved, so find it by its pickle.
    let pkl_name = archive
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| (n.len(), n.to_string()))
        .map(str::to_owned)
        .ok_or_else(|| {
            PickleError::Zip("no data.pkl entry: not a torch.save archive".to_owned())
        })?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_owned();

    let byteorder_name = format!("{prefix}byteorder");
    if archive.index_for_name(&byteorder_name).is_some() {
        let order = read_entry(&mut archive, bytes, &byteorder_name, budget)?;
        if order.as_ref() != b"little" {
            return Err(PickleError::Unsupported(format!(
                "unsupported byte order {:?}: only little-endian checkpoints can be read",
                String::from_utf8_lossy(&order)
            )));
        }
    }

    let pickle = read_entry(&mut archive, bytes, &pkl_name, budget)?;
    let mut heap = Heap::default();
    let (top, _) = unpickle(&pickle, &mut heap, budget)?;

    let mut cache: HashMap<Rc<str>, Cow<'_, [u8]>> = HashMap::new();
    let mut load = |key: &Rc<str>, budget: &mut Budget| -> Result<()> {
        if !cache.contains_key(key) {
            let name = format!("{prefix}data/{key}");
            if archive.index_for_name(&name).is_none() {
                return Err(malformed(format!(
                    "storage {key:?} is referenced but the archive has no entry {name:?}"
                )));
            }
            let data = read_entry(&mut archive, bytes, &name, budget)?;
            cache.insert(key.clone(), data);
        }
        Ok(())
    };
    // Load only the storages of the state dicts we return: skipped values (optimizer state,
    // say) cost nothing and cannot fail the load through their storages.
    let plan = plan_output(&heap, &top, budget)?;
    for key in plan.storage_keys(&heap) {
        load(&key, budget)?;
    }
    plan.build(&heap, budget, |key| {
        cache
            .get(key)
            .map(|c| c.as_ref())
            .ok_or_else(|| malformed(format!("storage {key:?} was not loaded")))
    })
}

/// One entry's bytes. Stored entries (all that torch.save writes) are borrowed from the input;
/// compressed ones are inflated under the budget.
fn read_entry<'a>(
    archive: &mut zip::ZipArchive<Cursor<&'a [u8]>>,
    bytes: &'a [u8],
    name: &str,
    budget: &mut Budget,
) -> Result<Cow<'a, [u8]>> {
    let mut file = archive.by_name(name).map_err(zip_err)?;
    if file.encrypted() {
        return Err(PickleError::Unsupported(format!(
            "unsupported encrypted zip entry {name:?}"
        )));
    }
    if file.compression() == zip::CompressionMethod::Stored
        && let Some(start) = file.data_start()
    {
        let slice = usize::try_from(start)
            .ok()
            .zip(usize::try_from(file.size()).ok())
            .and_then(|(s, n)| Some((s, s.checked_add(n)?)))
            .and_then(|(s, e)| bytes.get(s..e))
            .ok_or_else(|| {
                PickleError::Zip(format!("entry {name:?} extends past the end of the file"))
            })?;
        // Borrow instead of copying, but still stream the entry through the zip reader so
        // its checksum is verified (by the optimised dependency, not by this crate).
        std::io::copy(&mut file, &mut std::io::sink())
            .map_err(|e| PickleError::Zip(format!("entry {name:?} is corrupt: {e}")))?;
        return Ok(Cow::Borrowed(slice));
    }
    let cap = budget.left;
    let declared = usize::try_from(file.size()).unwrap_or(usize::MAX);
    if declared > cap {
        return Err(PickleError::TooLarge(format!(
            "entry {name:?} inflates to {declared} bytes"
        )));
    }
    let mut out = Vec::new();
    (&mut file)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| PickleError::Zip(format!("cannot read entry {name:?}: {e}")))?;
    budget.take(out.len(), &format!("entry {name:?}"))?;
    Ok(Cow::Owned(out))
}

// ---------------------------------------------------------------------------------------------
// legacy layout

/// `torch.serialization.MAGIC_NUMBER`, 0x1950a86a20f9469cfc6c, as pickle's little-endian LONG1.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

fn read_legacy(bytes: &[u8], budget: &mut Budget) -> Result<PtFile> {
    let mut pos = 0usize;
    let mut next = |heap: &mut Heap, budget: &mut Budget| -> Result<Value> {
        let rest = bytes
            .get(pos..)
            .ok_or_else(|| malformed("legacy checkpoint ends early"))?;
        let (value, used) = unpickle(rest, heap, budget)?;
        pos += used;
        Ok(value)
    };

    let mut scratch = Heap::default();
    match next(&mut scratch, budget)? {
        Value::BigInt(b) if b.as_ref() == LEGACY_MAGIC => {}
        _ => {
            return Err(malformed(
                "a pickle that does not start with PyTorch's magic number (not a torch.save file)",
            ));
        }
    }
    match next(&mut scratch, budget)? {
        Value::Int(LEGACY_PROTOCOL_VERSION) => {}
        other => {
            return Err(PickleError::Unsupported(format!(
                "unsupported legacy protocol version {}",
                describe(&scratch, &other)
            )));
        }
    }
    let sys_info = next(&mut scratch, budget)?;
    if let Some(Value::Bool(false)) = dict_get_str(&scratch, &sys_info, "little_endian") {
        return Err(PickleError::Unsupported(
            "unsupported byte order: the checkpoint was written on a big-endian machine".into(),
        ));
    }

    let mut heap = Heap::default();
    let top = next(&mut heap, budget)?;
    let keys_value = next(&mut scratch, budget)?;
    let keys: Vec<Rc<str>> = match keys_value {
        Value::Obj(id) => match scratch.objs.get(id) {
            Some(Obj::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.clone()),
                    _ => Err(malformed("a storage key that is not a string")),
                })
                .collect::<Result<_>>()?,
            _ => return Err(malformed("the storage key list is not a list")),
        },
        _ => return Err(malformed("the storage key list is not a list")),
    };

    // Storages follow back to back, each as an int64 element count and the raw elements; the
    // element size comes from the first persistent id that named the key, as in torch.
    let mut elem_size: HashMap<&str, usize> = HashMap::new();
    for s in &heap.storages {
        elem_size
            .entry(s.key.as_ref())
            .or_insert_with(|| s.dtype.map_or(1, |d| d.size()));
    }
    let mut ranges: HashMap<Rc<str>, std::ops::Range<usize>> = HashMap::new();
    for key in &keys {
        let size = *elem_size.get(key.as_ref()).ok_or_else(|| {
            malformed(format!(
                "storage {key:?} is listed but no tensor refers to it"
            ))
        })?;
        let header = bytes
            .get(pos..pos.saturating_add(8))
            .ok_or_else(|| malformed(format!("legacy checkpoint ends before storage {key:?}")))?;
        let mut count = [0u8; 8];
        count.copy_from_slice(header);
        let numel = u64::from_le_bytes(count);
        let start = pos + 8;
        let end = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(size))
            .and_then(|n| n.checked_add(start))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                malformed(format!(
                    "storage {key:?} claims {numel} elements, past the end of the file"
                ))
            })?;
        ranges.insert(key.clone(), start..end);
        pos = end;
    }

    let plan = plan_output(&heap, &top, budget)?;
    plan.build(&heap, budget, |key| {
        ranges
            .get(key)
            .and_then(|r| bytes.get(r.clone()))
            .ok_or_else(|| {
                malformed(format!(
                    "storage {key:?} is referenced but its data is not in the file"
                ))
            })
    })
}

// ---------------------------------------------------------------------------------------------
// turning the unpickled object into a PtFile

/// Which tensors go where, decided before any storage is read.
struct Plan {
    dicts: Vec<(String, Vec<(String, usize)>)>,
    skipped: Vec<String>,
}

fn plan_output(heap: &Heap, top: &Value, budget: &mut Budget) -> Result<Plan> {
    let entries = match top {
        Value::Obj(id) => match heap.objs.get(*id) {
            Some(Obj::Dict(d)) => &d.entries,
            _ => return Err(not_a_dict(heap, top)),
        },
        _ => return Err(not_a_dict(heap, top)),
    };
    let mut plan = Plan {
        dicts: Vec::new(),
        skipped: Vec::new(),
    };
    if let Some(tensors) = as_tensor_dict(heap, top, budget)?.filter(|t| !t.is_empty()) {
        plan.dicts.push((String::new(), tensors));
        return Ok(plan);
    }
    for (k, v) in entries {
        match (k, as_tensor_dict(heap, v, budget)?) {
            (Value::Str(name), Some(tensors)) => plan.dicts.push((name.to_string(), tensors)),
            (Value::Str(name), None) => plan.skipped.push(name.to_string()),
            (other, _) => plan.skipped.push(describe(heap, other)),
        }
    }
    Ok(plan)
}

fn not_a_dict(heap: &Heap, top: &Value) -> PickleError {
    PickleError::Unsupported(format!(
        "unsupported checkpoint: the saved object is {}, not a dict",
        describe(heap, top)
    ))
}

/// The (name, tensor) pairs of a dict whose keys are all strings and values all tensors.
/// Charged to the budget because one memoised dict may be referenced under many keys.
fn as_tensor_dict(
    heap: &Heap,
    v: &Value,
    budget: &mut Budget,
) -> Result<Option<Vec<(String, usize)>>> {
    let Value::Obj(id) = v else { return Ok(None) };
    let Some(Obj::Dict(d)) = heap.objs.get(*id) else {
        return Ok(None);
    };
    let all_tensors = d
        .entries
        .iter()
        .all(|(k, v)| matches!((k, v), (Value::Str(_), Value::Tensor(_))));
    if !all_tensors {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(d.entries.len());
    for (k, v) in &d.entries {
        if let (Value::Str(name), Value::Tensor(t)) = (k, v) {
            budget.take(OBJ_COST + name.len(), "the list of tensors")?;
            out.push((name.to_string(), *t));
        }
    }
    Ok(Some(out))
}

impl Plan {
    fn storage_keys(&self, heap: &Heap) -> Vec<Rc<str>> {
        let mut keys: Vec<Rc<str>> = self
            .dicts
            .iter()
            .flat_map(|(_, tensors)| tensors.iter())
            .filter_map(|(_, t)| heap.tensors.get(*t))
            .filter_map(|t| heap.storages.get(t.storage))
            .map(|s| s.key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    fn build<'d>(
        self,
        heap: &Heap,
        budget: &mut Budget,
        mut storage_bytes: impl FnMut(&Rc<str>) -> Result<&'d [u8]>,
    ) -> Result<PtFile> {
        let mut out = PtFile {
            dicts: BTreeMap::new(),
            skipped: self.skipped,
        };
        for (dict_name, tensors) in self.dicts {
            let mut sd = StateDict::new();
            for (name, t) in tensors {
                let tensor = heap
                    .tensors
                    .get(t)
                    .ok_or_else(|| malformed("dangling tensor"))?;
                let storage = heap
                    .storages
                    .get(tensor.storage)
                    .ok_or_else(|| malformed("dangling storage"))?;
                let data = storage_bytes(&storage.key)?;
                let raw = materialize(tensor, storage, data, budget).map_err(|e| match e {
                    PickleError::Malformed(m) => {
                        malformed(format!("tensor {dict_name:?}/{name:?}: {m}"))
                    }
                    other => other,
                })?;
                sd.insert(name, raw);
            }
            out.dicts.insert(dict_name, sd);
        }
        Ok(out)
    }
}

/// Copies a tensor out of its storage, applying offset and strides, after proving every
/// element it touches lies inside the storage.
fn materialize(
    t: &TensorRef,
    s: &StorageRef,
    entry: &[u8],
    budget: &mut Budget,
) -> Result<RawTensor> {
    let storage_unit = s.dtype.map_or(1, |d| d.size());
    let (view_start, view_len) = match s.view {
        Some((offset, size)) => (offset, size),
        None => (0, s.numel),
    };
    let region = mul_add(view_start, storage_unit, 0)
        .zip(mul_add(view_len, storage_unit, 0))
        .and_then(|(start, len)| Some(start..start.checked_add(len)?))
        .and_then(|r| entry.get(r))
        .ok_or_else(|| {
            malformed(format!(
                "storage {:?} declares {} bytes but its data holds {}",
                s.key,
                view_len.saturating_mul(storage_unit),
                entry.len()
            ))
        })?;

    let es = t.dtype.size();
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| PickleError::TooLarge(format!("shape {:?} overflows", t.shape)))?;
    let nbytes = numel
        .checked_mul(es)
        .ok_or_else(|| PickleError::TooLarge(format!("shape {:?} overflows", t.shape)))?;
    budget.take(nbytes, &format!("a tensor of shape {:?}", t.shape))?;
    if numel == 0 {
        return Ok(RawTensor {
            dtype: t.dtype,
            shape: t.shape.clone(),
            data: Vec::new(),
        });
    }

    // Last element touched, in elements of the tensor's type.
    let mut last = t.offset;
    for (&d, &st) in t.shape.iter().zip(&t.stride) {
        last = (d - 1)
            .checked_mul(st)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(|| malformed("strides overflow"))?;
    }
    let end = last
        .checked_add(1)
        .and_then(|n| n.checked_mul(es))
        .filter(|&end| end <= region.len())
        .ok_or_else(|| {
            malformed(format!(
                "shape {:?} with strides {:?} and offset {} reaches past its storage of {} bytes",
                t.shape,
                t.stride,
                t.offset,
                region.len()
            ))
        })?;
    let oob = || malformed("element outside its storage");

    let mut data = Vec::with_capacity(nbytes);
    if is_contiguous(&t.shape, &t.stride) {
        let start = t.offset * es;
        data.extend_from_slice(region.get(start..start + nbytes).ok_or_else(oob)?);
    } else {
        // Odometer over the outer dimensions; the innermost one is copied as a run when its
        // stride is 1, element by element otherwise.
        let nd = t.shape.len();
        let (inner_len, inner_stride) = (t.shape[nd - 1], t.stride[nd - 1]);
        let mut idx = vec![0usize; nd - 1];
        'outer: loop {
            let base = idx
                .iter()
                .zip(&t.stride)
                .fold(t.offset, |acc, (&i, &st)| acc + i * st);
            if inner_stride == 1 {
                let start = base * es;
                data.extend_from_slice(region.get(start..start + inner_len * es).ok_or_else(oob)?);
            } else {
                for j in 0..inner_len {
                    let start = (base + j * inner_stride) * es;
                    data.extend_from_slice(region.get(start..start + es).ok_or_else(oob)?);
                }
            }
            let mut d = nd - 1;
            loop {
                if d == 0 {
                    break 'outer;
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    debug_assert!(end <= region.len() && data.len() == nbytes);
    Ok(RawTensor {
        dtype: t.dtype,
        shape: t.shape.clone(),
        data,
    })
}

fn mul_add(a: usize, b: usize, c: usize) -> Option<usize> {
    a.checked_mul(b)?.checked_add(c)
}

fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &st) in shape.iter().zip(stride).rev() {
        if d != 1 && st != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

// ---------------------------------------------------------------------------------------------
// the pickle machine

type ObjId = usize;

/// A pickle value. Containers are indices into [`Heap::objs`], so cloning is cheap and nothing
/// here nests.
#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, kept as pickle's little-endian two's complement.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Obj(ObjId),
    Global(Global),
    Storage(usize),
    Tensor(usize),
    Device,
}

#[derive(Debug)]
enum Obj {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
    Set(Vec<Value>),
}

#[derive(Debug, Default)]
struct Dict {
    entries: Vec<(Value, Value)>,
    /// Python replaces the value of an existing key; this finds it without a linear scan.
    index: HashMap<DictKey, usize>,
}

#[derive(Debug, Hash, PartialEq, Eq)]
enum DictKey {
    Str(Rc<str>),
    Int(i64),
    None,
}

impl Dict {
    fn insert(&mut self, k: Value, v: Value) {
        let key = match &k {
            Value::Str(s) => Some(DictKey::Str(s.clone())),
            Value::Int(i) => Some(DictKey::Int(*i)),
            Value::Bool(b) => Some(DictKey::Int(i64::from(*b))),
            Value::None => Some(DictKey::None),
            _ => None,
        };
        match key {
            Some(key) => match self.index.get(&key) {
                Some(&i) => {
                    if let Some(slot) = self.entries.get_mut(i) {
                        slot.1 = v;
                    }
                }
                None => {
                    self.index.insert(key, self.entries.len());
                    self.entries.push((k, v));
                }
            },
            None => self.entries.push((k, v)),
        }
    }
}

/// The only globals a checkpoint may name. Each is interpreted here, never imported.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    Set,
    FrozenSet,
    /// `_codecs.encode(str, "latin1")`, which is how protocol 2 spells a bytes literal.
    CodecsEncode,
    RebuildTensor,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    TensorClass,
    /// A storage class; `None` is the untyped (byte) storage.
    StorageClass(Option<DType>),
    Device,
    Dtype(DType),
}

fn resolve_global(module: &str, name: &str) -> Result<Global> {
    if module == "torch"
        && let Some(d) = DType::from_torch_attr(name)
    {
        return Ok(Global::Dtype(d));
    }
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("builtins" | "__builtin__", "set") => Global::Set,
        ("builtins" | "__builtin__", "frozenset") => Global::FrozenSet,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorClass,
        ("torch", "device") => Global::Device,
        ("torch" | "torch.storage", "UntypedStorage") => Global::StorageClass(None),
        // Checkpoints written from a GPU by old PyTorch name the CUDA classes; the bytes are
        // the same.
        ("torch" | "torch.cuda", n) if DType::from_storage_class(n).is_some() => {
            Global::StorageClass(DType::from_storage_class(n))
        }
        _ => {
            return Err(PickleError::Unsupported(format!(
                "unsupported pickle global {module}.{name}: only tensors, storages and dicts \
                 can be loaded, and nothing in a checkpoint is ever executed"
            )));
        }
    };
    Ok(g)
}

#[derive(Debug)]
struct StorageRef {
    key: Rc<str>,
    dtype: Option<DType>,
    /// In elements of `dtype` (bytes when untyped).
    numel: usize,
    /// Legacy storage views: (offset, numel) inside the root storage, in elements.
    view: Option<(usize, usize)>,
}

#[derive(Debug)]
struct TensorRef {
    storage: usize,
    dtype: DType,
    /// In elements of `dtype`.
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

#[derive(Debug, Default)]
struct Heap {
    objs: Vec<Obj>,
    storages: Vec<StorageRef>,
    tensors: Vec<TensorRef>,
}

impl Heap {
    fn alloc(&mut self, obj: Obj) -> Value {
        self.objs.push(obj);
        Value::Obj(self.objs.len() - 1)
    }

    fn tuple(&self, v: &Value) -> Option<&[Value]> {
        match v {
            Value::Obj(id) => match self.objs.get(*id) {
                Some(Obj::Tuple(items) | Obj::List(items)) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A short, non-recursive description of a value for messages.
fn describe(heap: &Heap, v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::BigInt(_) => "a big integer".into(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => {
            let short: String = s.chars().take(60).collect();
            format!("{short:?}")
        }
        Value::Bytes(b) => format!("{} bytes", b.len()),
        Value::Obj(id) => match heap.objs.get(*id) {
            Some(Obj::Tuple(t)) => format!("a tuple of {}", t.len()),
            Some(Obj::List(l)) => format!("a list of {}", l.len()),
            Some(Obj::Dict(d)) => format!("a dict of {}", d.entries.len()),
            Some(Obj::Set(s)) => format!("a set of {}", s.len()),
            None => "a dangling object".into(),
        },
        Value::Global(g) => format!("{g:?}"),
        Value::Storage(_) => "a storage".into(),
        Value::Tensor(_) => "a tensor".into(),
        Value::Device => "a device".into(),
    }
}

fn dict_get_str<'h>(heap: &'h Heap, dict: &Value, key: &str) -> Option<&'h Value> {
    let Value::Obj(id) = dict else { return None };
    let Some(Obj::Dict(d)) = heap.objs.get(*id) else {
        return None;
    };
    let i = d.index.get(&DictKey::Str(Rc::from(key)))?;
    d.entries.get(*i).map(|(_, v)| v)
}

struct Input<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| malformed("the pickle ends in the middle of an opcode"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn len_u32(&mut self) -> Result<usize> {
        usize::try_from(self.u32()?).map_err(|_| malformed("length overflows"))
    }

    fn len_u64(&mut self) -> Result<usize> {
        usize::try_from(u64::from_le_bytes(self.array()?))
            .map_err(|_| malformed("length overflows"))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| malformed("unterminated GLOBAL"))?;
        let line = self.take(n + 1)?;
        std::str::from_utf8(&line[..n]).map_err(|_| malformed("GLOBAL name is not UTF-8"))
    }
}

fn utf8(bytes: &[u8]) -> Result<Value> {
    std::str::from_utf8(bytes)
        .map(|s| Value::Str(Rc::from(s)))
        .map_err(|_| malformed("a string that is not UTF-8"))
}

/// Pickle's LONG: little-endian two's complement of any width.
fn long(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(Rc::from(bytes));
    }
    let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut full = [fill; 8];
    full[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(full))
}

struct Machine<'h> {
    heap: &'h mut Heap,
    budget: &'h mut Budget,
    stack: Vec<Value>,
    /// Stack heights at each MARK; values below the innermost mark are out of reach, as in
    /// Python's metastack.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

/// Runs one pickle from the start of `data`; returns its value and the bytes it used.
fn unpickle(data: &[u8], heap: &mut Heap, budget: &mut Budget) -> Result<(Value, usize)> {
    let mut input = Input { buf: data, pos: 0 };
    let mut m = Machine {
        heap,
        budget,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let op = input.u8()?;
        // Memory the machine holds grows with the ops run, not with the bytes: one 2-byte
        // BINGET can copy a reference to anything. So every op, object and memo entry pays.
        m.budget.take(OP_COST, "the pickle")?;
        if op == b'.' {
            let v = m.pop()?;
            return Ok((v, input.pos));
        }
        m.step(op, &mut input)?;
    }
}

/// Rough bytes held per op run (a stack slot), per container and per memo entry.
const OP_COST: usize = 32;
const OBJ_COST: usize = 96;
const MEMO_COST: usize = 48;

impl Machine<'_> {
    fn alloc(&mut self, obj: Obj) -> Result<Value> {
        self.budget.take(OBJ_COST, "the pickle")?;
        Ok(self.heap.alloc(obj))
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return Err(malformed("pickle stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| malformed("pickle stack underflow"))
    }

    fn top(&self) -> Result<&Value> {
        if self.stack.len() <= self.floor() {
            return Err(malformed("pickle stack underflow"));
        }
        self.stack
            .last()
            .ok_or_else(|| malformed("pickle stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at = self
            .marks
            .pop()
            .ok_or_else(|| malformed("no MARK on the pickle stack"))?;
        if at > self.stack.len() {
            return Err(malformed("MARK above the stack top"));
        }
        Ok(self.stack.split_off(at))
    }

    fn top_obj(&mut self) -> Result<&mut Obj> {
        let id = match self.top()? {
            Value::Obj(id) => *id,
            _ => return Err(malformed("a container opcode applied to a non-container")),
        };
        self.heap
            .objs
            .get_mut(id)
            .ok_or_else(|| malformed("dangling object"))
    }

    fn memo_get(&self, i: u32) -> Result<Value> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| malformed(format!("memo entry {i} read before it was written")))
    }

    fn memo_put(&mut self, i: u32) -> Result<()> {
        self.budget.take(MEMO_COST, "the pickle")?;
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn step(&mut self, op: u8, input: &mut Input<'_>) -> Result<()> {
        match op {
            // PROTO
            0x80 => {
                let p = input.u8()?;
                if p > 5 {
                    return Err(PickleError::Unsupported(format!(
                        "unsupported pickle protocol {p}"
                    )));
                }
            }
            // FRAME: framing is only a read-ahead hint.
            0x95 => {
                input.take(8)?;
            }
            b'(' => self.marks.push(self.stack.len()),
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(input.array()?);
                self.push(Value::Int(i64::from(v)));
            }
            b'K' => {
                let v = input.u8()?;
                self.push(Value::Int(i64::from(v)));
            }
            b'M' => {
                let v = u16::from_le_bytes(input.array()?);
                self.push(Value::Int(i64::from(v)));
            }
            0x8a => {
                let n = usize::from(input.u8()?);
                let v = long(input.take(n)?);
                self.push(v);
            }
            0x8b => {
                let n = input.len_u32()?;
                let v = long(input.take(n)?);
                self.push(v);
            }
            b'G' => {
                let v = f64::from_be_bytes(input.array()?);
                self.push(Value::Float(v));
            }
            // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
            b'X' => {
                let n = input.len_u32()?;
                let v = utf8(input.take(n)?)?;
                self.push(v);
            }
            0x8c => {
                let n = usize::from(input.u8()?);
                let v = utf8(input.take(n)?)?;
                self.push(v);
            }
            0x8d => {
                let n = input.len_u64()?;
                let v = utf8(input.take(n)?)?;
                self.push(v);
            }
            // BINSTRING, SHORT_BINSTRING: Python 2 str, read as text when it is valid UTF-8.
            b'T' | b'U' => {
                let n = if op == b'T' {
                    input.len_u32()?
                } else {
                    usize::from(input.u8()?)
                };
                let raw = input.take(n)?;
                let v = utf8(raw).unwrap_or_else(|_| Value::Bytes(Rc::from(raw)));
                self.push(v);
            }
            // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = match op {
                    b'B' => input.len_u32()?,
                    b'C' => usize::from(input.u8()?),
                    _ => input.len_u64()?,
                };
                let v = Value::Bytes(Rc::from(input.take(n)?));
                self.push(v);
            }
            b')' => {
                let v = self.alloc(Obj::Tuple(Vec::new()))?;
                self.push(v);
            }
            b't' => {
                let items = self.pop_mark()?;
                let v = self.alloc(Obj::Tuple(items))?;
                self.push(v);
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                let v = self.alloc(Obj::Tuple(items))?;
                self.push(v);
            }
            b']' => {
                let v = self.alloc(Obj::List(Vec::new()))?;
                self.push(v);
            }
            b'l' => {
                let items = self.pop_mark()?;
                let v = self.alloc(Obj::List(items))?;
                self.push(v);
            }
            b'}' => {
                let v = self.alloc(Obj::Dict(Dict::default()))?;
                self.push(v);
            }
            b'd' => {
                let items = self.pop_mark()?;
                let dict = pairs_to_dict(items)?;
                let v = self.alloc(Obj::Dict(dict))?;
                self.push(v);
            }
            0x8f => {
                let v = self.alloc(Obj::Set(Vec::new()))?;
                self.push(v);
            }
            0x91 => {
                let items = self.pop_mark()?;
                let v = self.alloc(Obj::Set(items))?;
                self.push(v);
            }
            b'a' => {
                let v = self.pop()?;
                match self.top_obj()? {
                    Obj::List(l) => l.push(v),
                    _ => return Err(malformed("APPEND to something that is not a list")),
                }
            }
            b'e' => {
                let items = self.pop_mark()?;
                match self.top_obj()? {
                    Obj::List(l) => l.extend(items),
                    _ => return Err(malformed("APPENDS to something that is not a list")),
                }
            }
            0x90 => {
                let items = self.pop_mark()?;
                match self.top_obj()? {
                    Obj::Set(s) => s.extend(items),
                    _ => return Err(malformed("ADDITEMS to something that is not a set")),
                }
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                match self.top_obj()? {
                    Obj::Dict(d) => d.insert(k, v),
                    _ => return Err(malformed("SETITEM on something that is not a dict")),
                }
            }
            b'u' => {
                let items = self.pop_mark()?;
                if !items.len().is_multiple_of(2) {
                    return Err(malformed("SETITEMS with an odd number of items"));
                }
                match self.top_obj()? {
                    Obj::Dict(d) => {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.insert(k, v);
                        }
                    }
                    _ => return Err(malformed("SETITEMS on something that is not a dict")),
                }
            }
            // POP: Python drops the innermost MARK when its frame is empty.
            b'0' => {
                if self.stack.len() > self.floor() {
                    self.pop()?;
                } else {
                    self.pop_mark()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.push(v);
            }
            b'q' => {
                let i = input.u8()?;
                self.memo_put(u32::from(i))?;
            }
            b'r' => {
                let i = input.u32()?;
                self.memo_put(i)?;
            }
            0x94 => {
                let i = u32::try_from(self.memo.len()).map_err(|_| malformed("memo overflow"))?;
                self.memo_put(i)?;
            }
            b'h' => {
                let i = input.u8()?;
                let v = self.memo_get(u32::from(i))?;
                self.push(v);
            }
            b'j' => {
                let i = input.u32()?;
                let v = self.memo_get(i)?;
                self.push(v);
            }
            b'c' => {
                let module = input.line()?;
                let name = input.line()?;
                let g = resolve_global(module, name)?;
                self.push(Value::Global(g));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let g = match (&module, &name) {
                    (Value::Str(m), Value::Str(n)) => resolve_global(m, n)?,
                    _ => return Err(malformed("STACK_GLOBAL with non-string names")),
                };
                self.push(Value::Global(g));
            }
            b'R' => {
                let args = self.pop()?;
                let func = self.pop()?;
                let v = self.call(&func, &args)?;
                self.push(v);
            }
            // NEWOBJ, NEWOBJ_EX: keyword arguments are never needed by the allowed classes.
            0x81 | 0x92 => {
                if op == 0x92 {
                    self.pop()?;
                }
                let args = self.pop()?;
                let cls = self.pop()?;
                match cls {
                    Value::Global(Global::OrderedDict | Global::Set | Global::FrozenSet) => {
                        let v = self.call(&cls, &args)?;
                        self.push(v);
                    }
                    _ => return Err(malformed("NEWOBJ of a class that cannot be built")),
                }
            }
            // BUILD: sets attributes (OrderedDict's `_metadata`), which a reader has no use for.
            b'b' => {
                self.pop()?;
                self.top()?;
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent_load(&pid)?;
                self.push(v);
            }
            _ => {
                return Err(PickleError::Unsupported(format!(
                    "unsupported pickle opcode 0x{op:02x} at byte {}",
                    input.pos - 1
                )));
            }
        }
        Ok(())
    }

    /// `('storage', storage_class, key, location, numel[, view_metadata])`: the persistent id
    /// torch.save writes for each storage (the sixth item only in the legacy format).
    fn persistent_load(&mut self, pid: &Value) -> Result<Value> {
        let items = self
            .heap
            .tuple(pid)
            .ok_or_else(|| malformed("a persistent id that is not a tuple"))?;
        let bad =
            || malformed("a persistent id that is not ('storage', class, key, location, numel)");
        let [tag, class, key, _location, numel, rest @ ..] = items else {
            return Err(bad());
        };
        match tag {
            Value::Str(s) if s.as_ref() == "storage" => {}
            Value::Bytes(b) if b.as_ref() == b"storage" => {}
            Value::Str(s) if s.as_ref() == "module" => {
                return Err(PickleError::Unsupported(
                    "unsupported checkpoint: it pickles a whole nn.Module; save its state_dict() instead"
                        .into(),
                ));
            }
            _ => return Err(bad()),
        }
        let Value::Global(Global::StorageClass(dtype)) = class else {
            return Err(bad());
        };
        let key: Rc<str> = match key {
            Value::Str(s) => s.clone(),
            Value::Int(i) => Rc::from(i.to_string()),
            _ => return Err(bad()),
        };
        let numel = non_negative(numel).ok_or_else(bad)?;
        let view = match rest {
            [] | [Value::None] => None,
            [meta] => {
                let m = self.heap.tuple(meta).ok_or_else(bad)?;
                match m {
                    [_view_key, offset, size] => Some((
                        non_negative(offset).ok_or_else(bad)?,
                        non_negative(size).ok_or_else(bad)?,
                    )),
                    _ => return Err(bad()),
                }
            }
            _ => return Err(bad()),
        };
        let storage = StorageRef {
            key,
            dtype: *dtype,
            numel,
            view,
        };
        self.heap.storages.push(storage);
        Ok(Value::Storage(self.heap.storages.len() - 1))
    }

    fn call(&mut self, func: &Value, args: &Value) -> Result<Value> {
        let Value::Global(g) = func else {
            return Err(malformed(format!(
                "REDUCE on {}, which is not callable",
                describe(self.heap, func)
            )));
        };
        let args = self
            .heap
            .tuple(args)
            .ok_or_else(|| malformed("REDUCE arguments that are not a tuple"))?;
        // No allowed callable takes more; checking first keeps a memoised giant tuple from
        // being copied once per REDUCE.
        if args.len() > 8 {
            return Err(PickleError::Unsupported(format!(
                "unsupported call of {g:?} with {} arguments",
                args.len()
            )));
        }
        let args = args.to_vec();
        match (g, args.as_slice()) {
            (Global::OrderedDict, []) => self.alloc(Obj::Dict(Dict::default())),
            // A set can hold nothing we return, so its items are not copied (copying a shared
            // list per REDUCE would let a small file claim quadratic memory).
            (Global::Set | Global::FrozenSet, [] | [_]) => self.alloc(Obj::Set(Vec::new())),
            (Global::CodecsEncode, [Value::Str(s), Value::Str(enc)])
                if enc.as_ref() == "latin1" || enc.as_ref() == "latin-1" =>
            {
                self.budget.take(s.len(), "a bytes literal")?;
                let bytes = s
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).map_err(|_| malformed("bad latin1 text")))
                    .collect::<Result<Vec<u8>>>()?;
                Ok(Value::Bytes(Rc::from(bytes)))
            }
            (Global::Device, [Value::Str(_)] | [Value::Str(_), Value::Int(_)]) => Ok(Value::Device),
            (Global::RebuildTensor | Global::RebuildTensorV2 | Global::RebuildTensorV3, _) => {
                self.rebuild_tensor(*g, &args)
            }
            (
                Global::RebuildParameter | Global::RebuildParameterWithState,
                [t @ Value::Tensor(_), ..],
            ) => Ok(t.clone()),
            (
                Global::RebuildFromTypeV2,
                [
                    Value::Global(inner),
                    Value::Global(Global::TensorClass),
                    inner_args,
                    _state,
                ],
            ) if matches!(
                inner,
                Global::RebuildTensor
                    | Global::RebuildTensorV2
                    | Global::RebuildTensorV3
                    | Global::RebuildParameter
                    | Global::RebuildParameterWithState
            ) =>
            {
                let inner_func = Value::Global(*inner);
                let inner_args = inner_args.clone();
                self.call(&inner_func, &inner_args)
            }
            _ => Err(PickleError::Unsupported(format!(
                "unsupported call of {g:?} with {} arguments",
                args.len()
            ))),
        }
    }

    /// `_rebuild_tensor(storage, offset, size, stride)`, `_rebuild_tensor_v2(..., requires_grad,
    /// hooks[, metadata])` and `_rebuild_tensor_v3(..., requires_grad, hooks, dtype[, metadata])`.
    fn rebuild_tensor(&mut self, g: Global, args: &[Value]) -> Result<Value> {
        let bad = |what: &str| malformed(format!("tensor rebuild with {what}"));
        let (storage, offset, size, stride) = match args {
            [s, o, sz, st, ..] => (s, o, sz, st),
            _ => return Err(bad("too few arguments")),
        };
        let expected = match g {
            Global::RebuildTensor => 4..=4,
            Global::RebuildTensorV2 => 6..=7,
            _ => 7..=8,
        };
        if !expected.contains(&args.len()) {
            return Err(bad("the wrong number of arguments"));
        }
        let Value::Storage(sid) = storage else {
            return Err(bad("something other than a storage"));
        };
        let storage_dtype = self
            .heap
            .storages
            .get(*sid)
            .ok_or_else(|| bad("a dangling storage"))?
            .dtype;
        let dtype = match (g, args.get(6)) {
            (Global::RebuildTensorV3, Some(Value::Global(Global::Dtype(d)))) => *d,
            (Global::RebuildTensorV3, _) => {
                return Err(PickleError::Unsupported(
                    "unsupported tensor dtype in _rebuild_tensor_v3".into(),
                ));
            }
            _ => storage_dtype.ok_or_else(|| bad("an untyped storage and no dtype"))?,
        };
        if storage_dtype.is_some_and(|s| s != dtype) {
            return Err(bad("a dtype different from its storage's"));
        }
        let offset = non_negative(offset).ok_or_else(|| bad("a negative or non-integer offset"))?;
        let shape = self
            .usize_list(size)
            .ok_or_else(|| bad("an invalid size (negative, or over 64 dimensions)"))?;
        let stride = self
            .usize_list(stride)
            .ok_or_else(|| bad("an invalid stride"))?;
        if shape.len() != stride.len() {
            return Err(bad("size and stride of different lengths"));
        }
        self.budget
            .take(OBJ_COST + 16 * shape.len(), "the pickle")?;
        self.heap.tensors.push(TensorRef {
            storage: *sid,
            dtype,
            offset,
            shape,
            stride,
        });
        Ok(Value::Tensor(self.heap.tensors.len() - 1))
    }

    fn usize_list(&self, v: &Value) -> Option<Vec<usize>> {
        let items = self.heap.tuple(v)?;
        if items.len() > MAX_NDIM {
            return None;
        }
        items.iter().map(non_negative).collect()
    }
}

/// More dimensions than any real tensor has (PyTorch itself stops at 64 too).
const MAX_NDIM: usize = 64;

fn non_negative(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn pairs_to_dict(items: Vec<Value>) -> Result<Dict> {
    if !items.len().is_multiple_of(2) {
        return Err(malformed("a dict with an odd number of items"));
    }
    let mut d = Dict::default();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        d.insert(k, v);
    }
    Ok(d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Hand-assembled pickles, so the malformed-input tests need no Python.
    struct Pk(Vec<u8>);

    impl Pk {
        fn new() -> Pk {
            Pk(vec![0x80, 2])
        }
        fn op(mut self, bytes: &[u8]) -> Pk {
            self.0.extend_from_slice(bytes);
            self
        }
        fn str(mut self, s: &str) -> Pk {
            self.0.push(b'X');
            self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
            self.0.extend_from_slice(s.as_bytes());
            self
        }
        fn int(mut self, i: i32) -> Pk {
            self.0.push(b'J');
            self.0.extend_from_slice(&i.to_le_bytes());
            self
        }
        fn global(mut self, module: &str, name: &str) -> Pk {
            self.0.push(b'c');
            self.0
                .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
            self
        }
        fn ints(self, values: &[i32]) -> Pk {
            values.iter().fold(self.op(b"("), |p, &v| p.int(v)).op(b"t")
        }
        /// `_rebuild_tensor_v2(storage(key, numel), offset, shape, stride, False, OrderedDict())`,
        /// optionally with the legacy format's sixth persistent-id item.
        fn tensor(
            self,
            key: &str,
            numel: i32,
            offset: i32,
            shape: &[i32],
            stride: &[i32],
            legacy: bool,
        ) -> Pk {
            let p = self
                .global("torch._utils", "_rebuild_tensor_v2")
                .op(b"((")
                .str("storage")
                .global("torch", "FloatStorage")
                .str(key)
                .str("cuda:0")
                .int(numel);
            let p = if legacy { p.op(b"N") } else { p };
            p.op(b"tQ")
                .int(offset)
                .ints(shape)
                .ints(stride)
                .op(&[0x89])
                .global("collections", "OrderedDict")
                .op(b")R")
                .op(b"tR")
        }
        fn stop(self) -> Vec<u8> {
            self.op(b".").0
        }
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn make_zip(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, data) in entries {
            w.start_file(*name, opts).expect("start zip entry");
            w.write_all(data).expect("write zip entry");
        }
        w.finish().expect("finish zip").into_inner()
    }

    /// `{'m': {'w': <2x2 transpose of storage 0>}, 'step': 3}`.
    fn small_pickle(legacy: bool) -> Vec<u8> {
        Pk::new()
            .op(b"}q\x00(")
            .str("m")
            .op(b"}(")
            .str("w")
            .tensor("0", 4, 0, &[2, 2], &[1, 2], legacy)
            .op(b"u")
            .str("step")
            .int(3)
            .op(b"u")
            .stop()
    }

    fn small_zip() -> Vec<u8> {
        let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
        make_zip(
            &[
                ("ckpt/data.pkl", &small_pickle(false)),
                ("ckpt/byteorder", b"little"),
                ("ckpt/data/0", &data),
            ],
            zip::CompressionMethod::Stored,
        )
    }

    fn small_legacy() -> Vec<u8> {
        let mut out = Pk::new().op(&[0x8a, 10]).op(&LEGACY_MAGIC).stop();
        out.extend(Pk::new().int(1001).stop());
        out.extend(
            Pk::new()
                .op(b"}")
                .str("little_endian")
                .op(&[0x88])
                .op(b"s")
                .stop(),
        );
        out.extend(small_pickle(true));
        out.extend(Pk::new().op(b"]").str("0").op(b"a").stop());
        out.extend(4u64.to_le_bytes());
        out.extend(f32_bytes(&[1.0, 2.0, 3.0, 4.0]));
        out
    }

    fn expect_small(file: &PtFile) {
        let w = &file.dicts["m"]["w"];
        assert_eq!(w.dtype, DType::F32);
        assert_eq!(w.shape, vec![2, 2]);
        assert_eq!(w.to_f32_vec().expect("floats"), vec![1.0, 3.0, 2.0, 4.0]);
        assert_eq!(file.skipped, vec!["step".to_string()]);
    }

    #[test]
    fn pickle_hand_built_zip_legacy_and_deflate_read() {
        expect_small(&read_pt_bytes(&small_zip()).expect("zip"));
        expect_small(&read_pt_bytes(&small_legacy()).expect("legacy"));
        let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
        let deflated = make_zip(
            &[("x/data.pkl", &small_pickle(false)), ("x/data/0", &data)],
            zip::CompressionMethod::Deflated,
        );
        expect_small(&read_pt_bytes(&deflated).expect("deflated zip"));
    }

    #[test]
    fn pickle_rejects_empty_random_and_truncated_input() {
        assert!(matches!(read_pt_bytes(&[]), Err(PickleError::Malformed(_))));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in [1usize, 7, 100, 4096] {
            for first in [None, Some(b"PK".as_slice()), Some(&[0x80, 0x02][..])] {
                let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if let Some(head) = first {
                    for (b, h) in bytes.iter_mut().zip(head) {
                        *b = *h;
                    }
                }
                assert!(
                    read_pt_bytes(&bytes).is_err(),
                    "random {len} bytes accepted"
                );
            }
        }
        let zip = small_zip();
        for cut in 0..zip.len() {
            assert!(
                read_pt_bytes(&zip[..cut]).is_err(),
                "zip cut at {cut} accepted"
            );
        }
        let legacy = small_legacy();
        for cut in 0..legacy.len() {
            assert!(
                read_pt_bytes(&legacy[..cut]).is_err(),
                "legacy cut at {cut} accepted"
            );
        }
    }

    fn zip_with_pickle(pickle: &[u8], storage_len: usize) -> Vec<u8> {
        let data = vec![0u8; storage_len];
        make_zip(
            &[("a/data.pkl", pickle), ("a/data/0", &data)],
            zip::CompressionMethod::Stored,
        )
    }

    #[test]
    fn pickle_refuses_globals_outside_the_allow_list() {
        let evil = Pk::new()
            .global("os", "system")
            .str("touch /tmp/pwned")
            .op(&[0x85])
            .op(b"R")
            .stop();
        let stack_global = Pk::new()
            .op(b"}")
            .str("x")
            .str("builtins")
            .str("eval")
            .op(&[0x93])
            .str("1")
            .op(&[0x85])
            .op(b"Rs")
            .stop();
        // Even inside a value that would only be skipped.
        let hidden = Pk::new()
            .op(b"}(")
            .str("m")
            .op(b"}")
            .str("opt")
            .global("subprocess", "Popen")
            .op(b"u")
            .stop();
        for (pickle, name) in [
            (evil, "os.system"),
            (stack_global, "builtins.eval"),
            (hidden, "subprocess.Popen"),
        ] {
            match read_pt_bytes(&zip_with_pickle(&pickle, 0)) {
                Err(PickleError::Unsupported(m)) => {
                    assert!(
                        m.contains(&format!("unsupported pickle global {name}")),
                        "{m}"
                    )
                }
                other => panic!("{name} not refused: {other:?}"),
            }
        }
    }

    fn one_tensor(key: &str, numel: i32, offset: i32, shape: &[i32], stride: &[i32]) -> Vec<u8> {
        Pk::new()
            .op(b"}")
            .str("m")
            .op(b"}")
            .str("w")
            .tensor(key, numel, offset, shape, stride, false)
            .op(b"ss")
            .stop()
    }

    #[test]
    fn pickle_rejects_bad_storages_and_shapes() {
        let ok = read_pt_bytes(&zip_with_pickle(&one_tensor("0", 4, 1, &[3], &[1]), 16));
        assert_eq!(ok.expect("valid slice").dicts["m"]["w"].shape, vec![3]);

        let cases: [(&str, Vec<u8>, usize); 6] = [
            ("missing key", one_tensor("7", 4, 0, &[4], &[1]), 16),
            (
                "stride past end",
                one_tensor("0", 4, 0, &[3, 2], &[2, 1]),
                16,
            ),
            ("offset past end", one_tensor("0", 4, 4, &[1], &[1]), 16),
            ("numel past entry", one_tensor("0", 8, 0, &[4], &[1]), 16),
            (
                "huge stride-0",
                one_tensor("0", 1, 0, &[1 << 30, 1 << 30], &[0, 0]),
                4,
            ),
            ("negative stride", one_tensor("0", 4, 3, &[2], &[-1]), 16),
        ];
        for (what, pickle, len) in cases {
            let r = read_pt_bytes(&zip_with_pickle(&pickle, len));
            assert!(r.is_err(), "{what} accepted: {r:?}");
        }
        let r = read_pt_bytes(&zip_with_pickle(
            &one_tensor("0", 1, 0, &[1 << 30, 1 << 30], &[0, 0]),
            4,
        ));
        assert!(matches!(r, Err(PickleError::TooLarge(_))), "{r:?}");
        // A storage only a skipped value uses may be missing.
        let skipped_only = Pk::new()
            .op(b"}")
            .str("step")
            .op(b"(")
            .tensor("9", 4, 0, &[4], &[1], false)
            .op(b"ls")
            .stop();
        let r = read_pt_bytes(&zip_with_pickle(&skipped_only, 0)).expect("skipped only");
        assert_eq!(r.skipped, vec!["step".to_string()]);
    }

    #[test]
    fn pickle_deep_nesting_neither_overflows_nor_hangs() {
        let depth = 200_000;
        let mut lists = Pk::new().op(&vec![b']'; depth]);
        lists = lists.op(&vec![b'a'; depth - 1]);
        let r = read_pt_bytes(&zip_with_pickle(&lists.stop(), 0));
        assert!(matches!(r, Err(PickleError::Unsupported(_))), "{r:?}");
        let tuples = Pk::new().op(b")").op(&vec![0x85; depth]).stop();
        assert!(read_pt_bytes(&zip_with_pickle(&tuples, 0)).is_err());
    }

    #[test]
    fn pickle_shared_references_cannot_amplify_memory() {
        // set(L) a hundred thousand times over one memoised list of a hundred thousand items.
        let n = 100_000;
        let mut p = Pk::new().op(b"]q\x00(").op(&vec![b'N'; n]).op(b"e");
        p = p.global("builtins", "set").op(b"q\x01");
        for _ in 0..n {
            p = p.op(b"h\x01h\x00\x85R0");
        }
        let started = std::time::Instant::now();
        let r = read_pt_bytes(&zip_with_pickle(&p.op(b"}").stop(), 0));
        assert!(r.is_ok(), "{:?}", r.err());
        assert!(started.elapsed().as_secs() < 20, "quadratic work");

        // One dict of 1000 tensor names filed under 200000 top-level keys.
        let mut p = Pk::new()
            .op(b"}")
            .op(b"}q\x00")
            .tensor("0", 4, 0, &[4], &[1], false)
            .op(b"q\x01");
        for i in 0..1000 {
            p = p.op(b"h\x00").str(&format!("w{i}")).op(b"h\x01s0");
        }
        p = p.op(b"00(");
        for i in 0..200_000 {
            p = p.str(&format!("k{i}")).op(b"h\x00");
        }
        let r = read_pt_bytes(&zip_with_pickle(&p.op(b"u").stop(), 16));
        assert!(
            matches!(r, Err(PickleError::TooLarge(_))),
            "{:?}",
            r.map(|f| f.dicts.len())
        );
    }

    #[test]
    fn pickle_fuzzed_files_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let pickle = small_pickle(false);
        for base in [small_zip(), small_legacy(), zip_with_pickle(&pickle, 16)] {
            for _ in 0..400 {
                let mut bytes = base.clone();
                match next() % 4 {
                    0 => {
                        let i = next() % bytes.len();
                        bytes[i] = next() as u8;
                    }
                    1 => {
                        for _ in 0..1 + next() % 8 {
                            let i = next() % bytes.len();
                            bytes[i] ^= 1 << (next() % 8);
                        }
                    }
                    2 => {
                        let i = next() % bytes.len();
                        bytes.insert(i, next() as u8);
                    }
                    _ => {
                        let i = next() % bytes.len();
                        bytes.remove(i);
                    }
                }
                let _ = read_pt_bytes(&bytes);
            }
        }
        // Straight into the pickle machine, past zip's checksums.
        let valid = small_legacy();
        for _ in 0..600 {
            let mut bytes = pickle.clone();
            for _ in 0..1 + next() % 3 {
                let i = next() % bytes.len();
                bytes[i] = next() as u8;
            }
            let mut heap = Heap::default();
            let mut budget = Budget::for_input(bytes.len());
            if let Ok((top, _)) = unpickle(&bytes, &mut heap, &mut budget) {
                let _ = plan_output(&heap, &top, &mut budget);
            }
            let mut legacy = valid.clone();
            let i = next() % legacy.len();
            legacy[i] = next() as u8;
            let _ = read_pt_bytes(&legacy);
        }
    }

    #[test]
    fn pickle_corrupt_zip_entry_is_detected() {
        let mut zip = small_zip();
        let at = zip
            .windows(4)
            .position(|w| w == 1.0f32.to_le_bytes())
            .expect("storage bytes");
        zip[at] ^= 1;
        assert!(matches!(read_pt_bytes(&zip), Err(PickleError::Zip(_))));
    }

    #[test]
    fn pickle_half_precision_conversions_are_exact() {
        let t = RawTensor {
            dtype: DType::F16,
            shape: vec![6],
            data: [0x3c00u16, 0xc000, 0x0001, 0x7c00, 0x0000, 0x3555]
                .iter()
                .flat_map(|h| h.to_le_bytes())
                .collect(),
        };
        let v = t.to_f32_vec().expect("f16");
        assert_eq!(&v[..5], &[1.0, -2.0, 2f32.powi(-24), f32::INFINITY, 0.0]);
        assert_eq!(v[5], 0.333_251_95);
        let b = RawTensor {
            dtype: DType::BF16,
            shape: vec![1],
            data: 0x3fc0u16.to_le_bytes().to_vec(),
        };
        assert_eq!(b.to_f32_vec().expect("bf16"), vec![1.5]);
    }

    const MAKE_CHECKPOINTS: &str = r#"
import collections, json, os, sys, zipfile
import torch, torch.nn as nn

out = sys.argv[1]
torch.manual_seed(0)
base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1
g = collections.OrderedDict()
g["conv.weight"] = torch.randn(4, 3, 3, 3)
g["base"] = base
g["transposed"] = base.t()
g["slice"] = base[1:, 1:3]
g["row"] = base[2]
g["expanded"] = torch.tensor([1.5, -2.0]).expand(3, 2)
g["half"] = torch.randn(5).half()
g["bf16"] = torch.randn(2, 3).bfloat16().t()
g["double"] = torch.randn(3, dtype=torch.float64)
g["steps"] = torch.tensor(7)
g["int32"] = torch.tensor([-3, 4], dtype=torch.int32)
g["bytes"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
g["mask"] = torch.tensor([True, False, True])
g["empty"] = torch.zeros(0, 3)
g["param"] = nn.Parameter(torch.randn(2))
with_attr = torch.randn(2)
with_attr.note = "x"
g["with_attr"] = with_attr
g._metadata = collections.OrderedDict({"": {"version": 1}})
disc = nn.Sequential(
    nn.utils.spectral_norm(nn.Conv2d(3, 4, 3)),
    nn.LeakyReLU(0.2),
    nn.utils.spectral_norm(nn.Linear(4, 2)),
)
dis = disc.state_dict()
ckpt = {"genA2B": g, "disGA": dis, "step": 5, "opt": {"lr": 0.1, "betas": (0.5, 0.999)}, "none": {}}

torch.save(ckpt, os.path.join(out, "zip.pt"))
torch.save(ckpt, os.path.join(out, "proto4.pt"), pickle_protocol=4)
torch.save(ckpt, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)
torch.save(dis, os.path.join(out, "flat.pt"))
with zipfile.ZipFile(os.path.join(out, "zip.pt")) as src, zipfile.ZipFile(
    os.path.join(out, "deflate.pt"), "w", zipfile.ZIP_DEFLATED
) as dst:
    for info in src.infolist():
        dst.writestr(info.filename, src.read(info.filename))

names = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32",
         torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
         torch.uint8: "U8", torch.bool: "Bool"}
def enc(sd):
    return {k: {"dtype": names[t.dtype], "shape": list(t.shape),
                "hex": bytes(t.detach().clone().contiguous().reshape(-1).view(torch.uint8).tolist()).hex()}
            for k, t in sd.items()}
full = {"dicts": {"genA2B": enc(g), "disGA": enc(dis), "none": {}}, "skipped": ["step", "opt"]}
flat = {"dicts": {"": enc(dis)}, "skipped": []}
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"full": full, "flat": flat, "dis_keys": sorted(dis.keys())}, f)
"#;

    fn expected_file(v: &serde_json::Value) -> PtFile {
        let dtype = |s: &str| match s {
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "F32" => DType::F32,
            "F64" => DType::F64,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "U8" => DType::U8,
            "Bool" => DType::Bool,
            other => panic!("dtype {other}"),
        };
        let mut file = PtFile::default();
        for (name, sd) in v["dicts"].as_object().expect("dicts") {
            let mut out = StateDict::new();
            for (k, t) in sd.as_object().expect("state dict") {
                let hex_str = t["hex"].as_str().expect("hex");
                out.insert(
                    k.clone(),
                    RawTensor {
                        dtype: dtype(t["dtype"].as_str().expect("dtype")),
                        shape: t["shape"]
                            .as_array()
                            .expect("shape")
                            .iter()
                            .map(|d| d.as_u64().expect("dim") as usize)
                            .collect(),
                        data: hex::decode(hex_str).expect("hex data"),
                    },
                );
            }
            file.dicts.insert(name.clone(), out);
        }
        file.skipped = v["skipped"]
            .as_array()
            .expect("skipped")
            .iter()
            .map(|s| s.as_str().expect("key").to_string())
            .collect();
        file
    }

    #[test]
    fn pickle_reads_files_written_by_pytorch() {
        let python = std::env::var("BRS_PYTHON")
            .ok()
            .or_else(|| option_env!("BRS_PYTHON").map(str::to_owned))
            .filter(|p| !p.is_empty())
            .expect("BRS_PYTHON is unset: run scripts/setup (it installs the venv with torch)");
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("make.py");
        std::fs::write(&script, MAKE_CHECKPOINTS).expect("write script");
        let status = std::process::Command::new(&python)
            .arg(&script)
            .arg(dir.path())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run scripts/setup"));
        assert!(status.success(), "the checkpoint script failed");
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("expected.json")).expect("expected.json"),
        )
        .expect("json");
        let full = expected_file(&expected["full"]);
        for name in ["zip.pt", "proto4.pt", "legacy.pt", "deflate.pt"] {
            let got = read_pt(&dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.skipped, full.skipped, "{name}");
            assert_eq!(
                got.dicts.keys().collect::<Vec<_>>(),
                full.dicts.keys().collect::<Vec<_>>(),
                "{name}"
            );
            for (dict, sd) in &full.dicts {
                for (k, t) in sd {
                    assert_eq!(&got.dicts[dict][k], t, "{name}: {dict}/{k}");
                }
                assert_eq!(got.dicts[dict].len(), sd.len(), "{name}: {dict}");
            }
            // Independent of Python's rendering: views really are the transposed/sliced base.
            let g = &got.dicts["genA2B"];
            let base = g["base"].to_f32_vec().expect("base");
            let tr = g["transposed"].to_f32_vec().expect("transposed");
            assert_eq!(g["transposed"].shape, vec![4, 3]);
            for i in 0..3 {
                for j in 0..4 {
                    assert_eq!(tr[j * 3 + i], base[i * 4 + j]);
                }
            }
            let slice = g["slice"].to_f32_vec().expect("slice");
            assert_eq!(slice, vec![base[5], base[6], base[9], base[10]]);
            assert_eq!(g["steps"].data, 7i64.to_le_bytes().to_vec());
            assert_eq!(g["steps"].shape, Vec::<usize>::new());
        }
        let dis_keys: Vec<&str> = expected["dis_keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k.as_str())
            .collect();
        assert!(dis_keys.contains(&"0.weight_orig") && dis_keys.contains(&"2.weight_v"));
        let flat = read_pt(&dir.path().join("flat.pt")).expect("flat.pt");
        assert_eq!(flat, expected_file(&expected["flat"]));
    }
}
