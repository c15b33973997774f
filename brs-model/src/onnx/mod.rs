//! ONNX export of a generator, straight from a checkpoint: a brs model for any ONNX runtime
//! (ONNX Runtime, TensorRT, OpenVINO, onnxruntime-web), with no Python.
//!
//! The graph is built from the checkpoint's weights with the maths of `Generator::forward`, for
//! either flavour, light or full, at the model's image size ([`generator`]), then encoded as an
//! ONNX `ModelProto` (IR version 8, opset 17) by a small protobuf writer of our own
//! ([`proto`], [`graph`]). Why not a crate: `prost` and `protobuf` need the ONNX message
//! definitions generated (protoc or a build script, or a few thousand lines of generated code
//! checked in) for seven messages of which we write a handful of fields, and both encode into
//! one buffer, which for the full model means a second copy of its 1.1 GB of weights; the
//! maintained ONNX crates (`onnx-protobuf`, `tract-onnx`) bring a generated runtime or a whole
//! inference engine. The writer is under 200 lines, streams tensor data to the file, and its
//! encoding is checked by `onnx.checker` and ONNX Runtime in `tests/onnx_export.rs`.
//!
//! Protobuf cannot hold a message of 2 GiB or more. A model under that is one `.onnx` file; a
//! bigger one (a full model above 256 px: its first MLP layer grows with the image's area), or
//! any model with [`ExternalData::Always`], is written as ONNX's external data: the `.onnx`
//! holds the graph and names a data file beside it, `<model>.onnx.<hash>.data`, holding every
//! tensor of 1 KiB or more at 4 KiB-aligned offsets. Nothing is refused for its size.
//!
//! Files appear atomically: each is written to a hidden temp file, fsynced and renamed into
//! place, the data file first. The data file's name carries the hash of its contents, so a
//! reader of the model this export replaces never reads the new weights against the old graph;
//! data files of earlier exports to the same path are removed once the new model is in place.

mod generator;
mod graph;
mod proto;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, fsync_dir};
use crate::config::ModelConfig;
use crate::error::{ModelError, OnnxError, Result};
use crate::names::Direction;
use graph::{ModelInfo, Storage};

pub use generator::{INPUT, OUTPUT_CAM, OUTPUT_HEATMAP, OUTPUT_IMAGE};
/// The opset the exported models are written for.
pub const OPSET: i64 = graph::OPSET;

/// The largest message protobuf parsers accept (`INT_MAX` bytes): above it, external data.
pub const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;

/// Where the weights go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExternalData {
    /// Inside the `.onnx` file, unless that file would reach protobuf's 2 GiB limit; then in a
    /// data file beside it.
    #[default]
    Auto,
    /// Always in a data file beside the model (a runtime can map it instead of parsing it).
    Always,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct OnnxExport {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// The external data file, when the weights are not inside the model.
    pub data: Option<PathBuf>,
    /// Bytes of the model file and of the data file (0 without one).
    pub model_bytes: u64,
    pub data_bytes: u64,
    /// Numbers in the generator's weights.
    pub parameters: u64,
}

/// The `.onnx` file an export to `out` writes: `out` itself when it ends in `.onnx`, else
/// `out/genA2B.onnx` (or `genB2A`), `out` being a directory.
pub fn model_path(out: &Path, direction: Direction) -> PathBuf {
    if out.extension().is_some_and(|e| e == "onnx") {
        out.to_path_buf()
    } else {
        out.join(format!("{}.onnx", direction.generator().name()))
    }
}

/// Writes the generator of `direction` as an ONNX model at `model_path(out, direction)`,
/// creating its directory. Its input is `input`, float32 `[batch, img_ch, img_size, img_size]`
/// in [-1, 1] (any batch); its outputs are `image` (the translation, same shape and range),
/// `cam_logit` `[batch, 2]` and `heatmap` `[batch, 1, img_size / 4, img_size / 4]`.
pub fn export(
    checkpoint: &Checkpoint,
    direction: Direction,
    out: &Path,
    external: ExternalData,
) -> Result<OnnxExport> {
    let cfg = &checkpoint.meta.model;
    let file = direction.generator().file_name();
    let weights = checkpoint.read_floats(&file)?;
    let parameters = weights.values().map(|t| t.values.len() as u64).sum();
    let mut graph =
        generator::graph(cfg, generator::Weights::new(weights)).map_err(|e| ModelError::Onnx {
            path: checkpoint.dir.join(&file),
            cause: Box::new(e),
        })?;
    graph.name = direction.generator().name().to_string();
    let info = ModelInfo {
        producer_version: env!("CARGO_PKG_VERSION"),
        doc: describe(checkpoint, direction),
        metadata: metadata(checkpoint, direction),
    };
    let mut written = write(&graph, &info, &model_path(out, direction), external)?;
    written.parameters = parameters;
    Ok(written)
}

fn light_word(cfg: &ModelConfig) -> &'static str {
    if cfg.light { "light" } else { "full" }
}

fn describe(checkpoint: &Checkpoint, direction: Direction) -> String {
    let cfg = &checkpoint.meta.model;
    let s = cfg.img_size;
    format!(
        "U-GAT-IT generator {direction} ({} flavour, {} model, img_size {s}, ch {}, n_res {}) \
         exported by brs from {} (iteration {}). Input `{INPUT}`: float32 [batch, {}, {s}, {s}], \
         RGB in [-1, 1] (pixel / 127.5 - 1). Outputs: `{OUTPUT_IMAGE}`, the translation, same \
         shape and range; `{OUTPUT_CAM}` [batch, 2]; `{OUTPUT_HEATMAP}` [batch, 1, {}, {}].",
        cfg.flavour,
        light_word(cfg),
        cfg.ch,
        cfg.n_res,
        checkpoint.dir.display(),
        checkpoint.meta.iteration,
        cfg.img_ch,
        cfg.bottleneck(),
        cfg.bottleneck(),
    )
}

fn metadata(checkpoint: &Checkpoint, direction: Direction) -> Vec<(String, String)> {
    let cfg = &checkpoint.meta.model;
    [
        ("brs.direction", direction.to_string()),
        ("brs.flavour", cfg.flavour.to_string()),
        ("brs.light", cfg.light.to_string()),
        ("brs.img_size", cfg.img_size.to_string()),
        ("brs.ch", cfg.ch.to_string()),
        ("brs.n_res", cfg.n_res.to_string()),
        ("brs.smoothing", cfg.smoothing.to_string()),
        ("brs.iteration", checkpoint.meta.iteration.to_string()),
        ("brs.version_id", checkpoint.meta.version_id()),
        ("brs.source", checkpoint.dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Whether a model of `inline_len` bytes with its weights inside must keep them outside.
fn needs_external(inline_len: u64, external: ExternalData) -> bool {
    external == ExternalData::Always || inline_len >= PROTOBUF_LIMIT
}

fn write(
    graph: &graph::Graph,
    info: &ModelInfo,
    path: &Path,
    external: ExternalData,
) -> Result<OnnxExport> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ModelError::Onnx {
            path: path.to_path_buf(),
            cause: Box::new(OnnxError::FileName),
        })?
        .to_string();
    fs::create_dir_all(&dir).map_err(|e| ModelError::io(&dir, e))?;
    let inline = graph::model(graph, info, &Storage::Inline);
    if !needs_external(inline.len(), external) {
        write_atomic(path, |w| inline.write_to(w))?;
        remove_stale_data(&dir, &name, None);
        return Ok(OnnxExport {
            model: path.to_path_buf(),
            data: None,
            model_bytes: inline.len(),
            data_bytes: 0,
            parameters: 0,
        });
    }
    drop(inline);
    let (placements, data_len) = graph::place_external(&graph.initializers);
    let mut hasher = Sha256::new();
    let tmp = write_temp(&dir, &format!("{name}.data"), |w| {
        let mut w = Hashing {
            inner: w,
            hasher: &mut hasher,
        };
        let mut at = 0u64;
        for (init, place) in graph.initializers.iter().zip(&placements) {
            let Some(place) = place else { continue };
            let gap = vec![0u8; (place.offset - at) as usize];
            w.write_all(&gap)?;
            match &init.data {
                graph::Data::F32(v) => proto::write_floats(&mut w, v)?,
                graph::Data::I64(v) => {
                    for x in v {
                        w.write_all(&x.to_le_bytes())?;
                    }
                }
            }
            at = place.offset + place.length;
        }
        Ok(())
    })?;
    let location = format!("{name}.{}.data", &hex::encode(hasher.finalize())[..16]);
    let data_path = dir.join(&location);
    publish(&tmp, &data_path)?;
    let model = graph::model(
        graph,
        info,
        &Storage::External {
            location: &location,
            placements: &placements,
        },
    );
    write_atomic(path, |w| model.write_to(w))?;
    remove_stale_data(&dir, &name, Some(&location));
    Ok(OnnxExport {
        model: path.to_path_buf(),
        data: Some(data_path),
        model_bytes: model.len(),
        data_bytes: data_len,
        parameters: 0,
    })
}

/// A writer that hashes what passes through it.
struct Hashing<'a, W> {
    inner: W,
    hasher: &'a mut Sha256,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a hidden, fsynced temp file in `dir` for `name`; removed again if writing fails.
fn write_temp(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut BufWriter<&fs::File>) -> std::io::Result<()>,
) -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let result = fs::File::create(&tmp).and_then(|file| {
        let mut w = BufWriter::with_capacity(1 << 20, &file);
        fill(&mut w)?;
        w.flush()?;
        drop(w);
        file.sync_all()
    });
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(ModelError::io(dir.join(name), e));
    }
    Ok(tmp)
}

/// Renames a finished temp file into place and makes the rename durable.
fn publish(tmp: &Path, path: &Path) -> Result<()> {
    if let Err(e) = fs::rename(tmp, path) {
        let _ = fs::remove_file(tmp);
        return Err(ModelError::io(path, e));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fsync_dir(dir),
        _ => Ok(()),
    }
}

fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = write_temp(dir, &name, fill)?;
    publish(&tmp, path)
}

/// Whether `file` is a data file an export to `model` wrote: `<model>.<16 hex>.data`.
fn is_data_file_of(file: &str, model: &str) -> bool {
    file.strip_prefix(model)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".data"))
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes data files of earlier exports to `model` in `dir`, except `keep`. Best effort: a
/// leftover costs disk, never correctness (the model names its own data file).
fn remove_stale_data(dir: &Path, model: &str, keep: Option<&str>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if is_data_file_of(&file, model) && Some(file.as_str()) != keep {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn protobufs_limit_decides_where_the_weights_go() {
        // The full model at 256 px (1.1 GB) fits; at 384 px (2.4 GB) it does not.
        assert!(!needs_external(1_116_000_000, ExternalData::Auto));
        assert!(needs_external(2_420_000_000, ExternalData::Auto));
        assert!(needs_external(PROTOBUF_LIMIT, ExternalData::Auto));
        assert!(!needs_external(PROTOBUF_LIMIT - 1, ExternalData::Auto));
        assert!(needs_external(10, ExternalData::Always));
    }

    #[test]
    fn the_output_is_a_file_or_a_directory_by_its_extension() {
        assert_eq!(
            model_path(Path::new("out/bts.onnx"), Direction::B2A),
            Path::new("out/bts.onnx")
        );
        assert_eq!(
            model_path(Path::new("out/bts"), Direction::B2A),
            Path::new("out/bts/genB2A.onnx")
        );
    }

    #[test]
    fn only_our_own_data_files_are_stale() {
        assert!(is_data_file_of("m.onnx.0123456789abcdef.data", "m.onnx"));
        for other in [
            "m.onnx",
            "m.onnx.data",
            "m.onnx.0123.data",
            "m.onnx.0123456789abcdeg.data",
            "n.onnx.0123456789abcdef.data",
            "m.onnx.0123456789abcdef.data.tmp",
        ] {
            assert!(!is_data_file_of(other, "m.onnx"), "{other}");
        }
    }

    #[test]
    fn a_failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let err = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
