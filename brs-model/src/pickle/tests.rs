//! The reader end to end: hand-assembled pickles for every malformed or hostile input (no Python
//! needed), fuzzed files, and files written by PyTorch itself.
#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Write};

use super::budget::Budget;
use super::legacy;
use super::machine::unpickle;
use super::plan::plan_output;
use super::value::Heap;
use super::*;

/// Hand-assembled pickles, so the malformed-input tests need no Python.
struct Pk(Vec<u8>);

impl Pk {
    fn new() -> Pk {
        Pk(vec![0x80, 2])
    }
    fn op(mut self, bytes: &[u8]) -> Pk {
        self.0.extend_from_slice(bytes);
        self
    }
    fn str(mut self, s: &str) -> Pk {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn int(mut self, i: i32) -> Pk {
        self.0.push(b'J');
        self.0.extend_from_slice(&i.to_le_bytes());
        self
    }
    fn global(mut self, module: &str, name: &str) -> Pk {
        self.0.push(b'c');
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self
    }
    fn ints(self, values: &[i32]) -> Pk {
        values.iter().fold(self.op(b"("), |p, &v| p.int(v)).op(b"t")
    }
    /// `_rebuild_tensor_v2(storage(key, numel), offset, shape, stride, False, OrderedDict())`,
    /// optionally with the legacy format's sixth persistent-id item.
    fn tensor(
        self,
        key: &str,
        numel: i32,
        offset: i32,
        shape: &[i32],
        stride: &[i32],
        legacy: bool,
    ) -> Pk {
        let p = self
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .str("storage")
            .global("torch", "FloatStorage")
            .str(key)
            .str("cuda:0")
            .int(numel);
        let p = if legacy { p.op(b"N") } else { p };
        p.op(b"tQ")
            .int(offset)
            .ints(shape)
            .ints(stride)
            .op(&[0x89])
            .global("collections", "OrderedDict")
            .op(b")R")
            .op(b"tR")
    }
    fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn make_zip(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        w.start_file(*name, opts).expect("start zip entry");
        w.write_all(data).expect("write zip entry");
    }
    w.finish().expect("finish zip").into_inner()
}

/// `{'m': {'w': <2x2 transpose of storage 0>}, 'step': 3}`.
fn small_pickle(legacy: bool) -> Vec<u8> {
    Pk::new()
        .op(b"}q\x00(")
        .str("m")
        .op(b"}(")
        .str("w")
        .tensor("0", 4, 0, &[2, 2], &[1, 2], legacy)
        .op(b"u")
        .str("step")
        .int(3)
        .op(b"u")
        .stop()
}

fn small_zip() -> Vec<u8> {
    let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    make_zip(
        &[
            ("ckpt/data.pkl", &small_pickle(false)),
            ("ckpt/byteorder", b"little"),
            ("ckpt/data/0", &data),
        ],
        zip::CompressionMethod::Stored,
    )
}

fn small_legacy() -> Vec<u8> {
    let mut out = Pk::new().op(&[0x8a, 10]).op(&legacy::MAGIC).stop();
    out.extend(Pk::new().int(1001).stop());
    out.extend(
        Pk::new()
            .op(b"}")
            .str("little_endian")
            .op(&[0x88])
            .op(b"s")
            .stop(),
    );
    out.extend(small_pickle(true));
    out.extend(Pk::new().op(b"]").str("0").op(b"a").stop());
    out.extend(4u64.to_le_bytes());
    out.extend(f32_bytes(&[1.0, 2.0, 3.0, 4.0]));
    out
}

fn expect_small(file: &PtFile) {
    let w = &file.dicts["m"]["w"];
    assert_eq!(w.dtype, DType::F32);
    assert_eq!(w.shape, vec![2, 2]);
    assert_eq!(w.to_f32_vec().expect("floats"), vec![1.0, 3.0, 2.0, 4.0]);
    assert_eq!(file.skipped, vec!["step".to_string()]);
}

#[test]
fn pickle_hand_built_zip_legacy_and_deflate_read() {
    expect_small(&read_pt_bytes(&small_zip()).expect("zip"));
    expect_small(&read_pt_bytes(&small_legacy()).expect("legacy"));
    let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let deflated = make_zip(
        &[("x/data.pkl", &small_pickle(false)), ("x/data/0", &data)],
        zip::CompressionMethod::Deflated,
    );
    expect_small(&read_pt_bytes(&deflated).expect("deflated zip"));
}

#[test]
fn pickle_rejects_empty_random_and_truncated_input() {
    assert!(matches!(read_pt_bytes(&[]), Err(PickleError::Malformed(_))));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for len in [1usize, 7, 100, 4096] {
        for first in [None, Some(b"PK".as_slice()), Some(&[0x80, 0x02][..])] {
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(head) = first {
                for (b, h) in bytes.iter_mut().zip(head) {
                    *b = *h;
                }
            }
            assert!(
                read_pt_bytes(&bytes).is_err(),
                "random {len} bytes accepted"
            );
        }
    }
    let zip = small_zip();
    for cut in 0..zip.len() {
        assert!(
            read_pt_bytes(&zip[..cut]).is_err(),
            "zip cut at {cut} accepted"
        );
    }
    let legacy = small_legacy();
    for cut in 0..legacy.len() {
        assert!(
            read_pt_bytes(&legacy[..cut]).is_err(),
            "legacy cut at {cut} accepted"
        );
    }
}

fn zip_with_pickle(pickle: &[u8], storage_len: usize) -> Vec<u8> {
    let data = vec![0u8; storage_len];
    make_zip(
        &[("a/data.pkl", pickle), ("a/data/0", &data)],
        zip::CompressionMethod::Stored,
    )
}

#[test]
fn pickle_refuses_globals_outside_the_allow_list() {
    let evil = Pk::new()
        .global("os", "system")
        .str("touch /tmp/pwned")
        .op(&[0x85])
        .op(b"R")
        .stop();
    let stack_global = Pk::new()
        .op(b"}")
        .str("x")
        .str("builtins")
        .str("eval")
        .op(&[0x93])
        .str("1")
        .op(&[0x85])
        .op(b"Rs")
        .stop();
    // Even inside a value that would only be skipped.
    let hidden = Pk::new()
        .op(b"}(")
        .str("m")
        .op(b"}")
        .str("opt")
        .global("subprocess", "Popen")
        .op(b"u")
        .stop();
    for (pickle, name) in [
        (evil, "os.system"),
        (stack_global, "builtins.eval"),
        (hidden, "subprocess.Popen"),
    ] {
        match read_pt_bytes(&zip_with_pickle(&pickle, 0)) {
            Err(PickleError::Unsupported(m)) => {
                assert!(
                    m.contains(&format!("unsupported pickle global {name}")),
                    "{m}"
                )
            }
            other => panic!("{name} not refused: {other:?}"),
        }
    }
}

fn one_tensor(key: &str, numel: i32, offset: i32, shape: &[i32], stride: &[i32]) -> Vec<u8> {
    Pk::new()
        .op(b"}")
        .str("m")
        .op(b"}")
        .str("w")
        .tensor(key, numel, offset, shape, stride, false)
        .op(b"ss")
        .stop()
}

#[test]
fn pickle_rejects_bad_storages_and_shapes() {
    let ok = read_pt_bytes(&zip_with_pickle(&one_tensor("0", 4, 1, &[3], &[1]), 16));
    assert_eq!(ok.expect("valid slice").dicts["m"]["w"].shape, vec![3]);

    let cases: [(&str, Vec<u8>, usize); 6] = [
        ("missing key", one_tensor("7", 4, 0, &[4], &[1]), 16),
        (
            "stride past end",
            one_tensor("0", 4, 0, &[3, 2], &[2, 1]),
            16,
        ),
        ("offset past end", one_tensor("0", 4, 4, &[1], &[1]), 16),
        ("numel past entry", one_tensor("0", 8, 0, &[4], &[1]), 16),
        (
            "huge stride-0",
            one_tensor("0", 1, 0, &[1 << 30, 1 << 30], &[0, 0]),
            4,
        ),
        ("negative stride", one_tensor("0", 4, 3, &[2], &[-1]), 16),
    ];
    for (what, pickle, len) in cases {
        let r = read_pt_bytes(&zip_with_pickle(&pickle, len));
        assert!(r.is_err(), "{what} accepted: {r:?}");
    }
    let r = read_pt_bytes(&zip_with_pickle(
        &one_tensor("0", 1, 0, &[1 << 30, 1 << 30], &[0, 0]),
        4,
    ));
    assert!(matches!(r, Err(PickleError::TooLarge(_))), "{r:?}");
    // A storage only a skipped value uses may be missing.
    let skipped_only = Pk::new()
        .op(b"}")
        .str("step")
        .op(b"(")
        .tensor("9", 4, 0, &[4], &[1], false)
        .op(b"ls")
        .stop();
    let r = read_pt_bytes(&zip_with_pickle(&skipped_only, 0)).expect("skipped only");
    assert_eq!(r.skipped, vec!["step".to_string()]);
}

#[test]
fn pickle_deep_nesting_neither_overflows_nor_hangs() {
    let depth = 200_000;
    let mut lists = Pk::new().op(&vec![b']'; depth]);
    lists = lists.op(&vec![b'a'; depth - 1]);
    let r = read_pt_bytes(&zip_with_pickle(&lists.stop(), 0));
    assert!(matches!(r, Err(PickleError::Unsupported(_))), "{r:?}");
    let tuples = Pk::new().op(b")").op(&vec![0x85; depth]).stop();
    assert!(read_pt_bytes(&zip_with_pickle(&tuples, 0)).is_err());
}

#[test]
fn pickle_shared_references_cannot_amplify_memory() {
    // set(L) a hundred thousand times over one memoised list of a hundred thousand items.
    let n = 100_000;
    let mut p = Pk::new().op(b"]q\x00(").op(&vec![b'N'; n]).op(b"e");
    p = p.global("builtins", "set").op(b"q\x01");
    for _ in 0..n {
        p = p.op(b"h\x01h\x00\x85R0");
    }
    let started = std::time::Instant::now();
    let r = read_pt_bytes(&zip_with_pickle(&p.op(b"}").stop(), 0));
    assert!(r.is_ok(), "{:?}", r.err());
    assert!(started.elapsed().as_secs() < 20, "quadratic work");

    // One dict of 1000 tensor names filed under 200000 top-level keys.
    let mut p = Pk::new()
        .op(b"}")
        .op(b"}q\x00")
        .tensor("0", 4, 0, &[4], &[1], false)
        .op(b"q\x01");
    for i in 0..1000 {
        p = p.op(b"h\x00").str(&format!("w{i}")).op(b"h\x01s0");
    }
    p = p.op(b"00(");
    for i in 0..200_000 {
        p = p.str(&format!("k{i}")).op(b"h\x00");
    }
    let r = read_pt_bytes(&zip_with_pickle(&p.op(b"u").stop(), 16));
    assert!(
        matches!(r, Err(PickleError::TooLarge(_))),
        "{:?}",
        r.map(|f| f.dicts.len())
    );
}

#[test]
fn pickle_fuzzed_files_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let pickle = small_pickle(false);
    for base in [small_zip(), small_legacy(), zip_with_pickle(&pickle, 16)] {
        for _ in 0..400 {
            let mut bytes = base.clone();
            match next() % 4 {
                0 => {
                    let i = next() % bytes.len();
                    bytes[i] = next() as u8;
                }
                1 => {
                    for _ in 0..1 + next() % 8 {
                        let i = next() % bytes.len();
                        bytes[i] ^= 1 << (next() % 8);
                    }
                }
                2 => {
                    let i = next() % bytes.len();
                    bytes.insert(i, next() as u8);
                }
                _ => {
                    let i = next() % bytes.len();
                    bytes.remove(i);
                }
            }
            let _ = read_pt_bytes(&bytes);
        }
    }
    // Straight into the pickle machine, past zip's checksums.
    let valid = small_legacy();
    for _ in 0..600 {
        let mut bytes = pickle.clone();
        for _ in 0..1 + next() % 3 {
            let i = next() % bytes.len();
            bytes[i] = next() as u8;
        }
        let mut heap = Heap::default();
        let mut budget = Budget::for_input(bytes.len());
        if let Ok((top, _)) = unpickle(&bytes, &mut heap, &mut budget) {
            let _ = plan_output(&heap, &top, &mut budget);
        }
        let mut legacy = valid.clone();
        let i = next() % legacy.len();
        legacy[i] = next() as u8;
        let _ = read_pt_bytes(&legacy);
    }
}

#[test]
fn pickle_corrupt_zip_entry_is_detected() {
    let mut zip = small_zip();
    let at = zip
        .windows(4)
        .position(|w| w == 1.0f32.to_le_bytes())
        .expect("storage bytes");
    zip[at] ^= 1;
    assert!(matches!(read_pt_bytes(&zip), Err(PickleError::Zip(_))));
}

const MAKE_CHECKPOINTS: &str = r#"
import collections, json, os, sys, zipfile
import torch, torch.nn as nn

out = sys.argv[1]
torch.manual_seed(0)
base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1
g = collections.OrderedDict()
g["conv.weight"] = torch.randn(4, 3, 3, 3)
g["base"] = base
g["transposed"] = base.t()
g["slice"] = base[1:, 1:3]
g["row"] = base[2]
g["expanded"] = torch.tensor([1.5, -2.0]).expand(3, 2)
g["half"] = torch.randn(5).half()
g["bf16"] = torch.randn(2, 3).bfloat16().t()
g["double"] = torch.randn(3, dtype=torch.float64)
g["steps"] = torch.tensor(7)
g["int32"] = torch.tensor([-3, 4], dtype=torch.int32)
g["bytes"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
g["mask"] = torch.tensor([True, False, True])
g["empty"] = torch.zeros(0, 3)
g["param"] = nn.Parameter(torch.randn(2))
with_attr = torch.randn(2)
with_attr.note = "x"
g["with_attr"] = with_attr
g._metadata = collections.OrderedDict({"": {"version": 1}})
disc = nn.Sequential(
    nn.utils.spectral_norm(nn.Conv2d(3, 4, 3)),
    nn.LeakyReLU(0.2),
    nn.utils.spectral_norm(nn.Linear(4, 2)),
)
dis = disc.state_dict()
ckpt = {"genA2B": g, "disGA": dis, "step": 5, "opt": {"lr": 0.1, "betas": (0.5, 0.999)}, "none": {}}

torch.save(ckpt, os.path.join(out, "zip.pt"))
torch.save(ckpt, os.path.join(out, "proto4.pt"), pickle_protocol=4)
torch.save(ckpt, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)
torch.save(dis, os.path.join(out, "flat.pt"))
with zipfile.ZipFile(os.path.join(out, "zip.pt")) as src, zipfile.ZipFile(
    os.path.join(out, "deflate.pt"), "w", zipfile.ZIP_DEFLATED
) as dst:
    for info in src.infolist():
        dst.writestr(info.filename, src.read(info.filename))

names = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32",
         torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
         torch.uint8: "U8", torch.bool: "Bool"}
def enc(sd):
    return {k: {"dtype": names[t.dtype], "shape": list(t.shape),
                "hex": bytes(t.detach().clone().contiguous().reshape(-1).view(torch.uint8).tolist()).hex()}
            for k, t in sd.items()}
full = {"dicts": {"genA2B": enc(g), "disGA": enc(dis), "none": {}}, "skipped": ["step", "opt"]}
flat = {"dicts": {"": enc(dis)}, "skipped": []}
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"full": full, "flat": flat, "dis_keys": sorted(dis.keys())}, f)
"#;

fn expected_file(v: &serde_json::Value) -> PtFile {
    let dtype = |s: &str| match s {
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F32" => DType::F32,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "U8" => DType::U8,
        "Bool" => DType::Bool,
        other => panic!("dtype {other}"),
    };
    let mut file = PtFile::default();
    for (name, sd) in v["dicts"].as_object().expect("dicts") {
        let mut out = StateDict::new();
        for (k, t) in sd.as_object().expect("state dict") {
            let hex_str = t["hex"].as_str().expect("hex");
            out.insert(
                k.clone(),
                RawTensor {
                    dtype: dtype(t["dtype"].as_str().expect("dtype")),
                    shape: t["shape"]
                        .as_array()
                        .expect("shape")
                        .iter()
                        .map(|d| d.as_u64().expect("dim") as usize)
                        .collect(),
                    data: hex::decode(hex_str).expect("hex data"),
                },
            );
        }
        file.dicts.insert(name.clone(), out);
    }
    file.skipped = v["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s.as_str().expect("key").to_string())
        .collect();
    file
}

#[test]
fn pickle_reads_files_written_by_pytorch() {
    let python = std::env::var("BRS_PYTHON")
        .ok()
        .or_else(|| option_env!("BRS_PYTHON").map(str::to_owned))
        .filter(|p| !p.is_empty())
        .expect("BRS_PYTHON is unset: run scripts/setup (it installs the venv with torch)");
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("make.py");
    std::fs::write(&script, MAKE_CHECKPOINTS).expect("write script");
    let status = std::process::Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run scripts/setup"));
    assert!(status.success(), "the checkpoint script failed");
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let full = expected_file(&expected["full"]);
    for name in ["zip.pt", "proto4.pt", "legacy.pt", "deflate.pt"] {
        let got = read_pt(&dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.skipped, full.skipped, "{name}");
        assert_eq!(
            got.dicts.keys().collect::<Vec<_>>(),
            full.dicts.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (dict, sd) in &full.dicts {
            for (k, t) in sd {
                assert_eq!(&got.dicts[dict][k], t, "{name}: {dict}/{k}");
            }
            assert_eq!(got.dicts[dict].len(), sd.len(), "{name}: {dict}");
        }
        // Independent of Python's rendering: views really are the transposed/sliced base.
        let g = &got.dicts["genA2B"];
        let base = g["base"].to_f32_vec().expect("base");
        let tr = g["transposed"].to_f32_vec().expect("transposed");
        assert_eq!(g["transposed"].shape, vec![4, 3]);
        for i in 0..3 {
            for j in 0..4 {
                assert_eq!(tr[j * 3 + i], base[i * 4 + j]);
            }
        }
        let slice = g["slice"].to_f32_vec().expect("slice");
        assert_eq!(slice, vec![base[5], base[6], base[9], base[10]]);
        assert_eq!(g["steps"].data, 7i64.to_le_bytes().to_vec());
        assert_eq!(g["steps"].shape, Vec::<usize>::new());
    }
    let dis_keys: Vec<&str> = expected["dis_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    assert!(dis_keys.contains(&"0.weight_orig") && dis_keys.contains(&"2.weight_v"));
    let flat = read_pt(&dir.path().join("flat.pt")).expect("flat.pt");
    assert_eq!(flat, expected_file(&expected["flat"]));
}
