//! The TensorFlow checkpoint reader on bundles written by TensorFlow itself
//! (`make_tf_bundle.py`: tf.compat.v1 Saver, sharded and not, and tf.train.Checkpoint): every
//! value compared bit for bit, the directory helpers, and each kind of damage a checkpoint can
//! suffer on disk.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use brs_model::error::TfBundleError;
use brs_model::tfbundle::{self, Bundle, DataType, state};
use brs_testkit::setup::cached_python_output;
use brs_testkit::tfport;
use serde_json::Value;

struct Fixture {
    dir: PathBuf,
    expected: Value,
}

/// The bundles, written once per version of the script and kept in cargo's temp dir.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make_tf_bundle.py");
        let dir = cached_python_output(Path::new(env!("CARGO_TARGET_TMPDIR")), &script, &[]);
        let expected =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        Fixture { dir, expected }
    })
}

fn prefix(bundle: &str) -> PathBuf {
    let f = fixture();
    f.dir.join(f.expected[bundle]["prefix"].as_str().unwrap())
}

/// Copies a bundle's files into a fresh directory, to damage them there.
fn copy(bundle: &str) -> (tempfile::TempDir, PathBuf) {
    tfport::copy_checkpoint(&prefix(bundle))
}

fn suffixed(prefix: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", prefix.display()))
}

/// Every tensor of `bundle` against what TensorFlow says it holds.
fn check_all(bundle: &str) -> Bundle {
    let f = fixture();
    let want = &f.expected[bundle];
    let b = Bundle::open(&prefix(bundle)).unwrap();
    assert_eq!(
        u64::from(b.num_shards()),
        want["num_shards"].as_u64().unwrap()
    );
    let tensors = want["tensors"].as_object().unwrap();
    let listed: Vec<&str> = b.entries().map(|e| e.name.as_str()).collect();
    let mut names: Vec<&str> = tensors.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(listed, names, "{bundle}: entries");
    for (name, t) in tensors {
        let e = b.entry(name).unwrap();
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(e.shape, shape, "{name}: shape");
        assert_eq!(
            i64::from(e.dtype.0),
            t["dtype"].as_i64().unwrap(),
            "{name}: dtype"
        );
        if let Some(bits) = t.get("f32_bits") {
            let got = b.read_f32(name).unwrap();
            assert_eq!(got.shape, shape);
            let got: Vec<u64> = got.data.iter().map(|v| u64::from(v.to_bits())).collect();
            let want: Vec<u64> = bits
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(got, want, "{name}: values");
        } else if let Some(ints) = t.get("i64") {
            let got = b.read_i64(name).unwrap();
            let want: Vec<i64> = ints
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(got.data, want, "{name}: values");
        } else if let Some(slices) = t.get("sliced") {
            assert_eq!(e.slices as u64, slices.as_u64().unwrap());
            let err = b.read_f32(name).unwrap_err();
            assert!(matches!(err, TfBundleError::Sliced { .. }), "{err}");
        } else {
            let err = b.read_f32(name).unwrap_err();
            assert!(
                err.to_string().contains(&*e.dtype.name()),
                "{name}: the error names the type: {err}"
            );
        }
    }
    b
}

#[test]
fn a_v1_saver_checkpoint_reads_exactly() {
    let b = check_all("v1");
    // Enough entries that TensorFlow wrote the index in more than one 256 KiB data block.
    let index = std::fs::metadata(suffixed(&prefix("v1"), ".index")).unwrap();
    assert!(index.len() > 256 << 10, "{} bytes", index.len());
    // The partitioned variable's two slices are in the index, behind its entry.
    assert_eq!(b.slice_parts(), 2);
    let flags = b.read_f32("flags").unwrap_err();
    assert!(
        matches!(&flags, TfBundleError::UnsupportedDtype { dtype, .. } if dtype == "DT_BOOL"),
        "{flags}"
    );
    assert_eq!(b.entry("half").unwrap().dtype, DataType::HALF);
    // Every plain tensor's checksum, bool included.
    assert_eq!(b.verify().unwrap(), b.entries().len() - 1);
}

#[test]
fn a_sharded_checkpoint_reads_from_both_shards() {
    let b = check_all("sharded");
    let shards: std::collections::BTreeSet<u32> = b
        .entries()
        .filter_map(|e| e.location)
        .map(|l| l.shard)
        .collect();
    assert_eq!(shards.into_iter().collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn a_tf2_checkpoint_lists_its_object_graph_and_reads_its_variables() {
    let b = check_all("tf2");
    let graph = b.entry("_CHECKPOINTABLE_OBJECT_GRAPH").unwrap();
    assert_eq!(graph.dtype, DataType::STRING);
}

#[test]
fn directories_resolve_as_tensorflow_does() {
    let f = fixture();
    let v1 = f.dir.join("v1");
    // The Saver wrote absolute paths into a directory since renamed: found by file name.
    assert_eq!(
        tfbundle::latest_checkpoint(&v1).unwrap(),
        v1.join("model.ckpt-10")
    );
    let steps: Vec<Option<u64>> = tfbundle::list_prefixes(&v1)
        .unwrap()
        .into_iter()
        .map(|p| p.step)
        .collect();
    assert_eq!(steps, [Some(5), Some(10)]);
    let state = state::checkpoint_state(&v1).unwrap();
    assert_eq!(state.all_model_checkpoint_paths.len(), 2);

    // The older checkpoint holds the bias from before the second save.
    let older = Bundle::open(&tfbundle::prefix_for_step(&v1, 5).unwrap()).unwrap();
    let bias = older.read_f32("generator/conv0/bias").unwrap();
    let want: Vec<u64> = f.expected["v1_step5_bias"]["f32_bits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let got: Vec<u64> = bias.data.iter().map(|v| u64::from(v.to_bits())).collect();
    assert_eq!(got, want);
    assert_eq!(older.read_i64("global_step").unwrap().data, [5]);
    let err = tfbundle::prefix_for_step(&v1, 7).unwrap_err().to_string();
    assert!(err.contains("5, 10"), "{err}");

    // tf.train.Checkpoint writes relative paths.
    let tf2 = f.dir.join("tf2");
    assert_eq!(
        tfbundle::latest_checkpoint(&tf2).unwrap(),
        tf2.join("ckpt-1")
    );
    assert_eq!(
        tfbundle::latest_checkpoint(&f.dir.join("sharded")).unwrap(),
        f.dir.join("sharded/model.ckpt-3")
    );
}

#[test]
fn a_truncated_index_is_refused() {
    let (_tmp, p) = copy("v1");
    let index = suffixed(&p, ".index");
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();
    let err = Bundle::open(&p).unwrap_err();
    assert!(matches!(err, TfBundleError::BadMagic { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    std::fs::write(&index, &bytes[..30]).unwrap();
    let err = Bundle::open(&p).unwrap_err();
    assert!(matches!(err, TfBundleError::TruncatedIndex { .. }), "{err}");
}

#[test]
fn a_flipped_byte_in_the_index_fails_its_block_checksum() {
    let (_tmp, p) = copy("v1");
    let index = suffixed(&p, ".index");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(&index, &bytes).unwrap();
    let err = Bundle::open(&p).unwrap_err();
    assert!(
        matches!(
            err,
            TfBundleError::BlockChecksum {
                block: "data",
                offset: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_truncated_shard_is_refused_at_open() {
    let (_tmp, p) = copy("v1");
    let shard = suffixed(&p, ".data-00000-of-00001");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 1]).unwrap();
    let err = Bundle::open(&p).unwrap_err();
    assert!(matches!(err, TfBundleError::TruncatedShard { .. }), "{err}");
}

#[test]
fn a_flipped_byte_in_a_tensor_fails_its_checksum() {
    let (_tmp, p) = copy("v1");
    let b = Bundle::open(&p).unwrap();
    let loc = b.entry("big").unwrap().location.unwrap();
    let shard = b.shard_path(loc.shard);
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[(loc.offset + loc.size / 2) as usize] ^= 0x01;
    std::fs::write(&shard, &bytes).unwrap();
    let err = b.read_f32("big").unwrap_err();
    assert!(
        matches!(&err, TfBundleError::TensorChecksum { tensor, .. } if tensor == "big"),
        "{err}"
    );
    // The damage is confined to that tensor.
    let fresh = check_all("v1");
    assert_eq!(
        b.read_f32("scalar").unwrap(),
        fresh.read_f32("scalar").unwrap()
    );
    assert!(b.verify().is_err());
}

#[test]
fn a_missing_shard_is_named() {
    let (_tmp, p) = copy("sharded");
    std::fs::remove_file(suffixed(&p, ".data-00001-of-00002")).unwrap();
    let err = Bundle::open(&p).unwrap_err();
    assert!(
        matches!(
            err,
            TfBundleError::MissingShard {
                shard: 1,
                num_shards: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_pytorch_checkpoint_given_by_mistake_is_named() {
    let pt = fixture().dir.join("model.pt");
    let tmp = brs_testkit::tempdir("brs-tfbundle-");
    let as_index = tmp.path().join("model.ckpt.index");
    std::fs::copy(&pt, &as_index).unwrap();
    for path in [pt, as_index] {
        let err = Bundle::open(&path).unwrap_err();
        assert!(matches!(err, TfBundleError::NotABundle { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("this is not a TensorFlow bundle index") && msg.contains("PyTorch"),
            "{msg}"
        );
    }
}
