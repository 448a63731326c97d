//! Sharing the machine between files: the pooling allocator's slots, the semaphore that makes
//! calls beyond them wait, and the epoch ticker that enforces deadlines.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Engine, PoolingAllocationConfig};

use super::engine::MAX_TABLE_ELEMENTS;
use super::guest::Guest;
use crate::limits::Limits;

/// WebAssembly's page size: memory sizes are multiples of it.
const WASM_PAGE: usize = 64 << 10;
/// How often the epoch ticker advances; a guest is stopped at most about one tick after its
/// `guest_time` (never before it: the deadline callback checks the clock).
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Bytes of each pooled table reset in place rather than decommitted.
const TABLE_KEEP_RESIDENT: usize = 2 << 20;
/// Epoch ticks that stand for "no deadline": 2^48 ticks of 5 ms is ~44,000 years, and adding it to
/// the engine's epoch cannot overflow (wasmtime adds without checking).
pub(super) const MAX_DEADLINE_TICKS: u64 = 1 << 48;

/// `bytes` of memory kept resident per slot, rounded down to whole wasm pages and to the guest's
/// memory cap.
pub(super) fn whole_pages(bytes: usize, limits: &Limits) -> usize {
    bytes.min(limits.guest_memory_bytes as usize) / WASM_PAGE * WASM_PAGE
}

/// The pooling allocator's configuration for `max_concurrent` calls at once.
pub(super) fn pooling_config(max_concurrent: u32, limits: &Limits, keep_resident: usize) -> PoolingAllocationConfig {
    // A slot per guest kind for every concurrent call: wasmtime reuses a slot that last
    // ran the same module (its memory image still mapped, its pages still resident), so
    // with fewer slots, callers alternating between guests evict each other's warm slots
    // and every call starts cold. Unused slots are address space only (no memory).
    //
    // As many again for decoded frames handed out without a copy (`Finished::into_bytes`: at
    // most `max_concurrent` alive at once), which keep their store.
    let slots = max_concurrent.saturating_mul(2).saturating_mul(Guest::COUNT as u32);
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
    pool
}

/// A counting semaphore over pool slots: calls beyond the pool's size wait instead of failing.
pub(super) struct Slots {
    pub(super) max: u32,
    pub(super) free: Mutex<u32>,
    freed: Condvar,
}

pub(super) struct SlotGuard<'a>(&'a Slots);

impl Slots {
    pub(super) fn new(max: u32) -> Self {
        Slots { max, free: Mutex::new(max), freed: Condvar::new() }
    }

    pub(super) fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }

    /// Gives a slot back (one taken by a guard that was [kept](SlotGuard::keep)).
    pub(super) fn release(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.freed.notify_one();
    }
}

impl SlotGuard<'_> {
    /// Keeps the slot taken after the guard is gone: the caller gives it back with
    /// [`Slots::release`], exactly once.
    pub(super) fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Epoch ticks covering `time` (at least one, at most [`MAX_DEADLINE_TICKS`]).
pub(super) fn ticks_for(time: Duration) -> u64 {
    u64::try_from(time.as_nanos().div_ceil(EPOCH_TICK.as_nanos())).unwrap_or(u64::MAX).clamp(1, MAX_DEADLINE_TICKS)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(super) struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(super) fn start(engine: Engine) -> std::io::Result<Ticker> {
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
