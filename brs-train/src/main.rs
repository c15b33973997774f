//! The `brs-train` command: parses the arguments (`cli`), hands them to the library and shows
//! what it reports (`progress`).

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod progress;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // `train` gives each of its training threads a malloc arena, so it re-executes once it has
    // read how many its config asks for (cli::run_train); parsing the arguments starts no thread.
    if !cli.command.trains() {
        brs_model::alloc::reexec_with_tuned_malloc(brs_model::alloc::Profile::Training {
            threads: 1,
        });
    }
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our result went away (`| head`): nothing left to say, nothing failed.
        Err(e) if e.is::<cli::StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
