//! The wasmtime sandbox: one `Engine`, guests compiled once, one fresh `Store` per file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sandload_abi::exports;
use wasmparser::WasmFeatures;
use wasmtime::{
    Caller, Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::cache::CompiledCache;
use crate::error::{Error, Result, printable};
use crate::input::DataAccess;
use crate::limits::Limits;
use crate::receipt::{Outcome, Receipt};
use crate::sniff::Format;

mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// WebAssembly's page size: memory sizes are multiples of it.
const WASM_PAGE: usize = 64 << 10;
/// How often the epoch ticker advances; a guest is stopped at most about one tick after its
/// `guest_time` (never before it: the deadline callback checks the clock).
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Bytes of guest stderr kept (guests only write panic messages there).
const STDERR_CAPACITY: usize = 16 * 1024;
/// Bytes of each pooled table reset in place rather than decommitted.
const TABLE_KEEP_RESIDENT: usize = 2 << 20;
/// Function-table elements a guest may grow to (compiled Rust guests need a few thousand).
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Epoch ticks that stand for "no deadline": 2^48 ticks of 5 ms is ~44,000 years, and adding it to
/// the engine's epoch cannot overflow (wasmtime adds without checking).
const MAX_DEADLINE_TICKS: u64 = 1 << 48;
/// Native stack one guest call may use for wasm frames (wasmtime's `max_wasm_stack`; its default,
/// set explicitly because [`STACK_RED_ZONE`] is derived from it). Deeper recursion is a trap
/// ("call stack exhausted").
const MAX_WASM_STACK: usize = 512 << 10;
/// Stack a guest call needs left on the calling thread: the wasm stack plus the host frames below
/// and above it (wasmtime's entry and trap handling, WASI host functions). A thread with less left
/// (a small `std::thread::Builder::stack_size`, deep caller recursion) runs the call on a fresh
/// [`GUEST_CALL_STACK`]-byte segment instead, so a guest's recursion can never overflow the
/// caller's stack.
const STACK_RED_ZONE: usize = MAX_WASM_STACK + (512 << 10);
/// Size of that fresh stack segment (allocated only when the caller's stack is short).
const GUEST_CALL_STACK: usize = MAX_WASM_STACK + (2 << 20);
/// Bytes of response any guest may return regardless of its input, on top of what the input can
/// justify (see [`max_response_bytes`]). Responses describe inputs (tensor tables, frame metadata,
/// pickle summaries); bulk output (pixels) is never in the response but in guest-memory regions
/// the host bounds-checks separately.
const RESPONSE_BASE_BYTES: usize = 64 << 20;

/// The largest response the host accepts from a guest given `input_len` bytes of input, before it
/// copies or decodes anything: [`RESPONSE_BASE_BYTES`] plus twice the input, the input counting at
/// most `max_header_bytes`. The only response that legitimately grows with its input is the
/// safetensors tensor table, which is smaller than the JSON header it came from (names copied,
/// numbers as varints); everything else is metadata of a bounded size. With the default limits
/// this is 64 MiB + 200 MB, whatever the guest's memory cap.
fn max_response_bytes(limits: &Limits, input_len: usize) -> usize {
    let input = (input_len as u64).min(limits.max_header_bytes);
    let allowed = (RESPONSE_BASE_BYTES as u64).saturating_add(input.saturating_mul(2));
    usize::try_from(allowed).unwrap_or(usize::MAX)
}

/// The wasm proposals a guest may use; modules using anything else are refused at compile time.
/// Exactly what rustc's `wasm32-wasip1` output needs (checked against every bundled guest with
/// `wasmparser::Validator`): WebAssembly 2.0 (SIMD is used by the decoders; reference types only
/// for the multi-byte table index rustc writes in `call_indirect`, and a second table is refused
/// by [`GuestLimiter::tables`]). Off: multi-memory, memory64, threads and shared memory, GC,
/// function references, exceptions, tail calls, relaxed SIMD, extended constants, custom page
/// sizes, wide arithmetic, stack switching and the component model.
const GUEST_WASM_FEATURES: WasmFeatures = WasmFeatures::FLOATS
    .union(WasmFeatures::MUTABLE_GLOBAL)
    .union(WasmFeatures::SIGN_EXTENSION)
    .union(WasmFeatures::SATURATING_FLOAT_TO_INT)
    .union(WasmFeatures::MULTI_VALUE)
    .union(WasmFeatures::BULK_MEMORY)
    .union(WasmFeatures::REFERENCE_TYPES)
    .union(WasmFeatures::SIMD);

/// The one base [`Config`] of every engine sandload builds (the main engine, pooled or not, the
/// Wizer pre-initialisation engine, the one that reads a module's memory minimum), so that the
/// wasm features they accept and the stack they give wasm cannot drift apart.
fn base_config() -> Config {
    let mut config = Config::new();
    // Everything off, then exactly what guests need on.
    config.wasm_features(WasmFeatures::all(), false);
    config.wasm_features(GUEST_WASM_FEATURES, true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config
}

/// Adds deny-all WASI preview 1 to `linker`, with the calls that would block the host thread
/// replaced: `poll_oneoff` (how `std::thread::sleep` and any wait on a clock or descriptor reach
/// the host; wasmtime-wasi would sleep the calling thread, where no epoch deadline can stop it)
/// traps, and `sched_yield` returns at once. A guest call therefore either runs wasm, where the
/// epoch deadline applies, or returns from the host promptly.
fn link_wasi(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    wasmtime_wasi::p1::add_to_linker_sync(linker, |s: &mut GuestState| &mut s.wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |_: Caller<'_, GuestState>, _subs: i32, _events: i32, _n: i32, _nevents: i32| -> wasmtime::Result<i32> {
            Err(wasmtime::Error::msg("poll_oneoff: guests may not sleep or wait (it would hold the host thread)"))
        },
    )?;
    linker.func_wrap(WASI, "sched_yield", |_: Caller<'_, GuestState>| -> i32 { 0 })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The guests sandload ships. Each parses one kind of untrusted input in its own wasm module,
/// which [`SandboxBuilder::replace_guest`] can swap for another build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Guest {
    /// `guests/safetensors-header`.
    SafetensorsHeader,
    /// `guests/raw-decoder` (rawler).
    RawDecoder,
    /// `guests/image-decoder` (the image crate).
    ImageDecoder,
    /// `guests/pickle-scan`: describes refused pickles (what they would import and call).
    PickleScan,
    /// `guests/shard-index`: parses a sharded checkpoint's `model.safetensors.index.json`.
    ShardIndex,
}

impl Guest {
    const COUNT: usize = 5;

    /// Every guest.
    pub const ALL: [Guest; Guest::COUNT] =
        [Guest::SafetensorsHeader, Guest::RawDecoder, Guest::ImageDecoder, Guest::PickleScan, Guest::ShardIndex];

    /// The guest's name, as in errors and receipts (its crate name under `guests/`).
    pub fn name(self) -> &'static str {
        match self {
            Guest::SafetensorsHeader => "safetensors-header",
            Guest::RawDecoder => "raw-decoder",
            Guest::ImageDecoder => "image-decoder",
            Guest::PickleScan => "pickle-scan",
            Guest::ShardIndex => "shard-index",
        }
    }

    /// The wasm module built from `guests/` and embedded in this crate: what runs unless
    /// [`SandboxBuilder::replace_guest`] says otherwise. Distributors can ship it as a file (e.g.
    /// `sandload guest-wasm raw-decoder -o raw-decoder.wasm`), see the README's licensing section.
    pub fn bundled_wasm(self) -> &'static [u8] {
        match self {
            Guest::SafetensorsHeader => artifacts::SAFETENSORS_HEADER,
            Guest::RawDecoder => artifacts::RAW_DECODER,
            Guest::ImageDecoder => artifacts::IMAGE_DECODER,
            Guest::PickleScan => artifacts::PICKLE_SCAN,
            Guest::ShardIndex => artifacts::SHARD_INDEX,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Decodes this guest's response bytes; bytes that are not a response are the guest
    /// breaking the protocol, so a trap.
    pub(crate) fn decode_response<T: serde::de::DeserializeOwned>(self, response: &[u8], file: &Path) -> Result<T> {
        sandload_abi::decode(response).map_err(|e| Error::GuestTrap {
            file: file.to_path_buf(),
            guest: self.name(),
            message: format!("response does not decode: {e}"),
        })
    }
}

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
}

struct Inner {
    engine: Engine,
    linker: Linker<GuestState>,
    limits: Limits,
    data_access: DataAccess,
    pooling: bool,
    /// Bytes of each pooled memory kept resident between files.
    keep_resident: usize,
    /// The wasm of each guest: bundled, or a replacement.
    modules: [Bytes; Guest::COUNT],
    guests: [OnceLock<std::result::Result<InstancePre<GuestState>, GuestSetupError>>; Guest::COUNT],
    slots: Slots,
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
    /// cannot be reserved), or if `guest_memory_bytes` exceeds 4 GiB.
    pub fn build(&self) -> Result<Sandbox> {
        let limits = self.limits.clone();
        if limits.guest_memory_bytes > Limits::MAX_GUEST_MEMORY_BYTES {
            return Err(Error::Internal(format!(
                "guest_memory_bytes {} exceeds the 4 GiB a wasm32 guest can address",
                limits.guest_memory_bytes
            )));
        }
        let max_concurrent = self.max_concurrent.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
            (cpus * 2).max(4)
        });
        let keep_resident =
            self.keep_resident.unwrap_or(Self::DEFAULT_KEEP_RESIDENT).min(limits.guest_memory_bytes as usize)
                / WASM_PAGE
                * WASM_PAGE;
        let mut config = base_config();
        config.epoch_interruption(true);
        if self.pooling {
            // A slot per guest kind for every concurrent call: wasmtime reuses a slot that last
            // ran the same module (its memory image still mapped, its pages still resident), so
            // with fewer slots, callers alternating between guests evict each other's warm slots
            // and every call starts cold. Unused slots are address space only (no memory).
            let slots = max_concurrent.saturating_mul(Guest::COUNT as u32);
            let mut pool = PoolingAllocationConfig::new();
            pool.total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
                .max_memory_size(limits.guest_memory_bytes as usize)
                .table_elements(MAX_TABLE_ELEMENTS)
                // Reset reused slots in place (only the pages the last guest dirtied, found with
                // PAGEMAP_SCAN on Linux >= 6.7) instead of decommitting them: the next guest then
                // takes no page faults on its stack and heap. Measured: 118 us -> 31 us per tiny
                // checkpoint with 2 MiB; see `keep_resident` for RAW-sized memories. The scan
                // reports at most 32 dirty regions, past which wasmtime decommits the rest: the
                // RAW guest's allocator keeps its dirty pages contiguous for that reason.
                .linear_memory_keep_resident(keep_resident)
                .table_keep_resident(TABLE_KEEP_RESIDENT)
                .pagemap_scan(wasmtime::Enabled::Auto);
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
                keep_resident,
                modules: std::array::from_fn(|i| {
                    self.replacements[i].clone().unwrap_or_else(|| Bytes::from_static(Guest::ALL[i].bundled_wasm()))
                }),
                guests: std::array::from_fn(|_| OnceLock::new()),
                slots: Slots::new(max_concurrent),
                cache: match &self.cache_dir {
                    Some(dir) => Some(CompiledCache::new(
                        dir.try_clone().map_err(|e| Error::Internal(format!("cache directory: {e}")))?,
                    )),
                    None => None,
                },
                _ticker: ticker,
            }),
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

    /// The limits every file is held to.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub(crate) fn data_access(&self) -> DataAccess {
        self.inner.data_access
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

    fn guest(&self, kind: Guest) -> std::result::Result<&InstancePre<GuestState>, &GuestSetupError> {
        let slot = &self.inner.guests[kind.index()];
        // Compiling and pre-initializing run guest code and deep compiler frames: on a stack of
        // known size if the caller's is short, like every guest call.
        slot.get_or_init(|| stacker::maybe_grow(STACK_RED_ZONE, GUEST_CALL_STACK, || self.prepare(kind))).as_ref()
    }

    /// Compiles, checks and links one guest (once per Sandbox, see [`Sandbox::guest`]).
    fn prepare(&self, kind: Guest) -> std::result::Result<InstancePre<GuestState>, GuestSetupError> {
        let other = |msg: String| GuestSetupError::Other(msg);
        // Compile without the pool's constraints first so that a memory cap smaller than the
        // guest's own minimum is reported as such, not as a compile failure.
        let module = match &self.inner.cache {
            Some(cache) => {
                cache.load_or_compile(&self.inner.engine, kind.name(), self.wasm(kind), || self.compile(kind))
            }
            None => self.compile(kind),
        };
        let module = match module {
            Ok(m) => m,
            Err(e) => {
                let needed = minimum_memory(self.wasm(kind));
                return Err(match needed {
                    Some(needed) if needed > self.inner.limits.guest_memory_bytes => {
                        GuestSetupError::MemoryTooSmall { needed }
                    }
                    _ => other(format!("compiling {}: {e:#}", kind.name())),
                });
            }
        };
        for export in module.exports() {
            if let wasmtime::ExternType::Memory(m) = export.ty() {
                let needed = m.minimum().saturating_mul(m.page_size());
                if needed > self.inner.limits.guest_memory_bytes {
                    return Err(GuestSetupError::MemoryTooSmall { needed });
                }
            }
        }
        for name in [exports::MEMORY, exports::ABI_VERSION, exports::ALLOC, exports::CALL] {
            if module.get_export(name).is_none() {
                return Err(other(format!("guest {} does not export {name}", kind.name())));
            }
        }
        self.inner.linker.instantiate_pre(&module).map_err(|e| other(format!("linking {}: {e:#}", kind.name())))
    }

    /// Compiles a guest. A guest that asks for it is first pre-initialized with Wizer: its
    /// initializer runs once, here, in an instance with the same memory cap and deny-all WASI as
    /// any other (no file input), and the resulting memory and globals become the data segments
    /// of the module every file's instance then starts from. For the RAW decoder this moves
    /// rawler's camera-catalogue parse (~50 ms of every decode) out of every file, at the price
    /// of a second compile (~4 s once; the disk cache keeps the result).
    ///
    /// The initializer runs on a throwaway engine: unoptimized code (it runs once), bounded by
    /// fuel rather than the epoch ticker, which belongs to the main engine.
    fn wasm(&self, kind: Guest) -> &[u8] {
        &self.inner.modules[kind.index()]
    }

    fn compile(&self, kind: Guest) -> wasmtime::Result<Module> {
        let wizer = wasmtime_wizer::Wizer::new();
        let wasm = self.wasm(kind);
        if !exports_function(wasm, wizer.get_init_func()) {
            return Module::new(&self.inner.engine, wasm);
        }
        let (cx, instrumented) = wizer.instrument(wasm)?;
        let init_engine = Engine::new(base_config().cranelift_opt_level(wasmtime::OptLevel::None).consume_fuel(true))?;
        let module = Module::new(&init_engine, &instrumented)?;
        let wasi = WasiCtxBuilder::new().build_p1();
        let cap = self.inner.limits.guest_memory_bytes as usize;
        let mut store = Store::new(&init_engine, GuestState { wasi, limiter: GuestLimiter::new(cap) });
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(INITIALIZER_FUEL)?;
        let mut linker = Linker::new(&init_engine);
        link_wasi(&mut linker)?;
        let instance = stacker::maybe_grow(STACK_RED_ZONE, GUEST_CALL_STACK, || -> wasmtime::Result<_> {
            let instance = linker.instantiate(&mut store, &module)?;
            if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, exports::INITIALIZE) {
                init.call(&mut store, ())?;
            }
            instance.get_typed_func::<(), ()>(&mut store, wizer.get_init_func())?.call(&mut store, ())?;
            Ok(instance)
        })?;
        let mut state = Snapshotter { store: &mut store, instance };
        let wasm = run_ready(wizer.snapshot(&cx, &mut state))
            .ok_or_else(|| wasmtime::Error::msg("Wizer snapshot did not complete synchronously"))??;
        Module::new(&self.inner.engine, &wasm)
    }

    /// Runs one guest call in a fresh store: writes `request` and `payload` into the guest,
    /// calls it, and hands `extract` the response bytes and the whole guest memory before the
    /// instance is dropped, so that bulk output (decoded pixels) can be copied out once, straight
    /// from where the guest left it. `extract` must treat both as hostile. Records what happened
    /// in `stats`.
    pub(crate) fn call_with<T>(
        &self,
        kind: Guest,
        file: &Path,
        request: &[u8],
        payload: &[u8],
        stats: &mut GuestStats,
        extract: impl FnOnce(&[u8], &[u8]) -> Result<T>,
    ) -> Result<T> {
        stats.guest = Some(kind.name());
        let pre = self.guest(kind).map_err(|e| e.to_error(self, kind, file))?;
        // An async caller that dropped its future (feature `tokio`): do not start, or stop at the
        // next tick.
        #[cfg(feature = "tokio")]
        let cancel = crate::async_api::cancel_flag();
        #[cfg(not(feature = "tokio"))]
        let cancel: Option<Arc<std::sync::atomic::AtomicBool>> = None;
        let is_cancelled = |c: &Option<Arc<std::sync::atomic::AtomicBool>>| {
            c.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        };
        if is_cancelled(&cancel) {
            return Err(cancelled(file));
        }
        let _slot = self.inner.slots.acquire();
        if is_cancelled(&cancel) {
            return Err(cancelled(file));
        }
        let started = Instant::now();
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // Deny-by-default WASI: no args, env, stdin, preopens or sockets; stderr into memory.
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build_p1();
        let cap = self.inner.limits.guest_memory_bytes as usize;
        let mut store = Store::new(&self.inner.engine, GuestState { wasi, limiter: GuestLimiter::new(cap) });
        store.limiter(|s| &mut s.limiter);
        // Ticks only say when to look at the clock: the tick in progress when the store starts
        // may be nearly over, and the ticker can be late. The clock decides, so a guest is never
        // stopped before `guest_time` and at most about one tick after it.
        let guest_time = self.inner.limits.guest_time;
        // A cancellable (async) call looks at its flag every tick; others only at the deadline.
        let watch = cancel.clone();
        let ticks = move |ticks: u64| if watch.is_some() { 1 } else { ticks };
        store.set_epoch_deadline(ticks(ticks_for(guest_time)));
        // A `guest_time` too large to add to the clock (e.g. `Duration::MAX`) means no deadline;
        // the ticks then only wake the callback every MAX_DEADLINE_TICKS.
        let deadline = started.checked_add(guest_time);
        let flag = cancel.clone();
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now();
            if is_cancelled(&flag) {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(match deadline {
                Some(deadline) if now >= deadline => UpdateDeadline::Interrupt,
                Some(deadline) => UpdateDeadline::Continue(ticks(ticks_for(deadline - now))),
                None => UpdateDeadline::Continue(ticks(MAX_DEADLINE_TICKS)),
            })
        });

        let max_response = max_response_bytes(&self.inner.limits, payload.len());
        // On a stack of known size if the caller's is short: see STACK_RED_ZONE.
        let result = stacker::maybe_grow(STACK_RED_ZONE, GUEST_CALL_STACK, || {
            run_call(&mut store, pre, request, payload, max_response)
        });
        // A file may take several guest calls (a pickle walked after the header guest refused
        // it, a RAW file retried as a picture): the receipt sums their time and keeps the peak.
        stats.guest_time += started.elapsed();
        stats.peak_memory_bytes = stats.peak_memory_bytes.max(store.data().limiter.peak as u64);
        if is_cancelled(&cancel) {
            return Err(cancelled(file));
        }
        let (memory, response) =
            result.map_err(|failure| self.classify(failure, kind, file, &store.data().limiter, &stderr))?;
        let data = memory.data(&store);
        // run_call checked the range against this same memory, which has not changed since.
        extract(&data[response], data)
    }

    fn classify(
        &self,
        failure: CallFailure,
        kind: Guest,
        file: &Path,
        limiter: &GuestLimiter,
        stderr: &MemoryOutputPipe,
    ) -> Error {
        let file = file.to_path_buf();
        let guest = kind.name();
        if let Some(requested) = limiter.denied {
            return Error::GuestOutOfMemory {
                file,
                guest,
                limit: self.inner.limits.guest_memory_bytes,
                requested: requested as u64,
            };
        }
        match failure {
            CallFailure::Wasm(e) => {
                if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
                    return Error::GuestTimeout { file, guest, limit: self.inner.limits.guest_time };
                }
                let panic = printable(String::from_utf8_lossy(&stderr.contents()).trim());
                let message = if panic.is_empty() { format!("{e:#}") } else { format!("{e}; guest said: {panic}") };
                Error::GuestTrap { file, guest, message }
            }
            CallFailure::Protocol(message) => Error::GuestTrap { file, guest, message: printable(&message) },
            CallFailure::Setup(message) => Error::Internal(format!("{guest}: {message}")),
        }
    }
}

/// Why a guest could not be prepared. Kept per Sandbox: its limits do not change.
#[derive(Debug)]
enum GuestSetupError {
    /// The guest's initial memory alone exceeds `guest_memory_bytes`.
    MemoryTooSmall { needed: u64 },
    /// Compilation or linking failed: a bug, not a property of any file.
    Other(String),
}

impl GuestSetupError {
    fn to_error(&self, sandbox: &Sandbox, kind: Guest, file: &Path) -> Error {
        match self {
            GuestSetupError::MemoryTooSmall { needed } => Error::GuestOutOfMemory {
                file: file.to_path_buf(),
                guest: kind.name(),
                limit: sandbox.inner.limits.guest_memory_bytes,
                requested: *needed,
            },
            GuestSetupError::Other(message) => Error::Internal(message.clone()),
        }
    }
}

/// Whether `wasm` exports a function named `name` (read from the export section; a module that
/// does not parse simply fails its compile later).
fn exports_function(wasm: &[u8], name: &str) -> bool {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::ExportSection(exports)) => {
                return exports
                    .into_iter()
                    .flatten()
                    .any(|e| e.name == name && e.kind == wasmparser::ExternalKind::Func);
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// The initial size of a module's first memory, read with a module compiled outside the pool.
fn minimum_memory(wasm: &[u8]) -> Option<u64> {
    let engine = Engine::new(base_config().epoch_interruption(true)).ok()?;
    let module = Module::new(&engine, wasm).ok()?;
    module.exports().find_map(|e| match e.ty() {
        wasmtime::ExternType::Memory(m) => Some(m.minimum().saturating_mul(m.page_size())),
        _ => None,
    })
}

/// What one guest call cost, for [`Receipt`]s.
#[derive(Debug, Clone, Default)]
pub(crate) struct GuestStats {
    pub guest: Option<&'static str>,
    pub peak_memory_bytes: u64,
    pub guest_time: Duration,
}

impl GuestStats {
    pub(crate) fn receipt<T>(
        &self,
        sandbox: &Sandbox,
        file: PathBuf,
        format: Format,
        started: Instant,
        result: &Result<T>,
    ) -> Receipt {
        let receipt = Receipt {
            file,
            format,
            guest: self.guest,
            limits: sandbox.inner.limits.clone(),
            pooling: sandbox.inner.pooling,
            guest_peak_memory_bytes: self.peak_memory_bytes,
            guest_time: self.guest_time,
            total_time: started.elapsed(),
            outcome: match result {
                Ok(_) => Outcome::Accepted,
                Err(e) => Outcome::Rejected { kind: e.kind() },
            },
        };
        #[cfg(feature = "tracing")]
        crate::trace::file(&receipt, result.as_ref().err());
        receipt
    }
}

enum CallFailure {
    /// A trap, an exit, or a host-function error from wasmtime.
    Wasm(wasmtime::Error),
    /// The guest broke the ABI (bad pointer, bad length): treated as a crash.
    Protocol(String),
    /// The sandbox could not be set up (not the file's fault).
    Setup(String),
}

/// Runs the guest; returns its memory and the (bounds-checked) byte range of its response, at
/// most `max_response` bytes long.
fn run_call(
    store: &mut Store<GuestState>,
    pre: &InstancePre<GuestState>,
    request: &[u8],
    payload: &[u8],
    max_response: usize,
) -> std::result::Result<(wasmtime::Memory, std::ops::Range<usize>), CallFailure> {
    use CallFailure::{Protocol, Setup, Wasm};
    let instance = pre.instantiate(&mut *store).map_err(|e| {
        // Instantiation fails for the file's sake only through the memory cap (handled by the
        // caller via the limiter); anything else is an environment problem.
        if store.data().limiter.denied.is_some() { Wasm(e) } else { Setup(format!("instantiate: {e:#}")) }
    })?;
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, exports::INITIALIZE) {
        init.call(&mut *store, ()).map_err(Wasm)?;
    }
    let version = instance
        .get_typed_func::<(), u32>(&mut *store, exports::ABI_VERSION)
        .map_err(|e| Setup(format!("{e:#}")))?
        .call(&mut *store, ())
        .map_err(Wasm)?;
    if version != sandload_abi::ABI_VERSION {
        return Err(Setup(format!("guest ABI version {version}, host expects {}", sandload_abi::ABI_VERSION)));
    }
    let memory = instance.get_memory(&mut *store, exports::MEMORY).ok_or_else(|| Setup("no memory export".into()))?;
    let alloc =
        instance.get_typed_func::<u32, u32>(&mut *store, exports::ALLOC).map_err(|e| Setup(format!("{e:#}")))?;
    let call = instance
        .get_typed_func::<(u32, u32, u32, u32), u64>(&mut *store, exports::CALL)
        .map_err(|e| Setup(format!("{e:#}")))?;

    let mut place = |bytes: &[u8]| -> std::result::Result<(u32, u32), CallFailure> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| Protocol(format!("input of {} bytes exceeds 4 GiB", bytes.len())))?;
        let ptr = alloc.call(&mut *store, len).map_err(Wasm)?;
        if ptr == 0 {
            return Err(Protocol(format!("guest could not allocate {len} bytes for its input")));
        }
        memory
            .write(&mut *store, ptr as usize, bytes)
            .map_err(|_| Protocol(format!("guest returned an out-of-bounds buffer {ptr:#x}+{len}")))?;
        Ok((ptr, len))
    };
    let (req_ptr, req_len) = place(request)?;
    let (data_ptr, data_len) = place(payload)?;
    let packed = call.call(&mut *store, (req_ptr, req_len, data_ptr, data_len)).map_err(Wasm)?;
    // Tainted: the guest chose these numbers.
    let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
    // Before anything copies or decodes it: a response is host memory once it is decoded.
    if len > max_response {
        return Err(Protocol(format!("response too large: {len} bytes, more than the {max_response} allowed")));
    }
    let size = memory.data_size(&*store);
    let end = ptr.checked_add(len).ok_or_else(|| Protocol("response pointer overflows".into()))?;
    if end > size {
        return Err(Protocol(format!("response {ptr:#x}+{len} lies outside guest memory ({size} bytes)")));
    }
    Ok((memory, ptr..end))
}

/// Fuel for a guest's Wizer initializer: rawler's catalogue parse uses ~360 M; 30x headroom.
const INITIALIZER_FUEL: u64 = 10_000_000_000;

/// Lets Wizer read a pre-initialized instance's state (exported globals and memories).
struct Snapshotter<'a> {
    store: &'a mut Store<GuestState>,
    instance: wasmtime::Instance,
}

impl wasmtime_wizer::InstanceState for Snapshotter<'_> {
    fn global_get(
        &mut self,
        name: &str,
        _type_hint: wasmtime_wizer::ValType,
    ) -> impl Future<Output = wasmtime_wizer::SnapshotVal> + Send {
        use wasmtime_wizer::SnapshotVal;
        // Wizer asks only for globals its instrumentation exported from our own guest.
        let global = self.instance.get_global(&mut *self.store, name).expect("instrumented global");
        std::future::ready(match global.get(&mut *self.store) {
            wasmtime::Val::I32(v) => SnapshotVal::I32(v),
            wasmtime::Val::I64(v) => SnapshotVal::I64(v),
            wasmtime::Val::F32(bits) => SnapshotVal::F32(bits),
            wasmtime::Val::F64(bits) => SnapshotVal::F64(bits),
            wasmtime::Val::V128(v) => SnapshotVal::V128(v.as_u128()),
            other => panic!("global {name} has a type Wizer cannot snapshot: {other:?}"),
        })
    }

    fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) -> impl Future<Output = ()> + Send {
        let memory = self.instance.get_memory(&mut *self.store, name).expect("instrumented memory");
        contents(memory.data(&*self.store));
        std::future::ready(())
    }
}

/// Polls a future that never waits (Wizer's snapshot over [`Snapshotter`], whose futures are all
/// ready) to completion; `None` if it would have waited.
fn run_ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// Per-store state: the WASI context and the memory accounting.
pub(crate) struct GuestState {
    wasi: WasiP1Ctx,
    limiter: GuestLimiter,
}

/// Caps linear memory and records the peak and any denied growth.
struct GuestLimiter {
    cap: usize,
    peak: usize,
    denied: Option<usize>,
}

impl GuestLimiter {
    fn new(cap: usize) -> Self {
        GuestLimiter { cap, peak: 0, denied: None }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.denied = Some(self.denied.map_or(desired, |d| d.max(desired)));
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    // One guest is one instance with one memory and one table: `guest_memory_bytes` is then the
    // guest's whole memory, not the cap of each of several (with the pooling allocator the pool's
    // per-module limits say the same; these also hold without it).
    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// A counting semaphore over pool slots: calls beyond the pool's size wait instead of failing.
struct Slots {
    max: u32,
    free: Mutex<u32>,
    freed: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(max: u32) -> Self {
        Slots { max, free: Mutex::new(max), freed: Condvar::new() }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// Epoch ticks covering `time` (at least one, at most [`MAX_DEADLINE_TICKS`]).
fn ticks_for(time: Duration) -> u64 {
    u64::try_from(time.as_nanos().div_ceil(EPOCH_TICK.as_nanos())).unwrap_or(u64::MAX).clamp(1, MAX_DEADLINE_TICKS)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new().name("sandload-epoch".into()).spawn(move || {
            let (lock, cv) = &*flag;
            let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut next = Instant::now() + EPOCH_TICK;
            while !*stopped {
                let now = Instant::now();
                if now >= next {
                    engine.increment_epoch();
                    // On a fixed grid, so wake-up latency does not accumulate (it did: about
                    // 5% late per tick here); after a stall, skip the missed ticks.
                    next += EPOCH_TICK;
                    if next <= now {
                        next = now + EPOCH_TICK;
                    }
                    continue;
                }
                // Condvar waits may wake spuriously; the loop re-checks the clock.
                let (guard, _) = cv.wait_timeout(stopped, next - now).unwrap_or_else(|p| p.into_inner());
                stopped = guard;
            }
        })?;
        Ok(Ticker { stop, handle: Some(handle) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The error a call whose async caller went away ends with (seen only by receipts and tracing).
fn cancelled(file: &Path) -> Error {
    Error::Io {
        file: file.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled: the caller dropped the future"),
    }
}
