//! Checkpoints of the authors' TensorFlow U-GAT-IT (taki0112/UGATIT) into ours: the released
//! selfie2anime weights, and any run of that code or a fork that keeps its variable names.
//!
//! Every TensorFlow variable is mapped to one variable of our TensorFlow-flavour networks
//! (`generator_B/conv/conv2d/kernel` -> `genA2B` `encoder.conv_in.conv.weight`, ...), its
//! layout converted once (HWIO kernels to OIHW, [in, out] dense kernels to [out, in], the full
//! model's first MLP layer from NHWC to NCHW flattening order). The shape of the model (ch,
//! n_res, full or light, the image size of a full model) comes from the tensors' shapes; Adam's
//! slots, when saved, become our optimizers' moments so training continues where it stopped.
//! A checkpoint of the generators alone (no discriminator variable at all) becomes a serving
//! export of one direction. Anything unmapped on either side is an error naming it, and nothing
//! is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::checkpoint::{
    CKPT_PREFIX, CheckpointKind, CheckpointMeta, CheckpointWriter, D_OPTIMIZER, G_OPTIMIZER,
    OPTIM_FILE, adam_moment_key, adam_param_name, adam_step_key, checkpoint_name,
};
use crate::config::{DEFAULT_N_DIS, Flavour, ModelConfig};
use crate::error::{Result, TfImportError};
use crate::names::Direction;
use crate::networks::{NetworkKind, Networks};
use crate::tensors::named_variables;
use crate::tfbundle::{self, Bundle};

/// What the caller knows about the checkpoint beyond its tensors.
#[derive(Debug, Clone, Default)]
pub struct TfImportOptions {
    /// Which step of a directory holding several (default: the one its `checkpoint` file names,
    /// else the newest).
    pub step: Option<u64>,
    /// Image size of a light model, whose weights do not fix it (default 256).
    pub light_img_size: Option<i64>,
    /// AdaLIN smoothing, a setting of the graph, not a variable. Default: what the official
    /// directory name says (`..._sn_smoothing`), else on (the official default).
    pub smoothing: Option<bool>,
    /// Refuse the checkpoint unless it is a light (true) or full (false) model.
    pub light: Option<bool>,
    /// A checkpoint of the generators alone (some forks save only what inference needs): the
    /// direction to write as a serving export (default A->B, selfie to anime in the release).
    /// Refused for a whole model, which is imported for training with both directions.
    pub direction: Option<Direction>,
}

/// What an import found and wrote.
#[derive(Debug, Clone)]
pub struct TfImportReport {
    /// The checkpoint read (`.../UGATIT.model-1000001`).
    pub prefix: PathBuf,
    /// The brs checkpoint written.
    pub output: PathBuf,
    pub config: ModelConfig,
    /// The step of the TensorFlow checkpoint (the official trainer's counter).
    pub iteration: u64,
    /// Network variables converted (weights and spectral norm's u).
    pub variables: usize,
    /// Adam moments converted (0 when the checkpoint has none).
    pub moments: usize,
    /// Where smoothing came from: "directory name", "option" or "official default".
    pub smoothing_from: &'static str,
    /// `Some` for a checkpoint of the generators alone: the direction written as a serving
    /// export (it cannot be trained: there are no discriminators to continue from).
    pub generators_only: Option<Direction>,
}

/// The official scope of each of our networks.
fn scope(kind: NetworkKind) -> &'static str {
    match kind {
        NetworkKind::GenA2B => "generator_B",
        NetworkKind::GenB2A => "generator_A",
        NetworkKind::DisGA => "discriminator_A/global",
        NetworkKind::DisGB => "discriminator_B/global",
        NetworkKind::DisLA => "discriminator_A/local",
        NetworkKind::DisLB => "discriminator_B/local",
    }
}

/// How a TensorFlow tensor becomes ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// HWIO convolution kernel to OIHW.
    Conv,
    /// [in, out] dense kernel to [out, in].
    Dense,
    /// The full model's first MLP layer: [H * W * C, out] in NHWC order to [out, C * H * W].
    DenseFromMap { side: i64, channels: i64 },
    /// Same values, our shape (per-channel vectors, spectral norm's [1, out] u).
    Same,
}

/// Our variable name and the layout change of one official name (without its network scope).
fn generator_name(
    name: &str,
    n_res: i64,
    full_side: Option<i64>,
    deep: i64,
) -> Option<(String, Layout)> {
    let conv = |ours: &str, tail: &str| match tail {
        "conv2d/kernel" => Some((format!("{ours}.weight"), Layout::Conv)),
        "conv2d/bias" => Some((format!("{ours}.bias"), Layout::Same)),
        _ => None,
    };
    let norm = |ours: &str, tail: &str, params: &[&str]| {
        params
            .contains(&tail)
            .then(|| (format!("{ours}.{tail}"), Layout::Same))
    };
    let dense = |ours: &str, tail: &str, layout: Layout| match tail {
        "dense/kernel" => Some((format!("{ours}.weight"), layout)),
        "dense/bias" => Some((format!("{ours}.bias"), Layout::Same)),
        _ => None,
    };
    let (head, tail) = name.split_once('/')?;
    let indexed = |prefix: &str| {
        head.strip_prefix(prefix)
            .and_then(|i| i.parse::<i64>().ok())
    };
    match head {
        "conv" => return conv("encoder.conv_in.conv", tail),
        "ins_norm" => return norm("encoder.conv_in.norm", tail, &["gamma", "beta"]),
        "CAM_logit" => {
            return match tail {
                "kernel" => Some(("cam.fc.weight".into(), Layout::Dense)),
                "bias" => Some(("cam.fc.bias".into(), Layout::Same)),
                _ => None,
            };
        }
        "conv_1x1" => return conv("cam.conv1x1", tail),
        "G_logit" => return conv("decoder.conv_out", tail),
        "MLP" => {
            let (layer, tail) = tail.split_once('/')?;
            let (ours, layout) = match layer {
                "linear_0" => (
                    "mlp.fc1",
                    match full_side {
                        Some(side) => Layout::DenseFromMap {
                            side,
                            channels: deep,
                        },
                        None => Layout::Dense,
                    },
                ),
                "linear_1" => ("mlp.fc2", Layout::Dense),
                "gamma" => ("mlp.gamma", Layout::Dense),
                "beta" => ("mlp.beta", Layout::Dense),
                _ => return None,
            };
            return dense(ours, tail, layout);
        }
        _ => {}
    }
    if let Some(i) = indexed("conv_").filter(|i| (0..2).contains(i)) {
        return conv(&format!("encoder.down{}.conv", i + 1), tail);
    }
    if let Some(i) = indexed("ins_norm_").filter(|i| (0..2).contains(i)) {
        return norm(
            &format!("encoder.down{}.norm", i + 1),
            tail,
            &["gamma", "beta"],
        );
    }
    if let Some(i) = indexed("up_conv_").filter(|i| (0..2).contains(i)) {
        return conv(&format!("decoder.up{}.conv", i + 1), tail);
    }
    if let Some(i) = indexed("layer_ins_norm_").filter(|i| (0..2).contains(i)) {
        return norm(
            &format!("decoder.up{}.norm", i + 1),
            tail,
            &["rho", "gamma", "beta"],
        );
    }
    if let Some(i) = indexed("resblock_").filter(|i| (0..n_res).contains(i)) {
        let (res, tail) = tail.split_once('/')?;
        let half = match res {
            "res1" => "first",
            "res2" => "second",
            _ => return None,
        };
        let block = format!("encoder.res{}.{half}", i + 1);
        return match tail.strip_prefix("conv_0/") {
            Some(t) => conv(&format!("{block}.conv"), t),
            None => tail
                .strip_prefix("instance_norm/")
                .and_then(|t| norm(&format!("{block}.norm"), t, &["gamma", "beta"])),
        };
    }
    if let Some(i) = indexed("adaptive_resblock").filter(|i| (0..n_res).contains(i)) {
        let (res, tail) = tail.split_once('/')?;
        let k = match res {
            "res1" => 1,
            "res2" => 2,
            _ => return None,
        };
        let block = format!("decoder.res{}", i + 1);
        return match tail {
            "instance_layer_norm/rho" => Some((format!("{block}.norm{k}.rho"), Layout::Same)),
            _ => tail
                .strip_prefix("conv_0/")
                .and_then(|t| conv(&format!("{block}.conv{k}"), t)),
        };
    }
    None
}

/// Our name for an official discriminator variable (without its scope) of a discriminator
/// with `n_layers` layers.
fn discriminator_name(name: &str, n_layers: i64) -> Option<(String, Layout)> {
    let (head, tail) = name.split_once('/')?;
    let sn = |ours: &str, kernel: Layout| match tail {
        "kernel" => Some((format!("{ours}.weight"), kernel)),
        "bias" => Some((format!("{ours}.bias"), Layout::Same)),
        "u" => Some((format!("{ours}.u"), Layout::Same)),
        _ => None,
    };
    match head {
        "conv_last" => sn(&format!("body.conv{}", n_layers - 2), Layout::Conv),
        "CAM_logit" => sn("cam.fc", Layout::Dense),
        "D_logit" => sn("head", Layout::Conv),
        "conv_1x1" => match tail {
            "conv2d/kernel" => Some(("cam.conv1x1.weight".into(), Layout::Conv)),
            "conv2d/bias" => Some(("cam.conv1x1.bias".into(), Layout::Same)),
            _ => None,
        },
        _ => {
            let i = head.strip_prefix("conv_")?.parse::<i64>().ok()?;
            (0..n_layers - 2)
                .contains(&i)
                .then(|| sn(&format!("body.conv{i}"), Layout::Conv))
                .flatten()
        }
    }
}

/// Finds the checkpoint to read: a prefix as given; in a directory, `step` if asked, else the
/// one its `checkpoint` file names, else the newest; the official `checkpoint/` root holding
/// one model directory is entered.
pub fn resolve_prefix(input: &Path, step: Option<u64>) -> Result<PathBuf> {
    if !input.is_dir() {
        return Ok(input.to_path_buf());
    }
    if let Some(step) = step {
        return Ok(tfbundle::prefix_for_step(input, step)?);
    }
    if input.join("checkpoint").is_file() {
        return Ok(tfbundle::latest_checkpoint(input)?);
    }
    if let Some(newest) = tfbundle::list_prefixes(input)?.pop() {
        return Ok(newest.prefix);
    }
    let subdirs: Vec<PathBuf> = std::fs::read_dir(input)
        .map_err(|e| crate::error::ModelError::io(input, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    if let [only] = subdirs.as_slice() {
        return resolve_prefix(only, step);
    }
    // The error that names what the directory holds.
    Ok(tfbundle::latest_checkpoint(input)?)
}

/// The official `model_dir` says whether smoothing was on: `..._sn_smoothing` or not.
fn smoothing_from_dir(prefix: &Path) -> Option<bool> {
    let dir = prefix.parent()?.file_name()?.to_str()?;
    let official = dir.starts_with("UGATIT") && dir.contains("resblock_") && dir.contains("dis_");
    official.then(|| dir.ends_with("_smoothing"))
}

/// The official `model_name` says light or full: `UGATIT_light.model-N` or `UGATIT.model-N`.
fn light_from_name(prefix: &Path) -> Option<bool> {
    let name = prefix.file_name()?.to_str()?;
    if name.starts_with("UGATIT_light.model") {
        Some(true)
    } else if name.starts_with("UGATIT.model") {
        Some(false)
    } else {
        None
    }
}

/// The step after the last `-` of the prefix's file name (`UGATIT.model-1000001`).
fn step_of(prefix: &Path) -> Option<u64> {
    prefix
        .file_name()?
        .to_str()?
        .rsplit_once('-')?
        .1
        .parse()
        .ok()
}

fn shape_of(bundle: &Bundle, name: &str) -> Option<Vec<i64>> {
    bundle
        .entry(name)
        .map(|e| e.shape.iter().map(|&d| d as i64).collect())
}

/// The model's shape, from the tensors of the A->B generator and the discriminators.
fn infer_config(
    bundle: &Bundle,
    prefix: &Path,
    opts: &TfImportOptions,
) -> Result<(ModelConfig, &'static str)> {
    let first = "generator_B/conv/conv2d/kernel";
    let Some(conv) = shape_of(bundle, first) else {
        let found: Vec<&str> = bundle.entries().take(8).map(|e| e.name.as_str()).collect();
        return Err(TfImportError::NotUgatit {
            prefix: prefix.to_path_buf(),
            expected: first,
            found: if found.is_empty() {
                "none".into()
            } else {
                found.join(", ")
            },
        }
        .into());
    };
    let shape_err =
        |name: &str, shape: Vec<i64>, expected: Vec<i64>, why: &str| TfImportError::Shape {
            name: name.to_string(),
            shape: shape.iter().map(|&d| d as usize).collect(),
            expected,
            why: why.to_string(),
        };
    let [7, 7, img_ch, ch] = conv[..] else {
        return Err(shape_err(first, conv, vec![7, 7, 3, -1], "a 7x7 HWIO kernel").into());
    };
    let deep = 4 * ch;
    let n_res = (0..)
        .take_while(|i| {
            bundle
                .entry(&format!(
                    "generator_B/resblock_{i}/res1/conv_0/conv2d/kernel"
                ))
                .is_some()
        })
        .count() as i64;
    let mlp = "generator_B/MLP/gamma/dense/kernel";
    let width = shape_of(bundle, mlp).unwrap_or_default();
    if width != [deep, deep] {
        return Err(TfImportError::Unsupported {
            prefix: prefix.to_path_buf(),
            reason: format!(
                "{mlp} has shape {width:?}: the official MLP is ch * n_res = {} wide, and the \
                 network only runs when that equals the decoder's 4 * ch = {deep} channels \
                 (n_res 4)",
                ch * n_res
            ),
        }
        .into());
    }
    let fc1 = "generator_B/MLP/linear_0/dense/kernel";
    let inputs = shape_of(bundle, fc1)
        .and_then(|s| s.first().copied())
        .unwrap_or(0);
    let light = inputs == deep;
    let said = match (opts.light, light_from_name(prefix)) {
        (Some(l), _) => Some((l, "the --light option asks for".to_string())),
        (None, Some(l)) => Some((l, "its file name says it is".to_string())),
        (None, None) => None,
    };
    if let Some((said_light, said)) = said
        && said_light != light
    {
        return Err(TfImportError::LightMismatch {
            prefix: prefix.to_path_buf(),
            said,
            said_light,
            inputs,
        }
        .into());
    }
    let img_size = if light {
        opts.light_img_size.unwrap_or(256)
    } else {
        let cells = inputs / deep.max(1);
        let side = (cells as f64).sqrt().round() as i64;
        if side * side * deep != inputs || inputs == 0 {
            return Err(shape_err(
                fc1,
                shape_of(bundle, fc1).unwrap_or_default(),
                vec![deep, deep],
                "its inputs are neither 4 * ch (light) nor a square map of 4 * ch channels (full)",
            )
            .into());
        }
        side * 4
    };
    // n_dis: the global discriminator's convolutions before its logit (conv_0, the stride-2
    // ones, conv_last); the local one has two fewer.
    let body = |d: &str| {
        (1..)
            .take_while(|i| {
                bundle
                    .entry(&format!("discriminator_A/{d}/conv_{i}/kernel"))
                    .is_some()
            })
            .count() as i64
            + 2
    };
    let (n_dis, local) = if has_discriminators(bundle) {
        (body("global"), body("local"))
    } else {
        // Generators alone: no depth to read, and none needed to run them.
        (DEFAULT_N_DIS, DEFAULT_N_DIS - 2)
    };
    if local != n_dis - 2 {
        return Err(TfImportError::Unsupported {
            prefix: prefix.to_path_buf(),
            reason: format!(
                "its discriminators have {n_dis} (global) and {local} (local) convolutions \
                 before the logit; the official code builds n_dis and n_dis - 2"
            ),
        }
        .into());
    }
    let (smoothing, smoothing_from) = match (opts.smoothing, smoothing_from_dir(prefix)) {
        (Some(s), _) => (s, "option"),
        (None, Some(s)) => (s, "directory name"),
        (None, None) => (true, "official default"),
    };
    let config = ModelConfig {
        img_size,
        img_ch,
        ch,
        n_res,
        light,
        flavour: Flavour::Tensorflow,
        smoothing,
        n_dis,
    };
    config.validate()?;
    Ok((config, smoothing_from))
}

/// Whether the checkpoint holds any discriminator variable (the official save() writes them all;
/// a generators-only export holds none).
fn has_discriminators(bundle: &Bundle) -> bool {
    bundle
        .entries()
        .any(|e| e.name.starts_with("discriminator_"))
}

/// Our layout of one TensorFlow tensor.
fn convert(bundle: &Bundle, name: &str, layout: Layout, expected: &[i64]) -> Result<Tensor> {
    let data = bundle.read_f32(name)?;
    let shape: Vec<i64> = data.shape.iter().map(|&d| d as i64).collect();
    let t = Tensor::from_slice(&data.data).reshape(&shape);
    drop(data);
    let converted = match (layout, shape.as_slice()) {
        (Layout::Conv, [_, _, _, _]) => Some(t.permute([3, 2, 0, 1])),
        (Layout::Dense, [_, _]) => Some(t.tr()),
        (Layout::DenseFromMap { side, channels }, [inputs, out])
            if *inputs == side * side * channels =>
        {
            Some(
                t.reshape([side, side, channels, *out])
                    .permute([3, 2, 0, 1])
                    .reshape([*out, -1]),
            )
        }
        (Layout::Same, _) if t.numel() as i64 == expected.iter().product::<i64>() => {
            Some(t.reshape(expected))
        }
        _ => None,
    };
    match converted {
        Some(t) if t.size() == expected => Ok(t.contiguous()),
        _ => Err(TfImportError::Shape {
            name: name.to_string(),
            shape: data_shape(&shape),
            expected: expected.to_vec(),
            why: format!("our {layout:?} layout of it"),
        }
        .into()),
    }
}

fn data_shape(shape: &[i64]) -> Vec<usize> {
    shape.iter().map(|&d| d as usize).collect()
}

/// Optimizer variables TensorFlow's Adam adds beside the slots: the powers of beta1 and beta2
/// (one pair per optimizer, the second suffixed `_1`), and a step counter some forks keep.
const OPTIMIZER_SCALARS: [&str; 5] = [
    "beta1_power",
    "beta2_power",
    "beta1_power_1",
    "beta2_power_1",
    "global_step",
];

/// Everything read from a checkpoint, converted, before anything is written.
struct Converted {
    /// The networks, holding the checkpoint's weights; their config is the model's shape.
    nets: Networks,
    /// Adam moments by our key, plus the step counts; empty without slots.
    optim: Vec<(String, Tensor)>,
    variables: usize,
    smoothing_from: &'static str,
    /// No discriminator in the checkpoint: only the generators were converted.
    generators_only: bool,
}

/// Reads and converts every variable of `prefix`, checking both sides are covered.
fn convert_all(prefix: &Path, opts: &TfImportOptions) -> Result<Converted> {
    let bundle = Bundle::open(prefix)?;
    let (config, smoothing_from) = infer_config(&bundle, prefix, opts)?;
    let nets = Networks::new(&config, Device::Cpu)?;
    let full_side = (!config.light).then(|| config.bottleneck());
    let deep = 4 * config.ch;
    let generators_only = !has_discriminators(&bundle);

    // Our name and layout for every official variable name, by network.
    // Every variable of our networks.
    let vars: BTreeMap<(NetworkKind, String), Tensor> = nets
        .stores()
        .flat_map(|(kind, vs)| {
            vs.variables()
                .into_iter()
                .map(move |(name, t)| ((kind, name), t))
        })
        .collect();
    let mut targets: BTreeMap<String, (NetworkKind, String, Layout)> = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut slots: Vec<(&str, &str, &str)> = Vec::new();
    for entry in bundle.entries() {
        let name = entry.name.as_str();
        if OPTIMIZER_SCALARS.contains(&name) {
            continue;
        }
        let (var, slot) = match name.rsplit_once('/') {
            Some((var, "Adam")) => (var, Some("m")),
            Some((var, "Adam_1")) => (var, Some("v")),
            _ => (name, None),
        };
        let mapped = NetworkKind::ALL.into_iter().find_map(|kind| {
            let rest = var.strip_prefix(scope(kind))?.strip_prefix('/')?;
            let ours = match kind {
                NetworkKind::GenA2B | NetworkKind::GenB2A => {
                    generator_name(rest, config.n_res, full_side, deep)
                }
                NetworkKind::DisGA | NetworkKind::DisGB => {
                    discriminator_name(rest, config.global_d_layers())
                }
                NetworkKind::DisLA | NetworkKind::DisLB => {
                    discriminator_name(rest, config.local_d_layers())
                }
            }?;
            Some((kind, ours))
        });
        // A name that maps onto no variable of ours (another depth, say) is unknown too.
        let mapped = mapped.filter(|(kind, (ours, _))| vars.contains_key(&(*kind, ours.clone())));
        match (mapped, slot) {
            (Some((kind, (ours, layout))), None) => {
                targets.insert(name.to_string(), (kind, ours, layout));
            }
            (Some(_), Some(moment)) => slots.push((name, var, moment)),
            (None, _) => unknown.push(name.to_string()),
        }
    }
    let mut missing = Vec::new();
    let by_ours: BTreeMap<(NetworkKind, &str), &str> = targets
        .iter()
        .map(|(tf, (kind, ours, _))| ((*kind, ours.as_str()), tf.as_str()))
        .collect();
    for (kind, name) in vars.keys() {
        if generators_only && !kind.is_generator() {
            continue;
        }
        if !by_ours.contains_key(&(*kind, name.as_str())) {
            missing.push(format!("{} {name}", kind.name()));
        }
    }
    // Moments of variables TensorFlow does not train (u) or of names we map nowhere are errors
    // like any unknown name; moments are all or nothing.
    let trainable: BTreeSet<&str> = targets
        .iter()
        .filter(|(_, (_, ours, _))| !ours.ends_with(".u"))
        .map(|(tf, _)| tf.as_str())
        .collect();
    for (name, var, _) in &slots {
        if !trainable.contains(var) {
            unknown.push(name.to_string());
        }
    }
    if !slots.is_empty() {
        for var in &trainable {
            for (suffix, moment) in [("Adam", "m"), ("Adam_1", "v")] {
                if !slots.iter().any(|(_, v, m)| v == var && *m == moment) {
                    missing.push(format!("{var}/{suffix}"));
                }
            }
        }
    }
    if !unknown.is_empty() || !missing.is_empty() {
        return Err(TfImportError::Unmapped {
            prefix: prefix.to_path_buf(),
            unknown,
            missing,
        }
        .into());
    }

    // One tensor at a time, straight into its variable: the converted weights are never all
    // held beside the networks (a full model's are 2.7 GB).
    for (tf, (kind, ours, layout)) in &targets {
        let var = &vars[&(*kind, ours.clone())];
        let t = convert(&bundle, tf, *layout, &var.size())?;
        tch::no_grad(|| var.shallow_clone().f_copy_(&t))?;
    }

    let mut optim = Vec::new();
    if !slots.is_empty() {
        for (name, var, moment) in &slots {
            let (kind, ours, layout) = &targets[*var];
            let expected = vars[&(*kind, ours.clone())].size();
            let optimizer = if kind.is_generator() {
                G_OPTIMIZER
            } else {
                D_OPTIMIZER
            };
            let param = adam_param_name(kind.name(), ours);
            optim.push((
                adam_moment_key(optimizer, &param, moment),
                convert(&bundle, name, *layout, &expected)?,
            ));
        }
        // The official code builds G's optimizer first: its powers are unsuffixed.
        for (optimizer, power) in [(G_OPTIMIZER, "beta2_power"), (D_OPTIMIZER, "beta2_power_1")] {
            let steps = adam_steps(&bundle, prefix, power)?;
            optim.push((
                adam_step_key(optimizer),
                Tensor::from_slice(&[steps as i64]),
            ));
        }
    }
    let variables = targets.len();
    Ok(Converted {
        nets,
        optim,
        variables,
        smoothing_from,
        generators_only,
    })
}

/// An optimizer's step count t, from its `beta2_power` = 0.999^t (exact to the step while it
/// is above float32's smallest normal, about 87,000 steps); past that every bias correction is 1
/// in float32, and the checkpoint's counter serves.
fn adam_steps(bundle: &Bundle, prefix: &Path, power: &str) -> Result<u64> {
    let counter = step_of(prefix).unwrap_or(0);
    let Some(entry) = bundle.entry(power) else {
        return Ok(counter);
    };
    let power = bundle
        .read_f32(&entry.name)?
        .data
        .first()
        .copied()
        .unwrap_or(0.0);
    if power > 0.0 && power <= 1.0 && power.is_normal() {
        Ok((f64::from(power).ln() / 0.999f64.ln()).round() as u64)
    } else {
        Ok(counter)
    }
}

/// `brs-train import-tf`: converts the TensorFlow checkpoint `input` (a prefix, a directory the
/// official code wrote, or a directory of several steps) into a training checkpoint of run
/// directory `out`. Nothing is written unless every variable converts.
pub fn import_tensorflow(
    input: &Path,
    out: &Path,
    opts: &TfImportOptions,
) -> Result<TfImportReport> {
    let prefix = resolve_prefix(input, opts.step)?;
    let converted = convert_all(&prefix, opts)?;
    if let (false, Some(direction)) = (converted.generators_only, opts.direction) {
        return Err(TfImportError::Unsupported {
            prefix,
            reason: format!(
                "a direction ({direction}) is for a checkpoint of the generators alone; this one \
                 holds the whole model, imported for training with both directions (serve \
                 either with brs-serve's direction, or export one with brs-train export)"
            ),
        }
        .into());
    }
    let iteration = step_of(&prefix).unwrap_or(0);
    let source = Some(format!("import-tf {}", prefix.display()));
    let config = &converted.nets.config;
    let (output, generators_only) = if converted.generators_only {
        // Nothing to train from (no discriminators): a serving export of one generator, as
        // `brs-train export` writes it.
        let direction = opts.direction.unwrap_or(Direction::A2B);
        let kind = direction.generator();
        let mut writer = CheckpointWriter::begin(out, &checkpoint_name("export", iteration))?;
        for (k, vs) in converted.nets.stores().filter(|(k, _)| *k == kind) {
            writer.add_tensors(&k.file_name(), &named_variables(vs), None)?;
        }
        let mut meta = CheckpointMeta::new(CheckpointKind::Export, config, iteration);
        meta.direction = Some(direction);
        meta.source = source;
        (writer.commit(meta)?, Some(direction))
    } else {
        let mut writer = CheckpointWriter::begin(out, &checkpoint_name(CKPT_PREFIX, iteration))?;
        converted.nets.add_to(&mut writer)?;
        if !converted.optim.is_empty() {
            writer.add_tensors(OPTIM_FILE, &converted.optim, None)?;
        }
        let mut meta = CheckpointMeta::new(CheckpointKind::Training, config, iteration);
        meta.source = source;
        (writer.commit(meta)?, None)
    };
    Ok(TfImportReport {
        prefix,
        output,
        config: converted.nets.config.clone(),
        iteration,
        variables: converted.variables,
        moments: if generators_only.is_some() {
            0
        } else {
            converted.optim.len().saturating_sub(2)
        },
        smoothing_from: converted.smoothing_from,
        generators_only,
    })
}
