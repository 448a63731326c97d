//! `sandload`: inspect untrusted checkpoints and camera RAW files, and convert RAW files and
//! images into safe outputs, from the command line. The program is [`sandload::cli::run`]
//! (feature `cli`), which the Python package's `sandload` command runs too.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(sandload::cli::run(std::env::args_os()))
}
