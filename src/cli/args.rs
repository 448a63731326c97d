//! The command line: subcommands, their arguments, and the sandbox the limit flags build.

use std::path::PathBuf;
use std::time::Duration;

use crate::report::printable;
use crate::{DataAccess, Guest, Limits, Sandbox};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use clap::{Parser, Subcommand};

use super::exit::EXIT_STATUS;

#[derive(Parser)]
#[command(
    name = "sandload",
    version,
    about = "Open untrusted checkpoints and camera RAW files in a wasmtime sandbox",
    after_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Report what each file is and whether sandload accepts it: checkpoints, sharded
    /// checkpoints (a directory or an index file), camera RAW files, images, and everything
    /// sandload refuses.
    Inspect {
        /// Output: `human`, `json` (one record per input, then a summary record; see
        /// `sandload schema`) or `sarif` (SARIF 2.1.0, one result per rejected input).
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
        /// Same as `--format json`.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Add the SHA-256 of every tensor's bytes, of a RAW file's decoded samples (u16
        /// little-endian) and of an image's decoded pixels.
        #[arg(long)]
        digest: bool,
        /// Inspect every file under the directories given, in name order. The walk stays inside
        /// each directory: a symlink is resolved only inside the tree (one leading out of it is an
        /// I/O error), and symlinked directories are skipped. A directory holding a sharded checkpoint's index is reported as one
        /// model (its shards inside it), plus any `.safetensors` file the index does not name.
        #[arg(short, long)]
        recursive: bool,
        /// Inspect this many files at once, over one shared sandbox (reports stay in input
        /// order).
        #[arg(short, long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
        jobs: u32,
        #[command(flatten)]
        limits: LimitArgs,
        /// Files (or directories) to inspect.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of `inspect --format json` records.
    Schema,
    /// Decode an untrusted camera RAW file or image and write a safe output: `.png` / `.tiff`
    /// (developed 16-bit sRGB image) or, for RAW files, `.safetensors` (the raw samples plus
    /// metadata, for dataset building).
    Convert {
        /// The RAW file (DNG, CR2, NEF, ARW, ...) or image (PNG, JPEG, TIFF, WebP).
        #[arg(value_name = "INPUT")]
        input: PathBuf,
        /// Where to write; the extension picks the format.
        #[arg(short, long, value_name = "OUTPUT")]
        output: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Write a bundled guest's wasm module to a file, e.g. to ship the LGPL-2.1 RAW decoder as a
    /// separate file that users can rebuild and pass back with `--guest raw-decoder=FILE`.
    GuestWasm {
        /// `safetensors-header`, `raw-decoder`, `image-decoder` or `pickle-scan`.
        #[arg(value_name = "GUEST", value_parser = parse_guest)]
        guest: Guest,
        /// Where to write the module.
        #[arg(short, long, value_name = "OUTPUT")]
        output: PathBuf,
    },
}

pub fn parse_guest(name: &str) -> Result<Guest, String> {
    Guest::ALL.into_iter().find(|g| g.name() == name).ok_or_else(|| {
        let names: Vec<&str> = Guest::ALL.iter().map(|g| g.name()).collect();
        format!("unknown guest {name:?} (one of: {})", names.join(", "))
    })
}

pub fn parse_replacement(arg: &str) -> Result<(Guest, PathBuf), String> {
    let (name, path) = arg.split_once('=').ok_or_else(|| format!("expected GUEST=FILE.wasm, got {arg:?}"))?;
    Ok((parse_guest(name)?, PathBuf::from(path)))
}

#[derive(clap::Args)]
pub struct LimitArgs {
    /// Largest file accepted, in bytes.
    #[arg(long, value_name = "BYTES")]
    max_file_size: Option<u64>,
    /// Guest linear-memory cap, in bytes (at most 4 GiB).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=Limits::MAX_GUEST_MEMORY_BYTES))]
    max_memory: Option<u64>,
    /// Guest CPU deadline per file, in seconds (fractions allowed, at most one year).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Most pixels (width x height) of one decoded image.
    #[arg(long, value_name = "COUNT")]
    max_pixels: Option<u64>,
    /// Most tensors in one safetensors file or sharded index.
    #[arg(long, value_name = "COUNT")]
    max_tensors: Option<u64>,
    /// Largest safetensors JSON header (and sharded index file), in bytes.
    #[arg(long, value_name = "BYTES")]
    max_header_bytes: Option<u64>,
    /// Most shard files one sharded checkpoint's index may name.
    #[arg(long, value_name = "COUNT")]
    max_shards: Option<u64>,
    /// Run this wasm module instead of a bundled guest (e.g. a rebuilt RAW decoder); it is
    /// sandboxed and re-validated exactly like the bundled one. Repeatable.
    #[arg(long = "guest", value_name = "GUEST=FILE.wasm", value_parser = parse_replacement)]
    guests: Vec<(Guest, PathBuf)>,
}

/// Why a sandbox could not be set up: the user's arguments, or the environment.
pub enum SetupError {
    Usage(String),
    Internal(String),
}

impl LimitArgs {
    /// The sandbox these flags ask for: limits checked by [`Limits::validate`] (the Python
    /// package checks its keywords with it too), files read in `DataAccess::Verdict` mode,
    /// replacement guests, the per-user compiled-guest cache.
    pub fn sandbox(&self) -> Result<Sandbox, SetupError> {
        let mut limits = Limits::default();
        if let Some(bytes) = self.max_file_size {
            limits = limits.with_max_file_bytes(bytes);
        }
        if let Some(bytes) = self.max_memory {
            limits = limits.with_guest_memory_bytes(bytes);
        }
        if let Some(count) = self.max_pixels {
            limits = limits.with_max_pixels(count);
        }
        if let Some(count) = self.max_tensors {
            limits = limits.with_max_tensors(count);
        }
        if let Some(bytes) = self.max_header_bytes {
            limits = limits.with_max_header_bytes(bytes);
        }
        if let Some(count) = self.max_shards {
            limits = limits.with_max_shards(count);
        }
        if let Some(secs) = self.timeout {
            // `try_from_secs_f64` refuses NaN, infinities and negatives; `validate` the rest.
            let time = Duration::try_from_secs_f64(secs).map_err(|_| {
                SetupError::Usage(format!("--timeout must be a positive number of seconds, got {secs}"))
            })?;
            limits = limits.with_guest_time(time);
        }
        // The range of every limit a person can set: the same check as the Python package's.
        limits.validate().map_err(|e| SetupError::Usage(printable(&e)))?;
        let mut builder = Sandbox::builder();
        builder.limits(limits);
        // Read, never map: a file mapped by the CLI could be truncated by anyone who can write it
        // while it is inspected, and the CLI would die of SIGBUS (see `DataAccess::Map`). And read
        // only what each verdict needs: a checkpoint's tensor bytes are never held (`--digest`
        // streams them), so memory per file does not grow with the checkpoint
        // (`DataAccess::Verdict`); RAW files and images are read whole, within the guest's cap.
        builder.data_access(DataAccess::Verdict);
        for (guest, path) in &self.guests {
            let wasm =
                std::fs::read(path).map_err(|e| SetupError::Usage(format!("{}: {e}", printable(&path.display()))))?;
            builder.replace_guest(*guest, wasm);
        }
        if let Some(dir) = cache_dir() {
            builder.cache_dir(dir);
        }
        builder.build().map_err(|e| SetupError::Internal(printable(&e)))
    }
}

/// How `inspect` writes its reports.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A paragraph per input.
    Human,
    /// One JSON record per input (`crate::report::FileReport`), each on its own line, then a
    /// summary record; the schema is `sandload schema`.
    Json,
    /// One SARIF 2.1.0 log with a result per rejected input, for code-scanning UIs.
    Sarif,
}

/// Compiled guests are cached in the per-user cache ([`crate::user_cache_dir`]); a cache that
/// cannot be created is skipped (it only costs the compile time), an untrusted one with a warning.
/// The library checks the directory again, and checks each entry.
pub fn cache_dir() -> Option<Dir> {
    match crate::user_cache_dir(ambient_authority()) {
        Ok(dir) => dir,
        Err(why) => {
            eprintln!("sandload: warning: {}", printable(&why));
            None
        }
    }
}
