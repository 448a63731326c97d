//! Shared set-up and oracles of sandload's fuzz targets.
//!
//! Every end-to-end target reuses one [`Sandbox`] for the whole campaign: guests are compiled once
//! (and cached on disk across runs, so `-fork`/`-jobs` workers and restarts start in milliseconds),
//! and each input then costs what a file costs in production: a fresh pooled instance.
//!
//! A target fails (panics) only when sandload breaks a promise, never because an input is bad:
//! - a rejection must be a typed error naming the file (no `Internal`, no `Io` on in-memory input);
//! - whatever is accepted must be self-consistent and within the limits, and where a native
//!   reference exists (the `safetensors` crate, the `image` crate), agree with it exactly.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use sandload::{Error, Limit, Limits, Sandbox};

/// The name every fuzz input is opened under; errors must carry it.
pub const FILE_NAME: &str = "fuzz-input";

/// Limits for fuzzing: small enough that one input stays cheap (libFuzzer inputs are at most a
/// few MB), large enough that every code path, including the limit checks, is reachable.
///
/// max_pixels is 2^18 (512x512): a mutated header easily declares the largest frame the limit
/// allows, and the decoder then allocates and zero-fills it whatever the input's length. At 2^22
/// that zeroing was 57% of the `raw` target's time (perf) and held it at ~300 executions/s; the
/// seeds are 32x24, so nothing reachable is lost, and the pixel-limit paths are hit more often.
///
/// Guest memory is 64 MiB (the RAW guest's snapshot needs 26): rawler's TIFF reader allocates a
/// zeroed buffer for whatever value count an IFD entry declares, so a mutated count makes the
/// guest zero memory up to its cap before the allocation fails. With 256 MiB that zeroing was 75%
/// of the target's time (perf with wasmtime's perf map); the out-of-memory path is the same.
pub fn limits() -> Limits {
    Limits::default().with_max_pixels(1 << 18).with_guest_memory_bytes(64 << 20).with_guest_time(Duration::from_secs(2))
}

/// The one sandbox of this fuzzing process.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let mut builder = Sandbox::builder();
        builder.limits(limits());
        if let Some(dir) = cache_dir() {
            builder.cache_dir(dir);
        }
        builder.build().expect("sandbox")
    })
}

/// Runs `warm_up` once before fuzzing starts (from the targets' `init:` blocks), so that the
/// guest's first compile (seconds, longer under ASan; milliseconds from the disk cache) does not
/// count against libFuzzer's per-input `-timeout`.
pub fn warm_up<T>(warm_up: impl FnOnce(&Sandbox) -> sandload::Result<T>) {
    if let Err(e) = warm_up(sandbox()) {
        panic!("a valid sample failed to open: {e}");
    }
}

/// `$SANDLOAD_FUZZ_CACHE`, or `fuzz/target/sandload-fuzz-cache`: compiled guests keyed by wasm
/// hash and engine, so a stale entry is never used. Never a shared path such as `/tmp`: entries
/// are native code, and another user could plant one there (sandload also refuses a directory
/// or entry it does not own, or that others can write).
fn cache_dir() -> Option<cap_std::fs::Dir> {
    use std::os::unix::fs::DirBuilderExt;
    let path = std::env::var_os("SANDLOAD_FUZZ_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sandload-fuzz-cache"));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&path).ok()?;
    cap_std::fs::Dir::open_ambient_dir(&path, cap_std::ambient_authority()).ok()
}

/// Checks the promises every rejection keeps: typed, names the file, and gives the rule or limit.
/// `guest_may_trap` is false for guests that are sandload's own code (the safetensors header
/// parser), where a trap is a bug even though the sandbox contains it.
#[track_caller]
pub fn check_rejection(e: &Error, guest_may_trap: bool) {
    assert!(e.is_rejection(), "in-memory input must never give an environment error: {e:?}");
    assert_eq!(e.file(), Some(Path::new(FILE_NAME)), "the error must name the file: {e:?}");
    let message = e.to_string();
    assert!(message.starts_with(FILE_NAME), "the message must start with the file name: {message}");
    match e {
        Error::LimitExceeded { limit, limit_value, value, .. } => {
            assert!(value > limit_value, "{limit} reported exceeded but {value} <= {limit_value}");
            let configured = limits().get(*limit);
            assert_eq!(*limit_value, configured, "{limit} reported as {limit_value}, configured {configured}");
        }
        Error::Malformed { rule, detail, .. } => {
            assert!(!rule.is_empty() && !detail.is_empty(), "malformed without rule or detail: {e:?}");
        }
        Error::GuestTrap { .. } => {
            assert!(guest_may_trap, "sandload's own guest trapped: {e}");
        }
        Error::GuestOutOfMemory { limit, requested, .. } => {
            assert_eq!(*limit, limits().get(Limit::GuestMemoryBytes));
            assert!(requested > limit, "out of memory below the cap: {e}");
        }
        Error::GuestTimeout { limit, .. } => assert_eq!(*limit, limits().guest_time),
        _ => {}
    }
}
