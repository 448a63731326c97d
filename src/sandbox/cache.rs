//! On-disk cache of compiled guests, so that first use costs milliseconds instead of a Cranelift
//! compile.
//!
//! Entries are keyed by the guest's wasm bytes (SHA-256), wasmtime's own engine compatibility
//! hash (version, target, every setting that affects code) and the sandload version, so a stale
//! entry is never loaded: it is simply a miss.
//!
//! An entry is native code that wasmtime maps and runs, so the cache trusts only what the
//! effective user alone could have written:
//!
//! - the directory must be owned by the effective user and not writable by group or others,
//!   checked on the open descriptor each time; otherwise the cache is not used at all (no read,
//!   no write);
//! - an entry is opened without following a symlink and without blocking (a FIFO planted at its
//!   name is refused), and must be a regular file owned by the effective user, not writable by
//!   group or others;
//! - an entry ends with the SHA-256 of its module bytes and a magic tag, checked before
//!   `Module::deserialize`: a torn, truncated or bit-flipped entry is a miss that recompiles and
//!   rewrites it;
//! - entries are written to an anonymous or unpredictably named `O_EXCL` file (cap-tempfile),
//!   mode 0600, synced, then renamed into place, so a planted name cannot redirect the write.
//!
//! The checksum is not a signature: it catches corruption and partial tampering, while the
//! ownership checks keep other users out.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};

use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt, PermissionsExt};
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// Ends every entry, after the SHA-256 of the module bytes before it.
const TRAILER_MAGIC: &[u8; 8] = b"SLCWASM1";
const TRAILER_LEN: usize = 32 + TRAILER_MAGIC.len();

/// The per-user cache of compiled guests that the CLI and the Python package use:
/// `$SANDLOAD_CACHE_DIR`, else `$XDG_CACHE_HOME/sandload`, else `~/.cache/sandload`, created 0700.
/// Pass it to [`SandboxBuilder::cache_dir`](crate::SandboxBuilder::cache_dir).
///
/// Returns `Ok(None)` when `SANDLOAD_CACHE_DIR=off`, or when there is no home directory or the
/// directory cannot be created (a cache only saves compile time); `Err(why)` when the directory
/// exists but is not trusted: not owned by the effective user, or writable by group or others
/// (checked on the opened directory, so renaming the path afterwards changes nothing). Callers
/// report `why` as a warning and go on without a cache.
///
/// # Ambient Authority
/// Reads the environment and opens a path from it: a process-wide policy, for programs (the CLI,
/// language bindings), not for libraries that were granted a directory.
pub fn user_cache_dir(ambient: cap_std::AmbientAuthority) -> Result<Option<Dir>, String> {
    use std::os::unix::fs::DirBuilderExt;
    use std::path::PathBuf;
    let path = match std::env::var_os("SANDLOAD_CACHE_DIR") {
        Some(v) if v == "off" => return Ok(None),
        Some(v) => PathBuf::from(v),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(x) if !x.is_empty() => PathBuf::from(x).join("sandload"),
            _ => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".cache/sandload"),
                None => return Ok(None),
            },
        },
    };
    if std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&path).is_err() {
        return Ok(None);
    }
    let Ok(dir) = Dir::open_ambient_dir(&path, ambient) else { return Ok(None) };
    let Ok(meta) = dir.dir_metadata() else { return Ok(None) };
    match check_private(&meta) {
        Ok(()) => Ok(Some(dir)),
        Err(why) => Err(format!("not using the compiled-guest cache {}: it is {why}", path.display())),
    }
}

/// A directory of compiled guests. See [`SandboxBuilder::cache_dir`](crate::SandboxBuilder::cache_dir).
#[derive(Debug)]
pub(crate) struct CompiledCache {
    dir: Dir,
}

/// Why a cache directory or entry is not trusted, or `Ok` when it is: owned by the effective
/// user and not writable by group or others.
pub(crate) fn check_private(meta: &cap_std::fs::Metadata) -> Result<(), &'static str> {
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err("not owned by the current user");
    }
    if meta.mode() & 0o022 != 0 {
        return Err("writable by group or others");
    }
    Ok(())
}

impl CompiledCache {
    pub(crate) fn new(dir: Dir) -> Self {
        CompiledCache { dir }
    }

    fn entry_name(engine: &Engine, guest: &str, wasm: &[u8]) -> String {
        // SipHash with fixed keys over wasmtime's compatibility hash: stable within one build of
        // sandload, which is all a cache key needs (a different build misses and recompiles).
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        let wasm_hash: String = Sha256::digest(wasm).iter().take(12).map(|b| format!("{b:02x}")).collect();
        format!("{guest}-{wasm_hash}-{:016x}.cwasm", h.finish())
    }

    /// Loads a guest compiled by an earlier run, or compiles it and stores the result. Cache
    /// failures (untrusted directory, unreadable, unwritable, corrupt or foreign entry) fall back
    /// to compiling: they cost time, never correctness.
    /// `compile` produces the module on a miss (the entry is keyed by `wasm`, whatever
    /// `compile` does with it, e.g. pre-initialize it first).
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        guest: &str,
        wasm: &[u8],
        compile: impl FnOnce() -> wasmtime::Result<Module>,
    ) -> wasmtime::Result<Module> {
        if self.dir.dir_metadata().map_err(|_| "unreadable").and_then(|m| check_private(&m)).is_err() {
            return compile();
        }
        let name = Self::entry_name(engine, guest, wasm);
        if let Some(module_bytes) = self.read_entry(&name) {
            // SAFETY: `Module::deserialize` runs the native code in `module_bytes`. They were
            // written by `Module::serialize` of an engine with this exact compatibility hash,
            // into a directory only the effective user can write, as a file only that user owns
            // and can write, and they match the SHA-256 stored with them (see the module docs);
            // wasmtime also checks the header and engine settings.
            #[allow(unsafe_code)]
            if let Ok(module) = unsafe { Module::deserialize(engine, &module_bytes) } {
                return Ok(module);
            }
        }
        let module = compile()?;
        if let Ok(bytes) = module.serialize() {
            let _ = self.write_entry(&name, &bytes);
        }
        Ok(module)
    }

    /// The module bytes of entry `name`, if it is a private regular file whose checksum matches.
    fn read_entry(&self, name: &str) -> Option<Vec<u8>> {
        use rustix::fs::OFlags;
        let mut options = OpenOptions::new();
        options.read(true).custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32);
        let mut file = self.dir.open_with(name, &options).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || check_private(&meta).is_err() {
            return None;
        }
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(usize::try_from(meta.len()).ok()?).ok()?;
        file.read_to_end(&mut bytes).ok()?;
        let body_len = bytes.len().checked_sub(TRAILER_LEN)?;
        let (body, trailer) = bytes.split_at(body_len);
        let (digest, magic) = trailer.split_at(32);
        if magic != TRAILER_MAGIC || Sha256::digest(body).as_slice() != digest {
            return None;
        }
        bytes.truncate(body_len);
        Some(bytes)
    }

    /// Writes `module_bytes` plus their checksum as entry `name`, atomically.
    fn write_entry(&self, name: &str, module_bytes: &[u8]) -> std::io::Result<()> {
        // Anonymous (O_TMPFILE) or randomly named with O_EXCL, linked under a fresh random name
        // and renamed over `name`: a concurrent reader sees the old entry or the whole new one.
        let mut tmp = cap_tempfile::TempFile::new(&self.dir)?;
        tmp.as_file().set_permissions(cap_std::fs::Permissions::from_mode(0o600))?;
        tmp.write_all(module_bytes)?;
        tmp.write_all(&Sha256::digest(module_bytes))?;
        tmp.write_all(TRAILER_MAGIC)?;
        tmp.as_file().sync_all()?;
        tmp.replace(name)?;
        // The directory handle may be `O_PATH`, which cannot be synced: open it for reading.
        let dir = rustix::fs::openat(
            &self.dir,
            ".",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        rustix::fs::fsync(&dir)?;
        Ok(())
    }
}
