//! One guest call: a fresh `Store` with the memory cap, the deadline and deny-all WASI, the
//! request and payload copied in, the response range bounds-checked, and every way a call can
//! fail turned into a typed [`Error`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sandload_abi::{Rule, exports};
use wasmtime::{InstancePre, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::Sandbox;
use super::engine::{GUEST_CALL_STACK, MAX_TABLE_ELEMENTS, STACK_RED_ZONE};
use super::guest::Guest;
use super::pool::{MAX_DEADLINE_TICKS, ticks_for};
use crate::error::{Error, Result, printable};
use crate::limits::Limits;
use crate::sniff::Format;

/// Bytes of guest stderr kept (guests only write panic messages there).
const STDERR_CAPACITY: usize = 16 * 1024;
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
impl Sandbox {
    /// Runs one guest call: encodes `request`, decodes the guest's response, and hands it to
    /// `accept` with the whole guest memory, before the instance is dropped, so that bulk output
    /// (decoded pixels) is copied out once, straight from where the guest left it. The response
    /// type is the guest's ABI type; `accept` must treat it and the memory as hostile (see
    /// `crate::verdict`). Records what happened in `stats`. `format` is what the file is taken
    /// for, named in the error if the guest's decoder panics on it.
    pub(crate) fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned, T>(
        &self,
        kind: Guest,
        file: &Path,
        format: Format,
        request: &Req,
        payload: &[u8],
        stats: &mut GuestStats,
        accept: impl FnOnce(Resp, &[u8]) -> Result<T>,
    ) -> Result<T> {
        let (response, finished) = self.call_finished(kind, file, format, request, payload, stats)?;
        accept(response, finished.memory())
    }

    /// [`call`](Sandbox::call) without the callback: the decoded response and the finished call,
    /// whose store (and so the guest's memory) lives as long as the [`Finished`] does. For callers
    /// that may hand part of the guest's memory out without copying it (see
    /// [`Finished::into_bytes`]). The response must be treated as hostile, as with `call`.
    pub(crate) fn call_finished<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        kind: Guest,
        file: &Path,
        format: Format,
        request: &Req,
        payload: &[u8],
        stats: &mut GuestStats,
    ) -> Result<(Resp, Finished)> {
        let request = sandload_abi::encode(request)
            .map_err(|e| Error::Internal(format!("{} guest: encoding the request: {e}", kind.name())))?;
        let finished = self.run(kind, file, format, &request, payload, stats)?;
        Ok((kind.decode_response(finished.response(), file)?, finished))
    }

    /// Runs one guest call in a fresh store: writes `request` and `payload` into the guest, calls
    /// it, and returns the finished store with the response range bounds-checked. Records what
    /// happened in `stats`.
    fn run(
        &self,
        kind: Guest,
        file: &Path,
        format: Format,
        request: &[u8],
        payload: &[u8],
        stats: &mut GuestStats,
    ) -> Result<Finished> {
        stats.guest = Some(kind.name());
        let pre = self.guest(kind).map_err(|e| e.to_error(self, kind, file))?;
        // A caller that gave up (an async caller that dropped its future): do not start, or stop
        // at the next tick.
        let cancel = self.cancel.clone();
        let is_cancelled = |c: &Option<Arc<AtomicBool>>| c.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
        if is_cancelled(&cancel) {
            return Err(cancelled(file));
        }
        let slot = self.inner.slots.acquire();
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
            result.map_err(|failure| self.classify(failure, kind, file, format, &store.data().limiter, &stderr))?;
        // From here the slot is given back by the `Finished` (after its store is dropped).
        slot.keep();
        Ok(Finished { store, memory, response, budget: Budget { inner: Arc::clone(&self.inner), frame: false } })
    }

    fn classify(
        &self,
        failure: CallFailure,
        kind: Guest,
        file: &Path,
        format: Format,
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
                let said = stderr.contents();
                let said = String::from_utf8_lossy(&said);
                // A panic is a decoder bug the file found: the file is refused as malformed, with
                // the decoder's message. (The text is the guest's, so it is escaped; a guest that
                // writes the marker itself only changes the kind of refusal.)
                if let Some(at) = said.rfind(sandload_abi::PANIC_PREFIX) {
                    let message = said[at + sandload_abi::PANIC_PREFIX.len()..].trim();
                    let detail = format!("the {guest} guest's decoder panicked on this file: {message}");
                    return Error::malformed(file, format, Rule::DecoderPanic.name(), None, detail);
                }
                let said = printable(said.trim());
                let message = if said.is_empty() { format!("{e:#}") } else { format!("{e}; guest said: {said}") };
                Error::GuestTrap { file, guest, message }
            }
            CallFailure::Protocol(message) => Error::GuestTrap { file, guest, message: printable(&message) },
            CallFailure::Setup(message) => Error::Internal(format!("{guest}: {message}")),
        }
    }
}

/// A guest call that returned: its store, so its memory, lives as long as this does, and counts
/// against the sandbox's concurrent calls until it is dropped or its output handed out.
pub(crate) struct Finished {
    // Declared before `budget`: the store goes back to the pool before its slot is counted free,
    // so that the pool never holds more stores than it has slots.
    store: Store<GuestState>,
    memory: wasmtime::Memory,
    /// Checked by `run_call` against this memory, which no longer changes (the call is over).
    response: std::ops::Range<usize>,
    budget: Budget,
}

impl Finished {
    /// The guest's response bytes (hostile).
    pub(crate) fn response(&self) -> &[u8] {
        &self.memory()[self.response.clone()]
    }

    /// The guest's whole linear memory (hostile).
    pub(crate) fn memory(&self) -> &[u8] {
        self.memory.data(&self.store)
    }

    /// `range` of the guest's memory (already checked to lie inside it) as `Bytes`. Without a
    /// copy while fewer than `max_concurrent` such frames are alive: the `Bytes` then owns this
    /// store (and its pool slot) until its last clone is dropped. Past that bound the range is
    /// copied and the store released at once, so frames a caller keeps never starve new calls of
    /// pool slots (the pool has `max_concurrent` slots per guest for calls and as many for kept
    /// frames).
    pub(crate) fn into_bytes(mut self, range: std::ops::Range<usize>) -> Bytes {
        let inner = Arc::clone(&self.budget.inner);
        let kept =
            inner.frames.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < inner.slots.max).then_some(n + 1));
        if kept.is_err() {
            return Bytes::copy_from_slice(&self.memory()[range]);
        }
        // Counted as a kept frame now: give the call's slot back.
        self.budget.switch_to_frame();
        Bytes::from_owner(KeptFrame { store: self.store, memory: self.memory, range, _budget: self.budget })
    }
}

/// A decoded frame handed out without a copy: a range of a finished guest's memory.
struct KeptFrame {
    // Before `_budget`, as in `Finished`.
    store: Store<GuestState>,
    memory: wasmtime::Memory,
    range: std::ops::Range<usize>,
    _budget: Budget,
}

impl AsRef<[u8]> for KeptFrame {
    fn as_ref(&self) -> &[u8] {
        // The range was checked against this memory, which cannot shrink and is never run again.
        &self.memory.data(&self.store)[self.range.clone()]
    }
}

/// What a live store counts against, given back when it is dropped: a call slot (the semaphore
/// over the pool) or, once its output was handed out without a copy, a kept-frame slot.
struct Budget {
    inner: Arc<super::Inner>,
    frame: bool,
}

impl Budget {
    fn switch_to_frame(&mut self) {
        self.inner.slots.release();
        self.frame = true;
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if self.frame {
            self.inner.frames.fetch_sub(1, Ordering::AcqRel);
        } else {
            self.inner.slots.release();
        }
    }
}

/// What a file's guest calls cost: the receipt's guest, memory peak and guest time.
#[derive(Debug, Clone, Default)]
pub(crate) struct GuestStats {
    pub(crate) guest: Option<&'static str>,
    pub(crate) peak_memory_bytes: u64,
    pub(crate) guest_time: Duration,
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

/// Per-store state: the WASI context and the memory accounting.
pub(super) struct GuestState {
    pub(super) wasi: WasiP1Ctx,
    pub(super) limiter: GuestLimiter,
}

/// Caps linear memory and records the peak and any denied growth.
pub(super) struct GuestLimiter {
    cap: usize,
    peak: usize,
    denied: Option<usize>,
}

impl GuestLimiter {
    pub(super) fn new(cap: usize) -> Self {
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

/// The error a call whose async caller went away ends with (seen only by receipts and tracing).
fn cancelled(file: &Path) -> Error {
    Error::Io {
        file: file.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled: the caller dropped the future"),
    }
}
