//! A crop run over a folder: parallel, deterministic, resumable, with a manifest and a summary.
//!
//! Inputs are listed and sorted, then processed in chunks: decode, detect, crop, measure and PNG
//! encode in parallel (one detector per worker), then the duplicate check and the writes happen in
//! input order, so the result does not depend on thread timing. Every crop is written atomically
//! under a name derived from the input's relative path. After each input, one line goes to
//! `.journal.jsonl` in the output; a re-run (same settings) skips inputs found there and counts them
//! as `already_done`. `manifest.jsonl` (one record per input) and `summary.json` are rewritten
//! atomically at the end.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use brs_image::crop::{CropConfig, crop_face, crop_square};
use brs_image::decode::{DecodeLimits, decode_file};
use brs_image::detect::{DetectorPool, DetectorSpec, Face};
use crate::filters::{FilterConfig, dhash, hamming, sharpness};
use brs_image::files::{list_files, png_bytes, write_atomic};

/// Errors that stop a run (anything about one input is recorded and the run goes on).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Setup(String),
    // The cause is part of the message, so it is not also a `source()`: anyhow's `{:#}` at the
    // binary edge would print it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Detect(#[from] brs_image::detect::DetectError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |cause| RunError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Settings of a crop run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropRun {
    pub input: PathBuf,
    pub output: PathBuf,
    pub detector: DetectorSpec,
    #[serde(default)]
    pub crop: CropConfig,
    #[serde(default)]
    pub filters: FilterConfig,
    /// Every face (true) or only the largest one per photo (false, the default).
    #[serde(default)]
    pub all_faces: bool,
    #[serde(skip)]
    pub progress: bool,
}

/// The checks one face went through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    pub min_face: bool,
    pub min_score: bool,
    pub sharp: bool,
    pub unique: bool,
}

/// One face of one input in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceRecord {
    /// Crop file name in the output directory, if written.
    pub output: Option<String>,
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: Vec<[f32; 2]>,
    /// The square cut from the photo: x, y, side (may extend past the photo; padded).
    pub square: [i64; 3],
    pub sharpness: f64,
    pub dhash: String,
    pub checks: Checks,
    /// The first failed check, if any.
    pub skipped: Option<String>,
}

/// One input in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub source: String,
    /// `ok` (at least one crop written), `skipped` (nothing worth writing) or `failed` (unreadable).
    pub status: String,
    /// Why nothing was written: a decode error code, `no_face`, or the first failed face check.
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub faces: Vec<FaceRecord>,
    /// Fingerprint of the run settings that produced this record.
    pub settings: String,
}

/// Counts of a run, printed and written as summary.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub inputs: usize,
    pub already_done: usize,
    pub processed: usize,
    pub ok: usize,
    pub skipped: usize,
    pub failed: usize,
    pub crops_written: usize,
    /// Inputs and faces not turned into crops, per reason.
    pub skip_reasons: BTreeMap<String, usize>,
}

impl Summary {
    /// True when there was work and every processed input failed (a setup problem, likely).
    pub fn all_failed(&self) -> bool {
        self.processed > 0 && self.failed == self.processed
    }
}

const CHUNK: usize = 64;
const JOURNAL: &str = ".journal.jsonl";

struct Candidate {
    face: Face,
    square: (i64, i64, u32),
    sharpness: f64,
    hash: u64,
    png: Option<Vec<u8>>,
    failed: Option<&'static str>,
}

enum Outcome {
    Failed { code: String, detail: String },
    Faces(Vec<Candidate>),
}

/// A short, filesystem-safe, unique output stem for an input path.
pub fn output_stem(rel: &Path) -> String {
    let stem: String = rel
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let digest = Sha256::digest(rel.to_string_lossy().as_bytes());
    format!("{stem}-{}", &hex::encode(digest)[..8])
}

impl CropRun {
    fn fingerprint(&self) -> String {
        let key = serde_json::json!({
            "detector": self.detector, "crop": self.crop, "filters": self.filters, "all_faces": self.all_faces,
        });
        hex::encode(&Sha256::digest(key.to_string().as_bytes())[..8])
    }

    /// Runs the whole folder. Errors only for setup problems (unreadable folders, no detector).
    pub fn run(&self) -> Result<Summary, RunError> {
        if !self.input.is_dir() {
            return Err(RunError::Setup(format!(
                "input {} is not a directory",
                self.input.display()
            )));
        }
        std::fs::create_dir_all(&self.output).map_err(io_err(&self.output))?;
        let files = list_files(&self.input, Some(&self.output)).map_err(io_err(&self.input))?;
        let settings = self.fingerprint();
        let journal_path = self.output.join(JOURNAL);
        let mut records = read_journal(&journal_path, &settings);
        let mut summary = Summary {
            inputs: files.len(),
            ..Summary::default()
        };
        let pending: Vec<&PathBuf> = files
            .iter()
            .filter(|f| !records.contains_key(&f.to_string_lossy().into_owned()))
            .collect();
        summary.already_done = files.len() - pending.len();
        let mut kept: Vec<u64> = records
            .values()
            .flat_map(|r| r.faces.iter())
            .filter(|f| f.output.is_some())
            .filter_map(|f| u64::from_str_radix(&f.dhash, 16).ok())
            .collect();

        let pool = if pending.is_empty() {
            None
        } else {
            Some(DetectorPool::new(self.detector.clone())?)
        };
        let bar = if self.progress {
            indicatif::ProgressBar::new(pending.len() as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut journal = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io_err(&journal_path))?;
        if let Some(pool) = &pool {
            for chunk in pending.chunks(CHUNK) {
                let outcomes: Vec<Outcome> = chunk
                    .par_iter()
                    .map(|rel| self.process(pool, rel))
                    .collect();
                for (rel, outcome) in chunk.iter().zip(outcomes) {
                    let record = self.finish(rel, outcome, &mut kept, &settings)?;
                    let mut line = serde_json::to_string(&record)
                        .map_err(|e| RunError::Setup(e.to_string()))?;
                    line.push('\n');
                    journal
                        .write_all(line.as_bytes())
                        .map_err(io_err(&journal_path))?;
                    records.insert(record.source.clone(), record);
                    bar.inc(1);
                }
                journal.flush().map_err(io_err(&journal_path))?;
            }
        }
        bar.finish_and_clear();

        // Summarise the records of this folder's current inputs (a journal may hold removed ones).
        let current: Vec<&Record> = files
            .iter()
            .filter_map(|f| records.get(&*f.to_string_lossy()))
            .collect();
        summary.processed = pending.len();
        let is_new = |r: &&&Record| pending.iter().any(|p| p.to_string_lossy() == r.source);
        for r in current.iter().filter(is_new) {
            match r.status.as_str() {
                "ok" => summary.ok += 1,
                "failed" => summary.failed += 1,
                _ => summary.skipped += 1,
            }
        }
        for r in &current {
            summary.crops_written += r.faces.iter().filter(|f| f.output.is_some()).count();
            if r.faces.is_empty()
                && let Some(reason) = &r.reason
            {
                *summary.skip_reasons.entry(reason.clone()).or_default() += 1;
            }
            for f in &r.faces {
                if let Some(reason) = &f.skipped {
                    *summary.skip_reasons.entry(reason.clone()).or_default() += 1;
                }
            }
        }
        let mut manifest = String::new();
        for r in &current {
            manifest
                .push_str(&serde_json::to_string(r).map_err(|e| RunError::Setup(e.to_string()))?);
            manifest.push('\n');
        }
        let mpath = self.output.join("manifest.jsonl");
        write_atomic(&mpath, manifest.as_bytes()).map_err(io_err(&mpath))?;
        let spath = self.output.join("summary.json");
        let json =
            serde_json::to_vec_pretty(&summary).map_err(|e| RunError::Setup(e.to_string()))?;
        write_atomic(&spath, &json).map_err(io_err(&spath))?;
        Ok(summary)
    }

    /// Parallel part: everything about one input that does not depend on other inputs.
    fn process(&self, pool: &DetectorPool, rel: &Path) -> Outcome {
        let path = self.input.join(rel);
        let img = match decode_file(&path, &DecodeLimits::default()) {
            Ok(img) => img,
            Err(e) => {
                return Outcome::Failed {
                    code: e.code().into(),
                    detail: e.to_string(),
                };
            }
        };
        let faces = match pool.with(|d| d.detect(&img)) {
            Ok(Ok(f)) => f,
            Ok(Err(e)) | Err(e) => {
                return Outcome::Failed {
                    code: "detector_error".into(),
                    detail: e.to_string(),
                };
            }
        };
        let faces = if self.all_faces {
            faces
        } else {
            faces
                .into_iter()
                .max_by(|a, b| a.area().total_cmp(&b.area()))
                .into_iter()
                .collect()
        };
        let f = &self.filters;
        Outcome::Faces(
            faces
                .into_iter()
                .map(|face| {
                    let crop = crop_face(&img, &face, &self.crop);
                    let sharp = sharpness(&crop);
                    let failed = if face.width().min(face.height()) < f.min_face {
                        Some("too_small")
                    } else if face.score < f.min_score {
                        Some("low_score")
                    } else if sharp < f.min_sharpness {
                        Some("blurry")
                    } else {
                        None
                    };
                    let png = if failed.is_none() {
                        png_bytes(&crop).ok()
                    } else {
                        None
                    };
                    Candidate {
                        square: crop_square(&face, &self.crop),
                        hash: dhash(&crop),
                        sharpness: sharp,
                        face,
                        png,
                        failed,
                    }
                })
                .collect(),
        )
    }

    /// Ordered part: duplicate check against crops kept so far, writes, the record.
    fn finish(
        &self,
        rel: &Path,
        outcome: Outcome,
        kept: &mut Vec<u64>,
        settings: &str,
    ) -> Result<Record, RunError> {
        let source = rel.to_string_lossy().into_owned();
        let faces = match outcome {
            Outcome::Failed { code, detail } => {
                return Ok(Record {
                    source,
                    status: "failed".into(),
                    reason: Some(code),
                    detail: Some(detail),
                    faces: vec![],
                    settings: settings.into(),
                });
            }
            Outcome::Faces(f) => f,
        };
        let stem = output_stem(rel);
        let mut out = Vec::new();
        for (k, c) in faces.into_iter().enumerate() {
            let unique = match self.filters.max_duplicate_distance {
                Some(d) if c.failed.is_none() => !kept.iter().any(|h| hamming(*h, c.hash) <= d),
                _ => true,
            };
            let mut skipped = c
                .failed
                .map(str::to_string)
                .or_else(|| (!unique).then(|| "duplicate".into()));
            let mut output = None;
            if skipped.is_none() {
                match &c.png {
                    Some(png) => {
                        let name = if self.all_faces {
                            format!("{stem}_f{k}.png")
                        } else {
                            format!("{stem}.png")
                        };
                        let path = self.output.join(&name);
                        write_atomic(&path, png).map_err(io_err(&path))?;
                        kept.push(c.hash);
                        output = Some(name);
                    }
                    None => skipped = Some("encode_error".into()),
                }
            }
            let f = &self.filters;
            out.push(FaceRecord {
                output,
                bbox: c.face.bbox,
                score: c.face.score,
                landmarks: c.face.landmarks.clone(),
                square: [c.square.0, c.square.1, i64::from(c.square.2)],
                sharpness: c.sharpness,
                dhash: format!("{:016x}", c.hash),
                checks: Checks {
                    min_face: c.face.width().min(c.face.height()) >= f.min_face,
                    min_score: c.face.score >= f.min_score,
                    sharp: c.sharpness >= f.min_sharpness,
                    unique,
                },
                skipped,
            });
        }
        let written = out.iter().any(|f| f.output.is_some());
        let reason = if written {
            None
        } else if out.is_empty() {
            Some("no_face".to_string())
        } else {
            out.iter().find_map(|f| f.skipped.clone())
        };
        Ok(Record {
            source,
            status: if written { "ok" } else { "skipped" }.into(),
            reason,
            detail: None,
            faces: out,
            settings: settings.into(),
        })
    }
}

/// Records of earlier runs with the same settings; an unreadable or half-written line is ignored
/// (its input is simply processed again).
fn read_journal(path: &Path, settings: &str) -> BTreeMap<String, Record> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .filter(|r| r.settings == settings)
        .map(|r| (r.source.clone(), r))
        .collect()
}
