//! `sandload`: inspect untrusted checkpoints and camera RAW files, and convert RAW files and
//! images into safe outputs, from the command line.
//!
//! The CLI is thin over the library. It is the one place that turns a user's path into a
//! capability: it opens the file's parent directory and hands the library that `Dir`. Its
//! modules are in `src/cli/`: `args` (the command line and the sandbox it builds), `walk` (the
//! targets), `inspect`, `convert`, `write` (atomic outputs), `human` and `sarif` (output
//! formats), `exit` (the exit-status contract).

use std::process::ExitCode;

use clap::Parser;
use sandload::Sandbox;
use sandload::report::printable;

mod cli;
use cli::args::{Cli, Command, LimitArgs, OutputFormat, SetupError};
use cli::exit::{EXIT_IO, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (limits, run): (&LimitArgs, Box<dyn FnOnce(&Sandbox) -> ExitCode>) = match &cli.command {
        Command::Inspect { format, json, digest, recursive, jobs, limits, paths } => {
            let format = if *json { OutputFormat::Json } else { *format };
            let mut targets = Vec::new();
            cli::walk::targets(paths, *recursive, &mut targets);
            let jobs = *jobs as usize;
            (limits, Box::new(move |sandbox| cli::inspect::inspect(sandbox, targets, format, *digest, jobs)))
        }
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&sandload::report::json_schema()).expect("schema serializes");
            println!("{schema}");
            return ExitCode::SUCCESS;
        }
        Command::Convert { input, output, limits } => {
            (limits, Box::new(move |sandbox| cli::convert::convert(sandbox, input, output)))
        }
        Command::GuestWasm { guest, output } => {
            return match std::fs::write(output, guest.bundled_wasm()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sandload: {}: {}", printable(&output.display()), printable(&e));
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
    };
    match limits.sandbox() {
        Ok(sandbox) => run(&sandbox),
        Err(SetupError::Usage(message)) => {
            eprintln!("sandload: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(SetupError::Internal(message)) => {
            eprintln!("sandload: {message}");
            ExitCode::from(EXIT_IO)
        }
    }
}
