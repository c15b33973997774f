//! The brs-serve binary: parse flags, load the config, run the library's server or worker.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "brs-serve",
    about = "Serve U-GAT-IT translations over HTTP",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    cli: brs_serve::Cli,
    /// Print the config as TOML and exit: alone, every key with its default; with `--config`,
    /// `--set`, `--model-dir` or `--bind`, the effective config after validation (a deployment
    /// checks its file this way; an invalid one exits 1 naming the key).
    #[arg(long)]
    print_config: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Only consume the job queue (no HTTP API): the worker Auto Scaling group's process. With
    /// `worker.ops_bind` set it answers /healthz, /readyz and /metrics on that address.
    Worker(brs_serve::Cli),
    /// Print the `[auth] keys` entry for an API key (read from stdin when not given).
    HashKey { key: Option<String> },
}

fn main() -> ExitCode {
    brs_model::alloc::reexec_with_tuned_malloc(brs_model::alloc::Profile::Serving);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal; files and journald get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("BRS_LOG_FORMAT").is_ok_and(|v| v == "json") {
        fmt.json().init();
    } else {
        fmt.init();
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brs-serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a command's whole answer. A reader that went away (`| head`) has what it wanted: not a
/// failure, where `print!` would have panicked.
fn print_out(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("writing to stdout"),
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_config {
        let text = if args.cli.is_empty() {
            brs_serve::Config::defaults_toml()
        } else {
            brs_serve::Config::from_cli(&args.cli)?.to_toml()
        };
        return print_out(&text);
    }
    let (cli, role) = match args.cmd {
        None => (args.cli, brs_serve::Role::Server),
        Some(Cmd::Worker(cli)) => (cli, brs_serve::Role::Worker),
        Some(Cmd::HashKey { key }) => {
            let key = match key {
                Some(k) => k,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the key from stdin")?;
                    s.trim().to_string()
                }
            };
            anyhow::ensure!(!key.is_empty(), "an empty key");
            return print_out(&format!("{}\n", brs_serve::hash_key(&key)));
        }
    };
    let config = brs_serve::Config::from_cli(&cli)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(brs_serve::run(config, role))?;
    Ok(())
}
