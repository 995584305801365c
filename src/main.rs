//! The `trickle` binary: parses the command line and runs it. Errors are reported on one line.

use clap::Parser;
use tracing_subscriber::EnvFilter;

// The system allocator: over HTTP it costs the same CPU per GB as mimalloc, holds less memory, and
// `trickle serve` gives what a burst freed back with malloc_trim (BENCHMARKS.md, `cli/serve.rs`).

fn main() -> std::process::ExitCode {
    let cli = trickle::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("TRICKLE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // What `#[tokio::main]` builds, with `serve --threads` applied.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = cli.worker_threads() {
        runtime.worker_threads(threads);
    }
    let result = match runtime.build() {
        Ok(runtime) => runtime.block_on(trickle::cli::run(cli)),
        Err(err) => Err(anyhow::Error::new(err).context("cannot start the async runtime")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("trickle: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
