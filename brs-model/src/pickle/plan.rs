//! Turning the unpickled object into a [`PtFile`]: which tensors go where, decided before any
//! storage is read, then each tensor materialised from its storage's bytes.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::budget::{Budget, OBJ_COST};
use super::materialize::materialize;
use super::value::{Heap, Obj, Value, describe};
use super::{PickleError, PtFile, Result, StateDict, malformed};

/// Which tensors go where, decided before any storage is read.
pub(super) struct Plan {
    dicts: Vec<(String, Vec<(String, usize)>)>,
    skipped: Vec<String>,
}

pub(super) fn plan_output(heap: &Heap, top: &Value, budget: &mut Budget) -> Result<Plan> {
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
    pub(super) fn storage_keys(&self, heap: &Heap) -> Vec<Rc<str>> {
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

    pub(super) fn build<'d>(
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
