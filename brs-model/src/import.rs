//! Official UGATIT-pytorch checkpoints (`torch.save` of a dict of six state_dicts) into ours.
//!
//! The reference's state_dict keys follow its `nn.Sequential` indices (`DownBlock.5.weight`,
//! `UpBlock2.3.rho`, `model.4.weight_orig`...); we map each to our readable name and check that
//! the mapping covers both sides exactly. The model shape is inferred from tensor shapes: ch and
//! img_ch from the first conv, n_res from the decoder blocks, light/full and (for full models)
//! img_size from the first MLP layer. A light generator's weights do not depend on the image size,
//! so for light models it comes from the caller (the reference's default is 256).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::checkpoint::{
    CKPT_PREFIX, CheckpointKind, CheckpointMeta, CheckpointWriter, checkpoint_name,
};
use crate::config::{GLOBAL_D_LAYERS, LOCAL_D_LAYERS, ModelConfig};
use crate::error::{ImportError, ModelError, Result};
use crate::networks::{NetworkKind, Networks};
use crate::pickle::{self, DType, RawTensor, StateDict};
use crate::tensors;

/// Our variable name for a key of the reference generator's state_dict.
pub fn generator_key(key: &str, n_res: i64) -> Option<String> {
    let fixed = match key {
        "DownBlock.1.weight" => Some("encoder.conv_in.weight"),
        "DownBlock.5.weight" => Some("encoder.down1.weight"),
        "DownBlock.9.weight" => Some("encoder.down2.weight"),
        "gap_fc.weight" => Some("cam.gap_fc.weight"),
        "gmp_fc.weight" => Some("cam.gmp_fc.weight"),
        "conv1x1.weight" => Some("cam.conv1x1.weight"),
        "conv1x1.bias" => Some("cam.conv1x1.bias"),
        "FC.0.weight" => Some("mlp.fc1.weight"),
        "FC.2.weight" => Some("mlp.fc2.weight"),
        "gamma.weight" => Some("mlp.gamma.weight"),
        "beta.weight" => Some("mlp.beta.weight"),
        "UpBlock2.2.weight" => Some("decoder.up1.conv.weight"),
        "UpBlock2.7.weight" => Some("decoder.up2.conv.weight"),
        "UpBlock2.11.weight" => Some("decoder.conv_out.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    for (idx, up) in [
        ("UpBlock2.3.", "decoder.up1.norm."),
        ("UpBlock2.8.", "decoder.up2.norm."),
    ] {
        if let Some(p) = key.strip_prefix(idx)
            && ["rho", "gamma", "beta"].contains(&p)
        {
            return Some(format!("{up}{p}"));
        }
    }
    if let Some(rest) = key.strip_prefix("DownBlock.") {
        let (index, tail) = rest.split_once('.')?;
        let i = index.parse::<i64>().ok()? - 12;
        let conv = match tail {
            "conv_block.1.weight" => "conv1",
            "conv_block.5.weight" => "conv2",
            _ => return None,
        };
        return (0..n_res)
            .contains(&i)
            .then(|| format!("encoder.res{}.{conv}.weight", i + 1));
    }
    if let Some(rest) = key.strip_prefix("UpBlock1_") {
        let (index, tail) = rest.split_once('.')?;
        let i = index.parse::<i64>().ok()?;
        let ours = match tail {
            "conv1.weight" | "conv2.weight" | "norm1.rho" | "norm2.rho" => tail,
            _ => return None,
        };
        return (1..=n_res)
            .contains(&i)
            .then(|| format!("decoder.res{i}.{ours}"));
    }
    None
}

/// Our variable name for a key of a reference discriminator with `n_layers` layers.
pub fn discriminator_key(key: &str, n_layers: i64) -> Option<String> {
    let sn = |tail: &str| match tail {
        "weight_orig" => Some("weight"),
        "weight_u" => Some("u"),
        "weight_v" => Some("v"),
        _ => None,
    };
    if let Some(rest) = key.strip_prefix("model.") {
        let (index, tail) = rest.split_once('.')?;
        let index = index.parse::<i64>().ok()?;
        let k = (index - 1) / 3;
        if index % 3 != 1 || !(0..=n_layers - 2).contains(&k) {
            return None;
        }
        let ours = if tail == "bias" {
            Some("bias")
        } else {
            sn(tail)
        }?;
        return Some(format!("body.conv{k}.{ours}"));
    }
    for (theirs, ours) in [
        ("gap_fc.", "cam.gap_fc."),
        ("gmp_fc.", "cam.gmp_fc."),
        ("conv.", "head."),
    ] {
        if let Some(tail) = key.strip_prefix(theirs) {
            return sn(tail).map(|t| format!("{ours}{t}"));
        }
    }
    match key {
        "conv1x1.weight" => Some("cam.conv1x1.weight".into()),
        "conv1x1.bias" => Some("cam.conv1x1.bias".into()),
        _ => None,
    }
}

fn to_tensor(name: &str, raw: &RawTensor) -> Result<Tensor> {
    let kind = match raw.dtype {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F64 => Kind::Double,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    };
    let shape: Vec<i64> = raw.shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_data_size(&raw.data, &shape, kind).map_err(|cause| {
        ImportError::Tensor {
            key: name.to_string(),
            cause,
        }
        .into()
    })
}

fn shape_of<'a>(
    dict: &'a StateDict,
    network: &'static str,
    key: &'static str,
) -> Result<&'a [usize]> {
    let tensor = dict
        .get(key)
        .ok_or(ImportError::MissingKey { network, key })?;
    Ok(&tensor.shape)
}

/// Infers the model shape from the reference generator's tensors.
pub fn infer_config(generator: &StateDict, light_img_size: i64) -> Result<ModelConfig> {
    let first = shape_of(generator, "genA2B", "DownBlock.1.weight")?;
    if first.len() != 4 {
        return Err(ImportError::KeyShape {
            key: "DownBlock.1.weight",
            shape: first.to_vec(),
            expected: "4 dimensions (a convolution)",
        }
        .into());
    }
    let (ch, img_ch) = (first[0] as i64, first[1] as i64);
    let n_res = generator
        .keys()
        .filter(|k| k.starts_with("UpBlock1_") && k.ends_with(".conv1.weight"))
        .count() as i64;
    let fc1 = shape_of(generator, "genA2B", "FC.0.weight")?;
    let fc1_in = fc1.get(1).copied().unwrap_or(0) as i64;
    let deep = 4 * ch;
    let (light, img_size) = if fc1_in == deep {
        (true, light_img_size)
    } else {
        let cells = fc1_in / deep;
        let side = (cells as f64).sqrt().round() as i64;
        if side * side * deep != fc1_in {
            return Err(ImportError::MlpInputs {
                inputs: fc1_in,
                deep,
            }
            .into());
        }
        (false, side * 4)
    };
    let cfg = ModelConfig {
        img_size,
        img_ch,
        ch,
        n_res,
        light,
        ..ModelConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// One reference state_dict renamed to our variable names, every key accounted for.
fn rename(kind: NetworkKind, dict: &StateDict, n_res: i64) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (key, raw) in dict {
        let ours = match kind {
            NetworkKind::GenA2B | NetworkKind::GenB2A => generator_key(key, n_res),
            NetworkKind::DisGA | NetworkKind::DisGB => discriminator_key(key, GLOBAL_D_LAYERS),
            NetworkKind::DisLA | NetworkKind::DisLB => discriminator_key(key, LOCAL_D_LAYERS),
        };
        let ours = ours.ok_or_else(|| ImportError::UnexpectedKey {
            network: kind.name(),
            key: key.clone(),
        })?;
        out.insert(ours, to_tensor(key, raw)?);
    }
    Ok(out)
}

/// Loads an official checkpoint into freshly built networks (on the CPU), checking that every
/// variable on both sides is matched with the same shape.
pub fn load_pytorch(path: &Path, light_img_size: i64) -> Result<Networks> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let pt = pickle::read_pt_bytes(&bytes).map_err(|cause| ImportError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let dict = |k: NetworkKind| {
        pt.dicts
            .get(k.name())
            .ok_or_else(|| ImportError::MissingNetwork {
                path: path.to_path_buf(),
                network: k.name(),
                found: pt.dicts.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    };
    let config = infer_config(dict(NetworkKind::GenA2B)?, light_img_size)?;
    let nets = Networks::new(&config, Device::Cpu)?;
    for kind in NetworkKind::ALL {
        let renamed = rename(kind, dict(kind)?, config.n_res)?;
        tensors::load_into(nets.store(kind), &renamed).map_err(|cause| ImportError::Weights {
            network: kind.name(),
            cause: Box::new(cause),
        })?;
    }
    Ok(nets)
}

/// `brs-train import-pytorch`: writes the official checkpoint as a training checkpoint of ours
/// into run directory `out`. The iteration comes from the reference's file name
/// (`<dataset>_params_0100000.pt`) when it has one. The reference saves no optimizer state, so
/// resuming from an import starts Adam afresh, as the reference itself does.
pub fn import_pytorch(input: &Path, out: &Path, light_img_size: i64) -> Result<PathBuf> {
    let nets = load_pytorch(input, light_img_size)?;
    let iteration = input
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit('_').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let mut writer = CheckpointWriter::begin(out, &checkpoint_name(CKPT_PREFIX, iteration))?;
    nets.add_to(&mut writer)?;
    let mut meta = CheckpointMeta::new(CheckpointKind::Training, &nets.config, iteration);
    meta.source = Some(format!("import-pytorch {}", input.display()));
    writer.commit(meta)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_maps_cover_our_networks_one_to_one() {
        // Every one of our variable names must be the image of exactly one reference key.
        for light in [false, true] {
            let cfg = ModelConfig {
                img_size: 128,
                ch: 8,
                n_res: 3,
                light,
                ..ModelConfig::default()
            };
            let nets = Networks::new(&cfg, Device::Cpu).unwrap();
            let ours: std::collections::BTreeSet<String> = nets
                .store(NetworkKind::GenA2B)
                .variables()
                .into_keys()
                .collect();
            let mut theirs = vec![
                "DownBlock.1.weight",
                "DownBlock.5.weight",
                "DownBlock.9.weight",
                "gap_fc.weight",
                "gmp_fc.weight",
                "conv1x1.weight",
                "conv1x1.bias",
                "FC.0.weight",
                "FC.2.weight",
                "gamma.weight",
                "beta.weight",
                "UpBlock2.2.weight",
                "UpBlock2.7.weight",
                "UpBlock2.11.weight",
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
            for i in 0..3 {
                theirs.push(format!("DownBlock.{}.conv_block.1.weight", 12 + i));
                theirs.push(format!("DownBlock.{}.conv_block.5.weight", 12 + i));
                for t in ["conv1.weight", "conv2.weight", "norm1.rho", "norm2.rho"] {
                    theirs.push(format!("UpBlock1_{}.{t}", i + 1));
                }
            }
            for n in [3, 8] {
                for t in ["rho", "gamma", "beta"] {
                    theirs.push(format!("UpBlock2.{n}.{t}"));
                }
            }
            let mapped: std::collections::BTreeSet<String> = theirs
                .iter()
                .map(|k| generator_key(k, 3).unwrap())
                .collect();
            assert_eq!(mapped, ours);
            assert_eq!(mapped.len(), theirs.len());
            assert_eq!(generator_key("DownBlock.15.conv_block.1.weight", 3), None);
        }
    }

    #[test]
    fn discriminator_keys() {
        assert_eq!(
            discriminator_key("model.1.weight_orig", 7).unwrap(),
            "body.conv0.weight"
        );
        assert_eq!(
            discriminator_key("model.16.bias", 7).unwrap(),
            "body.conv5.bias"
        );
        assert_eq!(discriminator_key("model.16.bias", 5), None);
        assert_eq!(discriminator_key("conv.weight_v", 5).unwrap(), "head.v");
        assert_eq!(discriminator_key("model.2.weight", 7), None);
    }
}
