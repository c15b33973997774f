//! Times the generator's forward pass (no autograd) at a given size: the inference cost servers pay.
//! usage: cargo run --release -p brs-model --example forward_bench -- [img] [ch] [n_res] [light 0|1] [reps] [tensorflow 0|1] [channels_last 0|1] [bf16 0|1]

use brs_model::config::Flavour;
use brs_model::{Generator, ModelConfig};
use std::time::Instant;
use tch::{Device, Kind, Tensor, nn::VarStore};

fn main() {
    let a: Vec<i64> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let get = |i: usize, d: i64| a.get(i).copied().unwrap_or(d);
    let cfg = ModelConfig {
        img_size: get(0, 256),
        ch: get(1, 64),
        n_res: get(2, 4),
        light: get(3, 1) == 1,
        img_ch: 3,
        flavour: if get(5, 0) == 1 {
            Flavour::Tensorflow
        } else {
            Flavour::Pytorch
        },
        ..ModelConfig::default()
    };
    let reps = get(4, 5);
    let mut vs = VarStore::new(Device::Cpu);
    let g = Generator::new(&vs.root(), &cfg);
    let mut x = Tensor::rand(
        [1, 3, cfg.img_size, cfg.img_size],
        (Kind::Float, Device::Cpu),
    );
    // As the servers run it: weights and input channels-last.
    if get(6, 0) == 1 {
        brs_model::precision::store_channels_last(&vs);
        x = brs_model::precision::channels_last(&x);
    }
    if get(7, 0) == 1 {
        vs.bfloat16();
        x = x.to_kind(Kind::BFloat16);
    }
    let _guard = tch::no_grad_guard();
    let _ = g.forward(&x);
    let t = Instant::now();
    for _ in 0..reps {
        let _ = g.forward(&x);
    }
    println!(
        "threads {} forward {:.1} ms",
        tch::get_num_threads(),
        t.elapsed().as_secs_f64() * 1000.0 / reps as f64
    );
}
