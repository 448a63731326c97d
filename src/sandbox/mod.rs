//! The wasmtime sandbox: one `Engine`, guests compiled once, one fresh `Store` per file.

//!
//! - [`guest`]: the catalogue of guests sandload ships.
//! - [`engine`]: the one wasmtime configuration and the deny-all WASI linker.
//! - [`compile`] (+ [`cache`]): each guest compiled (and pre-initialized) once per `Sandbox`.
//! - [`call`]: one guest call in a fresh `Store`, its limiter and cancellation, and how it fails.
//! - [`pool`]: the pooling allocator's slots, the semaphore over them, the epoch ticker.
//!
//! Checking what a guest returned is not done here but in `crate::verdict`.

mod cache;
mod call;
mod compile;
mod engine;
mod guest;
mod pool;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use wasmtime::{Engine, InstanceAllocationStrategy, InstancePre, Linker};

use self::cache::CompiledCache;
pub use self::cache::user_cache_dir;
use self::call::GuestState;
pub(crate) use self::call::GuestStats;
use self::compile::GuestSetupError;
use self::engine::{base_config, link_wasi};
pub use self::guest::Guest;
use self::pool::{Slots, Ticker};
use crate::error::{Error, Result};
use crate::input::DataAccess;
use crate::limits::Limits;

/// Runs sandload's parsers in wasmtime guests.
///
/// Built once per process (or per configuration) and shared: it owns the wasmtime `Engine`, each
/// guest compiled once (lazily, on first use) into an `InstancePre`, the pooling allocator, and the
/// [`Limits`]. Every file then runs in a fresh `Store` with the memory cap, the CPU deadline, no
/// environment, no arguments, no stdin, no network and no filesystem: the guest sees only the bytes
/// the host copies into its memory.
///
/// `Sandbox` is `Send + Sync` and cheap to clone (an `Arc`); use one from many threads.
///
/// ```
/// # fn main() -> sandload::Result<()> {
/// let sandbox = sandload::Sandbox::new()?;
/// let pickle = b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x01.".to_vec();
/// let err = sandbox.open_safetensors(sandload::Input::from_bytes(pickle, "model.safetensors")).unwrap_err();
/// assert_eq!(err.kind(), "refused_format");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
    /// Set when the caller gave up (an async caller dropped its future): calls on this handle do
    /// not start, and a running guest is interrupted at its next epoch tick. `None` for handles
    /// nobody can cancel.
    cancel: Option<Arc<AtomicBool>>,
}

struct Inner {
    engine: Engine,
    linker: Linker<GuestState>,
    limits: Limits,
    data_access: DataAccess,
    pooling: bool,
    /// How many guest calls one tiled file may be split into (1: never split).
    tile_calls: usize,
    /// Bytes of each pooled memory kept resident between files.
    keep_resident: usize,
    /// The wasm of each guest: bundled, or a replacement.
    modules: [Bytes; Guest::COUNT],
    guests: [OnceLock<std::result::Result<InstancePre<GuestState>, GuestSetupError>>; Guest::COUNT],
    slots: Slots,
    /// Decoded frames alive that own their guest's store (at most `slots.max`).
    frames: AtomicU32,
    cache: Option<CompiledCache>,
    _ticker: Ticker,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.inner.limits)
            .field("data_access", &self.inner.data_access)
            .field("pooling", &self.inner.pooling)
            .field("max_concurrent", &self.inner.slots.max)
            .field("keep_resident", &self.inner.keep_resident)
            .finish()
    }
}

/// Configures a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    limits: Limits,
    data_access: DataAccess,
    max_concurrent: Option<u32>,
    keep_resident: Option<usize>,
    pooling: bool,
    parallel_tiles: bool,
    cache_dir: Option<Arc<cap_std::fs::Dir>>,
    replacements: [Option<Bytes>; Guest::COUNT],
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        SandboxBuilder {
            limits: Limits::default(),
            data_access: DataAccess::default(),
            max_concurrent: None,
            keep_resident: None,
            pooling: true,
            parallel_tiles: true,
            cache_dir: None,
            replacements: Default::default(),
        }
    }
}

impl SandboxBuilder {
    /// Sets the limits. By default this is [`Limits::default()`].
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// Sets how accepted files' data reaches the caller. By default this is [`DataAccess::Map`].
    pub fn data_access(&mut self, access: DataAccess) -> &mut Self {
        self.data_access = access;
        self
    }

    /// Sets how many guests may run at once; further calls wait for a free slot. By default this
    /// is twice the number of CPUs (at least 4).
    pub fn max_concurrent(&mut self, n: u32) -> &mut Self {
        self.max_concurrent = Some(n.max(1));
        self
    }

    /// Sets how many bytes of each pooled slot's linear memory stay resident between files.
    ///
    /// A slot's memory is reset in place when a guest ends: up to this many bytes, only the pages
    /// the guest dirtied are re-zeroed (found with `PAGEMAP_SCAN` on Linux 6.7 and later) and
    /// stay mapped, so the next guest takes no page faults on them, and the pages of the RAW
    /// guest's camera catalogue that it only read stay mapped too; the rest is handed back to the
    /// kernel. Reset pages are zero (or the guest's pristine image): no file ever sees another's
    /// bytes, whatever this is set to.
    ///
    /// By default this is [`SandboxBuilder::DEFAULT_KEEP_RESIDENT`] (128 MiB) per slot: a RAW
    /// decode dirties about three times the file (72 MiB for a 12 MP DNG, 118 MiB for 24 MP), and
    /// keeping that resident cut a warm 12 MP decode from 33 ms to 11 ms and a 1 MP one from
    /// 1.6 ms to 0.6 ms (`cargo bench --bench raw`, rows `sandload` and `sandload-keep-2MiB`).
    /// A slot holds what its last guest dirtied, up to this: a few MiB for the checkpoint and
    /// image guests, up to all of it for RAW decodes. The pool has one slot per guest kind for
    /// each of [`max_concurrent`](SandboxBuilder::max_concurrent) calls, and wasmtime reuses a
    /// slot that last ran the same guest, so RAW-sized memory is held by at most as many slots as
    /// RAW decodes ever ran at once: about `max_concurrent x keep_resident` in the worst case
    /// (256 MiB on a 2-core machine that ran two decodes at once, 8 GiB on a 64-core server that
    /// ran 64, which is what those decodes use at their peak anyway). It is released when the
    /// `Sandbox` is dropped. Lower it (down to 2 MiB, enough for the checkpoint guests' stack and
    /// heap) where memory matters more than RAW latency. Rounded down to whole 64 KiB pages and
    /// to `guest_memory_bytes`; ignored without pooling.
    pub fn keep_resident(&mut self, bytes_per_slot: usize) -> &mut Self {
        self.keep_resident = Some(bytes_per_slot);
        self
    }

    /// The default bytes of each slot's memory kept resident between files (128 MiB).
    pub const DEFAULT_KEEP_RESIDENT: usize = 128 << 20;

    /// Uses wasmtime's pooling instance allocator (slots reserved up front, reused per file).
    /// Turning it off allocates each instance on demand, which is slower per file but reserves no
    /// address space. By default this is `true`.
    pub fn pooling(&mut self, enable: bool) -> &mut Self {
        self.pooling = enable;
        self
    }

    /// Decodes a tiled RAW file (a DNG of lossless-JPEG tiles, as cameras and Adobe's DNG
    /// converter write them) in several guest calls at once, each a band of tiles with the same
    /// limits, as native rawler decodes tiles on all cores; the host stitches the validated bands.
    /// Used for files of 1 MiB and more when more than one call can run. By default this is
    /// `true`; `false` decodes every file in one call.
    pub fn parallel_tiles(&mut self, enable: bool) -> &mut Self {
        self.parallel_tiles = enable;
        self
    }

    /// Caches compiled guests in `dir`, so that a new process's first file costs milliseconds
    /// instead of a compile (measured: ~400 ms -> a few ms for the safetensors guest). Entries are
    /// keyed by guest hash, wasmtime version and engine settings. By default there is no cache.
    ///
    /// # Security
    /// Cache entries are native code that wasmtime loads and runs without re-verifying it. Grant
    /// a directory that only the user running sandload can write; anyone who can write into it
    /// can run code in the host process.
    pub fn cache_dir(&mut self, dir: cap_std::fs::Dir) -> &mut Self {
        self.cache_dir = Some(Arc::new(dir));
        self
    }

    /// Runs `wasm` instead of the bundled module for `guest`: a build of the same guest with a
    /// patched or newer decoder (the RAW decoder links rawler, which is LGPL-2.1: this is how its
    /// users exercise the right to replace it), or your own implementation of the guest ABI
    /// (`sandload-abi`, [`Guest::bundled_wasm`] is the reference).
    ///
    /// A replacement is treated exactly like the bundled guest: same memory cap, deadline and
    /// deny-all WASI, and everything it returns is re-validated. It must export the ABI with the
    /// same [`ABI_VERSION`](sandload_abi::ABI_VERSION), or every call fails with
    /// [`Error::Internal`]. If it exports a Wizer initializer (`wizer-initialize`) it is
    /// pre-initialized like the bundled RAW decoder.
    ///
    /// ```
    /// # fn main() -> sandload::Result<()> {
    /// use sandload::{Guest, Sandbox};
    /// // e.g. std::fs::read("raw-decoder.wasm"); here, the bundled module itself.
    /// let wasm = Guest::RawDecoder.bundled_wasm().to_vec();
    /// let sandbox = Sandbox::builder().replace_guest(Guest::RawDecoder, wasm).build()?;
    /// # let _ = sandbox; Ok(()) }
    /// ```
    pub fn replace_guest(&mut self, guest: Guest, wasm: impl Into<Bytes>) -> &mut Self {
        self.replacements[guest.index()] = Some(wasm.into());
        self
    }

    /// Creates the sandbox: the engine, the linker and the epoch ticker. Guests compile on first
    /// use.
    ///
    /// # Errors
    /// [`Error::Internal`] if wasmtime cannot be configured (e.g. the address space for the pool
    /// cannot be reserved), or if `guest_memory_bytes` exceeds the 4 GiB a wasm32 guest can
    /// address.
    pub fn build(&self) -> Result<Sandbox> {
        let limits = self.limits.clone();
        limits.check_addressable()?;
        let max_concurrent = self.max_concurrent.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
            (cpus * 2).max(4)
        });
        let keep_resident = pool::whole_pages(self.keep_resident.unwrap_or(Self::DEFAULT_KEEP_RESIDENT), &limits);
        let mut config = base_config();
        config.epoch_interruption(true);
        if self.pooling {
            let pool = pool::pooling_config(max_concurrent, &limits, keep_resident);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| Error::Internal(format!("wasmtime engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        link_wasi(&mut linker).map_err(|e| Error::Internal(format!("linking WASI: {e:#}")))?;
        let ticker =
            Ticker::start(engine.clone()).map_err(|e| Error::Internal(format!("starting the epoch thread: {e}")))?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                linker,
                limits,
                data_access: self.data_access,
                pooling: self.pooling,
                // Read once: available_parallelism reads cgroup files on Linux.
                tile_calls: if self.parallel_tiles {
                    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                    cores.min(max_concurrent as usize)
                } else {
                    1
                },
                keep_resident,
                modules: std::array::from_fn(|i| {
                    self.replacements[i].clone().unwrap_or_else(|| Bytes::from_static(Guest::ALL[i].bundled_wasm()))
                }),
                guests: std::array::from_fn(|_| OnceLock::new()),
                slots: Slots::new(max_concurrent),
                frames: AtomicU32::new(0),
                cache: match &self.cache_dir {
                    Some(dir) => Some(CompiledCache::new(
                        dir.try_clone().map_err(|e| Error::Internal(format!("cache directory: {e}")))?,
                    )),
                    None => None,
                },
                _ticker: ticker,
            }),
            cancel: None,
        })
    }
}

impl Sandbox {
    /// A sandbox with default [`Limits`] and settings.
    ///
    /// # Errors
    /// See [`SandboxBuilder::build`].
    pub fn new() -> Result<Sandbox> {
        SandboxBuilder::default().build()
    }

    /// A sandbox with the given limits and default settings.
    ///
    /// # Errors
    /// See [`SandboxBuilder::build`].
    pub fn with_limits(limits: Limits) -> Result<Sandbox> {
        SandboxBuilder::default().limits(limits).build()
    }

    /// Starts configuring a sandbox.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// How many guests are running right now (at most the `max_concurrent` slots), e.g. for a
    /// service's metrics. A slot is held for exactly one guest call and released however the
    /// call ends (trap, timeout, out of memory, panic in the caller's extraction code).
    pub fn guests_running(&self) -> u32 {
        let free = *self.inner.slots.free.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.slots.max - free
    }

    /// How many decoded RAW frames alive right now keep their guest's memory instead of a copy
    /// (at most `max_concurrent`; see [`RawImage`](crate::RawImage)), e.g. for a service's
    /// memory metrics.
    pub fn frames_kept(&self) -> u32 {
        self.inner.frames.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The limits every file is held to.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub(crate) fn data_access(&self) -> DataAccess {
        self.inner.data_access
    }

    pub(crate) fn pooling(&self) -> bool {
        self.inner.pooling
    }

    /// How many guest calls one tiled file may be split into (1: not split).
    pub(crate) fn tile_calls(&self) -> usize {
        self.inner.tile_calls
    }

    /// This sandbox, with guest calls that stop once `flag` is set.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn cancellable(&self, flag: Arc<AtomicBool>) -> Sandbox {
        Sandbox { inner: Arc::clone(&self.inner), cancel: Some(flag) }
    }

    /// Compiles every guest now instead of on first use (e.g. at service start-up, so that the
    /// first request does not pay for compilation).
    ///
    /// # Errors
    /// [`Error::Internal`] if a guest does not compile or does not match this host's ABI.
    pub fn precompile(&self) -> Result<()> {
        for kind in Guest::ALL {
            self.guest(kind).map_err(|e| e.to_error(self, kind, Path::new("<precompile>")))?;
        }
        Ok(())
    }
}
