//! Bundles built byte by byte (no TensorFlow needed): every tensor type this reader converts,
//! and each way an index or a shard can be wrong. Bundles written by TensorFlow itself are
//! read in `tests/tfbundle.rs`.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;

use super::proto::tests::{put_bytes, put_fixed32, put_uint};
use super::table::mask;
use super::table::tests::table;
use super::*;

fn header(num_shards: i64, endianness: u64, min_consumer: u64) -> Vec<u8> {
    let mut version = Vec::new();
    put_uint(&mut version, 1, 1);
    put_uint(&mut version, 2, min_consumer);
    let mut h = Vec::new();
    put_uint(&mut h, 1, num_shards as u64);
    put_uint(&mut h, 2, endianness);
    put_bytes(&mut h, 3, &version);
    h
}

/// One tensor to write: its entry fields and its bytes.
#[derive(Clone)]
struct T {
    name: String,
    dtype: DataType,
    dims: Vec<i64>,
    bytes: Vec<u8>,
    shard: u32,
    slices: usize,
}

fn t(name: &str, dtype: DataType, dims: &[i64], bytes: Vec<u8>) -> T {
    T {
        name: name.to_owned(),
        dtype,
        dims: dims.to_vec(),
        bytes,
        shard: 0,
        slices: 0,
    }
}

fn entry(
    dtype: DataType,
    dims: &[i64],
    shard: u32,
    offset: u64,
    bytes: &[u8],
    slices: usize,
) -> Vec<u8> {
    let crc = mask(crc32c::crc32c(bytes));
    entry_raw(dtype, dims, shard, offset, bytes.len() as u64, crc, slices)
}

fn entry_raw(
    dtype: DataType,
    dims: &[i64],
    shard: u32,
    offset: u64,
    size: u64,
    masked_crc: u32,
    slices: usize,
) -> Vec<u8> {
    let mut shape = Vec::new();
    for &d in dims {
        let mut dim = Vec::new();
        put_uint(&mut dim, 1, d as u64);
        put_bytes(&mut shape, 2, &dim);
    }
    let mut e = Vec::new();
    put_uint(&mut e, 1, dtype.0 as u64);
    put_bytes(&mut e, 2, &shape);
    put_uint(&mut e, 3, u64::from(shard));
    put_uint(&mut e, 4, offset);
    put_uint(&mut e, 5, size);
    put_fixed32(&mut e, 6, masked_crc);
    for _ in 0..slices {
        put_bytes(&mut e, 7, b"");
    }
    e
}

/// The index of `tensors` (sorted by name here, as TensorFlow does) with `header` first, and
/// the bytes of each shard.
fn build(tensors: &[T], header: &[u8], num_shards: u32) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut shards = vec![Vec::new(); num_shards as usize];
    let mut sorted = tensors.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut values = Vec::new();
    for x in &sorted {
        let data = &mut shards[x.shard as usize];
        let offset = data.len() as u64;
        data.extend_from_slice(&x.bytes);
        values.push(entry(x.dtype, &x.dims, x.shard, offset, &x.bytes, x.slices));
    }
    let mut kv: Vec<(&[u8], &[u8])> = vec![(b"", header)];
    kv.extend(
        sorted
            .iter()
            .zip(&values)
            .map(|(x, v)| (x.name.as_bytes(), &v[..])),
    );
    (table(&kv, 4), shards)
}

fn write(dir: &Path, index: &[u8], shards: &[Vec<u8>]) -> PathBuf {
    let prefix = dir.join("model.ckpt-7");
    std::fs::write(index_path(&prefix), index).unwrap();
    for (i, data) in shards.iter().enumerate() {
        std::fs::write(
            suffixed(&prefix, &format!(".data-{i:05}-of-{:05}", shards.len())),
            data,
        )
        .unwrap();
    }
    prefix
}

fn le<const N: usize, V: Copy>(values: &[V], f: fn(V) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| f(v)).collect()
}

fn sample() -> Vec<T> {
    let floats = [1.5f32, -0.0, f32::INFINITY, 1e-40, 3.25, -7.0];
    vec![
        t(
            "gen/conv/kernel",
            DataType::FLOAT,
            &[2, 3],
            le(&floats, f32::to_le_bytes),
        ),
        t(
            "gen/half",
            DataType::HALF,
            &[2],
            le(&[0x3c00u16, 0xc000], u16::to_le_bytes),
        ),
        t(
            "gen/bf16",
            DataType::BFLOAT16,
            &[1],
            le(&[0x3fc0u16], u16::to_le_bytes),
        ),
        t(
            "gen/double",
            DataType::DOUBLE,
            &[],
            le(&[0.1f64], f64::to_le_bytes),
        ),
        t(
            "global_step",
            DataType::INT64,
            &[],
            le(&[1i64 << 40], i64::to_le_bytes),
        ),
        t(
            "ints",
            DataType::INT32,
            &[3],
            le(&[-1i32, 0, 7], i32::to_le_bytes),
        ),
        t("empty", DataType::FLOAT, &[0, 3], vec![]),
        t("flags", DataType::BOOL, &[2], vec![1, 0]),
        T {
            shard: 1,
            ..t(
                "on/second/shard",
                DataType::FLOAT,
                &[1],
                le(&[2.0f32], f32::to_le_bytes),
            )
        },
        // A string tensor's bytes are lengths and a length checksum first: listed, never read.
        t(
            "_CHECKPOINTABLE_OBJECT_GRAPH",
            DataType::STRING,
            &[],
            vec![3, 1, 2, 3, 4, b'a', b'b', b'c'],
        ),
        T {
            slices: 2,
            ..t("partitioned", DataType::FLOAT, &[4], vec![])
        },
    ]
}

#[test]
fn reads_every_supported_type_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (index, shards) = build(&sample(), &header(2, 0, 0), 2);
    let prefix = write(dir.path(), &index, &shards);
    let b = Bundle::open(&prefix).unwrap();
    assert_eq!(b.num_shards(), 2);
    let names: Vec<&str> = b.entries().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 11);

    let k = b.read_f32("gen/conv/kernel").unwrap();
    assert_eq!(k.shape, [2, 3]);
    let want = [1.5f32, -0.0, f32::INFINITY, 1e-40, 3.25, -7.0];
    assert_eq!(
        k.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(b.read_f32("gen/half").unwrap().data, [1.0, -2.0]);
    assert_eq!(b.read_f32("gen/bf16").unwrap().data, [1.5]);
    assert_eq!(b.read_f32("gen/double").unwrap().data, [0.1f64 as f32]);
    assert_eq!(
        b.read_f32("empty").unwrap(),
        TensorData {
            shape: vec![0, 3],
            data: vec![]
        }
    );
    assert_eq!(b.read_f32("on/second/shard").unwrap().data, [2.0]);
    let step = b.read_i64("global_step").unwrap();
    assert_eq!((step.shape.len(), step.data), (0, vec![1i64 << 40]));
    assert_eq!(b.read_i64("ints").unwrap().data, [-1, 0, 7]);
    assert_eq!(b.verify().unwrap(), 9);

    let e = b.entry("on/second/shard").unwrap();
    assert_eq!(e.location.unwrap().shard, 1);
    assert_eq!(b.entry("partitioned").unwrap().location, None);

    // Open also takes the index, the graph or a shard's path.
    for path in [
        index_path(&prefix),
        suffixed(&prefix, ".meta"),
        suffixed(&prefix, ".data-00001-of-00002"),
    ] {
        assert_eq!(Bundle::open(&path).unwrap().prefix(), prefix);
    }
}

#[test]
fn wrong_types_slices_and_names_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (index, shards) = build(&sample(), &header(2, 0, 0), 2);
    let b = Bundle::open(&write(dir.path(), &index, &shards)).unwrap();
    let err = b.read_f32("ints").unwrap_err();
    assert!(
        matches!(&err, TfBundleError::UnsupportedDtype { dtype, .. } if dtype == "DT_INT32"),
        "{err}"
    );
    assert!(
        b.read_f32("flags")
            .unwrap_err()
            .to_string()
            .contains("DT_BOOL")
    );
    let err = b.read_i64("gen/conv/kernel").unwrap_err().to_string();
    assert!(err.contains("DT_FLOAT") && err.contains("i64"), "{err}");
    let err = b
        .read_f32("_CHECKPOINTABLE_OBJECT_GRAPH")
        .unwrap_err()
        .to_string();
    assert!(err.contains("DT_STRING"), "{err}");
    let err = b.read_f32("partitioned").unwrap_err();
    assert!(
        matches!(err, TfBundleError::Sliced { slices: 2, .. }),
        "{err}"
    );
    let err = b.read_f32("nope").unwrap_err();
    assert!(
        matches!(err, TfBundleError::NoSuchTensor { count: 11, .. }),
        "{err}"
    );
}

#[test]
fn slice_parts_are_counted_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = sample();
    // EncodeTensorNameSlice's keys start with a NUL byte and need not be UTF-8.
    tensors.push(t(
        "\0\u{1}partitioned\u{0}\u{1}",
        DataType::FLOAT,
        &[2],
        le(&[1.0f32, 2.0], f32::to_le_bytes),
    ));
    let (index, shards) = build(&tensors, &header(2, 0, 0), 2);
    let b = Bundle::open(&write(dir.path(), &index, &shards)).unwrap();
    assert_eq!(b.slice_parts(), 1);
    assert_eq!(b.entries().len(), 11);
}

fn open_err(tensors: &[T], header: &[u8], num_shards: u32) -> TfBundleError {
    let dir = tempfile::tempdir().unwrap();
    let (index, shards) = build(tensors, header, num_shards);
    Bundle::open(&write(dir.path(), &index, &shards)).unwrap_err()
}

#[test]
fn headers_this_reader_cannot_honour_are_refused() {
    let one = [t("w", DataType::FLOAT, &[1], vec![0; 4])];
    let err = open_err(&one, &header(1, 1, 0), 1);
    assert!(matches!(err, TfBundleError::BigEndian { .. }), "{err}");
    assert!(err.to_string().contains("big-endian"), "{err}");
    let err = open_err(&one, &header(1, 0, 2), 1);
    assert!(matches!(err, TfBundleError::Version { .. }), "{err}");
    let err = open_err(&one, &header(0, 0, 0), 1);
    assert!(err.to_string().contains("0 data shards"), "{err}");
    let err = open_err(&one, &header(-1, 0, 0), 1);
    assert!(matches!(err, TfBundleError::CorruptIndex { .. }), "{err}");
}

#[test]
fn an_index_without_its_header_first_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let e = entry(DataType::FLOAT, &[], 0, 0, &[0; 4], 0);
    let index = table(&[(b"w", &e)], 4);
    let err = Bundle::open(&write(dir.path(), &index, &[vec![0; 4]])).unwrap_err();
    assert!(
        err.to_string().contains("not the header's empty key"),
        "{err}"
    );
    let empty = table(&[], 4);
    let err = Bundle::open(&write(dir.path(), &empty, &[])).unwrap_err();
    assert!(err.to_string().contains("no header entry"), "{err}");
}

#[test]
fn shapes_and_sizes_must_agree() {
    let h = header(1, 0, 0);
    // Six floats declared, five stored.
    let err = open_err(&[t("w", DataType::FLOAT, &[2, 3], vec![0; 20])], &h, 1);
    assert!(
        matches!(
            err,
            TfBundleError::ShapeSize {
                expected: 24,
                size: 20,
                ..
            }
        ),
        "{err}"
    );
    let err = open_err(&[t("w", DataType::FLOAT, &[2, -1], vec![])], &h, 1);
    assert!(matches!(err, TfBundleError::Shape { .. }), "{err}");
    assert!(err.to_string().contains("dimension 1 is -1"), "{err}");
    // Element counts that overflow, and bytes that would: both caught before any allocation.
    let err = open_err(
        &[t("w", DataType::FLOAT, &[1 << 32, 1 << 32], vec![])],
        &h,
        1,
    );
    assert!(err.to_string().contains("too many elements"), "{err}");
    let err = open_err(&[t("w", DataType::DOUBLE, &[1 << 62], vec![])], &h, 1);
    assert!(matches!(err, TfBundleError::ShapeSize { .. }), "{err}");
    let err = open_err(&[t("w", DataType::FLOAT, &[1; 255], vec![0; 4])], &h, 1);
    assert!(err.to_string().contains("255 dimensions"), "{err}");
    let err = open_err(
        &[T {
            shard: 3,
            ..t("w", DataType::FLOAT, &[], vec![0; 4])
        }],
        &header(2, 0, 0),
        4,
    );
    assert!(matches!(err, TfBundleError::CorruptIndex { .. }), "{err}");
}

#[test]
fn a_huge_declared_tensor_is_refused_before_allocating() {
    // 2^40 floats claimed in a shard of 4 bytes: the shard's length stops it at open.
    let dir = tempfile::tempdir().unwrap();
    let e = entry_raw(DataType::FLOAT, &[1 << 40], 0, 0, 1 << 42, 0, 0);
    let h = header(1, 0, 0);
    let index = table(&[(b"", &h), (b"w", &e)], 4);
    let err = Bundle::open(&write(dir.path(), &index, &[vec![0; 4]])).unwrap_err();
    assert!(
        matches!(err, TfBundleError::TruncatedShard { len: 4, .. }),
        "{err}"
    );
}

#[test]
fn damaged_or_missing_shards_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (index, shards) = build(&sample(), &header(2, 0, 0), 2);
    let prefix = write(dir.path(), &index, &shards);
    let shard1 = suffixed(&prefix, ".data-00001-of-00002");
    let shard0 = suffixed(&prefix, ".data-00000-of-00002");

    std::fs::remove_file(&shard1).unwrap();
    let err = Bundle::open(&prefix).unwrap_err();
    let TfBundleError::MissingShard {
        shard: 1,
        num_shards: 2,
        tensor,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(tensor, "on/second/shard");

    std::fs::write(&shard1, &shards[1][..2]).unwrap();
    let err = Bundle::open(&prefix).unwrap_err();
    assert!(
        matches!(err, TfBundleError::TruncatedShard { len: 2, .. }),
        "{err}"
    );

    std::fs::write(&shard1, &shards[1]).unwrap();
    let b = Bundle::open(&prefix).unwrap();
    let loc = b.entry("gen/conv/kernel").unwrap().location.unwrap();
    let mut data = shards[0].clone();
    data[loc.offset as usize + 5] ^= 1;
    std::fs::write(&shard0, &data).unwrap();
    let err = b.read_f32("gen/conv/kernel").unwrap_err();
    assert!(matches!(err, TfBundleError::TensorChecksum { .. }), "{err}");
    assert!(b.verify().is_err());
    // Other tensors of the shard still read.
    assert_eq!(b.read_f32("gen/half").unwrap().data, [1.0, -2.0]);

    // A shard that shrinks after open is caught when read.
    std::fs::write(&shard0, &shards[0][..10]).unwrap();
    let err = b.read_f32("gen/half").unwrap_err();
    assert!(matches!(err, TfBundleError::TruncatedShard { .. }), "{err}");
}

#[test]
fn other_files_are_named_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("genA2B.pt");
    std::fs::write(&pt, b"PK\x03\x04rest of a zip").unwrap();
    for path in [pt.clone(), dir.path().join("x.index")] {
        std::fs::copy(&pt, dir.path().join("x.index")).unwrap();
        let err = Bundle::open(&path).unwrap_err();
        assert!(matches!(err, TfBundleError::NotABundle { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("not a TensorFlow bundle index") && msg.contains("PyTorch"),
            "{msg}"
        );
    }
    let err = Bundle::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
    let err = Bundle::open(&dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, TfBundleError::MissingIndex { .. }), "{err}");
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"hello").unwrap();
    let err = Bundle::open(&other).unwrap_err();
    assert!(matches!(err, TfBundleError::NotABundle { .. }), "{err}");
}

#[test]
fn prefix_compressed_keys_cannot_blow_up_memory() {
    // One 64 KiB key, then entries that each repeat it and add a byte: a few bytes of index
    // per 64 KiB of key.
    let long = vec![b'a'; 1 << 16];
    let h = header(1, 0, 0);
    let mut keys = vec![long.clone()];
    for i in 0..400u32 {
        let mut k = long.clone();
        k.extend_from_slice(format!("{i:04}").as_bytes());
        keys.push(k);
    }
    let mut kv: Vec<(&[u8], &[u8])> = vec![(b"", &h)];
    kv.extend(keys.iter().map(|k| (&k[..], &b""[..])));
    // One restart point for the whole block, so every entry shares the long prefix.
    let mut file = Vec::new();
    let data =
        super::table::tests::push_block(&mut file, &super::table::tests::block(&kv, 1000), 0);
    let meta = super::table::tests::push_block(&mut file, &super::table::tests::block(&[], 16), 0);
    let index = super::table::tests::push_block(
        &mut file,
        &super::table::tests::block(&[(b"b", &data)], 1),
        0,
    );
    let mut footer = meta;
    footer.extend_from_slice(&index);
    footer.resize(40, 0);
    footer.extend_from_slice(&0xdb47_7524_8b80_fb57u64.to_le_bytes());
    file.extend_from_slice(&footer);
    assert!(file.len() < 100_000);
    let err = read_index(&mut Cursor::new(&file), Path::new("bomb.index")).unwrap_err();
    assert!(matches!(err, TfBundleError::TooLarge { .. }), "{err}");
}

#[test]
fn damaged_entries_never_panic() {
    // Flip each byte of each entry value and rebuild a table with valid checksums around it,
    // so the damage reaches the protobuf decoder and the entry checks.
    let tensors = sample();
    let h = header(2, 0, 0);
    let mut sorted = tensors.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let values: Vec<Vec<u8>> = sorted
        .iter()
        .map(|x| entry(x.dtype, &x.dims, x.shard, 0, &x.bytes, x.slices))
        .collect();
    for target in 0..values.len() {
        for i in 0..values[target].len() {
            for bit in [0x01, 0x08, 0x80] {
                let mut vs = values.clone();
                vs[target][i] ^= bit;
                let mut kv: Vec<(&[u8], &[u8])> = vec![(b"", &h)];
                kv.extend(
                    sorted
                        .iter()
                        .zip(&vs)
                        .map(|(x, v)| (x.name.as_bytes(), &v[..])),
                );
                let _ = read_index(&mut Cursor::new(table(&kv, 4)), Path::new("f.index"));
            }
        }
    }
}
