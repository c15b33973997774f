//! The generator of either flavour as an ONNX graph, from its named weights: the same maths as
//! `generator::pytorch` and `generator::tensorflow`, node by node.
//!
//! Weights are taken by their brs names (`encoder.conv_in.weight`...), each checked against the
//! shape the layer needs, and every weight of the checkpoint must be used: a checkpoint of
//! another shape or flavour is refused by name instead of exported wrong. Values that depend
//! only on weights are folded here in float32, with the same tensor operations as the network
//! (the TensorFlow flavour's smoothed rho, `1 - rho`, its CAM weight plus bias), so the graph
//! computes from the same numbers.

use std::collections::{BTreeMap, HashMap};

use super::graph::{Attr, Data, Dim, Graph, Initializer, Node, ValueInfo};
use crate::config::{Flavour, ModelConfig};
use crate::error::OnnxError;
use crate::floats::Floats;

type Result<T> = std::result::Result<T, OnnxError>;

/// The graph's input and outputs, by name.
pub const INPUT: &str = "input";
pub const OUTPUT_IMAGE: &str = "image";
pub const OUTPUT_CAM: &str = "cam_logit";
pub const OUTPUT_HEATMAP: &str = "heatmap";
/// The dynamic batch dimension's name.
const BATCH: &str = "batch";

/// eps of instance norm, AdaLIN and ILN in both flavours.
const EPS: f32 = 1e-5;

/// The checkpoint's weights, handed out once each, shapes checked.
#[derive(Debug)]
pub(crate) struct Weights {
    left: BTreeMap<String, Floats>,
}

impl Weights {
    pub(crate) fn new(weights: BTreeMap<String, Floats>) -> Self {
        Weights { left: weights }
    }

    /// The weight `name`, which must have shape `shape`; it stays to be taken.
    fn get(&self, name: &str, shape: &[i64]) -> Result<&Floats> {
        let t = self
            .left
            .get(name)
            .ok_or_else(|| OnnxError::MissingWeight(name.to_string()))?;
        if t.shape != shape {
            return Err(OnnxError::WeightShape {
                name: name.to_string(),
                found: t.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        Ok(t)
    }

    /// The weight `name`, of shape `shape`, used up: its values move into the graph uncopied.
    fn take(&mut self, name: &str, shape: &[i64]) -> Result<Floats> {
        self.get(name, shape)?;
        self.left
            .remove(name)
            .ok_or_else(|| OnnxError::MissingWeight(name.to_string()))
    }

    /// Fails unless every weight was used.
    fn finish(&mut self) -> Result<()> {
        if self.left.is_empty() {
            Ok(())
        } else {
            let left = std::mem::take(&mut self.left);
            Err(OnnxError::UnusedWeights(left.into_keys().collect()))
        }
    }
}

/// Builds the graph: initializers, nodes with unique output names.
struct Builder {
    g: Graph,
    w: Weights,
    names: HashMap<String, usize>,
    scalars: HashMap<u32, String>,
}

impl Builder {
    /// A fresh value name under `scope`.
    fn fresh(&mut self, scope: &str, op: &str) -> String {
        let key = format!("{scope}/{op}");
        let n = self.names.entry(key.clone()).or_insert(0);
        *n += 1;
        if *n == 1 { key } else { format!("{key}_{n}") }
    }

    fn node(
        &mut self,
        scope: &str,
        op: &'static str,
        inputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
    ) -> String {
        let out = self.fresh(scope, op);
        self.g.nodes.push(Node {
            op,
            name: out.clone(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.clone()],
            attrs,
        });
        out
    }

    /// Renames the value `from` to `to` (a graph output's name) wherever it is made or used.
    fn rename_value(&mut self, from: &str, to: &str) {
        for n in &mut self.g.nodes {
            for v in n.outputs.iter_mut().chain(n.inputs.iter_mut()) {
                if v == from {
                    *v = to.to_string();
                }
            }
        }
    }

    fn constant(&mut self, name: String, dims: Vec<i64>, data: Data) -> String {
        self.g.initializers.push(Initializer {
            name: name.clone(),
            dims,
            data,
        });
        name
    }

    fn tensor(&mut self, name: &str, t: Floats) -> String {
        self.constant(name.to_string(), t.shape, Data::F32(t.values))
    }

    fn ints(&mut self, name: &str, values: &[i64]) -> String {
        if self.g.initializers.iter().any(|i| i.name == name) {
            return name.to_string();
        }
        self.constant(
            name.to_string(),
            vec![values.len() as i64],
            Data::I64(values.to_vec()),
        )
    }

    /// A float32 scalar constant, shared by every node that uses the same value.
    fn scalar(&mut self, v: f32) -> String {
        if let Some(name) = self.scalars.get(&v.to_bits()) {
            return name.clone();
        }
        let name = format!("const/{v:e}");
        self.scalars.insert(v.to_bits(), name.clone());
        self.constant(name, vec![], Data::F32(vec![v]))
    }

    /// A weight, as an initializer of the same name.
    fn weight(&mut self, name: &str, shape: &[i64]) -> Result<String> {
        let t = self.w.take(name, shape)?;
        Ok(self.tensor(name, t))
    }

    fn binary(&mut self, scope: &str, op: &'static str, a: &str, b: &str) -> String {
        self.node(scope, op, &[a, b], vec![])
    }

    fn unary(&mut self, scope: &str, op: &'static str, x: &str) -> String {
        self.node(scope, op, &[x], vec![])
    }

    /// Reflection padding of the two spatial axes: `before` pixels on top and left, `after` on
    /// the bottom and right.
    fn reflect(&mut self, scope: &str, x: &str, before: i64, after: i64) -> String {
        let pads = self.ints(
            &format!("const/pads_{before}_{after}"),
            &[0, 0, before, before, 0, 0, after, after],
        );
        self.node(
            scope,
            "Pad",
            &[x, &pads],
            vec![("mode", Attr::String("reflect"))],
        )
    }

    /// A square convolution without padding; the bias is the checkpoint's `{scope}.bias`.
    fn conv(
        &mut self,
        scope: &str,
        x: &str,
        (c_in, c_out, k, stride): (i64, i64, i64, i64),
        bias: bool,
    ) -> Result<String> {
        let w = self.weight(&format!("{scope}.weight"), &[c_out, c_in, k, k])?;
        let mut inputs = vec![x.to_string(), w];
        if bias {
            inputs.push(self.weight(&format!("{scope}.bias"), &[c_out])?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.node(
            scope,
            "Conv",
            &inputs,
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![stride, stride])),
            ],
        ))
    }

    /// `x @ weight.T (+ bias)`: torch's `linear`.
    fn linear(
        &mut self,
        scope: &str,
        x: &str,
        d_in: i64,
        d_out: i64,
        bias: bool,
    ) -> Result<String> {
        let w = self.weight(&format!("{scope}.weight"), &[d_out, d_in])?;
        let mut inputs = vec![x.to_string(), w];
        if bias {
            inputs.push(self.weight(&format!("{scope}.bias"), &[d_out])?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.node(scope, "Gemm", &inputs, vec![("transB", Attr::Int(1))]))
    }

    /// Instance norm with a per-channel scale and offset (ones and zeros for the PyTorch
    /// flavour's, which has none): biased variance, eps 1e-5, as both flavours.
    fn instance_norm(&mut self, scope: &str, x: &str, scale: &str, offset: &str) -> String {
        self.node(
            scope,
            "InstanceNormalization",
            &[x, scale, offset],
            vec![("epsilon", Attr::Float(EPS))],
        )
    }

    /// Instance norm without learned parameters, as the PyTorch flavour's encoder has.
    fn plain_instance_norm(&mut self, scope: &str, x: &str, c: i64) -> String {
        let ones = format!("const/ones_{c}");
        let zeros = format!("const/zeros_{c}");
        if !self.g.initializers.iter().any(|i| i.name == ones) {
            self.constant(ones.clone(), vec![c], Data::F32(vec![1.0; c as usize]));
            self.constant(zeros.clone(), vec![c], Data::F32(vec![0.0; c as usize]));
        }
        self.instance_norm(scope, x, &ones, &zeros)
    }

    fn reduce(&mut self, scope: &str, op: &'static str, x: &str, axes: &[i64]) -> String {
        self.node(
            scope,
            op,
            &[x],
            vec![
                ("axes", Attr::Ints(axes.to_vec())),
                ("keepdims", Attr::Int(1)),
            ],
        )
    }

    /// `rho * IN(x) + (1 - rho) * LN(x)`, then `* gamma + beta`, fused as `norm::mix_in_ln`
    /// computes it without autograd: one scale and shift per (sample, channel), the layer
    /// statistics from the instance ones. `bias` is 1 for the unbiased variance, 0 for the
    /// biased. `rho` and `one_minus_rho` are [1, C, 1, 1]; gamma and beta broadcast to [N, C, 1, 1].
    fn mix_in_ln(
        &mut self,
        scope: &str,
        x: &str,
        (c, side): (i64, i64),
        (rho, one_minus_rho): (&str, &str),
        (gamma, beta): (&str, &str),
        bias: f32,
    ) -> String {
        let hw = (side * side) as f32;
        let in_mean = self.reduce(scope, "ReduceMean", x, &[2, 3]);
        let dev = self.binary(scope, "Sub", x, &in_mean);
        let in_ss = self.reduce(scope, "ReduceSumSquare", &dev, &[2, 3]);
        let ln_mean = self.reduce(scope, "ReduceMean", &in_mean, &[1]);
        let d = self.binary(scope, "Sub", &in_mean, &ln_mean);
        let d2 = self.binary(scope, "Mul", &d, &d);
        let hw_c = self.scalar(hw);
        let between = self.binary(scope, "Mul", &d2, &hw_c);
        let ss = self.binary(scope, "Add", &in_ss, &between);
        // ReduceSum takes its axes as an input from opset 13 (the others from 18).
        let axis1 = self.ints("const/axes_1", &[1]);
        let ln_ss = self.node(
            scope,
            "ReduceSum",
            &[&ss, &axis1],
            vec![("keepdims", Attr::Int(1))],
        );
        let eps = self.scalar(EPS);
        let std = |b: &mut Self, ss: &str, n: f32| {
            let n = b.scalar(n);
            let var = b.binary(scope, "Div", ss, &n);
            let var = b.binary(scope, "Add", &var, &eps);
            b.unary(scope, "Sqrt", &var)
        };
        let in_std = std(self, &in_ss, hw - bias);
        let ln_std = std(self, &ln_ss, c as f32 * hw - bias);
        let w_in = self.binary(scope, "Div", rho, &in_std);
        let w_ln = self.binary(scope, "Div", one_minus_rho, &ln_std);
        let w = self.binary(scope, "Add", &w_in, &w_ln);
        let scale = self.binary(scope, "Mul", &w, gamma);
        let m_in = self.binary(scope, "Mul", &w_in, &in_mean);
        let m_ln = self.binary(scope, "Mul", &w_ln, &ln_mean);
        let m = self.binary(scope, "Add", &m_in, &m_ln);
        let m = self.binary(scope, "Mul", &m, gamma);
        let shift = self.binary(scope, "Sub", beta, &m);
        let y = self.binary(scope, "Mul", x, &scale);
        self.binary(scope, "Add", &y, &shift)
    }

    /// rho and `1 - rho` of an AdaLIN or ILN as initializers, rho first smoothed as the
    /// TensorFlow flavour's AdaLIN does (`rho - 0.1`, clipped to [0, 1]).
    fn rho(&mut self, scope: &str, c: i64, smoothing: bool) -> Result<(String, String)> {
        let name = format!("{scope}.rho");
        let mut rho = self.w.take(&name, &[1, c, 1, 1])?;
        let mut rho_name = name.clone();
        if smoothing {
            rho = rho.map(|r| (r - 0.1).clamp(0.0, 1.0));
            rho_name = format!("{scope}.rho_smoothed");
        }
        let one_minus = rho.map(|r| 1.0 - r);
        let rho = self.tensor(&rho_name, rho);
        let one_minus = self.tensor(&format!("{scope}.one_minus_rho"), one_minus);
        Ok((rho, one_minus))
    }

    fn upsample2x(&mut self, scope: &str, x: &str) -> String {
        let scales = "const/scales_1_1_2_2".to_string();
        if !self.g.initializers.iter().any(|i| i.name == scales) {
            self.constant(scales.clone(), vec![4], Data::F32(vec![1.0, 1.0, 2.0, 2.0]));
        }
        // Pixel replication: output pixel i reads input floor(i / 2), as PyTorch's nearest
        // up-sampling and TensorFlow's resize_nearest_neighbor do at this factor. An empty
        // name skips the optional roi input.
        self.node(
            scope,
            "Resize",
            &[x, "", &scales],
            vec![
                ("mode", Attr::String("nearest")),
                ("coordinate_transformation_mode", Attr::String("asymmetric")),
                ("nearest_mode", Attr::String("floor")),
            ],
        )
    }
}

/// The flavour-specific layers of one generator, over the shared builder.
struct Net<'c> {
    b: Builder,
    cfg: &'c ModelConfig,
    tf: bool,
}

impl Net<'_> {
    fn deep(&self) -> i64 {
        4 * self.cfg.ch
    }

    /// Pads as the flavour pads before a `k`x`k` convolution of `stride`.
    fn pad(&mut self, scope: &str, x: &str, k: i64, stride: i64) -> String {
        let half = (k - 1) / 2;
        let (before, after) = if self.tf {
            Flavour::tf_padding(k, stride, half)
        } else {
            (half, half)
        };
        self.b.reflect(scope, x, before, after)
    }

    /// Pad, conv, instance norm (learned in the TensorFlow flavour), optional ReLU: the
    /// encoder's layers.
    fn conv_norm(
        &mut self,
        scope: &str,
        x: &str,
        (c_in, c_out, k, stride): (i64, i64, i64, i64),
        relu: bool,
    ) -> Result<String> {
        let h = self.pad(scope, x, k, stride);
        let h = if self.tf {
            let conv = format!("{scope}.conv");
            let h = self.b.conv(&conv, &h, (c_in, c_out, k, stride), true)?;
            let norm = format!("{scope}.norm");
            let gamma = self.b.weight(&format!("{norm}.gamma"), &[c_out])?;
            let beta = self.b.weight(&format!("{norm}.beta"), &[c_out])?;
            self.b.instance_norm(&norm, &h, &gamma, &beta)
        } else {
            let h = self.b.conv(scope, &h, (c_in, c_out, k, stride), false)?;
            self.b.plain_instance_norm(scope, &h, c_out)
        };
        Ok(if relu {
            self.b.unary(scope, "Relu", &h)
        } else {
            h
        })
    }

    fn encoder(&mut self, x: &str) -> Result<String> {
        let (img_ch, ch, deep) = (self.cfg.img_ch, self.cfg.ch, self.deep());
        let mut h = self.conv_norm("encoder.conv_in", x, (img_ch, ch, 7, 1), true)?;
        for (i, c_in, c_out) in [(1, ch, 2 * ch), (2, 2 * ch, deep)] {
            h = self.conv_norm(&format!("encoder.down{i}"), &h, (c_in, c_out, 3, 2), true)?;
        }
        let (first, second) = if self.tf {
            ("first", "second")
        } else {
            ("conv1", "conv2")
        };
        for i in 1..=self.cfg.n_res {
            let block = format!("encoder.res{i}");
            let y = self.conv_norm(&format!("{block}.{first}"), &h, (deep, deep, 3, 1), true)?;
            let y = self.conv_norm(&format!("{block}.{second}"), &y, (deep, deep, 3, 1), false)?;
            h = self.b.binary(&block, "Add", &h, &y);
        }
        Ok(h)
    }

    /// A scorer's weight [1, C] (plus its bias, TensorFlow flavour) as a [1, C, 1, 1] map
    /// weighting: `Linear::channel_weights`.
    fn channel_weights(&mut self, scope: &str, bias: bool) -> Result<String> {
        let deep = self.deep();
        // Read, not taken: the scorer's Gemm takes the same weights.
        let w = self.b.w.get(&format!("{scope}.weight"), &[1, deep])?;
        let map = if bias {
            let b = self.b.w.get(&format!("{scope}.bias"), &[1])?.values[0];
            w.map(|v| v + b)
        } else {
            w.clone()
        };
        Ok(self.b.tensor(
            &format!("{scope}.channel_weights"),
            map.reshaped(vec![1, deep, 1, 1]),
        ))
    }

    /// CAM: logits of the pooled features, the map weighted by the scorers, the 1x1 conv.
    /// Returns (attended map, cam_logit).
    fn cam(&mut self, h: &str) -> Result<(String, String)> {
        let deep = self.deep();
        let gap = self.b.unary("cam", "GlobalAveragePool", h);
        let gap = self
            .b
            .node("cam", "Flatten", &[&gap], vec![("axis", Attr::Int(1))]);
        let gmp = self.b.unary("cam", "GlobalMaxPool", h);
        let gmp = self
            .b
            .node("cam", "Flatten", &[&gmp], vec![("axis", Attr::Int(1))]);
        let (logit, attended) = if self.tf {
            // One scorer for both pooled vectors; its weight plus bias weights the map, twice.
            let cw = self.channel_weights("cam.fc", true)?;
            let gap_logit = self.b.linear("cam.fc", &gap, deep, 1, true)?;
            // The scorer's weights are initializers now; score the max-pooled vector with them.
            let gmp_logit = self.b.node(
                "cam.fc",
                "Gemm",
                &[&gmp, "cam.fc.weight", "cam.fc.bias"],
                vec![("transB", Attr::Int(1))],
            );
            let a = self.b.binary("cam", "Mul", h, &cw);
            (vec![gap_logit, gmp_logit], vec![a.clone(), a])
        } else {
            let gap_w = self.channel_weights("cam.gap_fc", false)?;
            let gmp_w = self.channel_weights("cam.gmp_fc", false)?;
            let gap_logit = self.b.linear("cam.gap_fc", &gap, deep, 1, false)?;
            let gmp_logit = self.b.linear("cam.gmp_fc", &gmp, deep, 1, false)?;
            let a = self.b.binary("cam", "Mul", h, &gap_w);
            let m = self.b.binary("cam", "Mul", h, &gmp_w);
            (vec![gap_logit, gmp_logit], vec![a, m])
        };
        let logit: Vec<&str> = logit.iter().map(String::as_str).collect();
        let cam_logit = self
            .b
            .node("cam", "Concat", &logit, vec![("axis", Attr::Int(1))]);
        let attended: Vec<&str> = attended.iter().map(String::as_str).collect();
        let cat = self
            .b
            .node("cam", "Concat", &attended, vec![("axis", Attr::Int(1))]);
        let h = self
            .b
            .conv("cam.conv1x1", &cat, (2 * deep, deep, 1, 1), true)?;
        let h = self.b.unary("cam", "Relu", &h);
        Ok((h, cam_logit))
    }

    /// gamma and beta [N, C, 1, 1] from the attended map.
    fn mlp(&mut self, h: &str) -> Result<(String, String)> {
        let deep = self.deep();
        let bias = self.tf;
        let (style, d_in) = if self.cfg.light {
            let pooled = self.b.unary("mlp", "GlobalAveragePool", h);
            (pooled, deep)
        } else {
            let side = self.cfg.bottleneck();
            (h.to_string(), side * side * deep)
        };
        // Flatten keeps NCHW order, as `view([n, -1])` on a contiguous map does.
        let style = self
            .b
            .node("mlp", "Flatten", &[&style], vec![("axis", Attr::Int(1))]);
        let s = self.b.linear("mlp.fc1", &style, d_in, deep, bias)?;
        let s = self.b.unary("mlp.fc1", "Relu", &s);
        let s = self.b.linear("mlp.fc2", &s, deep, deep, bias)?;
        let s = self.b.unary("mlp.fc2", "Relu", &s);
        let gamma = self.b.linear("mlp.gamma", &s, deep, deep, bias)?;
        let beta = self.b.linear("mlp.beta", &s, deep, deep, bias)?;
        let axes = self.b.ints("const/axes_2_3", &[2, 3]);
        let gamma = self.b.node("mlp", "Unsqueeze", &[&gamma, &axes], vec![]);
        let beta = self.b.node("mlp", "Unsqueeze", &[&beta, &axes], vec![]);
        Ok((gamma, beta))
    }

    /// The variance correction of the flavour's AdaLIN and ILN: 1 for torch.var's unbiased
    /// variance, 0 for tf.nn.moments' biased one.
    fn variance_bias(&self) -> f32 {
        if self.tf { 0.0 } else { 1.0 }
    }

    fn decoder(&mut self, h: &str, gamma: &str, beta: &str) -> Result<String> {
        let (ch, deep, side) = (self.cfg.ch, self.deep(), self.cfg.bottleneck());
        let bias = self.tf;
        let stats = self.variance_bias();
        let smoothing = self.tf && self.cfg.smoothing;
        let mut h = h.to_string();
        for i in 1..=self.cfg.n_res {
            let block = format!("decoder.res{i}");
            let mut y = h.clone();
            for j in 1..=2 {
                let conv = format!("{block}.conv{j}");
                let p = self.pad(&conv, &y, 3, 1);
                y = self.b.conv(&conv, &p, (deep, deep, 3, 1), bias)?;
                let norm = format!("{block}.norm{j}");
                let rho = self.b.rho(&norm, deep, smoothing)?;
                y = self.b.mix_in_ln(
                    &norm,
                    &y,
                    (deep, side),
                    (&rho.0, &rho.1),
                    (gamma, beta),
                    stats,
                );
                if j == 1 {
                    y = self.b.unary(&norm, "Relu", &y);
                }
            }
            h = self.b.binary(&block, "Add", &y, &h);
        }
        let mut side = side;
        for (i, c_in, c_out) in [(1, deep, 2 * ch), (2, 2 * ch, ch)] {
            let up = format!("decoder.up{i}");
            side *= 2;
            let x = self.b.upsample2x(&up, &h);
            let conv = format!("{up}.conv");
            let p = self.pad(&conv, &x, 3, 1);
            let y = self.b.conv(&conv, &p, (c_in, c_out, 3, 1), bias)?;
            let norm = format!("{up}.norm");
            let rho = self.b.rho(&norm, c_out, false)?;
            let gamma = self.b.weight(&format!("{norm}.gamma"), &[1, c_out, 1, 1])?;
            let beta = self.b.weight(&format!("{norm}.beta"), &[1, c_out, 1, 1])?;
            let y = self.b.mix_in_ln(
                &norm,
                &y,
                (c_out, side),
                (&rho.0, &rho.1),
                (&gamma, &beta),
                stats,
            );
            h = self.b.unary(&norm, "Relu", &y);
        }
        let p = self.pad("decoder.conv_out", &h, 7, 1);
        let y = self
            .b
            .conv("decoder.conv_out", &p, (ch, self.cfg.img_ch, 7, 1), bias)?;
        Ok(self.b.unary("decoder", "Tanh", &y))
    }
}

/// The generator of `cfg` with these weights as an ONNX graph: input `input` [batch, C, S, S]
/// in [-1, 1]; outputs `image` (same shape, in [-1, 1]), `cam_logit` [batch, 2] and `heatmap`
/// [batch, 1, S/4, S/4], as `Generator::forward` returns them.
pub(crate) fn graph(cfg: &ModelConfig, weights: Weights) -> Result<Graph> {
    let (s, c) = (cfg.img_size, cfg.img_ch);
    let bottleneck = cfg.bottleneck();
    let mut net = Net {
        b: Builder {
            g: Graph::default(),
            w: weights,
            names: HashMap::new(),
            scalars: HashMap::new(),
        },
        cfg,
        tf: cfg.flavour == Flavour::Tensorflow,
    };
    let h = net.encoder(INPUT)?;
    let (h, cam_logit) = net.cam(&h)?;
    let axis1 = net.b.ints("const/axes_1", &[1]);
    let heatmap = net.b.node(
        "heatmap",
        "ReduceSum",
        &[&h, &axis1],
        vec![("keepdims", Attr::Int(1))],
    );
    let (gamma, beta) = net.mlp(&h)?;
    let image = net.decoder(&h, &gamma, &beta)?;
    net.b.w.finish()?;
    let mut b = net.b;
    b.rename_value(&image, OUTPUT_IMAGE);
    b.rename_value(&cam_logit, OUTPUT_CAM);
    b.rename_value(&heatmap, OUTPUT_HEATMAP);
    let batch = || Dim::Named(BATCH);
    b.g.inputs.push(ValueInfo {
        name: INPUT.into(),
        dims: vec![batch(), Dim::Fixed(c), Dim::Fixed(s), Dim::Fixed(s)],
        doc: "images to translate, float32 NCHW (RGB) in [-1, 1]".into(),
    });
    b.g.outputs = vec![
        ValueInfo {
            name: OUTPUT_IMAGE.into(),
            dims: vec![batch(), Dim::Fixed(c), Dim::Fixed(s), Dim::Fixed(s)],
            doc: "the translations, float32 NCHW in [-1, 1]".into(),
        },
        ValueInfo {
            name: OUTPUT_CAM.into(),
            dims: vec![batch(), Dim::Fixed(2)],
            doc: "CAM logits of the average- and max-pooled features".into(),
        },
        ValueInfo {
            name: OUTPUT_HEATMAP.into(),
            dims: vec![
                batch(),
                Dim::Fixed(1),
                Dim::Fixed(bottleneck),
                Dim::Fixed(bottleneck),
            ],
            doc: "attention heatmap: the channel sum of the attended features".into(),
        },
    ];
    Ok(b.g)
}

#[cfg(all(test, feature = "torch"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;

    use tch::Device;
    use tch::nn::VarStore;

    use super::*;
    use crate::generator::Generator;

    /// A fresh generator's weights, as the export reads them from a checkpoint.
    fn weights_of(cfg: &ModelConfig) -> BTreeMap<String, Floats> {
        let vs = VarStore::new(Device::Cpu);
        let _g = Generator::new(&vs.root(), cfg);
        vs.variables()
            .into_iter()
            .map(|(k, t)| {
                let values = Vec::<f32>::try_from(t.contiguous().view([-1])).unwrap();
                (k, Floats::new(t.size(), values))
            })
            .collect()
    }

    /// The operators of opset 17 the graph may use (and whose versions the comments cite).
    const OPS: &[&str] = &[
        "Add",
        "Concat",
        "Conv",
        "Div",
        "Flatten",
        "Gemm",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "InstanceNormalization",
        "Mul",
        "Pad",
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "Relu",
        "Resize",
        "Sqrt",
        "Sub",
        "Tanh",
        "Unsqueeze",
    ];

    #[test]
    fn every_value_is_made_once_before_it_is_used() {
        for flavour in [Flavour::Pytorch, Flavour::Tensorflow] {
            for light in [true, false] {
                let cfg = ModelConfig {
                    img_size: 96,
                    ch: 4,
                    n_res: 2,
                    light,
                    flavour,
                    ..ModelConfig::default()
                };
                let g = graph(&cfg, Weights::new(weights_of(&cfg))).unwrap();
                let mut known: HashSet<&str> =
                    g.initializers.iter().map(|i| i.name.as_str()).collect();
                assert_eq!(
                    known.len(),
                    g.initializers.len(),
                    "initializer names repeat"
                );
                known.insert(INPUT);
                known.insert("");
                for n in &g.nodes {
                    assert!(OPS.contains(&n.op), "{} is not in the list", n.op);
                    for i in &n.inputs {
                        assert!(
                            known.contains(i.as_str()),
                            "{} reads {i} before it exists",
                            n.name
                        );
                    }
                    for o in &n.outputs {
                        assert!(known.insert(o.as_str()), "{o} is made twice");
                    }
                }
                for out in [OUTPUT_IMAGE, OUTPUT_CAM, OUTPUT_HEATMAP] {
                    assert!(known.contains(out), "{out} is never made");
                }
            }
        }
    }

    #[test]
    fn weights_are_checked_and_must_all_be_used() {
        let cfg = ModelConfig {
            img_size: 96,
            ch: 4,
            n_res: 1,
            light: true,
            ..ModelConfig::default()
        };
        let mut w = weights_of(&cfg);
        w.insert("extra.weight".into(), Floats::new(vec![2], vec![0.0; 2]));
        let err = graph(&cfg, Weights::new(w.clone())).unwrap_err();
        assert!(
            matches!(&err, OnnxError::UnusedWeights(names) if names == &["extra.weight"]),
            "{err}"
        );
        w.remove("extra.weight");
        w.insert(
            "decoder.conv_out.weight".into(),
            Floats::new(vec![3, 4, 3, 3], vec![0.0; 3 * 4 * 3 * 3]),
        );
        let err = graph(&cfg, Weights::new(w)).unwrap_err();
        assert!(
            err.to_string().contains(
                "decoder.conv_out.weight has shape [3, 4, 3, 3], the generator needs [3, 4, 7, 7]"
            ),
            "{err}"
        );
    }
}
