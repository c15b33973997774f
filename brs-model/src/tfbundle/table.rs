//! The LevelDB table format a bundle index is written in (`tensorflow/core/lib/io/format.cc`,
//! `block.cc`, `table.cc`, `table_builder.cc`): a 48-byte footer pointing at an index block whose
//! entries point at the data blocks, each block followed by a compression byte and a masked
//! crc32c of the block and that byte.
//!
//! Only what iterating the whole table needs is read: every block is read once (the index must
//! list data blocks in file order without overlap, as TensorFlow's writer does), its checksum is
//! verified before anything in it is trusted, and every key must sort strictly after the one
//! before it, so a hostile index cannot make the reader visit a block twice or loop.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::proto::varint;
use crate::error::TfBundleError;

type Result<T> = std::result::Result<T, TfBundleError>;

pub(super) const FOOTER_LEN: u64 = 48;
const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// The compression byte and the crc after each block.
const TRAILER_LEN: u64 = 5;
const MASK_DELTA: u32 = 0xa282_ead8;

/// TensorFlow stores crcs masked (rotated and offset) so that a crc of data holding crcs stays
/// well distributed (`tensorflow/core/lib/hash/crc32c.h`). Only tests write them.
#[cfg(test)]
pub(super) fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

pub(super) fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// Where a block is: offset and size of its contents, without the trailer.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Handle {
    offset: u64,
    size: u64,
}

fn handle(input: &mut &[u8]) -> Option<Handle> {
    Some(Handle {
        offset: varint(input)?,
        size: varint(input)?,
    })
}

/// An opened table: its verified index block, ready to walk the data blocks.
pub(super) struct Table {
    path: PathBuf,
    index: Vec<u8>,
    /// Where the footer starts: no block may reach past it.
    blocks_end: u64,
}

impl Table {
    /// Reads and checks the footer, the metaindex block (checksum only: TensorFlow writes it
    /// empty and never reads it) and the index block.
    pub(super) fn open<R: Read + Seek>(file: &mut R, path: &Path) -> Result<Table> {
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|cause| io_err(path, cause))?;
        let blocks_end =
            len.checked_sub(FOOTER_LEN)
                .ok_or_else(|| TfBundleError::TruncatedIndex {
                    path: path.to_owned(),
                    detail: format!("{len} bytes, fewer than a table's {FOOTER_LEN}-byte footer"),
                })?;
        let mut footer = [0u8; FOOTER_LEN as usize];
        read_at(file, path, blocks_end, &mut footer)?;
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&footer[40..]);
        let magic = u64::from_le_bytes(magic);
        if magic != MAGIC {
            return Err(TfBundleError::BadMagic {
                path: path.to_owned(),
                found: magic,
            });
        }
        let mut input = &footer[..40];
        let (meta, index) = handle(&mut input)
            .zip(handle(&mut input))
            .ok_or_else(|| corrupt(path, "the footer's block handles are malformed"))?;
        let table = Table {
            path: path.to_owned(),
            index: Vec::new(),
            blocks_end,
        };
        table.read_block(file, meta, "metaindex")?;
        let index = table.read_block(file, index, "index")?;
        Ok(Table { index, ..table })
    }

    /// Calls `f` with every key and value of the table, in order.
    pub(super) fn for_each<R: Read + Seek>(
        &self,
        file: &mut R,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut blocks = BlockIter::new(&self.index).map_err(|r| self.bad_block("index", r))?;
        let mut next_start = 0u64;
        let mut last_key: Option<Vec<u8>> = None;
        while let Some((_, mut value)) = blocks.next().map_err(|r| self.bad_block("index", r))? {
            // Bytes after the handle are allowed: LevelDB reserves them for future use.
            let h = handle(&mut value)
                .ok_or_else(|| corrupt(&self.path, "an index entry holds no block handle"))?;
            if h.offset < next_start {
                return Err(corrupt(
                    &self.path,
                    format!(
                        "data block at offset {} overlaps or precedes the block before it \
                         (which ends at {next_start})",
                        h.offset
                    ),
                ));
            }
            let data = self.read_block(file, h, "data")?;
            next_start = h.offset + h.size + TRAILER_LEN; // checked by read_block
            let at = |r: String| corrupt(&self.path, format!("data block at {}: {r}", h.offset));
            let mut entries = BlockIter::new(&data).map_err(at)?;
            let mut first = true;
            while let Some((key, value)) = entries.next().map_err(at)? {
                if first && last_key.as_deref().is_some_and(|last| key <= last) {
                    return Err(at(format!(
                        "its first key {:?} does not sort after the previous block's last key",
                        String::from_utf8_lossy(key)
                    )));
                }
                first = false;
                f(key, value)?;
            }
            if !first {
                last_key = Some(entries.key.clone());
            }
        }
        Ok(())
    }

    /// A block's contents after its checksum and compression byte are checked.
    fn read_block<R: Read + Seek>(
        &self,
        file: &mut R,
        h: Handle,
        block: &'static str,
    ) -> Result<Vec<u8>> {
        let end = h
            .offset
            .checked_add(h.size)
            .and_then(|e| e.checked_add(TRAILER_LEN))
            .filter(|&e| e <= self.blocks_end)
            .ok_or_else(|| {
                corrupt(
                    &self.path,
                    format!(
                        "{block} block at offset {} of {} bytes runs past the footer at {}",
                        h.offset, h.size, self.blocks_end
                    ),
                )
            })?;
        // Fits in memory: it lies inside the file, whose length `blocks_end` came from.
        let mut buf = vec![0u8; (end - h.offset) as usize];
        read_at(file, &self.path, h.offset, &mut buf)?;
        let n = buf.len() - TRAILER_LEN as usize;
        let stored = unmask(u32::from_le_bytes([
            buf[n + 1],
            buf[n + 2],
            buf[n + 3],
            buf[n + 4],
        ]));
        let computed = crc32c::crc32c(&buf[..=n]);
        if stored != computed {
            return Err(TfBundleError::BlockChecksum {
                path: self.path.clone(),
                block,
                offset: h.offset,
                stored,
                computed,
            });
        }
        match buf[n] {
            0 => {}
            kind => {
                return Err(TfBundleError::CompressedBlock {
                    path: self.path.clone(),
                    block,
                    offset: h.offset,
                    kind: match kind {
                        1 => "snappy, type 1".to_owned(),
                        k => format!("unknown compression type {k}"),
                    },
                });
            }
        }
        buf.truncate(n);
        Ok(buf)
    }

    fn bad_block(&self, block: &str, reason: String) -> TfBundleError {
        corrupt(&self.path, format!("{block} block: {reason}"))
    }
}

fn read_at<R: Read + Seek>(file: &mut R, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(buf))
        .map_err(|cause| {
            if cause.kind() == std::io::ErrorKind::UnexpectedEof {
                TfBundleError::TruncatedIndex {
                    path: path.to_owned(),
                    detail: format!("the file ended while reading bytes at offset {offset}"),
                }
            } else {
                io_err(path, cause)
            }
        })
}

fn io_err(path: &Path, cause: std::io::Error) -> TfBundleError {
    TfBundleError::Io {
        path: path.to_owned(),
        cause,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> TfBundleError {
    TfBundleError::CorruptIndex {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// A key (rebuilt, so borrowed from the iterator) and its value (borrowed from the block).
type KeyValue<'k, 'v> = (&'k [u8], &'v [u8]);

/// The entries of one block, in order. An entry is three varint32s (bytes shared with the
/// previous key, bytes of key that follow, value length), the key's new bytes and the value.
/// The block ends with the restart points (u32 offsets of entries that share nothing, which
/// LevelDB binary-searches) and their count. TensorFlow's writer puts a restart point at the
/// first entry and every 16th after; they are checked to sit on entries that share nothing, which
/// is all a sequential reader needs from them.
pub(super) struct BlockIter<'a> {
    entries: &'a [u8],
    restarts: &'a [u8],
    next_restart: usize,
    pos: usize,
    count: usize,
    /// The current key, rebuilt from the previous one; never longer than the block.
    key: Vec<u8>,
}

impl<'a> BlockIter<'a> {
    pub(super) fn new(block: &'a [u8]) -> std::result::Result<BlockIter<'a>, String> {
        let count_at = block
            .len()
            .checked_sub(4)
            .ok_or_else(|| format!("{} bytes, too short for a block", block.len()))?;
        let num = u32::from_le_bytes([
            block[count_at],
            block[count_at + 1],
            block[count_at + 2],
            block[count_at + 3],
        ]);
        let restarts_len = usize::try_from(num)
            .ok()
            .and_then(|n| n.checked_mul(4))
            .filter(|&n| n <= count_at)
            .ok_or_else(|| {
                format!(
                    "it claims {num} restart points, more than its {} bytes hold",
                    block.len()
                )
            })?;
        let restarts_at = count_at - restarts_len;
        Ok(BlockIter {
            entries: &block[..restarts_at],
            restarts: &block[restarts_at..count_at],
            next_restart: 0,
            pos: 0,
            count: 0,
            key: Vec::new(),
        })
    }

    fn restart(&self, i: usize) -> Option<usize> {
        let b = self.restarts.get(i * 4..i * 4 + 4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    }

    /// The next (key, value), or `None` at the end of the block.
    pub(super) fn next(&mut self) -> std::result::Result<Option<KeyValue<'_, 'a>>, String> {
        let start = self.pos;
        let restart = self.restart(self.next_restart);
        if start >= self.entries.len() {
            // LevelDB writes one restart point even in a block without entries.
            let empty_block = self.count == 0 && self.restarts.len() == 4 && restart == Some(0);
            return match restart {
                Some(r) if !empty_block => {
                    Err(format!("restart point {r} is not at the start of an entry"))
                }
                _ => Ok(None),
            };
        }
        let mut input = &self.entries[start..];
        let mut field = |what: &str| {
            varint(&mut input)
                .and_then(|v| u32::try_from(v).ok())
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| format!("entry at {start}: bad {what} length"))
        };
        let shared = field("shared key")?;
        let non_shared = field("key")?;
        let value_len = field("value")?;
        let header_len = self.entries.len() - start - input.len();
        let body = non_shared
            .checked_add(value_len)
            .filter(|&n| n <= input.len())
            .ok_or_else(|| format!("entry at {start} runs past the block's entries"))?;
        match restart {
            Some(r) if r == start => {
                if shared != 0 {
                    return Err(format!(
                        "entry at restart point {start} shares {shared} bytes with the key before"
                    ));
                }
                self.next_restart += 1;
            }
            Some(r) if r < start => {
                return Err(format!("restart point {r} is not at the start of an entry"));
            }
            _ => {}
        }
        if shared > self.key.len() {
            return Err(format!(
                "entry at {start} shares {shared} bytes with a key of {}",
                self.key.len()
            ));
        }
        let key_tail = &input[..non_shared];
        // The new key is the old one's first `shared` bytes then `key_tail`: it sorts after the
        // old key exactly when `key_tail` sorts after the rest of the old key.
        if self.count > 0 && key_tail <= &self.key[shared..] {
            return Err(format!(
                "entry at {start}: keys are not in strictly increasing order"
            ));
        }
        self.key.truncate(shared);
        self.key.extend_from_slice(key_tail);
        let value = &self.entries[start + header_len + non_shared..start + header_len + body];
        self.pos = start + header_len + body;
        self.count += 1;
        Ok(Some((&self.key, value)))
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Cursor;

    use super::*;
    use crate::tfbundle::proto::tests::put_varint;

    /// TensorFlow's BlockBuilder: prefix-compressed entries, a restart point every `interval`.
    pub(in crate::tfbundle) fn block(entries: &[(&[u8], &[u8])], interval: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut restarts = vec![0u32];
        let mut last: &[u8] = b"";
        for (i, (key, value)) in entries.iter().enumerate() {
            let mut shared = 0;
            if i % interval == 0 {
                if i > 0 {
                    restarts.push(out.len() as u32);
                }
            } else {
                shared = key.iter().zip(last).take_while(|(a, b)| a == b).count();
            }
            put_varint(&mut out, shared as u64);
            put_varint(&mut out, (key.len() - shared) as u64);
            put_varint(&mut out, value.len() as u64);
            out.extend_from_slice(&key[shared..]);
            out.extend_from_slice(value);
            last = key;
        }
        for r in &restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        out
    }

    /// Appends a block with its trailer; returns its handle's encoding.
    pub(in crate::tfbundle) fn push_block(
        file: &mut Vec<u8>,
        contents: &[u8],
        kind: u8,
    ) -> Vec<u8> {
        let offset = file.len();
        file.extend_from_slice(contents);
        file.push(kind);
        let crc = crc32c::crc32c(&file[offset..]);
        file.extend_from_slice(&mask(crc).to_le_bytes());
        let mut h = Vec::new();
        put_varint(&mut h, offset as u64);
        put_varint(&mut h, contents.len() as u64);
        h
    }

    /// A whole table in TensorFlow's layout: data blocks of at most `per_block` entries, the
    /// (empty) metaindex, the index and the footer.
    pub(in crate::tfbundle) fn table(entries: &[(&[u8], &[u8])], per_block: usize) -> Vec<u8> {
        let mut file = Vec::new();
        let mut index: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for chunk in entries.chunks(per_block) {
            let h = push_block(&mut file, &block(chunk, 16), 0);
            // The last key itself is a valid separator.
            index.push((chunk[chunk.len() - 1].0.to_vec(), h));
        }
        let meta = push_block(&mut file, &block(&[], 16), 0);
        let index: Vec<(&[u8], &[u8])> = index.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let index = push_block(&mut file, &block(&index, 1), 0);
        let mut footer = meta;
        footer.extend_from_slice(&index);
        footer.resize(40, 0);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        file.extend_from_slice(&footer);
        file
    }

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn walk(file: &[u8]) -> Result<Pairs> {
        let mut cursor = Cursor::new(file);
        let path = Path::new("t.index");
        let table = Table::open(&mut cursor, path)?;
        let mut out = Vec::new();
        table.for_each(&mut cursor, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    fn all(block: &[u8]) -> std::result::Result<Pairs, String> {
        let mut it = BlockIter::new(block)?;
        let mut out = Vec::new();
        while let Some((k, v)) = it.next()? {
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn names(n: usize) -> Pairs {
        (0..n)
            .map(|i| {
                (
                    format!("generator/layer_{:02}/kernel", i).into_bytes(),
                    vec![i as u8; i % 5],
                )
            })
            .collect()
    }

    fn refs(v: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
        v.iter().map(|(k, v)| (&k[..], &v[..])).collect()
    }

    #[test]
    fn crc_masking_matches_leveldb() {
        // crc32c("123456789") is the standard check value; masking round-trips.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        for crc in [0, 1, 0xe306_9283, u32::MAX] {
            assert_eq!(unmask(mask(crc)), crc);
            assert_ne!(mask(crc), crc);
        }
        // LevelDB's Mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
        assert_eq!(mask(0), 0xa282_ead8);
        assert_eq!(mask(1 << 15), 0xa282_ead9);
    }

    #[test]
    fn a_block_with_restart_points_decodes_its_prefix_compressed_keys() {
        let entries = names(40);
        let b = block(&refs(&entries), 16);
        // Three restart points (entries 0, 16, 32) and their count close the block.
        assert_eq!(u32::from_le_bytes(b[b.len() - 4..].try_into().unwrap()), 3);
        // Keys are stored compressed: the block is smaller than the keys alone.
        let key_bytes: usize = entries.iter().map(|(k, _)| k.len()).sum();
        assert!(b.len() < key_bytes);
        assert_eq!(all(&b).unwrap(), entries);
        assert_eq!(all(&block(&[], 16)).unwrap(), vec![]);
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let entries = names(20);
        let good = block(&refs(&entries), 16);
        assert!(all(&good[..3]).unwrap_err().contains("too short"));
        // A restart count larger than the block.
        let mut b = good.clone();
        let n = b.len();
        b[n - 4..].copy_from_slice(&1000u32.to_le_bytes());
        assert!(all(&b).unwrap_err().contains("restart points"));
        // The second restart point moved off an entry boundary.
        let mut b = good.clone();
        let at = n - 8;
        let r = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        b[at..at + 4].copy_from_slice(&(r + 1).to_le_bytes());
        assert!(all(&b).unwrap_err().contains("restart point"));
        // The first entry claims to share bytes with a previous key.
        let mut b = good.clone();
        b[0] = 3;
        assert!(all(&b).is_err());
        // Keys out of order.
        let swapped = [entries[1].clone(), entries[0].clone()];
        assert!(
            all(&block(&refs(&swapped), 16))
                .unwrap_err()
                .contains("order")
        );
        // Duplicate keys.
        let twice = [entries[0].clone(), entries[0].clone()];
        assert!(
            all(&block(&refs(&twice), 16))
                .unwrap_err()
                .contains("order")
        );
        // A value length past the end of the entries.
        let mut b = block(&refs(&entries[..1]), 16);
        b[2] = 100;
        assert!(all(&b).unwrap_err().contains("runs past"));
    }

    #[test]
    fn a_table_reads_back_across_blocks() {
        let entries = names(50);
        let file = table(&refs(&entries), 7);
        assert_eq!(walk(&file).unwrap(), entries);
    }

    #[test]
    fn the_footer_is_checked() {
        let file = table(&refs(&names(3)), 7);
        let short = walk(&file[..40]).err().unwrap();
        assert!(
            matches!(short, TfBundleError::TruncatedIndex { .. }),
            "{short}"
        );
        let cut = walk(&file[..file.len() - 1]).err().unwrap();
        assert!(matches!(cut, TfBundleError::BadMagic { .. }), "{cut}");
        // A handle pointing past the footer.
        let mut bad = file.clone();
        let footer = bad.len() - 48;
        bad[footer..footer + 40].fill(0);
        bad[footer] = 0; // metaindex at 0
        bad[footer + 1] = 0x7f; // of 127 bytes: past the end of this small file
        let err = walk(&bad).err().unwrap();
        assert!(err.to_string().contains("runs past the footer"), "{err}");
    }

    #[test]
    fn block_checksums_and_compression_are_checked() {
        let file = table(&refs(&names(3)), 7);
        let mut flipped = file.clone();
        flipped[5] ^= 0x40;
        let err = walk(&flipped).err().unwrap();
        assert!(
            matches!(err, TfBundleError::BlockChecksum { block: "data", .. }),
            "{err}"
        );

        let mut snappy = Vec::new();
        let h = push_block(&mut snappy, &block(&refs(&names(3)), 16), 1);
        let meta = push_block(&mut snappy, &block(&[], 16), 0);
        let index = push_block(&mut snappy, &block(&[(b"z", &h)], 1), 0);
        let mut footer = meta;
        footer.extend_from_slice(&index);
        footer.resize(40, 0);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        snappy.extend_from_slice(&footer);
        let err = walk(&snappy).err().unwrap();
        assert!(
            matches!(err, TfBundleError::CompressedBlock { block: "data", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("snappy"), "{err}");
    }

    #[test]
    fn blocks_must_not_repeat_or_overlap() {
        // An index listing the same data block twice would have it read twice.
        let mut file = Vec::new();
        let h = push_block(&mut file, &block(&refs(&names(3)), 16), 0);
        let meta = push_block(&mut file, &block(&[], 16), 0);
        let index = push_block(&mut file, &block(&[(b"a", &h), (b"b", &h)], 1), 0);
        let mut footer = meta;
        footer.extend_from_slice(&index);
        footer.resize(40, 0);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        file.extend_from_slice(&footer);
        let err = walk(&file).err().unwrap();
        assert!(err.to_string().contains("overlaps"), "{err}");
    }

    #[test]
    fn no_truncation_or_flipped_byte_panics() {
        let entries = names(30);
        let file = table(&refs(&entries), 9);
        for len in 0..file.len() {
            assert!(walk(&file[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..file.len() {
            for bit in [0x01, 0x80] {
                let mut f = file.clone();
                f[i] ^= bit;
                // Refused, or harmless: the footer's padding is unchecked, and a flip can turn a
                // handle's varint into a longer encoding of the same number.
                if let Ok(got) = walk(&f) {
                    assert_eq!(got, entries, "flip {bit:#x} at {i} of {}", file.len());
                }
            }
        }
        // The checksums stop damaged blocks before they are parsed, so feed the block parser
        // damaged blocks directly.
        let b = block(&refs(&entries), 16);
        for len in 0..b.len() {
            let _ = all(&b[..len]);
        }
        for i in 0..b.len() {
            for bit in [0x01, 0x10, 0x80] {
                let mut f = b.clone();
                f[i] ^= bit;
                let _ = all(&f);
            }
        }
    }
}
