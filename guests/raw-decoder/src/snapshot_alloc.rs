//! The guest's global allocator: the system allocator until the Wizer snapshot is taken, then a
//! fresh `dlmalloc` heap that grows memory above everything the snapshot holds.
//!
//! Why: wasmtime resets a reused pool slot by re-copying only the pages the last file dirtied, but
//! only if they form at most 32 regions (its `PAGEMAP_SCAN` buffer); past that it hands the rest
//! of memory back to the kernel, and the next file takes a page fault on every page it touches,
//! including every page of rawler's camera catalogue it only reads. Building the catalogue leaves
//! its heap full of freed holes; allocating into those holes after the snapshot scattered the
//! dirty pages of a 1 MP decode over hundreds of regions (measured: the scan always returned the
//! maximum, then 24 MB were decommitted per file). With new allocations above the snapshot, a
//! file dirties the stack, a few statics and one contiguous heap, and the catalogue's pages stay
//! mapped from one file to the next.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// See the module documentation.
pub struct SnapshotAlloc {
    state: UnsafeCell<State>,
}

struct State {
    /// Where the snapshot's memory ended when [`SnapshotAlloc::seal`] ran; 0 before. Every
    /// allocation below it came from [`System`], every later one from `fresh`.
    boundary: usize,
    fresh: dlmalloc::Dlmalloc,
}

// SAFETY: wasm32-wasip1 guests are single-threaded (no threads, no shared memory), so the state
// is never accessed concurrently.
unsafe impl Sync for SnapshotAlloc {}

impl SnapshotAlloc {
    pub const fn new() -> SnapshotAlloc {
        SnapshotAlloc { state: UnsafeCell::new(State { boundary: 0, fresh: dlmalloc::Dlmalloc::new() }) }
    }

    /// Switches to the fresh heap. Called once, at the end of the Wizer initializer.
    pub fn seal(&self) {
        // SAFETY: single-threaded (see the Sync impl), and no allocation is in progress.
        let state = unsafe { &mut *self.state.get() };
        if state.boundary == 0 {
            state.boundary = core::arch::wasm32::memory_size(0) * 65536;
        }
    }

    /// The state and whether `ptr` (if any) belongs to the system allocator.
    #[allow(clippy::mut_from_ref)]
    fn state(&self) -> &mut State {
        // SAFETY: single-threaded, and the allocator never re-enters itself.
        unsafe { &mut *self.state.get() }
    }
}

impl State {
    fn sealed(&self) -> bool {
        self.boundary != 0
    }

    fn from_system(&self, ptr: *mut u8) -> bool {
        !self.sealed() || (ptr as usize) < self.boundary
    }
}

unsafe impl GlobalAlloc for SnapshotAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let state = self.state();
        if state.sealed() {
            unsafe { state.fresh.malloc(layout.size(), layout.align()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let state = self.state();
        if state.sealed() {
            // dlmalloc skips the memset for memory fresh from memory.grow (already zero).
            unsafe { state.fresh.calloc(layout.size(), layout.align()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let state = self.state();
        if state.from_system(ptr) {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { state.fresh.free(ptr, layout.size(), layout.align()) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let state = self.state();
        if !state.sealed() {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if !state.from_system(ptr) {
            return unsafe { state.fresh.realloc(ptr, layout.size(), layout.align(), new_size) };
        }
        // Growing something the snapshot holds: move it to the fresh heap.
        let new = unsafe { state.fresh.malloc(new_size, layout.align()) };
        if !new.is_null() {
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                System.dealloc(ptr, layout);
            }
        }
        new
    }
}
