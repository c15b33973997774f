//! The `brs-train` command: parses the arguments and hands them to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    brs_model::alloc::reexec_with_tuned_malloc(brs_model::alloc::Profile::Training);
    let cli = brs_train::cli::Cli::parse();
    match brs_train::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
