//! The command line: `train`, `translate`, `export`, `summary`, `import-pytorch` and `import-tf` (a module of
//! the binary: it parses, calls the library and prints).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use brs_engine::{Engine, EngineOptions, EngineSpec};
use brs_model::checkpoint::Checkpoint;
use brs_model::onnx::ExternalData;
use brs_model::{DeviceSpec, Direction, Precision};
use clap::{Args, Parser, Subcommand};

use brs_train::config::TrainConfig;
use brs_train::trainer::{EarlyStop, TrainOptions, train};

use crate::progress::{Progress, bar};

/// A command's result went to a reader that had gone away (`brs-train evaluate | head -1`). Not a
/// failure: `main` ends quietly, as a Unix filter does, where `println!` would have panicked.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed by its reader")]
pub(crate) struct StdoutClosed;

/// `println!` that returns an error instead of panicking when stdout cannot be written:
/// [`StdoutClosed`] for a closed pipe, the I/O error otherwise.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(|e| -> anyhow::Error {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                StdoutClosed.into()
            } else {
                anyhow::Error::new(e).context("writing to stdout")
            }
        })
    }};
}

/// Train U-GAT-IT, translate images with it, and package it for serving.
#[derive(Debug, Parser)]
#[command(name = "brs-train", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Train (or, with --resume, continue training) on DIR/{trainA,trainB,testA,testB}.
    Train(TrainArgs),
    /// Translate an image or a folder of images with a trained generator.
    Translate(TranslateArgs),
    /// Score translations of held-out inputs against known targets of the same file names.
    Evaluate(EvaluateArgs),
    /// Write a serving artifact: one generator and its metadata, for brs-serve or (--format
    /// onnx) as an ONNX model for any ONNX runtime.
    Export(ExportArgs),
    /// Print the parameter count of each network of a config.
    Summary(SummaryArgs),
    /// Convert a checkpoint of the official PyTorch code (.pt) into a brs checkpoint.
    ImportPytorch(ImportArgs),
    /// Convert a checkpoint of the authors' TensorFlow code (the released selfie2anime weights,
    /// say) into a brs checkpoint of the TensorFlow flavour.
    ImportTf(ImportTfArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    /// TOML config (see configs/); keys are the reference's option names.
    #[arg(long)]
    pub(crate) config: PathBuf,
    /// Dataset root holding trainA, trainB, testA, testB.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Run directory: checkpoints, samples, metrics.jsonl, losses.png.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    pub(crate) resume: bool,
    /// auto, cpu, cuda or cuda:N (overrides the config's device).
    #[arg(long)]
    pub(crate) device: Option<DeviceSpec>,
    /// Override a config key, e.g. --set iteration=5000 --set light=true (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
    /// Stop with a checkpoint once this many iterations are done (e.g. a time-boxed job).
    #[arg(long)]
    pub(crate) stop_at: Option<u64>,
    /// Stop with a checkpoint once this many minutes of training have passed (the loop's time,
    /// not the data loading); --resume continues. With decay_flag the learning rate falls
    /// linearly to 0 over the second half of the minutes (the paper's decay over the second half
    /// of a run), unless the config's iteration count ends the run first.
    #[arg(long)]
    pub(crate) max_minutes: Option<f64>,
}

/// The generator a command runs, and how: shared by `translate` and `evaluate`.
#[derive(Debug, Args)]
pub(crate) struct GeneratorArgs {
    /// Run, checkpoint or export directory.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    #[arg(long, default_value = "a2b")]
    pub(crate) direction: Direction,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub(crate) batch: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub(crate) device: DeviceSpec,
    /// Number format: auto (bf16 on CPUs with AVX512-BF16, as brs-serve), f32 or bf16.
    #[arg(long, default_value = "auto")]
    pub(crate) precision: Precision,
    /// What runs the generator, as brs-serve's `engine` key: auto (first a few forward passes of
    /// one image with each engine on this machine, then the faster: libtorch in --precision or
    /// ONNX Runtime in float32; the choice and both times are printed on stderr), torch
    /// (libtorch) or onnx (ONNX Runtime, float32 on the CPU). In float32 both give the same
    /// images within a grey level.
    #[arg(long, default_value = "auto")]
    pub(crate) engine: EngineSpec,
}

impl GeneratorArgs {
    fn load(&self) -> Result<(Engine, tch::Device)> {
        self.engine
            .check(self.precision, self.device)
            .map_err(|e| anyhow::anyhow!("--engine {}: {e}", self.engine))?;
        let device = self.device.resolve()?;
        let opts = EngineOptions {
            engine: self.engine,
            device,
            precision: self.precision,
            // A command that exits when done: the faster batches matter, not the memory kept.
            onnx_arena: true,
            // Folders are translated in batches (--batch).
            onnx_lanes: brs_engine::OnnxLanes::Timed,
        };
        let engine = Engine::open(&self.checkpoint, self.direction, &opts)?;
        eprintln!("engine: {}", engine.describe());
        Ok((engine, device))
    }
}

#[derive(Debug, Args)]
pub(crate) struct TranslateArgs {
    #[command(flatten)]
    pub(crate) generator: GeneratorArgs,
    /// An image file or a folder of images.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Folder for the PNGs (created if missing).
    #[arg(long)]
    pub(crate) output: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct EvaluateArgs {
    #[command(flatten)]
    pub(crate) generator: GeneratorArgs,
    /// Folder of inputs (e.g. DATA/testA).
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Folder of what each input's translation should be, under the same file names (e.g.
    /// DATA/testB of a set made by `brs-dataset photoset`).
    #[arg(long)]
    pub(crate) target: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// A brs export directory (export-NNNNNNN/ plus `latest`) that brs-serve loads.
    Brs,
    /// An ONNX model (opset 17) for any ONNX runtime.
    Onnx,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Run, checkpoint or export directory.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// brs format: the run directory for the export (export-NNNNNNN/ plus `latest`, as brs-serve
    /// watches). onnx: the model file (FILE.onnx), or a directory to write genA2B.onnx (or
    /// genB2A.onnx) into.
    #[arg(long)]
    pub(crate) output: PathBuf,
    #[arg(long, default_value = "a2b")]
    pub(crate) direction: Direction,
    /// Store the weights in half precision (half the size; brs format only).
    #[arg(long)]
    pub(crate) half: bool,
    /// brs (a directory brs-serve loads) or onnx (a model for any ONNX runtime).
    #[arg(long, value_enum, default_value = "brs")]
    pub(crate) format: ExportFormat,
    /// onnx: put the weights in a data file beside the model even when they would fit in it
    /// (they always go there above protobuf's 2 GiB limit).
    #[arg(long)]
    pub(crate) external_data: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SummaryArgs {
    #[arg(long)]
    pub(crate) config: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The official code's checkpoint (a dict of the six state_dicts).
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Run directory for the converted checkpoint.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// img_size of a light model (its shapes do not reveal it; a full model's do).
    #[arg(long, default_value_t = 256)]
    pub(crate) img_size: i64,
}

#[derive(Debug, Args)]
pub(crate) struct ImportTfArgs {
    /// The directory the official code saves into (it follows the `checkpoint` file), a
    /// directory of several steps (the newest unless --step), or a checkpoint prefix
    /// (`.../UGATIT.model-1000001` for `UGATIT.model-1000001.index` and its data shards).
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Run directory for the converted checkpoint.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// The step to import from a directory holding several.
    #[arg(long)]
    pub(crate) step: Option<u64>,
    /// img_size of a light model (its shapes do not reveal it; a full model's do).
    #[arg(long, default_value_t = 256)]
    pub(crate) img_size: i64,
    /// AdaLIN smoothing (a graph setting, not a variable). Default: what the official directory
    /// name says (`..._sn_smoothing`), else true, the official default.
    #[arg(long)]
    pub(crate) smoothing: Option<bool>,
    /// Refuse the checkpoint unless it is a light (true) or full (false) model.
    #[arg(long)]
    pub(crate) light: Option<bool>,
    /// For a checkpoint of the generators alone (no discriminators, as forks that save for
    /// inference write it): the generator to write as a serving export, a2b (the default) or
    /// b2a. A whole model is imported for training with both directions and takes no direction.
    #[arg(long)]
    pub(crate) direction: Option<Direction>,
}

impl Command {
    /// Whether this is `train`, which sets up its own process (see main).
    pub(crate) fn trains(&self) -> bool {
        matches!(self, Command::Train(_))
    }
}

/// Runs one subcommand.
pub(crate) fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => run_train(args),
        Command::Translate(args) => run_translate(args),
        Command::Evaluate(args) => run_evaluate(args),
        Command::Export(args) => run_export(args),
        Command::Summary(args) => run_summary(args),
        Command::ImportPytorch(args) => run_import(args),
        Command::ImportTf(args) => run_import_tf(args),
    }
}

fn run_train(args: TrainArgs) -> Result<()> {
    let mut sets = args.set;
    if let Some(device) = args.device {
        sets.push(format!("device={:?}", device.to_string()));
    }
    let config = TrainConfig::load(&args.config, &sets)?;
    // Before any thread starts (see main): one malloc arena per training thread.
    brs_model::alloc::reexec_with_tuned_malloc(brs_model::alloc::Profile::Training {
        threads: config.replicas,
    });
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first signal asks for a clean stop (checkpoint, then exit); a second one while
        // saving exits at once.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .context("installing the signal handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the signal handler")?;
    }
    let opts = TrainOptions {
        config,
        data: args.data,
        out: args.out,
        resume: args.resume,
        stop_at: args.stop_at,
        max_minutes: args.max_minutes,
    };
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let summary = train(&opts, &stop, &mut progress);
    progress.finish();
    let summary = summary?;
    let ckpt = summary
        .checkpoint
        .as_ref()
        .map_or_else(|| "none written".to_string(), |p| p.display().to_string());
    if let Some(why) = summary.early_stop {
        let why = match why {
            EarlyStop::Signal => "on a signal".to_string(),
            EarlyStop::StopAt => "as --stop-at says".to_string(),
            EarlyStop::TimeBudget => format!(
                "at the time budget of {} min ({:.3} s/it)",
                opts.max_minutes.unwrap_or_default(),
                summary.sec_per_it
            ),
        };
        say!(
            "stopped at iteration {} {why}; checkpoint: {ckpt}; continue with --resume",
            summary.iteration
        )?;
    } else {
        say!(
            "done: {} iterations ({} in this run, {:.3} s/it); checkpoint: {ckpt}",
            summary.iteration,
            summary.ran,
            summary.sec_per_it
        )?;
    }
    Ok(())
}

fn run_translate(args: TranslateArgs) -> Result<()> {
    let (translator, _) = args.generator.load()?;
    let bar = bar(
        std::io::stderr().is_terminal(),
        0,
        "[{bar:30}] {pos}/{len} {per_sec} ETA {eta}",
    );
    let summary = brs_train::translate::translate(
        &translator,
        &args.input,
        &args.output,
        args.generator.batch,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    );
    bar.finish_and_clear();
    let summary = summary?;
    for (path, reason) in &summary.skipped {
        eprintln!("skipped {}: {reason}", path.display());
    }
    let said = say!(
        "translated {} images into {} ({} skipped as unreadable)",
        summary.written.len(),
        args.output.display(),
        summary.skipped.len()
    );
    // A closed stdout must not turn a run that translated nothing into a quiet success.
    if summary.written.is_empty() {
        anyhow::bail!("no image in {} could be translated", args.input.display());
    }
    said
}

fn run_evaluate(args: EvaluateArgs) -> Result<()> {
    let (translator, device) = args.generator.load()?;
    let size = translator.config().img_size as u32;
    let pairs = brs_train::evaluate::load_pairs(&args.input, &args.target, size)?;
    let e = brs_train::evaluate::score(&pairs, args.generator.batch, |x| {
        Ok(translator.translate(&x.to_device(device))?)
    })?;
    if args.json {
        say!("{}", serde_json::to_string(&e)?)?;
        return Ok(());
    }
    for (path, reason) in &e.skipped {
        eprintln!("skipped {}: {reason}", path.display());
    }
    say!(
        "{} held-out pairs, mean L1 error against the target ([-1, 1] scale): translation \
         {:.4}, identity {:.4}; ratio {:.2}",
        e.pairs,
        e.translation_error,
        e.identity_error,
        e.ratio
    )?;
    let meaning = if e.ratio < 1.0 {
        format!(
            "the translation is {:.0}% closer to the target than the input is",
            (1.0 - e.ratio) * 100.0
        )
    } else {
        "the translation is no closer to the target than the input: the model has not learned \
         the mapping yet"
            .to_string()
    };
    say!(
        "(the ratio is the translation's error over the error of returning the input unchanged: \
         0 would be the target exactly, 1 no better than a copy; {:.2} means {meaning})",
        e.ratio
    )?;
    Ok(())
}

fn run_export(args: ExportArgs) -> Result<()> {
    match args.format {
        ExportFormat::Brs if args.external_data => {
            anyhow::bail!("--external-data applies to --format onnx only")
        }
        ExportFormat::Onnx if args.half => anyhow::bail!(
            "--half applies to --format brs only: the ONNX model stores and computes in float32 \
             (it can be exported from a --half export)"
        ),
        ExportFormat::Onnx => return run_export_onnx(args),
        ExportFormat::Brs => {}
    }
    let ckpt = Checkpoint::open(&args.checkpoint)?;
    let dir = brs_model::translator::export(&ckpt, args.direction, &args.output, args.half)?;
    let size: u64 = Checkpoint::open(&dir)?
        .meta
        .files
        .values()
        .map(|f| f.bytes)
        .sum();
    let full: u64 = ckpt.meta.files.values().map(|f| f.bytes).sum();
    say!(
        "exported {} of {} (iteration {}) to {}: {:.1} MB (the checkpoint: {:.1} MB)",
        args.direction,
        ckpt.dir.display(),
        ckpt.meta.iteration,
        dir.display(),
        size as f64 / 1e6,
        full as f64 / 1e6
    )?;
    Ok(())
}

fn run_export_onnx(args: ExportArgs) -> Result<()> {
    let ckpt = Checkpoint::open(&args.checkpoint)?;
    let external = if args.external_data {
        ExternalData::Always
    } else {
        ExternalData::Auto
    };
    let written = brs_model::onnx::export(&ckpt, args.direction, &args.output, external)?;
    let cfg = &ckpt.meta.model;
    say!(
        "exported {} of {} (iteration {}) as ONNX (opset {}) to {}: {:.1} MB, {} parameters",
        args.direction,
        ckpt.dir.display(),
        ckpt.meta.iteration,
        brs_model::onnx::OPSET,
        written.model.display(),
        written.model_bytes as f64 / 1e6,
        written.parameters,
    )?;
    if let Some(data) = &written.data {
        say!(
            "  weights in {} ({:.1} MB): keep it beside the model",
            data.display(),
            written.data_bytes as f64 / 1e6
        )?;
    }
    let s = cfg.img_size;
    say!(
        "  input `{}`: float32 [batch, {}, {s}, {s}] in [-1, 1]; outputs `{}` (same shape and \
         range), `{}` [batch, 2], `{}` [batch, 1, {}, {}]",
        brs_model::onnx::INPUT,
        cfg.img_ch,
        brs_model::onnx::OUTPUT_IMAGE,
        brs_model::onnx::OUTPUT_CAM,
        brs_model::onnx::OUTPUT_HEATMAP,
        cfg.bottleneck(),
        cfg.bottleneck(),
    )?;
    Ok(())
}

fn run_summary(args: SummaryArgs) -> Result<()> {
    let config = TrainConfig::load(&args.config, &args.set)?;
    let model = config.model();
    say!(
        "img_size {} ch {} n_res {} light {}",
        model.img_size,
        model.ch,
        model.n_res,
        model.light
    )?;
    for (name, count) in brs_model::networks::parameter_counts(&model)? {
        say!(
            "{name:>22}: {count:>13}  ({:.1} MiB fp32)",
            count as f64 * 4.0 / 1048576.0
        )?;
    }
    Ok(())
}

fn run_import_tf(args: ImportTfArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let opts = brs_model::import_tf::TfImportOptions {
        step: args.step,
        light_img_size: Some(args.img_size),
        smoothing: args.smoothing,
        light: args.light,
        direction: args.direction,
    };
    let report = brs_model::import_tf::import_tensorflow(&args.input, &args.output, &opts)
        .with_context(|| format!("importing {}", args.input.display()))?;
    let m = &report.config;
    say!(
        "imported {} (step {}) as {}",
        report.prefix.display(),
        report.iteration,
        report.output.display()
    )?;
    say!(
        "  tensorflow flavour, {} model: img_size {} ch {} n_res {}, smoothing {} ({})",
        if m.light { "light" } else { "full" },
        m.img_size,
        m.ch,
        m.n_res,
        m.smoothing,
        report.smoothing_from
    )?;
    say!(
        "  {} variables{}, in {:.1} s",
        report.variables,
        if report.moments > 0 {
            format!(
                " and {} Adam moments (training resumes with them)",
                report.moments
            )
        } else if let Some(direction) = report.generators_only {
            format!(
                " (the generators alone: a serving export of {direction}, which cannot be \
                 trained further)"
            )
        } else {
            " (no Adam moments: training would start Adam afresh)".to_string()
        },
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

fn run_import(args: ImportArgs) -> Result<()> {
    let dir = brs_model::import::import_pytorch(&args.input, &args.output, args.img_size)?;
    let meta = Checkpoint::open(&dir)?.meta;
    say!(
        "imported {} as {} (img_size {} ch {} n_res {} light {})",
        args.input.display(),
        dir.display(),
        meta.model.img_size,
        meta.model.ch,
        meta.model.n_res,
        meta.model.light
    )?;
    Ok(())
}
