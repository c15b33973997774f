//! Helpers of these tests only; what other crates' tests share lives in brs-testkit.

use std::process::Command;

pub(crate) fn tempdir() -> tempfile::TempDir {
    brs_testkit::tempdir("brs-dataset-test-")
}

/// The brs-dataset binary cargo built for these tests.
pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brs-dataset"))
}
