//! On-disk cache of compiled guests, so that first use costs milliseconds instead of a Cranelift
//! compile.
//!
//! Entries are keyed by the guest's wasm bytes (SHA-256), wasmtime's own engine compatibility
//! hash (version, target, every setting that affects code) and the sandload version, so a stale
//! entry is never loaded: it is simply a miss.

use std::hash::{Hash, Hasher};
use std::io::Write;

use cap_std::fs::Dir;
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// A directory of compiled guests. See [`SandboxBuilder::cache_dir`](crate::SandboxBuilder::cache_dir).
#[derive(Debug)]
pub(crate) struct CompiledCache {
    dir: Dir,
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
    /// failures (unreadable, unwritable, corrupt entry) fall back to compiling: they cost time,
    /// never correctness.
    /// `compile` produces the module on a miss (the entry is keyed by `wasm`, whatever
    /// `compile` does with it, e.g. pre-initialize it first).
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        guest: &str,
        wasm: &[u8],
        compile: impl FnOnce() -> wasmtime::Result<Module>,
    ) -> wasmtime::Result<Module> {
        let name = Self::entry_name(engine, guest, wasm);
        if let Ok(bytes) = self.dir.read(&name) {
            // SAFETY: `Module::deserialize` runs the native code in `bytes`. The entry was written
            // by `Module::serialize` of an engine with this exact compatibility hash, into a
            // directory the embedder granted for this purpose (see the `# Security` section of
            // `SandboxBuilder::cache_dir`); wasmtime also checks the header and engine settings.
            #[allow(unsafe_code)]
            if let Ok(module) = unsafe { Module::deserialize(engine, &bytes) } {
                return Ok(module);
            }
        }
        let module = compile()?;
        if let Ok(bytes) = module.serialize() {
            // Write then rename, so that a concurrent reader never sees a partial entry.
            let tmp = format!("{name}.tmp{}", std::process::id());
            let written = self.dir.create(&tmp).and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()));
            if written.is_ok() {
                let _ = self.dir.rename(&tmp, &self.dir, &name);
            } else {
                let _ = self.dir.remove_file(&tmp);
            }
        }
        Ok(module)
    }
}
