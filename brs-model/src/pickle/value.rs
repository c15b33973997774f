//! The values a pickle builds: scalars inline, containers in one flat arena ([`Heap`]) that the
//! stack and memo refer to by index, plus the storages and tensors torch's calls describe.

use std::collections::HashMap;
use std::rc::Rc;

use super::DType;
use super::budget::{Budget, OBJ_COST};
use super::globals::Global;
use super::{Result, malformed};

pub(super) type ObjId = usize;

/// A pickle value. Containers are indices into [`Heap::objs`], so cloning is cheap and nothing
/// here nests.
#[derive(Clone, Debug)]
pub(super) enum Value {
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
pub(super) enum Obj {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
    Set(Vec<Value>),
}

#[derive(Debug, Default)]
pub(super) struct Dict {
    pub(super) entries: Vec<(Value, Value)>,
    /// Python replaces the value of an existing key; this finds it without a linear scan.
    pub(super) index: HashMap<DictKey, usize>,
}

#[derive(Debug, Hash, PartialEq, Eq)]
pub(super) enum DictKey {
    Str(Rc<str>),
    Int(i64),
    None,
}

impl Dict {
    pub(super) fn insert(&mut self, k: Value, v: Value) {
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

#[derive(Debug)]
pub(super) struct StorageRef {
    pub(super) key: Rc<str>,
    pub(super) dtype: Option<DType>,
    /// In elements of `dtype` (bytes when untyped).
    pub(super) numel: usize,
    /// Legacy storage views: (offset, numel) inside the root storage, in elements.
    pub(super) view: Option<(usize, usize)>,
}

#[derive(Debug)]
pub(super) struct TensorRef {
    pub(super) storage: usize,
    pub(super) dtype: DType,
    /// In elements of `dtype`.
    pub(super) offset: usize,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

#[derive(Debug, Default)]
pub(super) struct Heap {
    pub(super) objs: Vec<Obj>,
    pub(super) storages: Vec<StorageRef>,
    pub(super) tensors: Vec<TensorRef>,
}

impl Heap {
    /// Stores a container, charging it to the budget.
    pub(super) fn alloc(&mut self, obj: Obj, budget: &mut Budget) -> Result<Value> {
        budget.take(OBJ_COST, "the pickle")?;
        self.objs.push(obj);
        Ok(Value::Obj(self.objs.len() - 1))
    }

    pub(super) fn tuple(&self, v: &Value) -> Option<&[Value]> {
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
pub(super) fn describe(heap: &Heap, v: &Value) -> String {
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

pub(super) fn dict_get_str<'h>(heap: &'h Heap, dict: &Value, key: &str) -> Option<&'h Value> {
    let Value::Obj(id) = dict else { return None };
    let Some(Obj::Dict(d)) = heap.objs.get(*id) else {
        return None;
    };
    let i = d.index.get(&DictKey::Str(Rc::from(key)))?;
    d.entries.get(*i).map(|(_, v)| v)
}

pub(super) fn non_negative(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

pub(super) fn pairs_to_dict(items: Vec<Value>) -> Result<Dict> {
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
