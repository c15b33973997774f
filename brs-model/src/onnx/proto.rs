//! A protobuf wire-format *writer* for the few ONNX messages the exporter emits.
//!
//! Messages are built bottom up: a child is complete (so its length is known) before it is
//! embedded, and embedding moves its pieces into the parent instead of copying them. Small
//! fields are encoded at once into byte buffers; tensor payloads stay borrowed (`&[f32]`) and
//! are streamed, little-endian, when the message is written, so a 1 GiB weight is never copied
//! into a second buffer. (The crate's reader of protobuf, `tfbundle::proto`, decodes; nothing
//! here duplicates it.)

use std::io::{self, Write};

/// Protobuf wire types.
const VARINT: u64 = 0;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// One piece of an encoded message, in order.
#[derive(Debug)]
enum Piece<'a> {
    /// Already-encoded bytes.
    Bytes(Vec<u8>),
    /// f32 values, written as little-endian bytes.
    Floats(&'a [f32]),
}

/// A message being encoded. `len` is its encoded length so far.
#[derive(Debug, Default)]
pub(crate) struct Message<'a> {
    pieces: Vec<Piece<'a>>,
    len: u64,
}

/// Appends the base-128 varint of `v` to `out`.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl<'a> Message<'a> {
    pub(crate) fn new() -> Self {
        Message::default()
    }

    /// The encoded length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The byte buffer at the end of the message, to append small fields to.
    fn tail(&mut self) -> &mut Vec<u8> {
        if !matches!(self.pieces.last(), Some(Piece::Bytes(_))) {
            self.pieces.push(Piece::Bytes(Vec::new()));
        }
        match self.pieces.last_mut() {
            Some(Piece::Bytes(bytes)) => bytes,
            // Pushed just above when the last piece was not a byte buffer.
            _ => unreachable!("the tail is a byte buffer"),
        }
    }

    /// Appends encoded bytes, keeping `len` in step.
    fn put(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let tail = self.tail();
        let before = tail.len();
        f(tail);
        let added = (tail.len() - before) as u64;
        self.len += added;
    }

    fn tag(out: &mut Vec<u8>, field: u32, wire: u64) {
        put_varint(out, (u64::from(field) << 3) | wire);
    }

    /// proto `int64` (negative values take ten bytes, as protobuf encodes them).
    pub(crate) fn int64(&mut self, field: u32, v: i64) {
        self.put(|out| {
            Self::tag(out, field, VARINT);
            put_varint(out, v as u64);
        });
    }

    /// proto `int32` and enums: sign-extended to 64 bits on the wire.
    pub(crate) fn int32(&mut self, field: u32, v: i32) {
        self.int64(field, i64::from(v));
    }

    /// proto `float`.
    pub(crate) fn float(&mut self, field: u32, v: f32) {
        self.put(|out| {
            Self::tag(out, field, FIXED32);
            out.extend_from_slice(&v.to_le_bytes());
        });
    }

    /// proto `bytes` (and, through [`Message::string`], `string`).
    pub(crate) fn bytes(&mut self, field: u32, v: &[u8]) {
        self.put(|out| {
            Self::tag(out, field, LEN);
            put_varint(out, v.len() as u64);
            out.extend_from_slice(v);
        });
    }

    pub(crate) fn string(&mut self, field: u32, v: &str) {
        self.bytes(field, v.as_bytes());
    }

    /// A `bytes` field holding `values` as little-endian f32s, streamed when written.
    pub(crate) fn float_bytes(&mut self, field: u32, values: &'a [f32]) {
        let n = 4 * values.len() as u64;
        self.put(|out| {
            Self::tag(out, field, LEN);
            put_varint(out, n);
        });
        self.pieces.push(Piece::Floats(values));
        self.len += n;
    }

    /// An embedded message.
    pub(crate) fn message(&mut self, field: u32, child: Message<'a>) {
        self.put(|out| {
            Self::tag(out, field, LEN);
            put_varint(out, child.len);
        });
        self.len += child.len;
        self.pieces.extend(child.pieces);
    }

    /// Writes the encoded message.
    pub(crate) fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Bytes(bytes) => out.write_all(bytes)?,
                Piece::Floats(values) => write_floats(out, values)?,
            }
        }
        Ok(())
    }

    /// The whole encoding in memory (tests, small messages).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

/// Writes f32s as little-endian bytes through a bounded buffer.
pub(crate) fn write_floats(out: &mut impl Write, values: &[f32]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4 * 16_384);
    for chunk in values.chunks(16_384) {
        buf.clear();
        for v in chunk {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        out.write_all(&buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_base_128_little_endian() {
        for (v, bytes) in [
            (0u64, vec![0x00]),
            (1, vec![0x01]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
        }
    }

    #[test]
    fn fields_encode_as_protobuf_does() {
        // The examples of the protobuf encoding guide: field 1 = 150, field 2 = "testing".
        let mut m = Message::new();
        m.int64(1, 150);
        m.string(2, "testing");
        assert_eq!(
            m.to_vec(),
            [
                &[0x08, 0x96, 0x01][..],
                &[0x12, 0x07],
                b"testing".as_slice()
            ]
            .concat()
        );
        // A negative int32 is sign-extended: ten bytes of varint.
        let mut m = Message::new();
        m.int32(3, -1);
        assert_eq!(m.to_vec().len(), 1 + 10);
        let mut m = Message::new();
        m.float(2, 1.0);
        assert_eq!(m.to_vec(), [0x15, 0x00, 0x00, 0x80, 0x3f]);
    }

    #[test]
    fn nested_messages_and_streamed_floats_have_the_length_they_write() {
        let values = [1.0f32, -2.5, 3.25];
        let mut inner = Message::new();
        inner.string(8, "w");
        inner.float_bytes(9, &values);
        inner.int64(1, 3);
        let inner_len = inner.len();
        let mut outer = Message::new();
        outer.int64(1, 8);
        outer.message(5, inner);
        let bytes = outer.to_vec();
        assert_eq!(bytes.len() as u64, outer.len());
        // field 1 = 8, then field 5 (wire type 2) of the inner length, then the inner message.
        assert_eq!(&bytes[..4], &[0x08, 0x08, 0x2a, inner_len as u8]);
        let floats: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let expected_inner = [&[0x42, 0x01, b'w', 0x4a, 12][..], &floats, &[0x08, 0x03]].concat();
        assert_eq!(&bytes[4..], &expected_inner[..]);
    }

    #[test]
    fn long_float_runs_stream_whole() {
        let values: Vec<f32> = (0..40_000).map(|i| i as f32 * 0.5).collect();
        let mut out = Vec::new();
        write_floats(&mut out, &values).unwrap_or_default();
        assert_eq!(out.len(), 160_000);
        assert_eq!(&out[4 * 39_999..], &(39_999.0f32 * 0.5).to_le_bytes());
    }
}
