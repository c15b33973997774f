//! A crop run over a folder of bad and unusual inputs finishes with every input accounted for in
//! the summary, each skipped one with its reason.

use brs_testkit::images::{pillow_files, png_bomb};
use brs_testkit::setup::fixture;

use crate::helpers::{bin, tempdir};

#[test]
fn a_crop_run_over_bad_inputs_counts_every_one() {
    let dir = tempdir();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    pillow_files(&input);
    std::fs::copy(fixture("astronaut.png"), input.join("astronaut.png")).expect("copy");
    std::fs::write(input.join("empty.png"), b"").expect("write");
    std::fs::write(input.join("notes.jpg"), b"not a picture at all").expect("write");
    let png = std::fs::read(fixture("astronaut.png")).expect("read");
    std::fs::write(input.join("truncated.png"), &png[..png.len() / 3]).expect("write");
    let jpg = std::fs::read(fixture("grace_hopper.jpg")).expect("read");
    std::fs::write(input.join("truncated.jpg"), &jpg[..jpg.len() * 2 / 3]).expect("write");
    std::fs::write(input.join("bomb.png"), png_bomb(100_000, 100_000)).expect("write");
    let out = dir.path().join("out");
    let run = bin()
        .args(["crop", "--quiet", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .output()
        .expect("run brs-dataset");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("json");
    let reasons = &summary["skip_reasons"];
    assert_eq!(summary["inputs"], 11);
    assert_eq!(summary["crops_written"], 1, "{summary}");
    assert_eq!(reasons["empty"], 1, "{summary}");
    assert_eq!(reasons["undecodable"], 1, "{summary}");
    assert_eq!(reasons["corrupt"], 2, "{summary}");
    assert_eq!(reasons["too_many_pixels"], 1, "{summary}");
    assert_eq!(reasons["animated"], 2, "{summary}");
    // The decodable non-faces (cmyk, palette, still webp) are "no_face", not errors.
    assert_eq!(reasons["no_face"], 3, "{summary}");
    let manifest = std::fs::read_to_string(out.join("manifest.jsonl")).expect("manifest");
    assert_eq!(manifest.lines().count(), 11);

    // A folder where every input fails: exit code 1 and the reason on stderr.
    let junk = dir.path().join("junk");
    std::fs::create_dir_all(&junk).expect("mkdir");
    std::fs::write(junk.join("a.png"), b"").expect("write");
    std::fs::write(junk.join("b.txt"), b"text").expect("write");
    let run = bin()
        .args(["crop", "--quiet", "--input"])
        .arg(&junk)
        .arg("--output")
        .arg(dir.path().join("o2"))
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("every one of the 2 inputs failed"));

    // The same with a reader that went away (`| head`): still exit 1 and the reason, no panic.
    let run = brs_testkit::output_into_closed_pipe(
        bin()
            .args(["crop", "--quiet", "--input"])
            .arg(&junk)
            .arg("--output")
            .arg(dir.path().join("o3")),
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("every one of the 2 inputs failed") && !err.contains("panicked"),
        "{err}"
    );
}
