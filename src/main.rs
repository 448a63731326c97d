//! `sandload`: inspect untrusted checkpoints and camera RAW files, and convert RAW files and
//! images into safe outputs, from the command line.
//!
//! The CLI is thin over the library. It is the one place that turns a user's path into a
//! capability: it opens the file's parent directory and hands the library that `Dir`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use clap::{Parser, Subcommand};

mod cli;
use cli::walk::Target;
use sandload::report::{FileReport, Summary};
use sandload::{DataAccess, Error, Guest, Input, Limits, RawImage, Sandbox};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "sandload",
    version,
    about = "Open untrusted checkpoints and camera RAW files in a wasmtime sandbox",
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The exit-status contract, shown by `--help`.
const EXIT_STATUS: &str = "\
Exit status:
  0  every input was accepted
  1  some input was refused (a verdict about the file: hostile, malformed, over a limit)
  2  usage error (bad arguments or options, an output that cannot be written)
  3  some input could not be read (missing, not a regular file, I/O error) or an internal error
     occurred; 3 wins over 1 when both happen";

/// Exit statuses, in increasing precedence.
const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_IO: u8 = 3;

/// The status an inspect/convert of one input contributes.
fn status_of(e: &Error) -> u8 {
    if e.is_rejection() { EXIT_REFUSED } else { EXIT_IO }
}

/// The longest `--timeout` accepted: long enough for anything, short enough that no deadline
/// arithmetic can overflow.
const MAX_TIMEOUT_SECS: f64 = 365.0 * 24.0 * 3600.0;

#[derive(Subcommand)]
enum Command {
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

fn parse_guest(name: &str) -> Result<Guest, String> {
    Guest::ALL.into_iter().find(|g| g.name() == name).ok_or_else(|| {
        let names: Vec<&str> = Guest::ALL.iter().map(|g| g.name()).collect();
        format!("unknown guest {name:?} (one of: {})", names.join(", "))
    })
}

fn parse_replacement(arg: &str) -> Result<(Guest, PathBuf), String> {
    let (name, path) = arg.split_once('=').ok_or_else(|| format!("expected GUEST=FILE.wasm, got {arg:?}"))?;
    Ok((parse_guest(name)?, PathBuf::from(path)))
}

#[derive(clap::Args)]
struct LimitArgs {
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
enum SetupError {
    Usage(String),
    Internal(String),
}

impl LimitArgs {
    fn sandbox(&self) -> Result<Sandbox, SetupError> {
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
            // `try_from_secs_f64` refuses NaN, infinities and negatives; the upper bound keeps
            // `now + guest_time` from overflowing wherever a deadline is computed.
            match Duration::try_from_secs_f64(secs) {
                Ok(d) if !d.is_zero() && secs <= MAX_TIMEOUT_SECS => limits = limits.with_guest_time(d),
                _ => {
                    return Err(SetupError::Usage(format!(
                        "--timeout must be a positive number of seconds up to {MAX_TIMEOUT_SECS} (one year), got {secs}"
                    )));
                }
            }
        }
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (limits, run): (&LimitArgs, Box<dyn FnOnce(&Sandbox) -> ExitCode>) = match &cli.command {
        Command::Inspect { format, json, digest, recursive, jobs, limits, paths } => {
            let format = if *json { OutputFormat::Json } else { *format };
            let mut targets = Vec::new();
            cli::walk::targets(paths, *recursive, &mut targets);
            let jobs = *jobs as usize;
            (limits, Box::new(move |sandbox| inspect(sandbox, targets, format, *digest, jobs)))
        }
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&sandload::report::json_schema()).expect("schema serializes");
            println!("{schema}");
            return ExitCode::SUCCESS;
        }
        Command::Convert { input, output, limits } => {
            (limits, Box::new(move |sandbox| convert(sandbox, input, output)))
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

/// How `inspect` writes its reports.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// A paragraph per input.
    Human,
    /// One JSON record per input (`sandload::report::FileReport`), each on its own line, then a
    /// summary record; the schema is `sandload schema`.
    Json,
    /// One SARIF 2.1.0 log with a result per rejected input, for code-scanning UIs.
    Sarif,
}

fn inspect(sandbox: &Sandbox, targets: Vec<Target>, format: OutputFormat, digest: bool, jobs: usize) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Drawn on stderr only when it is a terminal, and only for several files.
    let progress = if targets.len() > 1 {
        indicatif::ProgressBar::new(targets.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let several = targets.len() > 1;
    let mut status = 0u8;
    let mut summary = Summary::default();
    let mut sarif = Vec::new();
    let mut broken_pipe = false;
    // Reports are written in input order as they complete, whatever order the workers finish in.
    for_each_report(sandbox, targets, digest, jobs, |report| {
        // A sharded target reports its model and maybe sibling files: the bar counts reports.
        if progress.position() >= progress.length().unwrap_or(0) {
            progress.inc_length(1);
        }
        progress.inc(1);
        if let Some(e) = &report.error {
            status = status.max(status_of(e));
        }
        summary.add(&report);
        let line = match format {
            OutputFormat::Human => Some(cli::human::report(&report)),
            OutputFormat::Json => Some(json_safe(&serde_json::to_string(&report).expect("reports serialize"))),
            OutputFormat::Sarif => {
                sarif.push(report);
                None
            }
        };
        if let Some(line) = line {
            if progress.suspend(|| writeln!(out, "{line}")).is_err() {
                // stdout closed (e.g. piped into `head`): stop; the report is incomplete.
                broken_pipe = true;
            }
        }
        !broken_pipe
    });
    progress.finish_and_clear();
    if broken_pipe {
        return ExitCode::from(EXIT_IO);
    }
    let tail = match format {
        OutputFormat::Human => {
            if several {
                eprintln!("{}", cli::human::summary(&summary));
            }
            None
        }
        OutputFormat::Json => Some(json_safe(&serde_json::to_string(&summary.record()).expect("summary serializes"))),
        OutputFormat::Sarif => Some(json_safe(&cli::sarif::log(&sarif).to_string())),
    };
    if let Some(tail) = tail {
        if writeln!(out, "{tail}").is_err() {
            return ExitCode::from(EXIT_IO);
        }
    }
    ExitCode::from(status)
}

/// Inspects every target on `jobs` threads sharing `sandbox` and hands the reports to `emit` in
/// the targets' order (a sharded target may give several: the model, then any sibling
/// `.safetensors` file its shards do not cover). When `emit` returns false (stdout is gone) the
/// workers stop taking targets.
fn for_each_report(
    sandbox: &Sandbox,
    targets: Vec<Target>,
    digest: bool,
    jobs: usize,
    mut emit: impl FnMut(FileReport) -> bool,
) {
    let jobs = jobs.clamp(1, targets.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let targets = &targets;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<FileReport>)>();
        for _ in 0..jobs {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(target) = targets.get(i) else { break };
                    if tx.send((i, inspect_one(sandbox, target, digest))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut want = 0;
        'receive: for (i, reports) in rx {
            pending.insert(i, reports);
            while let Some(reports) = pending.remove(&want) {
                for report in reports {
                    if !emit(report) {
                        // Dropping the receiver makes every worker's next send fail: they stop.
                        break 'receive;
                    }
                }
                want += 1;
            }
        }
    });
}

fn inspect_one(sandbox: &Sandbox, target: &Target, digest: bool) -> Vec<FileReport> {
    match target {
        Target::Unreachable { shown, error } => {
            // `Error` is not `Clone` (it may hold an `io::Error`): rebuild the I/O error.
            let error = match error {
                Error::Io { file, source } => {
                    Error::Io { file: file.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
                }
                other => Error::Internal(other.to_string()),
            };
            vec![FileReport::new(shown, Err(error), None, digest)]
        }
        Target::File { dir, name, shown } => vec![inspect_file(sandbox, dir, name, shown, digest)],
        Target::Sharded { dir, index, shown, siblings } => {
            // A file under an index name is a sharded checkpoint only if its content is no format
            // sandload recognises (a pickle under that name is still reported as a pickle).
            if !index_is_json(sandbox, dir, index, shown) {
                let mut reports = vec![inspect_file(sandbox, dir, index, shown, digest)];
                reports.extend(siblings.iter().map(|(name, shown)| inspect_file(sandbox, dir, name, shown, digest)));
                return reports;
            }
            let result = sandbox.open_sharded(dir, index);
            let covered: std::collections::HashSet<std::ffi::OsString> = match &result {
                Ok(model) => {
                    model.shards().iter().filter_map(|s| s.file().file_name().map(|n| n.to_os_string())).collect()
                }
                Err(_) => Default::default(),
            };
            let mut reports = vec![FileReport::sharded(shown, result, digest)];
            // Shards are named relative to the directory the index is in; show them under the
            // same prefix as the path the user gave.
            let prefix = if shown.is_dir() { Some(shown.as_path()) } else { shown.parent() };
            if let (Some(prefix), Some(shards)) = (prefix, reports[0].shards.as_mut()) {
                for shard in shards {
                    shard.path = prefix.join(&shard.path).display().to_string();
                }
            }
            for (name, shown) in siblings {
                if !name.file_name().is_some_and(|n| covered.contains(n)) {
                    reports.push(inspect_file(sandbox, dir, name, shown, digest));
                }
            }
            reports
        }
    }
}

fn inspect_file(sandbox: &Sandbox, dir: &Dir, name: &Path, shown: &Path, digest: bool) -> FileReport {
    match Target::open(dir, name, shown) {
        Ok(input) => {
            let (result, receipt) = sandbox.open_with_receipt(input);
            FileReport::new(shown, result, Some(receipt), digest)
        }
        Err(e) => FileReport::new(shown, Err(e), None, digest),
    }
}

/// Whether an index-named file's content is no format sandload recognises (then it is parsed as
/// an index by the shard-index guest, which decides whether it is one).
fn index_is_json(sandbox: &Sandbox, dir: &Dir, index: &Path, shown: &Path) -> bool {
    let Ok(input) = Target::open(dir, index, shown) else { return true };
    match input.read_all(sandbox.limits()) {
        Ok(bytes) => sandload::sniff(&bytes).format == sandload::Format::Unknown,
        // Unreadable or too large: `open_sharded` reports why.
        Err(_) => true,
    }
}

/// Compiled guests are cached in the per-user cache ([`sandload::user_cache_dir`]); a cache that
/// cannot be created is skipped (it only costs the compile time), an untrusted one with a warning.
/// The library checks the directory again, and checks each entry.
fn cache_dir() -> Option<Dir> {
    match sandload::user_cache_dir(ambient_authority()) {
        Ok(dir) => dir,
        Err(why) => {
            eprintln!("sandload: warning: {}", printable(&why));
            None
        }
    }
}

/// The input at a path named on the command line, opened through its parent directory.
fn open_input(path: &Path) -> Result<Input, Error> {
    let (dir, name) = cli::walk::split(path)?;
    Target::open(&dir, &name, path)
}

/// `convert`: RAW files by content go to the RAW decoder, everything else to the image decoder;
/// the output is written to a temporary file beside OUTPUT and renamed into place, so a failed
/// run never leaves a partial file.
fn convert(sandbox: &Sandbox, input: &Path, output: &Path) -> ExitCode {
    match convert_inner(sandbox, input, output) {
        Ok(summary) => {
            eprintln!("{}: {} -> {}", printable(&input.display()), printable(&summary), printable(&output.display()));
            ExitCode::SUCCESS
        }
        Err(ConvertError::Usage(message)) => {
            eprintln!("sandload: {}", printable(&message));
            ExitCode::from(EXIT_USAGE)
        }
        Err(ConvertError::Internal(message)) => {
            eprintln!("sandload: internal error: {}", printable(&message));
            ExitCode::from(EXIT_IO)
        }
        Err(ConvertError::Rejected(e)) => {
            eprintln!("{}: REJECTED ({}): {}", printable(&input.display()), e.kind(), printable(&e));
            ExitCode::from(status_of(&e))
        }
    }
}

enum ConvertError {
    /// Exit 2: the arguments (or the output path) are wrong.
    Usage(String),
    /// Exit 3: a bug or a broken environment (an encoder failing on validated pixels).
    Internal(String),
    /// Exit 1 if the input was refused, 3 if it could not be read.
    Rejected(Error),
}

impl From<Error> for ConvertError {
    fn from(e: Error) -> Self {
        ConvertError::Rejected(e)
    }
}

fn convert_inner(sandbox: &Sandbox, input: &Path, output: &Path) -> Result<String, ConvertError> {
    let ext = output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let image_format = match ext.as_str() {
        "png" => Some(sandload::image::ImageFormat::Png),
        "tif" | "tiff" => Some(sandload::image::ImageFormat::Tiff),
        "safetensors" => None,
        other => {
            return Err(ConvertError::Usage(format!(
                "output extension {other:?} not supported: use .png, .tiff or .safetensors"
            )));
        }
    };
    // Refused before reading when the guest could not hold it anyway (`max_file_bytes` and
    // `guest_memory_bytes`): a 60 GB input is never read into memory.
    let bytes = open_input(input)?.read_for_decoding(sandbox.limits())?;
    let sniffed = sandload::sniff(&bytes);
    let is_raw = matches!(sniffed.format, sandload::Format::Dng | sandload::Format::Raw);
    let (encoded, summary) = if is_raw {
        let raw = sandbox.decode_raw(Input::from_bytes(bytes, input))?;
        let info = raw.info();
        let summary = format!("{} {}x{} RAW ({} {})", sniffed.format, info.width, info.height, info.make, info.model);
        match image_format {
            Some(format) => (encode(&sandload::image::DynamicImage::ImageRgb16(raw.develop16()?), format)?, summary),
            None => (raw_safetensors(&raw).map_err(ConvertError::Internal)?, summary),
        }
    } else {
        let Some(format) = image_format else {
            return Err(ConvertError::Usage(format!(
                "{} is {}, not a RAW file: only RAW files convert to .safetensors",
                printable(&input.display()),
                sniffed.what
            )));
        };
        let decoded = sandbox.decode_image(Input::from_bytes(bytes, input))?;
        let summary = format!("{} {}x{}", decoded.format, decoded.image.width(), decoded.image.height());
        (encode(&decoded.image, format)?, summary)
    };
    write_atomically(output, &encoded).map_err(|e| ConvertError::Usage(format!("{}: {e}", output.display())))?;
    Ok(summary)
}

fn encode(
    image: &sandload::image::DynamicImage,
    format: sandload::image::ImageFormat,
) -> Result<Vec<u8>, ConvertError> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).map_err(|e| ConvertError::Internal(format!("encoding {format:?}: {e}")))?;
    Ok(out.into_inner())
}

/// The samples as one U16 tensor `raw` of shape [height, width] (or [height, width, cpp]), with
/// the frame's metadata as strings (the format's metadata is a string map).
fn raw_safetensors(raw: &RawImage) -> Result<Vec<u8>, String> {
    let info = raw.info();
    let mut shape = vec![info.height, info.width];
    if info.cpp > 1 {
        shape.push(info.cpp);
    }
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U16, shape, raw.samples())
        .map_err(|e| format!("building the tensor: {e}"))?;
    let text = |v: Value| v.to_string();
    let mut metadata = std::collections::HashMap::from([
        ("format".to_string(), "sandload-raw".to_string()),
        ("source_format".to_string(), info.format.name().to_string()),
        ("decoder".to_string(), info.decoder.clone()),
        ("cfa".to_string(), info.cfa.as_ref().map_or(String::new(), |c| c.name())),
        ("cfa_width".to_string(), info.cfa.as_ref().map_or(0, |c| c.width).to_string()),
        ("cfa_height".to_string(), info.cfa.as_ref().map_or(0, |c| c.height).to_string()),
        ("black_levels".to_string(), text(json!(info.black_levels))),
        ("black_width".to_string(), info.black_width.to_string()),
        ("black_height".to_string(), info.black_height.to_string()),
        ("white_levels".to_string(), text(json!(info.white_levels))),
        ("wb_coeffs".to_string(), text(json!(info.wb_coeffs))),
        ("xyz_to_cam".to_string(), text(json!(info.xyz_to_cam))),
        ("bits_per_sample".to_string(), info.bits_per_sample.to_string()),
        ("orientation".to_string(), info.orientation.to_string()),
        ("make".to_string(), info.make.clone()),
        ("model".to_string(), info.model.clone()),
        ("active_area".to_string(), text(json!(info.active_area.map(|r| [r.x, r.y, r.width, r.height])))),
        ("crop_area".to_string(), text(json!(info.crop_area.map(|r| [r.x, r.y, r.width, r.height])))),
    ]);
    if let Some(iso) = info.iso {
        metadata.insert("iso".into(), iso.to_string());
    }
    if let Some((n, d)) = info.exposure_time {
        metadata.insert("exposure_time".into(), format!("{n}/{d}"));
    }
    if let Some(t) = &info.timestamp {
        metadata.insert("timestamp".into(), t.clone());
    }
    safetensors::serialize([("raw", view)], Some(metadata)).map_err(|e| format!("writing safetensors: {e}"))
}

/// Writes `bytes` to `path` atomically and without trusting its directory's other entries.
///
/// The temporary file is created through a `Dir` of the output's directory with cap-tempfile:
/// an anonymous `O_TMPFILE` (or, where that is missing, an `O_EXCL` file with a random name), mode
/// 0600, so no name an attacker can predict is ever opened: a symlink planted there cannot
/// redirect the write and a FIFO cannot block it. It is written, fsynced, linked under a random
/// name, renamed over `path` (a symlink at `path` is replaced, not followed) and the directory is
/// fsynced, so after a crash there is the old file or the whole new one. The output keeps mode
/// 0600: decoded user data stays private until its owner shares it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use cap_std::fs::PermissionsExt;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("output has no file name"))?;
    let dir = Dir::open_ambient_dir(parent, ambient_authority())?;
    let mut tmp = cap_tempfile::TempFile::new(&dir)?;
    tmp.as_file().set_permissions(cap_std::fs::Permissions::from_mode(0o600))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // On error the temporary file is removed (or was never linked) by TempFile's drop.
    tmp.replace(name)?;
    sync_dir(&dir)
}

/// fsyncs the directory `dir` itself (cap-std directory handles may be `O_PATH`, which cannot
/// be synced: open it for reading first).
fn sync_dir(dir: &Dir) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}

/// The characters escaped in everything the CLI prints that came from a file or a user: C0 and
/// C1 controls and DEL (terminal escape sequences, forged line breaks), the Unicode line and
/// paragraph separators, and the bidirectional controls that reorder what a terminal or log
/// viewer shows (ALM U+061C, LRM/RLM U+200E/F, embeddings and overrides U+202A-U+202E, isolates
/// U+2066-U+2069). The same set as the library's `error::printable`.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` for human output: every [`unsafe_char`] written as a Rust escape (`\n`, `\u{1b}`,
/// `\u{202e}`). Idempotent, so text the library already escaped is unchanged.
fn printable(text: &dyn std::fmt::Display) -> String {
    let text = text.to_string();
    if !text.contains(unsafe_char) {
        return text;
    }
    text.chars().map(|c| if unsafe_char(c) { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// One serialized JSON line with every [`unsafe_char`] left raw by serde_json (which escapes
/// only C0, `"` and `\\`) written as `\uXXXX`. Those characters can only occur inside
/// strings (the JSON syntax around them is ASCII) and are all in the BMP, so the result is the
/// same JSON value.
fn json_safe(line: &str) -> String {
    if !line.contains(unsafe_char) {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if unsafe_char(c) {
            out += &format!("\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}
