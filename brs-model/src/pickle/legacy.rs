//! The single-stream layout of `_use_new_zipfile_serialization=False`: magic, version and
//! system-info pickles, the object pickle, the list of storage keys, then the raw storages.

use std::collections::HashMap;
use std::rc::Rc;

use super::budget::Budget;
use super::machine::unpickle;
use super::plan::plan_output;
use super::value::{Heap, Obj, Value, describe, dict_get_str};
use super::{PickleError, PtFile, Result, malformed};

/// `torch.serialization.MAGIC_NUMBER`, 0x1950a86a20f9469cfc6c, as pickle's little-endian LONG1.
pub(super) const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

pub(super) fn read(bytes: &[u8], budget: &mut Budget) -> Result<PtFile> {
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
        Value::BigInt(b) if b.as_ref() == MAGIC => {}
        _ => {
            return Err(malformed(
                "a pickle that does not start with PyTorch's magic number (not a torch.save file)",
            ));
        }
    }
    match next(&mut scratch, budget)? {
        Value::Int(PROTOCOL_VERSION) => {}
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
