//! The TensorFlow flavour against TensorFlow itself: `tf_ugatit.py`, our port of the authors'
//! TensorFlow graph with its variable names, saves random weights the way the official code
//! does and runs them; brs imports the checkpoint and must compute the same images, CAM logits
//! and discriminator outputs. Then each way an import can fail.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use brs_model::checkpoint::{Checkpoint, CheckpointKind, OPTIM_FILE};
use brs_model::config::Flavour;
use brs_model::import_tf::{TfImportOptions, import_tensorflow};
use brs_model::{Direction, Networks, Translator};
use brs_testkit::tfport;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// What the port wrote: its directory and parity.json.
struct Port {
    dir: PathBuf,
    report: Value,
}

impl Port {
    /// `tf_ugatit.py forward ARGS`, run once per set of arguments and kept between test runs.
    fn run(args: &[&str]) -> Port {
        let mut all = vec!["forward"];
        all.extend_from_slice(args);
        let dir = tfport::run(Path::new(env!("CARGO_TARGET_TMPDIR")), &all);
        let report =
            serde_json::from_slice(&std::fs::read(dir.join("parity.json")).unwrap()).unwrap();
        Port { dir, report }
    }

    fn prefix(&self) -> PathBuf {
        self.dir
            .join(self.report["checkpoint_prefix"].as_str().unwrap())
    }

    /// The official checkpoint root (`checkpoint/`, holding one model directory).
    fn root(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }

    fn array(&self, name: &str) -> Tensor {
        tfport::array(&self.dir, &self.report["arrays"][name])
    }
}

/// The full model at 96 px (the smallest the 7-layer global discriminator runs at), ch 8,
/// saved with Adam's slots as a training run saves it.
fn full() -> &'static Port {
    static PORT: OnceLock<Port> = OnceLock::new();
    PORT.get_or_init(|| Port::run(&["--ch", "8", "--img", "96", "--adam"]))
}

/// The light model without smoothing.
fn light() -> &'static Port {
    static PORT: OnceLock<Port> = OnceLock::new();
    PORT.get_or_init(|| Port::run(&["--ch", "8", "--img", "96", "--light", "--no-smoothing"]))
}

fn import(input: &Path, opts: &TfImportOptions) -> (tempfile::TempDir, PathBuf) {
    let out = brs_testkit::tempdir("brs-import-tf-");
    let run = out.path().join("run");
    let report = import_tensorflow(input, &run, opts).unwrap();
    assert_eq!(report.output.parent().unwrap(), run);
    (out, run)
}

/// Largest absolute difference, in units of the [-1, 1] range's 2/255 grey levels.
fn grey_levels(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[]) * 255.0 / 2.0
}

fn check_generators(port: &Port, run: &Path) {
    for (direction, input, output) in [(Direction::A2B, "a", "a2b"), (Direction::B2A, "b", "b2a")] {
        let translator = Translator::load(run, direction, Device::Cpu).unwrap();
        let out = translator.forward(&port.array(input)).unwrap();
        let image = grey_levels(&out.image, &port.array(output));
        let cam = (&out.cam_logit - port.array(&format!("{output}_cam")))
            .abs()
            .max()
            .double_value(&[]);
        eprintln!("{direction}: image max diff {image:.4} grey levels, cam {cam:.2e}");
        // The bound is 2/255; float32 summation order leaves far less.
        assert!(
            image <= 0.5,
            "{direction}: {image} grey levels from TensorFlow"
        );
        assert!(cam <= 1e-3, "{direction}: CAM logits differ by {cam}");
    }
}

#[test]
fn the_full_model_translates_as_tensorflow_does_both_ways() {
    let port = full();
    // The official checkpoint root: the importer enters its one model directory and follows
    // its `checkpoint` file.
    let (_tmp, run) = import(&port.root(), &TfImportOptions::default());
    let ckpt = Checkpoint::open(&run).unwrap();
    let m = &ckpt.meta.model;
    assert_eq!(m.flavour, Flavour::Tensorflow);
    assert_eq!(
        (m.img_size, m.ch, m.n_res, m.light, m.smoothing),
        (96, 8, 4, false, true)
    );
    assert_eq!(ckpt.meta.iteration, 1000);
    check_generators(port, &run);
}

#[test]
fn the_light_model_without_smoothing_translates_as_tensorflow_does() {
    let port = light();
    let opts = TfImportOptions {
        light_img_size: Some(96),
        ..TfImportOptions::default()
    };
    let (_tmp, run) = import(&port.prefix(), &opts);
    let m = Checkpoint::open(&run).unwrap().meta.model;
    assert_eq!((m.light, m.smoothing), (true, false), "{m:?}");
    check_generators(port, &run);
}

#[test]
fn a_checkpoint_of_the_generators_alone_becomes_a_serving_export() {
    let port = Port::run(&["--ch", "8", "--img", "96", "--generators-only"]);
    for (direction, input, output) in [(Direction::A2B, "a", "a2b"), (Direction::B2A, "b", "b2a")] {
        let opts = TfImportOptions {
            direction: Some(direction),
            ..TfImportOptions::default()
        };
        let out = brs_testkit::tempdir("brs-import-tf-");
        let run = out.path().join("run");
        let report = import_tensorflow(&port.prefix(), &run, &opts).unwrap();
        assert_eq!(report.generators_only, Some(direction));
        let meta = Checkpoint::open(&run).unwrap().meta;
        assert_eq!(meta.kind, CheckpointKind::Export);
        assert_eq!(meta.direction, Some(direction));
        let translator = Translator::load(&run, direction, Device::Cpu).unwrap();
        let image = translator.forward(&port.array(input)).unwrap().image;
        let diff = grey_levels(&image, &port.array(output));
        assert!(
            diff <= 0.5,
            "{direction}: {diff} grey levels from TensorFlow"
        );
    }
    // Without a direction: A->B, the release's selfie to anime.
    let (_tmp, run) = import(&port.prefix(), &TfImportOptions::default());
    let meta = Checkpoint::open(&run).unwrap().meta;
    assert_eq!(meta.direction, Some(Direction::A2B));
    // A whole model has both directions and trains: a direction is a mistake there.
    let err = import_error(
        &full().prefix(),
        &TfImportOptions {
            direction: Some(Direction::A2B),
            ..TfImportOptions::default()
        },
    );
    assert!(err.contains("generators alone"), "{err}");
}

/// The imported discriminators against TensorFlow's outputs (from the saved u, refined once).
fn check_discriminators(port: &Port, run: &Path) {
    let ckpt = Checkpoint::open(run).unwrap();
    let nets = Networks::new(&ckpt.meta.model, Device::Cpu).unwrap();
    nets.load_from(&ckpt).unwrap();
    let (a, b) = (port.array("a"), port.array("b"));
    for (d, x, name) in [
        (&nets.dis_ga, &a, "dis_a_global"),
        (&nets.dis_la, &a, "dis_a_local"),
        (&nets.dis_gb, &b, "dis_b_global"),
        (&nets.dis_lb, &b, "dis_b_local"),
    ] {
        // Not training: TensorFlow's outputs come from the saved u, refined once.
        let out = tch::no_grad(|| d.forward(x, false));
        let logit = &port.array(name);
        let scale = logit.abs().max().double_value(&[]).max(1.0);
        let diff = (&out.logit - logit).abs().max().double_value(&[]);
        let cam = (&out.cam_logit - port.array(&format!("{name}_cam")))
            .abs()
            .max()
            .double_value(&[]);
        eprintln!("{name}: logit diff {diff:.2e} (scale {scale:.2}), cam {cam:.2e}");
        assert!(
            diff / scale < 1e-4 && cam / scale < 1e-4,
            "{name}: {diff} {cam}"
        );
    }
}

#[test]
fn the_discriminators_judge_as_tensorflow_does() {
    let port = full();
    let (_tmp, run) = import(&port.prefix(), &TfImportOptions::default());
    check_discriminators(port, &run);
}

#[test]
fn another_discriminator_depth_is_read_from_the_shapes() {
    // n_dis 5: a 6-layer global and a 4-layer local discriminator.
    let port = Port::run(&["--ch", "8", "--img", "96", "--light", "--n-dis", "5"]);
    let opts = TfImportOptions {
        light_img_size: Some(96),
        ..TfImportOptions::default()
    };
    let (_tmp, run) = import(&port.prefix(), &opts);
    let m = Checkpoint::open(&run).unwrap().meta.model;
    assert_eq!(
        (m.n_dis, m.global_d_layers(), m.local_d_layers()),
        (5, 6, 4)
    );
    check_discriminators(&port, &run);
    check_generators(&port, &run);
}

#[test]
fn adam_slots_become_the_optimizers_moments() {
    let port = full();
    let (_tmp, run) = import(&port.prefix(), &TfImportOptions::default());
    let ckpt = Checkpoint::open(&run).unwrap();
    let optim = ckpt.read_tensors(OPTIM_FILE).unwrap();
    // Two moments per trainable variable of both optimizers, and the two step counts.
    let nets = Networks::new(&ckpt.meta.model, Device::Cpu).unwrap();
    let trainable: usize = nets
        .stores()
        .map(|(_, vs)| vs.trainable_variables().len())
        .sum();
    assert_eq!(optim.len(), 2 * trainable + 2);
    // tf_ugatit.py's ADAM_STEPS, read back from each optimizer's beta2 power.
    for step in ["G/step", "D/step"] {
        assert_eq!(optim[step].int64_value(&[0]), 7, "{step}");
    }
    // A moment holds the slot's values in our layout: not all zero, right shape.
    let m = &optim["G/genA2B.encoder.conv_in.conv.weight/m"];
    assert_eq!(m.size(), [8, 3, 7, 7]);
    assert!(m.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    // A light run saved without slots has no optimizer file: training starts Adam afresh.
    let opts = TfImportOptions {
        light_img_size: Some(96),
        ..TfImportOptions::default()
    };
    let (_tmp2, run2) = import(&light().prefix(), &opts);
    assert!(
        !Checkpoint::open(&run2)
            .unwrap()
            .meta
            .files
            .contains_key(OPTIM_FILE)
    );
}

/// The error of importing `input`, after checking that nothing was written.
fn import_error(input: &Path, opts: &TfImportOptions) -> String {
    let out = brs_testkit::tempdir("brs-import-tf-err-");
    let run = out.path().join("run");
    let err = import_tensorflow(input, &run, opts)
        .unwrap_err()
        .to_string();
    assert!(
        !run.join(brs_model::checkpoint::LATEST).exists(),
        "a failed import wrote a checkpoint"
    );
    err
}

fn data_shard(prefix: &Path) -> PathBuf {
    let name = prefix.file_name().unwrap().to_str().unwrap();
    std::fs::read_dir(prefix.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{name}.data-"))
        })
        .unwrap()
}

#[test]
fn a_light_full_mismatch_is_refused_by_name() {
    let opts = TfImportOptions {
        light: Some(true),
        ..TfImportOptions::default()
    };
    let err = import_error(&full().prefix(), &opts);
    assert!(
        err.contains("light") && err.contains("full model") && err.contains("--light"),
        "{err}"
    );
}

#[test]
fn damaged_checkpoints_are_clear_errors() {
    // A data shard cut short.
    let (_tmp, prefix) = tfport::copy_checkpoint(&full().prefix());
    let shard = data_shard(&prefix);
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = import_error(&prefix, &TfImportOptions::default());
    assert!(err.contains(&shard.display().to_string()), "{err}");

    // One byte of a tensor flipped: its checksum no longer matches.
    let (_tmp, prefix) = tfport::copy_checkpoint(&full().prefix());
    let shard = data_shard(&prefix);
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&shard, bytes).unwrap();
    let err = import_error(&prefix, &TfImportOptions::default());
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn a_pytorch_file_or_another_model_is_named_for_what_it_is() {
    let tmp = brs_testkit::tempdir("brs-import-tf-pt-");
    let pt = tmp.path().join("selfie2anime_params_0100000.pt");
    // A zip, as torch.save writes.
    std::fs::write(&pt, b"PK\x03\x04 not a tensorflow index").unwrap();
    let err = import_error(&pt, &TfImportOptions::default());
    assert!(err.contains("not a TensorFlow bundle"), "{err}");

    // A directory without a checkpoint.
    let err = import_error(tmp.path(), &TfImportOptions::default());
    assert!(err.contains("checkpoint"), "{err}");
}

#[test]
fn unknown_and_missing_variables_are_listed_and_nothing_is_written() {
    let port = Port::run(&[
        "--ch",
        "8",
        "--img",
        "96",
        "--extra-variable",
        "generator_B/attention/kernel",
        "--drop-variable",
        "discriminator_A/local/conv_1/bias",
    ]);
    let err = import_error(&port.prefix(), &TfImportOptions::default());
    assert!(
        err.contains("1 unknown, 1 missing")
            && err.contains("generator_B/attention/kernel")
            && err.contains("disLA body.conv1.bias"),
        "{err}"
    );
}

#[test]
fn a_step_is_chosen_from_a_directory_of_several() {
    // Two saves in one model directory: --step picks either, the default follows `checkpoint`.
    let first = Port::run(&["--ch", "8", "--img", "96", "--light", "--step", "5"]);
    let dir = first.prefix().parent().unwrap().to_path_buf();
    let tmp = brs_testkit::tempdir("brs-import-tf-steps-");
    for item in std::fs::read_dir(&dir).unwrap() {
        let item = item.unwrap();
        let name = item.file_name().into_string().unwrap();
        std::fs::copy(item.path(), tmp.path().join(&name)).unwrap();
        if let Some(rest) = name.strip_prefix("UGATIT_light.model-5.") {
            let again = format!("UGATIT_light.model-9.{rest}");
            std::fs::copy(item.path(), tmp.path().join(again)).unwrap();
        }
    }
    let opts = |step| TfImportOptions {
        step,
        light_img_size: Some(96),
        ..TfImportOptions::default()
    };
    let (_a, run) = import(tmp.path(), &opts(Some(9)));
    assert_eq!(Checkpoint::open(&run).unwrap().meta.iteration, 9);
    // The copied `checkpoint` file still names step 5.
    let (_b, run) = import(tmp.path(), &opts(None));
    assert_eq!(Checkpoint::open(&run).unwrap().meta.iteration, 5);
    let err = import_error(tmp.path(), &opts(Some(7)));
    assert!(err.contains('7') && err.contains("5, 9"), "{err}");
}
