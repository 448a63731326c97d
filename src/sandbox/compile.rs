//! Compiling a guest once per [`Sandbox`]: the compiled-guest cache, Wizer pre-initialisation of
//! guests that ask for it, and the checks a module must pass before any file reaches it.

use std::path::Path;

use sandload_abi::exports;
use wasmtime::{Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;

use super::Sandbox;
use super::call::{GuestLimiter, GuestState};
use super::engine::{GUEST_CALL_STACK, STACK_RED_ZONE, base_config, link_wasi};
use super::guest::Guest;
use crate::error::Error;

impl Sandbox {
    pub(super) fn guest(&self, kind: Guest) -> std::result::Result<&InstancePre<GuestState>, &GuestSetupError> {
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
}

/// Why a guest could not be prepared. Kept per Sandbox: its limits do not change.
#[derive(Debug)]
pub(super) enum GuestSetupError {
    /// The guest's initial memory alone exceeds `guest_memory_bytes`.
    MemoryTooSmall { needed: u64 },
    /// Compilation or linking failed: a bug, not a property of any file.
    Other(String),
}

impl GuestSetupError {
    pub(super) fn to_error(&self, sandbox: &Sandbox, kind: Guest, file: &Path) -> Error {
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
