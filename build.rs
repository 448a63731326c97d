//! Builds the wasm guests from `guests/` so that the guest that runs is always the guest in the
//! source tree (the approach of wasmtime's `test-programs/artifacts`).
//!
//! The guests are their own cargo workspace, built for `wasm32-wasip1` in release mode into a
//! target directory next to the host's (`<target>/sandload-guests`), and embedded with
//! `include_bytes!` through `$OUT_DIR/guests.rs`. Release mode always: guest speed is what the
//! sandbox costs, in tests too.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate name in guests/, const name in the host)
const GUESTS: &[(&str, &str)] = &[
    ("safetensors-header", "SAFETENSORS_HEADER"),
    ("raw-decoder", "RAW_DECODER"),
    ("image-decoder", "IMAGE_DECODER"),
    ("pickle-scan", "PICKLE_SCAN"),
    ("shard-index", "SHARD_INDEX"),
];

/// Guests only the tests use (`include_bytes!(concat!(env!("OUT_DIR"), "/hostile.wasm"))`): built
/// with the others, copied into OUT_DIR, never embedded in the library.
const TEST_GUESTS: &[&str] = &["hostile"];

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let mut watched = vec![
        "guests/Cargo.toml".to_string(),
        "guests/Cargo.lock".to_string(),
        "abi/src".to_string(),
        "abi/Cargo.toml".to_string(),
        // The pickle walker the `safetensors-header` and `pickle-scan` guests link (via the ABI).
        "crates/pickle-walk/src".to_string(),
        "crates/pickle-walk/Cargo.toml".to_string(),
        // The DNG opcode maps the `raw-decoder` guest links.
        "crates/dng-opcodes/src".to_string(),
        "crates/dng-opcodes/Cargo.toml".to_string(),
        "guests/picture/src".to_string(),
        "guests/picture/Cargo.toml".to_string(),
        // The patched rawler the `raw-decoder` guest links (guests/vendor/rawler/PATCHES.md).
        "guests/vendor/rawler/src".to_string(),
        "guests/vendor/rawler/Cargo.toml".to_string(),
    ];
    for name in GUESTS.iter().map(|(name, _)| *name).chain(TEST_GUESTS.iter().copied()) {
        watched.push(format!("guests/{name}/src"));
        watched.push(format!("guests/{name}/Cargo.toml"));
    }
    for path in watched {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=SANDLOAD_GUEST_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=SANDLOAD_GUEST_TOOLCHAIN");

    let target_dir = match env::var_os("SANDLOAD_GUEST_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => host_target_dir(&out_dir).unwrap_or_else(|| out_dir.clone()).join("sandload-guests"),
    };

    // By default the guests build with the host build's own toolchain. SANDLOAD_GUEST_TOOLCHAIN
    // names another rustup toolchain instead: fuzzing needs nightly for the host, but a nightly
    // may lack the wasm32-wasip1 target (fuzz/.cargo/config.toml sets "stable").
    let mut cmd = match env::var("SANDLOAD_GUEST_TOOLCHAIN") {
        Ok(toolchain) if !toolchain.is_empty() => {
            let mut cmd = Command::new("rustup");
            cmd.args(["run", &toolchain, "cargo"]);
            // Cargo points these at the host build's toolchain.
            for var in ["RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN", "CARGO"] {
                cmd.env_remove(var);
            }
            cmd
        }
        _ => Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into())),
    };
    cmd.arg("build")
        .arg("--release")
        .arg("--target=wasm32-wasip1")
        .arg("--manifest-path")
        .arg(root.join("guests/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    if env::var_os("CARGO_NET_OFFLINE").is_some() || Path::new(&root.join("guests/Cargo.lock")).exists() {
        cmd.arg("--locked");
    }
    for name in GUESTS.iter().map(|(name, _)| *name).chain(TEST_GUESTS.iter().copied()) {
        cmd.arg("-p").arg(name);
    }
    // The host build's flags (sanitizers under cargo-fuzz, coverage, a host --target) must not
    // leak into the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_TARGET_") && key.ends_with("_RUSTFLAGS") {
            cmd.env_remove(key);
        }
    }
    // Fixed-width SIMD (wasm 2.0, on in wasmtime by default) lets LLVM vectorize the decoders'
    // sample loops.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+simd128");

    let status = cmd.status().expect("failed to run cargo for the wasm guests");
    if !status.success() {
        panic!(
            "building the wasm guests failed ({status}). They need the wasm32-wasip1 target: \
             run `rustup target add wasm32-wasip1` (for this toolchain) and build again, or set \
             SANDLOAD_GUEST_TOOLCHAIN to a rustup toolchain that has it (e.g. `stable`)."
        );
    }

    let mut generated = String::new();
    for (name, konst) in GUESTS {
        let wasm = target_dir.join("wasm32-wasip1/release").join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.exists(), "guest {name} was built but {} is missing", wasm.display());
        writeln!(
            generated,
            "/// `guests/{name}` compiled for wasm32-wasip1.\npub const {konst}: &[u8] = include_bytes!({:?});",
            wasm.display().to_string()
        )
        .unwrap();
    }
    std::fs::write(out_dir.join("guests.rs"), generated).expect("write guests.rs");
    for name in TEST_GUESTS {
        let file = format!("{}.wasm", name.replace('-', "_"));
        std::fs::copy(target_dir.join("wasm32-wasip1/release").join(&file), out_dir.join(&file))
            .unwrap_or_else(|e| panic!("copying test guest {name}: {e}"));
    }
}

/// The host's target directory: the nearest ancestor of OUT_DIR that cargo marked with
/// CACHEDIR.TAG. Sharing it lets debug, release, bench and fuzz builds reuse one guest build.
fn host_target_dir(out_dir: &Path) -> Option<PathBuf> {
    out_dir.ancestors().find(|dir| dir.join("CACHEDIR.TAG").exists()).map(Path::to_path_buf)
}
