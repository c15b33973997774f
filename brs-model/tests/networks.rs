//! Whole-network checks: the paper's parameter counts, variable names, shapes and dtypes.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use brs_model::config::{Flavour, GLOBAL_D_LAYERS, LOCAL_D_LAYERS};
use brs_model::networks::{parameter_count, parameter_counts};
use brs_model::{Discriminator, Generator, ModelConfig, NetworkKind, Networks};
use brs_testkit::model::tiny_config;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[test]
fn parameter_counts_match_the_official_code() {
    // img 256, ch 64, n_res 4, computed from the official PyTorch code.
    let full = parameter_counts(&ModelConfig::default()).unwrap();
    assert_eq!(full["generator"], 278_959_808);
    assert_eq!(full["global discriminator"], 53_130_176);
    assert_eq!(full["local discriminator"], 3_290_560);
    let light = ModelConfig {
        light: true,
        ..ModelConfig::default()
    };
    let light = parameter_counts(&light).unwrap();
    assert_eq!(light["generator"], 10_589_888);
    // All six networks of the light model: 536,084,992 bytes in fp32.
    assert_eq!(light["all six networks"] * 4, 536_084_992);
}

/// The count a server checks before allocating anything equals the real network's.
#[test]
fn generator_params_from_the_shape_alone_match_the_network() {
    for cfg in [
        ModelConfig::default(),
        ModelConfig {
            light: true,
            ..ModelConfig::default()
        },
        tiny_config(),
        ModelConfig {
            img_size: 128,
            img_ch: 1,
            ch: 16,
            n_res: 2,
            light: false,
            ..ModelConfig::default()
        },
    ]
    .into_iter()
    .flat_map(|cfg| {
        // Each shape in both flavours.
        let tf = ModelConfig {
            flavour: Flavour::Tensorflow,
            img_ch: 3,
            ..cfg.clone()
        };
        [cfg, tf]
    }) {
        let counted = parameter_counts(&cfg).unwrap()["generator"];
        assert_eq!(cfg.generator_params(), counted as u64, "{cfg:?}");
    }
}

fn names(vs: &VarStore) -> BTreeSet<String> {
    vs.variables().into_keys().collect()
}

#[test]
fn variable_names_read_like_the_architecture() {
    let cfg = ModelConfig {
        n_res: 2,
        ..tiny_config()
    };
    let vs = VarStore::new(Device::Cpu);
    Generator::new(&vs.root(), &cfg);
    let mut expected: BTreeSet<String> = [
        "encoder.conv_in.weight",
        "encoder.down1.weight",
        "encoder.down2.weight",
        "encoder.res1.conv1.weight",
        "encoder.res1.conv2.weight",
        "encoder.res2.conv1.weight",
        "encoder.res2.conv2.weight",
        "cam.gap_fc.weight",
        "cam.gmp_fc.weight",
        "cam.conv1x1.weight",
        "cam.conv1x1.bias",
        "mlp.fc1.weight",
        "mlp.fc2.weight",
        "mlp.gamma.weight",
        "mlp.beta.weight",
        "decoder.conv_out.weight",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for i in 1..=2 {
        for t in ["conv1.weight", "norm1.rho", "conv2.weight", "norm2.rho"] {
            expected.insert(format!("decoder.res{i}.{t}"));
        }
        expected.insert(format!("decoder.up{i}.conv.weight"));
        for t in ["rho", "gamma", "beta"] {
            expected.insert(format!("decoder.up{i}.norm.{t}"));
        }
    }
    assert_eq!(names(&vs), expected);

    // A 5-layer discriminator: convs 0..=3 in the body, spectral norm's u/v beside each weight.
    let vs = VarStore::new(Device::Cpu);
    Discriminator::new(&vs.root(), &cfg, LOCAL_D_LAYERS);
    let mut expected = BTreeSet::new();
    for k in 0..=3 {
        for t in ["weight", "bias", "u", "v"] {
            expected.insert(format!("body.conv{k}.{t}"));
        }
    }
    for fc in ["gap_fc", "gmp_fc"] {
        for t in ["weight", "u", "v"] {
            expected.insert(format!("cam.{fc}.{t}"));
        }
    }
    for t in [
        "cam.conv1x1.weight",
        "cam.conv1x1.bias",
        "head.weight",
        "head.u",
        "head.v",
    ] {
        expected.insert(t.to_string());
    }
    assert_eq!(names(&vs), expected);
    // u and v are buffers: 4 body convs (w + b), 2 FCs, the 1x1 conv (w + b), the head.
    assert_eq!(vs.trainable_variables().len(), 4 * 2 + 2 + 2 + 1);
}

#[test]
fn forward_shapes_at_the_smallest_size() {
    let cfg = ModelConfig {
        light: false,
        ..tiny_config()
    };
    tch::manual_seed(0);
    let nets = Networks::new(&cfg, Device::Cpu).unwrap();
    let x = Tensor::rand([2, 3, 96, 96], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let out = nets.gen_a2b.forward(&x);
    assert_eq!(out.image.size(), [2, 3, 96, 96]);
    assert_eq!(out.cam_logit.size(), [2, 2]);
    assert_eq!(out.heatmap.size(), [2, 1, 24, 24]);
    assert!(out.image.abs().max().double_value(&[]) <= 1.0);
    let g = nets.dis_ga.forward(&x, true);
    assert_eq!(g.logit.size(), [2, 1, 1, 1]);
    assert_eq!(g.cam_logit.size(), [2, 2]);
    let l = nets.dis_la.forward(&x, true);
    assert_eq!(l.logit.size(), [2, 1, 10, 10]);
    // Each network has its own store; none is empty, nothing was renamed by tch.
    for (kind, vs) in nets.stores() {
        assert!(parameter_count(vs) > 0, "{}", kind.name());
        assert!(
            vs.variables().keys().all(|k| !k.contains("__")),
            "{}",
            kind.name()
        );
    }
    assert_eq!(GLOBAL_D_LAYERS, 7);
    assert!(NetworkKind::ALL.iter().filter(|k| k.is_generator()).count() == 2);
}

#[test]
fn rho_is_clipped_to_the_unit_interval() {
    let cfg = tiny_config();
    let vs = VarStore::new(Device::Cpu);
    let g = Generator::new(&vs.root(), &cfg);
    tch::no_grad(|| {
        for (name, t) in vs.variables() {
            if name.ends_with("rho") {
                let _ = t
                    .shallow_clone()
                    .fill_(if name.contains("res") { 1.7 } else { -0.4 });
            }
        }
    });
    g.clip_rho();
    for (name, t) in vs.variables() {
        if name.ends_with("rho") {
            let v = t.mean(Kind::Float).double_value(&[]);
            assert!(v == 1.0 || v == 0.0, "{name} = {v}");
        }
    }
}
