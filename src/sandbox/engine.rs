//! How every wasmtime engine sandload builds is configured: the wasm features guests may use, the
//! stack they get, and the deny-all WASI they are linked against.

use wasmparser::WasmFeatures;
use wasmtime::{Caller, Config, Linker};

use super::call::GuestState;

/// Native stack one guest call may use for wasm frames (wasmtime's `max_wasm_stack`; its default,
/// set explicitly because [`STACK_RED_ZONE`] is derived from it). Deeper recursion is a trap
/// ("call stack exhausted").
pub(super) const MAX_WASM_STACK: usize = 512 << 10;
/// Stack a guest call needs left on the calling thread: the wasm stack plus the host frames below
/// and above it (wasmtime's entry and trap handling, WASI host functions). A thread with less left
/// (a small `std::thread::Builder::stack_size`, deep caller recursion) runs the call on a fresh
/// [`GUEST_CALL_STACK`]-byte segment instead, so a guest's recursion can never overflow the
/// caller's stack.
pub(super) const STACK_RED_ZONE: usize = MAX_WASM_STACK + (512 << 10);
/// Size of that fresh stack segment (allocated only when the caller's stack is short).
pub(super) const GUEST_CALL_STACK: usize = MAX_WASM_STACK + (2 << 20);
/// Function-table elements a guest may grow to (compiled Rust guests need a few thousand).
pub(super) const MAX_TABLE_ELEMENTS: usize = 100_000;

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
pub(super) fn base_config() -> Config {
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
pub(super) fn link_wasi(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
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
