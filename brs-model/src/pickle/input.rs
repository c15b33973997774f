//! Reading a pickle's bytes: the bounds-checked cursor and pickle's encodings of text and
//! integers.

use std::rc::Rc;

use super::value::Value;
use super::{Result, malformed};

/// A cursor over one pickle's bytes; every read is bounds-checked.
pub(super) struct Input<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Input<'a> {
        Input { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| malformed("the pickle ends in the middle of an opcode"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn len_u32(&mut self) -> Result<usize> {
        usize::try_from(self.u32()?).map_err(|_| malformed("length overflows"))
    }

    fn len_u64(&mut self) -> Result<usize> {
        usize::try_from(u64::from_le_bytes(self.array()?))
            .map_err(|_| malformed("length overflows"))
    }

    /// Bytes preceded by their length in one byte.
    pub(super) fn short_bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    /// Bytes preceded by their length as a little-endian u32.
    pub(super) fn bytes_u32(&mut self) -> Result<&'a [u8]> {
        let n = self.len_u32()?;
        self.take(n)
    }

    /// Bytes preceded by their length as a little-endian u64.
    pub(super) fn bytes_u64(&mut self) -> Result<&'a [u8]> {
        let n = self.len_u64()?;
        self.take(n)
    }

    /// One text line without its newline (GLOBAL's module and name).
    pub(super) fn line(&mut self) -> Result<&'a str> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| malformed("unterminated GLOBAL"))?;
        let line = self.take(n + 1)?;
        std::str::from_utf8(&line[..n]).map_err(|_| malformed("GLOBAL name is not UTF-8"))
    }
}

/// Pickle's text: UTF-8, refused otherwise.
pub(super) fn utf8(bytes: &[u8]) -> Result<Value> {
    std::str::from_utf8(bytes)
        .map(|s| Value::Str(Rc::from(s)))
        .map_err(|_| malformed("a string that is not UTF-8"))
}

/// Pickle's LONG: little-endian two's complement of any width.
pub(super) fn long(bytes: &[u8]) -> Value {
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
