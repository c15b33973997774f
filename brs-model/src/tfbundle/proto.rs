//! The protobuf wire format, decoded by hand for the two small messages of a bundle index:
//! `BundleHeaderProto` and `BundleEntryProto` (`tensorflow/core/protobuf/tensor_bundle.proto`,
//! with `TensorShapeProto` and `VersionDef`).
//!
//! Two messages of a handful of scalar fields do not justify a code generator and a build
//! script; what matters here is that every varint, length and field is checked. Errors are plain
//! reasons; the caller adds which file and key they come from.

type Result<T> = std::result::Result<T, String>;

/// Reads a base-128 varint of at most 64 bits (10 bytes), advancing `input`. `None` when the
/// input ends inside it or it overflows 64 bits.
pub(super) fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in input.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        // The tenth byte holds only the 64th bit.
        if i == 9 && byte > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(value);
        }
    }
    None
}

/// One field's payload, by wire type.
#[derive(Debug, PartialEq)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Yields the fields of one serialized message in order.
struct Fields<'a> {
    input: &'a [u8],
}

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>> {
        if self.input.is_empty() {
            return Ok(None);
        }
        let tag = varint(&mut self.input).ok_or("a field tag is cut short or overflows")?;
        let number = tag >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(format!("invalid field number {number}"));
        }
        let value = match tag & 7 {
            0 => Value::Varint(
                varint(&mut self.input)
                    .ok_or_else(|| format!("field {number}: a varint is cut short"))?,
            ),
            1 => {
                self.take(8, number)?;
                Value::Fixed64
            }
            2 => {
                let len = varint(&mut self.input)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| format!("field {number}: bad length"))?;
                Value::Bytes(self.take(len, number)?)
            }
            5 => {
                let b = self.take(4, number)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            wire => {
                return Err(format!(
                    "field {number} has wire type {wire}, which these messages never use"
                ));
            }
        };
        Ok(Some((number, value)))
    }

    fn take(&mut self, n: usize, number: u64) -> Result<&'a [u8]> {
        if n > self.input.len() {
            return Err(format!(
                "field {number} needs {n} bytes but the message has {} left",
                self.input.len()
            ));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }
}

fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields { input: bytes }
}

fn wrong_type(message: &str, field: &str) -> String {
    format!("{message}.{field} has the wrong wire type")
}

/// proto `int32` (and enums): a varint holding a sign-extended 64-bit value.
fn int32(v: u64, message: &str, field: &str) -> Result<i32> {
    i32::try_from(v as i64).map_err(|_| format!("{message}.{field} = {v} is not an int32"))
}

fn varint_field(value: Value<'_>, message: &str, field: &str) -> Result<u64> {
    match value {
        Value::Varint(v) => Ok(v),
        _ => Err(wrong_type(message, field)),
    }
}

fn bytes_field<'a>(value: Value<'a>, message: &str, field: &str) -> Result<&'a [u8]> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(wrong_type(message, field)),
    }
}

/// `BundleHeaderProto`.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Header {
    pub(super) num_shards: i32,
    /// 0 little, 1 big.
    pub(super) endianness: i32,
    /// `VersionDef`: the writer's format version, the oldest reader it allows, and readers it
    /// rules out.
    pub(super) producer: i32,
    pub(super) min_consumer: i32,
    pub(super) bad_consumers: Vec<i32>,
}

pub(super) fn header(bytes: &[u8]) -> Result<Header> {
    let mut h = Header::default();
    let mut f = fields(bytes);
    while let Some((number, value)) = f.next()? {
        match number {
            1 => {
                let v = varint_field(value, "BundleHeaderProto", "num_shards")?;
                h.num_shards = int32(v, "BundleHeaderProto", "num_shards")?;
            }
            2 => {
                let v = varint_field(value, "BundleHeaderProto", "endianness")?;
                h.endianness = int32(v, "BundleHeaderProto", "endianness")?;
            }
            // A repeated occurrence of a message field merges into the first, as protobuf does.
            3 => version(bytes_field(value, "BundleHeaderProto", "version")?, &mut h)?,
            _ => {}
        }
    }
    Ok(h)
}

fn version(bytes: &[u8], h: &mut Header) -> Result<()> {
    let mut f = fields(bytes);
    while let Some((number, value)) = f.next()? {
        match (number, value) {
            (1, Value::Varint(v)) => h.producer = int32(v, "VersionDef", "producer")?,
            (2, Value::Varint(v)) => h.min_consumer = int32(v, "VersionDef", "min_consumer")?,
            (3, Value::Varint(v)) => h
                .bad_consumers
                .push(int32(v, "VersionDef", "bad_consumers")?),
            // proto3 packs repeated scalars: one length-delimited run of varints.
            (3, Value::Bytes(mut packed)) => {
                while !packed.is_empty() {
                    let v = varint(&mut packed)
                        .ok_or("VersionDef.bad_consumers: a packed varint is cut short")?;
                    h.bad_consumers
                        .push(int32(v, "VersionDef", "bad_consumers")?);
                }
            }
            (1..=3, _) => return Err(wrong_type("VersionDef", "field")),
            _ => {}
        }
    }
    Ok(())
}

/// `BundleEntryProto`, with its shape flattened and its slices only counted.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Entry {
    pub(super) dtype: i32,
    pub(super) dims: Vec<i64>,
    pub(super) unknown_rank: bool,
    pub(super) shard_id: i32,
    pub(super) offset: i64,
    pub(super) size: i64,
    /// Masked, as TensorFlow stores it.
    pub(super) crc32c: u32,
    pub(super) slices: usize,
}

pub(super) fn entry(bytes: &[u8]) -> Result<Entry> {
    const M: &str = "BundleEntryProto";
    let mut e = Entry::default();
    let mut f = fields(bytes);
    while let Some((number, value)) = f.next()? {
        match number {
            1 => e.dtype = int32(varint_field(value, M, "dtype")?, M, "dtype")?,
            2 => shape(bytes_field(value, M, "shape")?, &mut e)?,
            3 => e.shard_id = int32(varint_field(value, M, "shard_id")?, M, "shard_id")?,
            4 => e.offset = varint_field(value, M, "offset")? as i64,
            5 => e.size = varint_field(value, M, "size")? as i64,
            6 => match value {
                Value::Fixed32(v) => e.crc32c = v,
                _ => return Err(wrong_type(M, "crc32c")),
            },
            7 => {
                bytes_field(value, M, "slices")?;
                e.slices += 1;
            }
            _ => {}
        }
    }
    Ok(e)
}

/// `TensorShapeProto`: `dim` (field 2, each a `Dim` whose field 1 is the size) and
/// `unknown_rank` (field 3).
fn shape(bytes: &[u8], e: &mut Entry) -> Result<()> {
    const M: &str = "TensorShapeProto";
    let mut f = fields(bytes);
    while let Some((number, value)) = f.next()? {
        match number {
            2 => {
                let mut size = 0i64;
                let mut d = fields(bytes_field(value, M, "dim")?);
                while let Some((number, value)) = d.next()? {
                    if number == 1 {
                        size = varint_field(value, "TensorShapeProto.Dim", "size")? as i64;
                    }
                }
                e.dims.push(size);
            }
            3 => e.unknown_rank = varint_field(value, M, "unknown_rank")? != 0,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    pub(in crate::tfbundle) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A field of wire type 0 (the only kind these tests need besides bytes and fixed32).
    pub(in crate::tfbundle) fn put_uint(out: &mut Vec<u8>, field: u64, v: u64) {
        put_varint(out, field << 3);
        put_varint(out, v);
    }

    pub(in crate::tfbundle) fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        put_varint(out, (field << 3) | 2);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub(in crate::tfbundle) fn put_fixed32(out: &mut Vec<u8>, field: u64, v: u32) {
        put_varint(out, (field << 3) | 5);
        out.extend_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn varints_decode_to_64_bits_and_no_further() {
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            buf.push(0xaa);
            let mut input = &buf[..];
            assert_eq!(varint(&mut input), Some(v));
            assert_eq!(input, &[0xaa]);
        }
        assert_eq!(varint(&mut &[0xac, 0x02][..]), Some(300));
        // Cut short, and an 11-byte or overflowing tenth byte.
        assert_eq!(varint(&mut &[0x80][..]), None);
        assert_eq!(varint(&mut &[][..]), None);
        assert_eq!(varint(&mut &[0xff; 10][..]), None);
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(varint(&mut &over[..]), None);
    }

    #[test]
    fn header_reads_shards_endianness_and_version() {
        let mut version = Vec::new();
        put_uint(&mut version, 1, 1);
        put_uint(&mut version, 2, 0);
        put_bytes(&mut version, 3, &[5, 7]); // packed bad_consumers
        put_uint(&mut version, 3, 9); // and one unpacked
        let mut h = Vec::new();
        put_uint(&mut h, 1, 2);
        put_uint(&mut h, 2, 1);
        put_bytes(&mut h, 3, &version);
        put_uint(&mut h, 15, 42); // unknown fields are skipped
        let got = header(&h).expect("header");
        assert_eq!(
            got,
            Header {
                num_shards: 2,
                endianness: 1,
                producer: 1,
                min_consumer: 0,
                bad_consumers: vec![5, 7, 9],
            }
        );
    }

    #[test]
    fn entry_reads_every_field_and_negative_numbers() {
        let dim = |size: i64| {
            let mut d = Vec::new();
            put_uint(&mut d, 1, size as u64);
            put_bytes(&mut d, 2, b"name");
            d
        };
        let mut shape = Vec::new();
        put_bytes(&mut shape, 2, &dim(3));
        put_bytes(&mut shape, 2, &dim(-1));
        let mut e = Vec::new();
        put_uint(&mut e, 1, 19);
        put_bytes(&mut e, 2, &shape);
        put_uint(&mut e, 3, u64::MAX); // int32 -1, sign-extended to ten bytes
        put_uint(&mut e, 4, 128);
        put_uint(&mut e, 5, 24);
        put_fixed32(&mut e, 6, 0xdead_beef);
        put_bytes(&mut e, 7, b"");
        put_bytes(&mut e, 7, b"");
        assert_eq!(
            entry(&e).expect("entry"),
            Entry {
                dtype: 19,
                dims: vec![3, -1],
                unknown_rank: false,
                shard_id: -1,
                offset: 128,
                size: 24,
                crc32c: 0xdead_beef,
                slices: 2,
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        // A length past the end, a group, a too-large int32, a wrongly typed field.
        assert!(entry(&[0x12, 0x05, 0x00]).is_err());
        assert!(entry(&[0x0b]).is_err());
        let mut big = Vec::new();
        put_uint(&mut big, 3, 1 << 40);
        assert!(entry(&big).unwrap_err().contains("shard_id"));
        let mut typed = Vec::new();
        put_bytes(&mut typed, 1, b"x");
        assert!(entry(&typed).unwrap_err().contains("dtype"));
        assert!(header(&[0x00]).is_err()); // field number 0
        assert!(header(&[0x08]).is_err()); // a tag with no value
    }
}
