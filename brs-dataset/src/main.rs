//! brs-dataset: the command line over the library (parsing and printing only).
//!
//! Exit codes: 0 done (individual inputs may have been skipped; see the summary), 1 every input
//! failed, 2 usage or setup error (bad flags, missing folders, ONNX Runtime or model not found).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use brs_dataset::filters::FilterConfig;
use brs_dataset::mapping::Mapping;
use brs_dataset::photoset::PhotoSetSpec;
use brs_dataset::run::CropRun;
use brs_image::crop::{CropConfig, Pad};
use brs_image::detect::yolo::Layout;
use brs_image::detect::{DetectorKind, DetectorPool, DetectorSpec, init_onnxruntime};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "brs-dataset",
    version,
    about = "Face-crop datasets for brs-train"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Detect faces in a folder of photos and write square crops, manifest.jsonl and summary.json.
    Crop(CropArgs),
    /// Split a folder of crops into trainA/testA (or B) with a seeded shuffle.
    Split(SplitArgs),
    /// Write a PNG contact sheet with face boxes and crop squares drawn.
    Preview(PreviewArgs),
    /// Generate the two synthetic domains (photo-like A, cartoon B) as trainA/trainB/testA/testB.
    Synth(SynthArgs),
    /// Make an unpaired set from a few photos: A random crops, B a known rendering of other crops,
    /// held-out photos as paired testA/testB.
    Photoset(PhotosetArgs),
    /// Render each image of a folder with a known mapping (e.g. the demo's cartoon style).
    Render(RenderArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Centerface,
    Yolo,
}

#[derive(Clone, Copy, ValueEnum)]
enum YoloLayoutArg {
    V5face,
    V8,
    V8pose,
    E2e,
}

#[derive(Args)]
struct DetectorArgs {
    /// Detector family.
    #[arg(long, value_enum, default_value = "centerface")]
    detector: Kind,
    /// ONNX model file (default for centerface: the one scripts/setup prepared, or BRS_CENTERFACE_MODEL).
    #[arg(long)]
    model: Option<PathBuf>,
    /// libonnxruntime.so to load (default: ORT_DYLIB_PATH, else the path scripts/setup recorded).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// Detector score threshold (default 0.5 centerface, 0.25 yolo).
    #[arg(long)]
    conf: Option<f32>,
    /// NMS IoU threshold (default 0.3 centerface, 0.45 yolo).
    #[arg(long)]
    iou: Option<f32>,
    /// Network input side (centerface: longest side cap; yolo: side for dynamic-input models). Default 640.
    #[arg(long)]
    input_size: Option<u32>,
    /// Force a YOLO output layout instead of recognising it from the output shape.
    #[arg(long, value_enum)]
    yolo_layout: Option<YoloLayoutArg>,
}

impl DetectorArgs {
    fn spec(&self) -> Result<DetectorSpec> {
        init_onnxruntime(self.onnxruntime.as_deref())?;
        Ok(DetectorSpec {
            kind: match self.detector {
                Kind::Centerface => DetectorKind::Centerface,
                Kind::Yolo => DetectorKind::Yolo,
            },
            model: self.model.clone(),
            conf_threshold: self.conf,
            iou_threshold: self.iou,
            input_size: self.input_size,
            yolo_layout: self.yolo_layout.map(|l| match l {
                YoloLayoutArg::V5face => Layout::V5face,
                YoloLayoutArg::V8 => Layout::V8,
                YoloLayoutArg::V8pose => Layout::V8pose,
                YoloLayoutArg::E2e => Layout::E2e,
            }),
            threads: 1,
        })
    }
}

#[derive(Args)]
struct FramingArgs {
    /// Crop side in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Margins as TOP,BOTTOM,SIDE fractions of the face box (top/bottom of its height, each side of its width).
    #[arg(long, default_value = "0.8,0.3,0.3")]
    margin: String,
    /// Padding outside the photo: `reflect` or a colour `#rrggbb`.
    #[arg(long, default_value = "reflect")]
    pad: String,
}

impl FramingArgs {
    fn config(&self) -> Result<CropConfig> {
        let m: Vec<f32> = self
            .margin
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .with_context(|| {
                format!(
                    "--margin {:?}: expected TOP,BOTTOM,SIDE numbers",
                    self.margin
                )
            })?;
        let [top, bottom, side] = m[..] else {
            bail!(
                "--margin {:?}: expected three numbers TOP,BOTTOM,SIDE",
                self.margin
            )
        };
        let pad = match self.pad.as_str() {
            "reflect" => Pad::Reflect,
            c => {
                let hex = c.strip_prefix('#').unwrap_or(c);
                let v = u32::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 6);
                let Some(v) = v else {
                    bail!("--pad {c:?}: expected reflect or #rrggbb")
                };
                Pad::Color([(v >> 16) as u8, (v >> 8) as u8, v as u8])
            }
        };
        let cfg = CropConfig {
            size: self.size,
            margin_top: top,
            margin_bottom: bottom,
            margin_side: side,
            pad,
        };
        cfg.validate().context("--margin/--size")?;
        Ok(cfg)
    }
}

#[derive(Args)]
struct CropArgs {
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    detector: DetectorArgs,
    #[command(flatten)]
    framing: FramingArgs,
    /// Crop every face instead of only the largest one per photo.
    #[arg(long)]
    all_faces: bool,
    /// Minimum face box side in pixels.
    #[arg(long, default_value_t = 48.0)]
    min_face: f32,
    /// Minimum detector score for a crop.
    #[arg(long, default_value_t = 0.5)]
    min_score: f32,
    /// Minimum variance of the Laplacian of the crop (0 disables the blur filter).
    #[arg(long, default_value_t = 15.0)]
    min_sharpness: f64,
    /// Near-duplicate distance in dHash bits (of 64).
    #[arg(long, default_value_t = 5)]
    dedup_distance: u32,
    /// Keep near-duplicates.
    #[arg(long)]
    no_dedup: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct SplitArgs {
    #[arg(long)]
    input: PathBuf,
    /// Dataset root; train{DOMAIN} and test{DOMAIN} are created inside.
    #[arg(long)]
    output: PathBuf,
    /// A or B.
    #[arg(long, default_value = "A", value_parser = ["A", "B"])]
    domain: String,
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct PreviewArgs {
    #[arg(long)]
    input: PathBuf,
    /// PNG file to write.
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    detector: DetectorArgs,
    #[command(flatten)]
    framing: FramingArgs,
    /// How many inputs (in name order) to show.
    #[arg(long, default_value_t = 16)]
    limit: usize,
    /// Tile side in pixels.
    #[arg(long, default_value_t = 256)]
    thumb: u32,
}

#[derive(Args)]
struct SynthArgs {
    /// Dataset root; trainA, trainB, testA, testB are created inside.
    #[arg(long)]
    output: PathBuf,
    /// Training images per domain.
    #[arg(long, default_value_t = 200)]
    count: u64,
    /// Held-out test images per domain.
    #[arg(long, default_value_t = 20)]
    test_count: u64,
    #[arg(long, default_value_t = 128)]
    size: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct PhotosetArgs {
    /// Folder of photos.
    #[arg(long)]
    input: PathBuf,
    /// Dataset root; trainA, trainB, testA, testB are created inside.
    #[arg(long)]
    output: PathBuf,
    /// A photo (file name in --input) kept out of training for the test folders (repeatable).
    #[arg(long, required = true)]
    holdout: Vec<String>,
    /// The rendering that makes domain B: cartoon, warm, tone or blur.
    #[arg(long, default_value = "cartoon")]
    mapping: Mapping,
    /// Training images per domain.
    #[arg(long, default_value_t = 200)]
    count: u64,
    /// Test crops per held-out photo.
    #[arg(long, default_value_t = 4)]
    test_count: u64,
    /// The model's image size: test images are this size, training images 30 pixels larger (the
    /// margin brs-train's loader crops from).
    #[arg(long, default_value_t = 128)]
    size: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct RenderArgs {
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value = "cartoon")]
    mapping: Mapping,
    /// Resize to SIZE x SIZE before rendering (render at the size the model sees).
    #[arg(long)]
    size: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("brs-dataset: error: {e:#}");
            eprintln!("brs-dataset: exit 2 (usage or setup error)");
            ExitCode::from(2)
        }
    }
}

/// Prints a command's summary. A reader that went away (`| head`) is not a failure: the work is
/// done and the exit code still says how it went, where `println!` would have panicked.
fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("writing the summary to stdout"),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Crop(a) => {
            if let Some(t) = a.threads {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t.max(1))
                    .build_global()?;
            }
            let job = CropRun {
                input: a.input.clone(),
                output: a.output.clone(),
                detector: a.detector.spec()?,
                crop: a.framing.config()?,
                filters: FilterConfig {
                    min_face: a.min_face,
                    min_score: a.min_score,
                    min_sharpness: a.min_sharpness,
                    max_duplicate_distance: (!a.no_dedup).then_some(a.dedup_distance),
                },
                all_faces: a.all_faces,
                progress: !a.quiet,
            };
            let summary = job.run()?;
            print_json(&summary)?;
            if summary.all_failed() {
                eprintln!(
                    "brs-dataset: exit 1: every one of the {} inputs failed (see skip_reasons)",
                    summary.processed
                );
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Split(a) => print_json(&brs_dataset::split::split(
            &a.input,
            &a.output,
            &a.domain,
            a.test_fraction,
            a.seed,
        )?)?,
        Cmd::Preview(a) => {
            let pool = DetectorPool::new(a.detector.spec()?)?;
            let s = brs_dataset::preview::preview(
                &a.input,
                &a.output,
                &pool,
                &a.framing.config()?,
                a.limit,
                a.thumb,
            )?;
            print_json(&s)?;
        }
        Cmd::Synth(a) => {
            if !(8..=2048).contains(&a.size) {
                bail!("--size must be between 8 and 2048");
            }
            let s =
                brs_dataset::synth::write_dataset(&a.output, a.count, a.test_count, a.size, a.seed)
                    .with_context(|| format!("writing {}", a.output.display()))?;
            print_json(&s)?;
        }
        Cmd::Photoset(a) => {
            let s = brs_dataset::photoset::write_photoset(&PhotoSetSpec {
                input: a.input,
                output: a.output,
                holdout: a.holdout,
                mapping: a.mapping,
                train_count: a.count,
                test_per_photo: a.test_count,
                train_size: a.size.saturating_add(30),
                test_size: a.size,
                seed: a.seed,
            })?;
            print_json(&s)?;
        }
        Cmd::Render(a) => {
            if a.size.is_some_and(|s| !(8..=2048).contains(&s)) {
                bail!("--size must be between 8 and 2048");
            }
            let s = brs_dataset::mapping::render_folder(&a.input, &a.output, a.mapping, a.size)
                .with_context(|| {
                    format!(
                        "rendering {} into {}",
                        a.input.display(),
                        a.output.display()
                    )
                })?;
            print_json(&s)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
