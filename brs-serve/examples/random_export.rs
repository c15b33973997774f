//! Publishes a randomly initialised generator into a run directory, for load tests and benchmarks
//! of the serving path (no training needed): `random_export DIR [IMG_SIZE CH N_RES light|full]`.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .context("usage: random_export DIR [IMG_SIZE CH N_RES light|full]")?,
    );
    let num = |i: usize, default: i64| -> anyhow::Result<i64> {
        args.get(i)
            .map(|s| {
                s.parse::<i64>()
                    .with_context(|| format!("argument {}: {s:?} is not a number", i + 1))
            })
            .unwrap_or(Ok(default))
    };
    let cfg = brs_model::ModelConfig {
        img_size: num(1, 256)?,
        ch: num(2, 64)?,
        n_res: num(3, 4)?,
        light: match args.get(4).map(String::as_str) {
            None | Some("light") => true,
            Some("full") => false,
            Some(other) => anyhow::bail!("argument 5: {other:?} (use light or full)"),
        },
        ..brs_model::ModelConfig::default()
    };
    let path = brs_model::translator::write_random_export(&dir, &cfg, 7, 1)?;
    println!("{}", path.display());
    Ok(())
}
