//! The `sandload` command line (feature `cli`): [`run`] is the whole program. The binary
//! (`src/main.rs`) and the Python package's `sandload` command both call it. Its modules: `args`
//! (the command line and the sandbox it builds), `walk` (the targets), `inspect`, `convert`,
//! `write` (atomic outputs), `human` and `sarif` (output formats), `exit` (the exit-status
//! contract). It is the one place that turns a user's path into a capability: it opens the
//! file's parent directory and hands the library that `Dir`.

mod args;
mod convert;
mod exit;
mod human;
mod inspect;
mod sarif;
mod walk;
mod write;

use clap::Parser;

use crate::Sandbox;
use crate::report::printable;
use args::{Cli, Command, LimitArgs, OutputFormat, SetupError};
use exit::{EXIT_IO, EXIT_USAGE};

/// Runs the `sandload` command line on `args` (the program name first, as `std::env::args_os`
/// gives them) and returns its exit status (see `sandload --help`). The `sandload` binary is this
/// function; the Python package's `sandload` command calls it too, so both print the same
/// records and exit with the same statuses.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let status = run_parsed(args);
    // In the Python package the process outlives this call: hand over what was printed.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    status
}

fn run_parsed<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; anything else is a usage error.
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let (limits, run): (&LimitArgs, Box<dyn FnOnce(&Sandbox) -> u8>) = match &cli.command {
        Command::Inspect { format, json, digest, recursive, jobs, limits, paths } => {
            let format = if *json { OutputFormat::Json } else { *format };
            let mut targets = Vec::new();
            walk::targets(paths, *recursive, &mut targets);
            let jobs = *jobs as usize;
            (limits, Box::new(move |sandbox| inspect::inspect(sandbox, targets, format, *digest, jobs)))
        }
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&crate::report::json_schema()).expect("schema serializes");
            println!("{schema}");
            return 0;
        }
        Command::Convert { input, output, limits } => {
            (limits, Box::new(move |sandbox| convert::convert(sandbox, input, output)))
        }
        Command::GuestWasm { guest, output } => {
            return match std::fs::write(output, guest.bundled_wasm()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("sandload: {}: {}", printable(&output.display()), printable(&e));
                    EXIT_USAGE
                }
            };
        }
    };
    match limits.sandbox() {
        Ok(sandbox) => run(&sandbox),
        Err(SetupError::Usage(message)) => {
            eprintln!("sandload: {message}");
            EXIT_USAGE
        }
        Err(SetupError::Internal(message)) => {
            eprintln!("sandload: {message}");
            EXIT_IO
        }
    }
}
