//! The pickle stack machine: the stack, its marks and the memo, and what each opcode does to
//! them. Calls of globals and torch's persistent ids are delegated to `calls`.

use std::collections::HashMap;
use std::rc::Rc;

use super::budget::{Budget, MEMO_COST, OP_COST};
use super::calls;
use super::globals::{self, Global};
use super::input::{Input, long, utf8};
use super::op::Op;
use super::value::{Dict, Heap, Obj, Value, pairs_to_dict};
use super::{PickleError, Result, malformed};

/// Runs one pickle from the start of `data`; returns its value and the bytes it used.
pub(super) fn unpickle(
    data: &[u8],
    heap: &mut Heap,
    budget: &mut Budget,
) -> Result<(Value, usize)> {
    let mut input = Input::new(data);
    let mut m = Machine {
        heap,
        budget,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let byte = input.u8()?;
        // Memory the machine holds grows with the ops run, not with the bytes: one 2-byte
        // BINGET can copy a reference to anything. So every op, object and memo entry pays.
        m.budget.take(OP_COST, "the pickle")?;
        let op = Op::from_byte(byte).ok_or_else(|| {
            PickleError::Unsupported(format!(
                "unsupported pickle opcode 0x{byte:02x} at byte {}",
                input.pos() - 1
            ))
        })?;
        if let Some(v) = m.step(op, &mut input)? {
            return Ok((v, input.pos()));
        }
    }
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

impl Machine<'_> {
    /// Runs one opcode, reading its arguments from `input`; STOP returns the pickle's value.
    fn step(&mut self, op: Op, input: &mut Input<'_>) -> Result<Option<Value>> {
        match op {
            Op::Proto => {
                let p = input.u8()?;
                if p > 5 {
                    return Err(PickleError::Unsupported(format!(
                        "unsupported pickle protocol {p}"
                    )));
                }
            }
            Op::Frame => {
                input.take(8)?;
            }
            Op::Stop => return self.pop().map(Some),

            Op::Mark => self.marks.push(self.stack.len()),
            // Python drops the innermost MARK when its frame is empty.
            Op::Pop if self.stack.len() <= self.floor() => {
                self.pop_mark()?;
            }
            Op::Pop => {
                self.pop()?;
            }
            Op::PopMark => {
                self.pop_mark()?;
            }
            Op::Dup => self.push(self.top()?.clone()),

            Op::None => self.push(Value::None),
            Op::NewTrue => self.push(Value::Bool(true)),
            Op::NewFalse => self.push(Value::Bool(false)),
            Op::BinInt => self.push(Value::Int(i32::from_le_bytes(input.array()?).into())),
            Op::BinInt1 => self.push(Value::Int(input.u8()?.into())),
            Op::BinInt2 => self.push(Value::Int(u16::from_le_bytes(input.array()?).into())),
            Op::Long1 => self.push(long(input.short_bytes()?)),
            Op::Long4 => self.push(long(input.bytes_u32()?)),
            Op::BinFloat => self.push(Value::Float(f64::from_be_bytes(input.array()?))),
            Op::BinUnicode => self.push(utf8(input.bytes_u32()?)?),
            Op::ShortBinUnicode => self.push(utf8(input.short_bytes()?)?),
            Op::BinUnicode8 => self.push(utf8(input.bytes_u64()?)?),
            Op::BinString => self.push(py2_str(input.bytes_u32()?)),
            Op::ShortBinString => self.push(py2_str(input.short_bytes()?)),
            Op::BinBytes => self.push(Value::Bytes(Rc::from(input.bytes_u32()?))),
            Op::ShortBinBytes => self.push(Value::Bytes(Rc::from(input.short_bytes()?))),
            Op::BinBytes8 | Op::ByteArray8 => self.push(Value::Bytes(Rc::from(input.bytes_u64()?))),

            Op::EmptyTuple => self.push_obj(Obj::Tuple(Vec::new()))?,
            Op::Tuple => {
                let items = self.pop_mark()?;
                self.push_obj(Obj::Tuple(items))?
            }
            Op::Tuple1 => self.push_tuple_of(1)?,
            Op::Tuple2 => self.push_tuple_of(2)?,
            Op::Tuple3 => self.push_tuple_of(3)?,
            Op::EmptyList => self.push_obj(Obj::List(Vec::new()))?,
            Op::List => {
                let items = self.pop_mark()?;
                self.push_obj(Obj::List(items))?
            }
            Op::EmptyDict => self.push_obj(Obj::Dict(Dict::default()))?,
            Op::Dict => {
                let dict = pairs_to_dict(self.pop_mark()?)?;
                self.push_obj(Obj::Dict(dict))?
            }
            Op::EmptySet => self.push_obj(Obj::Set(Vec::new()))?,
            Op::FrozenSet => {
                let items = self.pop_mark()?;
                self.push_obj(Obj::Set(items))?
            }

            Op::Append => self.append()?,
            Op::Appends => self.appends()?,
            Op::AddItems => self.add_items()?,
            Op::SetItem => self.set_item()?,
            Op::SetItems => self.set_items()?,

            Op::BinPut => self.memo_put(input.u8()?.into())?,
            Op::LongBinPut => self.memo_put(input.u32()?)?,
            Op::Memoize => {
                let i = u32::try_from(self.memo.len()).map_err(|_| malformed("memo overflow"))?;
                self.memo_put(i)?
            }
            Op::BinGet => self.push(self.memo_get(input.u8()?.into())?),
            Op::LongBinGet => self.push(self.memo_get(input.u32()?)?),

            Op::Global => {
                let module = input.line()?;
                let name = input.line()?;
                self.push(Value::Global(globals::resolve(module, name)?))
            }
            Op::StackGlobal => self.stack_global()?,
            Op::Reduce => {
                let args = self.pop()?;
                let func = self.pop()?;
                let v = calls::call(self.heap, self.budget, &func, &args)?;
                self.push(v)
            }
            Op::NewObj => self.new_obj()?,
            Op::NewObjEx => {
                // Keyword arguments are never needed by the allowed classes.
                self.pop()?;
                self.new_obj()?
            }
            // BUILD sets attributes (OrderedDict's `_metadata`), which a reader has no use for.
            Op::Build => {
                self.pop()?;
                self.top()?;
            }
            Op::BinPersId => {
                let pid = self.pop()?;
                let v = calls::persistent_load(self.heap, &pid)?;
                self.push(v)
            }
        }
        Ok(None)
    }

    /// Stores a new container and pushes it.
    fn push_obj(&mut self, obj: Obj) -> Result<()> {
        let v = self.heap.alloc(obj, self.budget)?;
        self.push(v);
        Ok(())
    }

    /// TUPLE1..3: a tuple of the top `n` items.
    fn push_tuple_of(&mut self, n: usize) -> Result<()> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.pop()?);
        }
        items.reverse();
        self.push_obj(Obj::Tuple(items))
    }

    fn append(&mut self) -> Result<()> {
        let v = self.pop()?;
        match self.top_obj()? {
            Obj::List(l) => l.push(v),
            _ => return Err(malformed("APPEND to something that is not a list")),
        }
        Ok(())
    }

    fn appends(&mut self) -> Result<()> {
        let items = self.pop_mark()?;
        match self.top_obj()? {
            Obj::List(l) => l.extend(items),
            _ => return Err(malformed("APPENDS to something that is not a list")),
        }
        Ok(())
    }

    fn add_items(&mut self) -> Result<()> {
        let items = self.pop_mark()?;
        match self.top_obj()? {
            Obj::Set(s) => s.extend(items),
            _ => return Err(malformed("ADDITEMS to something that is not a set")),
        }
        Ok(())
    }

    fn set_item(&mut self) -> Result<()> {
        let v = self.pop()?;
        let k = self.pop()?;
        match self.top_obj()? {
            Obj::Dict(d) => d.insert(k, v),
            _ => return Err(malformed("SETITEM on something that is not a dict")),
        }
        Ok(())
    }

    fn set_items(&mut self) -> Result<()> {
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
        Ok(())
    }

    fn stack_global(&mut self) -> Result<()> {
        let name = self.pop()?;
        let module = self.pop()?;
        let g = match (&module, &name) {
            (Value::Str(m), Value::Str(n)) => globals::resolve(m, n)?,
            _ => return Err(malformed("STACK_GLOBAL with non-string names")),
        };
        self.push(Value::Global(g));
        Ok(())
    }

    /// NEWOBJ: only the allowed container classes can be instantiated.
    fn new_obj(&mut self) -> Result<()> {
        let args = self.pop()?;
        let cls = self.pop()?;
        match cls {
            Value::Global(Global::OrderedDict | Global::Set | Global::FrozenSet) => {
                let v = calls::call(self.heap, self.budget, &cls, &args)?;
                self.push(v);
                Ok(())
            }
            _ => Err(malformed("NEWOBJ of a class that cannot be built")),
        }
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
}

/// Python 2 `str` (BINSTRING, SHORT_BINSTRING), read as text when it is valid UTF-8.
fn py2_str(raw: &[u8]) -> Value {
    utf8(raw).unwrap_or_else(|_| Value::Bytes(Rc::from(raw)))
}
