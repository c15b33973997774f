//! What the allow-listed globals do when a pickle calls them (REDUCE, NEWOBJ), and torch's
//! persistent ids (BINPERSID) turned into storages. Containers come back empty or as given;
//! storages and tensors are recorded in the heap as references, never read here.

use std::rc::Rc;

use super::budget::{Budget, OBJ_COST};
use super::globals::Global;
use super::value::{Dict, Heap, Obj, StorageRef, TensorRef, Value, describe, non_negative};
use super::{PickleError, Result, malformed};

/// `('storage', storage_class, key, location, numel[, view_metadata])`: the persistent id
/// torch.save writes for each storage (the sixth item only in the legacy format).
pub(super) fn persistent_load(heap: &mut Heap, pid: &Value) -> Result<Value> {
    let items = heap
        .tuple(pid)
        .ok_or_else(|| malformed("a persistent id that is not a tuple"))?;
    let bad = || malformed("a persistent id that is not ('storage', class, key, location, numel)");
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
            let m = heap.tuple(meta).ok_or_else(bad)?;
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
    heap.storages.push(storage);
    Ok(Value::Storage(heap.storages.len() - 1))
}

pub(super) fn call(
    heap: &mut Heap,
    budget: &mut Budget,
    func: &Value,
    args: &Value,
) -> Result<Value> {
    let Value::Global(g) = func else {
        return Err(malformed(format!(
            "REDUCE on {}, which is not callable",
            describe(heap, func)
        )));
    };
    let args = heap
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
        (Global::OrderedDict, []) => heap.alloc(Obj::Dict(Dict::default()), budget),
        // A set can hold nothing we return, so its items are not copied (copying a shared
        // list per REDUCE would let a small file claim quadratic memory).
        (Global::Set | Global::FrozenSet, [] | [_]) => heap.alloc(Obj::Set(Vec::new()), budget),
        (Global::CodecsEncode, [Value::Str(s), Value::Str(enc)])
            if enc.as_ref() == "latin1" || enc.as_ref() == "latin-1" =>
        {
            budget.take(s.len(), "a bytes literal")?;
            let bytes = s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).map_err(|_| malformed("bad latin1 text")))
                .collect::<Result<Vec<u8>>>()?;
            Ok(Value::Bytes(Rc::from(bytes)))
        }
        (Global::Device, [Value::Str(_)] | [Value::Str(_), Value::Int(_)]) => Ok(Value::Device),
        (Global::RebuildTensor | Global::RebuildTensorV2 | Global::RebuildTensorV3, _) => {
            rebuild_tensor(heap, budget, *g, &args)
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
            call(heap, budget, &inner_func, &inner_args)
        }
        _ => Err(PickleError::Unsupported(format!(
            "unsupported call of {g:?} with {} arguments",
            args.len()
        ))),
    }
}

/// `_rebuild_tensor(storage, offset, size, stride)`, `_rebuild_tensor_v2(..., requires_grad,
/// hooks[, metadata])` and `_rebuild_tensor_v3(..., requires_grad, hooks, dtype[, metadata])`.
fn rebuild_tensor(
    heap: &mut Heap,
    budget: &mut Budget,
    g: Global,
    args: &[Value],
) -> Result<Value> {
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
    let storage_dtype = heap
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
    let shape = usize_list(heap, size)
        .ok_or_else(|| bad("an invalid size (negative, or over 64 dimensions)"))?;
    let stride = usize_list(heap, stride).ok_or_else(|| bad("an invalid stride"))?;
    if shape.len() != stride.len() {
        return Err(bad("size and stride of different lengths"));
    }
    budget.take(OBJ_COST + 16 * shape.len(), "the pickle")?;
    heap.tensors.push(TensorRef {
        storage: *sid,
        dtype,
        offset,
        shape,
        stride,
    });
    Ok(Value::Tensor(heap.tensors.len() - 1))
}

fn usize_list(heap: &Heap, v: &Value) -> Option<Vec<usize>> {
    let items = heap.tuple(v)?;
    if items.len() > MAX_NDIM {
        return None;
    }
    items.iter().map(non_negative).collect()
}

/// More dimensions than any real tensor has (PyTorch itself stops at 64 too).
const MAX_NDIM: usize = 64;
