//! `sandload`: inspect untrusted checkpoint files from the command line.
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
use sandload::{Checkpoint, Error, Input, Limits, Receipt, Sandbox};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(name = "sandload", version, about = "Open untrusted checkpoints in a wasmtime sandbox")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report what each file is and whether sandload accepts it.
    Inspect {
        /// One JSON object per input, each on its own line.
        #[arg(long)]
        json: bool,
        /// Add the SHA-256 of every tensor's bytes.
        #[arg(long)]
        digest: bool,
        /// Largest file accepted, in bytes.
        #[arg(long, value_name = "BYTES")]
        max_file_size: Option<u64>,
        /// Guest linear-memory cap, in bytes (at most 4 GiB).
        #[arg(long, value_name = "BYTES")]
        max_memory: Option<u64>,
        /// Guest CPU deadline per file, in seconds (fractions allowed).
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        /// Files to inspect.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { json, digest, max_file_size, max_memory, timeout, paths } => {
            let mut limits = Limits::default();
            if let Some(bytes) = max_file_size {
                limits = limits.with_max_file_bytes(bytes);
            }
            if let Some(bytes) = max_memory {
                limits = limits.with_guest_memory_bytes(bytes);
            }
            if let Some(secs) = timeout {
                match Duration::try_from_secs_f64(secs) {
                    Ok(d) if !d.is_zero() => limits = limits.with_guest_time(d),
                    _ => {
                        eprintln!("sandload: --timeout must be a positive number of seconds, got {secs}");
                        return ExitCode::from(2);
                    }
                }
            }
            let mut builder = Sandbox::builder();
            builder.limits(limits);
            if let Some(dir) = cache_dir() {
                builder.cache_dir(dir);
            }
            let sandbox = match builder.build() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("sandload: {e}");
                    return ExitCode::from(2);
                }
            };
            inspect(&sandbox, &paths, json, digest)
        }
    }
}

fn inspect(sandbox: &Sandbox, paths: &[PathBuf], json: bool, digest: bool) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut all_accepted = true;
    for path in paths {
        let (result, receipt) = match open_input(path) {
            Ok(input) => {
                let (result, receipt) = sandbox.open_safetensors_with_receipt(input);
                (result, Some(receipt))
            }
            Err(e) => (Err(e), None),
        };
        all_accepted &= result.is_ok();
        let line = if json {
            json_report(path, &result, receipt.as_ref(), digest).to_string()
        } else {
            human_report(path, &result, receipt.as_ref(), digest)
        };
        if writeln!(out, "{line}").is_err() {
            // stdout closed (e.g. piped into `head`): stop quietly.
            return ExitCode::from(1);
        }
    }
    if all_accepted { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// Compiled guests are cached in `$SANDLOAD_CACHE_DIR`, else `$XDG_CACHE_HOME/sandload`, else
/// `~/.cache/sandload`; `SANDLOAD_CACHE_DIR=off` disables the cache. A cache that cannot be
/// created is skipped: it only costs the compile time.
fn cache_dir() -> Option<Dir> {
    let path = match std::env::var_os("SANDLOAD_CACHE_DIR") {
        Some(v) if v == "off" => return None,
        Some(v) => PathBuf::from(v),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(x) if !x.is_empty() => PathBuf::from(x).join("sandload"),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/sandload"),
        },
    };
    std::fs::create_dir_all(&path).ok()?;
    Dir::open_ambient_dir(&path, ambient_authority()).ok()
}

/// The CLI's one use of ambient authority: the user named this path on the command line.
fn open_input(path: &Path) -> Result<Input, Error> {
    let io_err = |source| Error::Io { file: path.to_path_buf(), source };
    let name = path
        .file_name()
        .ok_or_else(|| io_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = Dir::open_ambient_dir(parent, ambient_authority()).map_err(io_err)?;
    let input = Input::open(&dir, name).map_err(|e| match e {
        Error::Io { source, .. } => io_err(source),
        other => other,
    })?;
    Ok(input.with_name(path))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn json_report(path: &Path, result: &Result<Checkpoint, Error>, receipt: Option<&Receipt>, digest: bool) -> Value {
    let format = receipt.map_or("unknown", |r| r.format.name());
    let mut report = json!({
        "path": path.display().to_string(),
        "verdict": if result.is_ok() { "accepted" } else { "rejected" },
        "format": format,
        "error": match result {
            Ok(_) => Value::Null,
            Err(e) => json!({ "kind": e.kind(), "message": e.to_string() }),
        },
    });
    let obj = report.as_object_mut().expect("object");
    if let Some(rule) = result.as_ref().err().and_then(Error::rule) {
        obj["error"]["rule"] = json!(rule);
    }
    if let Ok(ckpt) = result {
        let tensors: Vec<Value> = ckpt
            .iter()
            .map(|t| {
                let mut v = json!({ "name": t.name, "dtype": t.dtype.name(), "shape": t.shape });
                if digest {
                    v["sha256"] = json!(sha256_hex(&t.data));
                }
                v
            })
            .collect();
        obj.insert("tensors".into(), Value::Array(tensors));
        obj.insert("metadata".into(), json!(ckpt.metadata()));
        obj.insert("header_len".into(), json!(ckpt.header_len()));
    }
    if let Some(r) = receipt {
        obj.insert(
            "receipt".into(),
            json!({
                "guest": r.guest,
                "guest_peak_memory_bytes": r.guest_peak_memory_bytes,
                "guest_time_us": r.guest_time.as_micros() as u64,
                "total_time_us": r.total_time.as_micros() as u64,
                "limits": {
                    "max_file_bytes": r.limits.max_file_bytes,
                    "max_header_bytes": r.limits.max_header_bytes,
                    "max_tensors": r.limits.max_tensors,
                    "guest_memory_bytes": r.limits.guest_memory_bytes,
                    "guest_time_ms": r.limits.guest_time.as_millis() as u64,
                },
            }),
        );
    }
    report
}

fn human_report(path: &Path, result: &Result<Checkpoint, Error>, receipt: Option<&Receipt>, digest: bool) -> String {
    let format = receipt.map_or("unknown", |r| r.format.name());
    match result {
        Err(e) => format!("{}: REJECTED ({format}, {}): {e}", path.display(), e.kind()),
        Ok(ckpt) => {
            let mut s = format!(
                "{}: accepted {format}, {} tensors, header {} bytes",
                path.display(),
                ckpt.len(),
                ckpt.header_len()
            );
            if let Some(r) = receipt {
                s += &format!(
                    " (guest {:.2} ms, peak guest memory {} KiB)",
                    r.guest_time.as_secs_f64() * 1e3,
                    r.guest_peak_memory_bytes / 1024
                );
            }
            for t in ckpt.iter() {
                s += &format!("\n  {} {} {:?}", t.name, t.dtype.name(), t.shape);
                if digest {
                    s += &format!(" sha256={}", sha256_hex(&t.data));
                }
            }
            if let Some(meta) = ckpt.metadata() {
                for (k, v) in meta {
                    s += &format!("\n  metadata {k} = {v:?}");
                }
            }
            s
        }
    }
}
