//! Model hyper-parameters, with the option names of the official U-GAT-IT code.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Layers of the global discriminator in the paper.
pub const GLOBAL_D_LAYERS: i64 = 7;
/// Layers of the local discriminator in the paper.
pub const LOCAL_D_LAYERS: i64 = 5;
/// The official codes' `n_dis` default, which builds those depths (the PyTorch code ignores
/// its `n_dis` and always builds them).
pub const DEFAULT_N_DIS: i64 = 6;

fn is_default_n_dis(n: &i64) -> bool {
    *n == DEFAULT_N_DIS
}

/// Which official implementation's network a model is: the two differ in more than names
/// (see `generator::tensorflow`). Every checkpoint written before the TensorFlow variant
/// existed is `pytorch`, the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// znxlwm/UGATIT-pytorch, the network brs trains by default.
    #[default]
    Pytorch,
    /// taki0112/UGATIT, the authors' TensorFlow code, whose released selfie2anime weights
    /// `brs-train import-tf` reads.
    Tensorflow,
}

impl Flavour {
    pub fn is_pytorch(&self) -> bool {
        *self == Flavour::Pytorch
    }

    /// The pixels the official TensorFlow `conv` pads before and after a map before a VALID
    /// convolution of a `k`x`k` kernel at `stride` (the networks' `reflect_tf`; the ONNX
    /// exporter pads the same way): `pad` on every side when `k - stride` is even, otherwise
    /// `pad` before and `k - stride - pad` after.
    pub(crate) fn tf_padding(k: i64, stride: i64, pad: i64) -> (i64, i64) {
        let after = if (k - stride) % 2 == 0 {
            pad
        } else {
            k - stride - pad
        };
        (pad, after)
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavour::Pytorch => "pytorch",
            Flavour::Tensorflow => "tensorflow",
        })
    }
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The shape of the networks. Defaults are the paper's selfie2anime settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Side of the square images the networks see (default 256).
    pub img_size: i64,
    /// Image channels (default 3).
    pub img_ch: i64,
    /// Base channel count of every network (default 64).
    pub ch: i64,
    /// Residual blocks in the generator's encoder and decoder each (default 4).
    pub n_res: i64,
    /// Light generator: the gamma/beta MLP sees the pooled features instead of the whole map (default false).
    pub light: bool,
    /// The official implementation whose network this is (default `pytorch`). Written to
    /// meta.json only when it is not the default, so PyTorch-flavour checkpoints stay readable
    /// by older brs binaries.
    #[serde(skip_serializing_if = "Flavour::is_pytorch")]
    pub flavour: Flavour,
    /// AdaLIN smoothing (`rho - 0.1`, clipped to [0, 1]) of the TensorFlow flavour (default
    /// true, the official default and the released weights' setting). The PyTorch flavour has none.
    #[serde(skip_serializing_if = "is_true")]
    pub smoothing: bool,
    /// The TensorFlow code's `n_dis` (default 6): the global discriminator has n_dis + 1 layers,
    /// the local one n_dis - 1. The PyTorch flavour has only the paper's 6.
    #[serde(skip_serializing_if = "is_default_n_dis")]
    pub n_dis: i64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            img_size: 256,
            img_ch: 3,
            ch: 64,
            n_res: 4,
            light: false,
            flavour: Flavour::Pytorch,
            smoothing: true,
            n_dis: DEFAULT_N_DIS,
        }
    }
}

impl ModelConfig {
    /// Refuses an input batch that is not [N, img_ch, img_size, img_size], whichever engine runs
    /// the generator.
    pub fn check_input(&self, shape: &[i64]) -> Result<()> {
        if shape.len() != 4
            || shape[1] != self.img_ch
            || shape[2] != self.img_size
            || shape[3] != self.img_size
        {
            return Err(ModelError::InputShape {
                found: shape.to_vec(),
                channels: self.img_ch,
                side: self.img_size,
            });
        }
        Ok(())
    }

    /// Refuses shapes the networks cannot run at, naming the key and the allowed range.
    ///
    /// The global discriminator halves the image five times (stride-2 convs), then shrinks it by
    /// one twice (4x4 convs with stride 1), and reflection-pads every map by one, which needs a
    /// map of at least 2 pixels: the smallest image that survives is 96 for the 7-layer D. The
    /// official code crashes deep inside the forward pass below that (at img 64, say); we refuse
    /// up front instead of silently changing the paper's architecture.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(ModelError::Config(msg));
        if !(1..=4).contains(&self.img_ch) {
            return fail(format!("img_ch = {} (allowed 1..=4)", self.img_ch));
        }
        if !(1..=1024).contains(&self.ch) {
            return fail(format!("ch = {} (allowed 1..=1024)", self.ch));
        }
        if !(0..=64).contains(&self.n_res) {
            return fail(format!("n_res = {} (allowed 0..=64)", self.n_res));
        }
        if self.img_size % 4 != 0 || !(8..=2048).contains(&self.img_size) {
            return fail(format!(
                "img_size = {} (allowed: a multiple of 4 in 8..=2048)",
                self.img_size
            ));
        }
        if self.flavour == Flavour::Pytorch && !self.smoothing {
            return fail(
                "smoothing = false: AdaLIN smoothing is a setting of the tensorflow flavour only"
                    .into(),
            );
        }
        if self.flavour == Flavour::Tensorflow && self.img_ch != 3 {
            // The official TensorFlow generator's last layer has 3 channels whatever img_ch is.
            return fail(format!(
                "img_ch = {} (the tensorflow flavour draws 3 channels)",
                self.img_ch
            ));
        }
        match self.flavour {
            Flavour::Pytorch if self.n_dis != DEFAULT_N_DIS => {
                return fail(format!(
                    "n_dis = {}: the pytorch flavour builds the paper's discriminators (n_dis \
                     {DEFAULT_N_DIS}); other depths are a setting of the tensorflow flavour",
                    self.n_dis
                ));
            }
            Flavour::Tensorflow if !(4..=8).contains(&self.n_dis) => {
                return fail(format!("n_dis = {} (allowed 4..=8)", self.n_dis));
            }
            _ => {}
        }
        let layers = self.global_d_layers();
        let min = Self::min_img_size(layers);
        if self.img_size < min {
            return fail(format!(
                "img_size = {} is too small for the {layers}-layer global discriminator, whose \
                 feature map would shrink below the reflection padding (the reference crashes \
                 here); the smallest img_size is {min}",
                self.img_size
            ));
        }
        Ok(())
    }

    /// Layers of the global discriminator: 7 at the default n_dis.
    pub fn global_d_layers(&self) -> i64 {
        self.n_dis + GLOBAL_D_LAYERS - DEFAULT_N_DIS
    }

    /// Layers of the local discriminator: 5 at the default n_dis.
    pub fn local_d_layers(&self) -> i64 {
        self.n_dis + LOCAL_D_LAYERS - DEFAULT_N_DIS
    }

    /// The smallest multiple of 4 whose feature maps stay at least 2 px before every reflection
    /// pad of a discriminator with `n_layers` layers.
    pub fn min_img_size(n_layers: i64) -> i64 {
        (1..=512)
            .map(|k| 4 * k)
            .find(|&s| discriminator_maps(s, n_layers).iter().all(|&m| m >= 2))
            .unwrap_or(2048)
    }

    /// Parameters of one generator, computed from the shape alone (nothing is allocated), so a
    /// server can refuse a checkpoint whose meta.json asks for more than it will hold.
    pub fn generator_params(&self) -> u64 {
        let (img_ch, ch) = (self.img_ch.max(0) as u64, self.ch.max(0) as u64);
        let deep = 4 * ch;
        let n_res = self.n_res.max(0) as u64;
        let conv = |c_in: u64, c_out: u64, k: u64| c_in * c_out * k * k;
        let fc1_in = if self.light {
            deep
        } else {
            let b = self.bottleneck().max(0) as u64;
            b * b * deep
        };
        let tensorflow_extras = match self.flavour {
            Flavour::Pytorch => 0,
            // A bias on every conv but the CAM 1x1 (which has one in both), the encoder's
            // instance-norm scales and offsets, one CAM scorer with a bias instead of two
            // without, and the MLP's biases.
            Flavour::Tensorflow => {
                let biases = ch + 2 * ch + deep + 4 * n_res * deep + 2 * ch + ch + img_ch;
                let norms = 2 * (ch + 2 * ch + deep) + 4 * n_res * deep;
                biases + norms + 1 - deep + 4 * deep
            }
        };
        tensorflow_extras
            + conv(img_ch, ch, 7)
            + conv(ch, 2 * ch, 3)
            + conv(2 * ch, deep, 3)
            + n_res * 2 * conv(deep, deep, 3)
            + 2 * deep
            + conv(2 * deep, deep, 1)
            + deep
            + fc1_in * deep
            + 3 * deep * deep
            + n_res * 2 * (conv(deep, deep, 3) + deep)
            + conv(deep, 2 * ch, 3)
            + 3 * 2 * ch
            + conv(2 * ch, ch, 3)
            + 3 * ch
            + conv(ch, img_ch, 7)
    }

    /// Side of the square feature map in the generator's bottleneck.
    pub fn bottleneck(&self) -> i64 {
        self.img_size / 4
    }
}

/// Sides of the maps a discriminator reflection-pads, in order (before each pad).
pub(crate) fn discriminator_maps(img: i64, n_layers: i64) -> Vec<i64> {
    // conv 4x4 after pad 1: out = (in + 2 - 4) / stride + 1
    let mut maps = vec![img];
    let mut s = img;
    for _ in 0..(n_layers - 2) {
        s = (s - 2) / 2 + 1;
        maps.push(s);
    }
    s -= 1; // the stride-1 conv
    maps.push(s);
    maps
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn inputs_of_another_shape_are_refused_with_the_expected_one() {
        let cfg = ModelConfig::default();
        let (c, s) = (cfg.img_ch, cfg.img_size);
        assert!(cfg.check_input(&[2, c, s, s]).is_ok());
        for bad in [vec![c, s, s], vec![1, c + 1, s, s], vec![1, c, s, s + 1]] {
            let err = cfg.check_input(&bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("expected [N, {c}, {s}, {s}]")),
                "{err}"
            );
        }
    }

    #[test]
    fn paper_defaults_are_valid() {
        ModelConfig::default().validate().unwrap();
    }

    #[test]
    fn global_discriminator_sizes() {
        // The reference runs at 128 and crashes at 64; 96 is the smallest size that works.
        assert_eq!(ModelConfig::min_img_size(GLOBAL_D_LAYERS), 96);
        let small = ModelConfig {
            img_size: 64,
            ..ModelConfig::default()
        };
        let err = small.validate().unwrap_err().to_string();
        assert!(err.contains("img_size = 64") && err.contains("96"), "{err}");
        // At 256 the global D ends in a 6x6 patch map and the local D sees maps down to 31.
        assert_eq!(*discriminator_maps(256, 7).last().unwrap(), 7);
        assert_eq!(*discriminator_maps(256, 5).last().unwrap(), 31);
    }

    #[test]
    fn rejects_bad_values_by_name() {
        for (cfg, key) in [
            (
                ModelConfig {
                    ch: 0,
                    ..Default::default()
                },
                "ch",
            ),
            (
                ModelConfig {
                    img_size: 130,
                    ..Default::default()
                },
                "img_size",
            ),
            (
                ModelConfig {
                    n_res: -1,
                    ..Default::default()
                },
                "n_res",
            ),
        ] {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn discriminator_depth_is_a_tensorflow_setting() {
        let tf = |n_dis| ModelConfig {
            flavour: Flavour::Tensorflow,
            n_dis,
            ..ModelConfig::default()
        };
        assert_eq!((tf(5).global_d_layers(), tf(5).local_d_layers()), (6, 4));
        tf(5).validate().unwrap();
        let err = tf(9).validate().unwrap_err().to_string();
        assert!(err.contains("n_dis = 9"), "{err}");
        // The global discriminator of n_dis 7 needs images of at least 192 px.
        let deep = ModelConfig {
            img_size: 128,
            ..tf(7)
        };
        let err = deep.validate().unwrap_err().to_string();
        assert!(err.contains("8-layer") && err.contains("192"), "{err}");
        let pytorch = ModelConfig {
            n_dis: 5,
            ..ModelConfig::default()
        };
        let err = pytorch.validate().unwrap_err().to_string();
        assert!(
            err.contains("n_dis = 5") && err.contains("tensorflow"),
            "{err}"
        );
        // The default is not written, so older binaries read new checkpoints of the paper's shape.
        let json = serde_json::to_string(&ModelConfig::default()).unwrap();
        assert!(
            !json.contains("n_dis") && !json.contains("flavour"),
            "{json}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml_like(r#"{"img_size": 128, "chh": 3}"#);
        assert!(err.contains("chh"), "{err}");
    }

    fn toml_like(json: &str) -> String {
        serde_json::from_str::<ModelConfig>(json)
            .unwrap_err()
            .to_string()
    }
}
