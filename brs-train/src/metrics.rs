//! metrics.jsonl, the run's log: one JSON line of losses per logged iteration, appended as
//! training goes, and cut back to the last checkpoint when a run resumes.

use std::fs;
use std::io::Write;
use std::path::Path;

use brs_image::files::write_atomic;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::losses::Losses;

/// The metrics log in a run directory.
pub(crate) const METRICS_FILE: &str = "metrics.jsonl";

/// One line of metrics.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MetricsLine {
    pub(crate) iteration: u64,
    pub(crate) lr: f64,
    pub(crate) sec_per_it: f64,
    #[serde(flatten)]
    pub(crate) losses: Losses,
}

fn to_json(line: &MetricsLine) -> Result<String> {
    serde_json::to_string(line).map_err(|cause| TrainError::Serialise {
        what: "metrics",
        cause,
    })
}

/// Reads the log up to and including iteration `upto` (a resumed run drops what a killed run
/// logged after its last checkpoint). A missing file is an empty history; unreadable lines are
/// left out.
pub(crate) fn read(path: &Path, upto: u64) -> Result<Vec<MetricsLine>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<MetricsLine>(l).ok())
        .filter(|m| m.iteration <= upto)
        .collect())
}

/// Replaces the log with exactly `lines`, atomically.
pub(crate) fn rewrite(path: &Path, lines: &[MetricsLine]) -> Result<()> {
    let mut text = String::new();
    for line in lines {
        text.push_str(&to_json(line)?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes()).map_err(|e| TrainError::io(path, e))
}

/// Adds one line at the end of the log (creating it).
pub(crate) fn append(path: &Path, line: &MetricsLine) -> Result<()> {
    let json = to_json(line)?;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    writeln!(f, "{json}").map_err(|e| TrainError::io(path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn line(i: u64) -> MetricsLine {
        MetricsLine {
            iteration: i,
            lr: 1e-4,
            sec_per_it: 0.5,
            losses: Losses {
                d_loss: 1.0 / i as f64,
                g_loss: 2.0,
                g_adv: 0.5,
                g_cycle: 1.5 - i as f64 * 0.01,
                g_identity: 0.3,
                g_cam: 7.0,
            },
        }
    }

    #[test]
    fn rewrite_read_and_append_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        assert!(read(&path, 10).unwrap().is_empty());
        let history: Vec<MetricsLine> = (1..=20).map(line).collect();
        rewrite(&path, &history).unwrap();
        let back = read(&path, 12).unwrap();
        assert_eq!(back.len(), 12);
        assert_eq!(back[11].iteration, 12);
        assert_eq!(back[11].losses.g_cam, 7.0);
        // A resumed run cuts the log back, then appends after it.
        rewrite(&path, &back).unwrap();
        append(&path, &line(13)).unwrap();
        let all = read(&path, u64::MAX).unwrap();
        assert_eq!(
            all.iter().map(|m| m.iteration).collect::<Vec<_>>(),
            (1..=13).collect::<Vec<_>>()
        );
    }
}
